//! Pod sandboxes: a pause container holding the pod's namespaces, its
//! cri-dockerd checkpoint, and its CNI attachment.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use cri_dockerd_cni::{PodRef, PortMapping as CniPortMapping};
use k8s_cri::v1::{
    ContainerStatus, LinuxPodSandboxStatus, Namespace, NamespaceMode, NamespaceOption, PodIp,
    PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxNetworkStatus,
    PodSandboxState, PodSandboxStatus, PodSandboxStatusResponse,
};
use tracing::Instrument;

use crate::checkpoint::PodSandboxCheckpoint;
use crate::config::NetworkPlugin;
use crate::error::{
    Error, Result, is_docker_conflict, is_docker_not_found, is_docker_not_modified,
};
use crate::labels;
use crate::naming;
use crate::runtime::Runtime;
use crate::store::{Kind, Phase, Record, id_matches};
use crate::time::rfc3339_to_ns;
use crate::translate::{self, NAMESPACE_MODE_HOST};

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
    pub fn inspect(&self) -> Option<&ContainerInspectResponse> {
        self.record.as_ref().map(|r| &r.inspect)
    }
}

/// Whether a lookup may answer from the store (reads) or must ask Docker
/// (writes, which act on what is there now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Stored,
    Current,
}

pub(crate) fn running_pid(inspect: &ContainerInspectResponse) -> Option<i64> {
    let state = inspect.state.as_ref()?;
    (state.running == Some(true))
        .then_some(state.pid?)
        .filter(|p| *p > 0)
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

impl Runtime {
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
            let host_network = record
                .inspect
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref())
                == Some(NAMESPACE_MODE_HOST);
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
        match self.checkpoints.read(id) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                if self
                    .bad_checkpoints
                    .lock()
                    .expect("bad checkpoints")
                    .insert(id.to_string())
                {
                    tracing::error!(sandbox_id = id, error = %e, "skipping unreadable sandbox checkpoint");
                }
                None
            }
        }
    }

    /// Found running without its pod network at start (see `reconcile`).
    fn lacks_network(&self, id: &str) -> bool {
        self.network_missing
            .lock()
            .expect("network missing")
            .contains(id)
    }

    fn network_needs_teardown(&self, id: &str) -> bool {
        self.network_ready.lock().expect("network state").get(id) != Some(&false)
    }

    fn set_network_ready(&self, id: &str, ready: bool) {
        self.network_ready
            .lock()
            .expect("network state")
            .insert(id.to_string(), ready);
    }

    pub async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
        runtime_handler: &str,
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
        } else if self.facts.runtimes.contains(runtime_handler) {
            Some(runtime_handler)
        } else {
            return Err(Error::InvalidArgument(format!(
                "runtime handler {runtime_handler:?} is not a Docker runtime (known: {})",
                self.facts
                    .runtimes
                    .iter()
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
            cgroup_driver: self.facts.cgroup_driver,
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
        match self
            .start_sandbox(&id, config, &mut steps)
            .instrument(span.clone())
            .await
        {
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
        match self.docker.create_container(options(), body.clone()).await {
            Ok(created) => return Ok(created.id),
            Err(e) if is_docker_conflict(&e) => {
                let existing = self
                    .docker
                    .inspect_container(name, None::<InspectContainerOptions>)
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
                self.docker
                    .remove_container(
                        name,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await
                    .map_err(Error::docker(format!(
                        "removing conflicting container {name}"
                    )))?;
            }
            Err(e) => return Err(Error::docker(format!("creating container {name}"))(e)),
        }
        self.docker
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
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .instrument(tracing::debug_span!("start"))
            .await
            .map_err(Error::docker("starting the sandbox container"))?;
        steps.done("start");
        // This inspect also refreshes the store: the next call sees the
        // sandbox running without asking Docker again.
        let seq = self.store.ticket();
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
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
        self.set_network_ready(id, true);
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
        inspect: &ContainerInspectResponse,
        dns: &k8s_cri::v1::DnsConfig,
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
        if self.network_needs_teardown(id)
            && self
                .network_ready
                .lock()
                .expect("network state")
                .contains_key(id)
        {
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
        if let Err(e) = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
            && !is_docker_not_found(&e)
        {
            tracing::warn!(error = %e, "removing the failed sandbox container failed");
        }
        if let Err(e) = self.checkpoints.remove(id) {
            tracing::warn!(error = %e, "removing the failed sandbox's checkpoint failed");
        }
        self.network_ready.lock().expect("network state").remove(id);
        self.store.forget(id);
    }

    /// Ids of the containers of a pod (not the pause container).
    pub(crate) async fn pod_container_ids(
        &self,
        sandbox_id: &str,
        running_only: bool,
    ) -> Result<Vec<String>> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!(
                    "{}={}",
                    labels::CONTAINER_TYPE,
                    labels::CONTAINER_TYPE_CONTAINER
                ),
                format!("{}={sandbox_id}", labels::SANDBOX_ID),
            ],
        )]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: !running_only,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Error::docker("listing the pod's containers"))?;
        Ok(containers.into_iter().filter_map(|c| c.id).collect())
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let resolved = self
            .sandbox_record(id, Freshness::Current)
            .await?
            .map(|r| r.id.clone())
            .unwrap_or_else(|| id.to_string());
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
                    .docker
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
            self.network_missing
                .lock()
                .expect("network missing")
                .remove(&details.id);
            tracing::info!("sandbox stopped");
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn teardown_network(&self, details: &SandboxDetails) -> Result<()> {
        if details.host_network || !self.network_needs_teardown(&details.id) {
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
        self.set_network_ready(&details.id, false);
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let resolved = self
            .sandbox_record(id, Freshness::Current)
            .await?
            .map(|r| r.id.clone())
            .unwrap_or_else(|| id.to_string());
        let _lock = self.locks.lock(&resolved).await;
        let span = tracing::info_span!("sandbox", pod_sandbox_id = %resolved);
        async {
            for container in self.pod_container_ids(&resolved, false).await? {
                self.remove_container(&container).await?;
            }
            if let Some(details) = self.sandbox_details(&resolved, Freshness::Current).await? {
                self.teardown_network(&details).await?;
            }
            match self
                .docker
                .remove_container(
                    &resolved,
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
                Err(e) => return Err(Error::docker("removing the sandbox container")(e)),
            }
            self.checkpoints.remove(&resolved)?;
            self.network_ready
                .lock()
                .expect("network state")
                .remove(&resolved);
            self.bad_checkpoints
                .lock()
                .expect("bad checkpoints")
                .remove(&resolved);
            self.store.forget(&resolved);
            self.network_missing
                .lock()
                .expect("network missing")
                .remove(&resolved);
            tracing::info!("sandbox removed");
            Ok(())
        }
        .instrument(span)
        .await
    }

    fn sandbox_ips(&self, details: &SandboxDetails) -> Vec<String> {
        if details.host_network || details.pid.is_none() {
            return Vec::new();
        }
        match (&self.settings.network_plugin, &self.cni) {
            (NetworkPlugin::Cni, Some(cni)) => cni
                .cached_network(&details.id)
                .map(|n| n.ips.iter().map(|ip| ip.to_string()).collect())
                .unwrap_or_default(),
            _ => details
                .inspect()
                .and_then(|i| i.network_settings.as_ref())
                .and_then(|n| n.networks.as_ref())
                .into_iter()
                .flat_map(|nets| nets.values())
                .filter_map(|n| n.ip_address.clone())
                .filter(|ip| !ip.is_empty())
                .collect(),
        }
    }

    /// The sandbox's status with the statuses of its containers and the
    /// time they were taken: a kubelet with the EventedPLEG gate takes
    /// them from here instead of asking each container (and refuses a zero
    /// timestamp).
    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse> {
        let timestamp = crate::time::system_now_ns();
        let details = self
            .sandbox_details(id, Freshness::Stored)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))?;
        let (status, info) = self.sandbox_status_of(&details, verbose);
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: self.pod_container_statuses(&details.id).await,
            timestamp,
        })
    }

    /// The statuses of a pod's containers, as the store has them.
    pub(crate) async fn pod_container_statuses(&self, sandbox_id: &str) -> Vec<ContainerStatus> {
        let mut statuses = Vec::new();
        for record in self.store.pod_containers(sandbox_id) {
            match self.container_status_of(&record, false).await {
                Ok(response) => statuses.extend(response.status),
                Err(e) => {
                    tracing::debug!(container_id = %record.id, error = %e, "no status for a pod's container")
                }
            }
        }
        statuses
    }

    /// The CRI status of a sandbox, from what is known of it.
    pub(crate) fn sandbox_status_of(
        &self,
        details: &SandboxDetails,
        verbose: bool,
    ) -> (PodSandboxStatus, HashMap<String, String>) {
        let ips = self.sandbox_ips(details);
        let (state, created_at, docker_labels, host) = match details.inspect() {
            Some(inspect) => (
                if details.pid.is_some() && !self.lacks_network(&details.id) {
                    PodSandboxState::SandboxReady
                } else {
                    PodSandboxState::SandboxNotready
                },
                rfc3339_to_ns(inspect.created.as_deref().unwrap_or_default()),
                inspect
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default(),
                inspect.host_config.clone().unwrap_or_default(),
            ),
            None => (
                PodSandboxState::SandboxNotready,
                0,
                HashMap::new(),
                Default::default(),
            ),
        };
        let (cri_labels, annotations) = labels::extract_labels(&docker_labels);
        let mode = |value: Option<&str>, host_mode: NamespaceMode, otherwise: NamespaceMode| {
            if value == Some(NAMESPACE_MODE_HOST) {
                host_mode as i32
            } else {
                otherwise as i32
            }
        };
        let network_mode = if details.host_network {
            Some(NAMESPACE_MODE_HOST)
        } else {
            host.network_mode.as_deref()
        };
        let namespace_options = NamespaceOption {
            network: mode(network_mode, NamespaceMode::Node, NamespaceMode::Pod),
            pid: mode(
                host.pid_mode.as_deref(),
                NamespaceMode::Node,
                NamespaceMode::Container,
            ),
            ipc: mode(
                host.ipc_mode.as_deref(),
                NamespaceMode::Node,
                NamespaceMode::Pod,
            ),
            ..Default::default()
        };
        let runtime_handler = host
            .runtime
            .clone()
            .filter(|r| *r != self.facts.default_runtime)
            .unwrap_or_default();
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "pid": details.pid.unwrap_or(0),
                "image": details.inspect().and_then(|i| i.config.as_ref()).and_then(|c| c.image.clone()),
                "runtimeHandler": runtime_handler,
                "hostNetwork": details.host_network,
                "netns": details.pid.map(|pid| format!("/proc/{pid}/ns/net")),
                "cniNetwork": self.cni.as_ref().and_then(|c| c.cached_network(&details.id)).map(|n| n.network_name),
                "checkpoint": details.checkpoint.as_ref().map(|c| serde_json::json!({"name": c.name, "namespace": c.namespace, "data": c.data})),
                "sandboxOnlyInCheckpoint": details.record.is_none(),
            });
            info.insert("info".to_string(), detail.to_string());
        }
        let mut ips = ips.into_iter();
        let status = PodSandboxStatus {
            id: details.id.clone(),
            metadata: Some(details.metadata.clone()),
            state: state as i32,
            created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: ips.next().unwrap_or_default(),
                additional_ips: ips.map(|ip| PodIp { ip }).collect(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(namespace_options),
                }),
            }),
            labels: cri_labels,
            annotations,
            runtime_handler,
        };
        (status, info)
    }

    pub async fn list_pod_sandbox(
        &self,
        filter: Option<&PodSandboxFilter>,
    ) -> Result<Vec<PodSandbox>> {
        self.store.ensure_synced().await?;
        let empty = HashMap::new();
        let id_prefix = filter.map(|f| f.id.as_str()).unwrap_or("");
        let selector = filter.map(|f| &f.label_selector).unwrap_or(&empty);
        let wanted_ready = filter
            .and_then(|f| f.state.as_ref())
            .map(|s| s.state == PodSandboxState::SandboxReady as i32);
        // A sandbox known only by its checkpoint has no labels and is never
        // ready. Checkpoints first: a sandbox being created right now must
        // not show up as checkpoint-only.
        let checkpoint_ids = if selector.is_empty() && wanted_ready != Some(true) {
            self.checkpoints.list()?
        } else {
            Vec::new()
        };
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for record in self.store.all(Kind::Sandbox) {
            let Some(metadata) = naming::parse_sandbox_name(&record.name) else {
                tracing::debug!(
                    id = record.id,
                    "skipping a sandbox-labelled container with a foreign name"
                );
                continue;
            };
            seen.insert(record.id.clone());
            let ready = record.phase == Phase::Running && !self.lacks_network(&record.id);
            if !id_matches(&record.id, id_prefix)
                || wanted_ready.is_some_and(|w| w != ready)
                || !record.matches_labels(selector)
            {
                continue;
            }
            let (cri_labels, annotations) = labels::extract_labels(record.labels());
            items.push(PodSandbox {
                id: record.id.clone(),
                metadata: Some(metadata),
                state: if ready {
                    PodSandboxState::SandboxReady
                } else {
                    PodSandboxState::SandboxNotready
                } as i32,
                // Whole seconds, as Docker's list gives them (and cri-dockerd).
                created_at: record.created_seconds_ns(),
                labels: cri_labels,
                annotations,
                runtime_handler: String::new(),
            });
        }
        for id in checkpoint_ids {
            if seen.contains(&id) || !id.starts_with(id_prefix) {
                continue;
            }
            let Some(checkpoint) = self.read_checkpoint(&id) else {
                continue;
            };
            items.push(PodSandbox {
                id,
                metadata: Some(PodSandboxMetadata {
                    name: checkpoint.name,
                    namespace: checkpoint.namespace,
                    uid: String::new(),
                    attempt: 0,
                }),
                state: PodSandboxState::SandboxNotready as i32,
                ..Default::default()
            });
        }
        Ok(items)
    }
}
