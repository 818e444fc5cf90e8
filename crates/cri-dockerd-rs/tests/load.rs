//! Load as a busy node sees it, through Python grpcio on its defaults:
//! 8 clients relisting and reading statuses while 2 others run and remove
//! pods, for 20 s, over 10 standing pods. No call may fail, and a reader's
//! round (ListPodSandbox, ListContainers, PodSandboxStatus, ContainerStatus)
//! stays under 200 ms at the 99th percentile on a 2-core machine. `make
//! test` runs it on its own, after the rest of the suite: it measures.

use std::time::Duration;

use cri_dockerd_testkit::audit::{ScenarioNet, leaks};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{Shim, test_env};

/// The release build: what nodes run, and what the figures are about (the
/// debug build is 8x slower). `make test` builds it first and names it in
/// CRID_RELEASE_BIN.
fn release_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("CRID_RELEASE_BIN") {
        let path = std::path::PathBuf::from(path);
        assert!(
            path.exists(),
            "CRID_RELEASE_BIN={} is missing",
            path.display()
        );
        return path;
    }
    // Without make: the release binary next to this build, if it is not
    // older than the code this test was built from.
    let debug = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cri-dockerd-rs"));
    let path = debug
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory")
        .join("release/cri-dockerd-rs");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&path), modified(&debug)) {
        (Some(release), Some(debug_built)) if release >= debug_built => path,
        _ => panic!(
            "{} is missing or older than this build: run `make test`, or `cargo build --release --bin cri-dockerd-rs` and then the test",
            path.display()
        ),
    }
}
const STANDING_PODS: usize = 10;
const SECONDS: u64 = 20;

#[tokio::test(flavor = "multi_thread")]
async fn eight_readers_and_two_writers_for_twenty_seconds() {
    let env = test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let net = ScenarioNet::new(dir.path(), 14);
    let mut builder = Shim::builder(release_binary()).arg("--log-level=info");
    for arg in net.shim_args() {
        builder = builder.arg(arg);
    }
    let mut shim = builder.start().await;
    for i in 0..STANDING_PODS {
        let (pod, config) = shim.run_pod(&format!("standing{i}")).await;
        shim.run_sleeper(&pod, &config, "app").await;
    }
    let work = tempfile::tempdir().unwrap();
    let script = cri_dockerd_testkit::repo_root().join("tests/grpc/load.py");
    let output = tokio::time::timeout(
        Duration::from_secs(SECONDS + 120),
        tokio::process::Command::new("python3")
            .arg(&script)
            .arg(format!("unix://{}", shim.socket.display()))
            .arg(BUSYBOX_IMAGE)
            .arg(&shim.uid_prefix)
            .arg(work.path())
            .arg(SECONDS.to_string())
            .output(),
    )
    .await
    .expect("the load run ends")
    .expect("python3 (scripts/test-env.sh installs grpcio-tools)");
    assert!(
        output.status.success(),
        "load.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "no call failed");
    assert!(seen["rounds"].as_u64().unwrap() > 100, "{seen}");
    assert!(seen["pod_cycles"].as_u64().unwrap() > 0, "{seen}");
    let p99 = seen["p99_ms"].as_f64().unwrap();
    assert!(p99 < 200.0, "a list round's p99 is {p99} ms");
    shim.cleanup().await;
    let found = leaks(&shim, &env.docker, Some(&net)).await;
    assert!(found.is_empty(), "{found:?}");
    shim.kill();
}
