//! `Engine`: the shim's handle on one Docker daemon. bollard builds and
//! sends the requests that change things; the answers the shim reads
//! (inspects, lists, info, version, events) are fetched here and decoded
//! into the lenient models of [`crate::model`]. The API version is the
//! daemon's (up to the newest this build knows), asked again whenever the
//! daemon may have changed, upwards as well as downwards.

use std::sync::Arc;
use std::time::Duration;

use bollard::{ClientVersion, Docker};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use parking_lot::RwLock;
use serde::de::DeserializeOwned;

use crate::api_version::{self, ApiVersion};
use crate::endpoint::DockerEndpoint;
use crate::model::{
    ContainerInspect, ContainerSummary, EventMessage, ExecInspect, ImageInspect, ImageSummary,
    SystemInfo, SystemVersion,
};
use crate::transport::{self, Transport};

pub type DockerError = bollard::errors::Error;

/// The daemon's version, as negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonVersion {
    /// Docker's release, `28.5.2+dfsg4`.
    pub version: String,
    /// The newest API the daemon speaks.
    pub daemon_api: ApiVersion,
    /// The oldest API the daemon still serves, when it says.
    pub daemon_min_api: Option<ApiVersion>,
    /// The version the shim speaks with it.
    pub api: ApiVersion,
}

/// Why the shim cannot use a daemon.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unsupported --docker-endpoint {0:?} (unix:///path or tcp://host:port)")]
    Endpoint(String),
    #[error("Docker at {endpoint} does not answer: {source}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: DockerError,
    },
    #[error(
        "Docker at {endpoint} answered /version without an API version it can parse ({answer:?})"
    )]
    NoApiVersion { endpoint: String, answer: String },
    #[error(transparent)]
    TooOld(#[from] api_version::TooOld),
    #[error(
        "Docker {docker_version} serves clients of API {daemon_min} or later only; this build speaks up to API {newest}: upgrade cri-dockerd-rs"
    )]
    TooNew {
        docker_version: String,
        daemon_min: ApiVersion,
        newest: ApiVersion,
    },
}

/// A handle on the daemon; clones share it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: DockerEndpoint,
    transport: Transport,
    timeout: Duration,
    negotiated: RwLock<Negotiated>,
}

struct Negotiated {
    version: DaemonVersion,
    /// bollard's client at `version.api`. bollard only ever lowers a
    /// client's version, so a daemon upgraded under the shim gets a new
    /// client.
    client: Docker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("endpoint", &self.inner.endpoint)
            .field("version", &self.inner.negotiated.read().version)
            .finish()
    }
}

impl Engine {
    /// Connects to `endpoint` and negotiates the API version; refuses a
    /// daemon the shim cannot serve. `timeout` bounds every request (not
    /// the event stream).
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Engine, ConnectError> {
        let parsed = DockerEndpoint::parse(endpoint)
            .ok_or_else(|| ConnectError::Endpoint(endpoint.into()))?;
        let transport = transport::for_endpoint(&parsed);
        let version = negotiate(&parsed, &transport, timeout).await?;
        Self::assume(endpoint, timeout, version)
    }

    /// An engine that takes the daemon's version as given instead of
    /// asking for it; nothing is sent until a request is made.
    pub fn assume(
        endpoint: &str,
        timeout: Duration,
        version: DaemonVersion,
    ) -> Result<Engine, ConnectError> {
        let parsed = DockerEndpoint::parse(endpoint)
            .ok_or_else(|| ConnectError::Endpoint(endpoint.into()))?;
        let transport = transport::for_endpoint(&parsed);
        let client = bollard_client(&parsed, &transport, timeout, version.api);
        Ok(Engine {
            inner: Arc::new(Inner {
                endpoint: parsed,
                transport,
                timeout,
                negotiated: RwLock::new(Negotiated { version, client }),
            }),
        })
    }

    /// bollard's client at the negotiated version, for the requests that
    /// change things (create, start, stop, exec, pull, ...).
    pub fn api(&self) -> Docker {
        self.inner.negotiated.read().client.clone()
    }

    pub fn endpoint(&self) -> &DockerEndpoint {
        &self.inner.endpoint
    }

    /// The API version spoken now.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.negotiated.read().version.api
    }

    pub fn daemon_version(&self) -> DaemonVersion {
        self.inner.negotiated.read().version.clone()
    }

    /// Asks the daemon its version again (it may have been restarted,
    /// upgraded or downgraded) and speaks what it speaks now. A daemon the
    /// shim can no longer serve is an error; the old version stays then.
    pub async fn renegotiate(&self) -> Result<DaemonVersion, ConnectError> {
        let version = negotiate(
            &self.inner.endpoint,
            &self.inner.transport,
            self.inner.timeout,
        )
        .await?;
        let mut negotiated = self.inner.negotiated.write();
        if negotiated.version != version {
            if negotiated.version.api != version.api {
                tracing::info!(
                    docker = %version.version,
                    from = %negotiated.version.api,
                    to = %version.api,
                    "Docker's API version changed"
                );
                negotiated.client = bollard_client(
                    &self.inner.endpoint,
                    &self.inner.transport,
                    self.inner.timeout,
                    version.api,
                );
            }
            negotiated.version = version.clone();
        }
        Ok(version)
    }

    /// `GET /_ping`.
    pub async fn ping(&self) -> Result<(), DockerError> {
        let response = self.send("/_ping", None, self.inner.timeout).await?;
        read_body(response, self.inner.timeout).await.map(|_| ())
    }

    pub async fn version(&self) -> Result<SystemVersion, DockerError> {
        self.get_json("/version", None).await
    }

    pub async fn info(&self) -> Result<SystemInfo, DockerError> {
        self.get_json("/info", None).await
    }

    /// `GET /containers/{id}/json`; with `size`, Docker also measures the
    /// writable layer (slow with the graph drivers).
    pub async fn inspect_container(
        &self,
        id: &str,
        size: bool,
    ) -> Result<ContainerInspect, DockerError> {
        let query = size.then(|| "size=1".to_string());
        self.get_json(&format!("/containers/{id}/json"), query)
            .await
    }

    /// `GET /containers/json` with Docker's filters (`label`, `status`,
    /// ...), every container or only running ones.
    pub async fn list_containers(
        &self,
        all: bool,
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut query = vec![("all", all.to_string())];
        if !filters.is_empty() {
            query.push(("filters", filters_json(filters)));
        }
        self.get_json("/containers/json", Some(encode_query(&query)))
            .await
    }

    /// `GET /images/{name}/json`; `name` is a reference or an ID.
    pub async fn inspect_image(&self, name: &str) -> Result<ImageInspect, DockerError> {
        self.get_json(&format!("/images/{name}/json"), None).await
    }

    /// `GET /images/json`, optionally narrowed by Docker's filters.
    pub async fn list_images(
        &self,
        filters: &[(&str, Vec<String>)],
    ) -> Result<Vec<ImageSummary>, DockerError> {
        let query =
            (!filters.is_empty()).then(|| encode_query(&[("filters", filters_json(filters))]));
        self.get_json("/images/json", query).await
    }

    pub async fn inspect_exec(&self, id: &str) -> Result<ExecInspect, DockerError> {
        self.get_json(&format!("/exec/{id}/json"), None).await
    }

    /// `GET /events` from `since` to `until` (Docker's `seconds.nanos`;
    /// without `until` the stream follows new events), narrowed by
    /// `filters`: one event per item until the stream ends or breaks. Only
    /// the answer's headers are bounded by the request timeout.
    pub async fn events(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        filters: &[(&str, Vec<String>)],
    ) -> Result<impl Stream<Item = Result<EventMessage, DockerError>> + Send + 'static, DockerError>
    {
        let mut query = Vec::new();
        if let Some(since) = since {
            query.push(("since", since.to_string()));
        }
        if let Some(until) = until {
            query.push(("until", until.to_string()));
        }
        if !filters.is_empty() {
            query.push(("filters", filters_json(filters)));
        }
        let response = self
            .send("/events", Some(encode_query(&query)), self.inner.timeout)
            .await?;
        Ok(json_lines(response.into_body().into_data_stream()))
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: Option<String>,
    ) -> Result<T, DockerError> {
        let timeout = self.inner.timeout;
        let fetch = async {
            let response = self.send(path, query, timeout).await?;
            read_body(response, timeout).await
        };
        let body = fetch.await?;
        serde_json::from_slice(&body).map_err(|err| DockerError::JsonSerdeError { err })
    }

    /// Sends `GET /v<api><path>?<query>`; a non-2xx answer is Docker's
    /// error, as bollard reports it.
    async fn send(
        &self,
        path: &str,
        query: Option<String>,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, DockerError> {
        let api = self.api_version();
        let mut uri = format!("{}/v{api}{path}", self.inner.endpoint.base_url());
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            uri.push('?');
            uri.push_str(&query);
        }
        let request = http::Request::get(uri)
            .body(bollard::body_full(Bytes::new()))
            .map_err(|e| DockerError::HttpClientError { err: e })?;
        let response = tokio::time::timeout(timeout, (self.inner.transport)(request))
            .await
            .map_err(|_| DockerError::RequestTimeoutError)??;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_body(response, timeout).await.unwrap_or_default();
        Err(server_error(status.as_u16(), &body))
    }
}

async fn read_body(
    response: http::Response<hyper::body::Incoming>,
    timeout: Duration,
) -> Result<Bytes, DockerError> {
    let collected = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| DockerError::RequestTimeoutError)?;
    Ok(collected
        .map_err(|err| DockerError::HyperResponseError { err })?
        .to_bytes())
}

/// Docker's error answer (`{"message": "..."}`, or plain text) as bollard
/// reports it, so that one mapping of Docker's errors serves both.
fn server_error(status_code: u16, body: &[u8]) -> DockerError {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    let message = serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    DockerError::DockerResponseServerError {
        status_code,
        message,
    }
}

/// Docker's JSON-lines stream as items; a line that does not decode is
/// skipped (logged), so one odd event never ends the stream.
fn json_lines<T, S, E>(frames: S) -> impl Stream<Item = Result<T, DockerError>> + Send + 'static
where
    T: DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<DockerError>,
{
    futures::stream::unfold(
        (frames, Vec::<u8>::new(), false),
        |(mut frames, mut buffer, mut ended)| async move {
            loop {
                if let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=newline).collect();
                    let line = line.trim_ascii();
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<T>(line) {
                        Ok(item) => return Some((Ok(item), (frames, buffer, ended))),
                        Err(e) => {
                            tracing::warn!(error = %e, line = %String::from_utf8_lossy(line), "skipping a line of Docker's stream that does not decode");
                            continue;
                        }
                    }
                }
                if ended {
                    return None;
                }
                match frames.next().await {
                    Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
                    Some(Err(err)) => {
                        ended = true;
                        return Some((Err(err.into()), (frames, Vec::new(), ended)));
                    }
                    None => {
                        ended = true;
                        // A last object without its newline.
                        buffer.push(b'\n');
                    }
                }
            }
        },
    )
}

/// `{"label": ["a=b"], ...}` as Docker's `filters` parameter takes it.
fn filters_json(filters: &[(&str, Vec<String>)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = filters
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// Asks `/version` without a version prefix (Docker answers at its newest)
/// and picks the version to speak.
async fn negotiate(
    endpoint: &DockerEndpoint,
    transport: &Transport,
    timeout: Duration,
) -> Result<DaemonVersion, ConnectError> {
    let unreachable = |source| ConnectError::Unreachable {
        endpoint: endpoint.to_string(),
        source,
    };
    let request = http::Request::get(format!("{}/version", endpoint.base_url()))
        .body(bollard::body_full(Bytes::new()))
        .map_err(|e| unreachable(DockerError::HttpClientError { err: e }))?;
    let response = tokio::time::timeout(timeout, transport(request))
        .await
        .map_err(|_| unreachable(DockerError::RequestTimeoutError))?
        .map_err(unreachable)?;
    let status = response.status();
    let body = read_body(response, timeout).await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(unreachable(server_error(status.as_u16(), &body)));
    }
    let answer: SystemVersion = serde_json::from_slice(&body)
        .map_err(|err| unreachable(DockerError::JsonSerdeError { err }))?;
    let docker_version = answer.version.clone().unwrap_or_else(|| "(unknown)".into());
    let Some(daemon_api) = answer.api_version.as_deref().and_then(ApiVersion::parse) else {
        return Err(ConnectError::NoApiVersion {
            endpoint: endpoint.to_string(),
            answer: String::from_utf8_lossy(&body).into_owned(),
        });
    };
    api_version::check_supported(&docker_version, daemon_api)?;
    let daemon_min_api = answer
        .min_api_version
        .as_deref()
        .and_then(ApiVersion::parse);
    let api = ApiVersion::negotiated(daemon_api);
    if let Some(min) = daemon_min_api
        && api < min
    {
        return Err(ConnectError::TooNew {
            docker_version,
            daemon_min: min,
            newest: api_version::NEWEST,
        });
    }
    Ok(DaemonVersion {
        version: docker_version,
        daemon_api,
        daemon_min_api,
        api,
    })
}

fn bollard_client(
    endpoint: &DockerEndpoint,
    transport: &Transport,
    timeout: Duration,
    api: ApiVersion,
) -> Docker {
    let transport = transport.clone();
    let version = ClientVersion {
        major_version: api.major.into(),
        minor_version: api.minor.into(),
    };
    Docker::connect_with_custom_transport(
        move |request| transport(request),
        Some(endpoint.base_url()),
        timeout.as_secs().max(1),
        &version,
    )
    .expect("a custom transport client is always made")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_queries_are_encoded_as_docker_reads_them() {
        let filters = [("label", vec!["io.kubernetes.docker.type".to_string()])];
        let query = encode_query(&[("all", "true".into()), ("filters", filters_json(&filters))]);
        assert_eq!(
            query,
            "all=true&filters=%7B%22label%22%3A%5B%22io.kubernetes.docker.type%22%5D%7D"
        );
    }

    #[tokio::test]
    async fn json_lines_split_across_frames_skip_odd_lines_and_end_on_errors() {
        let frames: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(
                b"{\"Type\":\"container\",\"Action\":\"st",
            )),
            Ok(Bytes::from_static(
                b"art\"}\n\nnot json\n{\"Type\":\"the-future\"}\n",
            )),
            Ok(Bytes::from_static(b"{\"Action\":\"last\"}")),
        ];
        let items: Vec<_> = json_lines::<EventMessage, _, _>(futures::stream::iter(frames))
            .collect()
            .await;
        let items: Vec<EventMessage> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].action.as_deref(), Some("start"));
        assert_eq!(items[1].typ, Some(crate::model::EventType::Unknown));
        assert_eq!(items[2].action.as_deref(), Some("last"));

        let broken: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"Action\":\"a\"}\n")),
            Err(std::io::Error::other("reset")),
            Ok(Bytes::from_static(b"{\"Action\":\"never\"}\n")),
        ];
        let items: Vec<_> = json_lines::<EventMessage, _, _>(futures::stream::iter(broken))
            .collect()
            .await;
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(items[1].is_err());
    }

    #[test]
    fn docker_error_messages_are_read_from_json_or_text() {
        match server_error(404, br#"{"message":"No such container: x"}"#) {
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => {
                assert_eq!(status_code, 404);
                assert_eq!(message, "No such container: x");
            }
            other => panic!("{other:?}"),
        }
        match server_error(500, b"page not found\n") {
            DockerError::DockerResponseServerError { message, .. } => {
                assert_eq!(message, "page not found")
            }
            other => panic!("{other:?}"),
        }
    }
}
