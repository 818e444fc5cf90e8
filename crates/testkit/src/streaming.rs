//! Clients of the streaming protocols, as kubectl and crictl speak them:
//! SPDY (sharing the server's framing code) and WebSocket.

use std::time::Duration;

use cri_dockerd_streaming::spdy::conn::Role;
use cri_dockerd_streaming::spdy::{Headers, SpdyConnection};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Default, Clone)]
pub struct Options {
    pub stdin: Option<Vec<u8>>,
    /// Keep stdin open after sending (for attach-style sessions).
    pub keep_stdin_open: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub resize: Option<(u16, u16)>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What came on the error stream.
    pub error: Vec<u8>,
}

impl Outcome {
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.error).unwrap_or(serde_json::Value::Null)
    }

    /// The exit code a v4 status reports; 0 for success.
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.status();
        match status["status"].as_str()? {
            "Success" => Some(0),
            _ => status["details"]["causes"]
                .as_array()?
                .iter()
                .find(|c| c["reason"] == "ExitCode")?["message"]
                .as_str()?
                .parse()
                .ok(),
        }
    }
}

fn host_port(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("URL with a path");
    (host.to_string(), format!("/{path}"))
}

/// The HTTP upgrade to SPDY/3.1; `Err(status code)` when refused.
pub async fn spdy_upgrade(url: &str, protocols: &[&str]) -> Result<(TcpStream, String), u16> {
    let (host, path) = host_port(url);
    let mut tcp = TcpStream::connect(&host)
        .await
        .expect("connecting to the streaming server");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if code != 101 {
        return Err(code);
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("X-Stream-Protocol-Version: ")
                .or_else(|| l.strip_prefix("x-stream-protocol-version: "))
        })
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((tcp, protocol))
}

fn stream_type(kind: &str) -> Headers {
    vec![("streamType".to_string(), kind.to_string())]
}

/// A remote command over SPDY, client-go's v4 way: error stream first, then
/// stdin, stdout, stderr, resize.
pub async fn spdy_command(url: &str, protocol: &str, options: Options) -> Outcome {
    let (tcp, negotiated) = spdy_upgrade(url, &[protocol])
        .await
        .expect("upgrade accepted");
    assert_eq!(negotiated, protocol);
    let conn = SpdyConnection::new(tcp, Role::Client);
    let mut error = conn.open_stream(stream_type("error")).await.unwrap();
    let stdin = match &options.stdin {
        Some(_) => Some(conn.open_stream(stream_type("stdin")).await.unwrap()),
        None => None,
    };
    let stdout = if options.stdout {
        Some(conn.open_stream(stream_type("stdout")).await.unwrap())
    } else {
        None
    };
    let stderr = if options.stderr && !options.tty {
        Some(conn.open_stream(stream_type("stderr")).await.unwrap())
    } else {
        None
    };
    let resize = if options.tty {
        Some(conn.open_stream(stream_type("resize")).await.unwrap())
    } else {
        None
    };
    if let (Some(mut r), Some((w, h))) = (resize, options.resize) {
        r.writer
            .write_all(format!("{{\"Width\":{w},\"Height\":{h}}}\n").as_bytes())
            .await
            .unwrap();
    }
    let writer = tokio::spawn({
        let data = options.stdin.clone().unwrap_or_default();
        let keep = options.keep_stdin_open;
        async move {
            if let Some(mut s) = stdin {
                s.writer.write_all(&data).await.unwrap();
                if !keep {
                    s.writer.shutdown().await.unwrap();
                }
                // Hold the stream (and the reader half) until the end.
                return Some(s);
            }
            None
        }
    });
    let read = |s: Option<cri_dockerd_streaming::spdy::SpdyStream>| async move {
        let mut out = Vec::new();
        if let Some(mut s) = s {
            s.reader.read_to_end(&mut out).await.unwrap();
        }
        out
    };
    let (stdout, stderr, err) = tokio::join!(read(stdout), read(stderr), async {
        let mut out = Vec::new();
        error.reader.read_to_end(&mut out).await.unwrap();
        out
    });
    let _ = writer.await;
    Outcome {
        stdout,
        stderr,
        error: err,
    }
}

/// A remote command over WebSocket (`v5.channel.k8s.io` and friends).
pub async fn ws_command(url: &str, protocol: &str, options: Options) -> Outcome {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut request = ws_url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (tcp_host, _) = host_port(url);
    let tcp = TcpStream::connect(tcp_host).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket upgrade");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        protocol
    );
    let base64 = protocol.contains("base64");
    let (mut sink, mut source) = ws.split();
    let encode = |channel: u8, data: &[u8]| {
        cri_dockerd_streaming::websocket::encode(
            if base64 {
                cri_dockerd_streaming::websocket::Encoding::Base64
            } else {
                cri_dockerd_streaming::websocket::Encoding::Binary
            },
            channel,
            data,
        )
    };
    if let Some((w, h)) = options.resize {
        sink.send(encode(
            4,
            format!("{{\"Width\":{w},\"Height\":{h}}}").as_bytes(),
        ))
        .await
        .unwrap();
    }
    if let Some(data) = &options.stdin {
        for chunk in data.chunks(32 * 1024) {
            sink.send(encode(0, chunk)).await.unwrap();
        }
        if protocol.starts_with("v5") && !options.keep_stdin_open {
            sink.send(Message::binary(vec![
                cri_dockerd_streaming::websocket::CLOSE_SIGNAL,
                0,
            ]))
            .await
            .unwrap();
        }
    }
    let mut outcome = Outcome::default();
    let encoding = if base64 {
        cri_dockerd_streaming::websocket::Encoding::Base64
    } else {
        cri_dockerd_streaming::websocket::Encoding::Binary
    };
    while let Some(Ok(message)) = source.next().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
        let Ok((channel, data)) = cri_dockerd_streaming::websocket::decode(encoding, &message)
        else {
            continue;
        };
        match channel {
            1 => outcome.stdout.extend_from_slice(&data),
            2 => outcome.stderr.extend_from_slice(&data),
            3 => outcome.error.extend_from_slice(&data),
            _ => {}
        }
    }
    outcome
}

/// One forwarded connection over SPDY: sends `payload`, returns everything
/// read back and what came on the error stream.
pub async fn spdy_port_forward(url: &str, port: u16, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (tcp, _) = spdy_upgrade(url, &["portforward.k8s.io"])
        .await
        .expect("upgrade accepted");
    let conn = SpdyConnection::new(tcp, Role::Client);
    let headers = |kind: &str| -> Headers {
        vec![
            ("streamType".into(), kind.into()),
            ("port".into(), port.to_string()),
            ("requestID".into(), "0".into()),
        ]
    };
    let mut error = conn.open_stream(headers("error")).await.unwrap();
    let mut data = conn.open_stream(headers("data")).await.unwrap();
    data.writer.write_all(payload).await.unwrap();
    data.writer.shutdown().await.unwrap();
    let mut back = Vec::new();
    let mut err = Vec::new();
    let read_both = async {
        let (a, b) = tokio::join!(
            data.reader.read_to_end(&mut back),
            error.reader.read_to_end(&mut err)
        );
        a.unwrap();
        b.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(20), read_both)
        .await
        .expect("port-forward finished");
    (back, err)
}

/// One forwarded connection over WebSocket (`?port=`), as kubectl's
/// websocket port-forward does it.
pub async fn ws_port_forward(url: &str, port: u16, payload: &[u8]) -> Vec<u8> {
    let ws_url = format!("{}?port={port}", url.replacen("http://", "ws://", 1));
    let mut request = ws_url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let (tcp_host, _) = host_port(url);
    let tcp = TcpStream::connect(tcp_host).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket upgrade");
    let (mut sink, mut source) = ws.split();
    let mut back = Vec::new();
    let mut port_frames = 0;
    let read = async {
        while let Some(Ok(Message::Binary(data))) = source.next().await {
            let (channel, rest) = (data[0], &data[1..]);
            if port_frames < 2 && rest.len() == 2 && u16::from_le_bytes([rest[0], rest[1]]) == port
            {
                port_frames += 1;
                if port_frames == 2 {
                    sink.send(Message::binary([&[0u8][..], payload].concat()))
                        .await
                        .unwrap();
                }
                continue;
            }
            if channel == 0 {
                back.extend_from_slice(rest);
                if !back.is_empty() && back.ends_with(b"\n") {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("websocket port-forward finished");
    back
}

/// The HTTP status an upgrade attempt on `url` gets.
pub async fn upgrade_status(url: &str) -> u16 {
    match spdy_upgrade(url, &["v4.channel.k8s.io"]).await {
        Ok(_) => 101,
        Err(code) => code,
    }
}

/// Builds `tests/interop/streamclient` (Go, with Debian's packaged
/// spdystream, gorilla/websocket and x/term) once per source change. Tests
/// running at once share the build: one builds under a lock, into a
/// temporary name renamed into place.
pub fn go_stream_client() -> std::path::PathBuf {
    let root = crate::repo_root();
    let out_dir = root.join("target/interop");
    std::fs::create_dir_all(&out_dir).unwrap();
    let binary = out_dir.join("streamclient");
    let source = root.join("tests/interop/streamclient/main.go");
    let fresh = || {
        std::fs::metadata(&binary)
            .and_then(|b| Ok(b.modified()? >= std::fs::metadata(&source)?.modified()?))
            .unwrap_or(false)
    };
    let lock = std::fs::File::create(out_dir.join("streamclient.lock")).unwrap();
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("locking the Go client build");
    if fresh() {
        return binary;
    }
    let gopath = out_dir.join("gopath");
    let package = gopath.join("src/streamclient");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::copy(&source, package.join("main.go")).unwrap();
    let building = out_dir.join(format!("streamclient.{}", std::process::id()));
    let status = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&building)
        .arg("streamclient")
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
        .env("GOCACHE", out_dir.join("gocache"))
        .env("GOFLAGS", "")
        .status()
        .unwrap_or_else(|e| {
            panic!("running go ({e}); `make test-env` installs golang-go and the Go libraries")
        });
    assert!(
        status.success(),
        "building the Go stream client failed (scripts/test-env.sh installs golang-go, \
         golang-github-docker-spdystream-dev, golang-github-gorilla-websocket-dev, golang-golang-x-term-dev)"
    );
    std::fs::rename(&building, &binary).unwrap();
    binary
}

/// Runs the Go client with `stdin` as its input; its JSON report.
pub async fn go_stream(args: &[&str], stdin: &[u8]) -> serde_json::Value {
    let binary = go_stream_client();
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running the Go client");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    tokio::spawn(async move {
        let _ = input.write_all(&data).await;
    });
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the Go client finished")
        .expect("the Go client's output");
    assert!(
        output.status.success(),
        "Go client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    serde_json::from_slice(&output.stdout).expect("the Go client's JSON report")
}
