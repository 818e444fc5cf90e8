//! The streaming server's backend on Docker: exec and attach over hijacked
//! Docker API connections, port-forward by connecting from inside the
//! pod's network namespace.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bollard::exec::CreateExecOptions;
use bollard::query_parameters::{ResizeContainerTTYOptions, ResizeExecOptions};
use bytes::Bytes;
use cri_dockerd_engine::Engine;
use cri_dockerd_streaming::{
    AttachParams, Backend, ExecParams, Outcome, StreamIo, TerminalSize, backend::Writer,
};
use futures::future::BoxFuture;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::container::exec::{kill_process_tree, running_exec_pid};
use crate::store::running_pid;

pub use cri_dockerd_engine::DockerEndpoint;

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Clone)]
pub struct DockerStreams {
    engine: Engine,
}

impl DockerStreams {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// POSTs to the Docker API with `Upgrade: tcp` and returns the raw,
    /// bidirectional connection Docker hands over (stdin in, output out).
    async fn hijack(&self, path: &str, body: serde_json::Value) -> io::Result<Box<dyn Io>> {
        let uri = format!("/v{}{path}", self.engine.api_version());
        let io: Box<dyn Io> = match self.engine.endpoint() {
            DockerEndpoint::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            DockerEndpoint::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await?),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection.with_upgrades());
        let request = http::Request::post(uri)
            .header(http::header::HOST, "docker")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "tcp")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(io::Error::other)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(io::Error::other(format!(
                "Docker answered {status}: {}",
                body.trim()
            )));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(io::Error::other)?;
        Ok(Box::new(TokioIo::new(upgraded)))
    }
}

/// Docker's multiplexed stream: 8-byte headers (stream, 0, 0, 0, length).
async fn demux<R: AsyncRead + Unpin>(
    mut from: R,
    mut stdout: Option<Writer>,
    mut stderr: Option<Writer>,
) -> io::Result<()> {
    let mut header = [0u8; 8];
    let mut payload = vec![0u8; 32 * 1024];
    loop {
        match from.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut remaining =
            u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let target = match header[0] {
            1 => stdout.as_mut(),
            2 => stderr.as_mut(),
            _ => None,
        };
        let mut target = target;
        while remaining > 0 {
            let n = remaining.min(payload.len());
            from.read_exact(&mut payload[..n]).await?;
            if let Some(w) = target.as_mut() {
                w.write_all(&payload[..n]).await?;
            }
            remaining -= n;
        }
    }
}

/// Output until Docker closes the stream; an error means the client went away.
async fn pump_output(
    output: impl AsyncRead + Unpin,
    tty: bool,
    stdout: Option<Writer>,
    stderr: Option<Writer>,
) -> io::Result<()> {
    let (mut stdout, mut stderr) = (stdout, stderr);
    let result = if tty {
        let mut output = output;
        match stdout.as_mut() {
            Some(w) => tokio::io::copy(&mut output, w).await.map(|_| ()),
            None => tokio::io::copy(&mut output, &mut tokio::io::sink())
                .await
                .map(|_| ()),
        }
    } else {
        demux(output, stdout.take(), stderr.take()).await
    };
    if let Some(mut w) = stdout {
        let _ = w.shutdown().await;
    }
    if let Some(mut w) = stderr {
        let _ = w.shutdown().await;
    }
    result
}

/// Client stdin into Docker; EOF half-closes Docker's side.
async fn pump_stdin(stdin: Option<crate::streams::Reader>, mut to: impl AsyncWrite + Unpin) {
    if let Some(mut stdin) = stdin {
        let _ = tokio::io::copy(&mut stdin, &mut to).await;
        let _ = to.shutdown().await;
    }
}

type Reader = cri_dockerd_streaming::backend::Reader;

async fn pump_resizes<F, Fut>(resize: Option<mpsc::Receiver<TerminalSize>>, apply: F)
where
    F: Fn(TerminalSize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if let Some(mut resize) = resize {
        while let Some(size) = resize.recv().await {
            apply(size).await;
        }
    }
}

impl DockerStreams {
    async fn run_exec(&self, params: ExecParams, io: StreamIo) -> Outcome {
        let created = self
            .engine
            .api()
            .create_exec(
                &params.container_id,
                CreateExecOptions::<String> {
                    cmd: Some(params.cmd.clone()),
                    attach_stdin: Some(params.stdin),
                    attach_stdout: Some(params.stdout),
                    attach_stderr: Some(params.stderr),
                    tty: Some(params.tty),
                    ..Default::default()
                },
            )
            .await;
        let exec_id = match created {
            Ok(e) => e.id,
            Err(e) => return Outcome::Failed(format!("creating the exec: {e}")),
        };
        let conn = match self
            .hijack(
                &format!("/exec/{exec_id}/start"),
                serde_json::json!({"Detach": false, "Tty": params.tty}),
            )
            .await
        {
            Ok(conn) => conn,
            Err(e) => return Outcome::Failed(format!("starting the exec: {e}")),
        };
        let (read_half, write_half) = tokio::io::split(conn);
        let docker = self.engine.api();
        let resize_id = exec_id.clone();
        let resizes = pump_resizes(io.resize, move |size| {
            let docker = docker.clone();
            let id = resize_id.clone();
            async move {
                let options = ResizeExecOptions {
                    h: i32::from(size.height),
                    w: i32::from(size.width),
                };
                if let Err(e) = docker.resize_exec(&id, options).await {
                    tracing::debug!(error = %e, "resizing the exec tty failed");
                }
            }
        });
        let stdin = pump_stdin(io.stdin, write_half);
        let output = pump_output(read_half, params.tty, io.stdout, io.stderr);
        let inputs = async {
            tokio::join!(stdin, resizes);
            std::future::pending::<()>().await
        };
        // The command is over when its output ends; stdin and resizes are
        // then abandoned. A client that goes away ends it early.
        let finished = tokio::select! {
            result = output => result,
            () = inputs => Ok(()),
            () = io.client_gone.cancelled() => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the client disconnected")),
        };
        if let Err(e) = finished {
            // The client went away mid-stream: nothing is left running for it.
            tracing::debug!(exec_id, error = %e, "exec client disconnected; killing the command");
            if let Some(pid) = running_exec_pid(&self.engine, &exec_id).await {
                kill_process_tree(pid);
            }
            return Outcome::Failed(format!("stream error: {e}"));
        }
        for _ in 0..100 {
            match self.engine.inspect_exec(&exec_id).await {
                Ok(i) if i.running != Some(true) => {
                    return match i.exit_code.unwrap_or(0) {
                        0 => Outcome::Success,
                        code => Outcome::ExitCode(code as i32),
                    };
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => return Outcome::Failed(format!("inspecting the exec: {e}")),
            }
        }
        Outcome::Failed("the exec did not finish after its output closed".into())
    }

    async fn run_attach(&self, params: AttachParams, io: StreamIo) -> Outcome {
        let query = format!(
            "/containers/{}/attach?stream=1&stdin={}&stdout={}&stderr={}",
            params.container_id, params.stdin as u8, params.stdout as u8, params.stderr as u8
        );
        let conn = match self.hijack(&query, serde_json::Value::Null).await {
            Ok(conn) => conn,
            Err(e) => return Outcome::Failed(format!("attaching: {e}")),
        };
        let (read_half, write_half) = tokio::io::split(conn);
        let docker = self.engine.api();
        let id = params.container_id.clone();
        let resizes = pump_resizes(io.resize, move |size| {
            let docker = docker.clone();
            let id = id.clone();
            async move {
                let options = ResizeContainerTTYOptions {
                    h: size.height as i32,
                    w: size.width as i32,
                };
                if let Err(e) = docker.resize_container_tty(&id, options).await {
                    tracing::debug!(error = %e, "resizing the container tty failed");
                }
            }
        });
        let stdin = pump_stdin(io.stdin, write_half);
        let output = pump_output(read_half, params.tty, io.stdout, io.stderr);
        let inputs = async {
            tokio::join!(stdin, resizes);
            std::future::pending::<()>().await
        };
        // Detaching when the client goes away leaves the container running.
        tokio::select! {
            _ = output => {}
            () = inputs => {}
            () = io.client_gone.cancelled() => {}
        }
        Outcome::Success
    }

    async fn connect(&self, sandbox_id: String, port: u16) -> io::Result<tokio::net::TcpStream> {
        let inspect = self
            .engine
            .inspect_container(&sandbox_id, false)
            .await
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("pod sandbox {sandbox_id}: {e}"),
                )
            })?;
        let pid = running_pid(&inspect).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("pod sandbox {sandbox_id} is not running"),
            )
        })?;
        connect_in_netns(pid, port).await
    }
}

/// Connects to `localhost:port` inside the network namespace of `pid`. A
/// thread of its own enters the namespace (it exits right after, so no
/// runtime thread is ever left in a pod's namespace); the socket stays in
/// the namespace it was created in.
pub async fn connect_in_netns(pid: i64, port: u16) -> io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("netns-{pid}"))
        .spawn(move || {
            let connect = || -> io::Result<std::net::TcpStream> {
                let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
                std::net::TcpStream::connect_timeout(&v4, Duration::from_secs(10))
                    .or_else(|_| std::net::TcpStream::connect_timeout(&v6, Duration::from_secs(10)))
            };
            let _ = tx.send(connect());
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the namespace thread died"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

impl Backend for DockerStreams {
    fn exec(&self, params: ExecParams, io: StreamIo) -> BoxFuture<'static, Outcome> {
        let this = self.clone();
        Box::pin(async move { this.run_exec(params, io).await })
    }

    fn attach(&self, params: AttachParams, io: StreamIo) -> BoxFuture<'static, Outcome> {
        let this = self.clone();
        Box::pin(async move { this.run_attach(params, io).await })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, io::Result<tokio::net::TcpStream>> {
        let this = self.clone();
        Box::pin(async move { this.connect(pod_sandbox_id, port).await })
    }
}

/// The backend behind the trait object the server takes.
pub fn backend(engine: Engine) -> Arc<dyn Backend> {
    Arc::new(DockerStreams::new(engine))
}

/// The Exec, Attach and PortForward RPCs: check the request, return a URL.
impl crate::docker_cri::DockerCri {
    fn streaming(&self) -> crate::error::Result<&cri_dockerd_streaming::StreamingServer> {
        self.streaming.as_ref().ok_or_else(|| {
            crate::error::Error::Unavailable("the streaming server is not running".into())
        })
    }

    fn stream_url(
        &self,
        request: cri_dockerd_streaming::StreamRequest,
    ) -> crate::error::Result<String> {
        self.streaming()?
            .url(request)
            .map_err(|e| crate::error::Error::Unavailable(e.to_string()))
    }

    async fn running_container(&self, id: &str) -> crate::error::Result<String> {
        let inspect = self.inspect_container_checked(id).await?;
        let full_id = inspect.id.clone().unwrap_or_else(|| id.to_string());
        if running_pid(&inspect).is_none() {
            return Err(crate::error::Error::FailedPrecondition(format!(
                "container {full_id} is not running"
            )));
        }
        Ok(full_id)
    }

    pub async fn exec_url(
        &self,
        req: &cri_dockerd_api::v1::ExecRequest,
    ) -> crate::error::Result<String> {
        use crate::error::Error;
        if req.cmd.is_empty() || req.cmd[0].is_empty() {
            return Err(Error::InvalidArgument("cmd must not be empty".into()));
        }
        check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
        let container_id = self.running_container(&req.container_id).await?;
        self.stream_url(cri_dockerd_streaming::StreamRequest::Exec(ExecParams {
            container_id,
            cmd: req.cmd.clone(),
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        }))
    }

    pub async fn attach_url(
        &self,
        req: &cri_dockerd_api::v1::AttachRequest,
    ) -> crate::error::Result<String> {
        check_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
        let container_id = self.running_container(&req.container_id).await?;
        self.stream_url(cri_dockerd_streaming::StreamRequest::Attach(AttachParams {
            container_id,
            tty: req.tty,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        }))
    }

    pub async fn port_forward_url(
        &self,
        req: &cri_dockerd_api::v1::PortForwardRequest,
    ) -> crate::error::Result<String> {
        use crate::error::Error;
        let ports = req
            .port
            .iter()
            .map(|p| {
                u16::try_from(*p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| Error::InvalidArgument(format!("invalid port {p}")))
            })
            .collect::<crate::error::Result<Vec<u16>>>()?;
        let sandbox = self
            .sandbox_record(&req.pod_sandbox_id, crate::store::Freshness::Stored)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("pod sandbox {} not found", req.pod_sandbox_id))
            })?;
        if sandbox.running_pid().is_none() {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not running",
                req.pod_sandbox_id
            )));
        }
        let pod_sandbox_id = sandbox.id.clone();
        self.stream_url(cri_dockerd_streaming::StreamRequest::PortForward(
            cri_dockerd_streaming::PortForwardParams {
                pod_sandbox_id,
                ports,
            },
        ))
    }
}

/// At least one stream, and a TTY merges stderr into stdout.
fn check_stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> crate::error::Result<()> {
    use crate::error::Error;
    if !(stdin || stdout || stderr) {
        return Err(Error::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    if tty && stderr {
        return Err(Error::InvalidArgument(
            "tty and stderr cannot both be true".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demultiplexes_docker_frames() {
        let mut wire = Vec::new();
        for (stream, data) in [(1u8, &b"out"[..]), (2, b"err"), (1, b"more")] {
            wire.extend_from_slice(&[stream, 0, 0, 0]);
            wire.extend_from_slice(&(data.len() as u32).to_be_bytes());
            wire.extend_from_slice(data);
        }
        let (out_w, mut out_r) = tokio::io::duplex(1024);
        let (err_w, mut err_r) = tokio::io::duplex(1024);
        demux(&wire[..], Some(Box::pin(out_w)), Some(Box::pin(err_w)))
            .await
            .unwrap();
        let mut out = Vec::new();
        out_r.read_to_end(&mut out).await.unwrap();
        let mut err = Vec::new();
        err_r.read_to_end(&mut err).await.unwrap();
        assert_eq!(out, b"outmore");
        assert_eq!(err, b"err");
    }
}
