//! What the shim tells its operators.
//!
//! - [`metrics`]: one Prometheus registry for the whole process. Every
//!   concern records into it through the small functions here (gRPC, Docker,
//!   CNI, image pulls, streaming sessions, event subscribers); node state
//!   and process figures are read when scraped. Recording is a few atomic
//!   operations, so it is always on; `--metrics-bind-addr` only decides
//!   whether anything serves [`metrics::render`].
//! - [`steps`]: the timed steps (Docker calls, CNI plugins) of the CRI
//!   request being served, so a slow request's log record can say where its
//!   time went.

pub mod metrics;
pub mod steps;
