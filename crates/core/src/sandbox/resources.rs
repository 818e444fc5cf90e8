//! UpdatePodSandboxResources: the kubelet resizes a pod in place (on by
//! default since 1.33) and, once it has changed the pod's cgroup, tells the
//! runtime. Docker has no pod cgroup of its own to change; what it can
//! apply to the pause container (CPU shares, quota and period, cpusets,
//! memory) is applied, and the pod-level figures are kept for
//! PodSandboxStatus's verbose info. The rest (hugepages, unified keys) is
//! the kubelet's pod cgroup already, and the call answers OK for it.
//!
//! From Kubernetes 1.36 an error here (other than Unimplemented) fails the
//! pod's resize, though the kubelet has already written the pod's cgroup,
//! where the limit really holds. So only a real failure is an error: the
//! sandbox gone, Docker unreachable. Docker refusing a figure for the pause
//! container (a memory limit under its 6 MB minimum, say) leaves the pause
//! container as it was, is logged, and is shown in the verbose status.

use parking_lot::Mutex;
use std::collections::HashMap;

use cri_dockerd_api::v1::LinuxContainerResources;

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result};
use crate::store::{Freshness, Phase};
use crate::translate;

/// The last pod-level resources (and overhead) the kubelet sent, per
/// sandbox, and why Docker did not apply them to the pause container, if
/// it did not.
#[derive(Default)]
pub(crate) struct PodResources {
    by_sandbox: Mutex<HashMap<String, PodResourcesEntry>>,
}

#[derive(Debug, Clone)]
pub(crate) struct PodResourcesEntry {
    pub resources: LinuxContainerResources,
    pub overhead: LinuxContainerResources,
    pub not_applied: Option<String>,
}

impl PodResources {
    pub fn get(&self, id: &str) -> Option<PodResourcesEntry> {
        self.by_sandbox.lock().get(id).cloned()
    }

    fn set(&self, id: &str, entry: PodResourcesEntry) {
        self.by_sandbox.lock().insert(id.to_string(), entry);
    }

    pub fn forget(&self, id: &str) {
        self.by_sandbox.lock().remove(id);
    }
}

impl DockerCri {
    pub async fn update_pod_sandbox_resources(
        &self,
        id: &str,
        overhead: Option<&LinuxContainerResources>,
        resources: Option<&LinuxContainerResources>,
    ) -> Result<()> {
        let record = self
            .sandbox_record(id, Freshness::Current)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} not found")))?;
        let resources = resources.cloned().unwrap_or_default();
        let mut not_applied = None;
        if record.phase == Phase::Running {
            let updated = self
                .engine
                .api()
                .update_container(&record.id, translate::container::update_body(&resources))
                .await;
            match updated {
                Ok(_) => {}
                Err(e) if docker_refused_the_values(&e) => {
                    tracing::warn!(
                        pod_sandbox_id = %record.id,
                        error = %e,
                        "Docker did not apply the pod's resources to its pause container; the kubelet's pod cgroup holds them"
                    );
                    not_applied = Some(e.to_string());
                }
                Err(e) => {
                    return Err(Error::docker(format!(
                        "applying pod resources to the sandbox container {}",
                        record.id
                    ))(e));
                }
            }
            self.store.fetch(&record.id).await?;
        }
        self.pod_resources.set(
            &record.id,
            PodResourcesEntry {
                resources,
                overhead: overhead.cloned().unwrap_or_default(),
                not_applied,
            },
        );
        tracing::info!(pod_sandbox_id = %record.id, "pod resources updated");
        Ok(())
    }
}

/// Docker answered, and refused what it was asked (not: the container is
/// gone, or Docker is not there).
fn docker_refused_the_values(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError { status_code, .. }
            if *status_code == 400 || *status_code == 409 || *status_code == 500
    )
}
