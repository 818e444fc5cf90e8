//! What the streaming server asks of the runtime.

use std::pin::Pin;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParams {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachParams {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardParams {
    pub pod_sandbox_id: String,
    /// The ports the CRI request named; empty allows any.
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    Exec(ExecParams),
    Attach(AttachParams),
    PortForward(PortForwardParams),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The client's streams, as the request asked for them.
pub struct StreamIo {
    pub stdin: Option<Reader>,
    pub stdout: Option<Writer>,
    pub stderr: Option<Writer>,
    pub tty: bool,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Cancelled when the client disconnects: whatever runs for it stops.
    pub client_gone: tokio_util::sync::CancellationToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ExitCode(i32),
    Failed(String),
}

pub trait Backend: Send + Sync + 'static {
    fn exec(&self, params: ExecParams, io: StreamIo) -> BoxFuture<'static, Outcome>;
    fn attach(&self, params: AttachParams, io: StreamIo) -> BoxFuture<'static, Outcome>;
    /// A TCP connection to `localhost:port` in the pod's network namespace.
    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<tokio::net::TcpStream>>;
}
