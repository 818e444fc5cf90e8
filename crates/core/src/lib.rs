//! The translation core: every CRI call becomes Docker Engine API calls here.
//! Docker's container names and labels are the source of truth; the only
//! local state is cri-dockerd's sandbox checkpoints and the CNI result cache.

mod caps;
mod cgroups;
pub mod checkpoint;
pub mod config;
mod container;
pub mod error;
mod events;
mod exec;
mod facts;
mod fs_usage;
mod image;
pub mod image_ref;
pub mod labels;
mod locks;
pub mod logs;
pub mod naming;
mod oom;
pub mod oom_kills;
mod reconcile;
mod runtime;
mod sandbox;
mod stats;
mod status;
mod store;
pub mod streams;
mod time;
pub mod translate;

pub use error::{Error, Kind, Result};

pub use facts::{CgroupDriver, DockerFacts};
pub use oom::OomPolicy;
pub use runtime::Runtime;
