//! What differs between the Docker Engines of the matrix (20.10, 26.1,
//! 28.5, 28.5 with the containerd image store), each checked on the engine
//! under test (`CRID_TEST_ENGINE`; `make test` runs this file on all four):
//! read-only binds, recursive read-only mounts, the API version spoken,
//! images that the containerd image store describes without the host's
//! platform, image sizes, image volumes, and a daemon upgraded in place.

use std::path::Path;
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::*;
use cri_dockerd_engine::ApiVersion;
use cri_dockerd_testkit::cri::{container_config, containers};
use cri_dockerd_testkit::env::BUSYBOX_IMAGE;
use cri_dockerd_testkit::private_docker::PrivateDocker;
use cri_dockerd_testkit::{Shim, registry, test_env};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// The daemon's kernel supports mount_setattr(2) (5.12+), which Docker
/// needs for a recursively read-only mount.
fn kernel_has_mount_setattr() -> bool {
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    (major, minor) >= (5, 12)
}

/// A host directory with a tmpfs mounted at `sub/`: what a read-only
/// volume with a volume inside it looks like to Docker.
struct NestedMount {
    dir: tempfile::TempDir,
}

impl NestedMount {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crid-ro-")
            .tempdir()
            .unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mounting a tmpfs (the tests run as root)");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NestedMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.dir.path().join("sub"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

fn ro_mount(host: &Path, container: &str, recursive: bool) -> Mount {
    Mount {
        host_path: host.display().to_string(),
        container_path: container.into(),
        readonly: true,
        recursive_read_only: recursive,
        // As the kubelet and critest send it; Docker relabels nothing
        // without SELinux.
        selinux_relabel: true,
        ..Default::default()
    }
}

/// `touch` in the container: whether the write worked.
async fn can_write(shim: &Shim, id: &str, path: &str) -> bool {
    let response = shim
        .runtime
        .clone()
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["touch".into(), path.into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    if response.exit_code != 0 {
        assert!(
            String::from_utf8_lossy(&response.stderr).contains("Read-only file system"),
            "touch {path} failed otherwise: {}",
            String::from_utf8_lossy(&response.stderr)
        );
    }
    response.exit_code == 0
}

async fn default_handler_rro(shim: &Shim) -> bool {
    let status = shim
        .runtime
        .clone()
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .and_then(|h| h.features)
        .expect("the default runtime handler and its features")
        .recursive_read_only_mounts
}

/// The CRI's `readonly` is not recursive: a volume mounted inside a
/// read-only one stays writable. Docker 25+ (API 1.44) makes a plain
/// read-only bind recursively read-only, so the shim must ask for
/// non-recursive ones there. `recursive_read_only` is offered (Status) and
/// made exactly where Docker, the kernel and runc can, refused clearly
/// elsewhere, and refused for a mount that is not read-only and private.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_binds_are_recursive_only_when_asked() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let api = env.engine.api_version();
    let expect_rro = api >= ApiVersion::new(1, 44) && kernel_has_mount_setattr();
    assert_eq!(
        default_handler_rro(&shim).await,
        expect_rro,
        "recursive read-only mounts offered on Docker API {api}"
    );

    let nested = NestedMount::new();
    let (pod, config) = shim.run_pod("ro-binds").await;
    let mut plain = container_config("plain-ro", BUSYBOX_IMAGE, &["sleep", "3600"]);
    plain.mounts = vec![ro_mount(nested.path(), "/mnt/ro", false)];
    let id = containers::run(&shim.runtime, &pod, plain, &config).await;
    assert!(
        !can_write(&shim, &id, "/mnt/ro/file").await,
        "a read-only bind"
    );
    assert!(
        can_write(&shim, &id, "/mnt/ro/sub/file").await,
        "a volume inside a read-only one is writable (the CRI's readonly is not recursive) on Docker API {api}"
    );
    let status = containers::status(&shim.runtime, &id).await;
    let mount = status
        .mounts
        .iter()
        .find(|m| m.container_path == "/mnt/ro")
        .expect("the bind in ContainerStatus");
    assert!(mount.readonly);
    assert_eq!(mount.host_path, nested.path().display().to_string());

    let mut recursive = container_config("rro", BUSYBOX_IMAGE, &["sleep", "3600"]);
    recursive.mounts = vec![ro_mount(nested.path(), "/mnt/rro", true)];
    let created = shim
        .runtime
        .clone()
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(recursive.clone()),
            sandbox_config: Some(config.clone()),
        })
        .await;
    if expect_rro {
        let id = created.unwrap().into_inner().container_id;
        containers::start(&shim.runtime, &id).await;
        assert!(!can_write(&shim, &id, "/mnt/rro/sub/file").await);
        assert!(!can_write(&shim, &id, "/mnt/rro/file").await);
    } else {
        let err = created.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("recursive read-only"), "{err}");
    }

    // The CRI: a recursive read-only mount must be private and read-only;
    // on every engine, whether it could make one or not.
    for (propagation, readonly) in [
        (MountPropagation::PropagationHostToContainer, true),
        (MountPropagation::PropagationBidirectional, true),
        (MountPropagation::PropagationPrivate, false),
    ] {
        let mut bad = recursive.clone();
        bad.metadata.as_mut().unwrap().name = format!("bad-{}", propagation as i32);
        bad.mounts[0].propagation = propagation as i32;
        bad.mounts[0].readonly = readonly;
        let err = shim
            .runtime
            .clone()
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(bad),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{propagation:?} readonly={readonly}: {err}"
        );
    }
}

/// Status (verbose) names the daemon and the API version spoken with it.
#[tokio::test(flavor = "multi_thread")]
async fn status_names_the_negotiated_api_version() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).start().await;
    let info = shim
        .runtime
        .clone()
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    let docker: serde_json::Value = serde_json::from_str(&info["docker"]).unwrap();
    let daemon = env.engine.daemon_version();
    assert_eq!(docker["version"], daemon.version.as_str());
    assert_eq!(docker["apiVersion"], daemon.api.to_string().as_str());
    assert_eq!(
        docker["daemonAPIVersion"],
        daemon.daemon_api.to_string().as_str()
    );
    assert_eq!(docker["oldestSupportedAPIVersion"], "1.41");
    assert_eq!(
        docker["containerdImageStore"],
        env.daemon.containerd_store(),
        "{docker}"
    );
    let version = shim
        .runtime
        .clone()
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_version, daemon.version);
}

/// ListImages and ImageStatus report the same size for an image, on
/// every engine: with the containerd image store Docker's inspect and list
/// mean different things by `Size`.
#[tokio::test(flavor = "multi_thread")]
async fn image_sizes_agree_between_list_and_status() {
    test_env().await;
    let shim = Shim::builder(BIN).start().await;
    let listed = shim
        .images
        .clone()
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    for name in [BUSYBOX_IMAGE, "registry.k8s.io/pause:3.10"] {
        let status = shim
            .images
            .clone()
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: name.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .expect("the image is present");
        let in_list = listed
            .iter()
            .find(|i| i.id == status.id)
            .expect("the image is listed");
        assert!(status.size > 0, "{name}: {status:?}");
        assert_eq!(status.size, in_list.size, "{name}");
    }
}

/// An image index whose platforms all lack their content: Docker 28's
/// containerd image store reports it (its inspect without `RootFS.Type`
/// and without a config), and so must the shim, never Internal. On the
/// graph drivers a multi-platform image is pulled as one platform's image;
/// the same calls must agree there too.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_without_content_for_this_platform_is_still_reported() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).start().await;
    let registry = cri_dockerd_testkit::env::plain_registry();
    let repo = format!("crid-test/{}", shim.uid_prefix);
    let reference = format!("{registry}/{repo}:multi");
    let index = {
        let (registry, repo) = (registry.clone(), repo.clone());
        tokio::task::spawn_blocking(move || {
            registry::push_index(
                &registry,
                &repo,
                "multi",
                &[("linux", "amd64"), ("linux", "arm64")],
            )
        })
        .await
        .unwrap()
    };
    let spec = ImageSpec {
        image: reference.clone(),
        ..Default::default()
    };
    let pulled = shim
        .images
        .clone()
        .pull_image(PullImageRequest {
            image: Some(spec.clone()),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    if env.daemon.containerd_store() {
        // The containerd image store names an image by its index.
        assert_eq!(pulled, index);
        // Take the content of the only platform pulled (API 1.50).
        let path = format!(
            "/images/{reference}?force=1&platforms={}",
            urlencode(r#"{"os":"linux","architecture":"amd64"}"#)
        );
        docker_delete(&env.daemon.socket, &path).await;
        let inspect = env.engine.inspect_image(&reference).await.unwrap();
        assert_eq!(
            inspect.root_fs.and_then(|r| r.typ),
            None,
            "Docker leaves RootFS.Type out for such an image"
        );
    }
    let status = shim
        .images
        .clone()
        .image_status(ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: true,
        })
        .await
        .expect("ImageStatus answers")
        .into_inner();
    let image = status.image.expect("the image is reported");
    assert_eq!(image.id, pulled);
    assert_eq!(image.repo_tags, vec![reference.clone()]);
    let listed = shim
        .images
        .clone()
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: Some(spec.clone()),
            }),
        })
        .await
        .expect("ListImages answers")
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, image.id);
    assert_eq!(listed[0].size, image.size);
    shim.images
        .clone()
        .remove_image(RemoveImageRequest { image: Some(spec) })
        .await
        .expect("RemoveImage");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A DELETE the bollard version in use cannot send (image removal by
/// platform, API 1.50).
async fn docker_delete(socket: &Path, path: &str) {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-f", "-X", "DELETE", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://docker/v1.51{path}"))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "DELETE {path}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Image volumes (KEP-4639) on Docker 28+: the container sees the image's
/// files read-only at the mount, `image_sub_path` picks a folder, and
/// ContainerStatus reports the mount with its image. Older engines refuse
/// it clearly, naming the version needed.
#[tokio::test(flavor = "multi_thread")]
async fn image_volumes_mount_an_images_files_read_only() {
    let env = test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("imgvol").await;
    let mut with_image = container_config("imgvol", BUSYBOX_IMAGE, &["sleep", "3600"]);
    with_image.mounts = vec![
        Mount {
            container_path: "/data".into(),
            image: Some(ImageSpec {
                image: BUSYBOX_IMAGE.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Mount {
            container_path: "/etc-of-image".into(),
            image: Some(ImageSpec {
                image: BUSYBOX_IMAGE.into(),
                ..Default::default()
            }),
            image_sub_path: "etc".into(),
            ..Default::default()
        },
    ];
    let created = shim
        .runtime
        .clone()
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(with_image),
            sandbox_config: Some(config.clone()),
        })
        .await;
    let api = env.engine.api_version();
    if api < ApiVersion::new(1, 48) {
        let err = created.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(
            err.message().contains("Docker Engine 28 (API 1.48)")
                && err.message().contains(&format!("API {api}")),
            "{err}"
        );
        return;
    }
    let id = created.expect("an image volume").into_inner().container_id;
    containers::start(&shim.runtime, &id).await;
    let listing = containers::exec_stdout(
        &shim.runtime,
        &id,
        &["ls", "/data/bin/busybox", "/etc-of-image/passwd"],
    )
    .await;
    assert!(listing.contains("/data/bin/busybox"), "{listing}");
    assert!(listing.contains("/etc-of-image/passwd"), "{listing}");
    let passwd =
        containers::exec_stdout(&shim.runtime, &id, &["cat", "/etc-of-image/passwd"]).await;
    assert!(
        passwd.contains("tester:x:1234"),
        "the image's own /etc/passwd: {passwd}"
    );
    assert!(
        !can_write(&shim, &id, "/data/new").await,
        "image volumes are read-only"
    );
    let status = containers::status(&shim.runtime, &id).await;
    let reported: Vec<(String, String, String, bool)> = status
        .mounts
        .iter()
        .filter(|m| m.image.is_some())
        .map(|m| {
            (
                m.container_path.clone(),
                m.image.as_ref().unwrap().image.clone(),
                m.image_sub_path.clone(),
                m.readonly,
            )
        })
        .collect();
    assert_eq!(
        reported,
        vec![
            ("/data".into(), BUSYBOX_IMAGE.into(), String::new(), true),
            (
                "/etc-of-image".into(),
                BUSYBOX_IMAGE.into(),
                "etc".into(),
                true
            ),
        ]
    );
}

/// A daemon upgraded in place under a running shim: the machine's 20.10,
/// then, on the same data root, the engine under test (Debian sid's 28.5
/// when that is the machine's own). Once Docker is back the shim speaks the
/// new daemon's API version, reports it, and serves.
#[tokio::test(flavor = "multi_thread")]
async fn engine_upgrade_in_place_is_spoken_to_at_its_new_version() {
    let env = test_env().await;
    let (newer_bin, newer_config, newer_api) = match &env.daemon.bin_dir {
        Some(bin) => (
            bin.clone(),
            env.daemon.config.clone(),
            env.engine.api_version().to_string(),
        ),
        None => (
            cri_dockerd_testkit::daemon::engine_dir("28.5").join("bin"),
            serde_json::json!({}),
            "1.51".to_string(),
        ),
    };
    assert!(
        newer_bin.join("dockerd").exists(),
        "{} is not installed; run `make test-env`",
        newer_bin.display()
    );
    let images = [BUSYBOX_IMAGE, "registry.k8s.io/pause:3.10"];
    let mut docker = PrivateDocker::start_engine(None, &serde_json::json!({})).await;
    docker.load_from_host(&images);
    let mut shim = Shim::builder(BIN)
        .with_cni()
        .arg(format!("--docker-endpoint={}", docker.endpoint()))
        .start()
        .await;
    let api_of = |info: &std::collections::HashMap<String, String>| {
        let docker: serde_json::Value = serde_json::from_str(&info["docker"]).unwrap();
        docker["apiVersion"].as_str().unwrap().to_string()
    };
    let status = |shim: &Shim| {
        let mut rt = shim.runtime.clone();
        async move {
            rt.status(StatusRequest { verbose: true })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let before = api_of(&status(&shim).await.info);
    assert_eq!(before, "1.41", "the machine's Docker 20.10");

    docker.stop();
    docker.start_again_as(Some(&newer_bin), &newer_config).await;
    if env.daemon.containerd_store() {
        // The containerd image store does not see the graph driver's images.
        docker.load_from_host(&images);
    }
    let started = Instant::now();
    loop {
        let now = status(&shim).await;
        let ready = now
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.r#type == "RuntimeReady" && c.status);
        if ready && api_of(&now.info) == newer_api {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the shim still speaks API {} to a daemon of API {newer_api}: {:?}\n{}",
            api_of(&now.info),
            now.status,
            shim.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And serves: a pod and a container with a read-only bind, which on
    // API 1.44+ goes through the Mounts API.
    let (pod, config) = shim.run_pod("upgraded").await;
    let nested = NestedMount::new();
    let mut ro = container_config("after-upgrade", BUSYBOX_IMAGE, &["sleep", "3600"]);
    ro.mounts = vec![ro_mount(nested.path(), "/mnt/ro", false)];
    let id = containers::run(&shim.runtime, &pod, ro, &config).await;
    assert!(can_write(&shim, &id, "/mnt/ro/sub/file").await);
    shim.cleanup().await;
}

/// `add_capabilities: ["ALL"]` runs on every engine: the container gets
/// every capability this machine can grant that the daemon knows (Docker
/// 20.10 knows no CAP_PERFMON, CAP_BPF or CAP_CHECKPOINT_RESTORE).
#[tokio::test(flavor = "multi_thread")]
async fn adding_all_capabilities_works_on_every_engine() {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("allcaps").await;
    let mut all = container_config("allcaps", BUSYBOX_IMAGE, &["sleep", "3600"]);
    all.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = containers::run(&shim.runtime, &pod, all, &config).await;
    let status = containers::exec_stdout(&shim.runtime, &id, &["cat", "/proc/1/status"]).await;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .expect("CapEff");
    let bounding = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("CapBnd:")
                .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        })
        .unwrap();
    for (bit, name) in [
        (12, "CAP_NET_ADMIN"),
        (21, "CAP_SYS_ADMIN"),
        (13, "CAP_NET_RAW"),
    ] {
        assert_ne!(effective & (1 << bit), 0, "{name} in CapEff {effective:x}");
    }
    assert_eq!(
        effective & !bounding,
        0,
        "nothing beyond what this machine can grant: {effective:x} vs {bounding:x}"
    );
    // A capability the client names itself that Docker does not know stays
    // an error (the shim only trims its own expansion of ALL).
    let mut unknown = container_config("unknowncap", BUSYBOX_IMAGE, &["sleep", "3600"]);
    unknown.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["CAP_NOT_A_CAPABILITY".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = shim
        .runtime
        .clone()
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(unknown),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

/// A CDI spec written for one test: a device node (the host's /dev/null),
/// an env var and a mount per device, as a GPU driver's spec would have.
struct CdiSpec {
    path: std::path::PathBuf,
    data: tempfile::TempDir,
    vendor: String,
}

impl CdiSpec {
    fn write() -> Self {
        let vendor = format!("crid-test-{}.example", std::process::id());
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("hello"), "from the cdi spec\n").unwrap();
        let device = |name: &str, node: &str| {
            serde_json::json!({
                "name": name,
                "containerEdits": {
                    "env": [format!("CRID_CDI_{}={name}", name.to_uppercase())],
                    "deviceNodes": [{"path": node, "hostPath": "/dev/null"}],
                    "mounts": [{
                        "hostPath": data.path(),
                        "containerPath": format!("/cdi-{name}"),
                        "options": ["ro", "bind"]
                    }]
                }
            })
        };
        let spec = serde_json::json!({
            "cdiVersion": "0.6.0",
            "kind": format!("{vendor}/probe"),
            "devices": [device("one", "/dev/crid-one"), device("two", "/dev/crid-two")]
        });
        std::fs::create_dir_all("/var/run/cdi").unwrap();
        let path = std::path::PathBuf::from(format!("/var/run/cdi/{vendor}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        Self { path, data, vendor }
    }

    fn device(&self, name: &str) -> String {
        format!("{}/probe={name}", self.vendor)
    }
}

impl Drop for CdiSpec {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.data;
    }
}

/// CDI devices (DRA, device plugins): from `CDI_devices` and from
/// `cdi.k8s.io/` annotations, injected by Docker (28.5: device node, env
/// and mount in the container); refused with FailedPrecondition where the
/// daemon cannot inject them (20.10: too old; 26.1: its CDI feature off by
/// default) and for a device no spec defines; never dropped.
#[tokio::test(flavor = "multi_thread")]
async fn cdi_devices_reach_the_container_or_the_create_fails() {
    let env = test_env().await;
    let spec = CdiSpec::write();
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("cdi").await;
    let create = |name: &str, devices: Vec<String>, annotation: Option<String>| {
        let mut c = container_config(name, BUSYBOX_IMAGE, &["sleep", "3600"]);
        c.cdi_devices = devices.into_iter().map(|name| CdiDevice { name }).collect();
        if let Some(a) = annotation {
            c.annotations.insert("cdi.k8s.io/test".into(), a);
        }
        let mut runtime = shim.runtime.clone();
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(config.clone()),
        };
        async move { runtime.create_container(request).await }
    };
    let ours = |shim: &Shim| {
        let mut runtime = shim.runtime.clone();
        let filter = ContainerFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        };
        async move {
            runtime
                .list_containers(ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
                .len()
        }
    };

    // A malformed name is the caller's mistake, on every engine.
    let err = create("badname", vec!["gpu0".into()], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let info = env.engine.info().await.unwrap();
    let api = env.engine.api_version();
    let cdi_on =
        api >= ApiVersion::new(1, 44) && !info.cdi_spec_dirs.unwrap_or_default().is_empty();
    if !cdi_on {
        let err = create("nocdi", vec![spec.device("one")], None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        let why = if api < ApiVersion::new(1, 44) {
            "Docker 25 (API 1.44)"
        } else {
            "CDI feature is off"
        };
        assert!(
            err.message().contains(why) && err.message().contains(&spec.device("one")),
            "{err}"
        );
        assert_eq!(ours(&shim).await, 0, "nothing created");
        return;
    }

    let id = create(
        "withcdi",
        vec![spec.device("one")],
        Some(format!("{}, {}", spec.device("two"), spec.device("one"))),
    )
    .await
    .expect("a container with CDI devices")
    .into_inner()
    .container_id;
    containers::start(&shim.runtime, &id).await;
    // CDI's env goes into the main process's spec, not Docker's config
    // (which an exec inherits): read it where the devices' users see it.
    let seen = containers::exec_stdout(
        &shim.runtime,
        &id,
        &[
            "sh",
            "-c",
            "tr '\\0' '\\n' < /proc/1/environ | grep CRID_CDI | sort; ls -l /dev/crid-one /dev/crid-two; cat /cdi-one/hello /cdi-two/hello",
        ],
    )
    .await;
    assert!(
        seen.contains("CRID_CDI_ONE=one\nCRID_CDI_TWO=two"),
        "both devices' env: {seen}"
    );
    for node in ["/dev/crid-one", "/dev/crid-two"] {
        let line = seen.lines().find(|l| l.ends_with(node)).unwrap_or_default();
        assert!(
            line.starts_with('c') && line.contains("1,   3"),
            "{node} is the host's /dev/null (char 1:3): {seen}"
        );
    }
    assert_eq!(seen.matches("from the cdi spec").count(), 2, "{seen}");

    // A device no spec defines: refused at create where Docker lists what
    // it knows (API 1.50+), at start before that.
    let unknown = create("unknown", vec![spec.device("three")], None).await;
    if api >= ApiVersion::new(1, 50) {
        let err = unknown.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(
            err.message().contains(&spec.device("three")) && err.message().contains("/var/run/cdi"),
            "{err}"
        );
        assert_eq!(ours(&shim).await, 1, "no container left by the refusal");
    } else {
        let id = unknown.unwrap().into_inner().container_id;
        let err = shim
            .runtime
            .clone()
            .start_container(StartContainerRequest { container_id: id })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("unresolvable CDI devices"), "{err}");
    }
}

/// Docker 25 to 28.1 (API 1.44 to 1.49) with its CDI feature on: it takes
/// CDI devices but does not list the ones it knows, so an unknown device
/// shows only when the container starts: StartContainer answers
/// FailedPrecondition with Docker's reason, and a known one is injected.
/// Debian trixie's 26.1 with `"features": {"cdi": true}`, whichever engine
/// is under test.
#[tokio::test(flavor = "multi_thread")]
async fn cdi_on_docker_26_is_checked_when_the_container_starts() {
    test_env().await;
    let bin = cri_dockerd_testkit::daemon::engine_dir("26.1").join("bin");
    assert!(
        bin.join("dockerd").exists(),
        "engine 26.1 is not installed; run `make test-env`"
    );
    let spec = CdiSpec::write();
    let docker =
        PrivateDocker::start_engine(Some(&bin), &serde_json::json!({"features": {"cdi": true}}))
            .await;
    docker.load_from_host(&[BUSYBOX_IMAGE, "registry.k8s.io/pause:3.10"]);
    let shim = Shim::builder(BIN)
        .with_cni()
        .arg(format!("--docker-endpoint={}", docker.endpoint()))
        .start()
        .await;
    let (pod, config) = shim.run_pod("cdi26").await;
    let create = |name: &str, device: String| {
        let mut c = container_config(name, BUSYBOX_IMAGE, &["sleep", "3600"]);
        c.cdi_devices = vec![CdiDevice { name: device }];
        let mut runtime = shim.runtime.clone();
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(config.clone()),
        };
        async move { runtime.create_container(request).await }
    };
    let known = create("known", spec.device("one"))
        .await
        .expect("Docker 26 with CDI on takes the device")
        .into_inner()
        .container_id;
    containers::start(&shim.runtime, &known).await;
    let env = containers::exec_stdout(
        &shim.runtime,
        &known,
        &[
            "sh",
            "-c",
            "tr '\\0' '\\n' < /proc/1/environ | grep CRID_CDI; ls /dev/crid-one",
        ],
    )
    .await;
    assert!(
        env.contains("CRID_CDI_ONE=one") && env.contains("/dev/crid-one"),
        "{env}"
    );

    let unknown = create("unknown", spec.device("three"))
        .await
        .expect("API 1.45 lists no devices: the create passes")
        .into_inner()
        .container_id;
    let err = shim
        .runtime
        .clone()
        .start_container(StartContainerRequest {
            container_id: unknown,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        err.message().contains("unresolvable CDI devices")
            && err.message().contains(&spec.device("three")),
        "{err}"
    );
}
