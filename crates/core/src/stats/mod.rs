//! Container and pod stats from cgroup files, /proc and the writable
//! layer, without Docker's stats API: it samples for a second per container.

pub(crate) mod cgroups;
pub(crate) mod fs_usage;
pub mod metrics;
pub(crate) mod procfs;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use cri_dockerd_api::v1::{
    ContainerAttributes, ContainerStats, ContainerStatsFilter, CpuUsage, FilesystemIdentifier,
    FilesystemUsage, IoUsage, LinuxPodSandboxStats, MemoryUsage, NetworkInterfaceUsage,
    NetworkUsage, PodSandboxAttributes, PodSandboxStats, PodSandboxStatsFilter, ProcessUsage,
    PsiData, PsiStats, SwapUsage, UInt64Value,
};

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result};
use crate::labels;
use crate::naming;
use crate::stats::cgroups::{CgroupMounts, ContainerCgroup, Pressure, PressureData};
use crate::store::running_pid;
use crate::store::{Kind, Phase, id_matches};

const POD_INTERFACE: &str = "eth0";

/// What stats need of a running container, cached so a stats call costs
/// one Docker list, not an inspect per container.
struct ContainerFacts {
    pid: i64,
    cgroup: ContainerCgroup,
}

fn uint(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn now_ns() -> i64 {
    crate::time::system_now_ns()
}

/// CPU use between two samples, in billionths of a core. The product is
/// taken in 128 bits: a delta of more than 18.4 s of CPU time (a busy pod
/// sampled a minute apart) times 10^9 does not fit in 64 (a panic in debug
/// builds, a wrapped figure in release ones, before this was seen in CI).
/// `None` when the clock did not move forward or the counter went back
/// (a restarted container).
fn nano_cores(previous_ns: i64, previous_cpu: u64, timestamp: i64, cpu_ns: u64) -> Option<u64> {
    let elapsed = u128::try_from(timestamp.checked_sub(previous_ns)?).ok()?;
    let used = u128::from(cpu_ns.checked_sub(previous_cpu)?);
    (elapsed > 0).then(|| u64::try_from(used * 1_000_000_000 / elapsed).unwrap_or(u64::MAX))
}

/// One interface's counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

impl InterfaceCounters {
    fn usage(&self) -> NetworkInterfaceUsage {
        NetworkInterfaceUsage {
            name: self.name.clone(),
            rx_bytes: uint(self.rx_bytes),
            rx_errors: uint(self.rx_errors),
            tx_bytes: uint(self.tx_bytes),
            tx_errors: uint(self.tx_errors),
        }
    }
}

/// `/proc/<pid>/net/dev` shows the counters of that process's namespace.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (n.len() >= 16).then(|| InterfaceCounters {
                name: name.trim().to_string(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            })
        })
        .collect()
}

/// The pod's interfaces, loopback aside (cAdvisor leaves it out too), as
/// its pause container's network namespace shows them.
fn pod_interfaces(pause_pid: i64) -> Option<Vec<InterfaceCounters>> {
    let text = std::fs::read_to_string(format!("/proc/{pause_pid}/net/dev")).ok()?;
    Some(
        parse_net_dev(&text)
            .into_iter()
            .filter(|i| i.name != "lo")
            .collect(),
    )
}

/// The pod's network block as the kubelet reads it: it dereferences the
/// default interface without a check (`criInterfaceToSummary`), so a block
/// is given only with one: eth0, where CNI and Docker put the pod, else
/// the first of the pod's interfaces by name. No interface but loopback,
/// no block. A host-network pod gets none at all (its interfaces are the
/// node's, which the kubelet reports itself).
fn network_usage(interfaces: &[InterfaceCounters], timestamp: i64) -> Option<NetworkUsage> {
    let default = interfaces
        .iter()
        .find(|i| i.name == POD_INTERFACE)
        .or_else(|| interfaces.iter().min_by(|a, b| a.name.cmp(&b.name)))?;
    Some(NetworkUsage {
        timestamp,
        default_interface: Some(default.usage()),
        interfaces: interfaces.iter().map(InterfaceCounters::usage).collect(),
    })
}

/// What a pod's sandbox container is, for its stats.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SandboxShape {
    /// Created under a cgroup parent (the kubelet's per-pod cgroup).
    pub own_cgroup: bool,
    /// In the node's network namespace.
    pub host_network: bool,
}

impl SandboxShape {
    pub fn of(inspect: Option<&cri_dockerd_engine::model::ContainerInspect>) -> Self {
        Self {
            own_cgroup: has_cgroup_parent(inspect),
            host_network: inspect
                .and_then(|i| i.host_config.as_ref())
                .and_then(|h| h.network_mode.as_deref())
                == Some(crate::translate::NAMESPACE_MODE_HOST),
        }
    }
}

/// What stats keep between calls, per running container.
pub(crate) struct StatsState {
    mounts: CgroupMounts,
    /// Last CPU sample per container, for usage_nano_cores.
    last_cpu: Mutex<HashMap<String, (i64, u64)>>,
    /// Pid, cgroup and writable layer per running container.
    facts: Mutex<HashMap<String, Arc<ContainerFacts>>>,
}

impl StatsState {
    pub fn new() -> Self {
        Self {
            mounts: CgroupMounts::detect(),
            last_cpu: Mutex::default(),
            facts: Mutex::default(),
        }
    }

    pub fn mounts(&self) -> &CgroupMounts {
        &self.mounts
    }

    fn cached_facts(&self, id: &str) -> Option<Arc<ContainerFacts>> {
        self.facts.lock().get(id).cloned()
    }

    fn remember_facts(&self, id: &str, facts: Arc<ContainerFacts>) {
        self.facts.lock().insert(id.to_string(), facts);
    }

    /// The previous CPU sample of `id`, replaced by this one.
    fn swap_cpu_sample(&self, id: &str, timestamp: i64, cpu_ns: u64) -> Option<(i64, u64)> {
        self.last_cpu
            .lock()
            .insert(id.to_string(), (timestamp, cpu_ns))
    }

    /// The container stopped or is gone: nothing of it is kept.
    pub fn forget(&self, id: &str) {
        self.facts.lock().remove(id);
        self.last_cpu.lock().remove(id);
    }
}

/// What a container's stats and its pod's totals share. Process counts
/// are left to the pod: only the pod reports them, and reading them costs
/// a directory walk per container.
#[derive(Default, Clone, Copy)]
struct Sample {
    cpu_ns: u64,
    memory: Option<crate::stats::cgroups::Memory>,
    /// Pressure stalls of one cgroup (cgroup v2): never added up.
    cpu_pressure: Option<Pressure>,
    memory_pressure: Option<Pressure>,
    io_pressure: Option<Pressure>,
}

impl Sample {
    fn of(cgroup: &ContainerCgroup) -> Self {
        Self {
            cpu_ns: cgroup.cpu_usage_ns().unwrap_or(0),
            memory: cgroup.memory(),
            cpu_pressure: cgroup.pressure("cpu"),
            memory_pressure: cgroup.pressure("memory"),
            io_pressure: cgroup.pressure("io"),
        }
    }
}

/// The kernel's pressure stall figures as the CRI carries them.
fn psi(pressure: Option<Pressure>) -> Option<PsiStats> {
    let p = pressure?;
    let data = |d: PressureData| PsiData {
        total: d.total_us,
        avg10: d.avg10,
        avg60: d.avg60,
        avg300: d.avg300,
    };
    Some(PsiStats {
        full: p.full.map(data),
        some: p.some.map(data),
    })
}

fn io_usage(timestamp: i64, pressure: Option<Pressure>) -> Option<IoUsage> {
    psi(pressure).map(|psi| IoUsage {
        timestamp,
        psi: Some(psi),
    })
}

impl DockerCri {
    async fn running_facts(&self, id: &str) -> Result<Option<Arc<ContainerFacts>>> {
        if let Some(facts) = self.stats.cached_facts(id)
            && std::path::Path::new(&format!("/proc/{}", facts.pid)).exists()
        {
            return Ok(Some(facts));
        }
        let Some(record) = self.store.lookup(id).await? else {
            return Ok(None);
        };
        let inspect = &record.inspect;
        let Some(pid) = running_pid(inspect) else {
            self.stats.forget(id);
            return Ok(None);
        };
        let cgroup =
            match ContainerCgroup::of_process(pid, &self.stats.mounts, self.facts().cgroup_v2) {
                Ok(cgroup) => cgroup,
                // The process exited since Docker last reported it running: a
                // container stopping under a stats call has no stats, it is
                // not an error of the call.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io(format!("reading the cgroups of {id}"))(e)),
            };
        let facts = Arc::new(ContainerFacts { pid, cgroup });
        self.stats.remember_facts(id, facts.clone());
        Ok(Some(facts))
    }

    fn cpu_usage(&self, id: &str, timestamp: i64, sample: &Sample) -> CpuUsage {
        let cpu_ns = sample.cpu_ns;
        let previous = self.stats.swap_cpu_sample(id, timestamp, cpu_ns);
        let nano_cores = previous.and_then(|(t, c)| nano_cores(t, c, timestamp, cpu_ns));
        CpuUsage {
            timestamp,
            usage_core_nano_seconds: uint(cpu_ns),
            usage_nano_cores: nano_cores.and_then(uint),
            // Pressure stall figures exist on cgroup v2 only.
            psi: psi(sample.cpu_pressure),
        }
    }

    fn memory_usage(timestamp: i64, sample: &Sample) -> Option<MemoryUsage> {
        let m = sample.memory?;
        Some(MemoryUsage {
            timestamp,
            working_set_bytes: uint(m.working_set),
            available_bytes: m
                .limit
                .map(|l| l.saturating_sub(m.working_set))
                .and_then(uint),
            usage_bytes: uint(m.usage),
            rss_bytes: uint(m.rss),
            page_faults: uint(m.page_faults),
            major_page_faults: uint(m.major_page_faults),
            psi: psi(sample.memory_pressure),
        })
    }

    /// The writable layer as the background walk last measured it.
    /// The writable layer's filesystem always; its usage once the
    /// background walk has measured it (at once after StartContainer),
    /// unknown (not zero) before.
    async fn writable_layer(&self, id: &str, timestamp: i64) -> Option<FilesystemUsage> {
        let usage = self.disk_usage.writable_layer(id);
        Some(FilesystemUsage {
            timestamp,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: self.disk_usage.image_root().display().to_string(),
            }),
            used_bytes: usage.and_then(|u| uint(u.bytes)),
            inodes_used: usage.and_then(|u| uint(u.inodes)),
        })
    }

    /// A running container's stats; `None` once it is no longer running
    /// (stopped since it was listed): lists leave it out.
    async fn one_container_stats(
        &self,
        attributes: ContainerAttributes,
    ) -> Result<Option<(ContainerStats, Sample)>> {
        let timestamp = now_ns();
        let Some(facts) = self.running_facts(&attributes.id).await? else {
            return Ok(None);
        };
        let sample = Sample::of(&facts.cgroup);
        let swap = facts.cgroup.swap().map(|s| SwapUsage {
            timestamp,
            swap_available_bytes: s.limit.map(|l| l.saturating_sub(s.usage)).and_then(uint),
            swap_usage_bytes: uint(s.usage),
        });
        let stats = ContainerStats {
            cpu: Some(self.cpu_usage(&attributes.id, timestamp, &sample)),
            memory: Self::memory_usage(timestamp, &sample),
            writable_layer: self.writable_layer(&attributes.id, timestamp).await,
            swap,
            io: io_usage(timestamp, sample.io_pressure),
            attributes: Some(attributes),
        };
        Ok(Some((stats, sample)))
    }

    /// Every running sandbox or container matching the filter, from the
    /// store, with its sandbox id.
    async fn running_attributes(
        &self,
        kind: Kind,
        id: &str,
        sandbox_id: &str,
        selector: &HashMap<String, String>,
    ) -> Result<Vec<(ContainerAttributes, String)>> {
        self.store.ensure_synced().await?;
        Ok(self
            .store
            .all(kind)
            .into_iter()
            .filter(|r| {
                r.phase == Phase::Running
                    && id_matches(&r.id, id)
                    && (sandbox_id.is_empty() || r.sandbox_id == sandbox_id)
                    && r.matches_labels(selector)
            })
            .map(|r| {
                let (cri_labels, annotations) = labels::extract_labels(r.labels());
                (
                    ContainerAttributes {
                        id: r.id.clone(),
                        metadata: naming::parse_container_name(&r.name),
                        labels: cri_labels,
                        annotations,
                    },
                    r.sandbox_id.clone(),
                )
            })
            .collect())
    }

    pub async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let record = self
            .container_record(id, crate::store::Freshness::Stored)
            .await?;
        let (cri_labels, annotations) = labels::extract_labels(record.labels());
        let attributes = ContainerAttributes {
            id: record.id.clone(),
            metadata: naming::parse_container_name(&record.name),
            labels: cri_labels,
            annotations,
        };
        // A stopped container is still answered for by id: its attributes.
        let stopped = ContainerStats {
            attributes: Some(attributes.clone()),
            ..Default::default()
        };
        Ok(self
            .one_container_stats(attributes)
            .await?
            .map_or(stopped, |(stats, _)| stats))
    }

    pub async fn list_container_stats(
        &self,
        filter: Option<&ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        let containers = self.container_stats_entries(filter).await?;
        let stats = futures::future::join_all(
            containers
                .into_iter()
                .map(|attributes| self.one_container_stats(attributes)),
        )
        .await;
        let mut out = Vec::with_capacity(stats.len());
        for one in stats {
            if let Some((stats, _)) = one? {
                out.push(stats);
            }
        }
        Ok(out)
    }

    /// The containers ListContainerStats reports, for an answer built a
    /// part at a time ([`Self::container_stats_of`] each).
    pub async fn container_stats_entries(
        &self,
        filter: Option<&ContainerStatsFilter>,
    ) -> Result<Vec<ContainerAttributes>> {
        let empty = HashMap::new();
        let (id, sandbox, selector) = filter
            .map(|f| (f.id.as_str(), f.pod_sandbox_id.as_str(), &f.label_selector))
            .unwrap_or(("", "", &empty));
        Ok(self
            .running_attributes(Kind::Container, id, sandbox, selector)
            .await?
            .into_iter()
            .map(|(attributes, _)| attributes)
            .collect())
    }

    /// One container's stats as ListContainerStats gives them; `None` when
    /// it stopped since it was listed.
    pub async fn container_stats_of(
        &self,
        attributes: ContainerAttributes,
    ) -> Result<Option<ContainerStats>> {
        Ok(self
            .one_container_stats(attributes)
            .await?
            .map(|(stats, _)| stats))
    }

    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<PodSandboxStats> {
        let details = self
            .sandbox_details(id, crate::store::Freshness::Stored)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))?;
        let (cri_labels, annotations) = labels::extract_labels(
            &details
                .inspect()
                .and_then(|i| i.config.as_ref())
                .and_then(|c| c.labels.clone())
                .unwrap_or_default(),
        );
        let attributes = PodSandboxAttributes {
            id: details.id.clone(),
            metadata: Some(details.metadata.clone()),
            labels: cri_labels,
            annotations,
        };
        let containers = self
            .running_attributes(Kind::Container, "", &details.id, &HashMap::new())
            .await?;
        self.pod_stats(
            attributes,
            SandboxShape::of(details.inspect()),
            containers.into_iter().map(|(a, _)| a).collect(),
        )
        .await
    }

    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<&PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>> {
        let mut out = Vec::new();
        for entry in self.pod_stats_entries(filter).await? {
            out.push(self.pod_stats_of(entry).await?);
        }
        Ok(out)
    }

    /// One pod's stats, as ListPodSandboxStats gives them.
    pub async fn pod_stats_of(&self, entry: PodStatsEntry) -> Result<PodSandboxStats> {
        self.pod_stats(entry.attributes, entry.shape, entry.containers)
            .await
    }

    /// The pods ListPodSandboxStats reports, each with its running
    /// containers, for an answer built a pod at a time.
    pub async fn pod_stats_entries(
        &self,
        filter: Option<&PodSandboxStatsFilter>,
    ) -> Result<Vec<PodStatsEntry>> {
        let empty = HashMap::new();
        let (id, selector) = filter
            .map(|f| (f.id.as_str(), &f.label_selector))
            .unwrap_or(("", &empty));
        let sandboxes = self
            .running_attributes(Kind::Sandbox, id, "", selector)
            .await?;
        let containers = self
            .running_attributes(Kind::Container, "", "", &empty)
            .await?;
        let mut by_pod: HashMap<String, Vec<ContainerAttributes>> = HashMap::new();
        for (attributes, sandbox) in containers {
            by_pod.entry(sandbox).or_default().push(attributes);
        }
        let mut out = Vec::with_capacity(sandboxes.len());
        for (sandbox, _) in sandboxes {
            let record = self.store.get(&sandbox.id);
            let attributes = PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: record
                    .as_ref()
                    .and_then(|r| naming::parse_sandbox_name(&r.name)),
                labels: sandbox.labels,
                annotations: sandbox.annotations,
            };
            out.push(PodStatsEntry {
                shape: SandboxShape::of(record.as_ref().map(|r| &r.inspect)),
                containers: by_pod.remove(&sandbox.id).unwrap_or_default(),
                attributes,
            });
        }
        Ok(out)
    }

    /// A pod's usage. Under the kubelet every pod has its own cgroup (the
    /// sandbox's cgroup parent, which its containers share): that cgroup's
    /// figures are the pod's, limit included, as containerd reports them.
    /// Without one (crictl's pods, usually) the containers' and the pause
    /// container's usage are added up, and the pod has no limit.
    async fn pod_stats(
        &self,
        attributes: PodSandboxAttributes,
        shape: SandboxShape,
        containers: Vec<ContainerAttributes>,
    ) -> Result<PodSandboxStats> {
        let timestamp = now_ns();
        let pause = self.running_facts(&attributes.id).await?;
        let pod_cgroup = pause
            .as_ref()
            .filter(|_| shape.own_cgroup)
            .and_then(|p| p.cgroup.parent());
        let mut total = Sample::default();
        let mut memory_seen = false;
        let mut add = |s: &Sample| {
            total.cpu_ns += s.cpu_ns;
            if let Some(m) = s.memory {
                memory_seen = true;
                let t = total.memory.get_or_insert_default();
                t.usage += m.usage;
                t.working_set += m.working_set;
                t.rss += m.rss;
                t.page_faults += m.page_faults;
                t.major_page_faults += m.major_page_faults;
            }
        };
        if pod_cgroup.is_none()
            && let Some(facts) = &pause
        {
            add(&Sample::of(&facts.cgroup));
        }
        let mut processes = match (&pod_cgroup, &pause) {
            (Some(pod), _) => pod.process_count().unwrap_or(0),
            (None, Some(pause)) => pause.cgroup.process_count().unwrap_or(0),
            (None, None) => 0,
        };
        let mut container_stats = Vec::with_capacity(containers.len());
        for attributes in containers {
            let id = attributes.id.clone();
            let Some((stats, sample)) = self.one_container_stats(attributes).await? else {
                continue;
            };
            if pod_cgroup.is_none() {
                add(&sample);
                if let Some(facts) = self.running_facts(&id).await? {
                    processes += facts.cgroup.process_count().unwrap_or(0);
                }
            }
            container_stats.push(stats);
        }
        if let Some(cgroup) = &pod_cgroup {
            total = Sample::of(cgroup);
            memory_seen = total.memory.is_some();
        }
        let network = pause
            .as_ref()
            .filter(|_| !shape.host_network)
            .and_then(|p| pod_interfaces(p.pid))
            .and_then(|interfaces| network_usage(&interfaces, timestamp));
        Ok(PodSandboxStats {
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(self.cpu_usage(&format!("pod:{}", attributes.id), timestamp, &total)),
                memory: if memory_seen {
                    Self::memory_usage(timestamp, &total)
                } else {
                    None
                },
                network,
                process: Some(ProcessUsage {
                    timestamp,
                    process_count: uint(processes),
                }),
                containers: container_stats,
                io: io_usage(timestamp, total.io_pressure),
            }),
            attributes: Some(attributes),
            windows: None,
        })
    }
}

/// A pod ListPodSandboxStats reports, with its running containers.
pub struct PodStatsEntry {
    attributes: PodSandboxAttributes,
    shape: SandboxShape,
    containers: Vec<ContainerAttributes>,
}

/// Whether the sandbox was created under a cgroup parent (the kubelet's
/// per-pod cgroup).
fn has_cgroup_parent(inspect: Option<&cri_dockerd_engine::model::ContainerInspect>) -> bool {
    inspect
        .and_then(|i| i.host_config.as_ref())
        .and_then(|h| h.cgroup_parent.as_deref())
        .is_some_and(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {

    #[test]
    fn nano_cores_of_long_busy_intervals_do_not_overflow() {
        // Two cores busy for a minute: 120 s of CPU time in 60 s.
        let minute = 60_000_000_000i64;
        assert_eq!(
            super::nano_cores(0, 0, minute, 120_000_000_000),
            Some(2_000_000_000)
        );
        // Half a core over 10 ms.
        assert_eq!(
            super::nano_cores(0, 0, 10_000_000, 5_000_000),
            Some(500_000_000)
        );
        // The clock did not move, went back, or the counter restarted.
        assert_eq!(super::nano_cores(5, 0, 5, 10), None);
        assert_eq!(super::nano_cores(10, 0, 5, 10), None);
        assert_eq!(super::nano_cores(0, 10, 5, 5), None);
    }

    use super::*;

    fn counters(name: &str, rx: u64) -> InterfaceCounters {
        InterfaceCounters {
            name: name.into(),
            rx_bytes: rx,
            ..Default::default()
        }
    }

    #[test]
    fn a_network_block_always_has_its_default_interface() {
        let eth0 = network_usage(&[counters("net1", 1), counters("eth0", 2)], 7).unwrap();
        assert_eq!(eth0.default_interface.unwrap().name, "eth0");
        assert_eq!(eth0.interfaces.len(), 2);
        let only = network_usage(&[counters("veth-x", 3)], 7).unwrap();
        assert_eq!(
            only.default_interface.unwrap().rx_bytes,
            Some(UInt64Value { value: 3 })
        );
        let first = network_usage(&[counters("net2", 1), counters("net1", 2)], 7).unwrap();
        assert_eq!(first.default_interface.unwrap().name, "net1");
        assert_eq!(network_usage(&[], 7), None, "loopback only: no block");
    }

    #[test]
    fn net_dev_counters() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    3    0    0     0          0         0     4000      40    5    0    0     0       0          0\n";
        let all = parse_net_dev(text);
        let eth0 = all.iter().find(|i| i.name == "eth0").unwrap();
        assert_eq!(eth0.rx_bytes, 2000);
        assert_eq!(eth0.rx_packets, 20);
        assert_eq!(eth0.rx_errors, 3);
        assert_eq!(eth0.tx_bytes, 4000);
        assert_eq!(eth0.tx_packets, 40);
        assert_eq!(eth0.tx_errors, 5);
        assert_eq!(all.len(), 2);
    }
}
