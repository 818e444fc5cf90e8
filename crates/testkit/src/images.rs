//! Test images, built here through the Docker API: nothing is pulled from
//! the internet. A busybox-static root filesystem for workloads, and our
//! own `pause` binary in an image made from scratch.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use cri_dockerd_engine::Engine;
use futures::StreamExt;

use crate::env::{BUSYBOX_IMAGE, PAUSE_IMAGE};

const INPUT_ENV: &str = "CRID_TEST_INPUT";
/// Bump when the root filesystem recipe changes.
const RECIPE: &str = "busybox-rootfs-v2";

/// Users the tests refer to by name.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ntester:x:1234:1234:tester:/home/tester:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntester:x:1234:\nextra:x:5555:tester\nnogroup:x:65534:\n";

pub(crate) fn hash_of(parts: &[&[u8]]) -> String {
    let mut hasher = DefaultHasher::new();
    for part in parts {
        part.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Holds an exclusive lock on a file while building images, so parallel
/// test processes build each image once.
struct BuildLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

async fn build_lock() -> BuildLock {
    tokio::task::spawn_blocking(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/cri-dockerd-rs-test-images.lock")
            .expect("image build lock file");
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("locking the image build lock");
        BuildLock(lock)
    })
    .await
    .expect("lock task")
}

/// The ids of the busybox and pause images, building them when missing or
/// out of date.
pub async fn ensure_base_images(docker: &Docker, engine: &Engine) -> (String, String) {
    let _lock = build_lock().await;
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: install busybox-static (scripts/test-env.sh does)");
    let busybox_id = ensure_image(
        docker,
        engine,
        BUSYBOX_IMAGE,
        &hash_of(&[RECIPE.as_bytes(), &busybox]),
        || busybox_rootfs(&busybox),
        &[],
    )
    .await;
    let pause = std::fs::read(pause_binary()).expect("reading the pause binary");
    let pause_id = ensure_image(
        docker,
        engine,
        PAUSE_IMAGE,
        &hash_of(&[b"pause-v1", &pause]),
        || single_file_rootfs("pause", &pause),
        &["ENTRYPOINT [\"/pause\"]", "USER 65535:65535"],
    )
    .await;
    (busybox_id, pause_id)
}

pub(crate) async fn ensure_image(
    docker: &Docker,
    engine: &Engine,
    name: &str,
    input_hash: &str,
    rootfs: impl FnOnce() -> Vec<u8>,
    changes: &[&str],
) -> String {
    let marker = format!("{INPUT_ENV}={input_hash}");
    if let Ok(inspect) = engine.inspect_image(name).await {
        let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
        if env.contains(&marker) {
            return inspect.id.unwrap_or_default();
        }
    }
    let (repo, tag) = name.rsplit_once(':').expect("image names carry a tag");
    let mut all_changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    all_changes.push(format!("ENV {marker}"));
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(tag.into()),
        changes: all_changes,
        ..Default::default()
    };
    let body = bollard::body_full(rootfs().into());
    let mut stream = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = stream.next().await {
        item.unwrap_or_else(|e| panic!("importing {name}: {e}"));
    }
    engine
        .inspect_image(name)
        .await
        .unwrap_or_else(|e| panic!("{name} missing after import: {e}"))
        .id
        .unwrap_or_default()
}

pub(crate) fn header(path: &str, mode: u32, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_path(path).expect("tar path");
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    header
}

/// The applets /bin/busybox provides (each linked to it in an image).
pub(crate) fn busybox_applets() -> Vec<String> {
    let out = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
        .map(String::from)
        .collect()
}

fn busybox_rootfs(busybox: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in [
        "bin/",
        "etc/",
        "tmp/",
        "root/",
        "home/",
        "home/tester/",
        "var/",
        "var/tmp/",
        "proc/",
        "sys/",
        "dev/",
    ] {
        let mode = if dir == "tmp/" || dir == "var/tmp/" {
            0o1777
        } else {
            0o755
        };
        let mut h = header(dir, mode, tar::EntryType::Directory, 0);
        if dir == "home/tester/" {
            h.set_uid(1234);
            h.set_gid(1234);
            h.set_cksum();
        }
        builder.append(&h, std::io::empty()).expect("tar dir");
    }
    builder
        .append(
            &header(
                "bin/busybox",
                0o755,
                tar::EntryType::Regular,
                busybox.len() as u64,
            ),
            busybox,
        )
        .expect("tar busybox");
    for applet in busybox_applets() {
        let mut h = header(&format!("bin/{applet}"), 0o777, tar::EntryType::Symlink, 0);
        h.set_link_name("busybox").expect("symlink target");
        h.set_cksum();
        builder.append(&h, std::io::empty()).expect("tar applet");
    }
    for (path, content) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        builder
            .append(
                &header(path, 0o644, tar::EntryType::Regular, content.len() as u64),
                content.as_bytes(),
            )
            .expect("tar etc");
    }
    builder.into_inner().expect("tar finish")
}

fn single_file_rootfs(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(
            &header(name, 0o755, tar::EntryType::Regular, content.len() as u64),
            content,
        )
        .expect("tar file");
    builder.into_inner().expect("tar finish")
}

pub(crate) fn newest_mtime(path: &Path) -> std::time::SystemTime {
    let mut newest = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH);
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest = newest.max(newest_mtime(&entry.path()));
        }
    }
    newest
}

/// Whether `binary` was built after every file of `sources` last changed.
pub(crate) fn is_fresh(binary: &Path, sources: &Path) -> bool {
    std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_mtime(sources))
}

/// `cargo build -p <package>` into a target directory of its own (the outer
/// cargo may hold the lock on the main one), with `extra` arguments and
/// `rustflags`.
pub(crate) fn cargo_build(package: &str, target_dir: &Path, extra: &[&str], rustflags: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crate::repo_root())
        .env("RUSTFLAGS", rustflags)
        .env_remove("CARGO_TARGET_DIR")
        .args(["build", "-p", package])
        .args(extra)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {package}: {e}"));
    assert!(status.success(), "building {package} failed");
}

/// Our `pause`, linked statically so that it runs in a scratch image. Built
/// with cargo into its own target directory when missing or stale.
pub fn pause_binary() -> PathBuf {
    let root = crate::repo_root();
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let target_dir = root.join("target/static");
    let binary = target_dir.join(&triple).join("release/pause");
    if !is_fresh(&binary, &root.join("crates/pause")) {
        cargo_build(
            "pause",
            &target_dir,
            &["--release", "--target", &triple],
            "-C target-feature=+crt-static",
        );
    }
    binary
}

/// Tags `source` as `target` and pushes it, then drops the local tag so a
/// later pull really goes to the registry.
pub async fn push_to_registry(
    docker: &Docker,
    source: &str,
    target: &str,
    credentials: Option<DockerCredentials>,
) {
    let (repo, tag) = target.rsplit_once(':').expect("target carries a tag");
    docker
        .tag_image(
            source,
            Some(TagImageOptions {
                repo: Some(repo.into()),
                tag: Some(tag.into()),
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("tagging {source} as {target}: {e}"));
    let mut push = docker.push_image(
        repo,
        Some(PushImageOptions {
            tag: Some(tag.into()),
            ..Default::default()
        }),
        credentials,
    );
    while let Some(item) = push.next().await {
        let info = item.unwrap_or_else(|e| panic!("pushing {target}: {e}"));
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            panic!("pushing {target}: {error}");
        }
    }
    remove_local(docker, target).await;
}

pub async fn remove_local(docker: &Docker, name: &str) {
    let _ = docker
        .remove_image(
            name,
            Some(RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await;
}
