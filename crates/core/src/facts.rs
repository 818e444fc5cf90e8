//! What the shim learns from `docker info` and `docker version`: at start,
//! and again each time the store resyncs after losing Docker (a restarted
//! daemon may have a new version, cgroup driver, root dir, image store or
//! runtimes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cri_dockerd_engine::api_version::{self, ApiVersion};
use cri_dockerd_engine::model::SystemInfo;
use cri_dockerd_engine::{DaemonVersion, Engine};
use parking_lot::RwLock;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct DockerFacts {
    /// Docker's release (`28.5.2`).
    pub docker_version: String,
    /// The API version the shim speaks with it.
    pub api_version: ApiVersion,
    pub cgroup_driver: CgroupDriver,
    pub cgroup_v2: bool,
    pub root_dir: PathBuf,
    pub image_store: ImageStore,
    /// Docker's runtimes by name, with what each supports.
    pub runtimes: BTreeMap<String, RuntimeFacts>,
    pub default_runtime: String,
    /// `dockerd --experimental`: what Docker's checkpoints need (with CRIU).
    pub experimental: bool,
    /// The kernel Docker runs on, `(major, minor)`, when it says.
    pub kernel: Option<(u32, u32)>,
    /// Docker labels containers for SELinux (`dockerd --selinux-enabled`):
    /// only then does a bind's relabel (`:Z`) do anything.
    pub selinux: bool,
    /// Where Docker reads CDI specs; empty when it cannot inject CDI
    /// devices (before Docker 25, or its `cdi` feature off).
    pub cdi_spec_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// Where Docker keeps images and writable layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStore {
    /// A graph driver (`overlay2`, ...) under Docker's data root.
    GraphDriver(String),
    /// containerd's content store and a snapshotter (Docker's
    /// `containerd-snapshotter` feature; the default for new installs of
    /// Docker 29).
    Containerd {
        snapshotter: String,
        /// The containerd the daemon uses, when it says (API 1.46+).
        address: Option<String>,
    },
}

impl ImageStore {
    pub fn describe(&self) -> String {
        match self {
            ImageStore::GraphDriver(driver) => format!("graph driver {driver}"),
            ImageStore::Containerd { snapshotter, .. } => {
                format!("containerd (snapshotter {snapshotter})")
            }
        }
    }
}

/// What one of Docker's runtimes can do, from its `features` document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeFacts {
    /// The runtime knows the `rro` mount option.
    pub rro_option: bool,
}

/// Recursive read-only mounts need mount_setattr(2) with AT_RECURSIVE.
const RECURSIVE_READ_ONLY_KERNEL: (u32, u32) = (5, 12);

impl DockerFacts {
    pub async fn gather(engine: &Engine) -> Result<Self> {
        let info = engine.info().await.map_err(Error::docker("docker info"))?;
        Ok(Self::from_answers(&info, &engine.daemon_version()))
    }

    /// The facts in Docker's answers (a pure function, unit-tested).
    pub fn from_answers(info: &SystemInfo, version: &DaemonVersion) -> Self {
        let cgroup_driver = match info.cgroup_driver.as_deref() {
            Some("systemd") => CgroupDriver::Systemd,
            _ => CgroupDriver::Cgroupfs,
        };
        let driver = info.driver.clone().unwrap_or_default();
        let image_store = if info.containerd_image_store() {
            ImageStore::Containerd {
                snapshotter: driver,
                address: info
                    .containerd
                    .as_ref()
                    .and_then(|c| c.address.clone())
                    .filter(|a| !a.is_empty()),
            }
        } else {
            ImageStore::GraphDriver(driver)
        };
        let runtimes = info
            .runtimes
            .iter()
            .flatten()
            .map(|(name, runtime)| {
                let rro_option = runtime
                    .features()
                    .and_then(|f| f.mount_options)
                    .is_some_and(|options| options.iter().any(|o| o == "rro"));
                (name.clone(), RuntimeFacts { rro_option })
            })
            .collect();
        Self {
            docker_version: version.version.clone(),
            api_version: version.api,
            cgroup_driver,
            cgroup_v2: info.cgroup_version.as_deref() == Some("2"),
            root_dir: PathBuf::from(
                info.docker_root_dir
                    .clone()
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| "/var/lib/docker".into()),
            ),
            image_store,
            runtimes,
            default_runtime: info
                .default_runtime
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "runc".into()),
            experimental: info.experimental_build.unwrap_or(false),
            kernel: info.kernel_version.as_deref().and_then(kernel_version),
            selinux: info
                .security_options
                .iter()
                .flatten()
                .any(|o| o.split(',').any(|part| part == "name=selinux")),
            cdi_spec_dirs: info
                .cdi_spec_dirs
                .iter()
                .flatten()
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .collect(),
        }
    }

    pub fn has_runtime(&self, name: &str) -> bool {
        self.runtimes.contains_key(name)
    }

    /// Whether a container of this runtime (empty: Docker's default) can
    /// have recursively read-only mounts: Docker speaks API 1.44 or later,
    /// the kernel has mount_setattr (5.12), and the runtime says it knows
    /// `rro`; Docker refuses such a mount otherwise.
    pub fn supports_recursive_read_only(&self, runtime: &str) -> bool {
        let runtime = if runtime.is_empty() {
            self.default_runtime.as_str()
        } else {
            runtime
        };
        self.api_version >= api_version::RECURSIVE_READ_ONLY
            && self.kernel.is_some_and(|k| k >= RECURSIVE_READ_ONLY_KERNEL)
            && self.runtimes.get(runtime).is_some_and(|r| r.rro_option)
    }

    /// Read-only binds are recursively read-only unless the request says
    /// otherwise (API 1.44+): plain read-only binds must then ask for
    /// `ReadOnlyNonRecursive`.
    pub fn read_only_binds_are_recursive(&self) -> bool {
        self.api_version >= api_version::RECURSIVE_READ_ONLY
    }

    /// Whether this daemon can inject CDI devices; if not, why, in words
    /// an operator can act on.
    pub fn cdi_support(&self) -> std::result::Result<(), String> {
        if self.api_version < api_version::CDI_DEVICES {
            return Err(format!(
                "CDI devices need Docker 25 (API {}) or later; this is Docker {} (API {})",
                api_version::CDI_DEVICES,
                self.docker_version,
                self.api_version
            ));
        }
        if self.cdi_spec_dirs.is_empty() {
            return Err(format!(
                "Docker {}'s CDI feature is off: set \"features\": {{\"cdi\": true}} in its daemon.json (on by default from Docker 28)",
                self.docker_version
            ));
        }
        Ok(())
    }

    pub fn containerd_image_store(&self) -> bool {
        matches!(self.image_store, ImageStore::Containerd { .. })
    }

    /// Where images and writable layers are, as far as Docker's answers
    /// tell: a containerd of the system's own (its socket in
    /// `/run/containerd`) keeps them in its default root; one Docker runs
    /// itself keeps them under Docker's data root. The writable layers of
    /// running containers say it for sure (see `stats::fs_usage`).
    pub fn storage_roots(&self) -> crate::stats::fs_usage::StorageRoots {
        let containerd_root = match &self.image_store {
            ImageStore::Containerd {
                address: Some(address),
                ..
            } if address.starts_with("/run/containerd/") => {
                Some(PathBuf::from("/var/lib/containerd"))
            }
            _ => None,
        };
        crate::stats::fs_usage::StorageRoots {
            data_root: self.root_dir.clone(),
            containerd_store: self.containerd_image_store(),
            containerd_root,
        }
    }
}

/// `6.1.0-28-amd64` → (6, 1).
fn kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The daemon's facts as last gathered; readers take a snapshot.
#[derive(Debug)]
pub(crate) struct FactsCell {
    current: RwLock<Arc<DockerFacts>>,
}

impl FactsCell {
    pub(crate) fn new(facts: DockerFacts) -> Self {
        Self {
            current: RwLock::new(Arc::new(facts)),
        }
    }

    pub(crate) fn get(&self) -> Arc<DockerFacts> {
        self.current.read().clone()
    }

    /// Asks Docker again; on failure the last facts stay.
    pub(crate) async fn refresh(&self, engine: &Engine) -> Result<()> {
        let facts = DockerFacts::gather(engine).await?;
        let previous = std::mem::replace(&mut *self.current.write(), Arc::new(facts.clone()));
        if *previous != facts {
            tracing::info!(
                docker = %facts.docker_version,
                api = %facts.api_version,
                cgroup_driver = ?facts.cgroup_driver,
                root_dir = %facts.root_dir.display(),
                image_store = %facts.image_store.describe(),
                runtimes = ?facts.runtimes.keys().collect::<Vec<_>>(),
                "Docker's facts changed"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(api: (u16, u16)) -> DaemonVersion {
        DaemonVersion {
            version: "28.5.2".into(),
            daemon_api: ApiVersion::new(api.0, api.1),
            daemon_min_api: None,
            api: ApiVersion::new(api.0, api.1),
        }
    }

    fn info(json: &str) -> SystemInfo {
        serde_json::from_str(json).unwrap()
    }

    const RRO_RUNC: &str = r#""runc": {"path": "runc", "status": {"org.opencontainers.runtime-spec.features": "{\"mountOptions\":[\"ro\",\"rro\"]}"}}"#;
    const PLAIN_RUNC: &str = r#""plain": {"path": "runc-old"}"#;

    #[test]
    fn recursive_read_only_needs_the_api_the_kernel_and_the_runtime() {
        let answer = format!(
            r#"{{"KernelVersion": "6.1.0-28-amd64", "DefaultRuntime": "runc", "Runtimes": {{{RRO_RUNC}, {PLAIN_RUNC}}}}}"#
        );
        let facts = DockerFacts::from_answers(&info(&answer), &version((1, 51)));
        assert!(facts.supports_recursive_read_only(""));
        assert!(facts.supports_recursive_read_only("runc"));
        assert!(!facts.supports_recursive_read_only("plain"));
        assert!(!facts.supports_recursive_read_only("missing"));
        assert!(facts.read_only_binds_are_recursive());

        let old_api = DockerFacts::from_answers(&info(&answer), &version((1, 43)));
        assert!(!old_api.supports_recursive_read_only("runc"));
        assert!(!old_api.read_only_binds_are_recursive());

        let old_kernel = answer.replace("6.1.0-28-amd64", "5.10.0-35-amd64");
        let facts = DockerFacts::from_answers(&info(&old_kernel), &version((1, 51)));
        assert!(!facts.supports_recursive_read_only("runc"));
    }

    #[test]
    fn image_store_cgroups_and_defaults() {
        let facts = DockerFacts::from_answers(
            &info(
                r#"{"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
                    "Containerd": {"Address": "/run/containerd/containerd.sock"},
                    "CgroupDriver": "systemd", "CgroupVersion": "2", "DockerRootDir": "/data/docker"}"#,
            ),
            &version((1, 51)),
        );
        assert_eq!(
            facts.image_store,
            ImageStore::Containerd {
                snapshotter: "overlayfs".into(),
                address: Some("/run/containerd/containerd.sock".into())
            }
        );
        assert_eq!(facts.cgroup_driver, CgroupDriver::Systemd);
        assert!(facts.cgroup_v2);
        assert_eq!(facts.root_dir, PathBuf::from("/data/docker"));
        assert_eq!(facts.default_runtime, "runc");

        assert!(!facts.selinux);
        let selinux = DockerFacts::from_answers(
            &info(r#"{"SecurityOptions": ["name=seccomp,profile=builtin", "name=selinux"]}"#),
            &version((1, 51)),
        );
        assert!(selinux.selinux);

        let facts = DockerFacts::from_answers(&info("{}"), &version((1, 41)));
        assert_eq!(facts.image_store, ImageStore::GraphDriver(String::new()));
        assert_eq!(facts.cgroup_driver, CgroupDriver::Cgroupfs);
        assert_eq!(facts.root_dir, PathBuf::from("/var/lib/docker"));
        assert_eq!(facts.kernel, None);
    }

    #[test]
    fn cdi_needs_docker_25_and_its_feature_on() {
        let on = r#"{"CDISpecDirs": ["/etc/cdi", "/var/run/cdi"]}"#;
        let facts = DockerFacts::from_answers(&info(on), &version((1, 51)));
        assert_eq!(facts.cdi_support(), Ok(()));
        assert_eq!(
            facts.cdi_spec_dirs,
            vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]
        );

        let off = DockerFacts::from_answers(&info(r#"{"CDISpecDirs": []}"#), &version((1, 45)));
        let why = off.cdi_support().unwrap_err();
        assert!(
            why.contains("CDI feature is off") && why.contains("daemon.json"),
            "{why}"
        );

        let old = DockerFacts::from_answers(&info("{}"), &version((1, 41)));
        let why = old.cdi_support().unwrap_err();
        assert!(
            why.contains("Docker 25 (API 1.44)") && why.contains("(API 1.41)"),
            "{why}"
        );
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(kernel_version("5.12.0"), Some((5, 12)));
        assert_eq!(kernel_version("4.19"), Some((4, 19)));
        assert_eq!(kernel_version("weird"), None);
    }
}
