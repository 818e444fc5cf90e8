//! Lists and statuses served from the shim's in-memory node state: no
//! Docker request in the steady state, changes made behind the shim's back
//! seen within a second, the same answers as a fresh Docker listing after
//! a random mix of CRI calls and out-of-band `docker stop`/`kill`/`rm`, and
//! a broken Docker connection covered by a relist.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use cri_dockerd_api::v1::*;
use cri_dockerd_core::labels;
use cri_dockerd_testkit::cri::{container_config, containers};
use cri_dockerd_testkit::docker_proxy::DockerProxy;
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

async fn shim_behind(proxy: &DockerProxy) -> Shim {
    Shim::builder(BIN)
        .with_cni()
        .arg(format!("--docker-endpoint={}", proxy.endpoint()))
        .start()
        .await
}

/// What the kubelet calls every second for every pod, once: the lists,
/// then a status of each of this test's pods and containers (other tests
/// share the daemon), then the stats; the ids it saw of this test's.
async fn relist(shim: &Shim) -> Vec<String> {
    let mut rt = shim.runtime.clone();
    let pods: Vec<PodSandbox> = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .as_ref()
                .is_some_and(|m| m.uid.starts_with(&shim.uid_prefix))
        })
        .collect();
    let ctrs: Vec<Container> = rt
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .filter(|c| pods.iter().any(|p| p.id == c.pod_sandbox_id))
        .collect();
    for pod in &pods {
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        })
        .await
        .unwrap();
    }
    for c in &ctrs {
        rt.container_status(ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: false,
        })
        .await
        .unwrap();
    }
    rt.list_container_stats(ListContainerStatsRequest::default())
        .await
        .unwrap();
    rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await
        .unwrap();
    // What the kubelet's /metrics/cadvisor scrape calls.
    rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest::default())
        .await
        .unwrap();
    pods.into_iter()
        .map(|p| p.id)
        .chain(ctrs.into_iter().map(|c| c.id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn relists_cost_no_docker_request() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let shim = shim_behind(&proxy).await;
    for i in 0..3 {
        let (pod, config) = shim.run_pod(&format!("quiet{i}")).await;
        shim.run_sleeper(&pod, &config, "sleeper").await;
        containers::run(
            &shim.runtime,
            &pod,
            container_config("done", BUSYBOX_IMAGE, &["true"]),
            &config,
        )
        .await;
    }
    // Other tests on the daemon make events, and the shim inspects their
    // containers once each; nothing may concern this test's pods, list, or
    // look up images.
    let concerning = |requests: Vec<String>, ours: &[String]| -> Vec<String> {
        requests
            .into_iter()
            .filter(|r| {
                r.contains("/containers/json")
                    || r.contains("/images/")
                    || ours.iter().any(|id| r.contains(id.as_str()))
            })
            .collect()
    };
    // The steady state: the exits have been seen, their logs copied to the
    // end, the caches are warm. Until then a status may still ask Docker.
    let settling = Instant::now();
    relist(&shim).await;
    let mut ours;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.take_requests();
        ours = relist(&shim).await;
        if concerning(proxy.take_requests(), &ours).is_empty() {
            break;
        }
        assert!(
            settling.elapsed() < Duration::from_secs(20),
            "never settled"
        );
    }

    // An image event anywhere on the daemon (other tests pull, tag and
    // remove images) rightly makes the shim look its images' names up
    // again, once: a window with one is measured again, up to five times.
    let image_events = ImageEvents::watch(&test_env().await.docker).await;
    let mut requests = Vec::new();
    for _ in 0..5 {
        let seen = image_events.count();
        proxy.take_requests();
        for _ in 0..100 {
            ours = relist(&shim).await;
        }
        requests = concerning(proxy.take_requests(), &ours);
        if image_events.count() == seen {
            break;
        }
    }
    assert_eq!(ours.len(), 9, "3 pods of 2 containers: {ours:?}");
    assert!(
        requests.is_empty(),
        "100 relists asked Docker {} times: {requests:?}",
        requests.len()
    );
}

/// Counts Docker's image events from now on.
struct ImageEvents {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ImageEvents {
    async fn watch(docker: &bollard::Docker) -> Self {
        use futures::StreamExt;
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut events = docker.events(Some(bollard::query_parameters::EventsOptions {
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["image".to_string()],
            )])),
            ..Default::default()
        }));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(_)) = events.next().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // The stream is open once Docker answered its headers; a moment
        // for that, so no event of the first window is missed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Self { count, task }
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ImageEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (id -> CRI state) of the test's containers and sandboxes, as the shim
/// lists them.
async fn shim_view(shim: &Shim, pods: &[String]) -> BTreeMap<String, i32> {
    let mut rt = shim.runtime.clone();
    let mut view = BTreeMap::new();
    for p in rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
    {
        if pods.contains(&p.id) {
            view.insert(p.id, 100 + p.state);
        }
    }
    for c in rt
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
    {
        if pods.contains(&c.pod_sandbox_id) {
            let status = rt
                .container_status(ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            // A container that changes between the list and the status
            // call shows as a disagreement, which converge waits out; once
            // the node is still, list and status must agree.
            if status.state != c.state {
                view.insert(
                    format!("{} (list {} / status {})", c.id, c.state, status.state),
                    -1,
                );
            }
            view.insert(c.id, c.state);
        }
    }
    view
}

/// The same from a fresh Docker listing.
async fn docker_view(docker: &bollard::Docker, pods: &[String]) -> BTreeMap<String, i32> {
    let listed = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![labels::CONTAINER_TYPE.to_string()],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut view = BTreeMap::new();
    for c in listed {
        let id = c.id.unwrap();
        let labels = c.labels.unwrap_or_default();
        let running = c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING);
        match labels.get(labels::CONTAINER_TYPE).map(String::as_str) {
            Some(labels::CONTAINER_TYPE_SANDBOX) if pods.contains(&id) => {
                let state = if running {
                    PodSandboxState::SandboxReady
                } else {
                    PodSandboxState::SandboxNotready
                };
                view.insert(id, 100 + state as i32);
            }
            Some(labels::CONTAINER_TYPE_CONTAINER)
                if labels
                    .get(labels::SANDBOX_ID)
                    .is_some_and(|s| pods.contains(s)) =>
            {
                use bollard::models::ContainerSummaryStateEnum as S;
                let state = match c.state {
                    Some(S::RUNNING) => ContainerState::ContainerRunning,
                    Some(S::CREATED) => ContainerState::ContainerCreated,
                    Some(S::EXITED | S::DEAD) => ContainerState::ContainerExited,
                    _ => ContainerState::ContainerUnknown,
                };
                view.insert(id, state as i32);
            }
            _ => {}
        }
    }
    view
}

/// Waits up to `limit` for the shim to show what Docker has.
async fn converge(shim: &Shim, docker: &bollard::Docker, pods: &[String], limit: Duration) {
    let started = Instant::now();
    loop {
        let (ours, theirs) = (shim_view(shim, pods).await, docker_view(docker, pods).await);
        if ours == theirs {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "after {limit:?} the shim shows\n{ours:#?}\nbut Docker has\n{theirs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn store_answers_match_docker_after_random_operations() {
    let env = test_env().await;
    let docker = &env.docker;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let mut rt = shim.runtime.clone();
    let mut rng = Lcg(0x5eed_cafe);
    let mut pods: Vec<(String, PodSandboxConfig)> = Vec::new();
    let mut ctrs: Vec<(String, String)> = Vec::new();
    for step in 0..60 {
        let choice = if pods.is_empty() { 0 } else { rng.below(10) };
        let pick_ctr = |rng: &mut Lcg| ctrs.get(rng.below(ctrs.len())).cloned();
        match choice {
            0 if pods.len() < 3 => {
                pods.push(shim.run_pod(&format!("rnd{step}")).await);
            }
            0..=2 => {
                let (pod, config) = pods[rng.below(pods.len())].clone();
                let command: &[&str] = match rng.below(3) {
                    0 => &["sleep", "3600"],
                    1 => &["sh", "-c", "exit 3"],
                    _ => &["true"],
                };
                let created = rt
                    .create_container(CreateContainerRequest {
                        pod_sandbox_id: pod.clone(),
                        config: Some(container_config(
                            &format!("c{step}"),
                            BUSYBOX_IMAGE,
                            command,
                        )),
                        sandbox_config: Some(config),
                    })
                    .await;
                if let Ok(r) = created {
                    let id = r.into_inner().container_id;
                    if rng.below(4) != 0 {
                        let _ = rt
                            .start_container(StartContainerRequest {
                                container_id: id.clone(),
                            })
                            .await;
                    }
                    ctrs.push((id, pod));
                }
            }
            3 => {
                if let Some((id, _)) = pick_ctr(&mut rng) {
                    let _ = rt
                        .stop_container(StopContainerRequest {
                            container_id: id,
                            timeout: 0,
                        })
                        .await;
                }
            }
            4 => {
                if let Some((id, _)) = pick_ctr(&mut rng) {
                    rt.remove_container(RemoveContainerRequest {
                        container_id: id.clone(),
                    })
                    .await
                    .unwrap();
                    ctrs.retain(|(c, _)| *c != id);
                }
            }
            5 => {
                if let Some((id, _)) = pick_ctr(&mut rng) {
                    let _ = docker
                        .stop_container(
                            &id,
                            Some(StopContainerOptions {
                                t: Some(0),
                                ..Default::default()
                            }),
                        )
                        .await;
                }
            }
            6 => {
                if let Some((id, _)) = pick_ctr(&mut rng) {
                    let _ = docker
                        .kill_container(&id, None::<KillContainerOptions>)
                        .await;
                }
            }
            7 => {
                if let Some((id, _)) = pick_ctr(&mut rng) {
                    let _ = docker
                        .remove_container(
                            &id,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                    ctrs.retain(|(c, _)| *c != id);
                }
            }
            8 => {
                let (pod, _) = pods[rng.below(pods.len())].clone();
                let _ = rt
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: pod,
                    })
                    .await;
            }
            _ => {
                if pods.len() > 1 {
                    let (pod, _) = pods.remove(rng.below(pods.len()));
                    rt.remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: pod.clone(),
                    })
                    .await
                    .unwrap();
                    ctrs.retain(|(_, p)| *p != pod);
                }
            }
        }
        if step % 6 == 5 {
            let ids: Vec<String> = pods.iter().map(|(p, _)| p.clone()).collect();
            converge(&shim, docker, &ids, Duration::from_secs(2)).await;
        }
    }
    let ids: Vec<String> = pods.iter().map(|(p, _)| p.clone()).collect();
    converge(&shim, docker, &ids, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_behind_the_shims_back_shows_within_a_second() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("killed").await;
    let id = shim.run_sleeper(&pod, &config, "victim").await;
    env.docker
        .kill_container(&id, None::<KillContainerOptions>)
        .await
        .unwrap();
    let killed = Instant::now();
    loop {
        let status = containers::status(&shim.runtime, &id).await;
        if status.state == ContainerState::ContainerExited as i32 {
            assert_eq!(status.exit_code, 137);
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "still {:?} a second after docker kill",
            status.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_docker_connection_is_covered_by_a_relist() {
    let env = test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = DockerProxy::start(&dir.path().join("docker.sock"));
    let shim = shim_behind(&proxy).await;
    let (pod, config) = shim.run_pod("gap").await;
    let id = shim.run_sleeper(&pod, &config, "gone-while-away").await;

    proxy.cut();
    // Docker changes while the shim cannot see it.
    env.docker
        .kill_container(&id, None::<KillContainerOptions>)
        .await
        .unwrap();
    let mut rt = shim.runtime.clone();
    let started = Instant::now();
    loop {
        let status = rt
            .status(StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        let ready = status
            .status
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.r#type == "RuntimeReady")
            .unwrap()
            .status;
        if !ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still RuntimeReady without Docker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.resume();
    converge(
        &shim,
        &env.docker,
        std::slice::from_ref(&pod),
        Duration::from_secs(15),
    )
    .await;
    let status = containers::status(&shim.runtime, &id).await;
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
}
