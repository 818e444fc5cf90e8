//! Pod-level stats and metrics as the kubelet reads them: a pod under its
//! own cgroup (as the kubelet creates one, with the pod's memory limit),
//! containers with limits, a child process killed for memory, traffic into
//! the pod's network namespace. PodSandboxStats, ListPodSandboxStats and
//! ListPodSandboxMetrics are checked against the cgroup files themselves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::pod_cgroup::{Layout, PodCgroup};
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const MIB: i64 = 1 << 20;
const POD_LIMIT: u64 = 256 << 20;

async fn wait_for_log(
    client: &runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
    text: &str,
) {
    let log = containers::status(client, id).await.log_path;
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{id} never logged {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn limited(name: &str, limit: i64, script: &str) -> ContainerConfig {
    let mut config = container_config(name, BUSYBOX_IMAGE, &["sh", "-c", script]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().expect("a figure").value
}

async fn pod_stats(shim: &Shim, pod: &str) -> PodSandboxStats {
    shim.runtime
        .clone()
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

/// Sends TCP connection attempts to the pod (nothing listens: each SYN is
/// answered with a reset), so eth0 counts traffic both ways.
fn knock(ip: &str) {
    for _ in 0..5 {
        let _ = std::net::TcpStream::connect_timeout(
            &format!("{ip}:9").parse().unwrap(),
            Duration::from_millis(300),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_stats_and_metrics_come_from_the_pod_cgroup_and_namespace() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let uid = shim.pod_uid("stats");
    let driver = env
        .engine
        .info()
        .await
        .unwrap()
        .cgroup_driver
        .unwrap_or_default();
    let cgroup = PodCgroup::create(Layout::detect(&driver), &uid, POD_LIMIT);
    let mut config = pod_config("stats", "default", &uid);
    config.log_directory = shim.dir.path().join("pods/stats").display().to_string();
    config.linux.as_mut().unwrap().cgroup_parent = cgroup.parent.clone();
    let pod = pods::run(&shim.runtime, config.clone()).await.unwrap();

    // 32 MiB of shared memory (never inactive file pages, so in the
    // working set), then three processes.
    let workers = containers::run(
        &shim.runtime,
        &pod,
        limited(
            "workers",
            64 * MIB,
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 2>/dev/null && echo filled; \
             sleep 3600 & sleep 3600 & wait",
        ),
        &config,
    )
    .await;
    // A child that outgrows the limit is killed; the container lives on.
    // tail buffers /dev/zero's endless line by itself: with a writer
    // feeding it through a pipe (`head ... | tail`), the writer's pipe
    // pages could hit the limit again before the killed tail's memory was
    // uncharged, and the kernel then killed the container's shell (dmesg:
    // "head invoked oom-killer ... Killed process (sh)", one run in four).
    let oom = containers::run(
        &shim.runtime,
        &pod,
        limited(
            "oom",
            32 * MIB,
            "tail /dev/zero; echo survived; sleep 3600 & wait",
        ),
        &config,
    )
    .await;
    wait_for_log(&shim.runtime, &workers, "filled").await;
    wait_for_log(&shim.runtime, &oom, "survived").await;

    let ip = pods::status(&shim.runtime, &pod).await.network.unwrap().ip;
    let before = pod_stats(&shim, &pod).await;
    knock(&ip);
    let stats = pod_stats(&shim, &pod).await;
    let linux = stats.linux.as_ref().unwrap();

    // The pod's containers' cgroups, under its own, hold the pause
    // process, sh and two sleeps, sh and a sleep.
    assert_eq!(value(&linux.process.as_ref().unwrap().process_count), 6);

    // Memory as the kubelet computes it: the working set leaves out
    // inactive file pages, available is the pod limit less the working set.
    let memory = linux.memory.as_ref().unwrap();
    let working_set = value(&memory.working_set_bytes);
    assert!(working_set >= 32 << 20, "the shared memory: {working_set}");
    assert!(value(&memory.usage_bytes) >= working_set);
    assert_eq!(value(&memory.available_bytes), POD_LIMIT - working_set);
    let usage_now = cgroup.memory_usage();
    assert!(
        usage_now.abs_diff(value(&memory.usage_bytes)) < 8 << 20,
        "pod usage {} against the cgroup's {usage_now}",
        value(&memory.usage_bytes)
    );

    // Each container with its own figures, available against its limit.
    assert_eq!(linux.containers.len(), 2);
    let by_name: HashMap<String, &ContainerStats> = linux
        .containers
        .iter()
        .map(|c| {
            (
                c.attributes
                    .as_ref()
                    .unwrap()
                    .metadata
                    .as_ref()
                    .unwrap()
                    .name
                    .clone(),
                c,
            )
        })
        .collect();
    let workers_memory = by_name["workers"].memory.as_ref().unwrap();
    assert_eq!(
        value(&workers_memory.available_bytes),
        (64 << 20) - value(&workers_memory.working_set_bytes)
    );
    assert!(value(&workers_memory.working_set_bytes) >= 32 << 20);

    // The pod's interfaces, loopback left out, and the knocks counted.
    let network = linux.network.as_ref().unwrap();
    let names: Vec<&str> = network.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"]);
    let rx = |s: &PodSandboxStats| {
        value(
            &s.linux
                .as_ref()
                .unwrap()
                .network
                .as_ref()
                .unwrap()
                .default_interface
                .as_ref()
                .unwrap()
                .rx_bytes,
        )
    };
    assert!(rx(&stats) > rx(&before), "five SYNs arrived on eth0");

    // ListPodSandboxStats: by id, by label, and unfiltered.
    let list = |filter: Option<PodSandboxStatsFilter>| {
        let mut rt = shim.runtime.clone();
        async move {
            rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter })
                .await
                .unwrap()
                .into_inner()
                .stats
        }
    };
    let by_id = list(Some(PodSandboxStatsFilter {
        id: pod.clone(),
        ..Default::default()
    }))
    .await;
    assert_eq!(by_id.len(), 1);
    let listed = by_id[0].linux.as_ref().unwrap();
    assert_eq!(listed.containers.len(), 2);
    assert_eq!(value(&listed.process.as_ref().unwrap().process_count), 6);
    assert_eq!(
        by_id[0]
            .attributes
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "stats"
    );
    let by_label = list(Some(PodSandboxStatsFilter {
        label_selector: HashMap::from([("io.kubernetes.pod.uid".into(), uid.clone())]),
        ..Default::default()
    }))
    .await;
    assert_eq!(by_label.len(), 1);
    let no_match = list(Some(PodSandboxStatsFilter {
        label_selector: HashMap::from([("io.kubernetes.pod.uid".into(), "nobody".into())]),
        ..Default::default()
    }))
    .await;
    assert!(no_match.is_empty());
    let all = list(None).await;
    assert!(all.iter().any(|s| s.attributes.as_ref().unwrap().id == pod));

    // ListPodSandboxMetrics: the same readings under cAdvisor's names.
    let metrics = shim
        .runtime
        .clone()
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let mine = metrics.iter().find(|m| m.pod_sandbox_id == pod).unwrap();
    let find = |metrics: &[Metric], name: &str, container: &str| -> (u64, Vec<String>) {
        let m = metrics
            .iter()
            .find(|m| m.name == name && m.label_values[0] == container)
            .unwrap_or_else(|| panic!("{name} of {container:?}"));
        (m.value.unwrap().value, m.label_values.clone())
    };
    let (rx_bytes, labels) = find(
        &mine.metrics,
        "container_network_receive_bytes_total",
        "POD",
    );
    assert!(rx_bytes > 0);
    assert_eq!(labels.last().unwrap(), "eth0");
    assert_eq!(
        (labels[4].as_str(), labels[5].as_str()),
        ("default", "stats")
    );
    let (pod_limit, labels) = find(&mine.metrics, "container_spec_memory_limit_bytes", "");
    assert_eq!(pod_limit, POD_LIMIT, "the pod cgroup's own series");
    assert_eq!(labels[1], cgroup.path, "cAdvisor's id: the cgroup path");
    let (pod_processes, _) = find(&mine.metrics, "container_processes", "");
    assert_eq!(pod_processes, 6);

    let of = |id: &str| {
        &mine
            .container_metrics
            .iter()
            .find(|c| c.container_id == id)
            .unwrap()
            .metrics
    };
    let (processes, labels) = find(of(&workers), "container_processes", "workers");
    assert_eq!(processes, 3);
    assert_eq!(labels[1], cgroup.container_path(&workers));
    assert_eq!(labels[2], BUSYBOX_IMAGE);
    assert!(
        labels[3].starts_with("k8s_workers_stats_default_"),
        "Docker's name: {labels:?}"
    );
    let (limit, _) = find(of(&workers), "container_spec_memory_limit_bytes", "workers");
    assert_eq!(limit, 64 << 20);
    let (ws, _) = find(
        of(&workers),
        "container_memory_working_set_bytes",
        "workers",
    );
    assert!(ws >= 32 << 20);
    let (kills, _) = find(of(&oom), "container_oom_events_total", "oom");
    assert!(kills >= 1, "tail was killed for memory");
    let (none, _) = find(of(&workers), "container_oom_events_total", "workers");
    assert_eq!(none, 0);
    let (cpu, labels) = find(of(&workers), "container_cpu_usage_seconds_total", "workers");
    assert_eq!(labels.last().unwrap(), "total");
    assert!(cpu < 60, "a counter of seconds, not nanoseconds: {cpu}");

    pods::stop(&shim.runtime, &pod).await;
    pods::remove(&shim.runtime, &pod).await;
}
