//! The Docker Engine API as the shim speaks it.
//!
//! - [`Engine`]: one daemon. bollard sends the requests that change
//!   things; what the shim reads back is decoded by [`model`], leniently.
//! - [`api_version`]: the API version negotiated with the daemon (both
//!   ways, again after each reconnect), the oldest the shim serves, and
//!   what newer versions bring.
//! - The transport every request takes, timed for the metrics and the
//!   request's steps.

pub mod api_version;
mod client;
mod endpoint;
pub mod model;
mod operation;
mod transport;

pub use api_version::ApiVersion;
pub use client::{ConnectError, DaemonVersion, DockerError, Engine};
pub use endpoint::DockerEndpoint;
