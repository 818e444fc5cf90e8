//! Docker-out-of-Docker: the `cri-dockerd` service of docker-compose.yml,
//! started by `docker compose` with exactly the file's privileges and mounts
//! from an image assembled offline (testkit::dood), serves the CRI on the
//! host. A client on the host runs a pod and a container through it: the
//! shim inside the container sees the pause process through the host PID
//! namespace, enters its network namespace and builds the bridge on the
//! host. Then a crash of the shim is survived and everything is torn down.

use std::path::Path;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers, docker_pid, pod_config, pods};
use cri_dockerd_testkit::dood::{Compose, DOOD_IMAGE, ensure_dood_image};
use cri_dockerd_testkit::env::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use cri_dockerd_testkit::metrics::{self, Exposition};
use cri_dockerd_testkit::netns::{
    hairpin_mode, host_ipv4_addresses, host_veth_of, in_pod_subnet, ip_reservations, ping_from_host,
};
use cri_dockerd_testkit::shim::channel_for;
use cri_dockerd_testkit::{test_env, unique};
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

async fn connect(
    socket: &Path,
    compose: &Compose,
    limit: Duration,
) -> RuntimeServiceClient<Channel> {
    let started = Instant::now();
    loop {
        if socket.exists()
            && let Ok(channel) = channel_for(socket).await
        {
            let mut client = RuntimeServiceClient::new(channel);
            if client.version(VersionRequest::default()).await.is_ok() {
                return client;
            }
        }
        assert!(
            started.elapsed() < limit,
            "the containerised shim did not serve {} within {limit:?}:\n{}",
            socket.display(),
            compose.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The host PID of the compose container's first process (the supervisor)
/// and how often Docker restarted the container.
async fn container_init(docker: &bollard::Docker, container: &str) -> (i32, i64) {
    let inspect = docker
        .inspect_container(container, None)
        .await
        .expect("inspecting the compose container");
    let pid = inspect.state.and_then(|s| s.pid).unwrap_or(0) as i32;
    (pid, inspect.restart_count.unwrap_or(0))
}

/// The program the supervisor runs: its only child.
fn supervised(supervisor: i32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).ok()?;
    let pids: Vec<i32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    (pids.len() == 1).then(|| pids[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_service_serves_cri_to_the_host_from_a_container() {
    let env = test_env().await;
    let docker = &env.docker;
    ensure_dood_image(docker, &env.engine, Path::new(BIN)).await;

    let state = tempfile::Builder::new()
        .prefix("crid-dood-")
        .tempdir()
        .expect("state directory");
    // A free loopback port for the metrics endpoint (host network).
    let metrics_address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut compose = Compose::new(&unique("crid-dood"))
        .env("CRID_IMAGE", DOOD_IMAGE)
        .env("CRID_RUN_DIR", state.path().display().to_string())
        .env("PAUSE_IMAGE", PAUSE_IMAGE)
        .env("CRID_LOG_LEVEL", "debug")
        .env("CRID_METRICS_ADDR", metrics_address.to_string());
    // The service is privileged. Where root's bounding set lacks a
    // capability, plain runc cannot start that, so the test (only) runs it
    // through runc-bounded, which drops exactly the missing capabilities.
    let runtimes = docker.info().await.unwrap().runtimes.unwrap_or_default();
    let overlay = state.path().join("test-runtime.yml");
    if runtimes.contains_key("runc-bounded") {
        std::fs::write(
            &overlay,
            "services:\n  cri-dockerd:\n    runtime: runc-bounded\n",
        )
        .unwrap();
        compose = compose.overlay(overlay);
    }
    compose.run_ok(&[
        "up",
        "--detach",
        "--no-build",
        "--pull",
        "never",
        "cri-dockerd",
    ]);
    let container = compose
        .run_ok(&["ps", "--quiet", "cri-dockerd"])
        .trim()
        .to_string();
    assert!(
        !container.is_empty(),
        "no cri-dockerd container:\n{}",
        compose.logs()
    );

    let socket = state.path().join("cri-dockerd.sock");
    let mut runtime = connect(&socket, &compose, Duration::from_secs(60)).await;
    let status = runtime
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status through the containerised shim")
        .into_inner();
    let conditions = status.status.expect("runtime status").conditions;
    assert!(
        conditions.iter().all(|c| c.status),
        "runtime and network ready with the image's CNI config: {conditions:?}"
    );
    // The compose file's CRID_METRICS_ADDR: the endpoint on the host's loopback.
    let (status, _, health) = metrics::get(metrics_address, "/healthz").await;
    assert_eq!((status, health.as_str()), (200, "ok\n"));
    let (status, _, exposition) = metrics::get(metrics_address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        Exposition::parse(&exposition)
            .value(
                "cri_dockerd_rs_grpc_requests_total",
                &[("method", "Status"), ("code", "OK")]
            )
            .is_some_and(|n| n >= 1.0),
        "{exposition}"
    );

    // A pod on the CNI network, with its logs where the compose file shares
    // them with the host.
    let uid = unique("dood-");
    let mut config = pod_config("dood", "default", &uid);
    let log_dir = format!("/var/log/pods/default_dood_{uid}");
    config.log_directory = log_dir.clone();
    let pod = pods::run(&runtime, config.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RunPodSandbox through the container: {e}\n{}",
                compose.logs()
            )
        });
    assert!(
        state.path().join("sandbox").join(&pod).is_file(),
        "the checkpoint is in the state directory the compose file mounts"
    );
    let ip = pods::status(&runtime, &pod)
        .await
        .network
        .expect("pod network")
        .ip;
    assert!(in_pod_subnet(&ip), "{ip} is in 10.88.0.0/16");
    let bridge = host_ipv4_addresses("kubelet0");
    assert!(
        bridge.contains("10.88.0.1/16"),
        "the bridge is on the host: {bridge}"
    );
    let pause_pid = docker_pid(docker, &pod).await;
    let veth = host_veth_of(pause_pid).expect("the pod's veth on the host");
    assert_eq!(
        hairpin_mode(&veth),
        "1",
        "hairpin-veth from the compose flags"
    );
    assert!(ping_from_host(&ip), "the host reaches the pod at {ip}");

    let ctr = containers::run(
        &runtime,
        &pod,
        container_config(
            "app",
            BUSYBOX_IMAGE,
            &["sh", "-c", "echo started; exec sleep 3600"],
        ),
        &config,
    )
    .await;
    let seen =
        containers::exec_stdout(&runtime, &ctr, &["ip", "-o", "-4", "addr", "show", "eth0"]).await;
    assert!(
        seen.contains(&format!("{ip}/")),
        "the container shares the pod network: {seen}"
    );
    let log = std::fs::read_to_string(Path::new(&log_dir).join("app/0.log"));
    let started = Instant::now();
    let mut log = log.unwrap_or_default();
    while !log.contains(" stdout F started") && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = std::fs::read_to_string(Path::new(&log_dir).join("app/0.log")).unwrap_or_default();
    }
    assert!(
        log.contains(" stdout F started"),
        "the shim writes the CRI log where the host sees it: {log:?}"
    );

    // The shim crashes; the supervisor starts it again a second later, in
    // the same container; its state survives in the mounts.
    let (supervisor, restarts) = container_init(docker, &container).await;
    let before = supervised(supervisor).expect("the supervised shim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("killing the containerised shim");
    let killed_at = Instant::now();
    while supervised(supervisor).is_none_or(|pid| pid == before) {
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the shim was not started again:\n{}",
            compose.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted_after = killed_at.elapsed();
    assert!(
        restarted_after >= Duration::from_millis(900) && restarted_after < Duration::from_secs(5),
        "started again after {restarted_after:?}, not about a second"
    );
    assert_eq!(
        container_init(docker, &container).await,
        (supervisor, restarts),
        "the supervisor, not Docker, restarted the shim"
    );
    runtime = connect(&socket, &compose, Duration::from_secs(30)).await;
    let back_after = killed_at.elapsed();
    assert!(
        back_after < Duration::from_secs(10),
        "serving again after {back_after:?}"
    );
    let listed = pods::list(
        &runtime,
        Some(PodSandboxFilter {
            id: pod.clone(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].state,
        PodSandboxState::SandboxReady as i32,
        "the pod survives the restart"
    );
    assert_eq!(
        containers::status(&runtime, &ctr).await.state,
        ContainerState::ContainerRunning as i32
    );

    // Teardown leaves nothing: no containers, checkpoint, IP or veth.
    containers::stop(&runtime, &ctr, 0).await;
    containers::remove(&runtime, &ctr).await;
    pods::stop(&runtime, &pod).await;
    pods::remove(&runtime, &pod).await;
    assert!(
        docker.inspect_container(&pod, None).await.is_err(),
        "pause container removed"
    );
    assert!(
        docker.inspect_container(&ctr, None).await.is_err(),
        "container removed"
    );
    assert!(
        !state.path().join("sandbox").join(&pod).exists(),
        "checkpoint removed"
    );
    assert!(
        !ip_reservations("bridge")
            .iter()
            .any(|(_, owner)| owner == &pod),
        "the IP reservation is released"
    );
    assert!(
        !Path::new("/sys/class/net").join(&veth).exists(),
        "the veth is gone"
    );

    // SIGTERM (compose stop) ends the shim cleanly: it removes its socket.
    compose.run_ok(&["stop", "--timeout", "30", "cri-dockerd"]);
    assert!(
        !socket.exists(),
        "the socket is removed on SIGTERM:\n{}",
        compose.logs()
    );
    let exit = docker
        .inspect_container(&container, None)
        .await
        .unwrap()
        .state
        .and_then(|s| s.exit_code);
    assert_eq!(
        exit,
        Some(0),
        "a clean exit on SIGTERM:\n{}",
        compose.logs()
    );
    let _ = std::fs::remove_dir_all(&log_dir);
}
