//! `DockerCri`: the CRI implemented on Docker. One per process, shared by
//! every CRI call; each call family lives with its concern (`sandbox/`,
//! `container/`, `image/`, `stats/`, `streams/`, `events`).

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use cri_dockerd_engine::Engine;

use crate::checkpoint::CheckpointStore;
use crate::config::{NetworkPlugin, RuntimeSettings};
use crate::container::ImageNames;
use crate::container::logs::LogManager;
use crate::error::{Error, Result};
use crate::facts::DockerFacts;
use crate::locks::KeyedLocks;
use crate::oom::OomPolicy;
use crate::stats::fs_usage::UsageMonitor;
use cri_dockerd_cni::CniManager;

/// The call families live with their concerns (`sandbox/`, `container/`,
/// `image/`, `stats/`, `streams/`, `events`, `runtime_status`) as `impl
/// DockerCri` blocks; each field is one concern's state, kept behind its
/// own small API.
pub struct DockerCri {
    /// The Docker daemon.
    pub(crate) engine: Engine,
    pub(crate) settings: RuntimeSettings,
    /// What the daemon is (cgroup driver, root dir, runtimes, API version).
    facts: crate::facts::FactsCell,
    /// Sandboxes and containers as last seen, kept current by Docker's events.
    pub(crate) store: Arc<crate::store::NodeStore>,
    /// sandbox/: cri-dockerd's checkpoints.
    pub(crate) checkpoints: CheckpointStore,
    /// sandbox/: pod networks (`None`: Docker's own bridge).
    pub(crate) cni: Option<CniManager>,
    /// sandbox/: which networks this process set up, and which are missing.
    pub(crate) networks: crate::sandbox::NetworkState,
    /// sandbox/: pod-level resources from UpdatePodSandboxResources.
    pub(crate) pod_resources: crate::sandbox::PodResources,
    /// Per-pod and per-container locks for calls that must not interleave.
    pub(crate) locks: KeyedLocks,
    /// container/: the OOM score adjustments the daemon may apply.
    pub(crate) oom: OomPolicy,
    /// container/: CRI log files.
    pub(crate) logs: LogManager,
    /// container/: tags and digests of images, for ContainerStatus.
    pub(crate) image_names: ImageNames,
    /// container/: capabilities this daemon refused as unknown when "ALL"
    /// was expanded (forgotten when Docker's facts are asked again).
    pub(crate) refused_capabilities: Mutex<std::collections::BTreeSet<String>>,
    /// container/: OOM kills Docker's own flag missed.
    pub(crate) oom_kills: crate::container::oom_kills::OomKills,
    /// stats/: what stats keep between calls.
    pub(crate) stats: crate::stats::StatsState,
    /// image/ and stats/: the data root's and the writable layers' usage,
    /// measured in the background.
    pub(crate) disk_usage: UsageMonitor,
    /// runtime_status: the pod CIDR from UpdateRuntimeConfig.
    pub(crate) pod_cidr: Mutex<Option<String>>,
    /// runtime_status: Docker's version, cached.
    pub(crate) version_cache: Mutex<Option<(Instant, String)>>,
    /// streams/: the exec/attach/port-forward server.
    pub(crate) streaming: Option<cri_dockerd_streaming::StreamingServer>,
}

const VERSION_CACHE_TTL: Duration = Duration::from_secs(60);

impl DockerCri {
    pub async fn new(
        engine: Engine,
        settings: RuntimeSettings,
        streaming: Option<cri_dockerd_streaming::StreamingServer>,
    ) -> Result<Arc<Self>> {
        let facts = DockerFacts::gather(&engine).await?;
        tracing::info!(
            docker = %facts.docker_version,
            api = %facts.api_version,
            cgroup_driver = ?facts.cgroup_driver,
            cgroup_v2 = facts.cgroup_v2,
            root_dir = %facts.root_dir.display(),
            image_store = %facts.image_store.describe(),
            "connected to Docker"
        );
        std::fs::create_dir_all(&settings.root_dir).map_err(Error::io(format!(
            "creating {}",
            settings.root_dir.display()
        )))?;
        let checkpoints = CheckpointStore::open(&settings.root_dir)?;
        let cni = match settings.network_plugin {
            NetworkPlugin::Cni => {
                let manager = CniManager::new(settings.cni.clone());
                if let Some(cidr) = &settings.pod_cidr {
                    manager.set_pod_cidr(cidr);
                }
                Some(manager)
            }
            NetworkPlugin::DockerBridge => None,
        };
        tracing::info!(hairpin_mode = %settings.cni.hairpin_mode, "hairpin mode");
        let oom = OomPolicy::detect(settings.restrict_oom_score_adj);
        let pod_cidr = Mutex::new(settings.pod_cidr.clone());
        let store = crate::store::NodeStore::new(engine.clone());
        store.start().await?;
        let disk_usage = UsageMonitor::start(facts.storage_roots(), &store);
        let logs = LogManager::new(engine.clone());
        let cri = Arc::new(Self {
            engine,
            settings,
            facts: crate::facts::FactsCell::new(facts),
            checkpoints,
            cni,
            oom,
            locks: KeyedLocks::default(),
            disk_usage,
            pod_cidr,
            version_cache: Mutex::new(None),
            networks: Default::default(),
            pod_resources: Default::default(),
            logs,
            image_names: ImageNames::default(),
            oom_kills: Default::default(),
            refused_capabilities: Default::default(),
            stats: crate::stats::StatsState::new(),
            streaming,
            store,
        });
        cri.refresh_facts_on_resync();
        Ok(cri)
    }

    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What the daemon is, as last gathered.
    pub fn facts(&self) -> Arc<DockerFacts> {
        self.facts.get()
    }

    /// Each time the store is back in step after losing Docker, the daemon
    /// may be a new one (restarted, upgraded, reconfigured): its facts and
    /// version are asked again (the store negotiated the API version before
    /// it relisted).
    fn refresh_facts_on_resync(self: &Arc<Self>) {
        let mut synced = self.store.synced_changes();
        let cri = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                if synced.wait_for(|s| !*s).await.is_err() {
                    return;
                }
                if synced.wait_for(|s| *s).await.is_err() {
                    return;
                }
                let Some(cri) = cri.upgrade() else { return };
                *cri.version_cache.lock() = None;
                cri.refused_capabilities.lock().clear();
                if let Err(e) = cri.facts.refresh(&cri.engine).await {
                    tracing::warn!(error = %e, "could not ask Docker for its facts again");
                }
            }
        });
    }

    /// Removes a Docker container with its anonymous volumes, running or
    /// not; one that is already gone is fine.
    pub(crate) async fn remove_docker_container(&self, id: &str) -> Result<()> {
        let options = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.engine.api().remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if crate::error::is_docker_not_found(&e) => Ok(()),
            Err(e) => Err(Error::docker(format!("removing container {id}"))(e)),
        }
    }

    /// The Docker server version, cached for a minute as cri-dockerd does:
    /// the kubelet asks often and it does not change under a running daemon.
    pub(crate) async fn docker_version(&self) -> Result<String> {
        // Not while Docker is lost: the answer would claim a daemon that
        // may not be there (or not be the same one) any more.
        if let Some((at, version)) = &*self.version_cache.lock()
            && at.elapsed() < VERSION_CACHE_TTL
            && self.store.is_synced()
        {
            return Ok(version.clone());
        }
        let version = self
            .engine
            .version()
            .await
            .map_err(Error::docker("docker version"))?
            .version
            .unwrap_or_default();
        *self.version_cache.lock() = Some((Instant::now(), version.clone()));
        Ok(version)
    }
}
