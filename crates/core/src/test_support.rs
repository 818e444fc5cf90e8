//! Helpers for the core's unit tests.

use std::time::Duration;

use cri_dockerd_engine::{ApiVersion, DaemonVersion, Engine};

/// An engine that is never contacted: for tests of in-memory logic.
pub(crate) fn offline_engine() -> Engine {
    let api = ApiVersion::new(1, 41);
    Engine::assume(
        "tcp://127.0.0.1:9",
        Duration::from_secs(1),
        DaemonVersion {
            version: "20.10.24".into(),
            daemon_api: api,
            daemon_min_api: None,
            api,
        },
    )
    .expect("a static endpoint")
}
