//! Containers in real sandboxes: each test checks what the process inside
//! actually sees.

use std::time::{Duration, Instant};

use bollard::query_parameters::InspectContainerOptions;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::containers::{self, exec, exec_stdout};
use cri_dockerd_testkit::cri::{container_config, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// A running pod with its config; the log directory is the test's own.
async fn pod(shim: &Shim, name: &str) -> (String, PodSandboxConfig) {
    let mut config = pod_config(name, "default", &shim.pod_uid(name));
    config.log_directory = shim
        .dir
        .path()
        .join("pods")
        .join(name)
        .display()
        .to_string();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let id = pods::run(&shim.runtime, config.clone())
        .await
        .expect("RunPodSandbox");
    (id, config)
}

fn sleeper(name: &str) -> ContainerConfig {
    container_config(name, BUSYBOX_IMAGE, &["sleep", "3600"])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_process_sees_its_env_command_workdir_hostname_and_dns() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "see").await;
    let mut config = container_config("app", BUSYBOX_IMAGE, &["sh", "-c"]);
    config.args = vec![
        "echo \"$FOO $0 $1\" && sleep 3600".into(),
        "first".into(),
        "second".into(),
    ];
    config.envs = vec![KeyValue {
        key: "FOO".into(),
        value: "bar baz".into(),
    }];
    config.working_dir = "/tmp".into();
    let id = containers::run(&shim.runtime, &pod_id, config, &pod_config).await;

    assert_eq!(
        exec_stdout(&shim.runtime, &id, &["sh", "-c", "echo $FOO"]).await,
        "bar baz\n"
    );
    assert_eq!(exec_stdout(&shim.runtime, &id, &["pwd"]).await, "/tmp\n");
    assert_eq!(
        exec_stdout(&shim.runtime, &id, &["hostname"]).await.trim(),
        "see"
    );
    let resolv = exec_stdout(&shim.runtime, &id, &["cat", "/etc/resolv.conf"]).await;
    assert_eq!(
        resolv,
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n"
    );
    let status = containers::status(&shim.runtime, &id).await;
    // Command, args and env reached the process: it printed them.
    let log = std::fs::read_to_string(&status.log_path).unwrap();
    let lines = containers::parse_cri_log(&log);
    assert_eq!(
        lines,
        vec![("stdout".to_string(), "bar baz first second".to_string())]
    );
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    assert_eq!(status.metadata.unwrap().name, "app");
    assert_eq!(status.image.unwrap().image, BUSYBOX_IMAGE);
    // cri-dockerd's rule: the image's first repo digest when it has one
    // (another test or a push may have given it one), else its ID.
    let image = test_env()
        .await
        .docker
        .inspect_image(BUSYBOX_IMAGE)
        .await
        .unwrap();
    let expected = match image.repo_digests.unwrap_or_default().first() {
        Some(digest) => format!("docker-pullable://{digest}"),
        None => format!("docker://{}", image.id.unwrap()),
    };
    assert_eq!(status.image_ref, expected);
    assert!(status.started_at >= status.created_at && status.created_at > 0);
    assert_eq!(status.user.unwrap().linux.unwrap().uid, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_pod_share_the_network_and_pid_modes_differ() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "share").await;
    let mut server = container_config(
        "server",
        BUSYBOX_IMAGE,
        &["sh", "-c", "while true; do echo pong | nc -l -p 9000; done"],
    );
    server.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let server = containers::run(&shim.runtime, &pod_id, server, &pod_config).await;
    let client = containers::run(&shim.runtime, &pod_id, sleeper("client"), &pod_config).await;
    let started = Instant::now();
    let reply = loop {
        let out = exec(
            &shim.runtime,
            &client,
            &["sh", "-c", "nc 127.0.0.1 9000 </dev/null"],
        )
        .await;
        if String::from_utf8_lossy(&out.stdout).contains("pong")
            || started.elapsed() > Duration::from_secs(10)
        {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        reply.trim(),
        "pong",
        "the client reaches the server on 127.0.0.1"
    );

    // PID POD: the pause process is PID 1; CONTAINER: the container's own.
    let pod_pid1 = exec_stdout(&shim.runtime, &server, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(pod_pid1, "/pause\0");
    let own_pid1 = exec_stdout(&shim.runtime, &client, &["cat", "/proc/1/cmdline"]).await;
    assert_eq!(own_pid1, "sleep\x003600\x00");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_reasons() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "exits").await;
    let ok = containers::run(
        &shim.runtime,
        &pod_id,
        container_config("ok", BUSYBOX_IMAGE, &["true"]),
        &pod_config,
    )
    .await;
    let fail = containers::run(
        &shim.runtime,
        &pod_id,
        container_config("fail", BUSYBOX_IMAGE, &["sh", "-c", "exit 3"]),
        &pod_config,
    )
    .await;
    let mut hog = container_config("hog", BUSYBOX_IMAGE, &["tail", "/dev/zero"]);
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = containers::run(&shim.runtime, &pod_id, hog, &pod_config).await;

    let s = containers::wait_exited(&shim.runtime, &ok).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    assert!(s.finished_at >= s.started_at && s.started_at > 0);
    let s = containers::wait_exited(&shim.runtime, &fail).await;
    assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"));
    let s = containers::wait_exited(&shim.runtime, &hog).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_written_in_cri_format() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "logs").await;
    let script = "echo out-1; echo err-1 >&2; echo out-2; head -c 102400 /dev/zero | tr '\\0' x; echo; echo done";
    let id = containers::run(
        &shim.runtime,
        &pod_id,
        container_config("logger", BUSYBOX_IMAGE, &["sh", "-c", script]),
        &pod_config,
    )
    .await;
    let status = containers::wait_exited(&shim.runtime, &id).await;
    assert!(
        status.log_path.ends_with("logger/0.log"),
        "{}",
        status.log_path
    );
    let text = std::fs::read_to_string(&status.log_path).expect("the CRI log file");
    let lines = containers::parse_cri_log(&text);
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|(s, _)| s == "stdout")
        .map(|(_, l)| l.as_str())
        .collect();
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|(s, _)| s == "stderr")
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(stderr, vec!["err-1"]);
    assert_eq!(stdout.len(), 4, "{stdout:?}");
    assert_eq!(&stdout[..2], &["out-1", "out-2"]);
    assert_eq!(
        stdout[2],
        "x".repeat(102400),
        "the 100 KiB line comes back whole"
    );
    assert_eq!(stdout[3], "done");
    assert!(
        text.lines().any(|l| l.contains(" stdout P ")),
        "long lines are split into P parts"
    );

    containers::remove(&shim.runtime, &id).await;
    assert!(
        !std::path::Path::new(&status.log_path).exists(),
        "the log goes away with the container"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_survive_a_killed_shim_without_loss_or_duplicates() {
    test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "counter").await;
    let script = "i=0; while [ $i -lt 600 ]; do echo $i; i=$((i+1)); usleep 10000; done";
    let id = containers::run(
        &shim.runtime,
        &pod_id,
        container_config("counter", BUSYBOX_IMAGE, &["sh", "-c", script]),
        &pod_config,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shim.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shim.restart().await;
    let status = containers::wait_exited(&shim.runtime, &id).await;
    let text = std::fs::read_to_string(&status.log_path).unwrap();
    let numbers: Vec<u32> = containers::parse_cri_log(&text)
        .iter()
        .map(|(_, l)| l.parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..600).collect::<Vec<_>>(),
        "every number once, in order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_container_log_starts_a_new_file() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "rotate").await;
    let script = "i=0; while true; do echo line-$i; i=$((i+1)); usleep 20000; done";
    let id = containers::run(
        &shim.runtime,
        &pod_id,
        container_config("rot", BUSYBOX_IMAGE, &["sh", "-c", script]),
        &pod_config,
    )
    .await;
    let path = containers::status(&shim.runtime, &id).await.log_path;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rotated = format!("{path}.20260101-000000");
    std::fs::rename(&path, &rotated).unwrap();
    shim.runtime
        .clone()
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = containers::parse_cri_log(&std::fs::read_to_string(&rotated).unwrap());
    let new = containers::parse_cri_log(
        &std::fs::read_to_string(&path).expect("a new file at the same path"),
    );
    assert!(!old.is_empty() && !new.is_empty());
    let last_old: u32 = old
        .last()
        .unwrap()
        .1
        .trim_start_matches("line-")
        .parse()
        .unwrap();
    let first_new: u32 = new[0].1.trim_start_matches("line-").parse().unwrap();
    assert_eq!(
        first_new,
        last_old + 1,
        "nothing lost or repeated across the rotation"
    );

    containers::stop(&shim.runtime, &id, 0).await;
    let err = shim
        .runtime
        .clone()
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "a stopped container's log cannot be reopened"
    );
}

/// The kubelet's rotation, many times over while the container writes as
/// fast as it can: after each ReopenContainerLog returns, the file is
/// already there, takes the new lines, and the renamed one no longer grows.
#[tokio::test(flavor = "multi_thread")]
async fn reopen_under_fast_writes_always_leaves_a_file() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "rotfast").await;
    let script = "i=0; while true; do echo line-$i; i=$((i+1)); done";
    let id = containers::run(
        &shim.runtime,
        &pod_id,
        container_config("fast", BUSYBOX_IMAGE, &["sh", "-c", script]),
        &pod_config,
    )
    .await;
    let path = containers::status(&shim.runtime, &id).await.log_path;
    let started = std::time::Instant::now();
    while std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no log lines");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut runtime = shim.runtime.clone();
    for round in 0..30 {
        let rotated = format!("{path}.{round}");
        std::fs::rename(&path, &rotated).unwrap();
        runtime
            .reopen_container_log(ReopenContainerLogRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        assert!(
            std::path::Path::new(&path).exists(),
            "round {round}: no log file right after ReopenContainerLog returned"
        );
        let frozen = std::fs::metadata(&rotated).unwrap().len();
        let started = std::time::Instant::now();
        while std::fs::metadata(&path).unwrap().len() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "round {round}: the new file gets no lines"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            std::fs::metadata(&rotated).unwrap().len(),
            frozen,
            "round {round}: the rotated file grew after the reopen"
        );
        std::fs::remove_file(&rotated).unwrap();
    }
}

/// ContainerStatus reports each mount's propagation as Docker holds it
/// (critest's mount propagation tests read it back). The container is only
/// created: starting an rslave or rshared bind needs a source under a shared
/// mount, which a test cannot assume of the host.
#[tokio::test(flavor = "multi_thread")]
async fn container_status_reports_mount_propagation() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "prop").await;
    let host_dir = tempfile::tempdir().unwrap();
    let mut config = sleeper("prop");
    let wanted = [
        ("/private", MountPropagation::PropagationPrivate),
        ("/slave", MountPropagation::PropagationHostToContainer),
        ("/shared", MountPropagation::PropagationBidirectional),
    ];
    config.mounts = wanted
        .iter()
        .map(|(path, propagation)| Mount {
            container_path: (*path).into(),
            host_path: host_dir.path().display().to_string(),
            propagation: *propagation as i32,
            ..Default::default()
        })
        .collect();
    let id = containers::create(&shim.runtime, &pod_id, config, &pod_config)
        .await
        .expect("CreateContainer");
    let status = containers::status(&shim.runtime, &id).await;
    let mut seen: Vec<(String, i32)> = status
        .mounts
        .iter()
        .map(|m| (m.container_path.clone(), m.propagation))
        .collect();
    seen.sort();
    let mut expected: Vec<(String, i32)> = wanted
        .iter()
        .map(|(path, propagation)| (path.to_string(), *propagation as i32))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(
        status
            .mounts
            .iter()
            .all(|m| m.host_path == host_dir.path().display().to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_rootfs_capabilities_and_users() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "sec").await;
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("hello"), "from the host").unwrap();
    let mut config = sleeper("locked");
    config.mounts = vec![
        Mount {
            container_path: "/ro".into(),
            host_path: host_dir.path().display().to_string(),
            readonly: true,
            ..Default::default()
        },
        Mount {
            container_path: "/rw".into(),
            host_path: host_dir.path().display().to_string(),
            ..Default::default()
        },
    ];
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            run_as_user: Some(Int64Value { value: 1234 }),
            run_as_group: Some(Int64Value { value: 1234 }),
            supplemental_groups: vec![5555],
            readonly_rootfs: true,
            no_new_privs: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = containers::run(&shim.runtime, &pod_id, config, &pod_config).await;
    assert_eq!(
        exec_stdout(&shim.runtime, &id, &["cat", "/ro/hello"]).await,
        "from the host"
    );
    let write_ro = exec(&shim.runtime, &id, &["sh", "-c", "echo x > /ro/new"]).await;
    assert_ne!(write_ro.exit_code, 0, "a read-only mount refuses writes");
    assert!(
        String::from_utf8_lossy(&write_ro.stderr).contains("Read-only"),
        "{:?}",
        String::from_utf8_lossy(&write_ro.stderr)
    );
    let write_root = exec(&shim.runtime, &id, &["sh", "-c", "echo x > /rootfile"]).await;
    assert_ne!(write_root.exit_code, 0, "a read-only rootfs refuses writes");
    let status = exec_stdout(&shim.runtime, &id, &["cat", "/proc/self/status"]).await;
    let cap_eff = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert_eq!(
        cap_eff.split_whitespace().nth(1).unwrap(),
        "0000000000000000"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1'))
    );
    let id_out = exec_stdout(&shim.runtime, &id, &["id"]).await;
    assert!(
        id_out.starts_with("uid=1234(tester) gid=1234(tester)"),
        "{id_out}"
    );
    assert!(id_out.contains("5555"), "supplemental group: {id_out}");
    let user = containers::status(&shim.runtime, &id)
        .await
        .user
        .unwrap()
        .linux
        .unwrap();
    assert_eq!((user.uid, user.gid), (1234, 1234));
    assert!(user.supplemental_groups.contains(&5555));

    // The writable mount works and the host sees the file.
    let mut writer = container_config(
        "writer",
        BUSYBOX_IMAGE,
        &["sh", "-c", "echo written > /rw/out"],
    );
    writer.mounts = vec![Mount {
        container_path: "/rw".into(),
        host_path: host_dir.path().display().to_string(),
        ..Default::default()
    }];
    let writer = containers::run(&shim.runtime, &pod_id, writer, &pod_config).await;
    assert_eq!(
        containers::wait_exited(&shim.runtime, &writer)
            .await
            .exit_code,
        0
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.path().join("out")).unwrap(),
        "written\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_privileged_container_sees_host_devices() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    // Machines without every capability in root's bounding set run
    // privileged containers through the test-only runc-bounded runtime.
    let runtimes = env
        .docker
        .info()
        .await
        .unwrap()
        .runtimes
        .unwrap_or_default();
    let handler = if runtimes.contains_key("runc-bounded") {
        "runc-bounded"
    } else {
        ""
    };
    let mut config = pod_config("priv", "default", &shim.pod_uid("priv"));
    config.log_directory = shim.dir.path().join("pods/priv").display().to_string();
    let pod_id = shim
        .runtime
        .clone()
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    // A privileged container runs without seccomp, whatever profile it
    // names (Docker 28 would apply it).
    let block_hostname = shim.dir.path().join("block-hostname.json");
    std::fs::write(
        &block_hostname,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let mut privileged = sleeper("priv");
    privileged.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            seccomp: Some(SecurityProfile {
                profile_type: security_profile::ProfileType::Localhost as i32,
                localhost_ref: block_hostname.display().to_string(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let privileged = containers::run(&shim.runtime, &pod_id, privileged, &config).await;
    exec_stdout(
        &shim.runtime,
        &privileged,
        &["hostname", "renamed-by-privileged"],
    )
    .await;
    let plain = containers::run(&shim.runtime, &pod_id, sleeper("plain"), &config).await;
    let host_devices = std::fs::read_dir("/dev").unwrap().count();
    let seen = exec_stdout(&shim.runtime, &privileged, &["ls", "-1", "/dev"])
        .await
        .lines()
        .count();
    let seen_plain = exec_stdout(&shim.runtime, &plain, &["ls", "-1", "/dev"])
        .await
        .lines()
        .count();
    assert!(
        seen > seen_plain,
        "privileged sees more devices ({seen}) than unprivileged ({seen_plain})"
    );
    assert!(
        seen + 10 >= host_devices,
        "privileged sees the host's devices ({seen} of {host_devices})"
    );
    let inspect = env
        .docker
        .inspect_container(&privileged, None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(inspect.host_config.unwrap().privileged, Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_output_exit_codes_and_timeouts() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "exec").await;
    let id = containers::run(&shim.runtime, &pod_id, sleeper("box"), &pod_config).await;
    let out = exec(
        &shim.runtime,
        &id,
        &["sh", "-c", "echo to-out; echo to-err >&2; exit 7"],
    )
    .await;
    assert_eq!(out.stdout, b"to-out\n");
    assert_eq!(out.stderr, b"to-err\n");
    assert_eq!(out.exit_code, 7);

    let started = Instant::now();
    let err = shim
        .runtime
        .clone()
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "10".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let pid = cri_dockerd_testkit::cri::docker_pid(&env.docker, &id).await;
    let ps = exec_stdout(&shim.runtime, &id, &["ps", "-o", "args"]).await;
    assert!(
        !ps.contains("sleep 10"),
        "the timed-out process is gone: {ps} (container pid {pid})"
    );

    let err = shim
        .runtime
        .clone()
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_resource_updates() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "stats").await;
    let busy = containers::run(
        &shim.runtime,
        &pod_id,
        container_config(
            "busy",
            BUSYBOX_IMAGE,
            &["sh", "-c", "while true; do :; done"],
        ),
        &pod_config,
    )
    .await;
    let idle = containers::run(&shim.runtime, &pod_id, sleeper("idle"), &pod_config).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = shim
        .runtime
        .clone()
        .container_stats(ContainerStatsRequest {
            container_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(
        stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 100_000_000,
        "busy burnt CPU"
    );
    let memory = stats.memory.unwrap();
    assert!(memory.usage_bytes.unwrap().value > 0 && memory.working_set_bytes.unwrap().value > 0);
    // Writable layers are measured in the background, at once after a
    // start and then every few seconds.
    let started = std::time::Instant::now();
    loop {
        let layer = shim
            .runtime
            .clone()
            .container_stats(ContainerStatsRequest {
                container_id: busy.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap()
            .writable_layer;
        if let Some(layer) = layer {
            assert!(layer.inodes_used.unwrap().value > 0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no writable layer figure"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats.attributes.unwrap().metadata.unwrap().name, "busy");

    let listed = shim
        .runtime
        .clone()
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: pod_id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let mut ids: Vec<String> = listed
        .iter()
        .map(|s| s.attributes.as_ref().unwrap().id.clone())
        .collect();
    ids.sort();
    let mut expected = vec![busy.clone(), idle.clone()];
    expected.sort();
    assert_eq!(ids, expected, "one entry per container");

    let pod_stats = shim
        .runtime
        .clone()
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = pod_stats.linux.unwrap();
    assert_eq!(linux.containers.len(), 2);
    let eth0 = linux
        .network
        .unwrap()
        .default_interface
        .expect("eth0 counters");
    assert_eq!(eth0.name, "eth0");
    assert!(eth0.tx_bytes.unwrap().value > 0 || eth0.rx_bytes.unwrap().value > 0);
    assert!(linux.process.unwrap().process_count.unwrap().value >= 3);

    shim.runtime
        .clone()
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: idle.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_shares: 256,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let host = env
        .docker
        .inspect_container(&idle, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(host.memory, Some(96 << 20));
    assert_eq!(host.cpu_shares, Some(256));
    let status = containers::status(&shim.runtime, &idle).await;
    assert_eq!(
        status
            .resources
            .unwrap()
            .linux
            .unwrap()
            .memory_limit_in_bytes,
        96 << 20
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_clean_errors() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod_id, pod_config) = pod(&shim, "errs").await;
    let id = containers::run(&shim.runtime, &pod_id, sleeper("one"), &pod_config).await;
    let created = containers::create(&shim.runtime, &pod_id, sleeper("two"), &pod_config)
        .await
        .unwrap();

    let list = |filter: ContainerFilter| {
        let client = shim.runtime.clone();
        async move {
            client
                .clone()
                .list_containers(ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
        }
    };
    let in_pod = list(ContainerFilter {
        pod_sandbox_id: pod_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(in_pod.len(), 2);
    let running = list(ContainerFilter {
        pod_sandbox_id: pod_id.clone(),
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(
        running.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![id.clone()]
    );
    let created_only = list(ContainerFilter {
        pod_sandbox_id: pod_id.clone(),
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerCreated as i32,
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(created_only.len(), 1);
    assert_eq!(created_only[0].id, created);
    let by_prefix = list(ContainerFilter {
        id: id[..10].to_string(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_prefix.len(), 1);
    assert_eq!(by_prefix[0].pod_sandbox_id, pod_id);
    let by_label = list(ContainerFilter {
        label_selector: [(
            "io.kubernetes.container.name".to_string(),
            "two".to_string(),
        )]
        .into(),
        pod_sandbox_id: pod_id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_label.len(), 1);

    let missing = "f".repeat(64);
    let err = shim
        .runtime
        .clone()
        .container_status(ContainerStatusRequest {
            container_id: missing.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = shim
        .runtime
        .clone()
        .start_container(StartContainerRequest {
            container_id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    containers::stop(&shim.runtime, &missing, 1).await;
    containers::remove(&shim.runtime, &missing).await;
    let err = containers::create(&shim.runtime, &missing, sleeper("x"), &pod_config)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "unknown sandbox");

    let err = containers::create(
        &shim.runtime,
        &pod_id,
        container_config("noimg", "crid-test.local/absent:v1", &["true"]),
        &pod_config,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains("crid-test.local/absent:v1"),
        "{}",
        err.message()
    );
    let name = format!("k8s_noimg_errs_default_{}_0", shim.pod_uid("errs"));
    let filters = std::collections::HashMap::from([("name".to_string(), vec![name])]);
    let left = env
        .docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "a failed create leaves no container: {left:?}"
    );

    // Docker itself rejects this one (CPUs this machine does not have).
    let mut greedy = sleeper("greedy");
    greedy.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpuset_cpus: "250-255".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = containers::create(&shim.runtime, &pod_id, greedy, &pod_config)
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    let name = format!("k8s_greedy_errs_default_{}_0", shim.pod_uid("errs"));
    let filters = std::collections::HashMap::from([("name".to_string(), vec![name])]);
    let left = env
        .docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "a create Docker rejects leaves no container: {left:?}"
    );

    pods::stop(&shim.runtime, &pod_id).await;
    let err = containers::create(&shim.runtime, &pod_id, sleeper("late"), &pod_config)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "creating into a stopped sandbox"
    );
    assert_eq!(
        containers::status(&shim.runtime, &id).await.state,
        ContainerState::ContainerExited as i32,
        "StopPodSandbox stops its containers"
    );
}
