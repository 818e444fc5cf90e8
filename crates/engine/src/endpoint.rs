//! Where the Docker Engine API listens (`--docker-endpoint`).

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// `unix:///var/run/docker.sock`, or a bare absolute path.
    Unix(PathBuf),
    /// `tcp://host:port` or `http://host:port`: plain HTTP.
    Tcp(String),
}

impl DockerEndpoint {
    pub fn parse(endpoint: &str) -> Option<Self> {
        if let Some(path) = endpoint.strip_prefix("unix://") {
            Some(DockerEndpoint::Unix(PathBuf::from(path)))
        } else if let Some(addr) = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
        {
            Some(DockerEndpoint::Tcp(addr.trim_end_matches('/').to_string()))
        } else if endpoint.starts_with('/') {
            Some(DockerEndpoint::Unix(PathBuf::from(endpoint)))
        } else {
            None
        }
    }

    /// The scheme and authority requests are addressed to. Over a unix
    /// socket the host is never used: the connector dials the socket.
    pub(crate) fn base_url(&self) -> String {
        match self {
            DockerEndpoint::Unix(_) => "http://docker".to_string(),
            DockerEndpoint::Tcp(address) => format!("http://{address}"),
        }
    }
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerEndpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerEndpoint::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            DockerEndpoint::parse("unix:///var/run/docker.sock"),
            Some(DockerEndpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            DockerEndpoint::parse("/run/docker.sock"),
            Some(DockerEndpoint::Unix("/run/docker.sock".into()))
        );
        assert_eq!(
            DockerEndpoint::parse("tcp://127.0.0.1:2375"),
            Some(DockerEndpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(
            DockerEndpoint::parse("http://127.0.0.1:2375/"),
            Some(DockerEndpoint::Tcp("127.0.0.1:2375".into()))
        );
        assert_eq!(DockerEndpoint::parse("npipe:////./pipe/docker"), None);
        assert_eq!(
            DockerEndpoint::parse("tcp://10.0.0.1:2375")
                .unwrap()
                .to_string(),
            "tcp://10.0.0.1:2375"
        );
    }
}
