//! A pod cgroup made the way the kubelet makes one before RunPodSandbox,
//! for the host at hand: cgroup v1 with the cgroupfs driver (this
//! project's CI host), or cgroup v2 with Docker's systemd driver (the test
//! guest, as current distributions run it) or with cgroupfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Which hierarchy and driver the pod cgroup follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1Cgroupfs,
    V2Cgroupfs,
    V2Systemd,
}

impl Layout {
    /// The host's hierarchy, and the driver of the Docker under test.
    pub fn detect(docker_driver: &str) -> Self {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        match (v2, docker_driver) {
            (true, "systemd") => Layout::V2Systemd,
            (true, _) => Layout::V2Cgroupfs,
            (false, _) => Layout::V1Cgroupfs,
        }
    }
}

pub struct PodCgroup {
    pub layout: Layout,
    /// `cgroup_parent` as the kubelet sends it: a path for cgroupfs, a
    /// slice name for systemd.
    pub parent: String,
    /// The cgroup's path from the hierarchy's root, as cAdvisor's `id`.
    pub path: String,
    /// Its directory (v1: the memory controller's).
    dir: PathBuf,
}

/// `kubepods-burstable-pod<uid>.slice` → its place in the v2 tree:
/// systemd nests a slice under the slices its dashes name.
pub fn slice_path(slice: &str) -> String {
    let name = slice.trim_end_matches(".slice");
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    path
}

impl PodCgroup {
    /// Makes the pod's cgroup with this memory limit; `uid` names it.
    pub fn create(layout: Layout, uid: &str, memory_limit: u64) -> Self {
        let safe_uid: String = uid
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        match layout {
            Layout::V1Cgroupfs => {
                let name = format!("crid-test-pod{uid}");
                let dir = PathBuf::from("/sys/fs/cgroup/memory").join(&name);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("memory.limit_in_bytes"), memory_limit.to_string())
                    .unwrap();
                Self {
                    layout,
                    parent: format!("/{name}"),
                    path: format!("/{name}"),
                    dir,
                }
            }
            Layout::V2Cgroupfs => {
                let name = format!("crid-test-pod{uid}");
                let dir = PathBuf::from("/sys/fs/cgroup").join(&name);
                // The controllers its children (the containers) need.
                let _ = std::fs::write(
                    "/sys/fs/cgroup/cgroup.subtree_control",
                    "+cpu +memory +pids +io",
                );
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("memory.max"), memory_limit.to_string()).unwrap();
                Self {
                    layout,
                    parent: format!("/{name}"),
                    path: format!("/{name}"),
                    dir,
                }
            }
            Layout::V2Systemd => {
                // As the kubelet names a burstable pod's slice.
                let slice = format!("kubepods-burstable-pod{safe_uid}.slice");
                run(Command::new("systemctl").args(["start", &slice]));
                run(Command::new("systemctl").args([
                    "set-property",
                    "--runtime",
                    &slice,
                    &format!("MemoryMax={memory_limit}"),
                ]));
                let path = slice_path(&slice);
                let dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
                assert!(dir.is_dir(), "systemd made no {}", dir.display());
                Self {
                    layout,
                    parent: slice,
                    path,
                    dir,
                }
            }
        }
    }

    /// A container's cgroup path under the pod, as Docker makes it.
    pub fn container_path(&self, container_id: &str) -> String {
        match self.layout {
            Layout::V2Systemd => format!("{}/docker-{container_id}.scope", self.path),
            _ => format!("{}/{container_id}", self.path),
        }
    }

    /// The pod's memory usage, from its own cgroup.
    pub fn memory_usage(&self) -> u64 {
        let file = match self.layout {
            Layout::V1Cgroupfs => "memory.usage_in_bytes",
            _ => "memory.current",
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A file of the pod's cgroup (v1: the memory controller's).
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", self.dir.display()))
    }

    /// Removes the pod's directories (and any container directory left);
    /// whether nothing is left.
    fn remove(&self) -> bool {
        match self.layout {
            Layout::V2Systemd => {
                let _ = Command::new("systemctl")
                    .args(["stop", &self.parent])
                    .output();
                !self.dir.exists()
            }
            Layout::V2Cgroupfs => {
                remove_children(&self.dir);
                std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
            }
            Layout::V1Cgroupfs => {
                let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
                    return true;
                };
                let name = self.path.trim_start_matches('/');
                let mut clean = true;
                for controller in controllers.flatten() {
                    let dir = controller.path().join(name);
                    if !dir.is_dir() {
                        continue;
                    }
                    remove_children(&dir);
                    clean &= std::fs::remove_dir(&dir).is_ok();
                }
                clean
            }
        }
    }
}

fn remove_children(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten().filter(|c| c.path().is_dir()) {
            let _ = std::fs::remove_dir(child.path());
        }
    }
}

fn run(command: &mut Command) {
    let out = command.output().expect("running systemctl");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        // The runtime removes a stopped container's cgroups shortly after
        // Docker answers; the pod's directory empties then.
        let started = Instant::now();
        while !self.remove() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slices_nest_by_their_dashes() {
        assert_eq!(
            super::slice_path("kubepods-burstable-podab_12.slice"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab_12.slice"
        );
    }
}
