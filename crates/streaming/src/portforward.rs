//! Port forwarding: each forwarded connection is a TCP connection to
//! `localhost:<port>` inside the pod's network namespace.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backend::{Backend, PortForwardParams};
use crate::spdy::{SpdyConnection, SpdyStream};
use crate::websocket::Channels;

pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";

pub fn check_port(value: &str, allowed: &[u16]) -> Result<u16, String> {
    let port: u16 = value
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {value:?}"))?;
    if !allowed.is_empty() && !allowed.contains(&port) {
        return Err(format!("port {port} was not requested"));
    }
    Ok(port)
}

/// Copies both ways until the pod's side is done. A client that stops
/// sending half-closes the pod's connection and still gets the reply; the
/// pod closing ends the forwarded connection at once, as the kubelet ends it
/// (client-go waits for that before it closes the local connection).
async fn splice<R, W>(mut from_client: R, mut to_client: W, tcp: tokio::net::TcpStream)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut tcp_write).await;
        let _ = tcp_write.shutdown().await;
        std::future::pending::<()>().await
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut tcp_read, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::select! {
        () = downstream => {}
        () = upstream => {}
    }
}

struct Pair {
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
}

async fn forward_spdy(
    backend: Arc<dyn Backend>,
    params: Arc<PortForwardParams>,
    data: SpdyStream,
    mut error: SpdyStream,
) {
    let port = match check_port(data.header("port").unwrap_or(""), &params.ports) {
        Ok(port) => port,
        Err(message) => {
            let _ = error.writer.write_all(message.as_bytes()).await;
            let _ = error.writer.shutdown().await;
            return;
        }
    };
    match backend
        .port_forward(params.pod_sandbox_id.clone(), port)
        .await
    {
        Ok(tcp) => splice(data.reader, data.writer, tcp).await,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}: {e}",
                params.pod_sandbox_id
            );
            tracing::debug!("{message}");
            let _ = error.writer.write_all(message.as_bytes()).await;
        }
    }
    let _ = error.writer.shutdown().await;
}

/// Serves port-forward streams until the client goes away: a `data` and an
/// `error` stream per forwarded connection, paired by `requestID`.
pub async fn serve_spdy(
    mut conn: SpdyConnection,
    backend: Arc<dyn Backend>,
    params: PortForwardParams,
) {
    let params = Arc::new(params);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = conn.next_stream().await {
        // Old clients send no requestID; their streams arrive in pairs.
        let request_id = stream
            .header("requestID")
            .map(str::to_string)
            .unwrap_or_else(|| ((stream.id + 1) / 4).to_string());
        let pair = pending.entry(request_id.clone()).or_insert(Pair {
            data: None,
            error: None,
        });
        match stream.header("streamType").unwrap_or("") {
            "data" => pair.data = Some(stream),
            "error" => pair.error = Some(stream),
            other => {
                tracing::debug!(
                    stream_type = other,
                    "ignoring a port-forward stream of unknown type"
                );
                continue;
            }
        }
        if pair.data.is_some() && pair.error.is_some() {
            let pair = pending.remove(&request_id).expect("present");
            tokio::spawn(forward_spdy(
                backend.clone(),
                params.clone(),
                pair.data.expect("checked"),
                pair.error.expect("checked"),
            ));
        }
    }
    conn.close().await;
}

/// Port forward over WebSocket: ports from the `port` query parameters;
/// channel 2i carries data for port i and 2i+1 its errors, each opened by
/// the port number (little endian).
pub async fn serve_websocket(
    mut channels: Channels,
    backend: Arc<dyn Backend>,
    params: PortForwardParams,
    ports: Vec<u16>,
) {
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let data_channel = (2 * i) as u8;
        let error_channel = data_channel + 1;
        channels.send(data_channel, &port.to_le_bytes()).await;
        channels.send(error_channel, &port.to_le_bytes()).await;
        let (Some(reader), Some(writer), Some(mut error)) = (
            channels.take_reader(data_channel as usize),
            channels.take_writer(data_channel as usize),
            channels.take_writer(error_channel as usize),
        ) else {
            continue;
        };
        let backend = backend.clone();
        let sandbox = params.pod_sandbox_id.clone();
        let port = *port;
        tasks.push(tokio::spawn(async move {
            match backend.port_forward(sandbox.clone(), port).await {
                Ok(tcp) => splice(reader, writer, tcp).await,
                Err(e) => {
                    let message = format!("error forwarding port {port} to pod {sandbox}: {e}");
                    let _ = error.write_all(message.as_bytes()).await;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    channels.close().await;
}

/// Reads until EOF; for callers that want a peer's message.
pub async fn read_all<R: AsyncRead + Unpin>(mut reader: R) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = reader.read_to_end(&mut out).await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_must_be_valid_and_requested() {
        assert_eq!(check_port("8080", &[]), Ok(8080));
        assert_eq!(check_port("8080", &[80, 8080]), Ok(8080));
        assert!(check_port("81", &[80]).is_err());
        assert!(check_port("0", &[]).is_err());
        assert!(check_port("70000", &[]).is_err());
        assert!(check_port("http", &[]).is_err());
    }
}
