//! The streaming server under connections that hold resources and do
//! nothing: idle ones, ones that never finish their headers, silent
//! sessions, and more connections than the process has file descriptors.
//! Exec and port-forward must still be served, and the idle must be closed.
//! The shim runs with short limits (the defaults are 30 s for headers and
//! 4 h for silent sessions, as in the kubelet's streaming library).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::audit::leaks;
use cri_dockerd_testkit::cri::{container_config, containers, host_network, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::streaming::{self, Options};
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

async fn limited_shim(binary: &std::path::Path) -> Shim {
    Shim::builder(binary)
        .arg(format!(
            "--streaming-read-header-timeout={}s",
            HEADER_TIMEOUT.as_secs()
        ))
        .arg(format!(
            "--streaming-connection-idle-timeout={}s",
            IDLE_TIMEOUT.as_secs()
        ))
        .arg("--log-level=info")
        .start()
        .await
}

/// A host-network pod with a sleeping container; its ids.
async fn pod_with_container(shim: &Shim) -> (String, String) {
    let config = host_network(pod_config("lim", "default", &shim.pod_uid("lim")));
    let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();
    let ctr = containers::run(
        &shim.runtime,
        &pod,
        container_config("c", BUSYBOX_IMAGE, &["sleep", "3600"]),
        &config,
    )
    .await;
    (pod, ctr)
}

async fn exec_url(shim: &Shim, container: &str, cmd: &[&str]) -> String {
    shim.runtime
        .clone()
        .exec(ExecRequest {
            container_id: container.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// An exec over WebSocket (v5), as kubectl 1.31+ runs it, within `limit`.
async fn ws_exec(url: &str, limit: Duration) -> streaming::Outcome {
    let options = Options {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    tokio::time::timeout(
        limit,
        streaming::ws_command(url, "v5.channel.k8s.io", options),
    )
    .await
    .expect("the exec ends in time")
}

async fn echo_works(shim: &Shim, container: &str) {
    let url = exec_url(shim, container, &["echo", "served"]).await;
    let outcome = ws_exec(&url, Duration::from_secs(20)).await;
    assert_eq!(outcome.stdout, b"served\n");
}

fn server_address(url: &str) -> String {
    url.strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// Waits for the server to close each connection (EOF or reset).
fn assert_all_closed(conns: Vec<std::net::TcpStream>, within: Duration) {
    let started = Instant::now();
    for mut conn in conns {
        let left = within
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        conn.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 512];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                // A 408 for a request never finished, then the close.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "a connection still open {:?} after the header timeout: {e}",
                    started.elapsed()
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_unfinished_connections_are_closed_while_exec_and_port_forward_are_served() {
    test_env().await;
    let shim = limited_shim(std::path::Path::new(BIN)).await;
    let (pod, ctr) = pod_with_container(&shim).await;
    let address = server_address(&exec_url(&shim, &ctr, &["true"]).await);

    let mut conns = Vec::new();
    for i in 0..350 {
        let mut conn = std::net::TcpStream::connect(&address).unwrap();
        if i >= 300 {
            // Headers begun, never finished.
            std::io::Write::write_all(
                &mut conn,
                b"GET /exec/whatever HTTP/1.1\r\nHost: x\r\nX-Slow: ",
            )
            .unwrap();
        }
        conns.push(conn);
    }
    let opened = Instant::now();

    // Served meanwhile: an exec, and a port-forward into the (host) network
    // of the pod, to a server of the test's own on loopback.
    echo_works(&shim, &ctr).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4];
            let _ = conn.read_exact(&mut buf);
            let _ = std::io::Write::write_all(&mut conn, b"pong\n");
        }
    });
    let url = shim
        .runtime
        .clone()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![i32::from(port)],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert_eq!(
        streaming::ws_port_forward(&url, port, b"ping").await,
        b"pong\n"
    );
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "served before the idle ones timed out ({:?}): the test would prove less",
        opened.elapsed()
    );

    assert_all_closed(conns, HEADER_TIMEOUT + Duration::from_secs(8));

    // A session that goes silent is closed after the idle timeout, long
    // before its command would end.
    let url = exec_url(&shim, &ctr, &["sleep", "60"]).await;
    let started = Instant::now();
    let outcome = ws_exec(&url, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(
        took >= IDLE_TIMEOUT && took < IDLE_TIMEOUT + Duration::from_secs(7),
        "closed after {took:?}"
    );
    assert!(outcome.exit_code().is_none(), "no exit status: {outcome:?}");
    echo_works(&shim, &ctr).await;
    remove_and_audit(shim).await;
}

async fn remove_and_audit(mut shim: Shim) {
    shim.cleanup().await;
    let found = leaks(&shim, &test_env().await.docker, None).await;
    assert!(found.is_empty(), "{found:?}");
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    test_env().await;
    // The shim with a small descriptor limit, as `LimitNOFILE=` would set.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("cri-dockerd-rs-nofile");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nulimit -n 160\nexec {BIN} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let shim = limited_shim(&wrapper).await;
    let (_pod, ctr) = pod_with_container(&shim).await;
    let address = server_address(&exec_url(&shim, &ctr, &["true"]).await);

    // More connections than descriptors: accept fails with EMFILE.
    let conns: Vec<_> = (0..250)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_time(shim.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_time(shim.pid()) - before;
    // A spinning loop burns a whole core; the shim's other work (Docker's
    // events of the tests running beside this one) stays well below half.
    assert!(
        spent < Duration::from_millis(500),
        "the accept loop spins: {spent:?} of CPU in 1 s"
    );
    assert!(
        shim.log_text()
            .contains("the streaming server cannot accept connections; backing off"),
        "the condition is reported"
    );
    // The accepted ones time out, the waiting ones are accepted and time
    // out in turn; then the server serves again.
    assert_all_closed(conns, HEADER_TIMEOUT * 4 + Duration::from_secs(10));
    echo_works(&shim, &ctr).await;
    assert!(
        shim.log_text()
            .contains("the streaming server accepts connections again")
    );
    remove_and_audit(shim).await;
}
