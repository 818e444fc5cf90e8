//! The channel protocols over WebSocket: one channel byte before each
//! message (binary), or an ASCII channel digit before base64 (text).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::PollSender;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
pub const V1_BASE64: &str = "base64.channel.k8s.io";
/// Remote command protocols, in order of preference.
pub const REMOTE_COMMAND_PROTOCOLS: [&str; 5] = [V5, V4, V4_BASE64, V1, V1_BASE64];
/// Port-forward protocols (v4 names; the unversioned one is binary too).
pub const PORT_FORWARD_PROTOCOLS: [&str; 3] = [V4, V4_BASE64, V1];

/// v5: `[255, channel]` says the peer will send no more on `channel`.
pub const CLOSE_SIGNAL: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Binary,
    Base64,
}

impl Encoding {
    pub fn of(protocol: &str) -> Self {
        if protocol.contains("base64") {
            Encoding::Base64
        } else {
            Encoding::Binary
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("empty message")]
    Empty,
    #[error("bad channel {0:?}")]
    BadChannel(char),
    #[error("bad base64 payload")]
    Base64,
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
}

pub fn encode(encoding: Encoding, channel: u8, data: &[u8]) -> Message {
    match encoding {
        Encoding::Binary => {
            let mut message = Vec::with_capacity(data.len() + 1);
            message.push(channel);
            message.extend_from_slice(data);
            Message::binary(message)
        }
        Encoding::Base64 => {
            let mut text = String::with_capacity(data.len() * 4 / 3 + 4);
            text.push((b'0' + channel) as char);
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            Message::text(text)
        }
    }
}

/// A received message as (channel, payload).
pub fn decode(encoding: Encoding, message: &Message) -> Result<(u8, Vec<u8>), ChannelError> {
    match (encoding, message) {
        (Encoding::Binary, Message::Binary(data)) => {
            let (&channel, payload) = data.split_first().ok_or(ChannelError::Empty)?;
            Ok((channel, payload.to_vec()))
        }
        (Encoding::Base64, Message::Text(text)) => {
            let mut chars = text.as_str().chars();
            let first = chars.next().ok_or(ChannelError::Empty)?;
            let channel = first.to_digit(10).ok_or(ChannelError::BadChannel(first))? as u8;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(chars.as_str())
                .map_err(|_| ChannelError::Base64)?;
            Ok((channel, payload))
        }
        (Encoding::Binary, Message::Text(_)) => Err(ChannelError::Unexpected("text")),
        (Encoding::Base64, Message::Binary(_)) => Err(ChannelError::Unexpected("binary")),
        _ => Err(ChannelError::Unexpected("control")),
    }
}

enum Outgoing {
    Data(u8, Bytes),
    Close,
}

/// A WebSocket split into channels.
pub struct Channels {
    readers: Vec<Option<ChannelReader>>,
    writers: Vec<Option<ChannelWriter>>,
    out: mpsc::Sender<Outgoing>,
    writer_task: tokio::task::JoinHandle<()>,
    gone: tokio_util::sync::CancellationToken,
}

impl Channels {
    /// `readable` and `writable` say which channels exist in which direction.
    pub fn new<S>(
        ws: WebSocketStream<S>,
        encoding: Encoding,
        readable: &[bool],
        writable: &[bool],
    ) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut source) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
        let writer_task = tokio::spawn(async move {
            while let Some(item) = out_rx.recv().await {
                let sent = match item {
                    Outgoing::Data(channel, data) => {
                        sink.send(encode(encoding, channel, &data)).await
                    }
                    Outgoing::Close => {
                        let frame = CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break;
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
            let _ = sink.flush().await;
        });
        let mut inbound: Vec<Option<mpsc::Sender<Bytes>>> = Vec::new();
        let mut readers = Vec::new();
        for readable in readable {
            if *readable {
                let (tx, rx) = mpsc::channel(16);
                inbound.push(Some(tx));
                readers.push(Some(ChannelReader {
                    rx,
                    pending: Bytes::new(),
                }));
            } else {
                inbound.push(None);
                readers.push(None);
            }
        }
        let gone = tokio_util::sync::CancellationToken::new();
        let reader_gone = gone.clone();
        tokio::spawn(async move {
            let _cancel_on_exit = reader_gone.drop_guard();
            while let Some(Ok(message)) = source.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                    continue;
                }
                let Ok((channel, payload)) = decode(encoding, &message) else {
                    continue;
                };
                if channel == CLOSE_SIGNAL {
                    if let Some(&closed) = payload.first()
                        && let Some(slot) = inbound.get_mut(closed as usize)
                    {
                        *slot = None;
                    }
                    continue;
                }
                let sender = inbound.get(channel as usize).and_then(|s| s.clone());
                if let Some(sender) = sender
                    && !payload.is_empty()
                    && sender.send(Bytes::from(payload)).await.is_err()
                {
                    inbound[channel as usize] = None;
                }
            }
        });
        let writers = writable
            .iter()
            .enumerate()
            .map(|(i, w)| {
                w.then(|| ChannelWriter {
                    channel: i as u8,
                    out: PollSender::new(out_tx.clone()),
                })
            })
            .collect();
        Self {
            readers,
            writers,
            out: out_tx,
            writer_task,
            gone,
        }
    }

    /// Cancelled when the client closes or breaks the connection.
    pub fn gone(&self) -> tokio_util::sync::CancellationToken {
        self.gone.clone()
    }

    pub fn take_reader(&mut self, channel: usize) -> Option<ChannelReader> {
        self.readers.get_mut(channel).and_then(Option::take)
    }

    pub fn take_writer(&mut self, channel: usize) -> Option<ChannelWriter> {
        self.writers.get_mut(channel).and_then(Option::take)
    }

    pub async fn send(&self, channel: u8, data: &[u8]) {
        let _ = self
            .out
            .send(Outgoing::Data(channel, Bytes::copy_from_slice(data)))
            .await;
    }

    /// Sends a normal close after everything queued, and waits for it.
    pub async fn close(self) {
        let _ = self.out.send(Outgoing::Close).await;
        drop(self.out);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.writer_task).await;
    }
}

pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(data)) => self.pending = data,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(out.remaining());
        out.put_slice(&self.pending[..n]);
        self.pending = self.pending.slice(n..);
        Poll::Ready(Ok(()))
    }
}

pub struct ChannelWriter {
    channel: u8,
    out: PollSender<Outgoing>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.out.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => return Poll::Pending,
        }
        let n = buf.len().min(64 * 1024);
        let channel = self.channel;
        if self
            .out
            .send_item(Outgoing::Data(channel, Bytes::copy_from_slice(&buf[..n])))
            .is_err()
        {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_base64_channel_framing() {
        let m = encode(Encoding::Binary, 1, b"hi");
        assert_eq!(m, Message::binary(vec![1, b'h', b'i']));
        assert_eq!(decode(Encoding::Binary, &m), Ok((1, b"hi".to_vec())));
        let m = encode(Encoding::Base64, 2, b"hi");
        assert_eq!(m, Message::text("2aGk="));
        assert_eq!(decode(Encoding::Base64, &m), Ok((2, b"hi".to_vec())));
        assert_eq!(
            decode(Encoding::Binary, &Message::binary(vec![CLOSE_SIGNAL, 0])),
            Ok((255, vec![0]))
        );
    }

    #[test]
    fn malformed_messages_are_rejected() {
        assert_eq!(
            decode(Encoding::Binary, &Message::binary(Vec::new())),
            Err(ChannelError::Empty)
        );
        assert_eq!(
            decode(Encoding::Base64, &Message::text("x123")),
            Err(ChannelError::BadChannel('x'))
        );
        assert_eq!(
            decode(Encoding::Base64, &Message::text("1!!!")),
            Err(ChannelError::Base64)
        );
        assert_eq!(
            decode(Encoding::Binary, &Message::text("1")),
            Err(ChannelError::Unexpected("text"))
        );
        assert_eq!(
            decode(Encoding::Base64, &Message::text("")),
            Err(ChannelError::Empty)
        );
        assert!(decode(Encoding::Binary, &Message::Ping(Default::default())).is_err());
    }
}
