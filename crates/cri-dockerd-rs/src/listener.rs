//! The CRI endpoint: a unix socket (created with its parent directory, a
//! stale one replaced, mode 0660, removed on exit) or a TCP address.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cri_dockerd_server::CriService;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::Server;

pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Tcp(TcpListener),
}

impl Listener {
    pub fn bind(endpoint: &str) -> anyhow::Result<Self> {
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
                "unsupported --container-runtime-endpoint {endpoint:?} (unix:///path or tcp://host:port)"
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
        Ok(Listener::Unix { listener, path })
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish.
    pub async fn serve(
        self,
        service: CriService,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let router = Server::builder()
            .add_service(service.runtime_server())
            .add_service(service.image_server());
        match self {
            Listener::Unix { listener, path } => {
                let outcome = router
                    .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                    .await;
                let _ = std::fs::remove_file(&path);
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
