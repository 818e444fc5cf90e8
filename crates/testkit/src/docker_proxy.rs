//! A unix socket that forwards to the real Docker socket and can be cut
//! and restored, so a test can take Docker away from the shim (and give it
//! back) without stopping the machine's daemon.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

pub struct DockerProxy {
    path: PathBuf,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DockerProxy {
    /// Listens on `path` and forwards every connection to Docker.
    pub fn start(path: &Path) -> Self {
        let mut proxy = Self {
            path: path.to_path_buf(),
            accept: None,
            connections: Arc::default(),
        };
        proxy.resume();
        proxy
    }

    /// `unix://<path>`, for `--docker-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Docker is gone: the socket is removed and open connections broken.
    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Docker is back at the same path.
    pub fn resume(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("binding the Docker proxy socket");
        let connections = self.connections.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let forward = tokio::spawn(async move {
                    if let Ok(mut docker) = UnixStream::connect(DOCKER_SOCKET).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut docker).await;
                    }
                });
                connections.lock().unwrap().push(forward);
            }
        }));
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
