//! The calls the kubelet makes every second, timed against the real daemon
//! with 5 pods of 10 running containers each: `cargo bench -p
//! cri-dockerd-rs --bench hot_paths` (root, after `make test-env`).
//!
//! Targets: every list or status call stays within a small multiple of one
//! `docker ps` (the Docker list it is built on), and the stats calls do not
//! wait for Docker's one-second stats sampling (50 containers in well under
//! a second, not 50 seconds).

use std::time::{Duration, Instant};

use cri_dockerd_testkit::cri::{container_config, containers, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{Shim, test_env};
use k8s_cri::v1::*;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const PODS: usize = 5;
const CONTAINERS_PER_POD: usize = 10;
const ROUNDS: usize = 100;

struct Timing {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Timing {
    fn report(&mut self) {
        self.samples.sort();
        let at = |q: f64| self.samples[((self.samples.len() - 1) as f64 * q) as usize];
        let mean = self.samples.iter().sum::<Duration>() / self.samples.len() as u32;
        println!(
            "{:<28} mean {:>9.2?}  p50 {:>9.2?}  p95 {:>9.2?}  max {:>9.2?}",
            self.name,
            mean,
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }
}

async fn time<F, Fut>(name: &'static str, mut call: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    call().await;
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
    }
    Timing { name, samples }
}

#[tokio::main]
async fn main() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let runtime = shim.runtime.clone();

    let mut pod_ids = Vec::new();
    let mut container_ids = Vec::new();
    for p in 0..PODS {
        let mut config = pod_config(
            &format!("bench-{p}"),
            "default",
            &shim.pod_uid(&format!("b{p}")),
        );
        config.log_directory = shim
            .dir
            .path()
            .join(format!("pods/{p}"))
            .display()
            .to_string();
        let pod = pods::run(&runtime, config.clone())
            .await
            .expect("RunPodSandbox");
        for c in 0..CONTAINERS_PER_POD {
            let id = containers::run(
                &runtime,
                &pod,
                container_config(&format!("c{c}"), BUSYBOX_IMAGE, &["sleep", "3600"]),
                &config,
            )
            .await;
            container_ids.push(id);
        }
        pod_ids.push(pod);
    }
    println!(
        "{} pods, {} running containers, {ROUNDS} rounds per call",
        pod_ids.len(),
        container_ids.len()
    );

    let docker = env.docker.clone();
    let mut timings = vec![
        time("docker ps (baseline)", || {
            let docker = docker.clone();
            async move {
                docker
                    .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
                    .await
                    .unwrap();
            }
        })
        .await,
        time("ListPodSandbox", || {
            let mut r = runtime.clone();
            async move {
                let n = r
                    .list_pod_sandbox(ListPodSandboxRequest::default())
                    .await
                    .unwrap();
                assert!(n.into_inner().items.len() >= PODS);
            }
        })
        .await,
        time("ListContainers", || {
            let mut r = runtime.clone();
            async move {
                let n = r
                    .list_containers(ListContainersRequest::default())
                    .await
                    .unwrap();
                assert!(n.into_inner().containers.len() >= PODS * CONTAINERS_PER_POD);
            }
        })
        .await,
        time("PodSandboxStatus", || {
            let mut r = runtime.clone();
            let id = pod_ids[0].clone();
            async move {
                r.pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id,
                    verbose: false,
                })
                .await
                .unwrap();
            }
        })
        .await,
        time("ContainerStatus", || {
            let mut r = runtime.clone();
            let id = container_ids[0].clone();
            async move {
                r.container_status(ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                })
                .await
                .unwrap();
            }
        })
        .await,
        time("ListContainerStats (50)", || {
            let mut r = runtime.clone();
            async move {
                let n = r
                    .list_container_stats(ListContainerStatsRequest::default())
                    .await
                    .unwrap();
                assert!(n.into_inner().stats.len() >= PODS * CONTAINERS_PER_POD);
            }
        })
        .await,
        time("ListPodSandboxStats (5)", || {
            let mut r = runtime.clone();
            async move {
                r.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                    .await
                    .unwrap();
            }
        })
        .await,
    ];
    for t in &mut timings {
        t.report();
    }

    for pod in &pod_ids {
        pods::stop(&runtime, pod).await;
        pods::remove(&runtime, pod).await;
    }
}
