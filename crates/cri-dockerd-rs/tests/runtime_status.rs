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
