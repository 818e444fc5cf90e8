//! The machine-wide test environment: Docker, images, registries.

use std::time::Duration;

use bollard::Docker;
use cri_dockerd_engine::Engine;
use tokio::sync::OnceCell;

use crate::daemon::{TestDaemon, test_daemon};
use crate::images;

pub const PLAIN_REGISTRY: &str = "127.0.0.1:5000";
pub const AUTH_REGISTRY: &str = "127.0.0.1:5001";
pub const REGISTRY_USER: &str = "crid";
pub const REGISTRY_PASSWORD: &str = "crid-secret";
/// Built from the machine's busybox-static; the image every test container runs.
pub const BUSYBOX_IMAGE: &str = "crid-test.local/busybox:latest";
/// cri-dockerd's default --pod-infra-container-image, built from our pause.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

pub struct TestEnv {
    /// bollard on the daemon under test, for what tests change.
    pub docker: Docker,
    /// The shim's own client on the same daemon, for what tests read back:
    /// it decodes every engine's answers (bollard's strict models fail on
    /// some of the containerd image store's).
    pub engine: Engine,
    pub daemon: &'static TestDaemon,
    pub busybox_id: String,
    pub pause_id: String,
}

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

fn registry_port(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(port) if !port.is_empty() => format!("127.0.0.1:{port}"),
        _ => default.to_string(),
    }
}

pub fn plain_registry() -> String {
    registry_port("CRID_TEST_REGISTRY_PORT", PLAIN_REGISTRY)
}

pub fn auth_registry() -> String {
    registry_port("CRID_TEST_AUTH_REGISTRY_PORT", AUTH_REGISTRY)
}

/// Connects to Docker and builds the test images once per test process
/// (and once per machine: a file lock guards the image builds).
pub async fn test_env() -> &'static TestEnv {
    ENV.get_or_init(|| async {
        let daemon = test_daemon();
        let (docker, engine) = connect(daemon).await;
        let version = engine.daemon_version();
        // In every test's output: which engine it ran on.
        eprintln!(
            "[testkit] engine {}: Docker {} (API {}), {} image store, at {}",
            daemon.name,
            version.version,
            version.api,
            if daemon.containerd_store() {
                "containerd"
            } else {
                "graph driver"
            },
            daemon.endpoint()
        );
        let (busybox_id, pause_id) = images::ensure_base_images(&docker, &engine).await;
        for registry in [plain_registry(), auth_registry()] {
            check_registry(&registry).await;
        }
        TestEnv {
            docker,
            engine,
            daemon,
            busybox_id,
            pause_id,
        }
    })
    .await
}

async fn connect(daemon: &TestDaemon) -> (Docker, Engine) {
    let hint = "run `make test-env` (scripts/test-env.sh) as root first: it installs and starts Docker, the engines of the matrix and the test registries";
    let socket = daemon.socket.display().to_string();
    let engine = Engine::connect(&daemon.endpoint(), Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Docker ({}) does not answer at {socket}: {e}; {hint}",
                daemon.name
            )
        });
    let docker = Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|e| panic!("Docker is not available at {socket} ({e}); {hint}"));
    let docker = docker
        .negotiate_version()
        .await
        .unwrap_or_else(|e| panic!("Docker does not answer at {socket} ({e}); {hint}"));
    (docker, engine)
}

async fn check_registry(address: &str) {
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(address),
    )
    .await;
    match connect {
        Ok(Ok(_)) => {}
        _ => panic!(
            "the test registry at {address} does not answer; run `make test-env` (scripts/test-env.sh) first"
        ),
    }
}

/// Where `scripts/test-env.sh` keeps its state and the test-only tools it
/// unpacks (`CRID_TEST_STATE`, as in the script).
pub fn state_dir() -> std::path::PathBuf {
    std::env::var_os("CRID_TEST_STATE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/lib/cri-dockerd-rs-test".into())
}

/// A test tool `scripts/test-env.sh` installs: the path, or a panic that
/// says how to get it.
pub fn tool(name: &str) -> std::path::PathBuf {
    let in_state = state_dir().join("bin").join(name);
    if in_state.exists() {
        return in_state;
    }
    for dir in ["/usr/bin", "/usr/sbin", "/bin"] {
        let path = std::path::Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is missing; run `make test-env` (scripts/test-env.sh) as root first")
}

/// Debian's kubectl (package kubernetes-client), unpacked by
/// `scripts/test-env.sh` into the state directory: a real client-go SPDY
/// client for exec, attach and port-forward.
pub fn kubectl() -> std::path::PathBuf {
    let path = state_dir().join("bin/kubectl");
    assert!(
        path.exists(),
        "{} is missing; run `make test-env` (scripts/test-env.sh) as root first: it unpacks Debian's kubernetes-client there",
        path.display()
    );
    path
}

/// check-jsonschema (PyPI), installed by `scripts/test-env.sh` into a venv
/// in the state directory: validates workflow files against the schema it
/// carries.
pub fn check_jsonschema() -> std::path::PathBuf {
    let path = state_dir().join("bin/check-jsonschema");
    assert!(
        path.exists(),
        "{} is missing; run `make test-env` (scripts/test-env.sh) as root first",
        path.display()
    );
    path
}
