//! Just enough of the Kubernetes API server and the kubelet for a real
//! `kubectl exec`, `attach` and `port-forward` to reach our streaming
//! server the way they do on a node: kubectl reads the pod from the API,
//! then posts the stream request, which the kubelet turns into a CRI
//! Exec/Attach/PortForward call and proxies, upgrade and all, to the URL
//! the runtime returned. Here both hops are one process on 127.0.0.1.
//!
//! Served: discovery (`/api`, `/apis`, `/api/v1`, `/version`), GET of the
//! pods registered with [`FakeApiServer::add_pod`], and their `exec`,
//! `attach` and `portforward` subresources.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub name: String,
    pub id: String,
    pub image: String,
    /// What the pod spec says: kubectl attach checks them.
    pub stdin: bool,
    pub tty: bool,
}

#[derive(Debug, Clone)]
struct FakePod {
    uid: String,
    sandbox_id: String,
    containers: Vec<FakeContainer>,
}

type Pods = Arc<Mutex<HashMap<(String, String), FakePod>>>;

pub struct FakeApiServer {
    addr: SocketAddr,
    pods: Pods,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Listens on a free loopback port; stream requests become CRI calls on
    /// `runtime`.
    pub async fn start(runtime: RuntimeServiceClient<Channel>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let pods: Pods = Arc::default();
        let state = (pods.clone(), runtime, addr);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (pods, runtime, addr) = state.clone();
                        async move { Ok::<_, Infallible>(route(req, pods, runtime, addr).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { addr, pods, task }
    }

    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        sandbox_id: &str,
        containers: Vec<FakeContainer>,
    ) {
        self.pods.lock().unwrap().insert(
            (namespace.to_string(), name.to_string()),
            FakePod {
                uid: uid.to_string(),
                sandbox_id: sandbox_id.to_string(),
                containers,
            },
        );
    }

    /// A kubeconfig for this server in `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
                 users:\n- name: tester\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
                 user: tester\n    namespace: default\ncurrent-context: fake\n",
                self.addr
            ),
        )
        .expect("writing the kubeconfig");
        path
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found(what: &str) -> Response<Full<Bytes>> {
    json(
        StatusCode::NOT_FOUND,
        serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": format!("{what} not found"),
            "reason": "NotFound", "code": 404,
        }),
    )
}

fn pod_json(namespace: &str, name: &str, pod: &FakePod) -> serde_json::Value {
    let containers: Vec<_> = pod
        .containers
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "image": c.image, "stdin": c.stdin, "tty": c.tty,
            })
        })
        .collect();
    let statuses: Vec<_> = pod
        .containers
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": true,
                "restartCount": 0, "started": true,
                "containerID": format!("docker://{}", c.id),
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.uid},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "containerStatuses": statuses},
    })
}

fn query(uri: &http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn route(
    req: Request<Incoming>,
    pods: Pods,
    runtime: RuntimeServiceClient<Channel>,
    addr: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    match path.as_str() {
        "/api" => {
            return json(
                StatusCode::OK,
                serde_json::json!({
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
                }),
            );
        }
        "/apis" => {
            return json(
                StatusCode::OK,
                serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
            );
        }
        "/version" => {
            return json(
                StatusCode::OK,
                serde_json::json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}),
            );
        }
        "/api/v1" => {
            let resource = |name: &str, kind: &str, verbs: &[&str]| serde_json::json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": verbs});
            let mut pods = resource("pods", "Pod", &["get", "list"]);
            pods["shortNames"] = serde_json::json!(["po"]);
            return json(
                StatusCode::OK,
                serde_json::json!({
                    "kind": "APIResourceList", "groupVersion": "v1",
                    "resources": [
                        pods,
                        resource("pods/exec", "PodExecOptions", &["create", "get"]),
                        resource("pods/attach", "PodAttachOptions", &["create", "get"]),
                        resource("pods/portforward", "PodPortForwardOptions", &["create", "get"]),
                    ],
                }),
            );
        }
        _ => {}
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let [
        "api",
        "v1",
        "namespaces",
        namespace,
        "pods",
        name,
        rest @ ..,
    ] = parts.as_slice()
    else {
        return not_found(&path);
    };
    let Some(pod) = pods
        .lock()
        .unwrap()
        .get(&(namespace.to_string(), name.to_string()))
        .cloned()
    else {
        return not_found(&format!("pods \"{name}\""));
    };
    let params = query(req.uri());
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let flag = |key: &str| matches!(param(key), Some("true" | "1"));
    let container = |pod: &FakePod| {
        let wanted = param("container");
        pod.containers
            .iter()
            .find(|c| wanted.is_none_or(|w| w == c.name))
            .cloned()
    };
    let mut runtime = runtime;
    let url = match *rest {
        [] => return json(StatusCode::OK, pod_json(namespace, name, &pod)),
        ["exec"] => {
            let Some(c) = container(&pod) else {
                return not_found("container");
            };
            let cmd = params
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            runtime
                .exec(ExecRequest {
                    container_id: c.id,
                    cmd,
                    tty: flag("tty"),
                    stdin: flag("stdin"),
                    stdout: flag("stdout"),
                    stderr: flag("stderr"),
                })
                .await
                .map(|r| r.into_inner().url)
        }
        ["attach"] => {
            let Some(c) = container(&pod) else {
                return not_found("container");
            };
            runtime
                .attach(AttachRequest {
                    container_id: c.id,
                    tty: flag("tty"),
                    stdin: flag("stdin"),
                    stdout: flag("stdout"),
                    stderr: flag("stderr"),
                })
                .await
                .map(|r| r.into_inner().url)
        }
        ["portforward"] => runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                port: Vec::new(),
            })
            .await
            .map(|r| r.into_inner().url),
        _ => return not_found(&path),
    };
    match url {
        Ok(url) => proxy_upgrade(req, &url).await,
        Err(status) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": status.message(), "code": 500,
            }),
        ),
    }
}

/// Sends the client's request, headers and all, to the runtime's URL and,
/// once both sides switched protocols, splices the two connections: what
/// the kubelet's streaming proxy does.
async fn proxy_upgrade(mut req: Request<Incoming>, url: &str) -> Response<Full<Bytes>> {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a URL with a path");
    let backend = match tokio::net::TcpStream::connect(host).await {
        Ok(s) => s,
        Err(e) => {
            return json(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({"message": format!("connecting to {host}: {e}")}),
            );
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(backend))
        .await
        .expect("HTTP handshake with the streaming server");
    tokio::spawn(connection.with_upgrades());
    let mut forwarded = Request::builder()
        .method(req.method().clone())
        .uri(format!("/{path}"));
    for (name, value) in req.headers() {
        if name != http::header::HOST {
            forwarded = forwarded.header(name, value);
        }
    }
    let forwarded = forwarded
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let response = match sender.send_request(forwarded).await {
        Ok(r) => r,
        Err(e) => {
            return json(
                StatusCode::BAD_GATEWAY,
                serde_json::json!({"message": format!("streaming server: {e}")}),
            );
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = Response::new(Full::new(body));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        return out;
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (Ok(client), Ok(server)) = (client_upgrade.await, hyper::upgrade::on(response).await)
        else {
            return;
        };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(server))
            .await;
    });
    let mut out = Response::new(Full::new(Bytes::new()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
