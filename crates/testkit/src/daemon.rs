//! Which Docker Engine the tests run against. `make test` runs the suite
//! once per engine of the matrix (`scripts/test-env.sh` unpacks and starts
//! them): `CRID_TEST_ENGINE` names one (`26.1`, `28.5`,
//! `28.5-containerd`); unset or `host`, it is the machine's own daemon on
//! `/var/run/docker.sock` (Debian 12's 20.10 in CI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The daemon under test.
#[derive(Debug, Clone)]
pub struct TestDaemon {
    /// `host`, `26.1`, `28.5`, `28.5-containerd`.
    pub name: String,
    pub socket: PathBuf,
    /// The engine's own binaries (dockerd, containerd, shims); `None` for
    /// the machine's daemon, whose binaries are on PATH.
    pub bin_dir: Option<PathBuf>,
    /// Its daemon.json, which private daemons of the same engine start
    /// from (the containerd image store, test runtimes).
    pub config: serde_json::Value,
}

const ENGINE_ENV: &str = "CRID_TEST_ENGINE";

/// The daemon this test process runs against.
pub fn test_daemon() -> &'static TestDaemon {
    static DAEMON: OnceLock<TestDaemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        let name = std::env::var(ENGINE_ENV)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "host".into());
        if name == "host" {
            return TestDaemon {
                name,
                socket: "/var/run/docker.sock".into(),
                bin_dir: None,
                config: read_config(Path::new("/etc/docker/daemon.json")),
            };
        }
        let dir = engine_dir(&name);
        assert!(
            dir.join("bin/dockerd").exists(),
            "engine {name:?} ({ENGINE_ENV}) is not installed in {}; run `make test-env` (scripts/test-env.sh) as root first",
            dir.display()
        );
        TestDaemon {
            socket: dir.join("docker.sock"),
            bin_dir: Some(dir.join("bin")),
            config: read_config(&dir.join("daemon.json")),
            name,
        }
    })
}

/// Where `scripts/test-env.sh` keeps an engine of the matrix.
pub fn engine_dir(name: &str) -> PathBuf {
    crate::env::state_dir().join("engines").join(name)
}

fn read_config(path: &Path) -> serde_json::Value {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

impl TestDaemon {
    /// `unix:///…/docker.sock`, as `--docker-endpoint` and `DOCKER_HOST`
    /// take it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Whether the engine keeps images in containerd's store.
    pub fn containerd_store(&self) -> bool {
        self.config
            .pointer("/features/containerd-snapshotter")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// A command for this engine's binary `program` (`dockerd`), with the
    /// engine's binaries first on PATH (dockerd starts its containerd and
    /// shims from there; runc is the machine's).
    pub fn command(&self, program: &str) -> std::process::Command {
        match &self.bin_dir {
            Some(bin) => {
                let mut command = std::process::Command::new(bin.join(program));
                let path = std::env::var("PATH").unwrap_or_default();
                command.env("PATH", format!("{}:{path}", bin.display()));
                command
            }
            None => std::process::Command::new(program),
        }
    }

    /// The daemon's process, from its pid file.
    pub fn dockerd_pid(&self) -> Option<u32> {
        let file = match &self.bin_dir {
            Some(bin) => bin.parent()?.join("docker.pid"),
            None => "/var/run/docker.pid".into(),
        };
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// A `docker` CLI command that talks to this engine.
    pub fn cli(&self) -> std::process::Command {
        let mut command = std::process::Command::new("docker");
        command.env("DOCKER_HOST", self.endpoint());
        command
    }
}
