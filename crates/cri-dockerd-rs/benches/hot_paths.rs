//! The calls the kubelet makes every second, timed against the real daemon
//! with 5 pods of 10 running containers each: `cargo bench -p
//! cri-dockerd-rs --bench hot_paths` (root, after `make test-env`).
//!
//! Targets: every list or status call stays within a small multiple of one
//! `docker ps` (the Docker list it is built on), and the stats calls do not
//! wait for Docker's one-second stats sampling (50 containers in well under
//! a second, not 50 seconds). A Prometheus scrape of the metrics endpoint
//! is timed the same way (it reads memory only).

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::metrics;
use cri_dockerd_testkit::{Shim, test_env};

mod common;
use common::time;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const PODS: usize = 5;
const CONTAINERS_PER_POD: usize = 10;
const ROUNDS: usize = 100;

#[tokio::main]
async fn main() {
    let env = test_env().await;
    let shim = Shim::builder(BIN)
        .with_cni()
        .arg("--log-format=json")
        .arg("--metrics-bind-addr=127.0.0.1")
        .start()
        .await;
    let metrics_address = metrics::endpoint_from_json_log(&shim.log).await;
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
    let timings = vec![
        time("docker ps (baseline)", ROUNDS, || {
            let docker = docker.clone();
            async move {
                docker
                    .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
                    .await
                    .unwrap();
            }
        })
        .await,
        time("ListPodSandbox", ROUNDS, || {
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
        time("ListContainers", ROUNDS, || {
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
        time("PodSandboxStatus", ROUNDS, || {
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
        time("ContainerStatus", ROUNDS, || {
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
        time("ListContainerStats (50)", ROUNDS, || {
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
        time("ListPodSandboxStats (5)", ROUNDS, || {
            let mut r = runtime.clone();
            async move {
                r.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                    .await
                    .unwrap();
            }
        })
        .await,
        time(
            "ListPodSandboxMetrics (5 pods, 50 containers)",
            ROUNDS,
            || {
                let mut r = runtime.clone();
                async move {
                    let pods = r
                        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest::default())
                        .await
                        .unwrap()
                        .into_inner()
                        .pod_metrics;
                    assert!(pods.len() >= PODS);
                }
            },
        )
        .await,
        time("ImageFsInfo", ROUNDS, || {
            let mut images = shim.images.clone();
            async move {
                images
                    .image_fs_info(ImageFsInfoRequest::default())
                    .await
                    .unwrap();
            }
        })
        .await,
        time("GET /metrics (Prometheus scrape)", ROUNDS, || async move {
            let (status, _, body) = metrics::get(metrics_address, "/metrics").await;
            assert_eq!(status, 200);
            assert!(body.contains("cri_dockerd_rs_grpc_requests_total"));
        })
        .await,
    ];
    for t in &timings {
        t.report();
    }

    for pod in &pod_ids {
        pods::stop(&runtime, pod).await;
        pods::remove(&runtime, pod).await;
    }
}
