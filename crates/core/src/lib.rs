//! The core: every CRI call becomes Docker Engine API calls here. Docker's
//! container names and labels are the source of truth; the local state is
//! cri-dockerd's sandbox checkpoints, the CNI result cache, and the node
//! state kept in memory from Docker's events.
//!
//! Laid out by concern: `store/` (node state and Docker's event feed),
//! `sandbox/` (pause containers, checkpoints, pod networks, start-up
//! reconciliation), `container/` (lifecycle, status, logs, exec),
//! `image/`, `stats/`, `streams/` (exec/attach/port-forward backend),
//! `events` (GetContainerEvents), `runtime_status` (Version, Status,
//! RuntimeConfig), and `translate/` (pure CRI-to-Docker functions).
//! `DockerCri` ties them together: one per process, shared by every call.

mod caps;
pub mod checkpoint;
pub mod config;
mod container;
mod docker_cri;
pub mod error;
mod events;
mod facts;
pub mod features;
mod image;
pub mod labels;
mod locks;
pub mod naming;
mod node_counts;
mod oom;
mod runtime_status;
mod sandbox;
mod stats;
mod store;
pub mod streams;
#[cfg(test)]
mod test_support;
mod time;
pub mod translate;

pub use container::{logs, oom_kills};
pub use docker_cri::DockerCri;
pub use error::{Error, Kind, Result};
pub use facts::{CgroupDriver, DockerFacts};
pub use image::reference as image_ref;
pub use oom::OomPolicy;
pub use stats::PodStatsEntry;
pub use stats::metrics::PodMetricsEntry;
