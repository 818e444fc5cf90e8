//! What a container is, as the CRI reports it: ListContainers and
//! ContainerStatus, served from the node state store.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use cri_dockerd_api::v1::{
    Container, ContainerFilter, ContainerResources, ContainerState, ContainerStatus,
    ContainerStatusResponse, ContainerUser, ImageSpec, LinuxContainerResources, LinuxContainerUser,
    Mount,
};
use cri_dockerd_engine::model::{
    ContainerInspect, ContainerStatus as DockerStatus, MountType as DockerMountType,
};

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result};
use crate::labels;
use crate::naming;
use crate::store::Freshness;
use crate::store::{Kind, Phase, Record, id_matches};
use crate::time::rfc3339_to_ns;

/// How long ContainerStatus waits for the log copy of an exited container.
const LOG_DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Docker's image ID prefixes in the CRI's image_ref, as cri-dockerd writes them.
const DOCKER_IMAGE_ID_PREFIX: &str = "docker://";
const DOCKER_PULLABLE_IMAGE_ID_PREFIX: &str = "docker-pullable://";
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
fn cri_state(inspect: &ContainerInspect) -> (ContainerState, &'static str) {
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
    } else if state.status == Some(DockerStatus::Created) {
        (ContainerState::ContainerCreated, "")
    } else {
        (ContainerState::ContainerUnknown, "")
    }
}

/// The CRI's container state for a phase, as cri-dockerd maps `docker ps`.
pub(crate) fn cri_container_state(phase: Phase) -> ContainerState {
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
/// The container's mounts as the CRI reports them. An image volume is
/// reported with its image and sub-path, as requested (Docker's own record
/// of it names a directory of its image store), and with `image_ref`, the
/// reference the kubelet shows as the volume's image digest.
fn cri_mounts(inspect: &ContainerInspect, image_ref_of: impl Fn(&str) -> String) -> Vec<Mount> {
    let requested = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.mounts.as_deref())
        .unwrap_or_default();
    let named: HashMap<String, crate::translate::container::ImageVolume> = inspect
        .labels()
        .and_then(|l| l.get(labels::IMAGE_VOLUMES))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    inspect
        .mounts
        .iter()
        .flatten()
        .map(|m| {
            let container_path = m.destination.clone().unwrap_or_default();
            let propagation = crate::translate::container::cri_propagation(
                m.propagation.as_deref().unwrap_or_default(),
            ) as i32;
            if m.typ == Some(DockerMountType::Image) {
                let asked = requested
                    .iter()
                    .find(|r| r.target.as_deref() == Some(container_path.as_str()));
                let volume = named.get(&container_path);
                let image = volume
                    .map(|v| v.image.clone())
                    .or_else(|| asked.and_then(|r| r.source.clone()))
                    .or_else(|| m.name.clone())
                    .unwrap_or_default();
                let image_ref = volume
                    .filter(|v| !v.id.is_empty())
                    .map(|v| image_ref_of(&v.id))
                    .unwrap_or_default();
                return Mount {
                    container_path,
                    readonly: true,
                    propagation,
                    image: Some(ImageSpec {
                        image,
                        image_ref,
                        ..Default::default()
                    }),
                    image_sub_path: asked
                        .and_then(|r| r.image_options.as_ref())
                        .and_then(|o| o.subpath.clone())
                        .unwrap_or_default(),
                    ..Default::default()
                };
            }
            Mount {
                propagation,
                host_path: m.source.clone().unwrap_or_default(),
                container_path,
                readonly: m.rw == Some(false),
                ..Default::default()
            }
        })
        .collect()
}

/// cri-dockerd's image reference: the first repo digest, else the ID.
fn pullable_image_ref(image_id: &str, digests: &[String]) -> String {
    match digests.first() {
        Some(digest) => format!("{DOCKER_PULLABLE_IMAGE_ID_PREFIX}{digest}"),
        None => format!("{DOCKER_IMAGE_ID_PREFIX}{image_id}"),
    }
}

/// The image IDs of a container's image volumes, from its label.
fn image_volume_ids(inspect: &ContainerInspect) -> Vec<String> {
    inspect
        .labels()
        .and_then(|l| l.get(labels::IMAGE_VOLUMES))
        .and_then(|v| {
            serde_json::from_str::<HashMap<String, crate::translate::container::ImageVolume>>(v)
                .ok()
        })
        .map(|volumes| {
            volumes
                .into_values()
                .map(|v| v.id)
                .filter(|id| !id.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl DockerCri {
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
            && let Some((seen, tags, digests)) = self.image_names.cache.lock().get(image_id)
            && *seen == generation
        {
            return (tags.clone(), digests.clone());
        }
        let (tags, digests) = match self.engine.inspect_image(image_id).await {
            Ok(i) => (
                i.repo_tags.unwrap_or_default(),
                i.repo_digests.unwrap_or_default(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let mut cache = self.image_names.cache.lock();
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
                .was_oom_killed(&self.engine, &full_id, inspect)
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
        let wanted = crate::image::reference::normalize(&created_with);
        let image_name = if wanted.is_some()
            && tags
                .iter()
                .any(|t| crate::image::reference::normalize(t) == wanted)
        {
            created_with
        } else {
            tags.first().cloned().unwrap_or(created_with)
        };
        let image_ref = pullable_image_ref(&image_id, &digests);
        let mut volume_refs = HashMap::new();
        for volume_id in image_volume_ids(inspect) {
            let (_, digests) = self.image_names(&volume_id).await;
            volume_refs.insert(volume_id.clone(), pullable_image_ref(&volume_id, &digests));
        }
        let mounts = cri_mounts(inspect, |id| {
            volume_refs.get(id).cloned().unwrap_or_default()
        });
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
            // Docker keeps the config's StopSignal, else the image's.
            stop_signal: crate::translate::signals::cri_signal(
                config.stop_signal.as_deref().unwrap_or_default(),
            ) as i32,
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
}
