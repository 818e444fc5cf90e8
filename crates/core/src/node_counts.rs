//! How many pod sandboxes and containers are in each CRI state, from the
//! store alone: the metrics endpoint asks on every scrape.

use std::collections::BTreeMap;

use cri_dockerd_api::v1::PodSandboxState;
use cri_dockerd_telemetry::metrics::NodeCounts;

use crate::container::cri_container_state;
use crate::docker_cri::DockerCri;
use crate::store::{Kind, Phase};

impl DockerCri {
    /// Every state is listed, zeros included, so a series never vanishes.
    pub fn node_counts(&self) -> NodeCounts {
        let mut sandboxes: BTreeMap<&'static str, u64> = [
            PodSandboxState::SandboxReady,
            PodSandboxState::SandboxNotready,
        ]
        .into_iter()
        .map(|s| (s.as_str_name(), 0))
        .collect();
        for record in self.store.all(Kind::Sandbox) {
            // As ListPodSandbox decides it.
            let ready = record.phase == Phase::Running && !self.lacks_network(&record.id);
            let state = if ready {
                PodSandboxState::SandboxReady
            } else {
                PodSandboxState::SandboxNotready
            };
            *sandboxes.entry(state.as_str_name()).or_default() += 1;
        }
        let mut containers: BTreeMap<&'static str, u64> =
            [Phase::Created, Phase::Running, Phase::Exited, Phase::Other]
                .into_iter()
                .map(|p| (cri_container_state(p).as_str_name(), 0))
                .collect();
        for record in self.store.all(Kind::Container) {
            *containers
                .entry(cri_container_state(record.phase).as_str_name())
                .or_default() += 1;
        }
        NodeCounts {
            sandboxes: sandboxes.into_iter().collect(),
            containers: containers.into_iter().collect(),
        }
    }
}
