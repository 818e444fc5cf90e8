//! Containers of a pod: create, start, stop, remove, list, status, update.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum,
    ContainerUpdateBody,
};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use k8s_cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerResources, ContainerState,
    ContainerStatus, ContainerStatusResponse, ContainerUser, ImageSpec, LinuxContainerResources,
    LinuxContainerUser, Mount, PodSandboxConfig,
};
use tracing::Instrument;

use crate::error::{Error, Result, is_docker_not_found, is_docker_not_modified};
use crate::labels;
use crate::naming;
use crate::runtime::Runtime;
use crate::sandbox::{Freshness, running_pid};
use crate::store::{Kind, Phase, Record, id_matches};
use crate::time::rfc3339_to_ns;
use crate::translate;

/// How long ContainerStatus waits for the log copy of an exited container.
const LOG_DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Docker's image ID prefixes in the CRI's image_ref, as cri-dockerd writes them.
const DOCKER_IMAGE_ID_PREFIX: &str = "docker://";
const DOCKER_PULLABLE_IMAGE_ID_PREFIX: &str = "docker-pullable://";

fn label<'a>(inspect: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// An image's tags and digests, looked up once per image and kept until
/// Docker reports an image event (tag, untag, pull, delete): ContainerStatus
/// is on the kubelet's hot path.
#[derive(Default)]
pub(crate) struct ImageNames {
    cache: Mutex<HashMap<String, CachedImageNames>>,
}

/// The store's image generation when looked up, RepoTags, RepoDigests.
type CachedImageNames = (u64, Vec<String>, Vec<String>);

/// What the CRI calls a container's state, from Docker's.
fn cri_state(inspect: &ContainerInspectResponse) -> (ContainerState, &'static str) {
    let state = inspect.state.clone().unwrap_or_default();
    if state.running == Some(true) {
        return (ContainerState::ContainerRunning, "");
    }
    let finished = rfc3339_to_ns(state.finished_at.as_deref().unwrap_or_default());
    let exit_code = state.exit_code.unwrap_or(0);
    if finished > 0 {
        let reason = if state.oom_killed == Some(true) {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        (ContainerState::ContainerExited, reason)
    } else if exit_code != 0 {
        (ContainerState::ContainerExited, "ContainerCannotRun")
    } else if state.status == Some(ContainerStateStatusEnum::CREATED) {
        (ContainerState::ContainerCreated, "")
    } else {
        (ContainerState::ContainerUnknown, "")
    }
}

/// The CRI's container state for a phase, as cri-dockerd maps `docker ps`.
fn cri_container_state(phase: Phase) -> ContainerState {
    match phase {
        Phase::Running => ContainerState::ContainerRunning,
        Phase::Created => ContainerState::ContainerCreated,
        Phase::Exited => ContainerState::ContainerExited,
        Phase::Other => ContainerState::ContainerUnknown,
    }
}

/// Real, effective user of a running process from /proc (host PID view).
fn process_user(pid: i64) -> Option<LinuxContainerUser> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    let first = |v: &str| {
        v.split_whitespace()
            .next()
            .and_then(|x| x.parse::<i64>().ok())
    };
    Some(LinuxContainerUser {
        uid: first(field("Uid:")?)?,
        gid: first(field("Gid:")?)?,
        supplemental_groups: field("Groups:")
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect(),
    })
}

impl Runtime {
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
    pub(crate) async fn inspect_container_checked(
        &self,
        id: &str,
    ) -> Result<ContainerInspectResponse> {
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
        let sandbox = self
            .sandbox_record(sandbox_id, Freshness::Current)
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
        let runtime = sandbox
            .inspect
            .host_config
            .as_ref()
            .and_then(|h| h.runtime.clone());
        let clamp = |v: i64| self.oom.clamp(v);
        let read_file = |path: &str| std::fs::read(path);
        let grantable = crate::caps::restricted_bounding_set();
        let options = translate::container::ContainerOptions {
            sandbox_id: &sandbox_id,
            cgroup_driver: self.facts.cgroup_driver,
            clamp_oom_score_adj: &clamp,
            runtime: runtime.as_deref(),
            read_file: &read_file,
            supports_recursive_read_only: self.facts.supports_recursive_read_only(),
            grantable_capabilities: grantable.as_deref(),
        };
        let (name, body) =
            translate::container::create_body(config, sandbox_config, image, &options)?;
        let id = self.create_container_named(&name, body).await?;
        self.store.fetch(&id).await?;
        tracing::info!(container_id = %id, pod_sandbox_id = %sandbox_id, name, "container created");
        Ok(id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        let span = tracing::info_span!("container", container_id = %full_id);
        async {
            match self
                .docker
                .start_container(&full_id, None::<StartContainerOptions>)
                .await
            {
                Ok(()) => {}
                Err(e) if is_docker_not_modified(&e) => {}
                Err(e) => return Err(Error::docker(format!("starting container {full_id}"))(e)),
            }
            self.store.fetch(&full_id).await?;
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
        let t = timeout.clamp(0, i32::MAX as i64) as i32;
        match self
            .docker
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

    /// Removes the container and its CRI log file; one that is gone is fine.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let inspect = match self.inspect_container_checked(id).await {
            Ok(inspect) => inspect,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        self.logs.forget(&full_id);
        self.oom_kills.forget(&full_id);
        match self
            .docker
            .remove_container(
                &full_id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_docker_not_found(&e) => {}
            Err(e) => return Err(Error::docker(format!("removing container {full_id}"))(e)),
        }
        if let Some(path) = label(&inspect, labels::CONTAINER_LOG_PATH)
            && let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container_id = %full_id, path, error = %e, "could not remove the container log");
        }
        self.container_facts
            .lock()
            .expect("container facts")
            .remove(&full_id);
        self.store.forget(&full_id);
        tracing::info!(container_id = %full_id, "container removed");
        Ok(())
    }

    pub async fn list_containers(
        &self,
        filter: Option<&ContainerFilter>,
    ) -> Result<Vec<Container>> {
        self.store.ensure_synced().await?;
        let empty = HashMap::new();
        let id_prefix = filter.map(|f| f.id.as_str()).unwrap_or("");
        let sandbox_id = filter.map(|f| f.pod_sandbox_id.as_str()).unwrap_or("");
        let selector = filter.map(|f| &f.label_selector).unwrap_or(&empty);
        let wanted_state = filter.and_then(|f| f.state.as_ref()).map(|s| s.state);
        let mut containers = Vec::new();
        for record in self.store.all(Kind::Container) {
            let state = cri_container_state(record.phase);
            if !id_matches(&record.id, id_prefix)
                || (!sandbox_id.is_empty() && record.sandbox_id != sandbox_id)
                || wanted_state.is_some_and(|w| w != state as i32)
                || !record.matches_labels(selector)
            {
                continue;
            }
            let Some(metadata) = naming::parse_container_name(&record.name) else {
                continue;
            };
            let (cri_labels, annotations) = labels::extract_labels(record.labels());
            let image_id = record.inspect.image.clone().unwrap_or_default();
            containers.push(Container {
                id: record.id.clone(),
                pod_sandbox_id: record.sandbox_id.clone(),
                metadata: Some(metadata),
                image: Some(ImageSpec {
                    image: record
                        .inspect
                        .config
                        .as_ref()
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default(),
                    ..Default::default()
                }),
                image_ref: image_id.clone(),
                state: state as i32,
                // Whole seconds, as Docker's list gives them (and cri-dockerd).
                created_at: record.created_seconds_ns(),
                labels: cri_labels,
                annotations,
                image_id,
            });
        }
        Ok(containers)
    }

    /// RepoTags and RepoDigests of an image ID, cached for a short while.
    async fn image_names(&self, image_id: &str) -> (Vec<String>, Vec<String>) {
        let generation = self.store.image_generation();
        if self.store.is_synced()
            && let Some((seen, tags, digests)) = self
                .image_names
                .cache
                .lock()
                .expect("image names")
                .get(image_id)
            && *seen == generation
        {
            return (tags.clone(), digests.clone());
        }
        let (tags, digests) = match self.docker.inspect_image(image_id).await {
            Ok(i) => (
                i.repo_tags.unwrap_or_default(),
                i.repo_digests.unwrap_or_default(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let mut cache = self.image_names.cache.lock().expect("image names");
        cache.retain(|_, (seen, _, _)| *seen == generation);
        cache.insert(
            image_id.to_string(),
            (generation, tags.clone(), digests.clone()),
        );
        (tags, digests)
    }

    pub async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse> {
        let mut record = self.container_record(id, Freshness::Stored).await?;
        if cri_state(&record.inspect).0 == ContainerState::ContainerExited
            && self.logs.is_following(&record.id)
        {
            // Every line the container wrote is in its log before it is
            // reported as exited.
            self.logs.drained(&record.id, LOG_DRAIN_LIMIT).await;
            record = self
                .container_record(&record.id, Freshness::Current)
                .await?;
        }
        self.container_status_of(&record, verbose).await
    }

    /// The CRI status of a container the store holds (no Docker request
    /// unless an image's names or an OOM kill must be looked up once).
    pub(crate) async fn container_status_of(
        &self,
        record: &Record,
        verbose: bool,
    ) -> Result<ContainerStatusResponse> {
        let full_id = record.id.clone();
        let inspect = &record.inspect;
        let (state, mut reason) = cri_state(inspect);
        if reason == "Error"
            && self
                .oom_kills
                .was_oom_killed(&self.docker, &full_id, inspect)
                .await
        {
            reason = "OOMKilled";
        }
        let docker_state = inspect.state.clone().unwrap_or_default();
        let config = inspect.config.clone().unwrap_or_default();
        let host = inspect.host_config.clone().unwrap_or_default();
        let name = inspect.name.clone().unwrap_or_default();
        let metadata = naming::parse_container_name(&name).ok_or_else(|| {
            Error::Internal(format!(
                "container {full_id} has an unparsable name {name:?}"
            ))
        })?;
        let docker_labels = config.labels.clone().unwrap_or_default();
        let (cri_labels, annotations) = labels::extract_labels(&docker_labels);

        let created_at = rfc3339_to_ns(inspect.created.as_deref().unwrap_or_default());
        let mut started_at = rfc3339_to_ns(docker_state.started_at.as_deref().unwrap_or_default());
        let mut finished_at =
            rfc3339_to_ns(docker_state.finished_at.as_deref().unwrap_or_default());
        if reason == "ContainerCannotRun" {
            started_at = created_at;
            finished_at = created_at;
        }
        // Docker records StartedAt once start returns, which can be after a
        // short-lived process has already finished.
        if finished_at > 0 && started_at > finished_at {
            started_at = finished_at;
        }
        let image_id = inspect.image.clone().unwrap_or_default();
        let (tags, digests) = self.image_names(&image_id).await;
        // The name the container was created with when it is one of the
        // image's tags (others may point at the same image), else the first tag.
        let created_with = config.image.clone().unwrap_or_default();
        let wanted = crate::image_ref::normalize(&created_with);
        let image_name = if wanted.is_some()
            && tags
                .iter()
                .any(|t| crate::image_ref::normalize(t) == wanted)
        {
            created_with
        } else {
            tags.first().cloned().unwrap_or(created_with)
        };
        let image_ref = match digests.first() {
            Some(digest) => format!("{DOCKER_PULLABLE_IMAGE_ID_PREFIX}{digest}"),
            None => format!("{DOCKER_IMAGE_ID_PREFIX}{image_id}"),
        };
        let mounts = inspect
            .mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|m| Mount {
                host_path: m.source.unwrap_or_default(),
                container_path: m.destination.unwrap_or_default(),
                readonly: m.rw == Some(false),
                ..Default::default()
            })
            .collect();
        let resources = LinuxContainerResources {
            cpu_period: host.cpu_period.unwrap_or(0),
            cpu_quota: host.cpu_quota.unwrap_or(0),
            cpu_shares: host.cpu_shares.unwrap_or(0),
            memory_limit_in_bytes: host.memory.unwrap_or(0),
            oom_score_adj: host.oom_score_adj.unwrap_or(0),
            cpuset_cpus: host.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: host.cpuset_mems.clone().unwrap_or_default(),
            memory_swap_limit_in_bytes: host.memory_swap.unwrap_or(0).max(0),
            ..Default::default()
        };
        let pid = docker_state
            .pid
            .filter(|p| *p > 0 && state == ContainerState::ContainerRunning);
        let user = pid.and_then(process_user).or_else(|| {
            let mut parts = config.user.as_deref().unwrap_or("").split(':');
            let uid = parts.next().and_then(|u| u.parse().ok())?;
            Some(LinuxContainerUser {
                uid,
                gid: parts.next().and_then(|g| g.parse().ok()).unwrap_or(0),
                supplemental_groups: Vec::new(),
            })
        });
        let status = ContainerStatus {
            id: full_id.clone(),
            metadata: Some(metadata),
            state: state as i32,
            created_at,
            started_at,
            finished_at,
            exit_code: docker_state.exit_code.unwrap_or(0) as i32,
            image: Some(ImageSpec {
                image: image_name,
                ..Default::default()
            }),
            image_ref,
            reason: reason.to_string(),
            message: docker_state.error.clone().unwrap_or_default(),
            labels: cri_labels,
            annotations,
            mounts,
            log_path: docker_labels
                .get(labels::CONTAINER_LOG_PATH)
                .cloned()
                .unwrap_or_default(),
            resources: Some(ContainerResources {
                linux: Some(resources),
                windows: None,
            }),
            image_id,
            user: user.map(|linux| ContainerUser { linux: Some(linux) }),
        };
        let mut info = HashMap::new();
        if verbose {
            let sandbox_id = docker_labels
                .get(labels::SANDBOX_ID)
                .cloned()
                .unwrap_or_default();
            info.insert("pid".to_string(), pid.unwrap_or(0).to_string());
            info.insert("sandboxID".to_string(), sandbox_id);
            let detail = serde_json::json!({
                "pid": pid.unwrap_or(0),
                "runtime": host.runtime,
                "privileged": host.privileged,
                "pidMode": host.pid_mode,
                "networkMode": host.network_mode,
                "securityOpt": host.security_opt,
                "dockerLogPath": inspect.log_path,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        Ok(ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }

    pub async fn update_container_resources(
        &self,
        id: &str,
        resources: &LinuxContainerResources,
    ) -> Result<()> {
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        let mut host = bollard::models::HostConfig::default();
        let clamp = |v: i64| self.oom.clamp(v);
        translate::container::apply_resources(&mut host, resources, &clamp);
        let body = ContainerUpdateBody {
            memory: host.memory,
            memory_swap: host.memory_swap,
            cpu_shares: host.cpu_shares,
            cpu_period: host.cpu_period,
            cpu_quota: host.cpu_quota,
            cpuset_cpus: host.cpuset_cpus,
            cpuset_mems: host.cpuset_mems,
            ..Default::default()
        };
        self.docker
            .update_container(&full_id, body)
            .await
            .map_err(Error::docker(format!("updating container {full_id}")))?;
        self.store.fetch(&full_id).await?;
        if let Some(extra) = translate::container::ExtraResources::of(resources) {
            self.apply_extra_resources(
                &full_id,
                &serde_json::to_string(&extra).expect("serialisable"),
            )
            .await;
        }
        Ok(())
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
        let Ok(inspect) = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        else {
            return;
        };
        let Some(pid) = running_pid(&inspect) else {
            return;
        };
        let cgroup = match crate::cgroups::ContainerCgroup::of_process(
            pid,
            self.stats.mounts(),
            self.facts.cgroup_v2,
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
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!(
                "{}={}",
                labels::CONTAINER_TYPE,
                labels::CONTAINER_TYPE_CONTAINER
            )],
        )]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Error::docker("listing containers"))?;
        for c in containers {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            if c.state == Some(ContainerSummaryStateEnum::CREATED)
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
