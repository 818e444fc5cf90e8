//! PodSandboxConfig → the pause container's create body, as cri-dockerd's
//! makeSandboxDockerConfig builds it.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use cri_dockerd_api::v1::{NamespaceMode, PodSandboxConfig, PortMapping, Protocol};

use super::security::{self, Seccomp};
use super::{NAMESPACE_MODE_HOST, cgroup_parent};
use crate::checkpoint::{self, CheckpointData};
use crate::config::NetworkPlugin;
use crate::error::{Error, Result};
use crate::facts::CgroupDriver;
use crate::labels;
use crate::naming;

/// cri-dockerd's values for the pause container.
pub const SANDBOX_OOM_SCORE_ADJ: i64 = -998;
pub const SANDBOX_CPU_SHARES: i64 = 2;

pub struct SandboxOptions<'a> {
    pub image: &'a str,
    pub network_plugin: &'a NetworkPlugin,
    pub cgroup_driver: CgroupDriver,
    /// The OOM score after the daemon's restrictions are applied.
    pub oom_score_adj: i64,
    /// A Docker runtime name, from the CRI runtime handler.
    pub runtime: Option<&'a str>,
    pub read_file: &'a (dyn Fn(&str) -> std::io::Result<Vec<u8>> + Sync),
}

pub fn namespace_options(
    config: &PodSandboxConfig,
) -> (NamespaceMode, NamespaceMode, NamespaceMode) {
    let ns = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let mode = |v: Option<i32>| {
        v.and_then(|v| NamespaceMode::try_from(v).ok())
            .unwrap_or(NamespaceMode::Pod)
    };
    (
        mode(ns.map(|n| n.network)),
        mode(ns.map(|n| n.pid)),
        mode(ns.map(|n| n.ipc)),
    )
}

pub fn is_host_network(config: &PodSandboxConfig) -> bool {
    namespace_options(config).0 == NamespaceMode::Node
}

pub fn protocol_name(protocol: i32) -> &'static str {
    match Protocol::try_from(protocol) {
        Ok(Protocol::Udp) => "udp",
        Ok(Protocol::Sctp) => "sctp",
        _ => "tcp",
    }
}

/// Docker's ExposedPorts and PortBindings; mappings without a host port
/// are not bound.
pub fn ports_and_bindings(
    mappings: &[PortMapping],
) -> (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>) {
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for pm in mappings.iter().filter(|pm| pm.host_port != 0) {
        let port = format!("{}/{}", pm.container_port, protocol_name(pm.protocol));
        if !exposed.contains(&port) {
            exposed.push(port.clone());
        }
        bindings
            .entry(port)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(pm.host_ip.clone()),
                host_port: Some(pm.host_port.to_string()),
            });
    }
    (exposed, bindings)
}

/// The checkpoint cri-dockerd writes for this sandbox.
pub fn checkpoint_data(config: &PodSandboxConfig) -> CheckpointData {
    let mappings: Vec<checkpoint::PortMapping> = config
        .port_mappings
        .iter()
        .map(|pm| checkpoint::PortMapping {
            protocol: Some(protocol_name(pm.protocol).to_string()),
            container_port: Some(pm.container_port),
            host_port: Some(pm.host_port),
            host_ip: pm.host_ip.clone(),
        })
        .collect();
    CheckpointData {
        port_mappings: (!mappings.is_empty()).then_some(mappings),
        host_network: is_host_network(config),
    }
}

/// The container name and create body of the pause container.
/// The Kubernetes API's rule for sysctl names: dot- or slash-separated
/// segments of lowercase letters, digits, `-` and `_`, at most 253 long.
/// Whether the kernel namespaces it is runc's to say, at start.
fn is_sysctl_name(name: &str) -> bool {
    let segment_ok = |seg: &str| {
        let bytes = seg.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
    };
    name.len() <= 253 && name.split(['.', '/']).all(segment_ok)
}

pub fn create_body(
    config: &PodSandboxConfig,
    options: &SandboxOptions,
) -> Result<(String, ContainerCreateBody)> {
    let metadata = config
        .metadata
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("sandbox config has no metadata".into()))?;
    let name = naming::sandbox_name(metadata);
    crate::features::check_pod(config)?;
    if let Some(linux) = &config.linux {
        for key in linux.sysctls.keys() {
            if !is_sysctl_name(key) {
                let shown: String = key.chars().take(80).collect();
                return Err(Error::InvalidArgument(format!(
                    "sysctl {shown:?} is not a sysctl name"
                )));
            }
        }
    }

    let mut docker_labels = labels::make_labels(&config.labels, &config.annotations);
    docker_labels.insert(
        labels::CONTAINER_TYPE.into(),
        labels::CONTAINER_TYPE_SANDBOX.into(),
    );
    docker_labels.insert(
        labels::KUBERNETES_CONTAINER_NAME.into(),
        naming::SANDBOX_CONTAINER_NAME.into(),
    );

    let (network, pid, ipc) = namespace_options(config);
    let linux = config.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());

    let network_mode = if network == NamespaceMode::Node {
        NAMESPACE_MODE_HOST
    } else {
        match options.network_plugin {
            NetworkPlugin::Cni => "none",
            NetworkPlugin::DockerBridge => "default",
        }
    };

    let mut security_opt = Vec::new();
    let mut user = None;
    let mut host = HostConfig {
        network_mode: Some(network_mode.into()),
        ipc_mode: Some(
            if ipc == NamespaceMode::Node {
                NAMESPACE_MODE_HOST
            } else {
                "shareable"
            }
            .into(),
        ),
        pid_mode: (pid == NamespaceMode::Node).then(|| NAMESPACE_MODE_HOST.to_string()),
        oom_score_adj: Some(options.oom_score_adj),
        cpu_shares: Some(SANDBOX_CPU_SHARES),
        memory_swap: Some(0),
        cgroup_parent: linux.and_then(|l| cgroup_parent(&l.cgroup_parent, options.cgroup_driver)),
        sysctls: linux.map(|l| l.sysctls.clone()).filter(|s| !s.is_empty()),
        runtime: options.runtime.map(str::to_string),
        ..Default::default()
    };
    if let Some(sc) = sc {
        user = security::docker_user(
            sc.run_as_user.as_ref().map(|v| v.value),
            "",
            sc.run_as_group.as_ref().map(|v| v.value),
        )?;
        host.group_add = (!sc.supplemental_groups.is_empty()).then(|| {
            sc.supplemental_groups
                .iter()
                .map(|g| g.to_string())
                .collect()
        });
        host.privileged = Some(sc.privileged);
        host.readonly_rootfs = Some(sc.readonly_rootfs);
        security_opt.extend(security::selinux_security_opts(sc.selinux_options.as_ref()));
        security_opt.extend(security::apparmor_security_opt(sc.apparmor.as_ref(), ""));
        // Kubelets before 1.22 only set the deprecated path.
        #[allow(deprecated)]
        let legacy_seccomp = &sc.seccomp_profile_path;
        let seccomp =
            security::seccomp_choice(sc.seccomp.as_ref(), legacy_seccomp, Seccomp::DockerDefault);
        security_opt.extend(security::seccomp_security_opt(&seccomp, options.read_file)?);
    }
    // cri-dockerd runs every sandbox with no-new-privileges.
    security_opt.push("no-new-privileges".into());
    host.security_opt = Some(security_opt);

    let (exposed, bindings) = ports_and_bindings(&config.port_mappings);
    host.port_bindings = Some(bindings);

    let body = ContainerCreateBody {
        hostname: Some(config.hostname.clone()).filter(|h| !h.is_empty()),
        image: Some(options.image.to_string()),
        labels: Some(docker_labels),
        user,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host),
        ..Default::default()
    };
    Ok((name, body))
}

/// resolv.conf content for the pod's DNS config, as cri-dockerd writes it;
/// `None` leaves Docker's file alone.
pub fn resolv_conf(servers: &[String], searches: &[String], options: &[String]) -> Option<String> {
    let mut lines: Vec<String> = servers.iter().map(|s| format!("nameserver {s}")).collect();
    if !searches.is_empty() {
        lines.push(format!("search {}", searches.join(" ")));
    }
    if !options.is_empty() {
        lines.push(format!("options {}", options.join(" ")));
    }
    (!lines.is_empty()).then(|| lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::translate::fixtures::{pod_host, pod_ports, reference_inspect};

    fn reference_config(name: &str) -> PodSandboxConfig {
        match name {
            "pod-ports.json" => pod_ports(),
            "pod-host.json" => pod_host(),
            other => panic!("no fixture {other}"),
        }
    }

    fn options() -> SandboxOptions<'static> {
        SandboxOptions {
            image: "registry.k8s.io/pause:3.10",
            network_plugin: &NetworkPlugin::Cni,
            cgroup_driver: CgroupDriver::Cgroupfs,
            oom_score_adj: SANDBOX_OOM_SCORE_ADJ,
            runtime: None,
            read_file: &|_| Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    /// Our body, serialised as Docker's API shows it, against the fields
    /// of `docker inspect` that the create request decides.
    fn assert_matches_reference(config: &str, inspect: &str) {
        let (name, body) = create_body(&reference_config(config), &options()).unwrap();
        let reference = reference_inspect(inspect);
        assert_eq!(format!("/{name}"), reference["Name"]);
        let ours = serde_json::to_value(&body).unwrap();
        let host = &ours["HostConfig"];
        let theirs = &reference["HostConfig"];
        for key in [
            "NetworkMode",
            "IpcMode",
            "OomScoreAdj",
            "CpuShares",
            "Privileged",
            "ReadonlyRootfs",
        ] {
            assert_eq!(host[key], theirs[key], "HostConfig.{key}");
        }
        assert_eq!(
            host["PidMode"].as_str().unwrap_or(""),
            theirs["PidMode"],
            "HostConfig.PidMode"
        );
        // Docker adds label=disable itself for host PID/IPC; cri-dockerd asks for no-new-privileges.
        let their_opts: Vec<&str> = theirs["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|o| *o != "label=disable")
            .collect();
        assert_eq!(host["SecurityOpt"], serde_json::json!(their_opts));
        let our_bindings = host["PortBindings"].as_object().unwrap();
        let their_bindings = theirs["PortBindings"].as_object().unwrap();
        assert_eq!(our_bindings.len(), their_bindings.len());
        for (port, binding) in their_bindings {
            assert_eq!(&our_bindings[port], binding, "binding of {port}");
        }
        let config_ref = &reference["Config"];
        assert_eq!(ours["Hostname"], config_ref["Hostname"]);
        assert_eq!(ours["Image"], config_ref["Image"]);
        assert_eq!(ours["Labels"], config_ref["Labels"]);
        let exposed: Vec<String> = config_ref["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut our_exposed: Vec<String> = ours["ExposedPorts"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        our_exposed.sort();
        assert_eq!(our_exposed, exposed);
    }

    #[test]
    fn pod_network_sandbox_matches_cri_dockerd() {
        assert_matches_reference("pod-ports.json", "sandbox-pod-network.json");
    }

    #[test]
    fn host_network_sandbox_matches_cri_dockerd() {
        assert_matches_reference("pod-host.json", "sandbox-host-network.json");
    }

    #[test]
    fn checkpoint_of_the_reference_pod_matches_cri_dockerds() {
        let data = checkpoint_data(&reference_config("pod-ports.json"));
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/cri-dockerd-v0.3.21/checkpoints/0bd9a3e1aa0a4af38b26f9145eed996cf0973b65c23c977cddf8bf3c117e4cdb");
        let theirs =
            crate::checkpoint::PodSandboxCheckpoint::decode(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(data, theirs.data());
        assert!(checkpoint_data(&reference_config("pod-host.json")).host_network);
    }

    #[test]
    fn sysctl_names_follow_the_kubernetes_rule() {
        for ok in [
            "net.ipv4.ip_unprivileged_port_start",
            "kernel.shm_rmid_forced",
            "net/ipv4/conf/eth0/forwarding",
        ] {
            assert!(is_sysctl_name(ok), "{ok}");
        }
        for bad in ["", "-rf", "%2e%2e%2f", "net..x", "Net.x", "a\0b", "net.x-"] {
            assert!(!is_sysctl_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn security_context_sysctls_and_cgroup_parent() {
        let mut config = reference_config("pod-ports.json");
        let linux = config.linux.get_or_insert_with(Default::default);
        linux.cgroup_parent = "/kubepods/pod1".into();
        linux
            .sysctls
            .insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
        let sc = linux.security_context.get_or_insert_with(Default::default);
        sc.run_as_user = Some(cri_dockerd_api::v1::Int64Value { value: 1000 });
        sc.run_as_group = Some(cri_dockerd_api::v1::Int64Value { value: 3000 });
        sc.supplemental_groups = vec![4000];
        sc.readonly_rootfs = true;
        sc.seccomp = Some(cri_dockerd_api::v1::SecurityProfile {
            profile_type: 1,
            localhost_ref: String::new(),
        });
        let mut opts = options();
        opts.runtime = Some("runc-bounded");
        opts.oom_score_adj = 0;
        let (_, body) = create_body(&config, &opts).unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(body.user.as_deref(), Some("1000:3000"));
        assert_eq!(host.group_add, Some(vec!["4000".to_string()]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cgroup_parent.as_deref(), Some("/kubepods/pod1"));
        assert_eq!(
            host.sysctls.unwrap()["net.ipv4.ip_unprivileged_port_start"],
            "0"
        );
        assert_eq!(
            host.security_opt.unwrap(),
            vec!["seccomp=unconfined", "no-new-privileges"]
        );
        assert_eq!(host.runtime.as_deref(), Some("runc-bounded"));
        assert_eq!(host.oom_score_adj, Some(0));
    }

    #[test]
    fn docker_bridge_mode_and_missing_metadata() {
        let mut opts = options();
        opts.network_plugin = &NetworkPlugin::DockerBridge;
        let (_, body) = create_body(&reference_config("pod-ports.json"), &opts).unwrap();
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("default")
        );
        let config = PodSandboxConfig::default();
        assert!(matches!(
            create_body(&config, &options()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn resolv_conf_like_cri_dockerd() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolv_conf(&s(&["10.96.0.10"]), &s(&["a.svc", "svc"]), &s(&["ndots:5"])).unwrap(),
            "nameserver 10.96.0.10\nsearch a.svc svc\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(&[], &[], &[]), None);
    }
}
