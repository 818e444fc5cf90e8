//! A container's cgroup files, found from its init process and this host's
//! cgroup mounts, for stats and for limits Docker has no API for.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct CgroupMounts {
    /// cgroup v1: controller → mount point.
    v1: HashMap<String, PathBuf>,
    /// The cgroup v2 mount.
    v2: Option<PathBuf>,
}

impl CgroupMounts {
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| Self::parse(&m))
            .unwrap_or_default()
    }

    /// `/proc/self/mountinfo`: "... <mount point> ... - <fstype> <source> <super options>".
    pub fn parse(mountinfo: &str) -> Self {
        let mut mounts = Self::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            match (right.next(), right.nth(1)) {
                (Some("cgroup2"), _) => mounts.v2 = Some(PathBuf::from(mount_point)),
                (Some("cgroup"), Some(options)) => {
                    for option in options.split(',') {
                        if !matches!(option, "rw" | "ro") && !option.contains('=') {
                            mounts
                                .v1
                                .entry(option.to_string())
                                .or_insert_with(|| PathBuf::from(mount_point));
                        }
                    }
                }
                _ => {}
            }
        }
        mounts
    }
}

/// Where one container's (or pod's) cgroup files are.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    /// The path inside the hierarchy, as `/proc/<pid>/cgroup` shows it and
    /// cAdvisor names a container (`id`): `/kubepods/pod…/<container id>`.
    path: String,
    dirs: Dirs,
}

#[derive(Debug, Clone)]
enum Dirs {
    /// cgroup v1: controller → directory.
    V1(HashMap<String, PathBuf>),
    V2(PathBuf),
}

/// Kernel ticks (USER_HZ) in cgroup v1's `cpuacct.stat`, as nanoseconds.
fn tick_ns() -> u64 {
    static TICK_NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICK_NS.get_or_init(|| {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|hz| *hz > 0)
            .unwrap_or(100) as u64;
        1_000_000_000 / hz
    })
}

/// Limits at or above this mean "none" (v1 writes PAGE_COUNTER_MAX pages).
const UNLIMITED: u64 = 1 << 62;

impl ContainerCgroup {
    /// From `/proc/<pid>/cgroup` of the container's init process.
    pub fn of_process(pid: i64, mounts: &CgroupMounts, v2: bool) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        Ok(Self::from_proc(&text, mounts, v2))
    }

    pub fn from_proc(text: &str, mounts: &CgroupMounts, v2: bool) -> Self {
        let join = |mount: &Path, path: &str| mount.join(path.trim_start_matches('/'));
        if v2 {
            let path = text
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let mount = mounts
                .v2
                .clone()
                .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
            return Self {
                path: path.to_string(),
                dirs: Dirs::V2(join(&mount, path)),
            };
        }
        let mut dirs = HashMap::new();
        let mut memory_path = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            for controller in controllers.split(',').filter(|c| !c.is_empty()) {
                if controller == "memory" {
                    memory_path = Some(path.to_string());
                }
                if let Some(mount) = mounts.v1.get(controller) {
                    dirs.insert(controller.to_string(), join(mount, path));
                }
            }
        }
        Self {
            path: memory_path.unwrap_or_else(|| "/".to_string()),
            dirs: Dirs::V1(dirs),
        }
    }

    /// The path inside the hierarchy (cAdvisor's `id` label).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The cgroup one level up: a pod's, for a container created under the
    /// pod's cgroup parent.
    pub fn parent(&self) -> Option<Self> {
        let path = Path::new(&self.path).parent()?.display().to_string();
        let up = |dir: &PathBuf| dir.parent().map(Path::to_path_buf);
        let dirs = match &self.dirs {
            Dirs::V1(dirs) => Dirs::V1(
                dirs.iter()
                    .filter_map(|(c, d)| Some((c.clone(), up(d)?)))
                    .collect(),
            ),
            Dirs::V2(dir) => Dirs::V2(up(dir)?),
        };
        Some(Self { path, dirs })
    }

    fn v1(&self, controller: &str, file: &str) -> Option<PathBuf> {
        match &self.dirs {
            Dirs::V1(dirs) => dirs.get(controller).map(|d| d.join(file)),
            Dirs::V2(_) => None,
        }
    }

    fn v2(&self, file: &str) -> Option<PathBuf> {
        match &self.dirs {
            Dirs::V2(dir) => Some(dir.join(file)),
            Dirs::V1(_) => None,
        }
    }

    /// Cumulative CPU time in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        if let Some(path) = self.v1("cpuacct", "cpuacct.usage") {
            return read_u64(&path);
        }
        let stat = read_flat_keyed(&self.v2("cpu.stat")?)?;
        stat.get("usage_usec").map(|us| us * 1000)
    }

    /// CPU time split by mode, throttling, and the CPU limits in force.
    pub fn cpu(&self) -> Option<Cpu> {
        if let Some(usage) = self.v1("cpuacct", "cpuacct.usage") {
            let modes = self
                .v1("cpuacct", "cpuacct.stat")
                .and_then(|p| read_flat_keyed(&p))
                .unwrap_or_default();
            let throttling = self
                .v1("cpu", "cpu.stat")
                .and_then(|p| read_flat_keyed(&p))
                .unwrap_or_default();
            let file = |name: &str| self.v1("cpu", name).and_then(|p| read_i64(&p));
            return Some(Cpu {
                usage_ns: read_u64(&usage)?,
                user_ns: modes.get("user").map(|t| t * tick_ns()).unwrap_or(0),
                system_ns: modes.get("system").map(|t| t * tick_ns()).unwrap_or(0),
                periods: throttling.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: throttling.get("nr_throttled").copied().unwrap_or(0),
                throttled_ns: throttling.get("throttled_time").copied().unwrap_or(0),
                shares: file("cpu.shares").map(|s| s.max(0) as u64).unwrap_or(0),
                quota_us: file("cpu.cfs_quota_us").filter(|q| *q > 0).unwrap_or(0) as u64,
                period_us: file("cpu.cfs_period_us")
                    .map(|p| p.max(0) as u64)
                    .unwrap_or(0),
            });
        }
        let stat = read_flat_keyed(&self.v2("cpu.stat")?)?;
        let us = |key: &str| stat.get(key).map(|v| v * 1000).unwrap_or(0);
        let (quota_us, period_us) = self
            .v2("cpu.max")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| parse_cpu_max(&text))
            .unwrap_or((0, 0));
        Some(Cpu {
            usage_ns: us("usage_usec"),
            user_ns: us("user_usec"),
            system_ns: us("system_usec"),
            periods: stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_ns: us("throttled_usec"),
            shares: self
                .v2("cpu.weight")
                .and_then(|p| read_u64(&p))
                .map(weight_to_shares)
                .unwrap_or(0),
            quota_us,
            period_us,
        })
    }

    /// Usage, the breakdown `memory.stat` gives and the limit: what the CRI
    /// stats report, read every few seconds.
    pub fn memory(&self) -> Option<Memory> {
        if let Some(usage) = self.v1("memory", "memory.usage_in_bytes") {
            let stat = read_flat_keyed(&self.v1("memory", "memory.stat")?)?;
            let usage = read_u64(&usage)?;
            let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
            return Some(Memory {
                usage,
                // As cAdvisor (and so the kubelet) count it.
                working_set: usage.saturating_sub(stat("total_inactive_file")),
                rss: stat("total_rss"),
                cache: stat("total_cache"),
                mapped_file: stat("total_mapped_file"),
                swap: stat("total_swap"),
                page_faults: stat("total_pgfault"),
                major_page_faults: stat("total_pgmajfault"),
                limit: self
                    .v1("memory", "memory.limit_in_bytes")
                    .and_then(|p| read_u64(&p))
                    .filter(|l| *l < UNLIMITED),
                ..Memory::default()
            });
        }
        let usage = read_u64(&self.v2("memory.current")?)?;
        let stat = read_flat_keyed(&self.v2("memory.stat")?)?;
        let file = |name: &str| self.v2(name).and_then(|p| read_u64(&p));
        let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
        Some(Memory {
            usage,
            working_set: usage.saturating_sub(stat("inactive_file")),
            rss: stat("anon"),
            cache: stat("file"),
            mapped_file: stat("file_mapped"),
            swap: file("memory.swap.current").unwrap_or(0),
            page_faults: stat("pgfault"),
            major_page_faults: stat("pgmajfault"),
            limit: file("memory.max").filter(|l| *l < UNLIMITED),
            ..Memory::default()
        })
    }

    /// [`Self::memory`] with the peak, the limit hits, the OOM kills and the
    /// soft limit, which only the metrics report.
    pub fn memory_in_full(&self) -> Option<Memory> {
        let mut memory = self.memory()?;
        if matches!(self.dirs, Dirs::V1(_)) {
            let file = |name: &str| self.v1("memory", name).and_then(|p| read_u64(&p));
            memory.max_usage = file("memory.max_usage_in_bytes").unwrap_or(0);
            memory.failcnt = file("memory.failcnt").unwrap_or(0);
            memory.reservation = file("memory.soft_limit_in_bytes").filter(|l| *l < UNLIMITED);
            memory.oom_kills = self
                .v1("memory", "memory.oom_control")
                .and_then(|p| read_flat_keyed(&p))
                .and_then(|c| c.get("oom_kill").copied());
            memory.kernel = file("memory.kmem.usage_in_bytes");
            memory.swap_limit = file("memory.memsw.limit_in_bytes").filter(|l| *l < UNLIMITED);
            if let Some(stat) = self
                .v1("memory", "memory.stat")
                .and_then(|p| read_flat_keyed(&p))
            {
                let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
                memory.active_file = stat("total_active_file");
                memory.inactive_file = stat("total_inactive_file");
                memory.own_page_faults = stat("pgfault");
                memory.own_major_page_faults = stat("pgmajfault");
            }
            return Some(memory);
        }
        let file = |name: &str| self.v2(name).and_then(|p| read_u64(&p));
        let events = self
            .v2("memory.events")
            .and_then(|p| read_flat_keyed(&p))
            .unwrap_or_default();
        memory.max_usage = file("memory.peak").unwrap_or(0);
        memory.failcnt = events.get("max").copied().unwrap_or(0);
        memory.oom_kills = events.get("oom_kill").copied();
        memory.reservation = file("memory.low").filter(|l| *l > 0 && *l < UNLIMITED);
        memory.swap_limit = file("memory.swap.max").filter(|l| *l < UNLIMITED);
        if let Some(stat) = self.v2("memory.stat").and_then(|p| read_flat_keyed(&p)) {
            memory.kernel = stat.get("kernel").copied();
            let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
            memory.active_file = stat("active_file");
            memory.inactive_file = stat("inactive_file");
        }
        memory.own_page_faults = memory.page_faults;
        memory.own_major_page_faults = memory.major_page_faults;
        Some(memory)
    }

    /// Processes (not threads) in the cgroup, as cAdvisor counts them.
    pub fn process_count(&self) -> Option<u64> {
        self.processes().ok().map(|p| p.len() as u64)
    }

    /// Tasks (threads) in the cgroup, from the pids controller.
    pub fn thread_count(&self) -> Option<u64> {
        match &self.dirs {
            Dirs::V1(_) => read_u64(&self.v1("pids", "pids.current")?),
            Dirs::V2(_) => read_u64(&self.v2("pids.current")?),
        }
    }

    /// The pids controller's limit on tasks; `None` when unlimited.
    pub fn thread_limit(&self) -> Option<u64> {
        let path = match &self.dirs {
            Dirs::V1(_) => self.v1("pids", "pids.max")?,
            Dirs::V2(_) => self.v2("pids.max")?,
        };
        read_u64(&path).filter(|l| *l < UNLIMITED)
    }

    /// The processes in the cgroup and the cgroups below it (a pod's are
    /// all in its containers' cgroups), as cAdvisor counts them.
    pub fn processes(&self) -> std::io::Result<Vec<i64>> {
        let dir = match &self.dirs {
            Dirs::V1(dirs) => dirs.get("pids").or_else(|| dirs.get("memory")).cloned(),
            Dirs::V2(dir) => Some(dir.clone()),
        }
        .ok_or_else(|| std::io::Error::other("no cgroup with a process list"))?;
        let mut pids = Vec::new();
        let mut stack = vec![dir];
        let mut top = true;
        while let Some(dir) = stack.pop() {
            let procs = match std::fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(procs) => procs,
                // A child cgroup removed under the walk.
                Err(e) if !top && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            top = false;
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i64>().ok()));
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        Ok(pids)
    }

    /// Pressure stall information for `cpu`, `memory` or `io` (cgroup v2,
    /// on kernels with PSI on): `None` where the kernel keeps none.
    pub fn pressure(&self, resource: &str) -> Option<Pressure> {
        let text = std::fs::read_to_string(self.v2(&format!("{resource}.pressure"))?).ok()?;
        parse_pressure(&text)
    }

    /// Bytes and operations read and written, per block device: cgroup v2's
    /// `io.stat`, or v1's blkio counters (those of the throttle policy,
    /// which every kernel keeps).
    pub fn io(&self) -> Option<Vec<DeviceIo>> {
        if let Some(path) = self.v2("io.stat") {
            return Some(parse_io_stat(&std::fs::read_to_string(path).ok()?));
        }
        let bytes =
            std::fs::read_to_string(self.v1("blkio", "blkio.throttle.io_service_bytes_recursive")?)
                .ok()?;
        let ops = self
            .v1("blkio", "blkio.throttle.io_serviced_recursive")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        Some(parse_blkio(&bytes, &ops))
    }

    /// Swap in use and the swap limit (v2 `memory.swap.*`; v1 the
    /// memory+swap counters less memory).
    pub fn swap(&self) -> Option<Swap> {
        if let Some(usage) = self.v2("memory.swap.current") {
            return Some(Swap {
                usage: read_u64(&usage)?,
                limit: self
                    .v2("memory.swap.max")
                    .and_then(|p| read_u64(&p))
                    .filter(|l| *l < UNLIMITED),
            });
        }
        let file = |name: &str| self.v1("memory", name).and_then(|p| read_u64(&p));
        let with_swap = file("memory.memsw.usage_in_bytes")?;
        let memory = file("memory.usage_in_bytes")?;
        let limit = file("memory.memsw.limit_in_bytes")
            .filter(|l| *l < UNLIMITED)
            .zip(file("memory.limit_in_bytes"))
            .map(|(both, memory)| both.saturating_sub(memory));
        Some(Swap {
            usage: with_swap.saturating_sub(memory),
            limit,
        })
    }

    /// Hugepage limits (`2MB`, `1GB` page sizes, as the kubelet sends them).
    pub fn set_hugepage_limit(&self, page_size: &str, limit: u64) -> std::io::Result<()> {
        let path = match &self.dirs {
            Dirs::V1(_) => self.v1("hugetlb", &format!("hugetlb.{page_size}.limit_in_bytes")),
            Dirs::V2(_) => self.v2(&format!("hugetlb.{page_size}.max")),
        }
        .ok_or_else(|| std::io::Error::other("no hugetlb cgroup controller"))?;
        std::fs::write(path, limit.to_string())
    }

    /// cgroup v2 `unified` keys are file names in the container's cgroup.
    pub fn set_unified(&self, key: &str, value: &str) -> std::io::Result<()> {
        if key.contains('/') || key.starts_with('.') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid cgroup key {key:?}"),
            ));
        }
        let path = self
            .v2(key)
            .ok_or_else(|| std::io::Error::other("unified resources need cgroup v2"))?;
        std::fs::write(path, value)
    }
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and its `full` line.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut pressure = Pressure::default();
    let mut seen = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let target = match fields.next() {
            Some("some") => &mut pressure.some,
            Some("full") => &mut pressure.full,
            _ => continue,
        };
        let mut data = PressureData::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => data.avg10 = value.parse().unwrap_or(0.0),
                "avg60" => data.avg60 = value.parse().unwrap_or(0.0),
                "avg300" => data.avg300 = value.parse().unwrap_or(0.0),
                "total" => data.total_us = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        *target = Some(data);
        seen = true;
    }
    seen.then_some(pressure)
}

/// cgroup v2's `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`.
pub fn parse_io_stat(text: &str) -> Vec<DeviceIo> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = parse_device(fields.next()?)?;
            let mut io = DeviceIo {
                device,
                ..Default::default()
            };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let value = value.parse().unwrap_or(0);
                match key {
                    "rbytes" => io.read_bytes = value,
                    "wbytes" => io.write_bytes = value,
                    "rios" => io.reads = value,
                    "wios" => io.writes = value,
                    _ => {}
                }
            }
            Some(io)
        })
        .collect()
}

/// cgroup v1's blkio counters: `8:0 Read 4096` lines, bytes and ops apart.
pub fn parse_blkio(bytes: &str, ops: &str) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    let mut apply = |text: &str, is_bytes: bool| {
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(device), Some(op), Some(value)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let (Some(device), Ok(value)) = (parse_device(device), value.parse::<u64>()) else {
                continue;
            };
            let entry = match devices.iter().position(|d| d.device == device) {
                Some(i) => &mut devices[i],
                None => {
                    devices.push(DeviceIo {
                        device,
                        ..Default::default()
                    });
                    devices.last_mut().expect("just pushed")
                }
            };
            match (op, is_bytes) {
                ("Read", true) => entry.read_bytes = value,
                ("Write", true) => entry.write_bytes = value,
                ("Read", false) => entry.reads = value,
                ("Write", false) => entry.writes = value,
                _ => {}
            }
        }
    };
    apply(bytes, true);
    apply(ops, false);
    devices
}

fn parse_device(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// cgroup v2 `cpu.max`: "<quota|max> <period>".
fn parse_cpu_max(text: &str) -> (u64, u64) {
    let mut parts = text.split_whitespace();
    let quota = parts.next().and_then(|q| q.parse().ok()).unwrap_or(0);
    let period = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (quota, period)
}

/// cgroup v2's cpu.weight (1–10000) back to v1 shares (2–262144), the
/// inverse of the conversion runc applies.
fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    2 + (weight.saturating_sub(1) * 262_142) / 9_999
}

/// A cgroup's pressure stall information.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: Option<PressureData>,
    pub full: Option<PressureData>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PressureData {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Stalled time, microseconds.
    pub total_us: u64,
}

/// One block device's I/O by a cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    /// `(major, minor)`.
    pub device: (u32, u32),
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swap {
    pub usage: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    pub shares: u64,
    /// 0 when no quota is set.
    pub quota_us: u64,
    pub period_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub cache: u64,
    pub mapped_file: u64,
    pub swap: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub max_usage: u64,
    pub failcnt: u64,
    /// Processes the kernel killed for memory in this cgroup (kernel 4.13+).
    pub oom_kills: Option<u64>,
    pub limit: Option<u64>,
    pub reservation: Option<u64>,
    /// Kernel memory (v1 kmem, v2 `kernel` of memory.stat, 5.18+).
    pub kernel: Option<u64>,
    pub active_file: u64,
    pub inactive_file: u64,
    /// Page faults in this cgroup alone (v1); on v2, where every figure is
    /// hierarchical, the same as `page_faults`.
    pub own_page_faults: u64,
    pub own_major_page_faults: u64,
    /// Memory and swap (v1 memsw) or swap (v2) limit.
    pub swap_limit: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text == "max" {
        return Some(u64::MAX);
    }
    text.parse().ok()
}

fn read_i64(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_flat_keyed(path: &Path) -> Option<HashMap<String, u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio\n\
40 31 0:34 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn v1_paths_from_mountinfo_and_proc_cgroup() {
        let mounts = CgroupMounts::parse(MOUNTINFO);
        let proc =
            "4:memory:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n0::/docker/abc\n";
        let cg = ContainerCgroup::from_proc(proc, &mounts, false);
        assert_eq!(
            cg.v1("memory", "memory.stat").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/docker/abc/memory.stat")
        );
        assert_eq!(
            cg.v1("cpuacct", "cpuacct.usage").unwrap(),
            PathBuf::from("/sys/fs/cgroup/cpuacct/docker/abc/cpuacct.usage")
        );
        assert_eq!(
            mounts.v1["net_prio"],
            PathBuf::from("/sys/fs/cgroup/net_cls,net_prio")
        );
    }

    #[test]
    fn v2_path() {
        let mounts = CgroupMounts::parse("40 31 0:34 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let cg = ContainerCgroup::from_proc("0::/system.slice/docker-abc.scope\n", &mounts, true);
        assert_eq!(
            cg.v2("cpu.stat").unwrap(),
            PathBuf::from("/sys/fs/cgroup/system.slice/docker-abc.scope/cpu.stat")
        );
        assert!(cg.set_unified("../escape", "1").is_err());
    }

    #[test]
    fn parent_is_the_pod_cgroup() {
        let mounts = CgroupMounts::parse(MOUNTINFO);
        let proc = "4:memory:/kubepods/podA/abc\n2:cpuacct:/kubepods/podA/abc\n";
        let pod = ContainerCgroup::from_proc(proc, &mounts, false)
            .parent()
            .unwrap();
        assert_eq!(pod.path(), "/kubepods/podA");
        assert_eq!(
            pod.v1("memory", "memory.stat").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/kubepods/podA/memory.stat")
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reads_cgroup_v1_files() {
        let dir = tempfile::tempdir().unwrap();
        let mem = dir.path().join("memory/pod");
        let cpuacct = dir.path().join("cpuacct/pod");
        let cpu = dir.path().join("cpu/pod");
        write(&mem, "memory.usage_in_bytes", "1000\n");
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(&mem, "memory.soft_limit_in_bytes", "500\n");
        write(&mem, "memory.max_usage_in_bytes", "1200\n");
        write(&mem, "memory.failcnt", "2\n");
        write(
            &mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        );
        write(
            &mem,
            "memory.stat",
            "cache 1\ntotal_cache 350\ntotal_mapped_file 40\ntotal_swap 0\ntotal_inactive_file 300\ntotal_active_file 50\ntotal_rss 600\npgfault 5\npgmajfault 0\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        );
        write(&cpuacct, "cpuacct.usage", "123456789\n");
        write(&cpuacct, "cpuacct.stat", "user 5\nsystem 2\n");
        write(
            &cpu,
            "cpu.stat",
            "nr_periods 10\nnr_throttled 4\nthrottled_time 999\n",
        );
        write(&cpu, "cpu.shares", "512\n");
        write(&cpu, "cpu.cfs_quota_us", "-1\n");
        write(&cpu, "cpu.cfs_period_us", "100000\n");
        let cg = ContainerCgroup {
            path: "/pod".into(),
            dirs: Dirs::V1(HashMap::from([
                ("memory".to_string(), mem),
                ("cpuacct".to_string(), cpuacct),
                ("cpu".to_string(), cpu),
            ])),
        };
        assert_eq!(cg.cpu_usage_ns(), Some(123456789));
        let basic = cg.memory().unwrap();
        assert_eq!(
            (basic.working_set, basic.oom_kills),
            (700, None),
            "stats read less"
        );
        assert_eq!(
            cg.memory_in_full(),
            Some(Memory {
                usage: 1000,
                working_set: 700,
                rss: 600,
                cache: 350,
                mapped_file: 40,
                swap: 0,
                page_faults: 7,
                major_page_faults: 1,
                max_usage: 1200,
                failcnt: 2,
                oom_kills: Some(3),
                limit: None,
                reservation: Some(500),
                kernel: None,
                active_file: 50,
                inactive_file: 300,
                own_page_faults: 5,
                own_major_page_faults: 0,
                swap_limit: None,
            })
        );
        assert_eq!(
            cg.cpu(),
            Some(Cpu {
                usage_ns: 123456789,
                user_ns: 5 * tick_ns(),
                system_ns: 2 * tick_ns(),
                periods: 10,
                throttled_periods: 4,
                throttled_ns: 999,
                shares: 512,
                quota_us: 0,
                period_us: 100000,
            })
        );
    }

    #[test]
    fn processes_include_child_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pids/pod");
        write(&pod, "cgroup.procs", "");
        write(&pod.join("pause"), "cgroup.procs", "10\n");
        write(&pod.join("app"), "cgroup.procs", "20\n21\n");
        write(&pod, "pids.current", "5\n");
        let cg = ContainerCgroup {
            path: "/pod".into(),
            dirs: Dirs::V1(HashMap::from([("pids".to_string(), pod)])),
        };
        let mut pids = cg.processes().unwrap();
        pids.sort();
        assert_eq!(pids, [10, 20, 21]);
        assert_eq!(cg.process_count(), Some(3));
        assert_eq!(cg.thread_count(), Some(5), "pids.current counts threads");
    }

    #[test]
    fn reads_cgroup_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        write(&d, "memory.current", "2000\n");
        write(&d, "memory.max", "max\n");
        write(&d, "memory.low", "0\n");
        write(
            &d,
            "memory.events",
            "low 0\nhigh 0\nmax 6\noom 1\noom_kill 1\n",
        );
        write(
            &d,
            "memory.stat",
            "anon 800\nfile 900\nfile_mapped 30\ninactive_file 500\npgfault 9\npgmajfault 2\n",
        );
        write(
            &d,
            "cpu.stat",
            "usage_usec 300\nuser_usec 200\nsystem_usec 100\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
        );
        write(&d, "cpu.max", "50000 100000\n");
        write(&d, "cpu.weight", "100\n");
        let cg = ContainerCgroup {
            path: "/pod".into(),
            dirs: Dirs::V2(d),
        };
        let memory = cg.memory_in_full().unwrap();
        assert_eq!(memory.working_set, 1500);
        assert_eq!(memory.limit, None, "max is no limit");
        assert_eq!(memory.reservation, None);
        assert_eq!((memory.failcnt, memory.oom_kills), (6, Some(1)));
        let cpu = cg.cpu().unwrap();
        assert_eq!(
            (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
            (300_000, 200_000, 100_000)
        );
        assert_eq!((cpu.quota_us, cpu.period_us), (50000, 100000));
        // runc maps the default 1024 shares to weight 39; 100 is about 2600.
        assert_eq!(weight_to_shares(100), 2597);
        assert_eq!(cpu.throttled_ns, 7000);
    }

    #[test]
    fn pressure_io_and_swap_files() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
        )
        .unwrap();
        let some = p.some.unwrap();
        assert_eq!((some.avg10, some.avg60, some.total_us), (1.5, 0.25, 123456));
        assert_eq!(p.full.unwrap().total_us, 42);
        // cpu.pressure of older kernels has no full line.
        let cpu_only = parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").unwrap();
        assert!(cpu_only.full.is_none());
        assert_eq!(parse_pressure(""), None);

        let io = parse_io_stat(
            "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        assert_eq!(io.len(), 2);
        assert_eq!(io[0].device, (254, 0));
        assert_eq!(
            (
                io[0].read_bytes,
                io[0].write_bytes,
                io[0].reads,
                io[0].writes
            ),
            (4096, 8192, 1, 2)
        );
        let v1 = parse_blkio(
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\nTotal 4608\n",
            "8:0 Read 2\n8:0 Write 1\n",
        );
        assert_eq!(
            v1,
            vec![DeviceIo {
                device: (8, 0),
                read_bytes: 4096,
                write_bytes: 512,
                reads: 2,
                writes: 1
            }]
        );

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        write(&d, "memory.swap.current", "4096\n");
        write(&d, "memory.swap.max", "max\n");
        write(
            &d,
            "cpu.pressure",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=9\n",
        );
        let cg = ContainerCgroup {
            path: "/pod".into(),
            dirs: Dirs::V2(d),
        };
        assert_eq!(
            cg.swap(),
            Some(Swap {
                usage: 4096,
                limit: None
            })
        );
        assert_eq!(cg.pressure("cpu").unwrap().some.unwrap().total_us, 9);
        assert_eq!(cg.pressure("memory"), None, "no file, no figures");
    }

    /// A cgroup v2 tree recorded from the test guest (Debian 12, kernel
    /// 6.1, Docker 20.10; scripts/guest/record-cgroups.sh): a container
    /// limited to 64 MiB and half a CPU that wrote 4 MiB with fsync and
    /// spins, under a kubelet-style pod cgroup, with each cgroup driver.
    fn recorded(driver: &str) -> (ContainerCgroup, PathBuf) {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/cgroup-v2")
            .join(driver);
        let tree = base.join("tree");
        let read = |name: &str| std::fs::read_to_string(base.join(name)).unwrap();
        // The mount as the guest had it, moved to the recorded tree.
        let mountinfo =
            read("mountinfo.txt").replace(" /sys/fs/cgroup ", &format!(" {} ", tree.display()));
        let mounts = CgroupMounts::parse(&mountinfo);
        assert_eq!(mounts.v2.as_deref(), Some(tree.as_path()));
        (
            ContainerCgroup::from_proc(&read("proc-cgroup.txt"), &mounts, true),
            tree,
        )
    }

    fn file_u64(dir: &Path, name: &str) -> u64 {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_recorded_v2_tree_with_the_systemd_driver() {
        let (cg, tree) = recorded("systemd");
        let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podrecorded.slice";
        assert!(
            cg.path().starts_with(&format!("{pod}/docker-")),
            "{}",
            cg.path()
        );
        assert!(cg.path().ends_with(".scope"));
        let dir = tree.join(cg.path().trim_start_matches('/'));
        check_recorded_container(&cg, &dir);
        let parent = cg.parent().unwrap();
        assert_eq!(parent.path(), pod, "the pod's slice");
        let pod_memory = parent.memory().unwrap();
        assert_eq!(
            pod_memory.usage,
            file_u64(&tree.join(pod.trim_start_matches('/')), "memory.current")
        );
        assert!(parent.cpu().unwrap().usage_ns >= cg.cpu().unwrap().usage_ns);
    }

    #[test]
    fn a_recorded_v2_tree_with_the_cgroupfs_driver() {
        let (cg, tree) = recorded("cgroupfs");
        let pod = "/kubepods/burstable/podrecorded";
        assert!(cg.path().starts_with(&format!("{pod}/")), "{}", cg.path());
        let dir = tree.join(cg.path().trim_start_matches('/'));
        check_recorded_container(&cg, &dir);
        assert_eq!(cg.parent().unwrap().path(), pod);
        assert!(cg.parent().unwrap().memory().unwrap().usage >= cg.memory().unwrap().usage);
    }

    /// What every figure of the recorded container must be.
    fn check_recorded_container(cg: &ContainerCgroup, dir: &Path) {
        let cpu = cg.cpu().unwrap();
        assert!(cpu.usage_ns > 1_000_000_000, "it spun for seconds: {cpu:?}");
        assert!(cpu.user_ns > 0 && cpu.system_ns > 0);
        assert!(cpu.throttled_periods > 0, "half a CPU, spinning: throttled");
        assert_eq!((cpu.quota_us, cpu.period_us), (50_000, 100_000));
        let memory = cg.memory_in_full().unwrap();
        assert_eq!(memory.usage, file_u64(dir, "memory.current"));
        assert!(memory.working_set <= memory.usage && memory.working_set > 0);
        assert_eq!(memory.limit, Some(64 << 20));
        assert_eq!(memory.oom_kills, Some(0));
        assert_eq!(memory.max_usage, file_u64(dir, "memory.peak"));
        let cpu_pressure = cg.pressure("cpu").unwrap();
        assert!(
            cpu_pressure.some.unwrap().total_us > 0,
            "throttled: stalled"
        );
        assert!(cg.pressure("memory").is_some() && cg.pressure("io").is_some());
        let io = cg.io().unwrap();
        let written: u64 = io.iter().map(|d| d.write_bytes).sum();
        assert!(written >= 4 << 20, "the fsynced 4 MiB: {io:?}");
        assert_eq!(io[0].device, (254, 0), "virtio's block major");
        // Docker's default memory-swap is twice the memory: as much swap
        // again as memory.
        assert_eq!(
            cg.swap(),
            Some(Swap {
                usage: 0,
                limit: Some(64 << 20)
            })
        );
        assert_eq!(cg.thread_count(), Some(1));
        assert_eq!(cg.processes().unwrap().len(), 1, "the spinning shell");
    }
}
