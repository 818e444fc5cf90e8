//! Version, Status, RuntimeConfig and the CRI socket, against the real daemon.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

fn condition<'a>(status: &'a StatusResponse, kind: &str) -> &'a RuntimeCondition {
    status
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .unwrap_or_else(|| panic!("no {kind} condition"))
}

#[tokio::test(flavor = "multi_thread")]
async fn version_reports_docker() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let version = shim
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    let docker_version = env.docker.version().await.unwrap().version.unwrap();
    assert_eq!(version.runtime_name, "docker");
    assert_eq!(version.runtime_version, docker_version);
    assert_eq!(version.runtime_api_version, "v1");
    assert_eq!(version.version, "0.1.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn network_ready_follows_the_cni_config_directory() {
    test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let conf_dir = shim.cni_conf_dir.clone();

    let status = shim
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(condition(&status, "RuntimeReady").status, "{status:?}");
    let network = condition(&status, "NetworkReady");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(
        network.message.contains(&conf_dir.display().to_string()),
        "{}",
        network.message
    );

    // A broken file does not make the network ready.
    std::fs::write(conf_dir.join("05-broken.conf"), "{ not json").unwrap();
    let status = shim
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!condition(&status, "NetworkReady").status);

    std::fs::copy(
        cri_dockerd_testkit::shim::repo_cni_conflist(),
        conf_dir.join("10-bridge.conflist"),
    )
    .unwrap();
    let status = shim
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(condition(&status, "NetworkReady").status, "{status:?}");

    std::fs::remove_file(conf_dir.join("10-bridge.conflist")).unwrap();
    let status = shim
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!condition(&status, "NetworkReady").status);
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_status_returns_the_effective_config() {
    test_env().await;
    let mut shim = Shim::builder(BIN)
        .arg("--pod-cidr=10.88.0.0/16")
        .start()
        .await;
    let status = shim
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(config["sandboxImage"], "registry.k8s.io/pause:3.10");
    assert_eq!(config["hairpinMode"], "hairpin-veth");
    assert_eq!(config["podCIDR"], "10.88.0.0/16");
    assert_eq!(
        config["cniConfDir"],
        shim.cni_conf_dir.display().to_string()
    );
    let quiet = shim
        .runtime
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(quiet.info.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn runtime_config_reports_dockers_cgroup_driver() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let config = shim
        .runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let driver = env.docker.info().await.unwrap().cgroup_driver.unwrap();
    let expected = match format!("{driver:?}").to_lowercase().as_str() {
        "systemd" => CgroupDriver::Systemd,
        _ => CgroupDriver::Cgroupfs,
    };
    assert_eq!(config.linux.unwrap().cgroup_driver, expected as i32);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_runtime_config_records_the_pod_cidr() {
    test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    shim.runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: "10.99.0.0/24".into(),
                }),
            }),
        })
        .await
        .unwrap();
    shim.runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: None,
        })
        .await
        .unwrap();
    let status = shim
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(config["podCIDR"], "10.99.0.0/24");
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_container_checks_its_input_first() {
    test_env().await;
    let mut shim = Shim::builder(BIN).start().await;
    let err = shim
        .runtime
        .checkpoint_container(CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    let err = shim
        .runtime
        .checkpoint_container(CheckpointContainerRequest {
            container_id: "0123456789abcdef".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_is_0660_replaces_a_stale_one_and_goes_away_on_sigterm() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nested/dir/cri.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A socket nobody listens on, as a crashed process leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let mut shim = Shim::builder(BIN).socket(&socket).start().await;
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let status = shim.terminate();
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the socket must be removed on SIGTERM");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The runtime features the kubelet reads, answered from what Docker can
/// do here, each with its reason in the verbose Status, and each answer
/// true: what is answered `false` is refused when asked for (never run
/// without it), and the reason given for `supplemental_groups_policy` is
/// what a container sees.
#[tokio::test(flavor = "multi_thread")]
async fn runtime_features_are_answered_truthfully() {
    use cri_dockerd_testkit::cri::{container_config, containers, pod_config};
    use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let status = shim
        .runtime
        .clone()
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let node = status.features.expect("Status.features is answered");
    assert!(!node.supplemental_groups_policy);
    assert!(!node.user_namespaces_host_network);
    assert!(!status.runtime_handlers.is_empty());
    for handler in &status.runtime_handlers {
        let features = handler.features.expect("every handler's features");
        assert!(!features.user_namespaces, "{:?}", handler.name);
    }
    let answers: Vec<serde_json::Value> =
        serde_json::from_str(&status.info["features"]).expect("verbose info: features");
    let answer = |name: &str| {
        answers
            .iter()
            .find(|a| a["feature"] == name)
            .unwrap_or_else(|| panic!("no answer for {name}: {answers:?}"))
            .clone()
    };
    for name in [
        "supplemental_groups_policy",
        "user_namespaces_host_network",
        "user_namespaces",
    ] {
        assert_eq!(answer(name)["supported"], false, "{name}");
        assert!(!answer(name)["why"].as_str().unwrap().is_empty(), "{name}");
    }
    let default_rro = status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .and_then(|h| h.features)
        .unwrap()
        .recursive_read_only_mounts;
    assert_eq!(
        answer("recursive_read_only_mounts")["supported"],
        default_rro
    );

    // Merge is what every container gets: the image's /etc/group adds
    // `extra` (5555) to user 1234, though the pod asks for no groups.
    let (pod, config) = shim.run_pod("features").await;
    let mut as_tester = container_config("groups", BUSYBOX_IMAGE, &["sleep", "3600"]);
    as_tester.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1234 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = containers::run(&shim.runtime, &pod, as_tester, &config).await;
    let groups = containers::exec_stdout(&shim.runtime, &id, &["id", "-G"]).await;
    assert!(
        groups.split_whitespace().any(|g| g == "5555"),
        "the image's group is added, as answered: {groups}"
    );

    // Strict, asked of a container or a pod: refused, nothing left.
    let mut strict = container_config("strict", BUSYBOX_IMAGE, &["sleep", "3600"]);
    strict.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = shim
        .runtime
        .clone()
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(strict),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("Strict"), "{err}");

    let refused_pod =
        |name: &str, userns: Option<NamespaceMode>, policy: SupplementalGroupsPolicy| {
            let mut config = pod_config(name, "default", &shim.pod_uid(name));
            let linux = config.linux.get_or_insert_with(Default::default);
            let sc = linux.security_context.get_or_insert_with(Default::default);
            sc.supplemental_groups_policy = policy as i32;
            if let Some(mode) = userns {
                sc.namespace_options
                    .get_or_insert_with(Default::default)
                    .userns_options = Some(UserNamespace {
                    mode: mode as i32,
                    ..Default::default()
                });
            }
            let mut runtime = shim.runtime.clone();
            async move {
                runtime
                    .run_pod_sandbox(RunPodSandboxRequest {
                        config: Some(config),
                        runtime_handler: String::new(),
                    })
                    .await
            }
        };
    for (name, userns, policy, says) in [
        (
            "hostusers-false",
            Some(NamespaceMode::Pod),
            SupplementalGroupsPolicy::Merge,
            "hostUsers: false",
        ),
        (
            "strict-pod",
            None,
            SupplementalGroupsPolicy::Strict,
            "Strict",
        ),
    ] {
        let err = refused_pod(name, userns, policy).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{name}: {err}");
        assert!(err.message().contains(says), "{name}: {err}");
    }
    // The host's user namespace, as the kubelet asks for hostUsers: true.
    refused_pod(
        "hostusers-true",
        Some(NamespaceMode::Node),
        SupplementalGroupsPolicy::Merge,
    )
    .await
    .expect("a pod in the node's user namespace");
    for (name, made) in [
        ("hostusers-false", 0),
        ("strict-pod", 0),
        ("hostusers-true", 1),
    ] {
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![format!("io.kubernetes.pod.uid={}", shim.pod_uid(name))],
            )])),
            ..Default::default()
        };
        let found = env.docker.list_containers(Some(options)).await.unwrap();
        assert_eq!(found.len(), made, "containers of pod {name}");
    }
}
