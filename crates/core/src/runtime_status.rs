//! Version, Status, RuntimeConfig, UpdateRuntimeConfig.

use std::collections::HashMap;

use cri_dockerd_api::v1::{
    CgroupDriver as CriCgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition,
    RuntimeConfigResponse, RuntimeHandler, RuntimeStatus, StatusResponse, VersionResponse,
};

use crate::config::NetworkPlugin;
use crate::docker_cri::DockerCri;
use crate::error::Result;
use crate::facts::CgroupDriver;

pub const RUNTIME_NAME: &str = "docker";
/// The kubelet's runtime API version string, as cri-dockerd reports it.
pub const KUBE_API_VERSION: &str = "0.1.0";
pub const CRI_VERSION: &str = "v1";

impl DockerCri {
    pub async fn version(&self) -> Result<VersionResponse> {
        Ok(VersionResponse {
            version: KUBE_API_VERSION.to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: self.docker_version().await?,
            runtime_api_version: CRI_VERSION.to_string(),
        })
    }

    pub async fn status(&self, verbose: bool) -> Result<StatusResponse> {
        let mut runtime_ready = RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            ..Default::default()
        };
        if let Err(e) = self.engine.ping().await {
            runtime_ready.status = false;
            runtime_ready.reason = "DockerDaemonNotReady".into();
            runtime_ready.message = format!("docker: failed to ping the Docker daemon: {e}");
        } else if !self.store.is_synced() {
            runtime_ready.status = false;
            runtime_ready.reason = "DockerEventsNotInStep".into();
            runtime_ready.message =
                "docker: relisting containers after Docker's event stream broke".into();
        }
        let mut network_ready = RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: true,
            ..Default::default()
        };
        if let Some(Err(e)) = self.cni.as_ref().map(|cni| cni.network()) {
            network_ready.status = false;
            network_ready.reason = "NetworkPluginNotReady".into();
            network_ready.message =
                format!("docker: network plugin is not ready: cni config uninitialized: {e}");
        }
        let mut info = HashMap::new();
        if verbose {
            info.insert("config".to_string(), self.effective_config_json());
            info.insert("docker".to_string(), self.docker_json());
            info.insert(
                "features".to_string(),
                serde_json::to_string(&crate::features::answers(&self.facts())).unwrap_or_default(),
            );
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers: self.runtime_handlers(),
            features: Some(crate::features::node_features()),
        })
    }

    /// Every Docker runtime can be asked for by name as a CRI runtime handler;
    /// the empty name is Docker's default runtime.
    fn runtime_handlers(&self) -> Vec<RuntimeHandler> {
        let facts = self.facts();
        std::iter::once(String::new())
            .chain(facts.runtimes.keys().cloned())
            .map(|name| RuntimeHandler {
                features: Some(crate::features::handler_features(&facts, &name)),
                name,
            })
            .collect()
    }

    fn effective_config_json(&self) -> String {
        let s = &self.settings;
        let cni = &s.cni;
        let network = match s.network_plugin {
            NetworkPlugin::Cni => "cni",
            NetworkPlugin::DockerBridge => "",
        };
        let current_network = self
            .cni
            .as_ref()
            .and_then(|c| c.network().ok())
            .map(|n| n.name.clone());
        serde_json::json!({
            "sandboxImage": s.pod_infra_image,
            "rootDirectory": s.root_dir,
            "networkPlugin": network,
            "cniBinDirs": cni.bin_dirs,
            "cniConfDir": cni.conf_dir,
            "cniCacheDir": cni.cache_dir,
            "cniNetwork": current_network,
            "hairpinMode": cni.hairpin_mode.to_string(),
            "imagePullProgressDeadline": format!("{}s", s.image_pull_progress_deadline.as_secs()),
            "podCIDR": self.pod_cidr.lock().clone(),
            "restrictOOMScoreAdj": self.oom.floor().is_some(),
            "oomScoreAdjFloor": self.oom.floor(),
            "cgroupDriver": match self.facts().cgroup_driver { CgroupDriver::Systemd => "systemd", CgroupDriver::Cgroupfs => "cgroupfs" },
            "dockerRootDir": self.facts().root_dir.clone(),
            "dockerAPIVersion": self.facts().api_version.to_string(),
        })
        .to_string()
    }

    /// The daemon as the shim sees it: its release, the API version spoken
    /// (negotiated at start and again after each reconnect), the image
    /// store and cgroups.
    fn docker_json(&self) -> String {
        let facts = self.facts();
        let daemon = self.engine.daemon_version();
        serde_json::json!({
            "version": facts.docker_version,
            "apiVersion": facts.api_version.to_string(),
            "daemonAPIVersion": daemon.daemon_api.to_string(),
            "daemonMinAPIVersion": daemon.daemon_min_api.map(|v| v.to_string()),
            "oldestSupportedAPIVersion": cri_dockerd_engine::api_version::OLDEST.to_string(),
            "imageStore": facts.image_store.describe(),
            "containerdImageStore": facts.containerd_image_store(),
            "cgroupDriver": match facts.cgroup_driver { CgroupDriver::Systemd => "systemd", CgroupDriver::Cgroupfs => "cgroupfs" },
            "cgroupVersion": if facts.cgroup_v2 { "2" } else { "1" },
            "rootDir": facts.root_dir,
            "kernel": facts.kernel.map(|(major, minor)| format!("{major}.{minor}")),
            "runtimes": facts.runtimes.iter().map(|(name, r)| (name.clone(), serde_json::json!({
                "recursiveReadOnlyMounts": facts.supports_recursive_read_only(name),
                "rroOption": r.rro_option,
            }))).collect::<serde_json::Map<_, _>>(),
            "defaultRuntime": facts.default_runtime,
        })
        .to_string()
    }

    pub fn runtime_config(&self) -> RuntimeConfigResponse {
        let driver = match self.facts().cgroup_driver {
            CgroupDriver::Systemd => CriCgroupDriver::Systemd,
            CgroupDriver::Cgroupfs => CriCgroupDriver::Cgroupfs,
        };
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }
    }

    /// The kubelet sends the node's pod CIDR; CNI gets it as `ipRanges`.
    pub fn update_pod_cidr(&self, cidr: &str) {
        if cidr.is_empty() {
            return;
        }
        tracing::info!(pod_cidr = cidr, "pod CIDR updated");
        *self.pod_cidr.lock() = Some(cidr.to_string());
        if let Some(cni) = &self.cni {
            cni.set_pod_cidr(cidr);
        }
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr.lock().clone()
    }
}
