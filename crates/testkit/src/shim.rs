//! Our binary, running on a temporary socket and root directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::image_service_client::ImageServiceClient;
use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_api::v1::{
    PodSandboxFilter, RemovePodSandboxRequest, StopPodSandboxRequest, VersionRequest,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

pub struct ShimBuilder {
    binary: PathBuf,
    socket: Option<PathBuf>,
    cni_conf_dir: Option<PathBuf>,
    extra_args: Vec<String>,
}

pub struct Shim {
    binary: PathBuf,
    args: Vec<String>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_cache_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    /// Pod uids of this test; leftovers are torn down when the shim drops.
    pub uid_prefix: String,
}

/// The repository's CNI config (bridge kubelet0 + portmap).
pub fn repo_cni_conflist() -> PathBuf {
    crate::repo_root().join("cni/10-bridge.conflist")
}

impl ShimBuilder {
    /// `CRID_TEST_SHIM`, when set, names another build to test instead
    /// (an older one, to see a test fail before a fix).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let binary = std::env::var_os("CRID_TEST_SHIM")
            .filter(|b| !b.is_empty())
            .map_or_else(|| binary.into(), PathBuf::from);
        Self {
            binary,
            socket: None,
            cni_conf_dir: None,
            extra_args: Vec::new(),
        }
    }

    /// Pods get the repository's bridge network (copied into a private
    /// config dir that tests may change).
    pub fn with_cni(mut self) -> Self {
        self.cni_conf_dir = Some(PathBuf::new());
        self
    }

    /// An explicit, test-owned CNI config directory.
    pub fn cni_conf_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cni_conf_dir = Some(dir.into());
        self
    }

    /// Serve on this socket instead of one in the temporary directory.
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    pub async fn start(self) -> Shim {
        let dir = tempfile::Builder::new()
            .prefix("crid-test-")
            .tempdir()
            .expect("temporary directory");
        let socket = self.socket.unwrap_or_else(|| dir.path().join("cri.sock"));
        let root = dir.path().join("root");
        let cni_cache_dir = dir.path().join("cni-cache");
        let cni_conf_dir = match self.cni_conf_dir {
            Some(d) if d.as_os_str().is_empty() => {
                let d = dir.path().join("net.d");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::copy(repo_cni_conflist(), d.join("10-bridge.conflist"))
                    .expect("copying the CNI config");
                d
            }
            Some(d) => d,
            None => {
                let d = dir.path().join("net.d");
                std::fs::create_dir_all(&d).unwrap();
                d
            }
        };
        let mut args = vec![
            format!("--container-runtime-endpoint=unix://{}", socket.display()),
            format!("--cri-dockerd-root-directory={}", root.display()),
            format!("--cni-conf-dir={}", cni_conf_dir.display()),
            format!("--cni-cache-dir={}", cni_cache_dir.display()),
            "--cni-bin-dir=/usr/lib/cni,/opt/cni/bin".to_string(),
            "--hairpin-mode=hairpin-veth".to_string(),
            "--streaming-bind-addr=127.0.0.1:0".to_string(),
            "--log-level=debug".to_string(),
            // The engine under test; a test's own --docker-endpoint comes
            // later and wins (the last of a repeated flag does).
            format!(
                "--docker-endpoint={}",
                crate::daemon::test_daemon().endpoint()
            ),
        ];
        args.extend(self.extra_args);
        let log = dir.path().join("shim.log");
        let uid_prefix = crate::unique("t");
        let (runtime, images, child) = spawn(&self.binary, &args, &socket, &log).await;
        Shim {
            binary: self.binary,
            args,
            dir,
            socket,
            root,
            cni_conf_dir,
            cni_cache_dir,
            log,
            child: Some(child),
            runtime,
            images,
            uid_prefix,
        }
    }
}

async fn spawn(
    binary: &Path,
    args: &[String],
    socket: &Path,
    log: &Path,
) -> (
    RuntimeServiceClient<Channel>,
    ImageServiceClient<Channel>,
    Child,
) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("shim log file");
    let mut child = Command::new(binary)
        .args(args)
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let channel = connect(socket, &mut child, log).await;
    (
        RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
        ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
        child,
    )
}

/// A tonic channel over the unix socket.
pub async fn channel_for(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .expect("static endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

async fn connect(socket: &Path, child: &mut Child, log: &Path) -> Channel {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "cri-dockerd-rs exited during start-up ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if socket.exists()
            && let Ok(channel) = channel_for(socket).await
            && RuntimeServiceClient::new(channel.clone())
                .version(VersionRequest::default())
                .await
                .is_ok()
        {
            return channel;
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!(
                "cri-dockerd-rs did not answer on {} within 60s:\n{}",
                socket.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Shim {
    pub fn builder(binary: impl Into<PathBuf>) -> ShimBuilder {
        ShimBuilder::new(binary)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL: nothing gets to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no exit within 30s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary again with the same flags and directories.
    pub async fn restart(&mut self) {
        self.kill();
        let (runtime, images, child) =
            spawn(&self.binary, &self.args, &self.socket, &self.log).await;
        self.runtime = runtime;
        self.images = images;
        self.child = Some(child);
    }

    /// A pod uid unique to this test.
    pub fn pod_uid(&self, name: &str) -> String {
        format!("{}-{name}", self.uid_prefix)
    }

    /// Runs a pod of this test named `name` (namespace `default`, logs
    /// under the shim's directory); its id and config.
    pub async fn run_pod(&self, name: &str) -> (String, cri_dockerd_api::v1::PodSandboxConfig) {
        let mut config = crate::cri::pod_config(name, "default", &self.pod_uid(name));
        config.log_directory = self
            .dir
            .path()
            .join("pods")
            .join(name)
            .display()
            .to_string();
        let id = crate::cri::pods::run(&self.runtime, config.clone())
            .await
            .expect("RunPodSandbox");
        (id, config)
    }

    /// Starts `sleep 3600` as container `name` of `pod`; its id.
    pub async fn run_sleeper(
        &self,
        pod: &str,
        config: &cri_dockerd_api::v1::PodSandboxConfig,
        name: &str,
    ) -> String {
        crate::cri::containers::run(
            &self.runtime,
            pod,
            crate::cri::container_config(name, crate::env::BUSYBOX_IMAGE, &["sleep", "3600"]),
            config,
        )
        .await
    }

    /// Stops and removes every pod of this test still known to the shim.
    pub async fn cleanup(&mut self) {
        if self.child.is_none() {
            return;
        }
        let Ok(pods) = self
            .runtime
            .list_pod_sandbox(cri_dockerd_api::v1::ListPodSandboxRequest {
                filter: Some(PodSandboxFilter::default()),
            })
            .await
        else {
            return;
        };
        for pod in pods.into_inner().items {
            let ours = pod
                .metadata
                .as_ref()
                .is_some_and(|m| m.uid.starts_with(&self.uid_prefix));
            if !ours {
                continue;
            }
            let _ = self
                .runtime
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod.id.clone(),
                })
                .await;
            let _ = self
                .runtime
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: pod.id,
                })
                .await;
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            // A panic of the shim's own, wherever it is in the log.
            let lines: Vec<&str> = log.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.contains("panicked at") {
                    eprintln!("---- the cri-dockerd-rs process panicked ----");
                    for line in &lines[i..(i + 3).min(lines.len())] {
                        eprintln!("{line}");
                    }
                }
            }
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "---- last lines of the cri-dockerd-rs log ({}) ----",
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        if self.child.is_some() {
            // Best effort: the test's own pods go, whatever happened to it.
            let socket = self.socket.clone();
            let prefix = self.uid_prefix.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async move {
                    let channel = channel_for(&socket).await.ok()?;
                    let mut client = RuntimeServiceClient::new(channel);
                    let pods = client
                        .list_pod_sandbox(cri_dockerd_api::v1::ListPodSandboxRequest::default())
                        .await
                        .ok()?
                        .into_inner()
                        .items;
                    for pod in pods {
                        if pod
                            .metadata
                            .as_ref()
                            .is_some_and(|m| m.uid.starts_with(&prefix))
                        {
                            let _ = client
                                .stop_pod_sandbox(StopPodSandboxRequest {
                                    pod_sandbox_id: pod.id.clone(),
                                })
                                .await;
                            let _ = client
                                .remove_pod_sandbox(RemovePodSandboxRequest {
                                    pod_sandbox_id: pod.id,
                                })
                                .await;
                        }
                    }
                    Some(())
                })
            })
            .join();
        }
        self.kill();
    }
}
