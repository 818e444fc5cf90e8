//! A unix socket that forwards to the real Docker socket, counts the API
//! requests that pass, and can be cut and restored: a test can see how
//! many Docker calls an operation costs, and take Docker away from the shim
//! (and give it back) without stopping the machine's daemon.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "HEAD"];

pub struct DockerProxy {
    path: PathBuf,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

/// `METHOD PATH` when `line` is an HTTP/1 request line.
fn request_line(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, path, version) = (parts.next()?, parts.next()?, parts.next()?);
    (METHODS.contains(&method) && path.starts_with('/') && version.starts_with("HTTP/1."))
        .then(|| format!("{method} {path}"))
}

/// Copies client bytes to Docker, noting every request line on the way.
async fn forward_requests(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let mut line = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Some(request) = request_line(line.strip_suffix(b"\r").unwrap_or(&line)) {
                    requests.lock().unwrap().push(request);
                }
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl DockerProxy {
    /// Listens on `path` and forwards every connection to Docker.
    pub fn start(path: &Path) -> Self {
        let mut proxy = Self {
            path: path.to_path_buf(),
            accept: None,
            connections: Arc::default(),
            requests: Arc::default(),
        };
        proxy.resume();
        proxy
    }

    /// `unix://<path>`, for `--docker-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The requests seen so far (`METHOD PATH`), and forgets them.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
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
        let requests = self.requests.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let requests = requests.clone();
                let target = crate::daemon::test_daemon().socket.clone();
                let forward = tokio::spawn(async move {
                    let Ok(docker) = UnixStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, mut client_write) = client.into_split();
                    let (mut docker_read, docker_write) = docker.into_split();
                    let up = forward_requests(client_read, docker_write, requests);
                    let down = async {
                        let _ = tokio::io::copy(&mut docker_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(up, down);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_recognised() {
        assert_eq!(
            request_line(b"GET /v1.41/containers/json?all=1 HTTP/1.1"),
            Some("GET /v1.41/containers/json?all=1".into())
        );
        assert_eq!(request_line(b"{\"Image\":\"x\"}"), None);
        assert_eq!(request_line(b"Host: docker"), None);
    }
}
