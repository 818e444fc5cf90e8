//! The shim's stats as the kubelet's CRI stats provider reads them (gate
//! PodAndContainerStatsFromCRI, `pkg/kubelet/stats/cri_stats_provider*.go`
//! of 1.34 to 1.36): every RPC it calls, with its filters, on a node with
//! running, exited, host-network, multi-container and stopped pods; any
//! field it dereferences without a check must be there (a missing one
//! crashed a kubelet: `criInterfaceToSummary` on a network block without a
//! default interface), and what /stats/summary shows per pod and container
//! must be filled.

use std::collections::{HashMap, HashSet};

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers, host_network, pod_config, pods};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::pod_cgroup::{Layout, PodCgroup};
use cri_dockerd_testkit::{Shim, test_env};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// What the kubelet would dereference empty, as `field: why` lines.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
}

fn set(v: &Option<UInt64Value>) -> bool {
    v.is_some()
}

/// CPU and memory as the kubelet reads them, for a container or a pod.
fn check_cpu_and_memory(
    f: &mut Findings,
    who: &str,
    cpu: Option<&CpuUsage>,
    memory: Option<&MemoryUsage>,
) {
    match cpu {
        Some(cpu) => {
            f.check(cpu.timestamp > 0, || format!("{who}: cpu.timestamp"));
            f.check(set(&cpu.usage_core_nano_seconds), || {
                format!("{who}: cpu.usage_core_nano_seconds")
            });
        }
        None => f.check(false, || format!("{who}: cpu")),
    }
    match memory {
        Some(memory) => {
            f.check(memory.timestamp > 0, || format!("{who}: memory.timestamp"));
            f.check(set(&memory.working_set_bytes), || {
                format!("{who}: memory.working_set_bytes")
            });
        }
        None => f.check(false, || format!("{who}: memory")),
    }
}

/// One container's stats as `makeContainerStats` reads them.
fn check_container_stats(f: &mut Findings, where_: &str, s: &ContainerStats) {
    let Some(attributes) = &s.attributes else {
        f.check(false, || format!("{where_}: attributes (Attributes.Id)"));
        return;
    };
    let id = &attributes.id;
    f.check(!id.is_empty(), || format!("{where_}: attributes.id"));
    f.check(
        attributes
            .metadata
            .as_ref()
            .is_some_and(|m| !m.name.is_empty()),
        || format!("{where_} {id}: attributes.metadata.name (Attributes.Metadata.Name)"),
    );
    check_cpu_and_memory(
        f,
        &format!("{where_} {id}"),
        s.cpu.as_ref(),
        s.memory.as_ref(),
    );
    match &s.writable_layer {
        Some(layer) => {
            f.check(layer.timestamp > 0, || {
                format!("{where_} {id}: writable_layer.timestamp")
            });
            f.check(set(&layer.used_bytes), || {
                format!("{where_} {id}: writable_layer.used_bytes")
            });
            f.check(
                layer
                    .fs_id
                    .as_ref()
                    .is_some_and(|fs| !fs.mountpoint.is_empty()),
                || format!("{where_} {id}: writable_layer.fs_id.mountpoint"),
            );
        }
        None => f.check(false, || format!("{where_} {id}: writable_layer")),
    }
}

/// One pod's stats as `listPodStatsStrictlyFromCRI` and
/// `ListPodCPUAndMemoryStats` read them.
fn check_pod_stats(f: &mut Findings, s: &PodSandboxStats, host_network_pods: &HashSet<String>) {
    let Some(attributes) = &s.attributes else {
        f.check(false, || "pod stats: attributes (Attributes.Id)".into());
        return;
    };
    let id = attributes.id.clone();
    f.check(
        attributes
            .metadata
            .as_ref()
            .is_some_and(|m| !m.name.is_empty() && !m.uid.is_empty()),
        || format!("pod {id}: attributes.metadata"),
    );
    let Some(linux) = &s.linux else {
        f.check(false, || {
            format!("pod {id}: linux (Linux.Containers is read unchecked)")
        });
        return;
    };
    match &linux.network {
        Some(network) => {
            f.check(!host_network_pods.contains(&id), || {
                format!("pod {id}: host-network pod with a network block (the node's interfaces)")
            });
            f.check(network.timestamp > 0, || {
                format!("pod {id}: network.timestamp")
            });
            match &network.default_interface {
                Some(default) => {
                    f.check(!default.name.is_empty(), || {
                        format!("pod {id}: network.default_interface.name")
                    });
                    f.check(set(&default.rx_bytes) && set(&default.tx_bytes), || {
                        format!("pod {id}: network.default_interface bytes")
                    });
                }
                None => f.check(false, || {
                    format!(
                        "pod {id}: network without default_interface (criInterfaceToSummary panics)"
                    )
                }),
            }
        }
        None => f.check(host_network_pods.contains(&id), || {
            format!("pod {id}: network (a pod network pod has its eth0)")
        }),
    }
    check_cpu_and_memory(
        f,
        &format!("pod {id}"),
        linux.cpu.as_ref(),
        linux.memory.as_ref(),
    );
    match &linux.process {
        Some(process) => f.check(
            process.process_count.as_ref().is_some_and(|c| c.value > 0),
            || format!("pod {id}: process.process_count"),
        ),
        None => f.check(false, || format!("pod {id}: process")),
    }
    for c in &linux.containers {
        check_container_stats(f, &format!("pod {id} container"), c);
    }
}

/// A node with: a two-container pod (one running, one exited) under a
/// kubelet-style pod cgroup; a host-network pod; a pod without a pod
/// cgroup (as crictl makes them); a stopped pod. The kubelet's reads of
/// ListPodSandbox, ListContainers, ListPodSandboxStats, ListContainerStats,
/// ImageFsInfo, ListMetricDescriptors and ListPodSandboxMetrics find every
/// field they use, and every running pod and container is reported.
#[tokio::test(flavor = "multi_thread")]
async fn every_stats_answer_holds_what_the_kubelet_reads() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let rt = shim.runtime.clone();
    let driver = env
        .engine
        .info()
        .await
        .unwrap()
        .cgroup_driver
        .unwrap_or_default();

    // The kubelet's pod: its own cgroup, two containers, one exited.
    let uid = shim.pod_uid("multi");
    let cgroup = PodCgroup::create(Layout::detect(&driver), &uid, 256 << 20);
    let mut multi = pod_config("multi", "default", &uid);
    multi.log_directory = shim.dir.path().join("pods/multi").display().to_string();
    multi.linux.as_mut().unwrap().cgroup_parent = cgroup.parent.clone();
    let multi_id = pods::run(&rt, multi.clone()).await.unwrap();
    let app = shim.run_sleeper(&multi_id, &multi, "app").await;
    let side = shim.run_sleeper(&multi_id, &multi, "side").await;
    let done = containers::run(
        &rt,
        &multi_id,
        container_config("done", BUSYBOX_IMAGE, &["true"]),
        &multi,
    )
    .await;
    containers::wait_exited(&rt, &done).await;

    // A host-network pod.
    let host_uid = shim.pod_uid("hostnet");
    let mut hostnet = host_network(pod_config("hostnet", "default", &host_uid));
    hostnet.log_directory = shim.dir.path().join("pods/hostnet").display().to_string();
    let hostnet_id = pods::run(&rt, hostnet.clone()).await.unwrap();
    let host_app = shim.run_sleeper(&hostnet_id, &hostnet, "app").await;

    // A pod without a pod cgroup, and a stopped one.
    let (plain_id, plain) = shim.run_pod("plain").await;
    let plain_app = shim.run_sleeper(&plain_id, &plain, "app").await;
    let (stopped_id, stopped) = shim.run_pod("stopped").await;
    let stopped_app = shim.run_sleeper(&stopped_id, &stopped, "app").await;
    // As the kubelet does: the containers first (sleep ignores SIGTERM, so
    // no grace), then the sandbox.
    containers::stop(&rt, &stopped_app, 0).await;
    pods::stop(&rt, &stopped_id).await;

    let ours: HashSet<String> = [&multi_id, &hostnet_id, &plain_id, &stopped_id]
        .into_iter()
        .cloned()
        .collect();
    let running_pods: HashSet<String> = [&multi_id, &hostnet_id, &plain_id]
        .into_iter()
        .cloned()
        .collect();
    let running_containers: HashSet<String> = [&app, &side, &host_app, &plain_app]
        .into_iter()
        .cloned()
        .collect();
    let host_network_pods = HashSet::from([hostnet_id.clone()]);
    let mut f = Findings::default();

    // The writable layers are measured in the background, at once after
    // each start: wait for ours (until then used_bytes is unknown).
    let measured = std::time::Instant::now();
    loop {
        let stats = rt
            .clone()
            .list_container_stats(ListContainerStatsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .stats;
        let done = stats
            .iter()
            .filter(|s| running_containers.contains(&s.attributes.as_ref().unwrap().id))
            .filter(|s| {
                s.writable_layer
                    .as_ref()
                    .is_some_and(|l| l.used_bytes.is_some())
            })
            .count();
        if done == running_containers.len() {
            break;
        }
        assert!(
            measured.elapsed() < std::time::Duration::from_secs(20),
            "writable layers never measured: {done} of {}",
            running_containers.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // getPodAndContainerMaps: buildPodStats reads Metadata unchecked.
    let sandboxes = rt
        .clone()
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter::default()),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    for s in sandboxes.iter().filter(|s| ours.contains(&s.id)) {
        f.check(
            s.metadata.as_ref().is_some_and(|m| {
                !m.name.is_empty() && !m.uid.is_empty() && !m.namespace.is_empty()
            }),
            || format!("ListPodSandbox {}: metadata", s.id),
        );
        f.check(s.created_at > 0, || {
            format!("ListPodSandbox {}: created_at", s.id)
        });
    }
    let listed = rt
        .clone()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter::default()),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    for c in listed.iter().filter(|c| ours.contains(&c.pod_sandbox_id)) {
        // (removeTerminatedContainers also reads the pod labels, which
        // the kubelet itself puts in every ContainerConfig.)
        f.check(c.created_at > 0, || {
            format!("ListContainers {}: created_at", c.id)
        });
        f.check(c.metadata.is_some(), || {
            format!("ListContainers {}: metadata", c.id)
        });
    }

    // ListPodSandboxStats with the empty filter, as the kubelet sends it.
    let pod_stats = rt
        .clone()
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter::default()),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let mut reported_pods = HashSet::new();
    let mut reported_containers = HashSet::new();
    // Other tests' pods come and go meanwhile: ours are checked.
    for s in &pod_stats {
        let Some(a) = &s.attributes else {
            f.check(false, || "pod stats: attributes (Attributes.Id)".into());
            continue;
        };
        if ours.contains(&a.id) {
            check_pod_stats(&mut f, s, &host_network_pods);
            reported_pods.insert(a.id.clone());
            for c in s.linux.iter().flat_map(|l| &l.containers) {
                reported_containers.insert(c.attributes.as_ref().unwrap().id.clone());
            }
        }
    }
    assert_eq!(
        reported_pods, running_pods,
        "the running pods, not the stopped one"
    );
    assert_eq!(
        reported_containers, running_containers,
        "the running containers, not the exited one"
    );
    let eth0 = pod_stats
        .iter()
        .find(|s| s.attributes.as_ref().unwrap().id == multi_id)
        .and_then(|s| {
            s.linux
                .as_ref()?
                .network
                .as_ref()?
                .default_interface
                .clone()
        })
        .expect("the pod network pod's default interface");
    assert_eq!(eth0.name, "eth0");

    // ListContainerStats (the kubelet without the gate, and crictl).
    let container_stats = rt
        .clone()
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter::default()),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let mut listed_stats = HashSet::new();
    for s in &container_stats {
        let Some(a) = &s.attributes else {
            f.check(false, || "ListContainerStats: attributes".into());
            continue;
        };
        if running_containers.contains(&a.id) {
            check_container_stats(&mut f, "ListContainerStats", s);
            listed_stats.insert(a.id.clone());
        }
    }
    assert_eq!(listed_stats, running_containers);

    // ImageFsStats: UsedBytes is dereferenced.
    let fs = shim
        .images
        .clone()
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    f.check(!fs.image_filesystems.is_empty(), || {
        "ImageFsInfo: image_filesystems".into()
    });
    for (kind, usage) in fs
        .image_filesystems
        .iter()
        .map(|u| ("image", u))
        .chain(fs.container_filesystems.iter().map(|u| ("container", u)))
    {
        f.check(usage.used_bytes.is_some(), || {
            format!("ImageFsInfo {kind}: used_bytes")
        });
        f.check(usage.timestamp > 0, || {
            format!("ImageFsInfo {kind}: timestamp")
        });
        f.check(
            usage
                .fs_id
                .as_ref()
                .is_some_and(|id| !id.mountpoint.is_empty()),
            || format!("ImageFsInfo {kind}: fs_id.mountpoint"),
        );
    }

    // /metrics/cadvisor: a metric without its descriptor, or with another
    // number of label values, is dropped with an error.
    let descriptors: HashMap<String, usize> = rt
        .clone()
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys.len()))
        .collect();
    let metrics = rt
        .clone()
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let mut metric_pods = HashSet::new();
    for pod in metrics.iter().filter(|m| ours.contains(&m.pod_sandbox_id)) {
        metric_pods.insert(pod.pod_sandbox_id.clone());
        let all = pod
            .metrics
            .iter()
            .chain(pod.container_metrics.iter().flat_map(|c| &c.metrics));
        for m in all {
            match descriptors.get(&m.name) {
                Some(&keys) => f.check(keys == m.label_values.len(), || {
                    format!(
                        "metric {}: {} label values for {keys} keys",
                        m.name,
                        m.label_values.len()
                    )
                }),
                None => f.check(false, || format!("metric {}: no descriptor", m.name)),
            }
            f.check(m.value.is_some(), || format!("metric {}: value", m.name));
            f.check(m.timestamp > 0, || format!("metric {}: timestamp", m.name));
        }
        if pod.pod_sandbox_id == hostnet_id {
            let network = pod
                .metrics
                .iter()
                .chain(pod.container_metrics.iter().flat_map(|c| &c.metrics))
                .any(|m| m.name.starts_with("container_network_"));
            f.check(!network, || {
                "metrics: a host-network pod reports the node's interfaces as its own".into()
            });
        }
    }
    assert_eq!(metric_pods, running_pods);

    assert!(
        f.0.is_empty(),
        "fields the kubelet would read empty:\n{}",
        f.0.join("\n")
    );
    // The pod cgroup can go only once its containers have.
    for id in [&app, &side] {
        containers::stop(&rt, id, 0).await;
    }
    pods::stop(&rt, &multi_id).await;
    pods::remove(&rt, &multi_id).await;
}

/// cAdvisor's series as the kubelet's /metrics/cadvisor publishes them
/// (its default metric sets: CPU, memory, disk usage and I/O, network,
/// processes, OOM, pressure), by cAdvisor's documented names and label
/// keys beyond `container, id, image, name, namespace, pod`.
const CADVISOR_SERIES: &[(&str, &[&str])] = &[
    ("container_cpu_usage_seconds_total", &["cpu"]),
    ("container_cpu_user_seconds_total", &[]),
    ("container_cpu_system_seconds_total", &[]),
    ("container_cpu_cfs_periods_total", &[]),
    ("container_cpu_cfs_throttled_periods_total", &[]),
    ("container_cpu_cfs_throttled_seconds_total", &[]),
    ("container_memory_usage_bytes", &[]),
    ("container_memory_working_set_bytes", &[]),
    ("container_memory_rss", &[]),
    ("container_memory_cache", &[]),
    ("container_memory_mapped_file", &[]),
    ("container_memory_swap", &[]),
    ("container_memory_max_usage_bytes", &[]),
    ("container_memory_failcnt", &[]),
    (
        "container_memory_failures_total",
        &["failure_type", "scope"],
    ),
    ("container_memory_kernel_usage", &[]),
    ("container_memory_total_active_file_bytes", &[]),
    ("container_memory_total_inactive_file_bytes", &[]),
    ("container_oom_events_total", &[]),
    ("container_spec_memory_limit_bytes", &[]),
    ("container_spec_memory_reservation_limit_bytes", &[]),
    ("container_spec_memory_swap_limit_bytes", &[]),
    ("container_spec_cpu_shares", &[]),
    ("container_spec_cpu_quota", &[]),
    ("container_spec_cpu_period", &[]),
    ("container_processes", &[]),
    ("container_threads", &[]),
    ("container_threads_max", &[]),
    ("container_file_descriptors", &[]),
    ("container_sockets", &[]),
    ("container_ulimits_soft", &["ulimit"]),
    ("container_fs_usage_bytes", &["device"]),
    ("container_fs_limit_bytes", &["device"]),
    ("container_fs_inodes_total", &["device"]),
    ("container_fs_inodes_free", &["device"]),
    ("container_fs_reads_bytes_total", &["device"]),
    ("container_fs_writes_bytes_total", &["device"]),
    ("container_fs_reads_total", &["device"]),
    ("container_fs_writes_total", &["device"]),
    (
        "container_blkio_device_usage_total",
        &["device", "major", "minor", "operation"],
    ),
    ("container_pressure_cpu_waiting_seconds_total", &[]),
    ("container_pressure_cpu_stalled_seconds_total", &[]),
    ("container_pressure_memory_waiting_seconds_total", &[]),
    ("container_pressure_memory_stalled_seconds_total", &[]),
    ("container_pressure_io_waiting_seconds_total", &[]),
    ("container_pressure_io_stalled_seconds_total", &[]),
    ("container_start_time_seconds", &[]),
    ("container_last_seen", &[]),
    ("container_network_receive_bytes_total", &["interface"]),
    ("container_network_receive_packets_total", &["interface"]),
    ("container_network_receive_errors_total", &["interface"]),
    (
        "container_network_receive_packets_dropped_total",
        &["interface"],
    ),
    ("container_network_transmit_bytes_total", &["interface"]),
    ("container_network_transmit_packets_total", &["interface"]),
    ("container_network_transmit_errors_total", &["interface"]),
    (
        "container_network_transmit_packets_dropped_total",
        &["interface"],
    ),
];

/// ListMetricDescriptors names every series above with cAdvisor's label
/// keys, and one pod's series carry what cAdvisor would show for it: its
/// containers' CPU, memory, processes, open files and sockets, limits and
/// start time with the kubelet's labels; the pod's network per interface.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_cadvisors_names_and_labels() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let rt = shim.runtime.clone();
    let descriptors: HashMap<String, Vec<String>> = rt
        .clone()
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys))
        .collect();
    let base = ["container", "id", "image", "name", "namespace", "pod"];
    for (name, extra) in CADVISOR_SERIES {
        let want: Vec<String> = base
            .iter()
            .chain(extra.iter())
            .map(|k| k.to_string())
            .collect();
        assert_eq!(descriptors.get(*name), Some(&want), "{name}");
    }

    // A server holding a listening socket and a file open, busy for a
    // moment, under a memory limit.
    let (pod, config) = shim.run_pod("cadvisor").await;
    let mut server = container_config(
        "server",
        BUSYBOX_IMAGE,
        &[
            "sh",
            "-c",
            "exec 3</etc/passwd; nc -l -p 8080 & i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 3600",
        ],
    );
    server.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = containers::run(&rt, &pod, server, &config).await;
    let container = containers::status(&rt, &id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (pod_series, series) = loop {
        let pods = rt
            .clone()
            .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
        let ours = pods.into_iter().find(|p| p.pod_sandbox_id == pod).unwrap();
        let series: Vec<Metric> = ours
            .container_metrics
            .iter()
            .find(|c| c.container_id == id)
            .map(|c| c.metrics.clone())
            .unwrap_or_default();
        let sockets = series
            .iter()
            .find(|m| m.name == "container_sockets")
            .map_or(0, |m| m.value.unwrap().value);
        if sockets >= 1 || std::time::Instant::now() > deadline {
            break (ours.metrics, series);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let value = |name: &str| {
        series
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .value
            .unwrap()
            .value
    };
    let labels = |m: &Metric| -> HashMap<String, String> {
        descriptors[&m.name]
            .iter()
            .cloned()
            .zip(m.label_values.iter().cloned())
            .collect()
    };
    let working_set = series
        .iter()
        .find(|m| m.name == "container_memory_working_set_bytes")
        .unwrap();
    let l = labels(working_set);
    assert_eq!(l["container"], "server");
    assert_eq!(l["pod"], "cadvisor");
    assert_eq!(l["namespace"], "default");
    assert!(
        l["name"].starts_with("k8s_server_cadvisor_default_"),
        "{l:?}"
    );
    assert!(l["image"].contains("busybox"), "{l:?}");
    assert!(!l["id"].is_empty());
    assert!(value("container_memory_working_set_bytes") > 0);
    assert_eq!(value("container_spec_memory_limit_bytes"), 64 << 20);
    assert_eq!(value("container_spec_cpu_quota"), 50_000);
    assert_eq!(value("container_spec_cpu_period"), 100_000);
    assert!(value("container_processes") >= 2, "sh and nc");
    assert!(value("container_threads") >= 2);
    assert!(
        value("container_file_descriptors") >= 4,
        "stdio, passwd, the socket"
    );
    assert!(value("container_sockets") >= 1, "nc's listening socket");
    assert!(value("container_ulimits_soft") > 0);
    assert_eq!(
        value("container_start_time_seconds"),
        (container.created_at / 1_000_000_000) as u64
    );
    // Pressure where the kernel keeps it per cgroup: cgroup v2 with PSI
    // (the test guest).
    let psi = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && std::path::Path::new("/proc/pressure/cpu").exists();
    for name in [
        "container_pressure_cpu_waiting_seconds_total",
        "container_pressure_memory_waiting_seconds_total",
        "container_pressure_io_waiting_seconds_total",
        "container_pressure_io_stalled_seconds_total",
    ] {
        assert_eq!(
            series.iter().any(|m| m.name == name),
            psi,
            "{name} where the kernel has PSI per cgroup"
        );
    }
    let failures = series
        .iter()
        .filter(|m| m.name == "container_memory_failures_total")
        .count();
    assert_eq!(
        failures, 4,
        "pgfault and pgmajfault, container and hierarchy"
    );
    let rx = pod_series
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total")
        .expect("the pod's network");
    let l = labels(rx);
    assert_eq!(
        (l["interface"].as_str(), l["container"].as_str()),
        ("eth0", "POD")
    );
}
