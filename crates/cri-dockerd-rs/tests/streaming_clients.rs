//! Exec, attach and port-forward through the clients people run, the way
//! they run them: Debian's kubectl (client-go's SPDY executor and
//! port-forwarder) on a real pseudo-terminal, through a stand-in for the API
//! server and the kubelet's streaming proxy; and the Go WebSocket clients
//! (tests/interop/streamclient) for the v5 channel protocol on a terminal
//! and for SPDY tunnelled in WebSocket, as crictl 1.34 and kubectl 1.31+
//! port-forward.

use std::process::{Command, Stdio};
use std::time::Duration;

use cri_dockerd_api::v1::*;
use cri_dockerd_testkit::cri::{container_config, containers};
use cri_dockerd_testkit::env::{BUSYBOX_IMAGE, kubectl};
use cri_dockerd_testkit::kubeapi::{FakeApiServer, FakeContainer};
use cri_dockerd_testkit::streaming::{go_stream, go_stream_client};
use cri_dockerd_testkit::terminal::Terminal;
use cri_dockerd_testkit::{Shim, test_env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_cri-dockerd-rs");
const STEP: Duration = Duration::from_secs(20);

struct Node {
    shim: Shim,
    /// Serves kubectl for as long as the node lives.
    _api: FakeApiServer,
    home: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    pod: String,
    /// `sleep`: for exec.
    box_id: String,
    /// `sh` with a TTY and stdin: for attach.
    tty_id: String,
}

/// One pod named `demo` with a plain container, a TTY shell and an HTTP
/// server on 8080, known to the stand-in API server.
async fn node() -> Node {
    test_env().await;
    let shim = Shim::builder(BIN).with_cni().start().await;
    let (pod, config) = shim.run_pod("demo").await;
    let uid = shim.pod_uid("demo");
    let box_id = shim.run_sleeper(&pod, &config, "box").await;
    let mut tty = container_config("ttybox", BUSYBOX_IMAGE, &["sh"]);
    tty.tty = true;
    tty.stdin = true;
    let tty_id = containers::run(&shim.runtime, &pod, tty, &config).await;
    containers::run(
        &shim.runtime,
        &pod,
        container_config(
            "web",
            BUSYBOX_IMAGE,
            &["httpd", "-f", "-p", "8080", "-h", "/etc"],
        ),
        &config,
    )
    .await;
    let api = FakeApiServer::start(shim.runtime.clone()).await;
    let container = |name: &str, id: &str, interactive: bool| FakeContainer {
        name: name.into(),
        id: id.into(),
        image: BUSYBOX_IMAGE.into(),
        stdin: interactive,
        tty: interactive,
    };
    api.add_pod(
        "default",
        "demo",
        &uid,
        &pod,
        vec![
            container("box", &box_id, false),
            container("ttybox", &tty_id, true),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(home.path());
    Node {
        shim,
        _api: api,
        home,
        kubeconfig,
        pod,
        box_id,
        tty_id,
    }
}

impl Node {
    fn kubectl(&self, args: &[&str]) -> Command {
        let mut command = Command::new(kubectl());
        command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TERM", "xterm");
        command
    }

    async fn exec_url(&self, container: &str, cmd: &[&str], tty: bool) -> String {
        self.shim
            .runtime
            .clone()
            .exec(ExecRequest {
                container_id: container.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin: true,
                stdout: true,
                stderr: !tty,
            })
            .await
            .unwrap()
            .into_inner()
            .url
    }

    async fn container_state(&self, id: &str) -> i32 {
        self.shim
            .runtime
            .clone()
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
            .state
    }
}

/// A busybox shell at its prompt: `echo` a computed value, `stty size`
/// before and after a resize, then `exit 3`. Typed text is echoed, so each
/// check looks for what only the command's output contains.
async fn interactive_shell(term: &mut Terminal, exits: bool) {
    term.expect("# ", STEP).await;
    term.type_line("echo typed-$((6*7))");
    term.expect("typed-42", STEP).await;
    term.type_line("stty size");
    term.expect("30 100", STEP).await;
    term.resize(40, 120);
    // The new size travels client -> server -> Docker -> the container's
    // terminal; ask until it has arrived.
    let mut resized = false;
    for _ in 0..20 {
        term.type_line("stty size");
        if term
            .wait_for("40 120", Duration::from_millis(500))
            .await
            .is_some()
        {
            resized = true;
            break;
        }
    }
    assert!(
        resized,
        "the resize never reached the container:\n{:?}",
        term.transcript()
    );
    if exits {
        term.type_line("exit 3");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_it_over_spdy_on_a_terminal() {
    let node = node().await;
    let mut term = Terminal::spawn(
        node.kubectl(&["exec", "-it", "demo", "-c", "box", "--", "sh"]),
        30,
        100,
    );
    interactive_shell(&mut term, true).await;
    let status = term.wait(STEP).await;
    assert_eq!(status.code(), Some(3), "{:?}", term.transcript());

    // A one-shot command with stdin kept open: its output must arrive
    // although the client never closes stdin.
    let mut term = Terminal::spawn(
        node.kubectl(&[
            "exec",
            "-it",
            "demo",
            "-c",
            "box",
            "--",
            "sh",
            "-c",
            "echo quick-out",
        ]),
        30,
        100,
    );
    term.expect("quick-out", STEP).await;
    let status = term.wait(STEP).await;
    assert!(status.success(), "{:?}", term.transcript());
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_attach_it_over_spdy_on_a_terminal() {
    let node = node().await;
    let mut term = Terminal::spawn(
        node.kubectl(&["attach", "-it", "demo", "-c", "ttybox"]),
        30,
        100,
    );
    // kubectl asks for Enter when the prompt was printed before it came.
    term.expect("pressing enter", STEP).await;
    term.type_line("");
    interactive_shell(&mut term, false).await;
    // The client going away detaches; the container's shell runs on.
    drop(term);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node.container_state(&node.tty_id).await,
        ContainerState::ContainerRunning as i32
    );
    // And it can be attached again.
    let mut term = Terminal::spawn(
        node.kubectl(&["attach", "-it", "demo", "-c", "ttybox"]),
        30,
        100,
    );
    term.expect("pressing enter", STEP).await;
    term.type_line("echo again-$((2+3))");
    term.expect("again-5", STEP).await;
}

/// The Go WebSocket client on a 30x100 terminal.
fn ws_tty(client: &std::path::Path, url: &str) -> Terminal {
    let mut command = Command::new(client);
    command.args(["ws-tty", url]);
    Terminal::spawn(command, 30, 100)
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_exec_and_attach_on_a_terminal() {
    let node = node().await;
    let client = go_stream_client();

    let url = node.exec_url(&node.box_id, &["sh"], true).await;
    let mut term = ws_tty(&client, &url);
    interactive_shell(&mut term, true).await;
    let status = term.wait(STEP).await;
    assert_eq!(status.code(), Some(3), "{:?}", term.transcript());

    let url = node
        .exec_url(&node.box_id, &["sh", "-c", "echo quick-out"], true)
        .await;
    let mut term = ws_tty(&client, &url);
    term.expect("quick-out", STEP).await;
    assert!(term.wait(STEP).await.success(), "{:?}", term.transcript());

    let url = node
        .shim
        .runtime
        .clone()
        .attach(AttachRequest {
            container_id: node.tty_id.clone(),
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut term = ws_tty(&client, &url);
    term.type_line("");
    interactive_shell(&mut term, false).await;
    drop(term);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node.container_state(&node.tty_id).await,
        ContainerState::ContainerRunning as i32
    );
}

/// `GET /hostname` from busybox httpd through a forwarded local port.
async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(STEP, stream.read_to_string(&mut reply))
        .await
        .expect("a reply through the forwarded port")
        .unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_port_forward_over_spdy() {
    let node = node().await;
    let mut child = node
        .kubectl(&["port-forward", "demo", ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let line = match rx.recv_timeout(STEP) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "kubectl port-forward did not say where it listens: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    let port: u16 = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output {line:?}"));
    for _ in 0..2 {
        let reply = http_get(port, "/hostname").await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply.ends_with("\r\n\r\ndemo\n"),
            "the pod's hostname: {reply}"
        );
    }
    // Two connections at once share the session.
    let (a, b) = tokio::join!(http_get(port, "/hostname"), http_get(port, "/hosts"));
    assert!(
        a.starts_with("HTTP/1.1 200") && b.contains("localhost"),
        "{a}\n{b}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_over_spdy_tunnelled_in_websocket() {
    let node = node().await;
    let url = node
        .shim
        .runtime
        .clone()
        .port_forward(PortForwardRequest {
            pod_sandbox_id: node.pod.clone(),
            port: vec![8080],
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let report = go_stream(
        &[
            "tunnel-portforward",
            &url,
            "8080",
            "GET /hostname HTTP/1.0\r\n\r\n",
            "8080",
            "GET /hosts HTTP/1.0\r\n\r\n",
        ],
        b"",
    )
    .await;
    let data = report["data"].as_array().unwrap();
    assert!(
        data[0].as_str().unwrap().starts_with("HTTP/1.1 200"),
        "{report}"
    );
    assert!(data[0].as_str().unwrap().ends_with("demo\n"), "{report}");
    assert!(data[1].as_str().unwrap().contains("localhost"), "{report}");
    assert_eq!(report["error"], serde_json::json!(["", ""]));
}
