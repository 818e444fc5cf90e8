//! A SPDY/3.1 session over any byte stream, for the server (streams opened
//! by the peer) and for test clients (streams opened here).
//!
//! One task reads frames and routes them; one task writes them, control
//! frames before data so a SYN_REPLY always precedes its stream's data.
//! Received data is acknowledged with WINDOW_UPDATEs as it is consumed.
//! The peer's windows are enforced once it shows it does flow control by
//! sending a WINDOW_UPDATE: Go's spdystream (kubectl, the kubelet) never
//! sends one and would otherwise stall after 64 KiB.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::{CancellationToken, PollSender};

use super::frame::{self, Frame, HeaderDecoder, HeaderEncoder, Headers};

const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Largest data frame we send.
const MAX_CHUNK: usize = 32 * 1024;
/// Frames a slow stream consumer may leave queued before reading stops.
const INBOUND_QUEUE: usize = 32;
/// How long a closing session waits for the peer to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

struct StreamEntry {
    inbound: Option<mpsc::Sender<Bytes>>,
    send_window: i64,
    reset: bool,
    replied: Option<oneshot::Sender<()>>,
}

struct Flow {
    session_window: i64,
    initial_window: i64,
    enforced: bool,
}

struct Shared {
    control: mpsc::UnboundedSender<Frame>,
    streams: Mutex<HashMap<u32, StreamEntry>>,
    flow: Mutex<Flow>,
    window_changed: Arc<Notify>,
    closed: AtomicBool,
    going_away: AtomicBool,
    /// Cancelled when the peer is gone (transport closed or broken).
    gone: CancellationToken,
    /// Tells the writer to flush what is queued and close the transport.
    shutdown: Arc<Notify>,
    next_stream_id: AtomicU32,
    last_peer_stream: AtomicU32,
}

pub struct SpdyConnection {
    shared: Arc<Shared>,
    data: mpsc::Sender<Frame>,
    incoming: mpsc::Receiver<SpdyStream>,
    reader: tokio::task::JoinHandle<()>,
    writer: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

pub struct SpdyStream {
    pub id: u32,
    pub headers: Headers,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

impl SpdyStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        frame::header(&self.headers, name)
    }
}

impl SpdyConnection {
    pub fn new<T>(io: T, role: Role) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(64);
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            control: control_tx,
            streams: Mutex::default(),
            flow: Mutex::new(Flow {
                session_window: DEFAULT_WINDOW,
                initial_window: DEFAULT_WINDOW,
                enforced: false,
            }),
            window_changed: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            going_away: AtomicBool::new(false),
            gone: CancellationToken::new(),
            shutdown: Arc::new(Notify::new()),
            next_stream_id: AtomicU32::new(if role == Role::Client { 1 } else { 2 }),
            last_peer_stream: AtomicU32::new(0),
        });
        let writer = tokio::spawn(write_frames(
            write_half,
            control_rx,
            data_rx,
            shared.shutdown.clone(),
        ));
        let reader = tokio::spawn(read_frames(
            read_half,
            shared.clone(),
            data_tx.clone(),
            incoming_tx,
            role,
        ));
        Self {
            shared,
            data: data_tx,
            incoming: incoming_rx,
            reader,
            writer: Some(writer),
        }
    }

    /// The next stream the peer opens; `None` once the session is over.
    pub async fn next_stream(&mut self) -> Option<SpdyStream> {
        self.incoming.recv().await
    }

    /// Opens a stream and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> io::Result<SpdyStream> {
        let id = self.shared.next_stream_id.fetch_add(2, Ordering::SeqCst);
        let (replied_tx, replied_rx) = oneshot::channel();
        let stream = register_stream(
            &self.shared,
            &self.data,
            id,
            headers.clone(),
            Some(replied_tx),
        );
        self.shared
            .control
            .send(Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers,
            })
            .map_err(|_| closed())?;
        match tokio::time::timeout(Duration::from_secs(30), replied_rx).await {
            Ok(Ok(())) => Ok(stream),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no SYN_REPLY for the new stream",
            )),
        }
    }

    /// Says goodbye (GOAWAY), flushes what is queued, closes the transport.
    pub async fn close(mut self) {
        let last = self.shared.last_peer_stream.load(Ordering::SeqCst);
        // Behind the data already queued: the peer must get every byte first.
        let _ = self
            .data
            .send(Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            })
            .await;
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.shutdown.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        }
        // Our side is half-closed now. Dropping the socket while the peer
        // still sends would make the kernel answer with RST, and an RST
        // makes the peer discard what it has not read yet (our last frames):
        // wait for the peer to close first.
        let _ = tokio::time::timeout(CLOSE_GRACE, &mut self.reader).await;
        self.reader.abort();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Cancelled when the peer closes or breaks the connection.
    pub fn gone(&self) -> CancellationToken {
        self.shared.gone.clone()
    }
}

impl Drop for SpdyConnection {
    fn drop(&mut self) {
        self.shared.shutdown.notify_one();
        self.reader.abort();
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the SPDY session is closed")
}

fn register_stream(
    shared: &Arc<Shared>,
    data: &mpsc::Sender<Frame>,
    id: u32,
    headers: Headers,
    replied: Option<oneshot::Sender<()>>,
) -> SpdyStream {
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let initial = shared.flow.lock().initial_window;
    shared.streams.lock().insert(
        id,
        StreamEntry {
            inbound: Some(inbound_tx),
            send_window: initial,
            reset: false,
            replied,
        },
    );
    SpdyStream {
        id,
        headers,
        reader: StreamReader {
            id,
            shared: shared.clone(),
            inbound: inbound_rx,
            pending: Bytes::new(),
            unacked: 0,
        },
        writer: StreamWriter {
            id,
            shared: shared.clone(),
            sender: PollSender::new(data.clone()),
            finished: false,
            waiting: None,
        },
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut io: W,
    mut control: mpsc::UnboundedReceiver<Frame>,
    mut data: mpsc::Receiver<Frame>,
    shutdown: Arc<Notify>,
) -> io::Result<()> {
    let mut encoder = HeaderEncoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let (mut control_open, mut data_open) = (true, true);
    while control_open || data_open {
        let frame = tokio::select! {
            biased;
            f = control.recv(), if control_open => match f { Some(f) => f, None => { control_open = false; continue } },
            f = data.recv(), if data_open => match f { Some(f) => f, None => { data_open = false; continue } },
            () = shutdown.notified() => {
                // Flush what was queued before the close, then end.
                while let Some(f) = control.try_recv().ok().or_else(|| data.try_recv().ok()) {
                    f.encode(&mut encoder, &mut buf);
                }
                io.write_all(&buf).await?;
                io.flush().await?;
                return io.shutdown().await;
            }
        };
        frame.encode(&mut encoder, &mut buf);
        // Batch what is already queued into one write.
        while buf.len() < 64 * 1024 {
            match control.try_recv().ok().or_else(|| data.try_recv().ok()) {
                Some(f) => f.encode(&mut encoder, &mut buf),
                None => break,
            }
        }
        io.write_all(&buf).await?;
        io.flush().await?;
        buf.clear();
    }
    io.shutdown().await
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut io: R,
    shared: Arc<Shared>,
    data: mpsc::Sender<Frame>,
    incoming: mpsc::Sender<SpdyStream>,
    role: Role,
) {
    let mut decoder = HeaderDecoder::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            let frame = match Frame::decode(&mut buf, &mut decoder) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY protocol error; closing the session");
                    let _ = shared.control.send(Frame::GoAway {
                        last_good_stream_id: 0,
                        status: 1,
                    });
                    break 'read;
                }
            };
            if !handle_frame(frame, &shared, &data, &incoming, role).await {
                break 'read;
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared.closed.store(true, Ordering::SeqCst);
    shared.gone.cancel();
    let mut streams = shared.streams.lock();
    for entry in streams.values_mut() {
        entry.inbound = None;
        entry.reset = true;
    }
    drop(streams);
    shared.window_changed.notify_waiters();
}

/// Returns false when the session must end.
async fn handle_frame(
    frame: Frame,
    shared: &Arc<Shared>,
    data: &mpsc::Sender<Frame>,
    incoming: &mpsc::Sender<SpdyStream>,
    role: Role,
) -> bool {
    match frame {
        Frame::SynStream {
            stream_id,
            fin,
            unidirectional,
            headers,
            ..
        } => {
            let peer_parity = if role == Role::Server { 1 } else { 0 };
            if stream_id % 2 != peer_parity
                || stream_id <= shared.last_peer_stream.load(Ordering::SeqCst)
            {
                let _ = shared.control.send(Frame::RstStream {
                    stream_id,
                    status: frame::RST_PROTOCOL_ERROR,
                });
                return true;
            }
            shared.last_peer_stream.store(stream_id, Ordering::SeqCst);
            let stream = register_stream(shared, data, stream_id, headers, None);
            if fin {
                close_inbound(shared, stream_id);
            }
            let _ = shared.control.send(Frame::SynReply {
                stream_id,
                fin: unidirectional,
                headers: Vec::new(),
            });
            if incoming.send(stream).await.is_err() {
                let _ = shared.control.send(Frame::RstStream {
                    stream_id,
                    status: frame::RST_CANCEL,
                });
            }
        }
        Frame::SynReply { stream_id, fin, .. } => {
            if let Some(entry) = shared.streams.lock().get_mut(&stream_id)
                && let Some(replied) = entry.replied.take()
            {
                let _ = replied.send(());
            }
            if fin {
                close_inbound(shared, stream_id);
            }
        }
        Frame::Data {
            stream_id,
            fin,
            data: payload,
        } => {
            let sender = shared
                .streams
                .lock()
                .get(&stream_id)
                .and_then(|e| e.inbound.clone());
            if let Some(sender) = sender
                && !payload.is_empty()
            {
                // Back-pressure: a consumer that does not read stops the session.
                let _ = sender.send(payload).await;
            }
            if fin {
                close_inbound(shared, stream_id);
            }
        }
        Frame::Headers { stream_id, fin, .. } => {
            if fin {
                close_inbound(shared, stream_id);
            }
        }
        Frame::RstStream { stream_id, .. } => {
            if let Some(entry) = shared.streams.lock().get_mut(&stream_id) {
                entry.inbound = None;
                entry.reset = true;
            }
            shared.window_changed.notify_waiters();
        }
        Frame::Settings { entries } => {
            for (_, id, value) in entries {
                if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                    let mut flow = shared.flow.lock();
                    let delta = i64::from(value) - flow.initial_window;
                    flow.initial_window = i64::from(value);
                    for entry in shared.streams.lock().values_mut() {
                        entry.send_window += delta;
                    }
                }
            }
            shared.window_changed.notify_waiters();
        }
        Frame::Ping { id } => {
            let ours = if role == Role::Server { 0 } else { 1 };
            if id % 2 != ours {
                let _ = shared.control.send(Frame::Ping { id });
            }
        }
        // No new streams will come; the open ones carry on until EOF.
        Frame::GoAway { .. } => shared.going_away.store(true, Ordering::SeqCst),
        Frame::WindowUpdate { stream_id, delta } => {
            let mut flow = shared.flow.lock();
            flow.enforced = true;
            if stream_id == 0 {
                flow.session_window += i64::from(delta);
            } else if let Some(entry) = shared.streams.lock().get_mut(&stream_id) {
                entry.send_window += i64::from(delta);
            }
            drop(flow);
            shared.window_changed.notify_waiters();
        }
        Frame::Unknown { .. } => {}
    }
    true
}

fn close_inbound(shared: &Shared, stream_id: u32) {
    if let Some(entry) = shared.streams.lock().get_mut(&stream_id) {
        entry.inbound = None;
    }
}

/// What the peer sends on a stream; EOF at its FIN.
pub struct StreamReader {
    id: u32,
    shared: Arc<Shared>,
    inbound: mpsc::Receiver<Bytes>,
    pending: Bytes,
    unacked: u32,
}

impl StreamReader {
    /// Tells the peer it may send `n` more bytes (stream and session).
    fn acknowledge(&mut self, n: usize) {
        self.unacked += n as u32;
        if i64::from(self.unacked) >= DEFAULT_WINDOW / 2 {
            let delta = std::mem::take(&mut self.unacked);
            let _ = self.shared.control.send(Frame::WindowUpdate {
                stream_id: self.id,
                delta,
            });
            let _ = self.shared.control.send(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.inbound.poll_recv(cx) {
                Poll::Ready(Some(data)) => self.pending = data,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(out.remaining());
        out.put_slice(&self.pending[..n]);
        self.pending = self.pending.slice(n..);
        self.acknowledge(n);
        Poll::Ready(Ok(()))
    }
}

/// Sends on a stream; shutting it down sends FIN.
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    sender: PollSender<Frame>,
    finished: bool,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Bytes the flow-control windows allow now (`usize::MAX` when the peer
    /// does no flow control); `None` when the stream is reset or gone.
    fn allowance(&self) -> Option<usize> {
        let flow = self.shared.flow.lock();
        let streams = self.shared.streams.lock();
        let entry = streams.get(&self.id)?;
        if entry.reset {
            return None;
        }
        if !flow.enforced {
            return Some(usize::MAX);
        }
        Some(entry.send_window.min(flow.session_window).max(0) as usize)
    }

    fn consume_window(&self, n: usize) {
        let mut flow = self.shared.flow.lock();
        flow.session_window -= n as i64;
        if let Some(entry) = self.shared.streams.lock().get_mut(&self.id) {
            entry.send_window -= n as i64;
        }
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream already finished",
            )));
        }
        loop {
            let Some(allowed) = self.allowance() else {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "stream reset by peer",
                )));
            };
            if allowed > 0 || buf.is_empty() {
                break;
            }
            // Register before re-checking, so an update cannot slip between.
            if self.waiting.is_none() {
                let mut notified = Box::pin(self.shared.window_changed.clone().notified_owned());
                notified.as_mut().enable();
                self.waiting = Some(notified);
                continue;
            }
            match self.waiting.as_mut().expect("set").as_mut().poll(cx) {
                Poll::Ready(()) => self.waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.waiting = None;
        match self.sender.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(closed())),
            Poll::Pending => return Poll::Pending,
        }
        let allowed = self.allowance().unwrap_or(0);
        let n = buf.len().min(MAX_CHUNK).min(allowed.max(1));
        let frame = Frame::Data {
            stream_id: self.id,
            fin: false,
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        if self.sender.send_item(frame).is_err() {
            return Poll::Ready(Err(closed()));
        }
        self.consume_window(n);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        match self.sender.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Err(closed())),
            Poll::Pending => return Poll::Pending,
        }
        let frame = Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        };
        self.finished = true;
        if self.sender.send_item(frame).is_err() {
            return Poll::Ready(Err(closed()));
        }
        Poll::Ready(Ok(()))
    }
}

/// A writer dropped without shutdown still ends its stream with FIN, after
/// whatever it queued: the peer must not wait forever.
impl Drop for StreamWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(sender) = self.sender.get_ref().cloned() else {
            return;
        };
        let frame = Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        };
        if let Err(mpsc::error::TrySendError::Full(frame)) = sender.try_send(frame)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = sender.send(frame).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_carry_data_both_ways_and_fin_ends_reads() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut server = SpdyConnection::new(a, Role::Server);
        let client = SpdyConnection::new(b, Role::Client);
        let open = tokio::spawn(async move {
            let s = client
                .open_stream(vec![("streamtype".into(), "stdout".into())])
                .await
                .unwrap();
            (client, s)
        });
        let mut accepted = server.next_stream().await.unwrap();
        assert_eq!(accepted.header("streamType"), Some("stdout"));
        let (client, mut opened) = open.await.unwrap();
        assert_eq!(opened.id, 1);

        let payload = vec![7u8; 300 * 1024];
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            opened.writer.write_all(&sent).await.unwrap();
            opened.writer.shutdown().await.unwrap();
            opened
        });
        let mut got = Vec::new();
        accepted.reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got.len(),
            payload.len(),
            "more than a 64 KiB window, acknowledged as read"
        );
        let mut opened = writer.await.unwrap();

        accepted.writer.write_all(b"reply").await.unwrap();
        accepted.writer.shutdown().await.unwrap();
        let mut back = Vec::new();
        opened.reader.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply");
        drop(accepted);
        server.close().await;
        drop(client);
    }

    #[tokio::test]
    async fn enforced_windows_wait_for_updates() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut server = SpdyConnection::new(a, Role::Server);
        let client = SpdyConnection::new(b, Role::Client);
        let open = tokio::spawn(async move { (client.open_stream(vec![]).await.unwrap(), client) });
        let mut accepted = server.next_stream().await.unwrap();
        let (mut opened, _client) = open.await.unwrap();
        // The client reads (and so acknowledges) a chunk first: from then on
        // the server's writes respect the windows and still complete.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            opened.reader.read_to_end(&mut all).await.unwrap();
            all.len()
        });
        accepted
            .writer
            .write_all(&vec![1u8; 512 * 1024])
            .await
            .unwrap();
        accepted.writer.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 512 * 1024);
    }
}

#[cfg(test)]
mod close_order {
    use super::*;

    /// GOAWAY goes out after every frame queued before the close.
    #[tokio::test]
    async fn goaway_follows_queued_data() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut server = SpdyConnection::new(a, Role::Server);
        let mut enc = HeaderEncoder::default();
        let mut wire = BytesMut::new();
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: vec![("streamtype".into(), "error".into())],
        }
        .encode(&mut enc, &mut wire);
        b.write_all(&wire).await.unwrap();
        let mut s = server.next_stream().await.unwrap();
        s.writer.write_all(b"status").await.unwrap();
        s.writer.shutdown().await.unwrap();
        let closing = tokio::spawn(server.close());
        let mut dec = HeaderDecoder::default();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        while frames.len() < 4 {
            let mut chunk = [0u8; 4096];
            let n = b.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some(f) = Frame::decode(&mut buf, &mut dec).unwrap() {
                frames.push(format!("{:?}", f).chars().take(50).collect::<String>());
            }
        }
        drop(b);
        let _ = closing.await;
        assert_eq!(
            frames,
            vec![
                "SynReply { stream_id: 1, fin: false, headers: [] }",
                "Data { stream_id: 1, fin: false, data: b\"status\" }",
                "Data { stream_id: 1, fin: true, data: b\"\" }",
                "GoAway { last_good_stream_id: 1, status: 0 }",
            ]
        );
    }
}
