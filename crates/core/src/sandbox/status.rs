//! What a sandbox is, as the CRI reports it: ListPodSandbox and
//! PodSandboxStatus, served from the node state store, the checkpoints and
//! the CNI result cache.

use std::collections::HashMap;

use cri_dockerd_api::v1::{
    ContainerStatus, LinuxPodSandboxStatus, Namespace, NamespaceMode, NamespaceOption, PodIp,
    PodSandbox, PodSandboxFilter, PodSandboxMetadata, PodSandboxNetworkStatus, PodSandboxState,
    PodSandboxStatus, PodSandboxStatusResponse,
};

use super::{Freshness, SandboxDetails};
use crate::config::NetworkPlugin;
use crate::docker_cri::DockerCri;
use crate::error::{Error, Result};
use crate::labels;
use crate::naming;
use crate::store::{Kind, Phase, id_matches};
use crate::time::rfc3339_to_ns;
use crate::translate::NAMESPACE_MODE_HOST;

impl DockerCri {
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
            .filter(|r| *r != self.facts().default_runtime)
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
                "podResources": self.pod_resources.get(&details.id).map(|entry| serde_json::json!({
                    "cpuShares": entry.resources.cpu_shares,
                    "cpuQuota": entry.resources.cpu_quota,
                    "cpuPeriod": entry.resources.cpu_period,
                    "cpusetCpus": entry.resources.cpuset_cpus,
                    "cpusetMems": entry.resources.cpuset_mems,
                    "memoryLimitInBytes": entry.resources.memory_limit_in_bytes,
                    "overheadMemoryLimitInBytes": entry.overhead.memory_limit_in_bytes,
                    "overheadCpuShares": entry.overhead.cpu_shares,
                    "notAppliedToPauseContainer": entry.not_applied,
                })),
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
