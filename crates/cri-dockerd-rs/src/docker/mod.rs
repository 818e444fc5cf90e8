//! Connecting to the Docker daemon named by `--docker-endpoint`: waits a
//! while for a daemon that is still starting, and refuses one the shim
//! cannot serve.

use std::time::{Duration, Instant};

use anyhow::Context;
use cri_dockerd_engine::{ConnectError, Engine};

/// How long to wait for a daemon that is still starting.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

pub async fn connect(endpoint: &str, request_timeout: Duration) -> anyhow::Result<Engine> {
    let timeout = request_timeout.max(Duration::from_secs(1));
    let started = Instant::now();
    loop {
        match Engine::connect(endpoint, timeout).await {
            Ok(engine) => {
                let version = engine.daemon_version();
                tracing::info!(
                    endpoint,
                    docker = %version.version,
                    api = %version.api,
                    daemon_api = %version.daemon_api,
                    "negotiated Docker's API version"
                );
                return Ok(engine);
            }
            Err(e @ ConnectError::Unreachable { .. }) if started.elapsed() < CONNECT_PATIENCE => {
                tracing::warn!(endpoint, error = %e, "Docker is not answering yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("connecting to Docker at {endpoint}"));
            }
        }
    }
}
