//! What the shim learns from `docker info`: at start, and again each time
//! the store resyncs after losing Docker (a restarted daemon may have a new
//! cgroup driver, root dir or runtimes).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use bollard::Docker;
use bollard::models::{SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct DockerFacts {
    pub cgroup_driver: CgroupDriver,
    pub cgroup_v2: bool,
    pub root_dir: PathBuf,
    pub runtimes: BTreeSet<String>,
    pub default_runtime: String,
    pub api_version: (usize, usize),
    /// `dockerd --experimental`: what Docker's checkpoints need (with CRIU).
    pub experimental: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

impl DockerFacts {
    pub async fn gather(docker: &Docker) -> Result<Self> {
        let info = docker.info().await.map_err(Error::docker("docker info"))?;
        let cgroup_driver = match info.cgroup_driver {
            Some(SystemInfoCgroupDriverEnum::SYSTEMD) => CgroupDriver::Systemd,
            _ => CgroupDriver::Cgroupfs,
        };
        let cgroup_v2 = matches!(info.cgroup_version, Some(SystemInfoCgroupVersionEnum::_2));
        let version = docker.client_version();
        Ok(Self {
            cgroup_driver,
            cgroup_v2,
            root_dir: PathBuf::from(
                info.docker_root_dir
                    .unwrap_or_else(|| "/var/lib/docker".into()),
            ),
            runtimes: info.runtimes.unwrap_or_default().into_keys().collect(),
            default_runtime: info.default_runtime.unwrap_or_else(|| "runc".into()),
            api_version: (version.major_version, version.minor_version),
            experimental: info.experimental_build.unwrap_or(false),
        })
    }

    /// Docker API 1.44 brought recursive read-only bind mounts.
    pub fn supports_recursive_read_only(&self) -> bool {
        self.api_version >= (1, 44)
    }
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
    pub(crate) async fn refresh(&self, docker: &Docker) -> Result<()> {
        let facts = DockerFacts::gather(docker).await?;
        let previous = std::mem::replace(&mut *self.current.write(), Arc::new(facts.clone()));
        if previous.cgroup_driver != facts.cgroup_driver
            || previous.root_dir != facts.root_dir
            || previous.runtimes != facts.runtimes
        {
            tracing::info!(
                cgroup_driver = ?facts.cgroup_driver,
                root_dir = %facts.root_dir.display(),
                runtimes = ?facts.runtimes,
                "Docker's facts changed"
            );
        }
        Ok(())
    }
}
