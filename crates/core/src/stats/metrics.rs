//! ListMetricDescriptors and ListPodSandboxMetrics: the series the kubelet
//! publishes at `/metrics/cadvisor` (with its PodAndContainerStatsFromCRI
//! gate, instead of running cAdvisor), under cAdvisor's names and labels.
//!
//! Every figure comes from the same places as the CRI stats — cgroup files,
//! the pause container's `/proc/<pid>/net/dev`, the background disk walks —
//! and the containers from the store, so a call makes no Docker request.
//! The CRI carries whole numbers only: seconds are whole seconds, as CRI-O
//! reports them too.

use std::collections::HashMap;
use std::sync::Arc;

use cri_dockerd_api::v1::{
    ContainerMetrics, Metric, MetricDescriptor, MetricType, PodSandboxMetrics, UInt64Value,
};

use crate::docker_cri::DockerCri;
use crate::error::Result;
use crate::naming;
use crate::stats::InterfaceCounters;
use crate::stats::cgroups::{ContainerCgroup, Cpu, DeviceIo, Memory, Pressure};
use crate::stats::fs_usage::{Filesystem, Usage};
use crate::stats::procfs::{self, OpenFiles};
use crate::store::{Kind, Phase, Record};

/// cAdvisor's labels for a container, in the order every series carries
/// them; a family may add one more (`cpu`, `interface`, `device`).
pub const LABEL_KEYS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// The `container` label of a pod's own series (its network), as the
/// kubelet names the pause container.
const POD_CONTAINER: &str = "POD";

/// The label keys a family adds to [`LABEL_KEYS`], as cAdvisor's.
type Extra = &'static [&'static str];
const NO_EXTRA: Extra = &[];
const CPU: Extra = &["cpu"];
const INTERFACE: Extra = &["interface"];
const DEVICE: Extra = &["device"];
const FAILURE: Extra = &["failure_type", "scope"];
const ULIMIT: Extra = &["ulimit"];
const BLKIO: Extra = &["device", "major", "minor", "operation"];

struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    extra: Extra,
}

const fn counter(name: &'static str, help: &'static str, extra: Extra) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        extra,
    }
}

const fn gauge(name: &'static str, help: &'static str, extra: Extra) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        extra,
    }
}

// Names, types and meanings are cAdvisor's; the help texts are ours.
const CPU_USAGE: &str = "container_cpu_usage_seconds_total";
const CPU_USER: &str = "container_cpu_user_seconds_total";
const CPU_SYSTEM: &str = "container_cpu_system_seconds_total";
const CFS_PERIODS: &str = "container_cpu_cfs_periods_total";
const CFS_THROTTLED_PERIODS: &str = "container_cpu_cfs_throttled_periods_total";
const CFS_THROTTLED_SECONDS: &str = "container_cpu_cfs_throttled_seconds_total";
const MEMORY_USAGE: &str = "container_memory_usage_bytes";
const MEMORY_WORKING_SET: &str = "container_memory_working_set_bytes";
const MEMORY_RSS: &str = "container_memory_rss";
const MEMORY_CACHE: &str = "container_memory_cache";
const MEMORY_MAPPED_FILE: &str = "container_memory_mapped_file";
const MEMORY_SWAP: &str = "container_memory_swap";
const MEMORY_MAX_USAGE: &str = "container_memory_max_usage_bytes";
const MEMORY_FAILCNT: &str = "container_memory_failcnt";
const OOM_EVENTS: &str = "container_oom_events_total";
const SPEC_MEMORY_LIMIT: &str = "container_spec_memory_limit_bytes";
const SPEC_MEMORY_RESERVATION: &str = "container_spec_memory_reservation_limit_bytes";
const SPEC_CPU_SHARES: &str = "container_spec_cpu_shares";
const SPEC_CPU_QUOTA: &str = "container_spec_cpu_quota";
const SPEC_CPU_PERIOD: &str = "container_spec_cpu_period";
const PROCESSES: &str = "container_processes";
const THREADS: &str = "container_threads";
const FS_USAGE: &str = "container_fs_usage_bytes";
const FS_LIMIT: &str = "container_fs_limit_bytes";
const FS_INODES_TOTAL: &str = "container_fs_inodes_total";
const FS_INODES_FREE: &str = "container_fs_inodes_free";
const FS_READS_BYTES: &str = "container_fs_reads_bytes_total";
const FS_WRITES_BYTES: &str = "container_fs_writes_bytes_total";
const FS_READS: &str = "container_fs_reads_total";
const FS_WRITES: &str = "container_fs_writes_total";
const START_TIME: &str = "container_start_time_seconds";
const LAST_SEEN: &str = "container_last_seen";
const MEMORY_KERNEL: &str = "container_memory_kernel_usage";
const MEMORY_ACTIVE_FILE: &str = "container_memory_total_active_file_bytes";
const MEMORY_INACTIVE_FILE: &str = "container_memory_total_inactive_file_bytes";
const MEMORY_FAILURES: &str = "container_memory_failures_total";
const SPEC_MEMORY_SWAP_LIMIT: &str = "container_spec_memory_swap_limit_bytes";
const THREADS_MAX: &str = "container_threads_max";
const FILE_DESCRIPTORS: &str = "container_file_descriptors";
const SOCKETS: &str = "container_sockets";
const ULIMITS_SOFT: &str = "container_ulimits_soft";
const BLKIO_DEVICE_USAGE: &str = "container_blkio_device_usage_total";
const CPU_PRESSURE_WAITING: &str = "container_pressure_cpu_waiting_seconds_total";
const CPU_PRESSURE_STALLED: &str = "container_pressure_cpu_stalled_seconds_total";
const MEMORY_PRESSURE_WAITING: &str = "container_pressure_memory_waiting_seconds_total";
const MEMORY_PRESSURE_STALLED: &str = "container_pressure_memory_stalled_seconds_total";
const IO_PRESSURE_WAITING: &str = "container_pressure_io_waiting_seconds_total";
const IO_PRESSURE_STALLED: &str = "container_pressure_io_stalled_seconds_total";
const RX_BYTES: &str = "container_network_receive_bytes_total";
const RX_PACKETS: &str = "container_network_receive_packets_total";
const RX_ERRORS: &str = "container_network_receive_errors_total";
const RX_DROPPED: &str = "container_network_receive_packets_dropped_total";
const TX_BYTES: &str = "container_network_transmit_bytes_total";
const TX_PACKETS: &str = "container_network_transmit_packets_total";
const TX_ERRORS: &str = "container_network_transmit_errors_total";
const TX_DROPPED: &str = "container_network_transmit_packets_dropped_total";

const FAMILIES: &[Family] = &[
    counter(CPU_USAGE, "CPU time used, in seconds.", CPU),
    counter(
        CPU_USER,
        "CPU time used in user mode, in seconds.",
        NO_EXTRA,
    ),
    counter(
        CPU_SYSTEM,
        "CPU time used in kernel mode, in seconds.",
        NO_EXTRA,
    ),
    counter(CFS_PERIODS, "CFS enforcement periods elapsed.", NO_EXTRA),
    counter(
        CFS_THROTTLED_PERIODS,
        "CFS periods in which the container was throttled.",
        NO_EXTRA,
    ),
    counter(
        CFS_THROTTLED_SECONDS,
        "Time the container was throttled, in seconds.",
        NO_EXTRA,
    ),
    gauge(
        MEMORY_USAGE,
        "Memory in use, page cache included, in bytes.",
        NO_EXTRA,
    ),
    gauge(
        MEMORY_WORKING_SET,
        "Memory in use less inactive page cache, in bytes: what the kubelet evicts on.",
        NO_EXTRA,
    ),
    gauge(
        MEMORY_RSS,
        "Anonymous memory and swap cache, in bytes.",
        NO_EXTRA,
    ),
    gauge(MEMORY_CACHE, "Page cache, in bytes.", NO_EXTRA),
    gauge(
        MEMORY_MAPPED_FILE,
        "Memory-mapped files, in bytes.",
        NO_EXTRA,
    ),
    gauge(MEMORY_SWAP, "Swap in use, in bytes.", NO_EXTRA),
    gauge(
        MEMORY_MAX_USAGE,
        "Highest memory use recorded, in bytes.",
        NO_EXTRA,
    ),
    counter(MEMORY_FAILCNT, "Times memory use hit the limit.", NO_EXTRA),
    counter(
        OOM_EVENTS,
        "Processes the kernel killed for lack of memory in this container.",
        NO_EXTRA,
    ),
    gauge(
        SPEC_MEMORY_LIMIT,
        "Memory limit in bytes; 0 for none.",
        NO_EXTRA,
    ),
    gauge(
        SPEC_MEMORY_RESERVATION,
        "Memory soft limit in bytes; 0 for none.",
        NO_EXTRA,
    ),
    gauge(SPEC_CPU_SHARES, "CPU shares.", NO_EXTRA),
    gauge(
        SPEC_CPU_QUOTA,
        "CFS quota in microseconds per period; present when set.",
        NO_EXTRA,
    ),
    gauge(
        SPEC_CPU_PERIOD,
        "CFS period in microseconds; present when a quota is set.",
        NO_EXTRA,
    ),
    gauge(
        MEMORY_KERNEL,
        "Kernel memory charged to the container, in bytes.",
        NO_EXTRA,
    ),
    gauge(
        MEMORY_ACTIVE_FILE,
        "Page cache on the active list, in bytes.",
        NO_EXTRA,
    ),
    gauge(
        MEMORY_INACTIVE_FILE,
        "Page cache on the inactive list, in bytes.",
        NO_EXTRA,
    ),
    counter(
        MEMORY_FAILURES,
        "Page faults (pgfault) and major page faults (pgmajfault), of the container alone (scope container) or with its children (scope hierarchy).",
        FAILURE,
    ),
    gauge(
        SPEC_MEMORY_SWAP_LIMIT,
        "Memory and swap limit (cgroup v1) or swap limit (v2) in bytes; 0 for none.",
        NO_EXTRA,
    ),
    gauge(PROCESSES, "Processes in the container.", NO_EXTRA),
    gauge(
        THREADS_MAX,
        "The most tasks the container may have; 0 for no limit.",
        NO_EXTRA,
    ),
    gauge(
        FILE_DESCRIPTORS,
        "Open file descriptors of the container's processes.",
        NO_EXTRA,
    ),
    gauge(
        SOCKETS,
        "Open sockets of the container's processes.",
        NO_EXTRA,
    ),
    gauge(
        ULIMITS_SOFT,
        "Soft limits of the container's first process (max_open_files).",
        ULIMIT,
    ),
    counter(
        BLKIO_DEVICE_USAGE,
        "Bytes read (operation Read) and written (Write) per block device.",
        BLKIO,
    ),
    counter(
        CPU_PRESSURE_WAITING,
        "Time some tasks waited for CPU (PSI some), in seconds.",
        NO_EXTRA,
    ),
    counter(
        CPU_PRESSURE_STALLED,
        "Time all tasks stalled on CPU (PSI full), in seconds.",
        NO_EXTRA,
    ),
    counter(
        MEMORY_PRESSURE_WAITING,
        "Time some tasks waited for memory (PSI some), in seconds.",
        NO_EXTRA,
    ),
    counter(
        MEMORY_PRESSURE_STALLED,
        "Time all tasks stalled on memory (PSI full), in seconds.",
        NO_EXTRA,
    ),
    counter(
        IO_PRESSURE_WAITING,
        "Time some tasks waited for I/O (PSI some), in seconds.",
        NO_EXTRA,
    ),
    counter(
        IO_PRESSURE_STALLED,
        "Time all tasks stalled on I/O (PSI full), in seconds.",
        NO_EXTRA,
    ),
    gauge(THREADS, "Threads in the container.", NO_EXTRA),
    gauge(
        FS_USAGE,
        "Bytes the container's writable layer uses.",
        DEVICE,
    ),
    gauge(
        FS_LIMIT,
        "Size of the filesystem holding the writable layer, in bytes.",
        DEVICE,
    ),
    gauge(
        FS_INODES_TOTAL,
        "Inodes of the filesystem holding the writable layer.",
        DEVICE,
    ),
    gauge(
        FS_INODES_FREE,
        "Free inodes of the filesystem holding the writable layer.",
        DEVICE,
    ),
    counter(
        FS_READS_BYTES,
        "Bytes read from a block device (io.stat on cgroup v2, blkio on v1).",
        DEVICE,
    ),
    counter(FS_WRITES_BYTES, "Bytes written to a block device.", DEVICE),
    counter(FS_READS, "Reads completed from a block device.", DEVICE),
    counter(FS_WRITES, "Writes completed to a block device.", DEVICE),
    gauge(
        START_TIME,
        "When the container was created, in seconds since the epoch.",
        NO_EXTRA,
    ),
    gauge(
        LAST_SEEN,
        "When the container was last seen, in seconds since the epoch.",
        NO_EXTRA,
    ),
    counter(
        RX_BYTES,
        "Bytes received by the pod, per interface.",
        INTERFACE,
    ),
    counter(
        RX_PACKETS,
        "Packets received by the pod, per interface.",
        INTERFACE,
    ),
    counter(
        RX_ERRORS,
        "Errors while receiving, per interface.",
        INTERFACE,
    ),
    counter(
        RX_DROPPED,
        "Packets dropped while receiving, per interface.",
        INTERFACE,
    ),
    counter(TX_BYTES, "Bytes sent by the pod, per interface.", INTERFACE),
    counter(
        TX_PACKETS,
        "Packets sent by the pod, per interface.",
        INTERFACE,
    ),
    counter(TX_ERRORS, "Errors while sending, per interface.", INTERFACE),
    counter(
        TX_DROPPED,
        "Packets dropped while sending, per interface.",
        INTERFACE,
    ),
];

fn family(name: &str) -> &'static Family {
    FAMILIES
        .iter()
        .find(|f| f.name == name)
        .expect("every metric name has a family")
}

/// Every series this runtime reports, for ListMetricDescriptors.
pub fn descriptors() -> Vec<MetricDescriptor> {
    FAMILIES
        .iter()
        .map(|f| MetricDescriptor {
            name: f.name.to_string(),
            help: f.help.to_string(),
            label_keys: LABEL_KEYS
                .iter()
                .copied()
                .chain(f.extra.iter().copied())
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

/// Who a series is about: the values of [`LABEL_KEYS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesLabels {
    pub container: String,
    /// The cgroup path, as cAdvisor names a container.
    pub id: String,
    pub image: String,
    /// The Docker container's name.
    pub name: String,
    pub namespace: String,
    pub pod: String,
}

impl SeriesLabels {
    fn values(&self) -> [&str; 6] {
        [
            &self.container,
            &self.id,
            &self.image,
            &self.name,
            &self.namespace,
            &self.pod,
        ]
    }
}

/// One container's (or pod cgroup's) readings; what is `None` is left out.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    pub processes: Option<u64>,
    pub threads: Option<u64>,
    /// The pids controller's limit; `Some(0)` for none.
    pub threads_max: Option<u64>,
    pub open_files: Option<OpenFiles>,
    /// The soft open-files limit of the first process.
    pub max_open_files: Option<u64>,
    /// PSI of `cpu`, `memory` and `io`, where the kernel keeps it.
    pub pressure: Vec<(&'static str, Pressure)>,
    /// The writable layer, and the filesystem it lives on.
    pub writable_layer: Option<(Usage, Filesystem)>,
    /// Block I/O per device, with the device's name (`/dev/vda`).
    pub io: Vec<(String, DeviceIo)>,
    pub created_s: Option<u64>,
}

/// Collects the series of one subject.
struct Series<'a> {
    labels: &'a SeriesLabels,
    timestamp: i64,
    out: Vec<Metric>,
}

impl Series<'_> {
    fn push(&mut self, name: &str, value: u64, extra: &[&str]) {
        let family = family(name);
        debug_assert_eq!(family.extra.len(), extra.len(), "{name}");
        self.out.push(Metric {
            name: family.name.to_string(),
            timestamp: self.timestamp,
            metric_type: family.kind as i32,
            label_values: self
                .labels
                .values()
                .into_iter()
                .chain(extra.iter().copied())
                .map(str::to_string)
                .collect(),
            value: Some(UInt64Value { value }),
        });
    }
}

const NS_PER_SECOND: u64 = 1_000_000_000;

/// The series of one container (or of a pod's cgroup).
pub fn container_series(labels: &SeriesLabels, readings: &Readings, timestamp: i64) -> Vec<Metric> {
    let mut series = Series {
        labels,
        timestamp,
        out: Vec::new(),
    };
    if let Some(cpu) = &readings.cpu {
        series.push(CPU_USAGE, cpu.usage_ns / NS_PER_SECOND, &["total"]);
        series.push(CPU_USER, cpu.user_ns / NS_PER_SECOND, &[]);
        series.push(CPU_SYSTEM, cpu.system_ns / NS_PER_SECOND, &[]);
        series.push(CFS_PERIODS, cpu.periods, &[]);
        series.push(CFS_THROTTLED_PERIODS, cpu.throttled_periods, &[]);
        series.push(CFS_THROTTLED_SECONDS, cpu.throttled_ns / NS_PER_SECOND, &[]);
        series.push(SPEC_CPU_SHARES, cpu.shares, &[]);
        if cpu.quota_us > 0 {
            series.push(SPEC_CPU_QUOTA, cpu.quota_us, &[]);
            series.push(SPEC_CPU_PERIOD, cpu.period_us, &[]);
        }
    }
    if let Some(memory) = &readings.memory {
        series.push(MEMORY_USAGE, memory.usage, &[]);
        series.push(MEMORY_WORKING_SET, memory.working_set, &[]);
        series.push(MEMORY_RSS, memory.rss, &[]);
        series.push(MEMORY_CACHE, memory.cache, &[]);
        series.push(MEMORY_MAPPED_FILE, memory.mapped_file, &[]);
        series.push(MEMORY_SWAP, memory.swap, &[]);
        series.push(MEMORY_MAX_USAGE, memory.max_usage, &[]);
        series.push(MEMORY_FAILCNT, memory.failcnt, &[]);
        if let Some(kills) = memory.oom_kills {
            series.push(OOM_EVENTS, kills, &[]);
        }
        series.push(SPEC_MEMORY_LIMIT, memory.limit.unwrap_or(0), &[]);
        series.push(
            SPEC_MEMORY_RESERVATION,
            memory.reservation.unwrap_or(0),
            &[],
        );
        series.push(SPEC_MEMORY_SWAP_LIMIT, memory.swap_limit.unwrap_or(0), &[]);
        if let Some(kernel) = memory.kernel {
            series.push(MEMORY_KERNEL, kernel, &[]);
        }
        series.push(MEMORY_ACTIVE_FILE, memory.active_file, &[]);
        series.push(MEMORY_INACTIVE_FILE, memory.inactive_file, &[]);
        for (failure, scope, value) in [
            ("pgfault", "container", memory.own_page_faults),
            ("pgmajfault", "container", memory.own_major_page_faults),
            ("pgfault", "hierarchy", memory.page_faults),
            ("pgmajfault", "hierarchy", memory.major_page_faults),
        ] {
            series.push(MEMORY_FAILURES, value, &[failure, scope]);
        }
    }
    if let Some(processes) = readings.processes {
        series.push(PROCESSES, processes, &[]);
    }
    if let Some(threads) = readings.threads {
        series.push(THREADS, threads, &[]);
    }
    if let Some(max) = readings.threads_max {
        series.push(THREADS_MAX, max, &[]);
    }
    if let Some(files) = readings.open_files {
        series.push(FILE_DESCRIPTORS, files.descriptors, &[]);
        series.push(SOCKETS, files.sockets, &[]);
    }
    if let Some(limit) = readings.max_open_files {
        series.push(ULIMITS_SOFT, limit, &["max_open_files"]);
    }
    for (resource, pressure) in &readings.pressure {
        let (waiting, stalled) = match *resource {
            "cpu" => (CPU_PRESSURE_WAITING, CPU_PRESSURE_STALLED),
            "memory" => (MEMORY_PRESSURE_WAITING, MEMORY_PRESSURE_STALLED),
            _ => (IO_PRESSURE_WAITING, IO_PRESSURE_STALLED),
        };
        const US_PER_SECOND: u64 = 1_000_000;
        if let Some(some) = pressure.some {
            series.push(waiting, some.total_us / US_PER_SECOND, &[]);
        }
        if let Some(full) = pressure.full {
            series.push(stalled, full.total_us / US_PER_SECOND, &[]);
        }
    }
    if let Some((usage, fs)) = &readings.writable_layer {
        let device: &[&str] = &[fs.device.as_str()];
        series.push(FS_USAGE, usage.bytes, device);
        series.push(FS_LIMIT, fs.capacity_bytes, device);
        series.push(FS_INODES_TOTAL, fs.inodes_total, device);
        series.push(FS_INODES_FREE, fs.inodes_free, device);
    }
    for (device, io) in &readings.io {
        let device: &[&str] = &[device.as_str()];
        series.push(FS_READS_BYTES, io.read_bytes, device);
        series.push(FS_WRITES_BYTES, io.write_bytes, device);
        series.push(FS_READS, io.reads, device);
        series.push(FS_WRITES, io.writes, device);
        let (major, minor) = (io.device.0.to_string(), io.device.1.to_string());
        for (operation, bytes) in [("Read", io.read_bytes), ("Write", io.write_bytes)] {
            series.push(
                BLKIO_DEVICE_USAGE,
                bytes,
                &[device[0], major.as_str(), minor.as_str(), operation],
            );
        }
    }
    if let Some(created) = readings.created_s {
        series.push(START_TIME, created, &[]);
    }
    series.push(LAST_SEEN, (timestamp.max(0) as u64) / NS_PER_SECOND, &[]);
    series.out
}

/// A pod's network series, one set per interface.
pub fn network_series(
    labels: &SeriesLabels,
    interfaces: &[InterfaceCounters],
    timestamp: i64,
) -> Vec<Metric> {
    let mut series = Series {
        labels,
        timestamp,
        out: Vec::new(),
    };
    for i in interfaces {
        let name: &[&str] = &[i.name.as_str()];
        series.push(RX_BYTES, i.rx_bytes, name);
        series.push(RX_PACKETS, i.rx_packets, name);
        series.push(RX_ERRORS, i.rx_errors, name);
        series.push(RX_DROPPED, i.rx_dropped, name);
        series.push(TX_BYTES, i.tx_bytes, name);
        series.push(TX_PACKETS, i.tx_packets, name);
        series.push(TX_ERRORS, i.tx_errors, name);
        series.push(TX_DROPPED, i.tx_dropped, name);
    }
    series.out
}

fn readings_of(cgroup: &ContainerCgroup) -> Readings {
    let pids = cgroup.processes().ok();
    let threads = cgroup.thread_count();
    Readings {
        cpu: cgroup.cpu(),
        memory: cgroup.memory_in_full(),
        processes: pids.as_ref().map(|p| p.len() as u64),
        threads,
        // The pids controller is there when the count is.
        threads_max: threads.map(|_| cgroup.thread_limit().unwrap_or(0)),
        open_files: pids.as_deref().map(procfs::open_files),
        max_open_files: pids
            .as_ref()
            .and_then(|p| p.iter().min())
            .and_then(|pid| procfs::max_open_files(*pid)),
        pressure: ["cpu", "memory", "io"]
            .into_iter()
            .filter_map(|r| Some((r, cgroup.pressure(r)?)))
            .collect(),
        io: cgroup
            .io()
            .unwrap_or_default()
            .into_iter()
            .map(|io| (device_name(io.device), io))
            .collect(),
        ..Readings::default()
    }
}

/// A block device's name as cAdvisor gives it (`/dev/vda`), from sysfs;
/// `major:minor` when sysfs does not say.
fn device_name((major, minor): (u32, u32)) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|uevent| {
            uevent
                .lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|name| format!("/dev/{name}"))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

fn image_of(record: &Record) -> String {
    record
        .inspect
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

impl DockerCri {
    pub fn list_metric_descriptors(&self) -> Vec<MetricDescriptor> {
        descriptors()
    }

    /// The series of every ready pod and of its running containers.
    pub async fn list_pod_sandbox_metrics(&self) -> Result<Vec<PodSandboxMetrics>> {
        let mut pods = Vec::new();
        for entry in self.pod_metrics_entries().await? {
            if let Some(pod) = self.pod_metrics_of(entry).await? {
                pods.push(pod);
            }
        }
        Ok(pods)
    }

    /// The pods ListPodSandboxMetrics reports, each with its running
    /// containers, for an answer built a pod at a time.
    pub async fn pod_metrics_entries(&self) -> Result<Vec<PodMetricsEntry>> {
        self.store.ensure_synced().await?;
        let mut containers_by_pod: HashMap<String, Vec<Arc<Record>>> = HashMap::new();
        for record in self.store.all(Kind::Container) {
            if record.phase == Phase::Running {
                containers_by_pod
                    .entry(record.sandbox_id.clone())
                    .or_default()
                    .push(record);
            }
        }
        Ok(self
            .store
            .all(Kind::Sandbox)
            .into_iter()
            .filter(|s| s.phase == Phase::Running)
            .map(|sandbox| PodMetricsEntry {
                containers: containers_by_pod.remove(&sandbox.id).unwrap_or_default(),
                sandbox,
            })
            .collect())
    }

    /// One pod's series and its containers'; `None` when it stopped since.
    pub async fn pod_metrics_of(
        &self,
        entry: PodMetricsEntry,
    ) -> Result<Option<PodSandboxMetrics>> {
        let PodMetricsEntry {
            sandbox,
            containers,
        } = entry;
        let timestamp = crate::time::system_now_ns();
        let Some(pause) = self.running_facts(&sandbox.id).await? else {
            return Ok(None);
        };
        let filesystem = match self.disk_usage.filesystem() {
            Ok(fs) => Some(fs),
            Err(e) => {
                tracing::debug!(error = %e, "no statfs of the data root");
                None
            }
        };
        let metadata = naming::parse_sandbox_name(&sandbox.name).unwrap_or_default();
        let pod_labels = |container: &str, id: &str, image: String, name: &str| SeriesLabels {
            container: container.to_string(),
            id: id.to_string(),
            image,
            name: name.to_string(),
            namespace: metadata.namespace.clone(),
            pod: metadata.name.clone(),
        };
        let pause_labels = pod_labels(
            POD_CONTAINER,
            pause.cgroup.path(),
            image_of(&sandbox),
            &sandbox.name,
        );
        let mut metrics = Vec::new();
        let shape = super::SandboxShape::of(Some(&sandbox.inspect));
        // A host-network pod's interfaces are the node's: not the pod's.
        if !shape.host_network
            && let Some(interfaces) = super::pod_interfaces(pause.pid)
        {
            metrics.extend(network_series(&pause_labels, &interfaces, timestamp));
        }
        // The pod's own cgroup, as cAdvisor reports it: no container name.
        if shape.own_cgroup
            && let Some(pod_cgroup) = pause.cgroup.parent()
        {
            let labels = pod_labels("", pod_cgroup.path(), String::new(), "");
            metrics.extend(container_series(
                &labels,
                &readings_of(&pod_cgroup),
                timestamp,
            ));
        }
        let mut container_metrics = Vec::new();
        for record in containers {
            let Some(facts) = self.running_facts(&record.id).await? else {
                continue;
            };
            let container_name = naming::parse_container_name(&record.name)
                .map(|m| m.name)
                .unwrap_or_default();
            let labels = pod_labels(
                &container_name,
                facts.cgroup.path(),
                image_of(&record),
                &record.name,
            );
            let mut readings = readings_of(&facts.cgroup);
            readings.writable_layer = self
                .disk_usage
                .writable_layer(&record.id)
                .zip(filesystem.clone());
            readings.created_s = Some(record.created_ns.max(0) as u64 / NS_PER_SECOND);
            container_metrics.push(ContainerMetrics {
                container_id: record.id.clone(),
                metrics: container_series(&labels, &readings, timestamp),
            });
        }
        Ok(Some(PodSandboxMetrics {
            pod_sandbox_id: sandbox.id.clone(),
            metrics,
            container_metrics,
        }))
    }
}

/// A pod ListPodSandboxMetrics reports, with its running containers.
pub struct PodMetricsEntry {
    sandbox: Arc<Record>,
    containers: Vec<Arc<Record>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> SeriesLabels {
        SeriesLabels {
            container: "app".into(),
            id: "/kubepods/podA/abc".into(),
            image: "busybox:1.36".into(),
            name: "k8s_app_web_default_A_0".into(),
            namespace: "default".into(),
            pod: "web".into(),
        }
    }

    #[test]
    fn every_descriptor_is_unique_and_keyed_like_cadvisor() {
        let all = descriptors();
        let mut names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let cpu = all.iter().find(|d| d.name == CPU_USAGE).unwrap();
        assert_eq!(
            cpu.label_keys,
            [
                "container",
                "id",
                "image",
                "name",
                "namespace",
                "pod",
                "cpu"
            ]
        );
        let rx = all.iter().find(|d| d.name == RX_BYTES).unwrap();
        assert_eq!(rx.label_keys.last().unwrap(), "interface");
        for required in [
            CPU_USAGE,
            MEMORY_WORKING_SET,
            MEMORY_USAGE,
            MEMORY_RSS,
            SPEC_MEMORY_LIMIT,
            FS_USAGE,
            RX_BYTES,
            TX_BYTES,
            PROCESSES,
            OOM_EVENTS,
        ] {
            assert!(names.contains(&required), "{required}");
        }
    }

    #[test]
    fn series_carry_as_many_values_as_their_descriptor_has_keys() {
        let keys: HashMap<String, usize> = descriptors()
            .into_iter()
            .map(|d| (d.name, d.label_keys.len()))
            .collect();
        let readings = Readings {
            cpu: Some(Cpu {
                usage_ns: 3_500_000_000,
                quota_us: 50_000,
                period_us: 100_000,
                ..Cpu::default()
            }),
            memory: Some(Memory {
                usage: 10,
                working_set: 8,
                oom_kills: Some(2),
                ..Memory::default()
            }),
            processes: Some(3),
            threads: Some(4),
            threads_max: Some(0),
            open_files: Some(OpenFiles {
                descriptors: 9,
                sockets: 2,
            }),
            max_open_files: Some(1024),
            pressure: vec![(
                "io",
                Pressure {
                    some: Some(crate::stats::cgroups::PressureData {
                        total_us: 3_000_000,
                        ..Default::default()
                    }),
                    full: None,
                },
            )],
            writable_layer: Some((
                Usage {
                    bytes: 4096,
                    inodes: 2,
                },
                Filesystem {
                    device: "/dev/sda1".into(),
                    capacity_bytes: 1 << 30,
                    inodes_total: 100,
                    inodes_free: 50,
                },
            )),
            io: vec![(
                "/dev/vda".into(),
                DeviceIo {
                    device: (254, 0),
                    read_bytes: 4096,
                    write_bytes: 8192,
                    reads: 1,
                    writes: 2,
                },
            )],
            created_s: Some(1_700_000_000),
        };
        let mut all = container_series(&labels(), &readings, 5_000_000_000);
        all.extend(network_series(
            &labels(),
            &[InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 7,
                ..InterfaceCounters::default()
            }],
            5_000_000_000,
        ));
        for metric in &all {
            assert_eq!(
                metric.label_values.len(),
                keys[&metric.name],
                "{}",
                metric.name
            );
        }
        let value = |name: &str| {
            all.iter()
                .find(|m| m.name == name)
                .map(|m| (m.value.unwrap().value, m.label_values.clone()))
                .unwrap()
        };
        let (cpu, cpu_labels) = value(CPU_USAGE);
        assert_eq!(cpu, 3, "whole seconds");
        assert_eq!(cpu_labels.last().unwrap(), "total");
        assert_eq!(value(OOM_EVENTS).0, 2);
        assert_eq!(
            value(SPEC_MEMORY_LIMIT).0,
            0,
            "no limit reads as 0, as in cAdvisor"
        );
        assert_eq!(value(SPEC_CPU_QUOTA).0, 50_000);
        let (fs, fs_labels) = value(FS_USAGE);
        assert_eq!(
            (fs, fs_labels.last().unwrap().as_str()),
            (4096, "/dev/sda1")
        );
        let (written, io_labels) = value(FS_WRITES_BYTES);
        assert_eq!(
            (written, io_labels.last().unwrap().as_str()),
            (8192, "/dev/vda")
        );
        assert_eq!(value(FS_READS).0, 1);
        let blkio: Vec<(u64, Vec<String>)> = all
            .iter()
            .filter(|m| m.name == BLKIO_DEVICE_USAGE)
            .map(|m| (m.value.unwrap().value, m.label_values[6..].to_vec()))
            .collect();
        assert_eq!(
            blkio,
            vec![
                (
                    4096,
                    vec!["/dev/vda".into(), "254".into(), "0".into(), "Read".into()]
                ),
                (
                    8192,
                    vec!["/dev/vda".into(), "254".into(), "0".into(), "Write".into()]
                ),
            ]
        );
        let (sockets, _) = value(SOCKETS);
        assert_eq!((value(FILE_DESCRIPTORS).0, sockets), (9, 2));
        let (nofile, nofile_labels) = value(ULIMITS_SOFT);
        assert_eq!(
            (nofile, nofile_labels[6].as_str()),
            (1024, "max_open_files")
        );
        assert_eq!(value(IO_PRESSURE_WAITING).0, 3, "whole seconds");
        assert!(
            !all.iter().any(|m| m.name == IO_PRESSURE_STALLED),
            "no full line, no series"
        );
        let failures: Vec<Vec<String>> = all
            .iter()
            .filter(|m| m.name == MEMORY_FAILURES)
            .map(|m| m.label_values[6..].to_vec())
            .collect();
        assert_eq!(failures.len(), 4);
        assert!(failures.contains(&vec!["pgmajfault".to_string(), "hierarchy".to_string()]));
        let (rx, rx_labels) = value(RX_BYTES);
        assert_eq!((rx, rx_labels.last().unwrap().as_str()), (7, "eth0"));
        assert_eq!(value(LAST_SEEN).0, 5);
        assert_eq!(
            all.iter()
                .find(|m| m.name == CPU_USAGE)
                .unwrap()
                .metric_type,
            MetricType::Counter as i32
        );
    }

    #[test]
    fn unknown_readings_are_left_out() {
        let all = container_series(&labels(), &Readings::default(), 0);
        let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [LAST_SEEN]);
    }
}
