//! Disk usage of where Docker keeps images and writable layers, for
//! ImageFsInfo and the containers' writable layers. Walking a busy data
//! root (or one writable layer with tens of thousands of files) takes far
//! longer than a kubelet call may, so a background task measures once a
//! minute, as containerd does for its snapshots, and calls answer from the
//! last figures. Before the first walk has finished, ImageFsInfo answers
//! with the filesystem's own counters.
//!
//! With the graph drivers everything is under Docker's data root, and
//! Docker names each writable layer (`GraphDriver.Data.UpperDir`). With
//! the containerd image store, images and writable layers are containerd's
//! snapshots: under the data root when Docker runs its own containerd,
//! under containerd's root (`/var/lib/containerd`) when it uses the
//! system's; Docker names no writable layer, so it is read from the
//! container's root mount (`upperdir=` in its mountinfo), and containerd's
//! root is learned from the same path.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use crate::store::{Kind, NodeStore, Phase};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// du-style: allocated blocks, each inode once, without leaving the
/// filesystem (container rootfs mounts live under the data root).
pub fn measure(root: &Path) -> std::io::Result<Usage> {
    let root_meta = std::fs::symlink_metadata(root)?;
    let device = root_meta.dev();
    let mut seen = HashSet::new();
    let mut usage = Usage {
        bytes: 0,
        inodes: 0,
    };
    let mut stack = vec![root.to_path_buf()];
    seen.insert(root_meta.ino());
    usage.bytes += root_meta.blocks() * 512;
    usage.inodes += 1;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != device || !seen.insert(meta.ino()) {
                continue;
            }
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

/// Used bytes and inodes of the filesystem holding `path`, from statfs.
pub fn filesystem_used(path: &Path) -> std::io::Result<Usage> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let fragment = stat.fragment_size() as u64;
    Ok(Usage {
        bytes: (stat.blocks() as u64).saturating_sub(stat.blocks_free() as u64) * fragment,
        inodes: (stat.files() as u64).saturating_sub(stat.files_free() as u64),
    })
}

/// The filesystem holding the data root, as cAdvisor reports one: its
/// device and its size in bytes and inodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    pub device: String,
    pub capacity_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// The source of the mount holding `path` (the longest mount point that
/// contains it) in a `/proc/self/mountinfo` text.
pub fn device_of(path: &Path, mountinfo: &str) -> Option<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = unescape_mount(left.split(' ').nth(4)?);
            let source = right.split(' ').nth(1)?;
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), source.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, source)| source)
}

/// mountinfo writes spaces and other bytes as octal escapes (`\040`).
fn unescape_mount(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|c| u8::from_str_radix(c, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How often the data root is walked.
const DATA_ROOT_REFRESH: Duration = Duration::from_secs(60);
/// How often the running containers' writable layers are: more often, as
/// the kubelet's evictions watch them.
const LAYER_REFRESH: Duration = Duration::from_secs(10);
/// The first data root walk waits this long: a starting node has other work.
const FIRST_WALK_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRootUsage {
    /// Image layers and everything else Docker keeps, writable layers
    /// excepted.
    pub images: Usage,
    /// The running containers' writable layers together.
    pub containers: Usage,
    /// When measured (Unix nanoseconds).
    pub at_ns: i64,
    /// From statfs, before any walk: the whole filesystem's use.
    pub estimated: bool,
}

#[derive(Default)]
struct Figures {
    /// Everything walked (the data root, and containerd's root when it is
    /// elsewhere) at the last walk, and when.
    data_root: Option<(Usage, i64)>,
    writable_layers: HashMap<String, Usage>,
    /// containerd's root, when the image store is containerd's and its
    /// root is outside Docker's data root.
    containerd_root: Option<PathBuf>,
}

/// Where images and writable layers are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRoots {
    /// Docker's data root.
    pub data_root: PathBuf,
    /// Images are containerd's snapshots (Docker's containerd image store).
    pub containerd_store: bool,
    /// containerd's root as far as known before a container runs.
    pub containerd_root: Option<PathBuf>,
}

/// The last figures, and the task that refreshes them.
pub struct UsageMonitor {
    root: PathBuf,
    /// The data root's device, found once: mounts under it come and go
    /// with every container, the data root's own mount does not.
    device: String,
    figures: Arc<Mutex<Figures>>,
    nudge: Arc<tokio::sync::Notify>,
}

impl UsageMonitor {
    /// Starts the background walks; they stop when the store goes.
    pub fn start(roots: StorageRoots, store: &Arc<NodeStore>) -> Self {
        let figures: Arc<Mutex<Figures>> = Arc::new(Mutex::new(Figures {
            containerd_root: roots
                .containerd_root
                .clone()
                .filter(|r| !r.starts_with(&roots.data_root)),
            ..Default::default()
        }));
        let nudge: Arc<tokio::sync::Notify> = Arc::default();
        let root = roots.data_root.clone();
        tokio::spawn(refresh_forever(
            roots,
            Arc::downgrade(store),
            figures.clone(),
            nudge.clone(),
        ));
        let device = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| device_of(&root, &m))
            .unwrap_or_else(|| root.display().to_string());
        Self {
            root,
            device,
            figures,
            nudge,
        }
    }

    /// Where the images and writable layers are, as ImageFsInfo and the
    /// stats name it: containerd's root when the images are there, else
    /// Docker's data root.
    pub fn image_root(&self) -> PathBuf {
        self.figures
            .lock()
            .containerd_root
            .clone()
            .unwrap_or_else(|| self.root.clone())
    }

    /// A container started: its writable layer is measured now, not at the
    /// next round.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// The data root's usage as last measured, or the filesystem's own
    /// counters when no walk has finished yet.
    pub fn data_root(&self) -> std::io::Result<DataRootUsage> {
        let figures = self.figures.lock();
        let containers = figures
            .writable_layers
            .values()
            .fold(Usage::default(), |sum, u| Usage {
                bytes: sum.bytes + u.bytes,
                inodes: sum.inodes + u.inodes,
            });
        if let Some((total, at_ns)) = figures.data_root {
            return Ok(DataRootUsage {
                images: Usage {
                    bytes: total.bytes.saturating_sub(containers.bytes),
                    inodes: total.inodes.saturating_sub(containers.inodes),
                },
                containers,
                at_ns,
                estimated: false,
            });
        }
        let root = figures
            .containerd_root
            .clone()
            .unwrap_or_else(|| self.root.clone());
        drop(figures);
        Ok(DataRootUsage {
            images: filesystem_used(&root)?,
            containers: Usage::default(),
            at_ns: crate::time::system_now_ns(),
            estimated: true,
        })
    }

    /// The data root's filesystem now (one statfs).
    pub fn filesystem(&self) -> std::io::Result<Filesystem> {
        let stat = nix::sys::statvfs::statvfs(&self.root).map_err(std::io::Error::from)?;
        Ok(Filesystem {
            device: self.device.clone(),
            capacity_bytes: stat.blocks() as u64 * stat.fragment_size() as u64,
            inodes_total: stat.files() as u64,
            inodes_free: stat.files_free() as u64,
        })
    }

    /// A running container's writable layer as last measured.
    pub fn writable_layer(&self, container_id: &str) -> Option<Usage> {
        self.figures
            .lock()
            .writable_layers
            .get(container_id)
            .copied()
    }
}

/// The writable layers of the running containers: where Docker names
/// them (the graph drivers' `UpperDir`), else the `upperdir` of the
/// container's root mount.
fn writable_layers(store: &NodeStore) -> Vec<(String, PathBuf)> {
    store
        .all(Kind::Container)
        .into_iter()
        .filter(|r| r.phase == Phase::Running)
        .filter_map(|r| {
            if let Some(upper) = r.inspect.upper_dir() {
                return Some((r.id.clone(), PathBuf::from(upper)));
            }
            let pid = r.running_pid()?;
            let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
            Some((r.id.clone(), root_upper_dir(&mountinfo)?))
        })
        .collect()
}

/// The `upperdir` of the overlay mounted at `/` in a mountinfo text (a
/// container's own): its writable layer.
pub fn root_upper_dir(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if left.split(' ').nth(4)? != "/" {
            return None;
        }
        let mut fields = right.split(' ');
        if fields.next()? != "overlay" {
            return None;
        }
        let options = fields.nth(1)?;
        options
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(|p| PathBuf::from(unescape_mount(p)))
    })
}

/// containerd's root from a snapshot's path:
/// `<root>/io.containerd.snapshotter.v1.<name>/snapshots/<n>/fs`.
pub fn containerd_root_of(upper_dir: &Path) -> Option<PathBuf> {
    let snapshot = upper_dir.parent()?;
    let snapshots = snapshot.parent()?;
    let snapshotter = snapshots.parent()?;
    let is_snapshotter = snapshots.file_name()? == "snapshots"
        && snapshotter
            .file_name()?
            .to_str()?
            .starts_with("io.containerd.snapshotter.");
    is_snapshotter.then(|| snapshotter.parent().map(Path::to_path_buf))?
}

async fn refresh_forever(
    roots: StorageRoots,
    store: Weak<NodeStore>,
    figures: Arc<Mutex<Figures>>,
    nudge: Arc<tokio::sync::Notify>,
) {
    let mut data_root_due = tokio::time::Instant::now() + FIRST_WALK_DELAY;
    loop {
        let Some(live) = store.upgrade() else { return };
        let layers = writable_layers(&live);
        drop(live);
        if roots.containerd_store {
            // A container's snapshot says where containerd keeps them all.
            let found = layers
                .iter()
                .find_map(|(_, upper)| containerd_root_of(upper))
                .filter(|r| !r.starts_with(&roots.data_root));
            if let Some(found) = found {
                let mut figures = figures.lock();
                if figures.containerd_root.as_ref() != Some(&found) {
                    tracing::info!(root = %found.display(), "containerd keeps the images outside Docker's data root");
                    figures.containerd_root = Some(found);
                    data_root_due = tokio::time::Instant::now();
                }
            }
        }
        let walk_root = tokio::time::Instant::now() >= data_root_due;
        let root = roots.data_root.clone();
        let containerd_root = figures.lock().containerd_root.clone();
        let walked = tokio::task::spawn_blocking(move || {
            let total = if walk_root {
                let mut total = measure(&root)?;
                if let Some(other) = containerd_root.filter(|r| r.exists()) {
                    let more = measure(&other)?;
                    total.bytes += more.bytes;
                    total.inodes += more.inodes;
                }
                Some(total)
            } else {
                None
            };
            let layers: HashMap<String, Usage> = layers
                .into_iter()
                .filter_map(|(id, dir)| Some((id, measure(&dir).ok()?)))
                .collect();
            Ok::<_, std::io::Error>((total, layers))
        })
        .await;
        match walked {
            Ok(Ok((total, layers))) => {
                let mut figures = figures.lock();
                if let Some(total) = total {
                    figures.data_root = Some((total, crate::time::system_now_ns()));
                    data_root_due = tokio::time::Instant::now() + DATA_ROOT_REFRESH;
                }
                figures.writable_layers = layers;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "measuring Docker's data root failed"),
            Err(e) => tracing::warn!(error = %e, "the data root walk did not finish"),
        }
        tokio::select! {
            () = tokio::time::sleep(LAYER_REFRESH) => {}
            () = nudge.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_once_and_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"x").unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("sub/a-link")).unwrap();
        let usage = measure(dir.path()).unwrap();
        assert_eq!(
            usage.inodes, 4,
            "root, a, sub, sub/b; the hard link is a's inode"
        );
        assert!(usage.bytes >= 64 * 1024, "{usage:?}");
    }

    #[test]
    fn a_containers_writable_layer_from_its_root_mount() {
        // A container of Docker 28.5 with the containerd image store.
        let mountinfo = "77 52 0:40 / / rw,relatime master:3 - overlay overlay rw,lowerdir=/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots/5/fs:/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots/2/fs,upperdir=/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots/6/fs,workdir=/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots/6/work\n\
            78 77 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
            79 77 0:43 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755\n";
        let upper = root_upper_dir(mountinfo).unwrap();
        assert_eq!(
            upper,
            Path::new(
                "/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots/6/fs"
            )
        );
        assert_eq!(
            containerd_root_of(&upper).unwrap(),
            Path::new("/var/lib/docker/containerd/daemon")
        );
        // overlay2's layers are not containerd's.
        assert_eq!(
            containerd_root_of(Path::new("/var/lib/docker/overlay2/abc/diff")),
            None
        );
        // A root that is not an overlay has no writable layer to name.
        assert_eq!(
            root_upper_dir("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"),
            None
        );
    }

    #[test]
    fn device_of_the_longest_mount_holding_the_path() {
        let mountinfo = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
            30 22 8:17 / /var/lib/docker rw,relatime - xfs /dev/sdb1 rw\n\
            31 30 0:50 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw\n\
            32 22 8:33 / /mnt/with\\040space rw - ext4 /dev/sdc1 rw\n";
        let device = |p: &str| device_of(Path::new(p), mountinfo);
        assert_eq!(device("/var/lib/docker").as_deref(), Some("/dev/sdb1"));
        assert_eq!(device("/var/lib/dockerd").as_deref(), Some("/dev/sda1"));
        assert_eq!(device("/mnt/with space/d").as_deref(), Some("/dev/sdc1"));
    }

    #[test]
    fn statfs_gives_the_filesystems_use() {
        let usage = filesystem_used(Path::new("/")).unwrap();
        assert!(usage.bytes > 0 && usage.inodes > 0, "{usage:?}");
    }
}
