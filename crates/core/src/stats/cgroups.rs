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

/// Where one container's cgroup files are.
#[derive(Debug, Clone)]
pub enum ContainerCgroup {
    V1(HashMap<String, PathBuf>),
    V2(PathBuf),
}

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
            return ContainerCgroup::V2(join(&mount, path));
        }
        let mut dirs = HashMap::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            for controller in controllers.split(',').filter(|c| !c.is_empty()) {
                if let Some(mount) = mounts.v1.get(controller) {
                    dirs.insert(controller.to_string(), join(mount, path));
                }
            }
        }
        ContainerCgroup::V1(dirs)
    }

    fn v1(&self, controller: &str, file: &str) -> Option<PathBuf> {
        match self {
            ContainerCgroup::V1(dirs) => dirs.get(controller).map(|d| d.join(file)),
            ContainerCgroup::V2(_) => None,
        }
    }

    fn v2(&self, file: &str) -> Option<PathBuf> {
        match self {
            ContainerCgroup::V2(dir) => Some(dir.join(file)),
            ContainerCgroup::V1(_) => None,
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

    pub fn memory(&self) -> Option<Memory> {
        if let Some(usage) = self.v1("memory", "memory.usage_in_bytes") {
            let stat = read_flat_keyed(&self.v1("memory", "memory.stat")?)?;
            let usage = read_u64(&usage)?;
            let limit = self
                .v1("memory", "memory.limit_in_bytes")
                .and_then(|p| read_u64(&p));
            let inactive = stat.get("total_inactive_file").copied().unwrap_or(0);
            return Some(Memory {
                usage,
                working_set: usage.saturating_sub(inactive),
                rss: stat.get("total_rss").copied().unwrap_or(0),
                page_faults: stat.get("total_pgfault").copied().unwrap_or(0),
                major_page_faults: stat.get("total_pgmajfault").copied().unwrap_or(0),
                limit: limit.filter(|l| *l < (1 << 62)),
            });
        }
        let usage = read_u64(&self.v2("memory.current")?)?;
        let stat = read_flat_keyed(&self.v2("memory.stat")?)?;
        let limit = self.v2("memory.max").and_then(|p| read_u64(&p));
        let inactive = stat.get("inactive_file").copied().unwrap_or(0);
        Some(Memory {
            usage,
            working_set: usage.saturating_sub(inactive),
            rss: stat.get("anon").copied().unwrap_or(0),
            page_faults: stat.get("pgfault").copied().unwrap_or(0),
            major_page_faults: stat.get("pgmajfault").copied().unwrap_or(0),
            limit,
        })
    }

    pub fn process_count(&self) -> Option<u64> {
        match self {
            ContainerCgroup::V1(_) => read_u64(&self.v1("pids", "pids.current")?),
            ContainerCgroup::V2(_) => read_u64(&self.v2("pids.current")?),
        }
    }

    /// The processes in the container's cgroup.
    pub fn processes(&self) -> std::io::Result<Vec<i64>> {
        let path = match self {
            ContainerCgroup::V1(_) => self
                .v1("pids", "cgroup.procs")
                .or_else(|| self.v1("memory", "cgroup.procs")),
            ContainerCgroup::V2(_) => self.v2("cgroup.procs"),
        }
        .ok_or_else(|| std::io::Error::other("no cgroup with a process list"))?;
        Ok(std::fs::read_to_string(path)?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    /// Hugepage limits (`2MB`, `1GB` page sizes, as the kubelet sends them).
    pub fn set_hugepage_limit(&self, page_size: &str, limit: u64) -> std::io::Result<()> {
        let path = match self {
            ContainerCgroup::V1(_) => {
                self.v1("hugetlb", &format!("hugetlb.{page_size}.limit_in_bytes"))
            }
            ContainerCgroup::V2(_) => self.v2(&format!("hugetlb.{page_size}.max")),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub limit: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text == "max" {
        return Some(u64::MAX);
    }
    text.parse().ok()
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
    fn reads_cgroup_v1_files() {
        let dir = tempfile::tempdir().unwrap();
        let mem = dir.path().join("memory/pod");
        let cpu = dir.path().join("cpuacct/pod");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "1000\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            mem.join("memory.stat"),
            "total_inactive_file 300\ntotal_rss 600\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        )
        .unwrap();
        std::fs::write(cpu.join("cpuacct.usage"), "123456789\n").unwrap();
        let cg = ContainerCgroup::V1(HashMap::from([
            ("memory".to_string(), mem),
            ("cpuacct".to_string(), cpu),
        ]));
        assert_eq!(cg.cpu_usage_ns(), Some(123456789));
        assert_eq!(
            cg.memory(),
            Some(Memory {
                usage: 1000,
                working_set: 700,
                rss: 600,
                page_faults: 7,
                major_page_faults: 1,
                limit: None
            })
        );
    }
}
