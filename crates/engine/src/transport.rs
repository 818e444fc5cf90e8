//! Every request to Docker, bollard's and the shim's own reads, is sent by
//! our own hyper client, so that each one is timed and counted by operation
//! (metrics) and added to the steps of the CRI request it serves. bollard
//! offers no hook around its built-in transports; its custom transport is
//! the one place every call passes.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bollard::BollardRequest;
use cri_dockerd_telemetry::metrics::{self, DockerFailure};
use cri_dockerd_telemetry::steps;
use hyper::Uri;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

use crate::endpoint::DockerEndpoint;
use crate::operation::operation;

pub(crate) type Answer = Result<http::Response<Incoming>, bollard::errors::Error>;
pub(crate) type Sending = Pin<Box<dyn Future<Output = Answer> + Send>>;
/// Sends one request: bollard's (as its custom transport) and the shim's
/// own reads alike.
pub(crate) type Transport = Arc<dyn Fn(BollardRequest) -> Sending + Send + Sync>;

/// The transport for an endpoint.
pub(crate) fn for_endpoint(endpoint: &DockerEndpoint) -> Transport {
    match endpoint {
        DockerEndpoint::Unix(path) => Arc::new(timed(UnixConnector(Arc::from(path.as_path())))),
        DockerEndpoint::Tcp(_) => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Arc::new(timed(connector))
        }
    }
}

fn timed<C>(connector: C) -> impl Fn(BollardRequest) -> Sending + Send + Sync + 'static
where
    C: Connect + Clone + Send + Sync + 'static,
{
    // As bollard's own transports: no idle connections kept, so a Docker
    // restart never meets a stale pooled connection.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    move |request: BollardRequest| {
        let call = Call {
            operation: operation(request.method().as_str(), request.uri().path()),
            started: Instant::now(),
            finished: false,
        };
        let response = client.request(request);
        Box::pin(async move {
            let mut call = call;
            let answer = response.await;
            let failure = match &answer {
                Ok(r) if r.status().is_server_error() => Some(DockerFailure::ServerError),
                Ok(r) if r.status().is_client_error() => Some(DockerFailure::ClientError),
                Ok(_) => None,
                Err(_) => Some(DockerFailure::Transport),
            };
            call.finish(failure);
            answer.map_err(bollard::errors::Error::from)
        })
    }
}

/// One request in flight; recorded as abandoned if dropped unanswered
/// (bollard's timeout, or its caller gone).
struct Call {
    operation: &'static str,
    started: Instant,
    finished: bool,
}

impl Call {
    fn finish(&mut self, failure: Option<DockerFailure>) {
        self.finished = true;
        metrics::docker_request(self.operation, self.started.elapsed(), failure);
        steps::record(format!("docker {}", self.operation), self.started);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Some(DockerFailure::Abandoned));
        }
    }
}

/// Connects every request to the daemon's socket, whatever its URI says.
#[derive(Clone)]
struct UnixConnector(Arc<Path>);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { UnixStream::connect(&*path).await.map(TokioIo::new) })
    }
}
