//! Disk usage of Docker's data root for ImageFsInfo. Walking it is slow on a
//! busy node, so results are cached and refreshed in the background.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

const TTL: Duration = Duration::from_secs(60);

pub struct UsageCache {
    root: PathBuf,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    last: Option<(Instant, Usage)>,
    refreshing: bool,
}

impl UsageCache {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            state: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The first call measures; later ones answer from the cache and start
    /// a background refresh once it is older than a minute.
    pub async fn get(&self) -> std::io::Result<Usage> {
        let stale = {
            let mut state = self.state.lock().expect("usage cache");
            match state.last {
                Some((at, usage)) => {
                    if at.elapsed() > TTL && !state.refreshing {
                        state.refreshing = true;
                        Some(usage)
                    } else {
                        return Ok(usage);
                    }
                }
                None => None,
            }
        };
        let root = self.root.clone();
        let state = self.state.clone();
        let refresh = async move {
            let measured = tokio::task::spawn_blocking(move || measure(&root))
                .await
                .map_err(std::io::Error::other)?;
            let mut state = state.lock().expect("usage cache");
            state.refreshing = false;
            let usage = measured?;
            state.last = Some((Instant::now(), usage));
            Ok(usage)
        };
        match stale {
            Some(usage) => {
                tokio::spawn(async move {
                    if let Err(e) = refresh.await {
                        tracing::warn!(error = %e, "measuring Docker's data root failed");
                    }
                });
                Ok(usage)
            }
            None => refresh.await,
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
}
