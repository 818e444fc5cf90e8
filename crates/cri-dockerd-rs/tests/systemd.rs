//! Running as cri-dockerd's stock systemd units run it, checked with
//! systemd's own tools: `systemd-socket-activate` hands over the CRI socket
//! (`--container-runtime-endpoint=fd://`) and sets `NOTIFY_SOCKET`, a unix
//! datagram socket of the test's receives `READY=1`, `WATCHDOG=1` and
//! `STOPPING=1`; `systemd-analyze verify` checks the shipped units.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_dockerd_api::v1::VersionRequest;
use cri_dockerd_api::v1::runtime_service_client::RuntimeServiceClient;
use cri_dockerd_testkit::docker_proxy::DockerProxy;
use cri_dockerd_testkit::shim::channel_for;
use cri_dockerd_testkit::test_env;

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");

/// The shim's own flags, on a scratch root.
fn shim_args(dir: &Path, endpoint: &str) -> Vec<String> {
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    vec![
        BIN.to_string(),
        format!("--container-runtime-endpoint={endpoint}"),
        format!(
            "--cri-dockerd-root-directory={}",
            dir.join("root").display()
        ),
        format!("--cni-conf-dir={}", dir.join("net.d").display()),
        format!("--cni-cache-dir={}", dir.join("cni-cache").display()),
        "--streaming-bind-addr=127.0.0.1:0".into(),
    ]
}

/// `systemd-socket-activate -l SOCKET [extra...] -E ... <shim> ...`.
fn socket_activate(dir: &Path, extra: &[&str], env: &[String], shim: Vec<String>) -> Child {
    let log = std::fs::File::create(dir.join("shim.log")).unwrap();
    let mut command = Command::new("systemd-socket-activate");
    command.arg("-l").arg(dir.join("cri.sock")).args(extra);
    for e in env {
        command.arg("-E").arg(e);
    }
    command
        .args(shim)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("systemd-socket-activate (package systemd; scripts/test-env.sh installs it)")
}

fn wait_for_path(path: &Path) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The next notification, as its `KEY=VALUE` lines.
fn next_notification(socket: &UnixDatagram, dir: &Path) -> Vec<String> {
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect(),
        Err(e) => panic!(
            "no sd_notify message ({e}); shim log:\n{}",
            std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default()
        ),
    }
}

fn wait_exit(child: &mut Child, dir: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit within 30s; log:\n{}",
            std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn version_over(socket: &Path) -> String {
    let channel = channel_for(socket)
        .await
        .expect("connecting to the CRI socket");
    RuntimeServiceClient::new(channel)
        .version(VersionRequest::default())
        .await
        .expect("Version over the passed socket")
        .into_inner()
        .runtime_name
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_activation_readiness_watchdog_and_stop() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut activator = socket_activate(
        dir.path(),
        &[],
        &[
            format!("NOTIFY_SOCKET={}", notify_path.display()),
            "WATCHDOG_USEC=2000000".into(),
        ],
        shim_args(dir.path(), "fd://"),
    );
    let socket = dir.path().join("cri.sock");
    wait_for_path(&socket);
    // The first connection starts the shim, which serves it on the socket
    // systemd's tool passed.
    assert_eq!(version_over(&socket).await, "docker");

    let ready = next_notification(&notify, dir.path());
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    let main_pid: i32 = ready
        .iter()
        .find_map(|l| l.strip_prefix("MAINPID="))
        .expect("MAINPID")
        .parse()
        .unwrap();
    assert_eq!(
        main_pid as u32,
        activator.id(),
        "the activated process itself"
    );
    // WATCHDOG_USEC=2s: pings at half that while Docker answers.
    let ping = next_notification(&notify, dir.path());
    assert_eq!(ping, vec!["WATCHDOG=1".to_string()]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(main_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    loop {
        let message = next_notification(&notify, dir.path());
        if message == vec!["WATCHDOG=1".to_string()] {
            continue;
        }
        assert!(message.contains(&"STOPPING=1".to_string()), "{message:?}");
        break;
    }
    let status = wait_exit(&mut activator, dir.path());
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        socket.exists(),
        "the socket belongs to systemd: the shim must not unlink it"
    );
}

/// WATCHDOG=1 only while Docker answers: taken away, the pings stop (and
/// systemd would restart the shim); given back, they resume.
#[tokio::test(flavor = "multi_thread")]
async fn watchdog_pings_follow_docker() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let mut docker = DockerProxy::start(&dir.path().join("docker.sock"));
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut shim = shim_args(dir.path(), "fd://");
    shim.push(format!("--docker-endpoint={}", docker.endpoint()));
    let mut activator = socket_activate(
        dir.path(),
        &[],
        &[
            format!("NOTIFY_SOCKET={}", notify_path.display()),
            "WATCHDOG_USEC=1000000".into(),
        ],
        shim,
    );
    let socket = dir.path().join("cri.sock");
    wait_for_path(&socket);
    assert_eq!(version_over(&socket).await, "docker");
    assert!(next_notification(&notify, dir.path()).contains(&"READY=1".to_string()));
    assert_eq!(
        next_notification(&notify, dir.path()),
        vec!["WATCHDOG=1".to_string()]
    );

    docker.cut();
    // A ping already on its way may still land; then silence.
    notify
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 256];
    while notify.recv(&mut buf).is_ok() {}
    notify
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert!(
        notify.recv(&mut buf).is_err(),
        "a watchdog ping while Docker does not answer"
    );

    docker.resume();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        next_notification(&notify, dir.path()),
        vec!["WATCHDOG=1".to_string()],
        "pings resume once Docker answers"
    );
    let _ = activator.kill();
    let _ = activator.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn named_socket_and_abstract_notify_socket() {
    test_env().await;
    let dir = tempfile::tempdir().unwrap();
    let name = format!("crid-notify-{}", cri_dockerd_testkit::unique(""));
    let address =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let notify = UnixDatagram::bind_addr(&address).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut activator = socket_activate(
        dir.path(),
        &["--fdname=cri"],
        &[format!("NOTIFY_SOCKET=@{name}")],
        shim_args(dir.path(), "fd://cri"),
    );
    let socket = dir.path().join("cri.sock");
    wait_for_path(&socket);
    assert_eq!(version_over(&socket).await, "docker");
    let ready = next_notification(&notify, dir.path());
    assert!(ready.contains(&"READY=1".to_string()), "{ready:?}");
    let _ = activator.kill();
    let _ = activator.wait();

    // A name systemd did not pass stops the start, naming what was passed.
    let dir = tempfile::tempdir().unwrap();
    let mut activator = socket_activate(
        dir.path(),
        &["--fdname=cri"],
        &[],
        shim_args(dir.path(), "fd://other"),
    );
    let socket = dir.path().join("cri.sock");
    wait_for_path(&socket);
    let _ = std::os::unix::net::UnixStream::connect(&socket);
    let status = wait_exit(&mut activator, dir.path());
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("shim.log")).unwrap();
    assert!(
        log.contains("no passed socket is named \"other\"") && log.contains("cri"),
        "{log}"
    );
}

#[test]
fn fd_endpoint_without_a_passed_socket_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let args = shim_args(dir.path(), "fd://");
    let output = Command::new(&args[0])
        .args(&args[1..])
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no socket was passed"), "{stderr}");
    assert!(stderr.contains("cri-docker.socket"), "{stderr}");
}

fn unit_file(name: &str) -> PathBuf {
    cri_dockerd_testkit::repo_root()
        .join("packaging/systemd")
        .join(name)
}

/// `Key=Value` lines of a unit file, comments and sections dropped.
fn settings(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn units_have_cri_dockerds_shape_and_pass_systemd_analyze_verify() {
    let service = settings(&unit_file("cri-docker.service"));
    let socket = settings(&unit_file("cri-docker.socket"));
    let has = |set: &[(String, String)], key: &str, value: &str| {
        set.iter().any(|(k, v)| k == key && v == value)
    };
    for (key, value) in [
        ("Type", "notify"),
        ("Requires", "cri-docker.socket"),
        ("Restart", "always"),
        ("Delegate", "yes"),
        ("KillMode", "process"),
        (
            "ExecStart",
            "/usr/bin/cri-dockerd-rs --container-runtime-endpoint fd://",
        ),
    ] {
        assert!(
            has(&service, key, value),
            "cri-docker.service: {key}={value}"
        );
    }
    assert!(
        service
            .iter()
            .any(|(k, v)| k == "After" && v.split_whitespace().any(|u| u == "docker.service")),
        "After=docker.service"
    );
    for (key, value) in [
        ("ListenStream", "%t/cri-dockerd.sock"),
        ("SocketMode", "0660"),
        ("SocketGroup", "docker"),
        ("PartOf", "cri-docker.service"),
        ("RemoveOnStop", "yes"),
    ] {
        assert!(has(&socket, key, value), "cri-docker.socket: {key}={value}");
    }

    // systemd-analyze checks units against a root that has what they name:
    // the binary at its installed path, /bin/kill, systemd's own units.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["usr/bin", "bin", "etc/systemd/system", "usr/lib/systemd"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy(BIN, r.join("usr/bin/cri-dockerd-rs")).unwrap();
    std::fs::copy("/bin/kill", r.join("bin/kill")).unwrap();
    let copied = Command::new("cp")
        .args(["-r", "/usr/lib/systemd/system"])
        .arg(r.join("usr/lib/systemd/"))
        .status()
        .unwrap();
    assert!(copied.success());
    for unit in ["cri-docker.service", "cri-docker.socket"] {
        std::fs::copy(unit_file(unit), r.join("etc/systemd/system").join(unit)).unwrap();
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .args(["cri-docker.socket", "cri-docker.service"])
        .output()
        .expect("systemd-analyze (package systemd; scripts/test-env.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
