//! libcni's result cache (`cniCacheV1`) under `<cache dir>/results/`.
//! Keeping its format lets the node's other CNI tools (and cri-dockerd) read
//! what we wrote, and us read what they wrote.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

const KIND: &str = "cniCacheV1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAttachment {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network list's bytes, base64 in the file as Go encodes []byte.
    #[serde(with = "base64_bytes")]
    pub config: Vec<u8>,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(rename = "cniArgs", skip_serializing_if = "Vec::is_empty", default)]
    pub cni_args: Vec<(String, String)>,
    #[serde(
        rename = "capabilityArgs",
        skip_serializing_if = "serde_json::Map::is_empty",
        default
    )]
    pub capability_args: serde_json::Map<String, Value>,
    #[serde(rename = "result", skip_serializing_if = "Option::is_none", default)]
    pub result: Option<Value>,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(cache_dir: &Path) -> Self {
        Self {
            dir: cache_dir.join("results"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A process killed between writing an entry's temporary file and
    /// renaming it leaves the file behind; at start they go. Only this
    /// cache writes names ending in `.tmp` (libcni writes entries in place).
    pub fn remove_interrupted_writes(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().ends_with(".tmp") {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    file = %entry.path().display(),
                    "removed a CNI cache write that a previous process did not finish"
                ),
                Err(e) => tracing::warn!(
                    file = %entry.path().display(),
                    error = %e,
                    "could not remove an unfinished CNI cache write"
                ),
            }
        }
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{network}-{container_id}-{ifname}"))
    }

    pub fn write(&self, entry: &CachedAttachment) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir)
            .map_err(Error::io(format!("creating {}", self.dir.display())))?;
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        // Hidden and per entry (a network name may hold dots, so no
        // `with_extension`): `.<entry>.tmp`.
        let tmp = self.dir.join(format!(
            ".{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let bytes = serde_json::to_vec(entry).expect("cache entries serialise");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(Error::io(format!("writing {}", path.display())))
    }

    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Option<CachedAttachment> {
        let path = self.path(network, container_id, ifname);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<CachedAttachment>(&bytes) {
            Ok(entry) if entry.kind == KIND => Some(entry),
            Ok(entry) => {
                tracing::warn!(path = %path.display(), kind = %entry.kind, "ignoring CNI cache entry of unknown kind");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable CNI cache entry");
                None
            }
        }
    }

    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) {
        let path = self.path(network, container_id, ifname);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove CNI cache entry");
        }
    }

    /// Every cached attachment of a container on `ifname`, whatever network
    /// it was made with (the configured network may have changed since).
    pub fn for_container(&self, container_id: &str, ifname: &str) -> Vec<CachedAttachment> {
        let suffix = format!("-{container_id}-{ifname}");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<CachedAttachment> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let network = name.strip_suffix(&suffix)?.to_string();
                self.read(&network, container_id, ifname)
            })
            .collect();
        found.sort_by(|a, b| a.network_name.cmp(&b.network_name));
        found
    }

    /// Every readable cached attachment.
    pub fn all(&self) -> Vec<CachedAttachment> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<CachedAttachment>(&bytes).ok())
            .filter(|entry| entry.kind == KIND)
            .collect()
    }

    pub fn entry(
        network: &str,
        config: &[u8],
        rt: &crate::exec::RuntimeConf,
        result: Option<Value>,
    ) -> CachedAttachment {
        CachedAttachment {
            kind: KIND.to_string(),
            container_id: rt.container_id.clone(),
            config: config.to_vec(),
            if_name: rt.ifname.clone(),
            network_name: network.to_string(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            result,
        }
    }
}

/// For log lines: the base64 config of an entry decoded, when it is text.
pub fn config_text(entry: &CachedAttachment) -> String {
    String::from_utf8(entry.config.clone())
        .unwrap_or_else(|_| base64::engine::general_purpose::STANDARD.encode(&entry.config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/cri-dockerd-v0.3.21/cni-cache")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const ID: &str = "0bd9a3e1aa0a4af38b26f9145eed996cf0973b65c23c977cddf8bf3c117e4cdb";

    #[test]
    fn reference_entries_parse_and_reencode_to_the_same_document() {
        for network in ["bridge", "cni-loopback"] {
            let bytes = reference(&format!("{network}-{ID}-eth0"));
            let entry: CachedAttachment = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(entry.network_name, network);
            assert_eq!(entry.container_id, ID);
            assert_eq!(
                entry.cni_args[0],
                ("IgnoreUnknown".to_string(), "1".to_string())
            );
            // Go writes struct fields in declaration order and maps sorted;
            // the document, not the key order inside port mappings, matters.
            let ours: Value = serde_json::from_slice(&serde_json::to_vec(&entry).unwrap()).unwrap();
            let theirs: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(ours, theirs, "{network}");
        }
    }

    #[test]
    fn lookup_by_container_finds_every_network() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        std::fs::create_dir_all(cache.dir()).unwrap();
        for network in ["bridge", "cni-loopback"] {
            std::fs::write(
                cache.dir().join(format!("{network}-{ID}-eth0")),
                reference(&format!("{network}-{ID}-eth0")),
            )
            .unwrap();
        }
        let found = cache.for_container(ID, "eth0");
        assert_eq!(found.len(), 2);
        assert!(cache.read("bridge", ID, "eth0").unwrap().result.is_some());
        cache.remove("bridge", ID, "eth0");
        cache.remove("bridge", ID, "eth0");
        assert!(cache.read("bridge", ID, "eth0").is_none());
        assert!(cache.for_container("other", "eth0").is_empty());
    }

    #[test]
    fn a_killed_write_leaves_nothing_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        std::fs::create_dir_all(cache.dir()).unwrap();
        let mut entry: CachedAttachment =
            serde_json::from_slice(&reference(&format!("bridge-{ID}-eth0"))).unwrap();
        entry.network_name = "k8s.net".into();
        cache.write(&entry).unwrap();
        let names = |cache: &ResultCache| {
            let mut names: Vec<String> = std::fs::read_dir(cache.dir())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&cache), [format!("k8s.net-{ID}-eth0")]);
        // What a SIGKILL between write and rename leaves, in this build's
        // naming and the one before.
        std::fs::write(cache.dir().join(format!(".bridge-{ID}-eth0.tmp")), b"{").unwrap();
        std::fs::write(cache.dir().join(format!("bridge-{ID}-eth0.tmp")), b"{").unwrap();
        cache.remove_interrupted_writes();
        assert_eq!(names(&cache), [format!("k8s.net-{ID}-eth0")]);
        assert!(cache.read("k8s.net", ID, "eth0").is_some());
    }
}
