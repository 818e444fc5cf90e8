//! A Docker daemon of the test's own, for scenarios that stop and start
//! Docker under the shim without disturbing the tests that share the
//! machine's daemon. It has its own socket, data root, exec root (so its own
//! containerd), config file and default bridge; no iptables rules, and no
//! way out to registries beyond loopback. (`--bridge=none` is no option:
//! dockerd then deletes `docker0`, the machine daemon's bridge.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;

pub struct PrivateDocker {
    dir: PathBuf,
    pub socket: PathBuf,
    pub data_root: PathBuf,
    exec_root: PathBuf,
    config: PathBuf,
    log: PathBuf,
    bridge: String,
    child: Option<Child>,
    binaries: Binaries,
}

/// Which dockerd a private daemon runs.
#[derive(Debug, Clone)]
enum Binaries {
    /// The engine under test's, with its daemon.json under the test's.
    UnderTest,
    /// These binaries (`None`: the machine's, from PATH), with the test's
    /// daemon.json alone.
    Given(Option<PathBuf>),
}

impl PrivateDocker {
    /// Starts a daemon of the engine under test; `config` is its
    /// daemon.json (over the engine's own).
    pub async fn start(config: &serde_json::Value) -> Self {
        Self::start_with(Binaries::UnderTest, config).await
    }

    /// Starts a daemon from the binaries in `bin_dir` (an engine of the
    /// matrix; `None`: the machine's dockerd) with exactly `config`.
    pub async fn start_engine(bin_dir: Option<&Path>, config: &serde_json::Value) -> Self {
        Self::start_with(Binaries::Given(bin_dir.map(Path::to_path_buf)), config).await
    }

    async fn start_with(binaries: Binaries, config: &serde_json::Value) -> Self {
        let name = crate::unique("dk");
        let dir = crate::env::state_dir().join("private-docker").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        // containerd's socket lives under the exec root: keep it short.
        let exec_root = PathBuf::from("/run").join(format!("crid-{name}"));
        // Its own bridge, which dockerd only uses (never creates or deletes).
        let bridge = format!("crid-{}", &name[2..10]);
        let subnet = u8::from_str_radix(&name[2..4], 16).unwrap();
        for args in [
            vec!["link", "add", &bridge, "type", "bridge"],
            vec![
                "addr",
                "add",
                &format!("10.78.{subnet}.1/24"),
                "dev",
                &bridge,
            ],
            vec!["link", "set", &bridge, "up"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut daemon = Self {
            bridge,
            socket: dir.join("docker.sock"),
            data_root: dir.join("data"),
            exec_root,
            config: dir.join("daemon.json"),
            log: dir.join("dockerd.log"),
            dir,
            child: None,
            binaries,
        };
        daemon.start_again(config).await;
        daemon
    }

    /// Starts the daemon again from other binaries on the same data root:
    /// an upgrade (or downgrade) in place.
    pub async fn start_again_as(&mut self, bin_dir: Option<&Path>, config: &serde_json::Value) {
        self.binaries = Binaries::Given(bin_dir.map(Path::to_path_buf));
        self.start_again(config).await;
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn client(&self) -> Docker {
        Docker::connect_with_unix(
            &self.socket.display().to_string(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .expect("a client of the private daemon")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the daemon (again) with this daemon.json; returns once it
    /// answers.
    pub async fn start_again(&mut self, config: &serde_json::Value) {
        assert!(self.child.is_none(), "already running");
        // The engine under test's own settings (its image store, test
        // runtimes) under the test's.
        let merged = match &self.binaries {
            Binaries::UnderTest => {
                let mut merged = crate::daemon::test_daemon().config.clone();
                merge(&mut merged, config);
                merged
            }
            Binaries::Given(_) => config.clone(),
        };
        std::fs::write(&self.config, serde_json::to_vec_pretty(&merged).unwrap()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut dockerd = match &self.binaries {
            Binaries::UnderTest => crate::daemon::test_daemon().command("dockerd"),
            Binaries::Given(None) => Command::new("dockerd"),
            Binaries::Given(Some(bin)) => {
                let mut command = Command::new(bin.join("dockerd"));
                let path = std::env::var("PATH").unwrap_or_default();
                command.env("PATH", format!("{}:{path}", bin.display()));
                command
            }
        };
        let child = dockerd
            .arg(format!("--host=unix://{}", self.socket.display()))
            .arg(format!("--data-root={}", self.data_root.display()))
            .arg(format!("--exec-root={}", self.exec_root.display()))
            .arg(format!(
                "--pidfile={}",
                self.dir.join("docker.pid").display()
            ))
            .arg(format!("--config-file={}", self.config.display()))
            .arg(format!("--bridge={}", self.bridge))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            // Tests never reach the internet: any pull from a registry that
            // is not on loopback goes to a proxy that refuses (Go never
            // proxies loopback addresses, so the local registries work).
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            // bollard wants the socket to exist before it makes a client.
            if self.socket.exists() && self.client().ping().await.is_ok() {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "the private dockerd did not answer within 60 s:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, as `systemctl stop docker` does; waits for the exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let started = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Copies images from the daemon under test into this one.
    pub fn load_from_host(&self, images: &[&str]) {
        let mut save = crate::daemon::test_daemon()
            .cli()
            .arg("save")
            .args(images)
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let load = Command::new("docker")
            .arg(format!("--host={}", self.endpoint()))
            .args(["load", "-q"])
            .stdin(save.stdout.take().expect("piped"))
            .output()
            .expect("docker load");
        assert!(save.wait().expect("docker save").success(), "docker save");
        assert!(
            load.status.success(),
            "docker load: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `overlay` over `base`, objects merged key by key.
fn merge(base: &mut serde_json::Value, overlay: &serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(base), serde_json::Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(
                    base.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Its containers go with it (no live restore).
            self.stop();
        }
        let _ = Command::new("umount")
            .arg("--recursive")
            .arg("--lazy")
            .arg(&self.exec_root)
            .output();
        let _ = std::fs::remove_dir_all(&self.exec_root);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
