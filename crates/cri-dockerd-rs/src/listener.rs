//! The CRI endpoint: a unix socket we create (its parent directory made, a
//! stale one replaced, mode 0660, removed on exit), a socket systemd passed
//! (`fd://`, left in place on exit: it is systemd's), or a TCP address.
//!
//! Unix connections go through [`AuthorityFixed`], so gRPC clients that
//! name the socket path in `:authority` are served.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cri_dockerd_server::{CriService, ObserveLayer};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;

use crate::authority::AuthorityFixed;
use crate::metrics_endpoint::CriAddress;
use crate::systemd::{PassedListener, SystemdHandover};

pub enum Listener {
    Unix {
        listener: UnixListener,
        /// The socket file to remove on exit; `None` when systemd owns it.
        created: Option<PathBuf>,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `endpoint`: `unix:///path`, `/path`, `tcp://host:port`,
    /// `fd://` or `fd://NAME` (a socket from `systemd`).
    pub fn bind(endpoint: &str, systemd: &mut SystemdHandover) -> anyhow::Result<Self> {
        if let Some(name) = endpoint.strip_prefix("fd://") {
            return Ok(match systemd.listener(name)? {
                PassedListener::Unix(l) => Listener::Unix {
                    listener: UnixListener::from_std(l)?,
                    created: None,
                },
                PassedListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            });
        }
        if let Some(address) = endpoint.strip_prefix("tcp://") {
            let std_listener = std::net::TcpListener::bind(address)
                .with_context(|| format!("binding {endpoint}"))?;
            std_listener.set_nonblocking(true)?;
            return Ok(Listener::Tcp(TcpListener::from_std(std_listener)?));
        }
        let path = match endpoint.strip_prefix("unix://") {
            Some(path) => PathBuf::from(path),
            None if endpoint.starts_with('/') => PathBuf::from(endpoint),
            None => bail!(
                "unsupported --container-runtime-endpoint {endpoint:?} (unix:///path, fd:// or tcp://host:port)"
            ),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        remove_stale_socket(&path)?;
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("chmod 0660 {}", path.display()))?;
        Ok(Listener::Unix {
            listener,
            created: Some(path),
        })
    }

    /// Where this process can dial its own CRI (for `/healthz`).
    pub fn cri_address(&self) -> CriAddress {
        match self {
            Listener::Unix { listener, .. } => listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(PathBuf::from))
                .map_or(CriAddress::Unknown, CriAddress::Unix),
            Listener::Tcp(listener) => listener
                .local_addr()
                .map_or(CriAddress::Unknown, CriAddress::Tcp),
        }
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish.
    /// Every call goes through `observe` (metrics, request log).
    pub async fn serve(
        self,
        service: CriService,
        observe: ObserveLayer,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let router = Server::builder()
            .layer(observe)
            .add_service(service.runtime_server())
            .add_service(service.image_server());
        match self {
            Listener::Unix { listener, created } => {
                let incoming =
                    UnixListenerStream::new(listener).map(|c| c.map(AuthorityFixed::new));
                let outcome = router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await;
                if let Some(path) = created {
                    let _ = std::fs::remove_file(&path);
                }
                outcome.context("serving the CRI socket")
            }
            Listener::Tcp(listener) => router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                .await
                .context("serving the CRI endpoint"),
        }
    }
}

fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display())),
        Ok(_) => bail!("{} exists and is not a socket", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
}
