//! Containers of a pod: create, start, stop, remove, list, status, update.

pub(crate) mod exec;
pub mod logs;
pub mod oom_kills;
mod status;

pub(crate) use status::{ImageNames, cri_container_state};

use std::path::PathBuf;
use std::sync::Arc;

use bollard::query_parameters::{StartContainerOptions, StopContainerOptions};
use cri_dockerd_api::v1::{ContainerConfig, LinuxContainerResources, PodSandboxConfig};
use cri_dockerd_engine::api_version;
use cri_dockerd_engine::model::{ContainerInspect, ContainerStatus};
use tracing::Instrument;

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result, is_docker_not_found, is_docker_not_modified};
use crate::labels;
use crate::store::{Found, Freshness, running_pid};
use crate::store::{Kind, Record};
use crate::translate;

/// Where the kernel lists the AppArmor profiles it has loaded.
const APPARMOR_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// A container that names an AppArmor profile the kernel has not loaded is
/// refused at once (Docker would only fail to start it). Where the list
/// cannot be read (AppArmor off, or securityfs not visible to the shim),
/// Docker decides.
fn check_apparmor_profile(body: &bollard::models::ContainerCreateBody) -> Result<()> {
    let options = body
        .host_config
        .as_ref()
        .and_then(|h| h.security_opt.as_deref())
        .unwrap_or_default();
    let Some(profile) = translate::security::named_apparmor_profile(options) else {
        return Ok(());
    };
    let Ok(loaded) = std::fs::read_to_string(APPARMOR_PROFILES) else {
        return Ok(());
    };
    if translate::security::apparmor_profile_loaded(&loaded, profile) {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "AppArmor profile {profile:?} is not loaded on this node (load it with apparmor_parser)"
    )))
}

/// The capability Docker refused as unknown (`invalid CapAdd: unknown
/// capability: "CAP_PERFMON"`).
fn refused_capability(error: &Error) -> Option<String> {
    let Error::Docker {
        source:
            bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                message,
            },
        ..
    } = error
    else {
        return None;
    };
    let rest = message.split("unknown capability:").nth(1)?;
    Some(rest.trim().trim_matches('"').to_string()).filter(|c| c.starts_with("CAP_"))
}

fn label<'a>(inspect: &'a ContainerInspect, key: &str) -> Option<&'a str> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

impl DockerCri {
    /// One of our containers by id (or unique prefix): from the store
    /// (`Stored`, reads) or asked of Docker now (`Current`, writes).
    pub(crate) async fn container_record(
        &self,
        id: &str,
        freshness: Freshness,
    ) -> Result<Arc<Record>> {
        let record = match freshness {
            Freshness::Stored => self.store.lookup(id).await?,
            Freshness::Current => self.store.fetch(id).await?,
        };
        record
            .filter(|r| r.kind == Kind::Container)
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))
    }

    /// Docker's inspect of one of our containers, as it is now.
    pub(crate) async fn inspect_container_checked(&self, id: &str) -> Result<ContainerInspect> {
        Ok(self
            .container_record(id, Freshness::Current)
            .await?
            .inspect
            .clone())
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.as_str())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::InvalidArgument("config.image.image is required".into()))?;
        let resolved = self
            .sandbox_record(sandbox_id, Freshness::Stored)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {sandbox_id} not found")))?
            .id
            .clone();
        // RemovePodSandbox holds this lock while it removes the pod's
        // containers: a container created outside it could outlive its pod.
        let _pod_lock = self.locks.lock(&resolved).await;
        let sandbox = self
            .sandbox_record(&resolved, Freshness::Current)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {sandbox_id} not found")))?;
        let sandbox_id = sandbox.id.clone();
        if sandbox.running_pid().is_none() {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {sandbox_id} is not running: containers cannot join it"
            )));
        }
        if self.inspect_image_by_ref(image).await?.is_none() {
            return Err(Error::NotFound(format!(
                "image {image:?} is not present: pull it first (PullImage)"
            )));
        }
        let image_volume_ids = self.image_volume_ids(config).await?;
        let cdi_devices = translate::cdi::requested_devices(config)?;
        if !cdi_devices.is_empty() {
            self.check_cdi_devices(&cdi_devices).await?;
        }
        let runtime = sandbox
            .inspect
            .host_config
            .as_ref()
            .and_then(|h| h.runtime.clone());
        let clamp = |v: i64| self.oom.clamp(v);
        let read_file = |path: &str| std::fs::read(path);
        // "ALL" on a machine that cannot grant all: what it can grant, less
        // what this daemon has refused as unknown (Docker 20.10 knows no
        // CAP_PERFMON, CAP_BPF, CAP_CHECKPOINT_RESTORE).
        let grantable = crate::caps::restricted_bounding_set().map(|caps| {
            let refused = self.refused_capabilities.lock();
            caps.into_iter()
                .filter(|c| !refused.contains(*c))
                .collect::<Vec<_>>()
        });
        let facts = self.facts();
        let options = translate::container::ContainerOptions {
            sandbox_id: &sandbox_id,
            cgroup_driver: facts.cgroup_driver,
            clamp_oom_score_adj: &clamp,
            runtime: runtime.as_deref(),
            read_file: &read_file,
            mounts: translate::container::MountSupport {
                api: facts.api_version,
                recursive_read_only: facts
                    .supports_recursive_read_only(runtime.as_deref().unwrap_or_default()),
                selinux_relabel: facts.selinux,
            },
            image_volume_ids: &image_volume_ids,
            grantable_capabilities: grantable.as_deref(),
        };
        let (name, body) =
            translate::container::create_body(config, sandbox_config, image, &options)?;
        check_apparmor_profile(&body)?;
        let not_utf8 = translate::container::non_utf8_env(config);
        if !not_utf8.is_empty() {
            tracing::warn!(
                env = ?not_utf8,
                "env values that are not UTF-8: Docker carries text only, so their invalid bytes become U+FFFD"
            );
        }
        let id = self
            .create_with_known_capabilities(&name, body, config)
            .await?;
        self.store.fetch(&id).await?;
        tracing::info!(container_id = %id, pod_sandbox_id = %sandbox_id, name, "container created");
        Ok(id)
    }

    /// Creates the container; a capability the shim added for "ALL" that
    /// the daemon does not know is dropped (and remembered) and the create
    /// tried again. One the client named itself stays an error.
    async fn create_with_known_capabilities(
        &self,
        name: &str,
        mut body: bollard::models::ContainerCreateBody,
        config: &ContainerConfig,
    ) -> Result<String> {
        let named: Vec<String> = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.capabilities.as_ref())
            .map(|c| {
                c.add_capabilities
                    .iter()
                    .map(|cap| translate::capability_name(cap))
                    .collect()
            })
            .unwrap_or_default();
        loop {
            let error = match self.create_container_named(name, body.clone()).await {
                Ok(id) => return Ok(id),
                Err(e) => e,
            };
            let Some(cap) = refused_capability(&error) else {
                return Err(error);
            };
            let added = body.host_config.as_mut().and_then(|h| h.cap_add.as_mut());
            let Some(added) = added.filter(|a| a.contains(&cap) && !named.contains(&cap)) else {
                return Err(error);
            };
            added.retain(|c| *c != cap);
            tracing::info!(capability = %cap, "Docker does not know this capability: left out of ALL");
            self.refused_capabilities.lock().insert(cap);
        }
    }

    /// CDI devices are never dropped: a daemon that cannot inject them, or
    /// one that does not know a device (where it says which it knows: API
    /// 1.50+), refuses the container here. On API 1.44 to 1.49 an unknown
    /// device shows at StartContainer, as Docker's refusal.
    async fn check_cdi_devices(&self, names: &[String]) -> Result<()> {
        let facts = self.facts();
        facts.cdi_support().map_err(|why| {
            Error::FailedPrecondition(format!("cannot inject CDI devices {names:?}: {why}"))
        })?;
        if facts.api_version < api_version::DISCOVERED_DEVICES {
            return Ok(());
        }
        // Fresh: specs come and go as drivers write them.
        let info = self
            .engine
            .info()
            .await
            .map_err(Error::docker("docker info (CDI devices)"))?;
        let known: Vec<String> = info
            .discovered_devices
            .into_iter()
            .flatten()
            .filter(|d| d.source.as_deref() == Some(translate::cdi::DOCKER_DRIVER))
            .filter_map(|d| d.id)
            .collect();
        let unknown: Vec<&String> = names.iter().filter(|n| !known.contains(n)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let dirs: Vec<String> = facts
            .cdi_spec_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        Err(Error::FailedPrecondition(format!(
            "CDI devices {unknown:?} are unknown to Docker {}: no CDI spec in {} defines them",
            facts.docker_version,
            dirs.join(", ")
        )))
    }

    /// The image ID of every image the container's image volumes name;
    /// each must be present (the kubelet pulls them first).
    async fn image_volume_ids(
        &self,
        config: &ContainerConfig,
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut ids = std::collections::HashMap::new();
        for m in &config.mounts {
            let Some(image) = m.image.as_ref().filter(|i| !i.image.is_empty()) else {
                continue;
            };
            if ids.contains_key(&image.image) {
                continue;
            }
            let inspect = self
                .inspect_image_by_ref(&image.image)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "image {:?} of image volume {} is not present: pull it first (PullImage)",
                        image.image, m.container_path
                    ))
                })?;
            ids.insert(image.image.clone(), inspect.id.unwrap_or_default());
        }
        Ok(ids)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        let span = tracing::info_span!("container", container_id = %full_id);
        async {
            match self
                .engine
                .api()
                .start_container(&full_id, None::<StartContainerOptions>)
                .await
            {
                Ok(()) => {}
                Err(e) if is_docker_not_modified(&e) => {}
                Err(e) => {
                    return Err(Error::docker_start(format!("starting container {full_id}"))(e));
                }
            }
            self.store.fetch(&full_id).await?;
            self.disk_usage.nudge();
            if let Some(path) = label(&inspect, labels::CONTAINER_LOG_PATH) {
                self.logs.follow(&full_id, PathBuf::from(path));
            }
            if let Some(extra) = label(&inspect, labels::EXTRA_RESOURCES) {
                self.apply_extra_resources(&full_id, extra).await;
            }
            tracing::info!("container started");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Honours `timeout` seconds, then Docker sends SIGKILL. A container
    /// that is already stopped, or gone, is fine.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let Some(record) = self.own_container(id).await? else {
            return Ok(());
        };
        let id = record.id.as_str();
        let t = timeout.clamp(0, i32::MAX as i64) as i32;
        match self
            .engine
            .api()
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_docker_not_modified(&e) || is_docker_not_found(&e) => {}
            Err(e) => return Err(Error::docker(format!("stopping container {id}"))(e)),
        }
        self.store.fetch(id).await?;
        Ok(())
    }

    /// One of our containers as Docker has it now, for a stop or a remove:
    /// `None` when it is gone (the call is then done, as the CRI asks);
    /// NotFound for a sandbox or a container that is not ours, which must
    /// be left untouched.
    async fn own_container(&self, id: &str) -> Result<Option<Arc<Record>>> {
        match self.store.find(id).await? {
            Found::Ours(record) if record.kind == Kind::Container => Ok(Some(record)),
            Found::Gone => Ok(None),
            Found::Ours(_) | Found::NotOurs => {
                Err(Error::NotFound(format!("container {id} not found")))
            }
        }
    }

    /// Removes the container and its CRI log file; one that is gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let Some(record) = self.own_container(id).await? else {
            return Ok(());
        };
        let full_id = record.id.clone();
        let inspect = &record.inspect;
        self.logs.forget(&full_id);
        self.oom_kills.forget(&full_id);
        self.remove_docker_container(&full_id).await?;
        if let Some(path) = label(inspect, labels::CONTAINER_LOG_PATH)
            && let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container_id = %full_id, path, error = %e, "could not remove the container log");
        }
        self.stats.forget(&full_id);
        self.store.forget(&full_id);
        tracing::info!(container_id = %full_id, "container removed");
        Ok(())
    }

    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: &LinuxContainerResources,
    ) -> Result<()> {
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        let body = translate::container::update_body(resources);
        self.engine
            .api()
            .update_container(&full_id, body)
            .await
            .map_err(Error::docker(format!("updating container {full_id}")))?;
        let record = self.store.fetch(&full_id).await?;
        if let Some(pid) = record.as_ref().and_then(|r| r.running_pid()) {
            self.apply_oom_score_adj(&full_id, pid, resources.oom_score_adj);
        }
        if let Some(extra) = translate::container::ExtraResources::of(resources) {
            self.apply_extra_resources(
                &full_id,
                &serde_json::to_string(&extra).expect("serialisable"),
            )
            .await;
        }
        Ok(())
    }

    /// CheckpointContainer (the kubelet's forensic checkpoints). Docker's own
    /// checkpoints need CRIU and an experimental daemon, and are not the
    /// archive the CRI asks for: the call answers Unimplemented, saying why.
    pub async fn checkpoint_container(&self, id: &str) -> Result<()> {
        let record = self.container_record(id, Freshness::Stored).await?;
        let why = if self.facts().experimental {
            "this daemon is experimental, but cri-dockerd-rs does not turn Docker's checkpoints into the CRI's checkpoint archive"
        } else {
            "Docker checkpoints need CRIU and an experimental daemon (dockerd --experimental), and this daemon is not experimental"
        };
        Err(Error::Unimplemented(format!(
            "CheckpointContainer of {}: {why}",
            record.id
        )))
    }

    /// Docker cannot update a container's OOM score: it is written to each
    /// of its processes, raised to what this process may set (as at create).
    fn apply_oom_score_adj(&self, id: &str, pid: i64, requested: i64) {
        let score = self.oom.clamp(requested);
        let processes = crate::stats::cgroups::ContainerCgroup::of_process(
            pid,
            self.stats.mounts(),
            self.facts().cgroup_v2,
        )
        .and_then(|cgroup| cgroup.processes())
        .unwrap_or_else(|_| vec![pid]);
        for process in processes {
            if let Err(e) =
                std::fs::write(format!("/proc/{process}/oom_score_adj"), score.to_string())
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(container_id = id, pid = process, score, error = %e, "could not set the OOM score");
            }
        }
    }

    /// Hugepage and cgroup v2 unified limits, written to the running
    /// container's cgroup. Docker cannot set them; failures are logged.
    async fn apply_extra_resources(&self, id: &str, extra: &str) {
        let extra: translate::container::ExtraResources = match serde_json::from_str(extra) {
            Ok(extra) => extra,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable extra resources label");
                return;
            }
        };
        let Ok(inspect) = self.engine.inspect_container(id, false).await else {
            return;
        };
        let Some(pid) = running_pid(&inspect) else {
            return;
        };
        let cgroup = match crate::stats::cgroups::ContainerCgroup::of_process(
            pid,
            self.stats.mounts(),
            self.facts().cgroup_v2,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the container's cgroup");
                return;
            }
        };
        for (page_size, limit) in &extra.hugepages {
            if let Err(e) = cgroup.set_hugepage_limit(page_size, *limit) {
                tracing::warn!(page_size, limit, error = %e, "could not set a hugepage limit");
            }
        }
        for (key, value) in &extra.unified {
            if let Err(e) = cgroup.set_unified(key, value) {
                tracing::warn!(key, value, error = %e, "could not set a unified cgroup value");
            }
        }
    }

    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        if running_pid(&inspect).is_none() {
            return Err(Error::FailedPrecondition(format!(
                "container {full_id} is not running"
            )));
        }
        match self.logs.reopen(&full_id).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Error::io("reopening the container log")(e)),
            None => Err(Error::FailedPrecondition(format!(
                "container {full_id} has no log being written (no log path)"
            ))),
        }
    }

    /// After a restart: resume the log copy of every container that has a
    /// log path, running or not (an exited one may have lines not yet copied).
    /// Only containers of sandboxes checkpointed under this shim's root are
    /// this shim's to copy: another runtime on the same daemon keeps its own.
    pub async fn resume_log_copies(&self) -> Result<()> {
        let ours: std::collections::HashSet<String> =
            self.checkpoints.list()?.into_iter().collect();
        let filters = [(
            "label",
            vec![format!(
                "{}={}",
                labels::CONTAINER_TYPE,
                labels::CONTAINER_TYPE_CONTAINER
            )],
        )];
        let containers = self
            .engine
            .list_containers(true, &filters)
            .await
            .map_err(Error::docker("listing containers"))?;
        for c in containers {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            if c.state == Some(ContainerStatus::Created)
                || !labels
                    .get(labels::SANDBOX_ID)
                    .is_some_and(|s| ours.contains(s))
            {
                continue;
            }
            if let Some(path) = labels
                .get(labels::CONTAINER_LOG_PATH)
                .filter(|p| !p.is_empty())
            {
                self.logs.follow(&id, PathBuf::from(path));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_refusing_an_unknown_capability_is_recognised() {
        let refused = Error::docker("creating container x")(
            bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                message: "invalid CapAdd: unknown capability: \"CAP_PERFMON\"".into(),
            },
        );
        assert_eq!(refused_capability(&refused).as_deref(), Some("CAP_PERFMON"));
        let other = Error::docker("creating container x")(
            bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                message: "invalid mount config".into(),
            },
        );
        assert_eq!(refused_capability(&other), None);
    }
}
