//! SPDY tunnelled through WebSocket: how kubectl 1.31+ and crictl 1.34
//! (`--transport websocket`) port-forward. The client offers the
//! subprotocol `SPDY/3.1+portforward.k8s.io`, and once upgraded the SPDY
//! session's bytes travel in binary WebSocket messages, with message
//! boundaries that mean nothing. client-go writes one message per write and
//! ends with a normal close.
//!
//! Written here rather than taken from `ws_stream_tungstenite`: that crate
//! brings a second tungstenite version and its own event machinery for what
//! is one `AsyncRead + AsyncWrite` over the WebSocket stream we already have.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What client-go puts before the SPDY protocol name it tunnels.
pub const TUNNELING_PREFIX: &str = "SPDY/3.1+";
/// Port-forward's SPDY protocol, tunnelled.
pub const PORT_FORWARD_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// A WebSocket as a byte stream: binary messages in, one binary message
/// per write out, a normal close on shutdown.
pub struct WebSocketBytes<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    read_done: bool,
    close_sent: bool,
}

impl<S> WebSocketBytes<S> {
    pub fn new(ws: WebSocketStream<S>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            read_done: false,
            close_sent: false,
        }
    }
}

fn to_io(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(e) => e,
        Error::ConnectionClosed | Error::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

impl<S> AsyncRead for WebSocketBytes<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                // Control frames are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message in a SPDY tunnel",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => this.read_done = true,
                Some(Err(e)) => {
                    this.read_done = true;
                    return Poll::Ready(Err(to_io(e)));
                }
            }
        }
        let n = this.pending.len().min(out.remaining());
        out.put_slice(&this.pending[..n]);
        this.pending = this.pending.slice(n..);
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncWrite for WebSocketBytes<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = &mut self.ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut *ws)
            .start_send(Message::binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            Pin::new(&mut self.ws)
                .start_send(Message::Close(Some(frame)))
                .map_err(to_io)?;
            self.close_sent = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            // The peer closing first is a finished close, not a failure.
            Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn pair() -> (
        WebSocketBytes<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (WebSocketBytes::new(server), client)
    }

    #[tokio::test]
    async fn message_boundaries_do_not_matter_and_close_is_eof() {
        let (mut bytes, mut client) = pair().await;
        client.send(Message::binary(&b"hel"[..])).await.unwrap();
        client.send(Message::Ping(Bytes::new())).await.unwrap();
        client.send(Message::binary(&b"lo"[..])).await.unwrap();
        client.close(None).await.unwrap();
        let mut got = Vec::new();
        bytes.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn each_write_is_a_binary_message_and_shutdown_closes_normally() {
        let (mut bytes, mut client) = pair().await;
        bytes.write_all(b"frame").await.unwrap();
        bytes.flush().await.unwrap();
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::binary(&b"frame"[..])
        );
        let closing = tokio::spawn(async move { bytes.shutdown().await });
        match client.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected a close, got {other:?}"),
        }
        drop(client);
        closing.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn text_in_a_tunnel_is_an_error() {
        let (mut bytes, mut client) = pair().await;
        client.send(Message::text("nope")).await.unwrap();
        let mut buf = [0u8; 8];
        let err = bytes.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
