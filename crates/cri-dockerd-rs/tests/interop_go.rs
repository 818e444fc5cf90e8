//! The streaming server against Go's spdystream, the SPDY implementation in
//! kubectl, crictl and the kubelet (tests/interop/streamclient).

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::docker_pid;
use cri_dockerd_testkit::netns::serve_in_netns;
use cri_dockerd_testkit::streaming::go_stream;
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

#[tokio::test(flavor = "multi_thread")]
async fn go_spdystream_exec_and_port_forward() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("go").await;
    let id = shim.run_sleeper(&pod, &config, "box").await;

    let exec = |cmd: &[&str], stdin: bool| {
        let client = shim.runtime.clone();
        let request = ExecRequest {
            container_id: id.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdin,
            stdout: true,
            stderr: true,
            tty: false,
        };
        async move { client.clone().exec(request).await.unwrap().into_inner().url }
    };

    let url = exec(&["sh", "-c", "echo out; echo err >&2; exit 5"], false).await;
    let report = go_stream(&["exec", &url], b"").await;
    assert_eq!(report["stdout"], "out\n");
    assert_eq!(report["stderr"], "err\n");
    let status: serde_json::Value =
        serde_json::from_str(report["error"].as_str().unwrap()).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "5");

    let big = "x".repeat(200_000);
    let url = exec(&["cat"], true).await;
    let report = go_stream(&["exec", &url, "-"], big.as_bytes()).await;
    assert_eq!(
        report["stdout"].as_str().unwrap().len(),
        big.len(),
        "more than a flow-control window each way"
    );
    let status: serde_json::Value =
        serde_json::from_str(report["error"].as_str().unwrap()).unwrap();
    assert_eq!(status["status"], "Success");

    let pid = docker_pid(&env.docker, &pod).await;
    let server = serve_in_netns(pid, 7070, b"hello go\n", 1);
    let url = shim
        .runtime
        .clone()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![7070],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let report = go_stream(&["portforward", &url, "7070", "hi"], b"").await;
    assert_eq!(report["data"], "hello go\n");
    assert_eq!(report["error"], "");
    server.join().unwrap();
}
