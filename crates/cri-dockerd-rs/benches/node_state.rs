//! The node-state figures, against the real daemon: `cargo bench -p
//! cri-dockerd-rs --bench node_state` (root, after `make test-env`); with
//! `CRID_TEST_ENGINE=28.5-containerd` (or another engine of the matrix)
//! against that engine.
//!
//! With 100 pods of one running container each: p50 of the calls the
//! kubelet makes every second (served from memory) beside Docker's own
//! `/containers/json` for the same listing; the CPU the shim and dockerd
//! spend on a 1 Hz relist of all 100 pods (as the kubelet's generic PLEG
//! does it); the shim's RSS then, and after `CRID_BENCH_CYCLES` (default
//! 1,000) pod create/delete cycles. Targets (issue 12): lists and
//! PodSandboxStatus at most 1 ms p50 and below Docker's listing,
//! ContainerStatus at most 0.5 ms, relist CPU under 0.2% of a core with
//! dockerd's near zero, RSS under 30 MB and flat across the cycles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::{Shim, test_daemon, test_env};
use futures::StreamExt;
use tonic::transport::Channel;

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const PODS: usize = 100;
const ROUNDS: usize = 200;
const RELIST_SECONDS: u64 = 60;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of stat, counted after the name: indexes 11 and 12.
    field(11) + field(12)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// One pod with one running container; its ids.
async fn make_pod(shim: &Shim, name: &str) -> (String, String) {
    let (pod, config) = shim.run_pod(name).await;
    let ctr = containers::run(
        &shim.runtime,
        &pod,
        container_config("app", BUSYBOX_IMAGE, &["sleep", "3600"]),
        &config,
    )
    .await;
    (pod, ctr)
}

/// What the kubelet's generic PLEG asks every second: both lists. It asks
/// for statuses only of the pods whose containers changed, which in the
/// steady state are none.
async fn relist(rt: &mut RuntimeServiceClient<Channel>) {
    rt.list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap();
    rt.list_containers(ListContainersRequest::default())
        .await
        .unwrap();
}

/// Every pod's and container's status: what a kubelet asks after its
/// restart, or when all its pods changed at once.
async fn status_sweep(rt: &mut RuntimeServiceClient<Channel>, pods: &[(String, String)]) {
    for (pod, ctr) in pods {
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap();
        rt.container_status(ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await
        .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let env = test_env().await;
    let shim = Shim::builder(BIN)
        .with_cni()
        .arg("--log-level=warn")
        .start()
        .await;
    let cycles: usize = std::env::var("CRID_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);

    let pods: Vec<(String, String)> = futures::stream::iter(0..PODS)
        .map(|i| {
            let shim = &shim;
            async move { make_pod(shim, &format!("bench{i}")).await }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("{PODS} pods of one running container each, p50 of {ROUNDS} calls");

    let docker = env.docker.clone();
    common::time("docker /containers/json (baseline)", ROUNDS, || {
        let docker = docker.clone();
        async move {
            docker
                .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                    all: true,
                    filters: Some(HashMap::from([(
                        "label".to_string(),
                        vec!["io.kubernetes.docker.type".to_string()],
                    )])),
                    ..Default::default()
                }))
                .await
                .unwrap();
        }
    })
    .await
    .report();
    let runtime = shim.runtime.clone();
    common::time("ListPodSandbox", ROUNDS, || {
        let mut r = runtime.clone();
        async move {
            let n = r
                .list_pod_sandbox(ListPodSandboxRequest::default())
                .await
                .unwrap();
            assert!(n.into_inner().items.len() >= PODS);
        }
    })
    .await
    .report();
    common::time("ListContainers", ROUNDS, || {
        let mut r = runtime.clone();
        async move {
            let n = r
                .list_containers(ListContainersRequest::default())
                .await
                .unwrap();
            assert!(n.into_inner().containers.len() >= PODS);
        }
    })
    .await
    .report();
    common::time("PodSandboxStatus", ROUNDS, || {
        let mut r = runtime.clone();
        let id = pods[0].0.clone();
        async move {
            r.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: false,
            })
            .await
            .unwrap();
        }
    })
    .await
    .report();
    common::time("ContainerStatus", ROUNDS, || {
        let mut r = runtime.clone();
        let id = pods[0].1.clone();
        async move {
            r.container_status(ContainerStatusRequest {
                container_id: id,
                verbose: false,
            })
            .await
            .unwrap();
        }
    })
    .await
    .report();

    // What one scrape of the kubelet's /stats/summary asks of the runtime
    // with PodAndContainerStatsFromCRI (ListPodSandbox, ListContainers,
    // ListPodSandboxStats, ImageFsInfo), and one of /metrics/cadvisor
    // (ListPodSandboxMetrics; the descriptors are asked once).
    let images = shim.images.clone();
    common::time("a /stats/summary scrape's CRI calls", ROUNDS / 4, || {
        let mut r = runtime.clone();
        let mut i = images.clone();
        async move {
            r.list_pod_sandbox(ListPodSandboxRequest::default())
                .await
                .unwrap();
            r.list_containers(ListContainersRequest::default())
                .await
                .unwrap();
            let stats = r
                .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                .await
                .unwrap();
            assert!(stats.into_inner().stats.len() >= PODS);
            i.image_fs_info(ImageFsInfoRequest {}).await.unwrap();
        }
    })
    .await
    .report();
    common::time("a /metrics/cadvisor scrape's CRI call", ROUNDS / 4, || {
        let mut r = runtime.clone();
        async move {
            let metrics = r
                .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
                .await
                .unwrap();
            assert!(metrics.into_inner().pod_metrics.len() >= PODS);
        }
    })
    .await
    .report();

    // CPU of a 1 Hz relist, and of a 1 Hz status sweep, over RELIST_SECONDS each.
    let dockerd = test_daemon().dockerd_pid();
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut rt = shim.runtime.clone();
    for sweep in [false, true] {
        let (shim_before, dockerd_before) = (cpu_ticks(shim.pid()), dockerd.map(cpu_ticks));
        let started = Instant::now();
        for second in 0..RELIST_SECONDS {
            if sweep {
                status_sweep(&mut rt, &pods).await;
            } else {
                relist(&mut rt).await;
            }
            let next = Duration::from_secs(second + 1);
            tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        }
        let wall = started.elapsed().as_secs_f64();
        let percent = |ticks: u64| ticks as f64 / ticks_per_second / wall * 100.0;
        println!(
            "1 Hz {} for {RELIST_SECONDS}s: shim {:.2}% of a core, dockerd {}",
            if sweep {
                "status of all 100 pods and containers"
            } else {
                "relist (ListPodSandbox + ListContainers)"
            },
            percent(cpu_ticks(shim.pid()) - shim_before),
            match (dockerd, dockerd_before) {
                (Some(pid), Some(before)) =>
                    format!("{:.2}% of a core", percent(cpu_ticks(pid) - before)),
                _ => "not found".into(),
            }
        );
    }
    let rss_start = rss_mb(shim.pid());
    println!("shim RSS with {PODS} pods: {rss_start:.1} MB");

    // Churn: create and delete pods, watching the RSS.
    let started = Instant::now();
    for cycle in 0..cycles {
        let (pod, _) = make_pod(&shim, &format!("churn{}", cycle % 10)).await;
        pods::stop(&runtime, &pod).await;
        pods::remove(&runtime, &pod).await;
        if (cycle + 1) % 250 == 0 || cycle + 1 == cycles {
            println!(
                "after {} create/delete cycles ({:.0}s): shim RSS {:.1} MB",
                cycle + 1,
                started.elapsed().as_secs_f64(),
                rss_mb(shim.pid())
            );
        }
    }

    for (pod, _) in &pods {
        pods::stop(&runtime, pod).await;
        pods::remove(&runtime, pod).await;
    }
}
