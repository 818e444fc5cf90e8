//! What a shim killed at the wrong moment leaves behind, put right when it
//! starts again: the network of a sandbox that is gone for good is
//! released (its IP lease and CNI cache entries), and a sandbox left
//! running without its network is reported NotReady so the kubelet
//! replaces it.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::shim::repo_cni_conflist;
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

fn cache_entries_of(shim: &Shim, id: &str) -> Vec<String> {
    std::fs::read_dir(shim.cni_cache_dir.join("results"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(id))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_network_of_a_sandbox_gone_for_good_is_released() {
    let env = test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, _) = shim.run_pod("orphan").await;
    let ip = shim
        .runtime
        .clone()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip;
    // The repository's network is "bridge" with host-local's default dir.
    let lease = std::path::Path::new("/var/lib/cni/networks/bridge").join(&ip);
    assert!(
        std::fs::read_to_string(&lease).unwrap().starts_with(&pod),
        "host-local holds {ip} for the pod"
    );
    assert!(!cache_entries_of(&shim, &pod).is_empty());

    // The shim dies; meanwhile the pod's container and checkpoint go.
    shim.kill();
    env.docker
        .remove_container(
            &pod,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    std::fs::remove_file(shim.root.join("sandbox").join(&pod)).unwrap();

    shim.restart().await;
    assert!(!lease.exists(), "the IP {ip} is released");
    assert!(
        cache_entries_of(&shim, &pod).is_empty(),
        "no CNI cache entry is left: {:?}",
        cache_entries_of(&shim, &pod)
    );
    assert!(
        shim.log_text()
            .contains("released the network of a sandbox that no longer exists"),
        "the release is logged with its reason"
    );
}

/// A CNI plugin whose ADD never finishes (DEL succeeds).
fn hanging_plugin(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("crid-hang");
    std::fs::write(
        &path,
        "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n  ADD) exec sleep 60 ;;\n  VERSION) echo '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\"]}' ;;\n  *) exit 0 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_left_without_its_network_is_not_ready() {
    let env = test_env().await;
    let bin = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    hanging_plugin(bin.path());
    std::fs::write(
        conf.path().join("10-hang.conflist"),
        r#"{"cniVersion":"0.4.0","name":"hang","plugins":[{"type":"crid-hang"}]}"#,
    )
    .unwrap();
    let mut shim = Shim::builder(BIN)
        .cni_conf_dir(conf.path())
        .arg(format!(
            "--cni-bin-dir={},/usr/lib/cni",
            bin.path().display()
        ))
        .start()
        .await;
    let config = {
        let mut c =
            cri_dockerd_testkit::cri::pod_config("halfway", "default", &shim.pod_uid("halfway"));
        c.log_directory = shim.dir.path().join("pods").display().to_string();
        c
    };
    let name_filter = format!("k8s_POD_halfway_default_{}", shim.pod_uid("halfway"));
    let runtime = shim.runtime.clone();
    let running = tokio::spawn(async move {
        let _ = runtime
            .clone()
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await;
    });
    // Wait for the pause container to run (the plugin's ADD then hangs).
    let started = Instant::now();
    let pod = loop {
        let found = env
            .docker
            .list_containers(Some(ListContainersOptions {
                filters: Some(HashMap::from([(
                    "name".to_string(),
                    vec![name_filter.clone()],
                )])),
                ..Default::default()
            }))
            .await
            .unwrap();
        if let Some(id) = found.into_iter().next().and_then(|c| c.id) {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no pause container"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The shim dies in the middle of CNI ADD; its plugin with it.
    shim.kill();
    running.abort();
    let _ = std::process::Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &bin.path().join("crid-hang").display().to_string(),
        ])
        .status();
    std::fs::remove_file(conf.path().join("10-hang.conflist")).unwrap();
    std::fs::copy(repo_cni_conflist(), conf.path().join("10-bridge.conflist")).unwrap();

    shim.restart().await;
    let mut rt = shim.runtime.clone();
    let listed = rt
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, PodSandboxState::SandboxNotready as i32);
    let status = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);
    assert!(shim.log_text().contains("runs without its pod network"));

    // What the kubelet then does.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let gone = env
        .docker
        .inspect_container(
            &pod,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await;
    assert!(gone.is_err(), "the pause container is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_checkpoint_without_a_container_is_removed() {
    test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let (kept, _) = shim.run_pod("kept").await;
    shim.kill();
    // A checkpoint the kubelet cannot see (it does not parse), of a sandbox
    // that does not exist; and a good one, whose sandbox the kubelet still
    // has to stop.
    let orphan = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let sandbox_dir = shim.root.join("sandbox");
    std::fs::write(sandbox_dir.join(orphan), b"{\"version\":\"v1\",\"truncat").unwrap();
    shim.restart().await;
    assert!(
        !sandbox_dir.join(orphan).exists(),
        "the unreadable orphan is removed"
    );
    assert!(sandbox_dir.join(&kept).exists(), "a readable one stays");
    assert!(shim.log_text().contains("removed an unreadable checkpoint"));
    let listed = shim
        .runtime
        .clone()
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(listed.iter().any(|p| p.id == kept));
    assert!(!listed.iter().any(|p| p.id == orphan));
}
