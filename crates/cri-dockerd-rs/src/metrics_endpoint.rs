//! `--metrics-bind-addr`: Prometheus metrics at `/metrics` and a health
//! check at `/healthz`, over plain HTTP/1.1.
//!
//! A scrape only encodes what is in memory. `/healthz` answers 200 when
//! Docker answers a ping and the CRI socket answers a Version call, each
//! within two seconds; 503 with the failing part otherwise.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use cri_dockerd_api::v1::VersionRequest;
use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_telemetry::metrics::{self, Format};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixStream};

/// How long each health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A scraper that sends nothing is not kept.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the CRI can be reached from inside this process.
#[derive(Clone, Debug)]
pub enum CriAddress {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
    /// A socket we cannot dial (an abstract one from systemd).
    Unknown,
}

struct Health {
    engine: cri_dockerd_engine::Engine,
    cri: CriAddress,
}

pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the metrics endpoint on {address}"))
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, engine: cri_dockerd_engine::Engine, cri: CriAddress) {
    let health = Arc::new(Health { engine, cri });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: wait instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, health.clone()));
            let _ = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    health: Arc<Health>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()));
    }
    Ok(match request.uri().path() {
        "/metrics" => {
            let format = Format::from_accept(
                request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let mut response = Response::new(Full::new(Bytes::from(metrics::render(format))));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(format.content_type()),
            );
            response
        }
        "/healthz" => {
            let problems = health.check().await;
            if problems.is_empty() {
                plain(StatusCode::OK, "ok\n".into())
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "/metrics or /healthz\n".into()),
    })
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl Health {
    /// What is wrong, one line each; empty when healthy.
    async fn check(&self) -> Vec<String> {
        let (docker, cri) = tokio::join!(self.docker_answers(), self.cri_answers());
        docker.err().into_iter().chain(cri.err()).collect()
    }

    async fn docker_answers(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.engine.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("docker: {e}")),
            Err(_) => Err(format!("docker: no answer in {PROBE_TIMEOUT:?}")),
        }
    }

    async fn cri_answers(&self) -> Result<(), String> {
        let call = async {
            let endpoint = tonic::transport::Endpoint::from_static("http://localhost");
            let channel = match &self.cri {
                CriAddress::Unix(path) => {
                    let path = path.clone();
                    endpoint
                        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                            let path = path.clone();
                            async move { UnixStream::connect(path).await.map(TokioIo::new) }
                        }))
                        .await
                }
                CriAddress::Tcp(address) => {
                    let mut address = *address;
                    if address.ip().is_unspecified() {
                        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                        .map_err(|e| e.to_string())?
                        .connect()
                        .await
                }
                CriAddress::Unknown => return Ok(()),
            }
            .map_err(|e| format!("cri: cannot connect: {e}"))?;
            RuntimeServiceClient::new(channel)
                .version(VersionRequest::default())
                .await
                .map(|_| ())
                .map_err(|s| format!("cri: Version: {}", s.message()))
        };
        match tokio::time::timeout(PROBE_TIMEOUT, call).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("cri: no answer in {PROBE_TIMEOUT:?}")),
        }
    }
}
