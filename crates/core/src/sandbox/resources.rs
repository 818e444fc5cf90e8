//! UpdatePodSandboxResources: the kubelet resizes a pod in place (on by
//! default since 1.33) and, once it has changed the pod's cgroup, tells the
//! runtime. Docker has no pod cgroup of its own to change; what it can
//! apply to the pause container (CPU shares, quota and period, cpusets,
//! memory) is applied, and the pod-level figures are kept for
//! PodSandboxStatus's verbose info. The rest (hugepages, unified keys) is
//! the kubelet's pod cgroup already, and the call answers OK for it.

use parking_lot::Mutex;
use std::collections::HashMap;

use cri_dockerd_api::v1::LinuxContainerResources;

use crate::docker_cri::DockerCri;
use crate::error::{Error, Result};
use crate::store::{Freshness, Phase};
use crate::translate;

/// The last pod-level resources (and overhead) the kubelet sent, per sandbox.
#[derive(Default)]
pub(crate) struct PodResources {
    by_sandbox: Mutex<HashMap<String, (LinuxContainerResources, LinuxContainerResources)>>,
}

impl PodResources {
    pub fn get(&self, id: &str) -> Option<(LinuxContainerResources, LinuxContainerResources)> {
        self.by_sandbox.lock().get(id).cloned()
    }

    fn set(&self, id: &str, resources: LinuxContainerResources, overhead: LinuxContainerResources) {
        self.by_sandbox
            .lock()
            .insert(id.to_string(), (resources, overhead));
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
        if record.phase == Phase::Running {
            self.engine
                .api()
                .update_container(&record.id, translate::container::update_body(&resources))
                .await
                .map_err(Error::docker(format!(
                    "applying pod resources to the sandbox container {}",
                    record.id
                )))?;
            self.store.fetch(&record.id).await?;
        }
        self.pod_resources
            .set(&record.id, resources, overhead.cloned().unwrap_or_default());
        tracing::info!(pod_sandbox_id = %record.id, "pod resources updated");
        Ok(())
    }
}
