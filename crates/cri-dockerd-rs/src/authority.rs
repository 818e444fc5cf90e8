//! gRPC clients that name the unix socket in `:authority`.
//!
//! grpc C-core (Python grpcio, C++, Ruby) sends the percent-encoded socket
//! path as the HTTP/2 `:authority` of every call on a `unix:` channel, and
//! grpc-java and old Go clients (kubelets and crictl before 1.26) send the
//! raw path. Neither is a valid URI authority, and the HTTP/2 layer under
//! tonic (h2) resets such streams with PROTOCOL_ERROR before any handler
//! runs (hyperium/h2#487, open for years). cri-dockerd, on Go's HTTP/2,
//! serves them.
//!
//! This wrapper sits between a unix socket and the HTTP/2 server. It passes
//! everything through except request header blocks: those are decoded
//! (HPACK, with the client's dynamic table), an invalid `:authority` is
//! replaced by `localhost`, and the block is encoded again as literals that
//! never touch the server's dynamic table, so the server's decoder state
//! does not depend on what the client indexed. The server's replies are not
//! touched. HPACK decoding is `loona-hpack`'s; the frame walking is ours,
//! as no crate offers a header-rewriting HTTP/2 passthrough.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may set: always accepted.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A header block larger than this ends the connection (the server's own
/// limit on a header list is far below it).
const MAX_HEADER_BLOCK: usize = 1 << 20;
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// A header block whose CONTINUATION frames are still to come.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    fragment: Vec<u8>,
}

/// The client-to-server byte transformation, independent of any socket.
pub struct AuthorityRewriter {
    decoder: loona_hpack::Decoder<'static>,
    preface_left: usize,
    input: BytesMut,
    output: BytesMut,
    pending: Option<PendingBlock>,
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        Self {
            decoder: loona_hpack::Decoder::new(),
            preface_left: PREFACE_LEN,
            input: BytesMut::new(),
            output: BytesMut::new(),
            pending: None,
        }
    }
}

impl AuthorityRewriter {
    /// Takes bytes from the client; what is ready for the server is then in
    /// `ready()`.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.input.extend_from_slice(bytes);
        self.process()
    }

    /// At the client's EOF, an unfinished frame goes through as it is: the
    /// server reports the truncation.
    pub fn finish(&mut self) {
        let rest = self.input.split();
        self.output.extend_from_slice(&rest);
    }

    pub fn ready(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    fn process(&mut self) -> io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.input.len());
            let preface = self.input.split_to(n);
            self.output.extend_from_slice(&preface);
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while self.input.len() >= FRAME_HEADER_LEN {
            let length = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]);
            let total = FRAME_HEADER_LEN + length as usize;
            if self.input.len() < total {
                break;
            }
            let frame = self.input.split_to(total);
            let kind = frame[3];
            let flags = frame[4];
            let stream_id =
                u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            let payload = &frame[FRAME_HEADER_LEN..];
            match (kind, &mut self.pending) {
                (HEADERS, None) => {
                    let fragment = header_fragment(flags, payload)?;
                    self.pending = Some(PendingBlock {
                        stream_id,
                        end_stream: flags & END_STREAM != 0,
                        fragment: fragment.to_vec(),
                    });
                    if flags & END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                (CONTINUATION, Some(pending)) if pending.stream_id == stream_id => {
                    pending.fragment.extend_from_slice(payload);
                    if pending.fragment.len() > MAX_HEADER_BLOCK {
                        return Err(invalid("header block too large"));
                    }
                    if flags & END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                // Anything else between HEADERS and its CONTINUATION is a
                // protocol error the server must see and answer itself.
                (_, Some(_)) => return Err(invalid("frame interleaved with a header block")),
                _ => self.output.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.pending.take().expect("a pending header block");
        let headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| invalid(&format!("HPACK: {e:?}")))?;
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        for (name, value) in &headers {
            let value: &[u8] = if name == b":authority" && !valid_authority(value) {
                REPLACEMENT_AUTHORITY
            } else {
                value
            };
            encode_literal(name, value, &mut encoded);
        }
        let mut chunks = encoded.chunks(MAX_FRAME_PAYLOAD).peekable();
        let mut first = true;
        // An empty block still needs its HEADERS frame.
        let empty: &[u8] = &[];
        if chunks.peek().is_none() {
            write_frame(
                &mut self.output,
                HEADERS,
                END_HEADERS | if block.end_stream { END_STREAM } else { 0 },
                block.stream_id,
                empty,
            );
            return Ok(());
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (kind, mut flags) = if first {
                (HEADERS, if block.end_stream { END_STREAM } else { 0 })
            } else {
                (CONTINUATION, 0)
            };
            if last {
                flags |= END_HEADERS;
            }
            write_frame(&mut self.output, kind, flags, block.stream_id, chunk);
            first = false;
        }
        Ok(())
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// The header block fragment of a HEADERS payload, without padding and
/// priority fields.
fn header_fragment(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    let mut fragment = payload;
    if flags & PADDED != 0 {
        let (&pad, rest) = fragment
            .split_first()
            .ok_or_else(|| invalid("padded HEADERS without a pad length"))?;
        let end = rest
            .len()
            .checked_sub(pad as usize)
            .ok_or_else(|| invalid("HEADERS padding longer than the frame"))?;
        fragment = &rest[..end];
    }
    if flags & PRIORITY != 0 {
        fragment = fragment
            .get(5..)
            .ok_or_else(|| invalid("HEADERS priority fields missing"))?;
    }
    Ok(fragment)
}

fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// "Literal Header Field without Indexing — New Name", no Huffman coding.
fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    for s in [name, value] {
        out.extend_from_slice(&loona_hpack::encoder::encode_integer(s.len(), 7));
        out.extend_from_slice(s);
    }
}

fn write_frame(out: &mut BytesMut, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A connection whose client-to-server bytes go through an
/// [`AuthorityRewriter`]; writes pass straight through.
pub struct AuthorityFixed<T> {
    inner: T,
    rewriter: AuthorityRewriter,
    eof: bool,
}

impl<T> AuthorityFixed<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            rewriter: AuthorityRewriter::default(),
            eof: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let ready = this.rewriter.ready();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.rewriter.finish();
            } else {
                this.rewriter.push(read.filled())?;
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFixed<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_frame(&mut out, kind, flags, stream_id, payload);
        out.to_vec()
    }

    type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;
    /// (type, flags, stream id, decoded headers or the payload)
    type SeenFrame = (u8, u8, u32, HeaderList);

    /// Splits the server-bound bytes into frames and decodes header blocks
    /// as the server would.
    fn server_view(bytes: &[u8]) -> Vec<SeenFrame> {
        assert_eq!(&bytes[..PREFACE_LEN], PREFACE);
        let mut rest = &bytes[PREFACE_LEN..];
        let mut decoder = loona_hpack::Decoder::new();
        let mut frames = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            let payload = &rest[9..9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    frames.push((kind, flags, id, decoder.decode(&block).unwrap()));
                    block.clear();
                } else {
                    frames.push((kind, flags, id, Vec::new()));
                }
            } else {
                frames.push((kind, flags, id, vec![(payload.to_vec(), Vec::new())]));
            }
            rest = &rest[9 + len..];
        }
        frames
    }

    fn request(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/runtime.v1.RuntimeService/Version".to_vec()),
            (b":authority", authority.to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
            (b"te", b"trailers".to_vec()),
        ]
    }

    fn encode(encoder: &mut loona_hpack::Encoder<'_>, headers: &[(&[u8], Vec<u8>)]) -> Vec<u8> {
        encoder.encode(headers.iter().map(|(n, v)| (*n, v.as_slice())))
    }

    #[test]
    fn socket_path_authorities_become_localhost_and_the_rest_passes() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        // Python grpcio's percent-encoded path, indexed into the client's
        // dynamic table; then the same again, now sent as an index.
        let first = encode(&mut encoder, &request(b"%2Fvar%2Frun%2Fcri-dockerd.sock"));
        wire.extend(frame(HEADERS, END_HEADERS, 1, &first));
        wire.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        let second = encode(&mut encoder, &request(b"%2Fvar%2Frun%2Fcri-dockerd.sock"));
        wire.extend(frame(HEADERS, END_HEADERS, 3, &second));
        // grpc-java's raw path, and a valid authority that must survive.
        let third = encode(&mut encoder, &request(b"/var/run/cri-dockerd.sock"));
        wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &third));
        let fourth = encode(&mut encoder, &request(b"localhost:1234"));
        wire.extend(frame(HEADERS, END_HEADERS, 7, &fourth));

        let mut rewriter = AuthorityRewriter::default();
        // Byte by byte: frames split anywhere still come out whole.
        for b in &wire {
            rewriter.push(std::slice::from_ref(b)).unwrap();
        }
        let frames = server_view(&rewriter.ready().split());
        let authority = |i: usize| {
            frames[i]
                .3
                .iter()
                .find(|(n, _)| n == b":authority")
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                .unwrap()
        };
        assert_eq!(frames[0].0, 0x4, "SETTINGS passes");
        assert_eq!(authority(1), "localhost");
        assert_eq!(
            frames[2],
            (0x0, END_STREAM, 1, vec![(b"\0\0\0\0\0".to_vec(), vec![])])
        );
        assert_eq!(authority(3), "localhost");
        assert_eq!(authority(4), "localhost");
        assert_eq!(frames[4].1, END_HEADERS | END_STREAM, "END_STREAM kept");
        assert_eq!(authority(5), "localhost:1234");
        assert_eq!(
            frames[5].3[2],
            (
                b":path".to_vec(),
                b"/runtime.v1.RuntimeService/Version".to_vec()
            )
        );
    }

    #[test]
    fn continuation_padding_and_priority_are_folded_into_one_block() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut headers = request(b"%2Ftmp%2Fcri.sock");
        let big = vec![b'x'; 40_000];
        headers.push((b"x-big", big.clone()));
        let block = encode(&mut encoder, &headers);
        let (a, b) = block.split_at(100);
        // HEADERS, padded (3 bytes) and with priority fields.
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 9, &payload));
        wire.extend(frame(CONTINUATION, END_HEADERS, 9, b));
        let mut rewriter = AuthorityRewriter::default();
        rewriter.push(&wire).unwrap();
        let frames = server_view(&rewriter.ready().split());
        assert!(frames.len() >= 3, "split at the minimum frame size");
        assert_eq!(frames[0].1, END_STREAM);
        let last = frames.last().unwrap();
        assert_eq!(last.0, CONTINUATION);
        assert_eq!(last.1, END_HEADERS);
        let decoded = &last.3;
        assert!(decoded.contains(&(b":authority".to_vec(), b"localhost".to_vec())));
        assert!(decoded.contains(&(b"x-big".to_vec(), big)));
    }

    #[test]
    fn garbage_header_blocks_end_the_connection() {
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]));
        let mut rewriter = AuthorityRewriter::default();
        assert!(rewriter.push(&wire).is_err());
        let mut rewriter = AuthorityRewriter::default();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, 0, 1, &[0x82]));
        wire.extend(frame(0x0, 0, 1, b"data"));
        assert!(rewriter.push(&wire).is_err(), "DATA inside a header block");
    }
}
