//! What the binary's flags decide for the core.

use std::path::PathBuf;
use std::time::Duration;

pub use cri_dockerd_cni::{CniSettings, HairpinMode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPlugin {
    /// Pods get their network from CNI; the pause container runs with
    /// `--network none`.
    Cni,
    /// An empty `--network-plugin`: pods use Docker's default bridge.
    DockerBridge,
}

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub root_dir: PathBuf,
    pub pod_infra_image: String,
    pub network_plugin: NetworkPlugin,
    pub cni: CniSettings,
    pub image_pull_progress_deadline: Duration,
    /// `None`: detect whether negative OOM scores can be set.
    pub restrict_oom_score_adj: Option<bool>,
    pub pod_cidr: Option<String>,
    pub ipv6_dual_stack: bool,
    /// `--runtime-cgroups`, reported only.
    pub runtime_cgroups: Option<String>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from(DEFAULT_ROOT_DIR),
            pod_infra_image: DEFAULT_POD_INFRA_IMAGE.to_string(),
            network_plugin: NetworkPlugin::Cni,
            cni: CniSettings {
                bin_dirs: vec![PathBuf::from("/opt/cni/bin")],
                conf_dir: PathBuf::from("/etc/cni/net.d"),
                cache_dir: PathBuf::from("/var/lib/cni/cache"),
                plugin_timeout: Duration::from_secs(220),
                hairpin_mode: HairpinMode::None,
            },
            image_pull_progress_deadline: Duration::from_secs(60),
            restrict_oom_score_adj: None,
            pod_cidr: None,
            ipv6_dual_stack: false,
            runtime_cgroups: None,
        }
    }
}

pub const DEFAULT_ROOT_DIR: &str = "/var/lib/cri-dockerd";
pub const DEFAULT_POD_INFRA_IMAGE: &str = "registry.k8s.io/pause:3.10";
