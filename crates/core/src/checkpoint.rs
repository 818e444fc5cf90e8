//! Sandbox checkpoints in cri-dockerd's on-disk format.
//!
//! cri-dockerd keeps one JSON file per sandbox under `<root>/sandbox/<id>` so
//! that it can tear down the network of a pod whose pause container is gone.
//! The `checksum` is the kubelet checkpoint manager's: FNV-32a over the go-spew
//! `%#v` rendering of the Go `core.CheckpointData` value. Reproducing that
//! rendering byte for byte is what lets cri-dockerd and this shim read each
//! other's checkpoints.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const SCHEMA_VERSION: &str = "v1";
pub const CHECKPOINT_DIR: &str = "sandbox";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub container_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host_port: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointData {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub host_network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxCheckpoint {
    pub version: String,
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<CheckpointData>,
    pub checksum: u64,
}

impl CheckpointData {
    /// The go-spew `%#v` rendering of cri-dockerd's `core.CheckpointData`
    /// (port mappings are `*config.PortMapping`). Go's json.Marshal leaves an
    /// empty slice out, so an empty list renders as the nil slice.
    pub fn spew(&self) -> String {
        let mut out = String::from("(core.CheckpointData){PortMappings:([]*config.PortMapping)");
        match self.port_mappings.as_deref() {
            None | Some([]) => out.push_str("<nil>"),
            Some(mappings) => {
                out.push('[');
                for (i, pm) in mappings.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str("<*>{Protocol:(*config.Protocol)");
                    spew_opt(&mut out, pm.protocol.as_deref());
                    out.push_str(" ContainerPort:(*int32)");
                    spew_opt(&mut out, pm.container_port);
                    out.push_str(" HostPort:(*int32)");
                    spew_opt(&mut out, pm.host_port);
                    let _ = write!(out, " HostIP:(string){}}}", pm.host_ip);
                }
                out.push(']');
            }
        }
        let _ = write!(out, " HostNetwork:(bool){}}}", self.host_network);
        out
    }

    pub fn checksum(&self) -> u64 {
        u64::from(fnv1a_32(self.spew().as_bytes()))
    }
}

fn spew_opt<T: std::fmt::Display>(out: &mut String, value: Option<T>) {
    match value {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("<nil>"),
    }
}

fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

impl PodSandboxCheckpoint {
    pub fn new(namespace: &str, name: &str, data: CheckpointData) -> Self {
        let checksum = data.checksum();
        Self {
            version: SCHEMA_VERSION.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            data: Some(data),
            checksum,
        }
    }

    pub fn data(&self) -> CheckpointData {
        self.data.clone().unwrap_or_default()
    }

    /// Parses a checkpoint file and verifies its checksum.
    pub fn decode(blob: &[u8]) -> std::result::Result<Self, CheckpointError> {
        let checkpoint: PodSandboxCheckpoint =
            serde_json::from_slice(blob).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let data = checkpoint.data.as_ref().ok_or(CheckpointError::Malformed(
            "the checkpoint has no data".into(),
        ))?;
        let actual = data.checksum();
        if actual != checkpoint.checksum {
            return Err(CheckpointError::Checksum {
                expected: checkpoint.checksum,
                actual,
            });
        }
        Ok(checkpoint)
    }

    /// Go's encoding/json output for the same value (field order, omitted
    /// empties), so the file reads the same whichever runtime wrote it.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("checkpoint serialisation cannot fail")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint is corrupted: {0}")]
    Malformed(String),
    #[error("checkpoint is corrupted: checksum {actual} does not match the recorded {expected}")]
    Checksum { expected: u64, actual: u64 },
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            inode: meta.ino(),
            len: meta.len(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Checkpoints decoded once per file version: PodSandboxStatus reads one
/// every second per pod.
type Decoded = HashMap<String, (FileStamp, PodSandboxCheckpoint)>;

/// Unreadable checkpoints reported so far; past this many the record starts
/// over (a report may then repeat, the memory stays bounded).
const MAX_REPORTED: usize = 1024;

/// A process killed between creating a temporary checkpoint and renaming
/// it leaves `.<id>.tmp` behind; nobody else writes those names.
fn remove_interrupted_writes(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a checkpoint write that a previous process did not finish")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove an unfinished checkpoint write")
                }
            }
        }
    }
}

/// The `<root>/sandbox` directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    decoded: std::sync::Arc<parking_lot::Mutex<Decoded>>,
    reported: std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<String>>>,
}

impl CheckpointStore {
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        remove_interrupted_writes(&dir);
        Ok(Self {
            dir,
            decoded: Default::default(),
            reported: Default::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sandbox_id: &str) -> Result<PathBuf> {
        if sandbox_id.is_empty() || sandbox_id.starts_with('.') || sandbox_id.contains(['/', '\0'])
        {
            return Err(Error::InvalidArgument(format!(
                "invalid sandbox id {sandbox_id:?}"
            )));
        }
        Ok(self.dir.join(sandbox_id))
    }

    /// Writes through a temporary file and a rename, as the kubelet's file
    /// store does, so a crash never leaves a half-written checkpoint.
    pub fn write(&self, sandbox_id: &str, checkpoint: &PodSandboxCheckpoint) -> Result<()> {
        let path = self.path(sandbox_id)?;
        let tmp = self.dir.join(format!(".{sandbox_id}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&checkpoint.encode())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                context: format!("writing checkpoint {}", path.display()),
                source: e,
            }
        })
    }

    /// `Ok(None)` when there is no checkpoint; `Err` when it exists but cannot
    /// be trusted.
    pub fn read(&self, sandbox_id: &str) -> Result<Option<PodSandboxCheckpoint>> {
        let path = self.path(sandbox_id)?;
        let stamp = match std::fs::metadata(&path) {
            Ok(meta) => FileStamp::of(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(sandbox_id);
                return Ok(None);
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        if let Some((seen, checkpoint)) = self.decoded.lock().get(sandbox_id)
            && *seen == stamp
        {
            return Ok(Some(checkpoint.clone()));
        }
        let blob = match std::fs::read(&path) {
            Ok(blob) => blob,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()))(e)),
        };
        let checkpoint = PodSandboxCheckpoint::decode(&blob)
            .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
        self.decoded
            .lock()
            .insert(sandbox_id.to_string(), (stamp, checkpoint.clone()));
        Ok(Some(checkpoint))
    }

    fn forget(&self, sandbox_id: &str) {
        self.decoded.lock().remove(sandbox_id);
        self.reported.lock().remove(sandbox_id);
    }

    /// The checkpoint, or `None` when there is none or it cannot be read:
    /// an unreadable one is logged once and must never make a call fail.
    pub fn read_or_report(&self, sandbox_id: &str) -> Option<PodSandboxCheckpoint> {
        match self.read(sandbox_id) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                let mut reported = self.reported.lock();
                if reported.len() >= MAX_REPORTED {
                    reported.clear();
                }
                if reported.insert(sandbox_id.to_string()) {
                    tracing::error!(sandbox_id, error = %e, "skipping unreadable sandbox checkpoint");
                }
                None
            }
        }
    }

    pub fn remove(&self, sandbox_id: &str) -> Result<()> {
        let path = self.path(sandbox_id)?;
        self.forget(sandbox_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()))(e)),
        }
    }

    /// Every sandbox id with a checkpoint file, whether or not it parses.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(Error::io(format!("listing {}", self.dir.display())))?;
        let mut ids = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                ids.push(name);
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(id: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/cri-dockerd-v0.3.21/checkpoints")
            .join(id);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const POD_NETWORK: &str = "0bd9a3e1aa0a4af38b26f9145eed996cf0973b65c23c977cddf8bf3c117e4cdb";
    const HOST_NETWORK: &str = "d09f6eda847d71af3c29c7485caa2ed2e07d17b58af1859c69649eebe0495b5c";

    fn pod_network_data() -> CheckpointData {
        CheckpointData {
            port_mappings: Some(vec![
                PortMapping {
                    protocol: Some("tcp".into()),
                    container_port: Some(80),
                    host_port: Some(18080),
                    host_ip: String::new(),
                },
                PortMapping {
                    protocol: Some("udp".into()),
                    container_port: Some(53),
                    host_port: Some(18053),
                    host_ip: "127.0.0.1".into(),
                },
            ]),
            host_network: false,
        }
    }

    #[test]
    fn reads_follow_the_file_not_a_stale_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let one = PodSandboxCheckpoint::new("ns", "one", CheckpointData::default());
        let two = PodSandboxCheckpoint::new("ns", "second", CheckpointData::default());
        store.write("s1", &one).unwrap();
        assert_eq!(store.read("s1").unwrap().unwrap().name, "one");
        assert_eq!(
            store.read("s1").unwrap().unwrap().name,
            "one",
            "from memory"
        );
        // Replaced behind the store's back (another tool, a restore).
        std::fs::write(store.dir().join("s1"), two.encode()).unwrap();
        assert_eq!(store.read("s1").unwrap().unwrap().name, "second");
        std::fs::remove_file(store.dir().join("s1")).unwrap();
        assert!(store.read("s1").unwrap().is_none());
        store.write("s1", &one).unwrap();
        store.remove("s1").unwrap();
        assert!(store.read("s1").unwrap().is_none());
    }

    #[test]
    fn reference_checkpoints_parse_and_verify() {
        let cp = PodSandboxCheckpoint::decode(&reference(POD_NETWORK)).unwrap();
        assert_eq!((cp.name.as_str(), cp.namespace.as_str()), ("web", "demo"));
        assert_eq!(cp.data(), pod_network_data());
        assert_eq!(cp.checksum, 2119816884);

        let cp = PodSandboxCheckpoint::decode(&reference(HOST_NETWORK)).unwrap();
        assert!(cp.data().host_network);
        assert_eq!(cp.checksum, 12315789);
    }

    #[test]
    fn same_data_encodes_to_the_reference_bytes() {
        let ours = PodSandboxCheckpoint::new("demo", "web", pod_network_data());
        assert_eq!(ours.encode(), reference(POD_NETWORK));
        let host = CheckpointData {
            port_mappings: None,
            host_network: true,
        };
        let ours = PodSandboxCheckpoint::new("kube-system", "hostpod", host);
        assert_eq!(ours.encode(), reference(HOST_NETWORK));
    }

    #[test]
    fn spew_rendering_matches_go() {
        assert_eq!(
            CheckpointData::default().spew(),
            "(core.CheckpointData){PortMappings:([]*config.PortMapping)<nil> HostNetwork:(bool)false}"
        );
        let data = CheckpointData {
            port_mappings: Some(vec![PortMapping {
                protocol: None,
                container_port: Some(80),
                host_port: None,
                host_ip: String::new(),
            }]),
            host_network: false,
        };
        assert_eq!(
            data.spew(),
            "(core.CheckpointData){PortMappings:([]*config.PortMapping)[<*>{Protocol:(*config.Protocol)<nil> ContainerPort:(*int32)80 HostPort:(*int32)<nil> HostIP:(string)}] HostNetwork:(bool)false}"
        );
    }

    #[test]
    fn corrupt_and_truncated_checkpoints_are_rejected() {
        let good = reference(POD_NETWORK);
        let truncated = &good[..good.len() / 2];
        assert!(matches!(
            PodSandboxCheckpoint::decode(truncated),
            Err(CheckpointError::Malformed(_))
        ));
        let tampered = String::from_utf8(good.clone())
            .unwrap()
            .replace("18080", "18081");
        assert!(matches!(
            PodSandboxCheckpoint::decode(tampered.as_bytes()),
            Err(CheckpointError::Checksum { .. })
        ));
        assert!(
            PodSandboxCheckpoint::decode(
                b"{\"version\":\"v1\",\"name\":\"a\",\"namespace\":\"b\",\"checksum\":1}"
            )
            .is_err()
        );
    }

    #[test]
    fn store_round_trip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let cp = PodSandboxCheckpoint::new("demo", "web", pod_network_data());
        store.write("abc", &cp).unwrap();
        assert_eq!(store.read("abc").unwrap(), Some(cp));
        assert_eq!(store.list().unwrap(), vec!["abc".to_string()]);
        std::fs::write(store.dir().join("bad"), b"{").unwrap();
        assert!(store.read("bad").is_err());
        store.remove("abc").unwrap();
        store.remove("abc").unwrap();
        assert_eq!(store.read("abc").unwrap(), None);
        assert!(store.read("../etc").is_err());
        assert!(store.read("a\0b").is_err());
    }

    #[test]
    fn unfinished_writes_are_removed_at_open_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let cp = PodSandboxCheckpoint::new("demo", "web", pod_network_data());
        store.write("kept", &cp).unwrap();
        std::fs::write(store.dir().join(".abc.tmp"), b"{\"half").unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert!(!store.dir().join(".abc.tmp").exists());
        assert_eq!(store.list().unwrap(), vec!["kept".to_string()]);
        assert_eq!(store.read("kept").unwrap(), Some(cp));
    }

    #[test]
    fn unreadable_checkpoints_are_remembered_within_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        for i in 0..(MAX_REPORTED + 10) {
            let id = format!("bad{i}");
            std::fs::write(store.dir().join(&id), b"{").unwrap();
            assert!(store.read_or_report(&id).is_none());
            assert!(store.read_or_report(&id).is_none());
        }
        assert!(store.reported.lock().len() <= MAX_REPORTED);
    }
}
