//! Faults: what goes wrong on a node (a shim killed half way, a CNI plugin
//! that fails or hangs, corrupt checkpoints, containers that are not ours,
//! calls that race) and what must hold afterwards. Each scenario ends with
//! the same leak audit (`testkit::audit`): no container, checkpoint, CNI
//! cache entry, IP lease, veth or plugin process of its pods is left.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::audit::{ScenarioNet, leaks};
use cri_dockerd_testkit::cri::{container_config, containers, host_network, pod_config, pods};
use cri_dockerd_testkit::env::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use cri_dockerd_testkit::private_docker::PrivateDocker;
use cri_dockerd_testkit::{Shim, test_env, unique};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// A shim on the scenario's own pod network.
async fn shim_on(net: &ScenarioNet) -> Shim {
    let mut builder = Shim::builder(BIN);
    for arg in net.shim_args() {
        builder = builder.arg(arg);
    }
    builder.start().await
}

/// What the kubelet does with pods it no longer wants: list them, stop and
/// remove each (RemovePodSandbox removes their containers). Every call must
/// succeed.
async fn kubelet_cleanup(shim: &Shim) {
    let pods = shim
        .runtime
        .clone()
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    for pod in pods {
        if !pod
            .metadata
            .as_ref()
            .is_some_and(|m| m.uid.starts_with(&shim.uid_prefix))
        {
            continue;
        }
        let containers = shim
            .runtime
            .clone()
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: pod.id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers;
        for c in containers {
            shim.runtime
                .clone()
                .stop_container(StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: 0,
                })
                .await
                .expect("StopContainer");
        }
        shim.runtime
            .clone()
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox {}: {e}", pod.id));
        shim.runtime
            .clone()
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", pod.id));
    }
}

async fn assert_clean(shim: &Shim, net: Option<&ScenarioNet>) {
    let docker = &test_env().await.docker;
    // Plugins killed at a deadline are reaped a moment later.
    let started = Instant::now();
    loop {
        let found = leaks(shim, docker, net).await;
        if found.is_empty() {
            return;
        }
        if started.elapsed() > Duration::from_secs(10) {
            panic!("leaks after the scenario:\n  {}", found.join("\n  "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn run_request(
    config: PodSandboxConfig,
    timeout: Option<Duration>,
) -> tonic::Request<RunPodSandboxRequest> {
    let mut request = tonic::Request::new(RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cni_plugin_fails_the_pod_and_leaves_nothing() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let net = ScenarioNet::new(dir.path(), 11);
    let shim = shim_on(&net).await;
    net.set_fault("fail");
    let err = shim
        .runtime
        .clone()
        .run_pod_sandbox(run_request(
            pod_config("failnet", "default", &shim.pod_uid("failnet")),
            None,
        ))
        .await
        .expect_err("RunPodSandbox must fail when a plugin fails");
    assert!(
        err.message().contains("crid-fault: injected failure"),
        "the plugin's message reaches the client: {err}"
    );
    assert!(
        !matches!(err.code(), Code::Ok | Code::Unknown),
        "a clear code: {err}"
    );
    assert_clean(&shim, Some(&net)).await;
    // The network works again once the plugin does.
    net.set_fault("ok");
    let (id, _) = shim.run_pod("recovered").await;
    let status = pods::status(&shim.runtime, &id).await;
    assert!(status.network.unwrap().ip.starts_with("10.77.11."));
    kubelet_cleanup(&shim).await;
    assert_clean(&shim, Some(&net)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_cni_plugin_is_killed_at_the_clients_deadline_and_everything_undone() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let net = ScenarioNet::new(dir.path(), 12);
    let shim = shim_on(&net).await;
    net.set_fault("hang");
    let started = Instant::now();
    let err = shim
        .runtime
        .clone()
        .run_pod_sandbox(run_request(
            pod_config("hangnet", "default", &shim.pod_uid("hangnet")),
            Some(Duration::from_secs(4)),
        ))
        .await
        .expect_err("RunPodSandbox cannot succeed while a plugin hangs");
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // Nothing of the pod is left: the hanging plugin is killed, the
    // bridge's IP and veth released, container and checkpoint removed...
    assert_clean(&shim, Some(&net)).await;
    // ...because the deadline, not a failure, ended the start.
    assert!(
        shim.log_text()
            .contains("deadline passed while the sandbox was starting"),
        "the shim says why it gave up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_pods_start_leaves_nothing_once_the_kubelet_cleans_up() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let net = ScenarioNet::new(dir.path(), 13);
    let mut shim = shim_on(&net).await;
    // Random moments (seeded; CRID_FAULT_SEED repeats a run) early, in the
    // middle and late in the start-up of 24 pods: before, during and after
    // their containers, checkpoints and CNI ADDs.
    let seed = std::env::var("CRID_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("seed {seed} (CRID_FAULT_SEED repeats a run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    // The third round waits until some pods are up, so that the kill finds
    // pods done, pods in their CNI ADD and pods not yet created.
    let moments = [
        (0, rng.u64(0..200)),
        (0, rng.u64(200..1000)),
        (4, rng.u64(0..300)),
    ];
    for (round, (after_started, kill_after_ms)) in moments.into_iter().enumerate() {
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let starts: Vec<_> = (0..24)
            .map(|i| {
                let name = format!("k{round}x{i}");
                let config = pod_config(&name, "default", &shim.pod_uid(&name));
                let client = shim.runtime.clone();
                let started = started.clone();
                tokio::spawn(async move {
                    let result = pods::run(&client, config).await;
                    if result.is_ok() {
                        started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    result
                })
            })
            .collect();
        let waiting = Instant::now();
        while started.load(std::sync::atomic::Ordering::SeqCst) < after_started {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "{after_started} pods never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        shim.kill();
        let mut finished = 0;
        for start in starts {
            if matches!(start.await, Ok(Ok(_))) {
                finished += 1;
            }
        }
        eprintln!(
            "round {round}: SIGKILL {kill_after_ms} ms after {after_started} pods had started; {finished}/24 had started by then"
        );
        shim.restart().await;
        // Docker may finish a create the dead shim asked for after the
        // restart's listing; the kubelet relists every second and removes
        // what it finds, and so does this.
        for pass in 0.. {
            kubelet_cleanup(&shim).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if pods_of(&shim).await.is_empty() {
                eprintln!("round {round}: clean after {} kubelet cleanup(s)", pass + 1);
                break;
            }
            assert!(pass < 10, "pods still listed after 10 cleanups");
        }
        assert_clean(&shim, Some(&net)).await;
    }
}

/// The pods of this test that the shim lists.
async fn pods_of(shim: &Shim) -> Vec<PodSandbox> {
    pods::list(&shim.runtime, None)
        .await
        .into_iter()
        .filter(|p| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.uid.starts_with(&shim.uid_prefix))
        })
        .collect()
}

/// Checkpoints that cannot be read. One whose sandbox container is gone
/// (the kubelet cannot see it) is removed at start, said once; one whose
/// container is there stays, never makes a call fail, and is reported once
/// however often it is read; RemovePodSandbox takes it away.
#[tokio::test(flavor = "multi_thread")]
async fn corrupt_and_truncated_checkpoints_are_reported_once_and_never_fail_a_call() {
    test_env().await;
    let mut shim = Shim::builder(BIN).with_cni().start().await;
    let (good, _) = shim.run_pod("good").await;
    let (damaged, _) = shim.run_pod("damaged").await;
    let checkpoints = shim.root.join("sandbox");
    let full = std::fs::read(checkpoints.join(&good)).unwrap();
    // An id one digit off the good pod's (never the good id itself).
    let last = if good.ends_with('0') { '1' } else { '0' };
    let orphans = [
        format!("{}{last}", &good[..63]),
        unique("corrupt"),
        unique("empty"),
    ];
    std::fs::write(checkpoints.join(&orphans[0]), &full[..full.len() / 2]).unwrap();
    std::fs::write(checkpoints.join(&orphans[1]), b"\x00\xffnot json at all").unwrap();
    std::fs::write(checkpoints.join(&orphans[2]), b"").unwrap();
    std::fs::write(checkpoints.join(&damaged), &full[..full.len() - 7]).unwrap();
    shim.restart().await;

    let count = |needle: &str, id: &str| {
        shim.log_text()
            .lines()
            .filter(|l| l.contains(needle) && l.contains(id))
            .count()
    };
    for orphan in &orphans {
        assert!(
            !checkpoints.join(orphan).exists(),
            "{orphan} removed at start"
        );
        assert_eq!(count("removed an unreadable checkpoint", orphan), 1);
    }
    for _ in 0..5 {
        let listed = pods::list(&shim.runtime, None).await;
        for id in [&good, &damaged] {
            assert!(listed.iter().any(|p| &p.id == id), "{id} is listed");
            let status = pods::status(&shim.runtime, id).await;
            assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
        }
        for orphan in &orphans {
            let err = shim
                .runtime
                .clone()
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: orphan.clone(),
                    verbose: false,
                })
                .await
                .expect_err("no sandbox, no checkpoint");
            assert_eq!(err.code(), Code::NotFound, "{err}");
        }
    }
    assert!(
        checkpoints.join(&damaged).exists(),
        "kept: its sandbox is there"
    );
    assert_eq!(
        count("skipping unreadable sandbox checkpoint", &damaged),
        1,
        "reported once, read many times"
    );
    // The kubelet stops and removes the pod; the file goes with it.
    kubelet_cleanup(&shim).await;
    assert!(!checkpoints.join(&damaged).exists());
    assert_clean(&shim, None).await;
}

/// Containers Docker runs for someone else (here: no CRI labels, as the
/// shim's own container in the Docker-out-of-Docker setup) are invisible
/// to every CRI call that takes an id, and left untouched.
#[tokio::test(flavor = "multi_thread")]
async fn containers_that_are_not_ours_answer_not_found_and_are_left_alone() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let name = unique("crid-foreign-");
    let foreign = env
        .docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(BUSYBOX_IMAGE.into()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                labels: Some(HashMap::from([("owner".into(), "someone-else".into())])),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    env.docker.start_container(&foreign, None).await.unwrap();
    let mut rt = shim.runtime.clone();
    let short = foreign[..12].to_string();
    for id in [foreign.clone(), short, name.clone()] {
        let codes: Vec<(&str, Result<(), tonic::Status>)> = vec![
            (
                "StopContainer",
                rt.stop_container(StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .map(drop),
            ),
            (
                "RemoveContainer",
                rt.remove_container(RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "StartContainer",
                rt.start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "ExecSync",
                rt.exec_sync(ExecSyncRequest {
                    container_id: id.clone(),
                    cmd: vec!["touch".into(), "/touched".into()],
                    timeout: 5,
                })
                .await
                .map(drop),
            ),
            (
                "Exec",
                rt.exec(ExecRequest {
                    container_id: id.clone(),
                    cmd: vec!["sh".into()],
                    stdout: true,
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "Attach",
                rt.attach(AttachRequest {
                    container_id: id.clone(),
                    stdout: true,
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "ContainerStatus",
                rt.container_status(ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .map(drop),
            ),
            (
                "UpdateContainerResources",
                rt.update_container_resources(UpdateContainerResourcesRequest {
                    container_id: id.clone(),
                    linux: Some(LinuxContainerResources {
                        memory_limit_in_bytes: 64 << 20,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
            (
                "ReopenContainerLog",
                rt.reopen_container_log(ReopenContainerLogRequest {
                    container_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "StopPodSandbox",
                rt.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "RemovePodSandbox",
                rt.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .map(drop),
            ),
            (
                "PodSandboxStatus",
                rt.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id.clone(),
                    verbose: false,
                })
                .await
                .map(drop),
            ),
            (
                "PortForward",
                rt.port_forward(PortForwardRequest {
                    pod_sandbox_id: id.clone(),
                    port: vec![80],
                })
                .await
                .map(drop),
            ),
            (
                "UpdatePodSandboxResources",
                rt.update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
                    pod_sandbox_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map(drop),
            ),
        ];
        for (call, result) in codes {
            match result {
                Err(status) if status.code() == Code::NotFound => {}
                other => panic!("{call}({id}) on a container that is not ours: {other:?}"),
            }
        }
    }
    let listed = shim
        .runtime
        .clone()
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(listed.iter().all(|c| c.id != foreign), "never listed");
    let inspect = env
        .docker
        .inspect_container(&foreign, None::<InspectContainerOptions>)
        .await
        .expect("still there");
    assert_eq!(inspect.state.unwrap().running, Some(true), "still running");
    assert!(
        inspect.exec_ids.unwrap_or_default().is_empty(),
        "nothing was executed in it"
    );
    env.docker
        .remove_container(
            &foreign,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_clean(&shim, None).await;
}

/// The kubelet may remove a pod while a CreateContainer for it is still
/// under way (pod deleted during start-up). Whatever the interleaving, no
/// container may outlive its sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn create_container_racing_remove_pod_sandbox_leaves_no_container_behind() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).start().await;
    let rounds = 200;
    let (mut created_first, mut removed_first) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    for round in 0..rounds {
        assert!(Instant::now() < deadline, "too slow: {round} rounds");
        let name = format!("race{round}");
        let config = host_network(pod_config(&name, "default", &shim.pod_uid(&name)));
        let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();
        let mut creator = shim.runtime.clone();
        let mut remover = shim.runtime.clone();
        // Vary who gets there first: the create, the remove, or neither.
        let (create_delay, remove_delay) = match round % 3 {
            0 => (0, 2_000),
            1 => (2_000, 0),
            _ => (0, 0),
        };
        let create = {
            let pod = pod.clone();
            let config = config.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(create_delay)).await;
                creator
                    .create_container(CreateContainerRequest {
                        pod_sandbox_id: pod,
                        config: Some(container_config("c", BUSYBOX_IMAGE, &["sleep", "3600"])),
                        sandbox_config: Some(config),
                    })
                    .await
            })
        };
        let remove = {
            let pod = pod.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(remove_delay)).await;
                remover
                    .remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: pod,
                    })
                    .await
            })
        };
        remove.await.unwrap().expect("RemovePodSandbox");
        match create.await.unwrap() {
            Ok(_) => created_first += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::NotFound, "{e}");
                removed_first += 1;
            }
        }
        let left = env
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![format!("io.kubernetes.sandbox.id={pod}")],
                )])),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert!(
            left.is_empty(),
            "round {round}: {left:?} outlived its sandbox"
        );
    }
    eprintln!("{rounds} rounds: the create won {created_first}, the remove {removed_first}");
    assert_clean(&shim, None).await;
}

/// Docker stopped and started again under a running shim (a daemon of the
/// test's own, so the machine's daemon and the other tests are left alone).
/// In the gap every call that needs Docker answers Unavailable and the shim
/// stays up; once Docker is back the shim answers again without a restart,
/// follows Docker's events again and sees what changed in the daemon.
#[tokio::test(flavor = "multi_thread")]
async fn docker_restarting_under_the_shim_gives_unavailable_then_service_again() {
    test_env().await;
    let mut docker = PrivateDocker::start(&serde_json::json!({})).await;
    docker.load_from_host(&[PAUSE_IMAGE, BUSYBOX_IMAGE]);
    let mut shim = Shim::builder(BIN)
        .arg(format!("--docker-endpoint={}", docker.endpoint()))
        .start()
        .await;
    let name = "before";
    let config = host_network(pod_config(name, "default", &shim.pod_uid(name)));
    let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();
    // Ends on SIGTERM, so that stopping Docker takes no grace period.
    let before = containers::run(
        &shim.runtime,
        &pod,
        container_config(
            "sleeper",
            BUSYBOX_IMAGE,
            &["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        ),
        &config,
    )
    .await;

    docker.stop();
    let mut rt = shim.runtime.clone();
    let mut images = shim.images.clone();
    // The shim learns of the loss from its event stream.
    let lost = Instant::now();
    while runtime_ready(&mut rt).await {
        assert!(
            lost.elapsed() < Duration::from_secs(5),
            "RuntimeReady stays true with Docker gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gap: Vec<(&str, Code)> = vec![
        (
            "Version",
            code_of(rt.version(VersionRequest::default()).await),
        ),
        (
            "RunPodSandbox",
            code_of(
                rt.run_pod_sandbox(run_request(
                    host_network(pod_config("gap", "default", &shim.pod_uid("gap"))),
                    None,
                ))
                .await,
            ),
        ),
        (
            "CreateContainer",
            code_of(
                rt.create_container(CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(container_config("gap", BUSYBOX_IMAGE, &["true"])),
                    sandbox_config: Some(config.clone()),
                })
                .await,
            ),
        ),
        (
            "StopContainer",
            code_of(
                rt.stop_container(StopContainerRequest {
                    container_id: before.clone(),
                    timeout: 0,
                })
                .await,
            ),
        ),
        (
            "ExecSync",
            code_of(
                rt.exec_sync(ExecSyncRequest {
                    container_id: before.clone(),
                    cmd: vec!["true".into()],
                    timeout: 5,
                })
                .await,
            ),
        ),
        (
            "ListPodSandbox",
            code_of(
                rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await,
            ),
        ),
        (
            "ListContainers",
            code_of(
                rt.list_containers(ListContainersRequest { filter: None })
                    .await,
            ),
        ),
        (
            "ListImages",
            code_of(images.list_images(ListImagesRequest { filter: None }).await),
        ),
        (
            "ImageStatus",
            code_of(
                images
                    .image_status(ImageStatusRequest {
                        image: Some(ImageSpec {
                            image: BUSYBOX_IMAGE.into(),
                            ..Default::default()
                        }),
                        verbose: false,
                    })
                    .await,
            ),
        ),
    ];
    for (call, code) in &gap {
        assert_eq!(*code, Code::Unavailable, "{call} while Docker is down");
    }
    assert!(
        !runtime_ready(&mut rt).await,
        "RuntimeReady is false in the gap"
    );
    assert!(shim.is_running(), "the shim stays up");

    // Back, with a runtime it did not have: the shim must notice.
    docker
        .start_again(&serde_json::json!({"runtimes": {"crid-added": {"path": "runc"}}}))
        .await;
    let back = Instant::now();
    loop {
        if runtime_ready(&mut rt).await && rt.version(VersionRequest::default()).await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "not serving within 15 s of Docker's return"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("serving again {:?} after Docker answered", back.elapsed());
    let handlers_seen = Instant::now();
    loop {
        let status = rt
            .status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        if status
            .runtime_handlers
            .iter()
            .any(|h| h.name == "crid-added")
        {
            break;
        }
        assert!(
            handlers_seen.elapsed() < Duration::from_secs(5),
            "Docker's new runtime is not among the handlers: {:?}",
            status.runtime_handlers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Docker stopped the old pod's containers with it: the store knows.
    let old = containers::status(&shim.runtime, &before).await;
    assert_eq!(old.state, ContainerState::ContainerExited as i32);
    // A new pod runs, and a change behind the shim's back shows through
    // the re-followed event stream.
    let name = "after";
    let config = host_network(pod_config(name, "default", &shim.pod_uid(name)));
    let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();
    let after = containers::run(
        &shim.runtime,
        &pod,
        container_config("sleeper", BUSYBOX_IMAGE, &["sleep", "3600"]),
        &config,
    )
    .await;
    let client = docker.client();
    client.kill_container(&after, None).await.unwrap();
    let killed = Instant::now();
    while containers::status(&shim.runtime, &after).await.state
        != ContainerState::ContainerExited as i32
    {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "a docker kill after the restart is not seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kubelet_cleanup(&shim).await;
    let found = leaks(&shim, &client, None).await;
    assert!(found.is_empty(), "{found:?}");
    shim.kill();
    drop(docker);
}

fn code_of<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn runtime_ready(
    rt: &mut cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
) -> bool {
    rt.status(StatusRequest { verbose: false })
        .await
        .expect("Status answers, Docker or not")
        .into_inner()
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap()
        .status
}
