//! The HTTP side: `/exec/<token>`, `/attach/<token>`, `/portforward/<token>`,
//! upgraded to SPDY/3.1 or WebSocket.

use cri_dockerd_telemetry::metrics::{self, SessionKind};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use crate::backend::{Backend, StreamRequest};
use crate::limits::{AcceptBackoff, IdleTimeout, Limits};
use crate::remotecommand::{self, Command};
use crate::spdy::SpdyConnection;
use crate::spdy::conn::Role;
use crate::tokens::{TokenCache, TokenError};
use crate::{portforward, status, tunnel, websocket};

pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// Port-forward over WebSocket: SPDY tunnelled inside it (client-go 1.31+),
/// then the channel protocols.
const PORT_FORWARD_WEBSOCKET_PROTOCOLS: [&str; 4] = [
    tunnel::PORT_FORWARD_TUNNEL_PROTOCOL,
    websocket::V4,
    websocket::V4_BASE64,
    websocket::V1,
];
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";

struct State {
    tokens: Arc<TokenCache>,
    backend: Arc<dyn Backend>,
    limits: Limits,
}

pub struct StreamingServer {
    tokens: Arc<TokenCache>,
    base_url: String,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamingServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and serves.
    pub async fn bind(addr: &str, backend: Arc<dyn Backend>) -> std::io::Result<Self> {
        Self::bind_with(addr, backend, crate::tokens::TOKEN_TTL, Limits::default()).await
    }

    /// As `bind`, with tokens that expire after `ttl` and these limits.
    pub async fn bind_with(
        addr: &str,
        backend: Arc<dyn Backend>,
        ttl: std::time::Duration,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        // A wildcard bind is still reached through loopback by the kubelet
        // on the same node.
        let url_host = match local_addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let tokens = Arc::new(TokenCache::with_ttl(ttl));
        let state = Arc::new(State {
            tokens: tokens.clone(),
            backend,
            limits,
        });
        let task = tokio::spawn(async move {
            let mut backoff = AcceptBackoff::default();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => {
                        backoff.succeeded();
                        stream
                    }
                    Err(e) => {
                        tokio::time::sleep(backoff.failed(&e)).await;
                        continue;
                    }
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, state.clone()));
                    // The header timeout also closes keep-alive connections
                    // that never send a next request.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.read_header_timeout)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Self {
            tokens,
            base_url: format!("http://{url_host}:{}", local_addr.port()),
            local_addr,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A single-use URL for `request`.
    pub fn url(&self, request: StreamRequest) -> Result<String, TokenError> {
        let kind = match &request {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        };
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }
}

fn respond(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())));
    *response.status_mut() = status;
    response
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

fn upgrade_kind(headers: &HeaderMap) -> Option<&'static str> {
    let upgrade = headers
        .get(header::UPGRADE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    if upgrade.contains("websocket") {
        Some("websocket")
    } else if upgrade.contains("spdy/3.1") {
        Some("spdy")
    } else {
        None
    }
}

fn query_ports(uri: &http::Uri) -> Vec<String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("port="))
        .flat_map(|v| v.split(','))
        .map(str::to_string)
        .collect()
}

fn session_kind(request: &StreamRequest) -> SessionKind {
    match request {
        StreamRequest::Exec(_) => SessionKind::Exec,
        StreamRequest::Attach(_) => SessionKind::Attach,
        StreamRequest::PortForward(_) => SessionKind::PortForward,
    }
}

async fn handle(
    mut req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != http::Method::GET && req.method() != http::Method::POST {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ));
    }
    let path: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let [kind, token] = path.as_slice() else {
        return Ok(respond(StatusCode::NOT_FOUND, "not found"));
    };
    let Some(request) = state.tokens.consume(token) else {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "unknown, used or expired token",
        ));
    };
    let matches = matches!(
        (&request, *kind),
        (StreamRequest::Exec(_), "exec")
            | (StreamRequest::Attach(_), "attach")
            | (StreamRequest::PortForward(_), "portforward")
    );
    if !matches {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "unknown, used or expired token",
        ));
    }
    let is_port_forward = matches!(request, StreamRequest::PortForward(_));
    match upgrade_kind(req.headers()) {
        Some("spdy") => {
            let server_protocols: &[&str] = if is_port_forward {
                &[portforward::SPDY_PROTOCOL]
            } else {
                &remotecommand::SPDY_PROTOCOLS
            };
            let client = remotecommand::header_list(header_values(req.headers(), PROTOCOL_HEADER));
            let protocol = match remotecommand::negotiate(&client, server_protocols) {
                Ok(p) => p.or(if is_port_forward {
                    Some(portforward::SPDY_PROTOCOL)
                } else {
                    None
                }),
                Err(message) => {
                    let mut response = respond(
                        StatusCode::FORBIDDEN,
                        &format!("unable to upgrade: {message}"),
                    );
                    for p in server_protocols {
                        response
                            .headers_mut()
                            .append(ACCEPTED_PROTOCOLS_HEADER, HeaderValue::from_static(p));
                    }
                    return Ok(response);
                }
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let _open = metrics::session_opened(session_kind(&request));
                let conn = SpdyConnection::new(
                    IdleTimeout::new(TokioIo::new(upgraded), state.limits.idle_timeout),
                    Role::Server,
                );
                serve_spdy(conn, protocol, request, state.backend.clone()).await;
            });
            let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, "");
            let h = response.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            if let Some(p) = protocol {
                h.insert(PROTOCOL_HEADER, HeaderValue::from_static(p));
            }
            Ok(response)
        }
        Some("websocket") => {
            let Some(key) = req
                .headers()
                .get(header::SEC_WEBSOCKET_KEY)
                .map(|k| derive_accept_key(k.as_bytes()))
            else {
                return Ok(respond(
                    StatusCode::BAD_REQUEST,
                    "missing Sec-WebSocket-Key",
                ));
            };
            let server_protocols: &[&str] = if is_port_forward {
                &PORT_FORWARD_WEBSOCKET_PROTOCOLS
            } else {
                &websocket::REMOTE_COMMAND_PROTOCOLS
            };
            let client =
                remotecommand::header_list(header_values(req.headers(), "Sec-WebSocket-Protocol"));
            let protocol = match remotecommand::negotiate(&client, server_protocols) {
                Ok(p) => p,
                Err(message) => {
                    return Ok(respond(
                        StatusCode::BAD_REQUEST,
                        &format!("unable to upgrade: {message}"),
                    ));
                }
            };
            let ports = query_ports(req.uri());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let _open = metrics::session_opened(session_kind(&request));
                let ws = WebSocketStream::from_raw_socket(
                    IdleTimeout::new(TokioIo::new(upgraded), state.limits.idle_timeout),
                    WsRole::Server,
                    None,
                )
                .await;
                if protocol == Some(tunnel::PORT_FORWARD_TUNNEL_PROTOCOL)
                    && let StreamRequest::PortForward(params) = request
                {
                    let conn = SpdyConnection::new(tunnel::WebSocketBytes::new(ws), Role::Server);
                    portforward::serve_spdy(conn, state.backend.clone(), params).await;
                    return;
                }
                serve_websocket(
                    ws,
                    protocol.unwrap_or(websocket::V1),
                    request,
                    state.backend.clone(),
                    ports,
                )
                .await;
            });
            let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, "");
            let h = response.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&key).expect("base64 is a header value"),
            );
            if let Some(p) = protocol {
                h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
            }
            Ok(response)
        }
        _ => Ok(respond(
            StatusCode::BAD_REQUEST,
            "streaming needs an SPDY/3.1 or WebSocket upgrade",
        )),
    }
}

fn command_of(request: &StreamRequest) -> Option<Command> {
    match request {
        StreamRequest::Exec(p) => Some(Command {
            exec: Some(p.cmd.clone()),
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            tty: p.tty,
        }),
        StreamRequest::Attach(p) => Some(Command {
            exec: None,
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            tty: p.tty,
        }),
        StreamRequest::PortForward(_) => None,
    }
}

async fn serve_spdy(
    conn: SpdyConnection,
    protocol: Option<&'static str>,
    request: StreamRequest,
    backend: Arc<dyn Backend>,
) {
    match request {
        StreamRequest::PortForward(params) => portforward::serve_spdy(conn, backend, params).await,
        other => {
            let command = command_of(&other).expect("a remote command");
            remotecommand::serve(
                conn,
                protocol,
                command,
                remotecommand::runner(backend, other),
            )
            .await;
        }
    }
}

async fn serve_websocket<S>(
    ws: WebSocketStream<S>,
    protocol: &'static str,
    request: StreamRequest,
    backend: Arc<dyn Backend>,
    ports: Vec<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let encoding = websocket::Encoding::of(protocol);
    match request {
        StreamRequest::PortForward(params) => {
            let mut valid = Vec::new();
            for port in &ports {
                match portforward::check_port(port, &params.ports) {
                    Ok(p) => valid.push(p),
                    Err(e) => {
                        tracing::debug!(error = %e, "rejecting a port-forward port");
                        let channels = websocket::Channels::new(ws, encoding, &[], &[]);
                        channels.close().await;
                        return;
                    }
                }
            }
            let readable: Vec<bool> = (0..valid.len() * 2).map(|i| i % 2 == 0).collect();
            let writable = vec![true; valid.len() * 2];
            let channels = websocket::Channels::new(ws, encoding, &readable, &writable);
            portforward::serve_websocket(channels, backend, params, valid).await;
        }
        other => {
            let command = command_of(&other).expect("a remote command");
            let readable = [command.stdin, false, false, false, command.tty];
            let writable = [false, command.stdout, command.stderr, true, false];
            let mut channels = websocket::Channels::new(ws, encoding, &readable, &writable);
            // The kubelet's signal that the session is up.
            let first = if command.stdout {
                1
            } else if command.stderr {
                2
            } else {
                3
            };
            channels.send(first, &[]).await;
            let io = crate::backend::StreamIo {
                stdin: channels.take_reader(0).map(|r| Box::pin(r) as _),
                stdout: channels.take_writer(1).map(|w| Box::pin(w) as _),
                stderr: channels.take_writer(2).map(|w| Box::pin(w) as _),
                tty: command.tty,
                resize: channels
                    .take_reader(4)
                    .map(remotecommand::spawn_resize_decoder),
                client_gone: channels.gone(),
            };
            let outcome = remotecommand::runner(backend, other)(io).await;
            let cmd = command.exec.unwrap_or_default();
            let report = if protocol.starts_with("v4") || protocol.starts_with("v5") {
                status::v4_status(&outcome, &cmd)
            } else {
                status::v1_status(&outcome, &cmd)
            };
            if !report.is_empty() {
                channels.send(3, &report).await;
            }
            channels.close().await;
        }
    }
}
