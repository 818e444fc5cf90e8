//! Exec and attach over SPDY: the kubelet's remote command protocol.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::backend::{Backend, Outcome, StreamIo, TerminalSize};
use crate::spdy::{SpdyConnection, SpdyStream};
use crate::status;

pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
/// In order of preference.
pub const SPDY_PROTOCOLS: [&str; 4] = [V4, V3, V2, V1];

/// How long a client gets to open its streams, as in the kubelet.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What a remote command asked for, from the cached CRI request.
#[derive(Debug, Clone)]
pub struct Command {
    pub exec: Option<Vec<String>>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The client's first protocol the server also speaks (client order);
/// `Ok(None)` when the client named none.
pub fn negotiate<'a>(client: &[String], server: &[&'a str]) -> Result<Option<&'a str>, String> {
    if client.is_empty() {
        return Ok(None);
    }
    client
        .iter()
        .find_map(|c| server.iter().find(|s| **s == c.as_str()).copied())
        .map(Some)
        .ok_or_else(|| format!("unable to negotiate protocol: client supports {client:?}, server supports {server:?}"))
}

/// Protocols from (possibly repeated, comma-separated) header values.
pub fn header_list<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Resize messages are a stream of JSON objects.
pub fn spawn_resize_decoder<R>(mut reader: R) -> mpsc::Receiver<TerminalSize>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
            let mut consumed = 0;
            loop {
                match values.next() {
                    Some(Ok(size)) => {
                        consumed = values.byte_offset();
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(_)) => {
                        // Garbage: drop what was read and carry on.
                        consumed = buf.len();
                        break;
                    }
                    None => break,
                }
            }
            buf.drain(..consumed);
        }
    });
    rx
}

#[derive(Default)]
struct Streams {
    error: Option<SpdyStream>,
    stdin: Option<SpdyStream>,
    stdout: Option<SpdyStream>,
    stderr: Option<SpdyStream>,
    resize: Option<SpdyStream>,
}

async fn wait_for_streams(conn: &mut SpdyConnection, expected: usize) -> Option<Streams> {
    let mut streams = Streams::default();
    let mut received = 0;
    let collect = async {
        while received < expected {
            let stream = conn.next_stream().await?;
            let slot = match stream.header("streamType").unwrap_or("") {
                "error" => &mut streams.error,
                "stdin" => &mut streams.stdin,
                "stdout" => &mut streams.stdout,
                "stderr" => &mut streams.stderr,
                "resize" => &mut streams.resize,
                other => {
                    tracing::debug!(stream_type = other, "ignoring a stream of unknown type");
                    continue;
                }
            };
            *slot = Some(stream);
            received += 1;
        }
        Some(())
    };
    match tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect).await {
        Ok(Some(())) => Some(streams),
        _ => None,
    }
}

/// Runs an exec or attach over an upgraded SPDY connection.
pub async fn serve(
    mut conn: SpdyConnection,
    protocol: Option<&str>,
    command: Command,
    run: impl FnOnce(StreamIo) -> futures::future::BoxFuture<'static, Outcome>,
) {
    let version = match protocol {
        Some(V4) => 4,
        Some(V3) => 3,
        Some(V2) => 2,
        _ => 1,
    };
    let resize = command.tty && version >= 3;
    let expected = 1
        + usize::from(command.stdin)
        + usize::from(command.stdout)
        + usize::from(command.stderr)
        + usize::from(resize);
    let Some(streams) = wait_for_streams(&mut conn, expected).await else {
        tracing::debug!("the client did not open its streams in time");
        conn.close().await;
        return;
    };
    // Our sending half of the stdin and resize streams stays open until the
    // session ends. client-go reads its stdin stream until the server closes
    // it and then closes stdin itself: a FIN sent early ends the client's
    // stdin, and Docker, seeing stdin end on a TTY, detaches the output
    // while the command runs on (`exec -it` printed nothing).
    let mut held_open = Vec::new();
    let stdin = streams.stdin.map(|s| {
        held_open.push(s.writer);
        Box::pin(s.reader) as _
    });
    let resize = streams.resize.map(|s| {
        held_open.push(s.writer);
        spawn_resize_decoder(s.reader)
    });
    let io = StreamIo {
        stdin,
        stdout: streams.stdout.map(|s| Box::pin(s.writer) as _),
        stderr: streams.stderr.map(|s| Box::pin(s.writer) as _),
        tty: command.tty,
        resize,
        client_gone: conn.gone(),
    };
    let outcome = run(io).await;
    let cmd = command.exec.clone().unwrap_or_default();
    if let Some(mut error) = streams.error {
        let report = if version >= 4 {
            status::v4_status(&outcome, &cmd)
        } else {
            status::v1_status(&outcome, &cmd)
        };
        if !report.is_empty() {
            let _ = error.writer.write_all(&report).await;
        }
        let _ = error.writer.shutdown().await;
    }
    conn.close().await;
    drop(held_open);
}

/// Convenience for the server: dispatch to the backend.
pub fn runner(
    backend: std::sync::Arc<dyn Backend>,
    request: crate::backend::StreamRequest,
) -> impl FnOnce(StreamIo) -> futures::future::BoxFuture<'static, Outcome> {
    move |io| match request {
        crate::backend::StreamRequest::Exec(params) => backend.exec(params, io),
        crate::backend::StreamRequest::Attach(params) => backend.attach(params, io),
        crate::backend::StreamRequest::PortForward(_) => {
            Box::pin(async { Outcome::Failed("not a remote command".into()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        let client =
            header_list(["v3.channel.k8s.io, v4.channel.k8s.io", "channel.k8s.io"].into_iter());
        assert_eq!(negotiate(&client, &SPDY_PROTOCOLS), Ok(Some(V3)));
        assert_eq!(negotiate(&[], &SPDY_PROTOCOLS), Ok(None));
        assert!(negotiate(&["v9.channel.k8s.io".into()], &SPDY_PROTOCOLS).is_err());
    }

    #[tokio::test]
    async fn resize_messages_are_decoded_across_reads() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut sizes = spawn_resize_decoder(rx);
        tx.write_all(b"{\"Width\":80,\"Height\":24}\n{\"Width\":1")
            .await
            .unwrap();
        tx.write_all(b"20,\"Height\":40}").await.unwrap();
        assert_eq!(
            sizes.recv().await,
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            sizes.recv().await,
            Some(TerminalSize {
                width: 120,
                height: 40
            })
        );
        drop(tx);
        assert_eq!(sizes.recv().await, None);
    }
}
