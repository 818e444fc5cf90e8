//! Connecting to the Docker daemon named by `--docker-endpoint`, through
//! a transport that times every call.

mod operation;
mod transport;

use std::path::Path;
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
            unix(path, timeout)
        } else if let Some(address) = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
        {
            Docker::connect_with_custom_transport(
                transport::tcp(),
                Some(format!("http://{address}")),
                timeout,
                API_DEFAULT_VERSION,
            )
        } else if endpoint.starts_with('/') {
            unix(endpoint, timeout)
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

fn unix(path: &str, timeout: u64) -> Result<Docker, bollard::errors::Error> {
    if !Path::new(path).exists() {
        // As bollard's own unix transport says it, so the wait above retries.
        return Err(bollard::errors::Error::SocketNotFoundError(
            path.to_string(),
        ));
    }
    // The host part is never used: the connector dials the socket.
    Docker::connect_with_custom_transport(
        transport::unix(Path::new(path)),
        Some("http://docker"),
        timeout,
        API_DEFAULT_VERSION,
    )
}
