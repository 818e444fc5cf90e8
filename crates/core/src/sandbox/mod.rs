//! Pod sandboxes: a pause container holding the pod's namespaces, its
//! cri-dockerd checkpoint, and its CNI attachment.

mod network_state;
mod reconcile;
mod resources;
mod status;

pub(crate) use network_state::NetworkState;
pub(crate) use resources::PodResources;

use std::sync::Arc;

use bollard::query_parameters::{CreateContainerOptions, StopContainerOptions};
use cri_dockerd_api::v1::{PodSandboxConfig, PodSandboxMetadata};
use cri_dockerd_cni::{PodRef, PortMapping as CniPortMapping};
use cri_dockerd_engine::model::ContainerInspect;
use tracing::Instrument;

use crate::checkpoint::PodSandboxCheckpoint;
use crate::docker_cri::DockerCri;
use crate::error::{
    Error, Result, is_docker_conflict, is_docker_not_found, is_docker_not_modified,
};
use crate::labels;
use crate::naming;
use crate::store::{Found, Freshness, Kind, Record, running_pid};
use crate::translate::{self};

/// Where the time of a RunPodSandbox went, step by step, for its log line.
struct StepTimer {
    last: std::time::Instant,
    steps: Vec<(&'static str, std::time::Duration)>,
}

impl Default for StepTimer {
    fn default() -> Self {
        Self {
            last: std::time::Instant::now(),
            steps: Vec::new(),
        }
    }
}

impl StepTimer {
    fn done(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StepTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: std::time::Duration = self.steps.iter().map(|(_, d)| *d).sum();
        write!(f, "total {:.1}ms", total.as_secs_f64() * 1e3)?;
        for (step, d) in &self.steps {
            write!(f, ", {step} {:.1}ms", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// How long the pause container gets to exit on StopPodSandbox.
const SANDBOX_STOP_TIMEOUT_SECS: i32 = 10;

/// What is known about a sandbox, from Docker or from its checkpoint.
pub(crate) struct SandboxDetails {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub host_network: bool,
    /// The pause process, while it runs.
    pub pid: Option<i64>,
    /// The pause container, while it exists.
    pub record: Option<Arc<Record>>,
    pub checkpoint: Option<PodSandboxCheckpoint>,
}

impl SandboxDetails {
    pub fn inspect(&self) -> Option<&ContainerInspect> {
        self.record.as_ref().map(|r| &r.inspect)
    }
}

fn cni_ports(checkpoint: Option<&PodSandboxCheckpoint>) -> Vec<CniPortMapping> {
    checkpoint
        .and_then(|c| c.data().port_mappings)
        .unwrap_or_default()
        .into_iter()
        .map(|pm| CniPortMapping {
            host_port: pm.host_port.unwrap_or(0),
            container_port: pm.container_port.unwrap_or(0),
            protocol: pm.protocol.unwrap_or_else(|| "tcp".into()),
            host_ip: pm.host_ip,
        })
        .collect()
}

impl DockerCri {
    fn read_host_file(path: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    /// One of our sandboxes by id (or unique prefix).
    pub(crate) async fn sandbox_record(
        &self,
        id: &str,
        freshness: Freshness,
    ) -> Result<Option<Arc<Record>>> {
        let record = match freshness {
            Freshness::Stored => self.store.lookup(id).await?,
            Freshness::Current => self.store.fetch(id).await?,
        };
        Ok(record.filter(|r| r.kind == Kind::Sandbox))
    }

    /// The full id of one of our sandboxes for a stop or a remove; the id
    /// as given when Docker has no such container (a checkpoint may be all
    /// that is left). NotFound for a container of ours that is not a
    /// sandbox, or one that is not ours: those are never touched.
    async fn own_sandbox_id(&self, id: &str) -> Result<String> {
        match self.store.find(id).await? {
            Found::Ours(record) if record.kind == Kind::Sandbox => Ok(record.id.clone()),
            Found::Gone => Ok(id.to_string()),
            Found::Ours(_) | Found::NotOurs => {
                Err(Error::NotFound(format!("pod sandbox {id} not found")))
            }
        }
    }

    /// The sandbox from Docker, or from its checkpoint when the pause
    /// container is gone. `None` when neither knows it.
    pub(crate) async fn sandbox_details(
        &self,
        id: &str,
        freshness: Freshness,
    ) -> Result<Option<SandboxDetails>> {
        if let Some(record) = self.sandbox_record(id, freshness).await? {
            let metadata = naming::parse_sandbox_name(&record.name).ok_or_else(|| {
                Error::Internal(format!(
                    "sandbox {} has an unparsable name {:?}",
                    record.id, record.name
                ))
            })?;
            let host_network = record.host_network();
            let checkpoint = self.read_checkpoint(&record.id);
            return Ok(Some(SandboxDetails {
                id: record.id.clone(),
                metadata,
                host_network,
                pid: record.running_pid(),
                record: Some(record),
                checkpoint,
            }));
        }
        Ok(self.read_checkpoint(id).map(|checkpoint| SandboxDetails {
            id: id.to_string(),
            metadata: PodSandboxMetadata {
                name: checkpoint.name.clone(),
                namespace: checkpoint.namespace.clone(),
                uid: String::new(),
                attempt: 0,
            },
            host_network: checkpoint.data().host_network,
            pid: None,
            record: None,
            checkpoint: Some(checkpoint),
        }))
    }

    /// A checkpoint that cannot be read is reported once and treated as
    /// absent: it must never make a call fail.
    fn read_checkpoint(&self, id: &str) -> Option<PodSandboxCheckpoint> {
        self.checkpoints.read_or_report(id)
    }

    /// Found running without its pod network at start (see `reconcile`).
    pub(crate) fn lacks_network(&self, id: &str) -> bool {
        self.networks.is_missing(id)
    }

    /// Makes and starts the pod's sandbox; whatever fails, or is still
    /// under way when `deadline` passes (the client gave up), is undone:
    /// network, container, checkpoint.
    pub async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<String> {
        let metadata = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("config.metadata is required".into()))?;
        for (field, value) in [
            ("name", &metadata.name),
            ("namespace", &metadata.namespace),
            ("uid", &metadata.uid),
        ] {
            if value.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "metadata.{field} is required"
                )));
            }
            if value.contains('_') {
                return Err(Error::InvalidArgument(format!(
                    "metadata.{field} {value:?} must not contain '_' (it separates the parts of Docker names)"
                )));
            }
        }
        let runtime = if runtime_handler.is_empty() {
            None
        } else if self.facts().has_runtime(runtime_handler) {
            Some(runtime_handler)
        } else {
            return Err(Error::InvalidArgument(format!(
                "runtime handler {runtime_handler:?} is not a Docker runtime (known: {})",
                self.facts()
                    .runtimes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let name = naming::sandbox_name(metadata);
        let _pod_lock = self.locks.lock(&format!("run:{name}")).await;

        let mut steps = StepTimer::default();
        self.ensure_image(&self.settings.pod_infra_image)
            .instrument(tracing::debug_span!("image"))
            .await?;
        steps.done("image");
        let read_file = Self::read_host_file;
        let options = translate::sandbox::SandboxOptions {
            image: &self.settings.pod_infra_image,
            network_plugin: &self.settings.network_plugin,
            cgroup_driver: self.facts().cgroup_driver,
            oom_score_adj: self.oom.clamp(translate::sandbox::SANDBOX_OOM_SCORE_ADJ),
            runtime,
            read_file: &read_file,
        };
        let (name, body) = translate::sandbox::create_body(config, &options)?;
        let id = self
            .create_container_named(&name, body)
            .instrument(tracing::debug_span!("create"))
            .await?;
        steps.done("create");
        let span = tracing::info_span!("sandbox", pod_sandbox_id = %id, pod = %format!("{}/{}", metadata.namespace, metadata.name));
        let _id_lock = self.locks.lock(&id).await;
        let start = self
            .start_sandbox(&id, config, &mut steps)
            .instrument(span.clone());
        let started = match deadline {
            // Dropping the start at the deadline kills a plugin still
            // running (its process is killed on drop).
            Some(deadline) => tokio::time::timeout_at(deadline, start)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::DeadlineExceeded(format!(
                        "the client's deadline passed while the sandbox was starting (done: {steps})"
                    )))
                }),
            None => start.await,
        };
        match started {
            Ok(()) => {
                span.in_scope(|| tracing::info!(steps = %steps, "sandbox ready"));
                Ok(id)
            }
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "sandbox failed to start; undoing"));
                self.discard_sandbox(&id).instrument(span).await;
                Err(e)
            }
        }
    }

    /// Creates a container; on a name conflict with a dead container of the
    /// same name, removes it and tries once more (cri-dockerd does the same).
    pub(crate) async fn create_container_named(
        &self,
        name: &str,
        body: bollard::models::ContainerCreateBody,
    ) -> Result<String> {
        let options = || {
            Some(CreateContainerOptions {
                name: Some(name.to_string()),
                ..Default::default()
            })
        };
        match self
            .engine
            .api()
            .create_container(options(), body.clone())
            .await
        {
            Ok(created) => return Ok(created.id),
            Err(e) if is_docker_conflict(&e) => {
                let existing =
                    self.engine
                        .inspect_container(name, false)
                        .await
                        .map_err(Error::docker(format!(
                            "inspecting conflicting container {name}"
                        )))?;
                if running_pid(&existing).is_some() {
                    return Err(Error::AlreadyExists(format!(
                        "container {name} already exists and is running ({})",
                        existing.id.unwrap_or_default()
                    )));
                }
                tracing::info!(name, "removing a dead container whose name is taken");
                self.remove_docker_container(name).await?;
            }
            Err(e) => return Err(Error::docker(format!("creating container {name}"))(e)),
        }
        self.engine
            .api()
            .create_container(options(), body)
            .await
            .map(|c| c.id)
            .map_err(Error::docker(format!("creating container {name}")))
    }

    async fn start_sandbox(
        &self,
        id: &str,
        config: &PodSandboxConfig,
        steps: &mut StepTimer,
    ) -> Result<()> {
        let metadata = config.metadata.as_ref().expect("validated");
        let checkpoint = PodSandboxCheckpoint::new(
            &metadata.namespace,
            &metadata.name,
            translate::sandbox::checkpoint_data(config),
        );
        self.checkpoints.write(id, &checkpoint)?;
        steps.done("checkpoint");
        self.engine
            .api()
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .instrument(tracing::debug_span!("start"))
            .await
            .map_err(Error::docker_start("starting the sandbox container"))?;
        steps.done("start");
        // This inspect also refreshes the store: the next call sees the
        // sandbox running without asking Docker again.
        let seq = self.store.ticket();
        let inspect = self
            .engine
            .inspect_container(id, false)
            .await
            .map_err(Error::docker("inspecting the sandbox container"))?;
        self.store.put(seq, inspect.clone());
        if let Some(dns) = &config.dns_config {
            self.rewrite_resolv_conf(&inspect, dns)?;
        }
        steps.done("inspect");
        if translate::sandbox::is_host_network(config) {
            return Ok(());
        }
        let Some(cni) = &self.cni else {
            return Ok(());
        };
        let pid = running_pid(&inspect).ok_or_else(|| {
            Error::Internal("the sandbox container is not running after start".into())
        })?;
        let pod = PodRef {
            namespace: metadata.namespace.clone(),
            name: metadata.name.clone(),
            uid: metadata.uid.clone(),
            sandbox_id: id.to_string(),
        };
        let ports = cni_ports(Some(&checkpoint));
        self.networks.set_attached(id, true);
        let network = cni
            .setup(&pod, &format!("/proc/{pid}/ns/net"), &ports)
            .instrument(tracing::debug_span!("network"))
            .await?;
        steps.done("network");
        tracing::info!(network = %network.network_name, ips = ?network.ips, "pod network attached");
        Ok(())
    }

    /// Docker generated the pod's resolv.conf at start; cri-dockerd
    /// overwrites it in place (containers bind-mount that very file).
    fn rewrite_resolv_conf(
        &self,
        inspect: &ContainerInspect,
        dns: &cri_dockerd_api::v1::DnsConfig,
    ) -> Result<()> {
        let Some(content) =
            translate::sandbox::resolv_conf(&dns.servers, &dns.searches, &dns.options)
        else {
            return Ok(());
        };
        let path = inspect.resolv_conf_path.as_deref().unwrap_or_default();
        if path.is_empty() {
            return Err(Error::Internal(
                "Docker reported no resolv.conf path for the sandbox".into(),
            ));
        }
        std::fs::write(path, content).map_err(Error::io(format!(
            "rewriting {path} (is Docker's data root visible to cri-dockerd-rs?)"
        )))
    }

    /// Undoes a half-made sandbox: network, container, checkpoint.
    async fn discard_sandbox(&self, id: &str) {
        if self.networks.needs_teardown(id) && self.networks.setup_begun(id) {
            // setup() cleans up after itself; this covers a failure after it.
            if let (Some(cni), Ok(Some(details))) = (
                &self.cni,
                self.sandbox_details(id, Freshness::Current).await,
            ) {
                let pod = PodRef {
                    namespace: details.metadata.namespace,
                    name: details.metadata.name,
                    uid: details.metadata.uid,
                    sandbox_id: id.to_string(),
                };
                let netns = details.pid.map(|pid| format!("/proc/{pid}/ns/net"));
                if let Err(e) = cni
                    .teardown(
                        &pod,
                        netns.as_deref(),
                        &cni_ports(details.checkpoint.as_ref()),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "network cleanup failed");
                }
            }
        }
        if let Err(e) = self.remove_docker_container(id).await {
            tracing::warn!(error = %e, "removing the failed sandbox container failed");
        }
        if let Err(e) = self.checkpoints.remove(id) {
            tracing::warn!(error = %e, "removing the failed sandbox's checkpoint failed");
        }
        self.networks.forget(id);
        self.store.forget(id);
    }

    /// Ids of the containers of a pod (not the pause container).
    pub(crate) async fn pod_container_ids(
        &self,
        sandbox_id: &str,
        running_only: bool,
    ) -> Result<Vec<String>> {
        let filters = [(
            "label",
            vec![
                format!(
                    "{}={}",
                    labels::CONTAINER_TYPE,
                    labels::CONTAINER_TYPE_CONTAINER
                ),
                format!("{}={sandbox_id}", labels::SANDBOX_ID),
            ],
        )];
        let containers = self
            .engine
            .list_containers(!running_only, &filters)
            .await
            .map_err(Error::docker("listing the pod's containers"))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let resolved = self.own_sandbox_id(id).await?;
        let _lock = self.locks.lock(&resolved).await;
        let Some(details) = self.sandbox_details(&resolved, Freshness::Current).await? else {
            tracing::info!(
                pod_sandbox_id = id,
                "neither a sandbox container nor a checkpoint exists; nothing to stop"
            );
            return Ok(());
        };
        let span = tracing::info_span!("sandbox", pod_sandbox_id = %details.id);
        async {
            // The kubelet has given the containers their grace period
            // already; whatever still runs is killed, as containerd does.
            let running = self.pod_container_ids(&details.id, true).await?;
            futures::future::try_join_all(running.iter().map(|c| self.stop_container(c, 0)))
                .await?;
            self.teardown_network(&details).await?;
            if details.record.is_some() {
                match self
                    .engine
                    .api()
                    .stop_container(
                        &details.id,
                        Some(StopContainerOptions {
                            t: Some(SANDBOX_STOP_TIMEOUT_SECS),
                            ..Default::default()
                        }),
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(e) if is_docker_not_modified(&e) => {}
                    Err(e) if is_docker_not_found(&e) => {
                        self.checkpoints.remove(&details.id)?;
                    }
                    Err(e) => return Err(Error::docker("stopping the sandbox container")(e)),
                }
            } else {
                // Only the checkpoint was left; its network is gone now.
                self.checkpoints.remove(&details.id)?;
            }
            self.store.fetch(&details.id).await?;
            self.networks.stopped(&details.id);
            tracing::info!("sandbox stopped");
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn teardown_network(&self, details: &SandboxDetails) -> Result<()> {
        if details.host_network || !self.networks.needs_teardown(&details.id) {
            return Ok(());
        }
        let Some(cni) = &self.cni else {
            return Ok(());
        };
        let pod = PodRef {
            namespace: details.metadata.namespace.clone(),
            name: details.metadata.name.clone(),
            uid: details.metadata.uid.clone(),
            sandbox_id: details.id.clone(),
        };
        let netns = details.pid.map(|pid| format!("/proc/{pid}/ns/net"));
        cni.teardown(
            &pod,
            netns.as_deref(),
            &cni_ports(details.checkpoint.as_ref()),
        )
        .await?;
        self.networks.set_attached(&details.id, false);
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let resolved = self.own_sandbox_id(id).await?;
        let _lock = self.locks.lock(&resolved).await;
        let span = tracing::info_span!("sandbox", pod_sandbox_id = %resolved);
        async {
            for container in self.pod_container_ids(&resolved, false).await? {
                self.remove_container(&container).await?;
            }
            if let Some(details) = self.sandbox_details(&resolved, Freshness::Current).await? {
                self.teardown_network(&details).await?;
            }
            self.remove_docker_container(&resolved).await?;
            self.checkpoints.remove(&resolved)?;
            self.networks.forget(&resolved);
            self.store.forget(&resolved);
            self.pod_resources.forget(&resolved);
            tracing::info!("sandbox removed");
            Ok(())
        }
        .instrument(span)
        .await
    }
}
