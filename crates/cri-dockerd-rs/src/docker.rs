//! Connecting to the Docker daemon named by `--docker-endpoint`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::{API_DEFAULT_VERSION, Docker};

/// How long to wait for a daemon that is still starting.
const CONNECT_PATIENCE: Duration = Duration::from_secs(30);

pub async fn connect(endpoint: &str, request_timeout: Duration) -> anyhow::Result<Docker> {
    let timeout = request_timeout.as_secs().max(1);
    let started = Instant::now();
    loop {
        let client = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(endpoint, timeout, API_DEFAULT_VERSION)
        } else if endpoint.starts_with('/') {
            Docker::connect_with_unix(endpoint, timeout, API_DEFAULT_VERSION)
        } else {
            bail!("unsupported --docker-endpoint {endpoint:?} (unix:///path or tcp://host:port)");
        };
        let attempt = match client {
            Ok(client) => client.negotiate_version().await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(docker) => return Ok(docker),
            Err(e) if started.elapsed() < CONNECT_PATIENCE => {
                tracing::warn!(endpoint, error = %e, "Docker is not answering yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("connecting to Docker at {endpoint}"));
            }
        }
    }
}
