//! The translation core: every CRI call becomes Docker Engine API calls here.
//! Docker's container names and labels are the source of truth; the only
//! local state is cri-dockerd's sandbox checkpoints and the CNI result cache.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod image_ref;
pub mod labels;
pub mod naming;

pub use error::{Error, Kind, Result};
