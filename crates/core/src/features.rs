//! The runtime features the kubelet reads from Status (per node and per
//! runtime handler), answered from what Docker can do on this node, each
//! with its reason; and the refusal of a request that needs one this node
//! lacks, so that it fails loudly instead of running without it.

use cri_dockerd_api::v1::{
    ContainerConfig, NamespaceMode, NamespaceOption, PodSandboxConfig, RuntimeFeatures,
    RuntimeHandlerFeatures, SupplementalGroupsPolicy,
};

use crate::error::{Error, Result};
use crate::facts::DockerFacts;

/// One answer: the CRI's name of the feature, ours, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureAnswer {
    pub feature: &'static str,
    pub supported: bool,
    pub why: String,
}

const SUPPLEMENTAL_GROUPS_POLICY_WHY: &str = "Docker always adds the groups the image's /etc/group gives the user, so supplementalGroupsPolicy: Strict cannot be honoured; Merge is what every container gets";
const USER_NAMESPACES_WHY: &str = "Docker's user namespaces are daemon-wide (userns-remap) and it has no idmapped volume mounts per container, so a pod with hostUsers: false cannot get its own mapping";
const USER_NAMESPACES_HOST_NETWORK_WHY: &str =
    "no user namespaces per pod (see user_namespaces), with or without the host's network";

/// Status.features: what the node can do whatever the handler.
pub fn node_features() -> RuntimeFeatures {
    RuntimeFeatures {
        supplemental_groups_policy: false,
        user_namespaces_host_network: false,
    }
}

/// Status.runtime_handlers[].features for a Docker runtime (empty: the
/// daemon's default).
pub fn handler_features(facts: &DockerFacts, runtime: &str) -> RuntimeHandlerFeatures {
    RuntimeHandlerFeatures {
        recursive_read_only_mounts: facts.supports_recursive_read_only(runtime),
        user_namespaces: false,
    }
}

/// Every answer with its reason, for Status's verbose info and the README.
pub fn answers(facts: &DockerFacts) -> Vec<FeatureAnswer> {
    let rro = facts.supports_recursive_read_only("");
    let rro_why = if rro {
        format!(
            "Docker {} (API {}) on kernel {} with a runtime that knows rro (per handler: each runtime's own answer)",
            facts.docker_version,
            facts.api_version,
            kernel_text(facts)
        )
    } else {
        format!(
            "needs Docker 25 (API 1.44), a kernel with mount_setattr (5.12) and a runtime that knows rro; here: Docker {} (API {}), kernel {}, default runtime {}",
            facts.docker_version,
            facts.api_version,
            kernel_text(facts),
            facts.default_runtime
        )
    };
    let node = node_features();
    let handler = handler_features(facts, "");
    vec![
        FeatureAnswer {
            feature: "supplemental_groups_policy",
            supported: node.supplemental_groups_policy,
            why: SUPPLEMENTAL_GROUPS_POLICY_WHY.into(),
        },
        FeatureAnswer {
            feature: "user_namespaces_host_network",
            supported: node.user_namespaces_host_network,
            why: USER_NAMESPACES_HOST_NETWORK_WHY.into(),
        },
        FeatureAnswer {
            feature: "recursive_read_only_mounts",
            supported: handler.recursive_read_only_mounts,
            why: rro_why,
        },
        FeatureAnswer {
            feature: "user_namespaces",
            supported: handler.user_namespaces,
            why: USER_NAMESPACES_WHY.into(),
        },
    ]
}

fn kernel_text(facts: &DockerFacts) -> String {
    facts
        .kernel
        .map(|(major, minor)| format!("{major}.{minor}"))
        .unwrap_or_else(|| "unknown".into())
}

/// A pod that needs a feature this node lacks is refused, not run without
/// it.
pub fn check_pod(config: &PodSandboxConfig) -> Result<()> {
    match config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
    {
        Some(sc) => check_security(sc.namespace_options.as_ref(), sc.supplemental_groups_policy),
        None => Ok(()),
    }
}

pub fn check_container(config: &ContainerConfig) -> Result<()> {
    match config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
    {
        Some(sc) => check_security(sc.namespace_options.as_ref(), sc.supplemental_groups_policy),
        None => Ok(()),
    }
}

/// What pod and container security contexts share.
fn check_security(ns: Option<&NamespaceOption>, groups_policy: i32) -> Result<()> {
    check_user_namespace(ns)?;
    check_groups_policy(groups_policy)
}

fn check_user_namespace(ns: Option<&NamespaceOption>) -> Result<()> {
    let Some(userns) = ns.and_then(|n| n.userns_options.as_ref()) else {
        return Ok(());
    };
    match NamespaceMode::try_from(userns.mode) {
        Ok(NamespaceMode::Node) => Ok(()),
        Ok(NamespaceMode::Pod) => Err(Error::FailedPrecondition(format!(
            "a user namespace per pod (hostUsers: false) is not supported: {USER_NAMESPACES_WHY}"
        ))),
        _ => Err(Error::InvalidArgument(format!(
            "user namespace mode {} is not NODE or POD",
            userns.mode
        ))),
    }
}

fn check_groups_policy(policy: i32) -> Result<()> {
    match SupplementalGroupsPolicy::try_from(policy) {
        Ok(SupplementalGroupsPolicy::Merge) => Ok(()),
        Ok(SupplementalGroupsPolicy::Strict) => Err(Error::FailedPrecondition(format!(
            "supplementalGroupsPolicy Strict is not supported: {SUPPLEMENTAL_GROUPS_POLICY_WHY}"
        ))),
        Err(_) => Err(Error::InvalidArgument(format!(
            "supplemental groups policy {policy} is not Merge or Strict"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_dockerd_api::v1::{
        LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
        LinuxSandboxSecurityContext, UserNamespace,
    };

    fn pod(userns: Option<i32>, policy: i32) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        userns_options: userns.map(|mode| UserNamespace {
                            mode,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    supplemental_groups_policy: policy,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn what_docker_cannot_do_is_refused_not_dropped() {
        assert!(check_pod(&PodSandboxConfig::default()).is_ok());
        assert!(check_pod(&pod(None, 0)).is_ok());
        assert!(check_pod(&pod(Some(NamespaceMode::Node as i32), 0)).is_ok());
        let e = check_pod(&pod(Some(NamespaceMode::Pod as i32), 0)).unwrap_err();
        assert!(
            matches!(&e, Error::FailedPrecondition(m) if m.contains("hostUsers: false")),
            "{e}"
        );
        let e = check_pod(&pod(Some(NamespaceMode::Target as i32), 0)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        let e = check_pod(&pod(None, SupplementalGroupsPolicy::Strict as i32)).unwrap_err();
        assert!(
            matches!(&e, Error::FailedPrecondition(m) if m.contains("Strict")),
            "{e}"
        );
        assert!(matches!(
            check_pod(&pod(None, 7)).unwrap_err(),
            Error::InvalidArgument(_)
        ));

        let container = ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            check_container(&container).unwrap_err(),
            Error::FailedPrecondition(_)
        ));
        assert!(check_container(&ContainerConfig::default()).is_ok());
    }

    #[test]
    fn every_answer_says_why() {
        let info: cri_dockerd_engine::model::SystemInfo = serde_json::from_str(
            r#"{"KernelVersion": "4.19.0", "DefaultRuntime": "runc", "Runtimes": {"runc": {"path": "runc"}}}"#,
        )
        .unwrap();
        let version = cri_dockerd_engine::DaemonVersion {
            version: "20.10.24".into(),
            daemon_api: cri_dockerd_engine::ApiVersion::new(1, 41),
            daemon_min_api: None,
            api: cri_dockerd_engine::ApiVersion::new(1, 41),
        };
        let facts = DockerFacts::from_answers(&info, &version);
        let all = answers(&facts);
        let names: Vec<&str> = all.iter().map(|a| a.feature).collect();
        assert_eq!(
            names,
            [
                "supplemental_groups_policy",
                "user_namespaces_host_network",
                "recursive_read_only_mounts",
                "user_namespaces"
            ]
        );
        assert!(all.iter().all(|a| !a.supported && !a.why.is_empty()));
        assert!(all[2].why.contains("kernel 4.19"), "{}", all[2].why);
    }
}
