//! The Docker-out-of-Docker setup of `docker-compose.yml`, offline.
//!
//! The release image (Dockerfile) needs the internet for its base image,
//! the kubelet and crictl. The tests instead assemble an image from this
//! build's `cri-dockerd-rs` and the host's own CNI plugins, iptables and
//! busybox, with every file where the Dockerfile's runtime stage puts it
//! (`RUNTIME_LAYOUT`, checked against the Dockerfile by a test), and start
//! the compose file's `cri-dockerd` service from it with `docker compose`:
//! the privileges and mounts are exactly the file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bollard::Docker;

use crate::images::{busybox_applets, cargo_build, ensure_image, hash_of, header, is_fresh};

pub const DOOD_IMAGE: &str = "crid-test.local/cri-dockerd-rs-dood:latest";

/// Where the runtime stage of the Dockerfile puts what the shim needs, and
/// where the offline image takes it from. `kubelet` and `crictl` are not
/// here: they come from the internet, and the tests drive the shim through
/// its socket instead.
pub const RUNTIME_LAYOUT: &[(&str, Source)] = &[
    ("/usr/local/bin/cri-dockerd-rs", Source::ShimBinary),
    ("/usr/local/bin/crid-supervise", Source::SupervisorBinary),
    ("/opt/cni/bin/", Source::HostCniPlugins),
    (
        "/etc/cni/net.d/10-bridge.conflist",
        Source::Repo("cni/10-bridge.conflist"),
    ),
    (
        "/etc/kubernetes/standalone.yaml",
        Source::Repo("standalone.yaml"),
    ),
    ("/etc/crictl.yaml", Source::Repo("packaging/crictl.yaml")),
];

/// The Dockerfile's runtime stage files that the offline image cannot have.
pub const ONLINE_ONLY: &[&str] = &["/usr/local/bin/kubelet", "/usr/local/bin/crictl"];

/// The plugins the Dockerfile extracts from the CNI plugins release.
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap", "firewall"];

/// The link the Dockerfile makes so the kubelet and crictl find the socket
/// at the usual path.
pub const SOCKET_LINK: (&str, &str) = (
    "/run/cri-dockerd.sock",
    "/var/run/cri-dockerd/cri-dockerd.sock",
);

#[derive(Debug, Clone, Copy)]
pub enum Source {
    ShimBinary,
    SupervisorBinary,
    HostCniPlugins,
    Repo(&'static str),
}

/// The image's files: path in the image to content or symlink target.
#[derive(Default)]
struct Rootfs {
    files: BTreeMap<String, (Vec<u8>, u32)>,
    links: BTreeMap<String, String>,
    dirs: std::collections::BTreeSet<String>,
}

impl Rootfs {
    fn file(&mut self, path: &str, content: Vec<u8>, mode: u32) {
        self.files
            .insert(path.trim_start_matches('/').into(), (content, mode));
    }

    fn host_file(&mut self, host: &Path, at: &str) {
        let content = std::fs::read(host)
            .unwrap_or_else(|e| panic!("reading {} for the DooD image: {e}", host.display()));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(host).expect("metadata").permissions(),
        ) & 0o7777;
        self.file(at, content, mode);
    }

    fn dir(&mut self, path: &str) {
        self.dirs.insert(path.trim_start_matches('/').into());
    }

    fn link(&mut self, path: &str, target: &str) {
        self.links
            .insert(path.trim_start_matches('/').into(), target.into());
    }

    /// A dynamically linked program and the shared libraries `ldd` finds
    /// for it, each at its host path.
    fn program_with_libraries(&mut self, host: &Path, at: &str) {
        self.host_file(host, at);
        self.libraries_of(host);
    }

    fn libraries_of(&mut self, host: &Path) {
        for library in ldd(host) {
            let at = library.to_string_lossy().into_owned();
            if !self.files.contains_key(at.trim_start_matches('/')) {
                self.host_file(&library, &at);
            }
        }
    }

    fn hash(&self) -> String {
        let mut parts: Vec<&[u8]> = Vec::new();
        for (path, (content, _)) in &self.files {
            parts.push(path.as_bytes());
            parts.push(content);
        }
        for (path, target) in &self.links {
            parts.push(path.as_bytes());
            parts.push(target.as_bytes());
        }
        parts.extend(self.dirs.iter().map(|d| d.as_bytes()));
        hash_of(&parts)
    }

    fn tar(&self) -> Vec<u8> {
        let mut dirs = self.dirs.clone();
        for path in self
            .files
            .keys()
            .chain(self.links.keys())
            .chain(self.dirs.iter())
        {
            let mut parent = Path::new(path).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(p.to_string_lossy().into_owned());
                parent = p.parent();
            }
        }
        let mut builder = tar::Builder::new(Vec::new());
        for dir in &dirs {
            let mode = if dir == "tmp" || dir == "var/tmp" {
                0o1777
            } else {
                0o755
            };
            let h = header(&format!("{dir}/"), mode, tar::EntryType::Directory, 0);
            builder.append(&h, std::io::empty()).expect("tar dir");
        }
        for (path, (content, mode)) in &self.files {
            let h = header(path, *mode, tar::EntryType::Regular, content.len() as u64);
            builder.append(&h, content.as_slice()).expect("tar file");
        }
        for (path, target) in &self.links {
            let mut h = header(path, 0o777, tar::EntryType::Symlink, 0);
            h.set_link_name(target).expect("symlink target");
            h.set_cksum();
            builder.append(&h, std::io::empty()).expect("tar link");
        }
        builder.into_inner().expect("tar finish")
    }
}

/// The shared libraries `ldd` resolves for a program, including the
/// dynamic loader.
fn ldd(program: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .unwrap_or_else(|e| panic!("ldd {}: {e}", program.display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Our binary without its debug sections (a tenth of the size).
fn stripped(binary: &Path) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().expect("temporary file");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(out.path())
        .status();
    match status {
        Ok(s) if s.success() => std::fs::read(out.path()).expect("stripped binary"),
        _ => std::fs::read(binary).expect("reading the shim binary"),
    }
}

fn add_iptables(rootfs: &mut Rootfs) {
    let iptables = which("iptables")
        .expect("iptables is missing on the host: install it (scripts/test-env.sh does)");
    let real = iptables.canonicalize().expect("resolving iptables");
    let real_name = real.file_name().unwrap().to_string_lossy().into_owned();
    rootfs.program_with_libraries(&real, &format!("/usr/sbin/{real_name}"));
    // A multi-call binary: it acts on the name it is called by.
    for name in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ] {
        rootfs.link(&format!("/usr/sbin/{name}"), &real_name);
    }
    // Its match and target extensions are loaded at run time.
    for pattern_dir in ["/usr/lib", "/lib"] {
        for arch_dir in std::fs::read_dir(pattern_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let xtables = arch_dir.path().join("xtables");
            for module in std::fs::read_dir(&xtables).into_iter().flatten().flatten() {
                let path = module.path();
                rootfs.host_file(&path, &path.to_string_lossy());
                rootfs.libraries_of(&path);
            }
        }
    }
    for etc in ["/etc/protocols", "/etc/ethertypes"] {
        if Path::new(etc).exists() {
            rootfs.host_file(Path::new(etc), etc);
        }
    }
}

fn add_busybox(rootfs: &mut Rootfs) {
    let busybox = Path::new("/bin/busybox");
    rootfs.host_file(busybox, "/bin/busybox");
    for applet in busybox_applets() {
        rootfs.link(&format!("/bin/{applet}"), "busybox");
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
}

/// `crid-supervise` from the build the shim binary comes from (a workspace
/// test run builds both), else built into a target directory of its own.
fn supervisor_binary(shim_binary: &Path) -> PathBuf {
    let sources = crate::repo_root().join("crates/supervise");
    let sibling = shim_binary.with_file_name("crid-supervise");
    if is_fresh(&sibling, &sources) {
        return sibling;
    }
    let target_dir = crate::repo_root().join("target/supervise");
    let built = target_dir.join("debug/crid-supervise");
    if !is_fresh(&built, &sources) {
        cargo_build("crid-supervise", &target_dir, &[], "");
    }
    built
}

fn rootfs(shim_binary: &Path) -> Rootfs {
    let repo = crate::repo_root();
    let mut rootfs = Rootfs::default();
    add_busybox(&mut rootfs);
    add_iptables(&mut rootfs);
    for (at, source) in RUNTIME_LAYOUT {
        match source {
            Source::ShimBinary => {
                rootfs.file(at, stripped(shim_binary), 0o755);
                rootfs.libraries_of(shim_binary);
            }
            Source::SupervisorBinary => {
                let supervisor = supervisor_binary(shim_binary);
                rootfs.file(at, stripped(&supervisor), 0o755);
                rootfs.libraries_of(&supervisor);
            }
            Source::HostCniPlugins => {
                for plugin in CNI_PLUGINS {
                    rootfs.host_file(
                        &Path::new("/usr/lib/cni").join(plugin),
                        &format!("{at}{plugin}"),
                    );
                }
            }
            Source::Repo(path) => rootfs.host_file(&repo.join(path), at),
        }
    }
    // Debian's layout, and the Dockerfile's directories and socket link.
    rootfs.link("/var/run", "../run");
    rootfs.link(SOCKET_LINK.0, SOCKET_LINK.1);
    for dir in [
        "/run/cri-dockerd",
        "/run/kubelet",
        "/etc/kubernetes/manifests",
        "/var/log/pods",
        "/var/lib",
        "/tmp",
        "/var/tmp",
        "/proc",
        "/sys",
        "/dev",
    ] {
        rootfs.dir(dir);
    }
    rootfs
}

/// Builds the offline DooD image when missing or out of date; its id.
pub async fn ensure_dood_image(
    docker: &Docker,
    engine: &cri_dockerd_engine::Engine,
    shim_binary: &Path,
) -> String {
    let rootfs = tokio::task::spawn_blocking({
        let shim_binary = shim_binary.to_path_buf();
        move || rootfs(&shim_binary)
    })
    .await
    .expect("assembling the DooD image");
    let hash = rootfs.hash();
    ensure_image(
        docker,
        engine,
        DOOD_IMAGE,
        &hash,
        move || rootfs.tar(),
        &[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "CMD [\"cri-dockerd-rs\"]",
        ],
    )
    .await
}

/// `docker compose`, or a Compose v2 `docker-compose`: the compose file uses
/// keys (`uts`, `cgroup`, non-recursive binds) that Compose v1 rejects.
pub fn compose_command() -> Vec<String> {
    let v2 = |program: &[&str]| {
        Command::new(program[0])
            .args(&program[1..])
            .args(["version", "--short"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|v| !v.starts_with('1'))
            .is_some()
    };
    for program in [&["docker", "compose"][..], &["docker-compose"][..]] {
        if v2(program) {
            return program.iter().map(|s| s.to_string()).collect();
        }
    }
    panic!(
        "Docker Compose v2 is missing (neither `docker compose` nor a v2 `docker-compose`); \
         scripts/test-env.sh installs it"
    );
}

/// One compose project on the repository's docker-compose.yml.
pub struct Compose {
    program: Vec<String>,
    pub project: String,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
}

impl Compose {
    pub fn new(project: &str) -> Self {
        Self {
            program: compose_command(),
            project: project.into(),
            files: vec![crate::repo_root().join("docker-compose.yml")],
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A further file merged over the repository's (test-only settings).
    pub fn overlay(mut self, file: PathBuf) -> Self {
        self.files.push(file);
        self
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]).args(["-p", &self.project]);
        for file in &self.files {
            command.arg("-f").arg(file);
        }
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap_or_else(|e| panic!("running {:?}: {e}", self.program))
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn logs(&self) -> String {
        let out = self.run(&["logs", "--no-color", "--tail", "200"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--remove-orphans", "--timeout", "30"]);
    }
}
