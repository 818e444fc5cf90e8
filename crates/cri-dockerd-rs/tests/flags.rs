//! Flags as cri-dockerd (cobra/pflag) parses them, checked on the binary:
//! a bare IP for `--streaming-bind-addr`, the last of a repeated flag (as
//! systemd drop-ins append flags), and a refused unknown log level.

use std::process::Command;

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::streaming::{Options, spdy_command};
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

#[tokio::test(flavor = "multi_thread")]
async fn bare_ip_streaming_address_and_repeated_flags() {
    test_env().await;
    // The harness passes --streaming-bind-addr=127.0.0.1:0 and
    // --log-level=debug; the later values must win.
    let shim = Shim::builder(BIN)
        .with_cni()
        .arg("--streaming-bind-addr=127.0.0.1")
        .arg("--log-level")
        .arg("warn")
        .start()
        .await;
    let (pod, config) = shim.run_pod("flags").await;
    let id = shim.run_sleeper(&pod, &config, "box").await;
    let url = shim
        .runtime
        .clone()
        .exec(ExecRequest {
            container_id: id,
            cmd: vec!["echo".into(), "bound".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a URL on 127.0.0.1: {url}"));
    assert_ne!(port, 0);
    let outcome = spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(outcome.stdout, b"bound\n");
    let log = shim.log_text();
    assert!(
        !log.contains(" INFO ") && !log.contains(" DEBUG "),
        "--log-level=warn came last, yet:\n{log}"
    );
}

#[test]
fn bad_values_stop_startup_with_a_message() {
    for (flag, expected) in [
        (
            "--log-level=loud",
            "one of trace, debug, info, warn, error, fatal, panic",
        ),
        (
            "--streaming-bind-addr=127.0.0.1:http",
            "examples: 127.0.0.1",
        ),
        ("--metrics-bind-addr=127.0.0.1:http", "examples: 127.0.0.1"),
        ("--log-format=xml", "possible values: text, json"),
        ("--slow-request-threshold=soon", "invalid duration"),
    ] {
        let output = Command::new(BIN).arg(flag).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{flag}: {stderr}");
    }
}

#[test]
fn a_taken_metrics_port_stops_startup() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg(format!(
            "--container-runtime-endpoint=unix://{}",
            dir.path().join("cri.sock").display()
        ))
        .arg(format!(
            "--metrics-bind-addr={}",
            taken.local_addr().unwrap()
        ))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("binding the metrics endpoint on 127.0.0.1:"),
        "{stderr}"
    );
    assert!(!dir.path().join("cri.sock").exists(), "nothing served");
}
