//! Exec, attach and port-forward through the streaming server, with the
//! SPDY and WebSocket protocols kubectl and crictl speak.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::containers::{self, exec_stdout};
use cri_dockerd_testkit::cri::{container_config, docker_pid, host_network, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::netns::serve_in_netns;
use cri_dockerd_testkit::streaming::{self, Options};
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

async fn running_box(shim: &Shim, name: &str) -> (String, String, PodSandboxConfig) {
    let (pod, config) = shim.run_pod(name).await;
    let id = shim.run_sleeper(&pod, &config, "box").await;
    (pod, id, config)
}

async fn exec_url(shim: &Shim, container: &str, cmd: &[&str], stdin: bool, tty: bool) -> String {
    shim.runtime
        .clone()
        .exec(ExecRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_every_spdy_protocol_version() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (_, id, _) = running_box(&shim, "spdy").await;
    for protocol in [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ] {
        let url = exec_url(&shim, &id, &["echo", "hello"], false, false).await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let out = streaming::spdy_command(
            &url,
            protocol,
            Options {
                stdout: true,
                stderr: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(out.stdout, b"hello\n", "{protocol}");
        if protocol.starts_with("v4") {
            assert_eq!(out.exit_code(), Some(0));
        } else {
            assert!(out.error.is_empty(), "success is silence before v4");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_round_trips_a_megabyte_and_stderr_is_separate() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (_, id, _) = running_box(&shim, "stdin").await;
    let payload: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();

    let url = exec_url(&shim, &id, &["cat"], true, false).await;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdin: Some(payload.clone()),
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.stdout.len(), payload.len());
    assert!(
        out.stdout == payload,
        "1 MiB through cat over SPDY comes back intact"
    );
    assert_eq!(out.exit_code(), Some(0));

    let url = exec_url(&shim, &id, &["cat"], true, false).await;
    let out = streaming::ws_command(
        &url,
        "v5.channel.k8s.io",
        Options {
            stdin: Some(payload.clone()),
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert!(
        out.stdout == payload,
        "1 MiB through cat over WebSocket v5 comes back intact"
    );
    assert_eq!(out.exit_code(), Some(0));

    let url = exec_url(
        &shim,
        &id,
        &["sh", "-c", "echo out; echo err >&2"],
        false,
        false,
    )
    .await;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let url = exec_url(
        &shim,
        &id,
        &["sh", "-c", "echo out; echo err >&2"],
        false,
        false,
    )
    .await;
    let out = streaming::ws_command(
        &url,
        "v4.base64.channel.k8s.io",
        Options {
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_come_back_in_the_status() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (_, id, _) = running_box(&shim, "exit").await;
    let url = exec_url(&shim, &id, &["sh", "-c", "exit 3"], false, false).await;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.status()["reason"], "NonZeroExitCode");
    assert_eq!(out.exit_code(), Some(3));
    let url = exec_url(&shim, &id, &["sh", "-c", "exit 3"], false, false).await;
    let out = streaming::ws_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.exit_code(), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_exec_sees_the_resized_terminal() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (_, id, _) = running_box(&shim, "tty").await;
    let url = exec_url(&shim, &id, &["sh", "-c", "sleep 1; stty size"], false, true).await;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            tty: true,
            resize: Some((100, 40)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "40 100");
    let url = exec_url(&shim, &id, &["sh", "-c", "sleep 1; stty size"], false, true).await;
    let out = streaming::ws_command(
        &url,
        "v5.channel.k8s.io",
        Options {
            stdout: true,
            tty: true,
            resize: Some((90, 30)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30 90");
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_a_containers_stdin_and_tty() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let mut config = pod_config("attach", "default", &shim.pod_uid("attach"));
    config.log_directory = shim.dir.path().join("pods/attach").display().to_string();
    let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();

    let mut reader = container_config(
        "reader",
        BUSYBOX_IMAGE,
        &["sh", "-c", "read line; echo got $line"],
    );
    reader.stdin = true;
    reader.stdin_once = true;
    let reader = containers::run(&shim.runtime, &pod, reader, &config).await;
    let url = shim
        .runtime
        .clone()
        .attach(AttachRequest {
            container_id: reader.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdin: Some(b"hello\n".to_vec()),
            stdout: true,
            stderr: true,
            keep_stdin_open: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.stdout, b"got hello\n");
    assert_eq!(
        containers::wait_exited(&shim.runtime, &reader)
            .await
            .exit_code,
        0
    );

    let mut shell = container_config("shell", BUSYBOX_IMAGE, &["sh"]);
    shell.stdin = true;
    shell.tty = true;
    let shell = containers::run(&shim.runtime, &pod, shell, &config).await;
    let url = shim
        .runtime
        .clone()
        .attach(AttachRequest {
            container_id: shell.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdin: Some(b"echo attached-$((1+2))\nexit\n".to_vec()),
            stdout: true,
            tty: true,
            keep_stdin_open: true,
            ..Default::default()
        },
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("attached-3"),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        containers::wait_exited(&shim.runtime, &shell)
            .await
            .exit_code,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_into_a_pod_and_a_host_network_pod() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, _, _) = running_box(&shim, "pf").await;
    let pid = docker_pid(&env.docker, &pod).await;
    let server = serve_in_netns(pid, 7777, b"pong from the pod\n", 2);
    let url = |ports: Vec<i32>, pod: String| {
        let client = shim.runtime.clone();
        async move {
            client
                .clone()
                .port_forward(PortForwardRequest {
                    pod_sandbox_id: pod,
                    port: ports,
                })
                .await
                .unwrap()
                .into_inner()
                .url
        }
    };
    let (back, error) =
        streaming::spdy_port_forward(&url(vec![7777], pod.clone()).await, 7777, b"ping").await;
    assert_eq!(back, b"pong from the pod\n");
    assert!(error.is_empty(), "{}", String::from_utf8_lossy(&error));
    let back = streaming::ws_port_forward(&url(vec![7777], pod.clone()).await, 7777, b"ping").await;
    assert_eq!(back, b"pong from the pod\n");
    server.join().unwrap();

    // Nothing listens on 7778: the error stream says so.
    let (back, error) =
        streaming::spdy_port_forward(&url(vec![7778], pod.clone()).await, 7778, b"x").await;
    assert!(back.is_empty());
    assert!(
        String::from_utf8_lossy(&error).contains("7778"),
        "{}",
        String::from_utf8_lossy(&error)
    );

    // A host-network pod forwards to the host's loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut s, b"pong from the host\n").unwrap();
    });
    let mut host_config = host_network(pod_config("pfhost", "default", &shim.pod_uid("pfhost")));
    host_config.log_directory = shim.dir.path().join("pods/pfhost").display().to_string();
    let host_pod = pods::run(&shim.runtime, host_config).await.unwrap();
    let (back, _) =
        streaming::spdy_port_forward(&url(vec![i32::from(port)], host_pod).await, port, b"ping")
            .await;
    assert_eq!(back, b"pong from the host\n");
    host_server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reused_and_expired_tokens_are_refused() {
    test_env().await;
    let shim = Shim::builder(BIN)
        .with_cni()
        .arg("--streaming-token-ttl=1s")
        .start()
        .await;
    let (_, id, _) = running_box(&shim, "tokens").await;
    let url = exec_url(&shim, &id, &["true"], false, false).await;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.exit_code(), Some(0));
    assert_eq!(streaming::upgrade_status(&url).await, 404, "a used token");
    let url = exec_url(&shim, &id, &["true"], false, false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        streaming::upgrade_status(&url).await,
        404,
        "an expired token"
    );
    let made_up = format!(
        "{}/exec/AAAAAAAAAAAAAAAAAAAAAA",
        url.rsplitn(3, '/').nth(2).unwrap()
    );
    assert_eq!(
        streaming::upgrade_status(&made_up).await,
        404,
        "an unknown token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_execs_all_complete() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (_, id, _) = running_box(&shim, "many").await;
    let started = Instant::now();
    let mut sessions = Vec::new();
    for i in 0..20 {
        let url = exec_url(
            &shim,
            &id,
            &["sh", "-c", &format!("sleep 0.5; echo session-{i}")],
            false,
            false,
        )
        .await;
        sessions.push(tokio::spawn(async move {
            let protocol = if i % 2 == 0 {
                "v4.channel.k8s.io"
            } else {
                "v5.channel.k8s.io"
            };
            let out = if i % 2 == 0 {
                streaming::spdy_command(
                    &url,
                    protocol,
                    Options {
                        stdout: true,
                        stderr: true,
                        ..Default::default()
                    },
                )
                .await
            } else {
                streaming::ws_command(
                    &url,
                    protocol,
                    Options {
                        stdout: true,
                        stderr: true,
                        ..Default::default()
                    },
                )
                .await
            };
            (i, out)
        }));
    }
    for session in sessions {
        let (i, out) = session.await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("session-{i}\n")
        );
        assert_eq!(out.exit_code(), Some(0));
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_leaves_nothing_running() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (_, id, _) = running_box(&shim, "gone").await;
    let url = exec_url(
        &shim,
        &id,
        &["sh", "-c", "echo started; sleep 300"],
        false,
        false,
    )
    .await;
    let (tcp, _) = streaming::spdy_upgrade(&url, &["v4.channel.k8s.io"])
        .await
        .unwrap();
    let conn = cri_dockerd_streaming::spdy::SpdyConnection::new(
        tcp,
        cri_dockerd_streaming::spdy::conn::Role::Client,
    );
    let _error = conn
        .open_stream(vec![("streamType".into(), "error".into())])
        .await
        .unwrap();
    let mut stdout = conn
        .open_stream(vec![("streamType".into(), "stdout".into())])
        .await
        .unwrap();
    let _stderr = conn
        .open_stream(vec![("streamType".into(), "stderr".into())])
        .await
        .unwrap();
    let mut first = [0u8; 8];
    tokio::io::AsyncReadExt::read_exact(&mut stdout.reader, &mut first)
        .await
        .unwrap();
    assert_eq!(&first, b"started\n");
    drop(stdout);
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = exec_stdout(&shim.runtime, &id, &["ps", "-o", "args"]).await;
        if !ps.contains("sleep 300") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exec outlived its client: {ps}\n{}",
            shim.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The server still serves new sessions.
    let url = exec_url(&shim, &id, &["echo", "still"], false, false).await;
    let out = streaming::spdy_command(
        &url,
        "v4.channel.k8s.io",
        Options {
            stdout: true,
            stderr: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.stdout, b"still\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_streaming_requests_are_rejected() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, id, _) = running_box(&shim, "bad").await;
    let exec = |req: ExecRequest| {
        let client = shim.runtime.clone();
        async move { client.clone().exec(req).await.unwrap_err().code() }
    };
    let cmd = vec!["true".to_string()];
    assert_eq!(
        exec(ExecRequest {
            container_id: id.clone(),
            cmd: cmd.clone(),
            ..Default::default()
        })
        .await,
        tonic::Code::InvalidArgument,
        "no streams"
    );
    assert_eq!(
        exec(ExecRequest {
            container_id: id.clone(),
            cmd: cmd.clone(),
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await,
        tonic::Code::InvalidArgument,
        "tty and stderr"
    );
    assert_eq!(
        exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec![],
            stdout: true,
            ..Default::default()
        })
        .await,
        tonic::Code::InvalidArgument,
        "no command"
    );
    assert_eq!(
        exec(ExecRequest {
            container_id: "f".repeat(64),
            cmd: cmd.clone(),
            stdout: true,
            ..Default::default()
        })
        .await,
        tonic::Code::NotFound
    );
    let err = shim
        .runtime
        .clone()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "f".repeat(64),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = shim
        .runtime
        .clone()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    containers::stop(&shim.runtime, &id, 0).await;
    assert_eq!(
        exec(ExecRequest {
            container_id: id.clone(),
            cmd,
            stdout: true,
            ..Default::default()
        })
        .await,
        tonic::Code::FailedPrecondition,
        "a stopped container"
    );
    let _ = SocketAddr::from(([127, 0, 0, 1], 0));
}
