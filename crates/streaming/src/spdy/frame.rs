//! SPDY/3.1 frames: encoding, decoding, and the zlib-compressed header
//! blocks (one compression context per direction, shared by every frame).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::HEADER_DICTIONARY;

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Frame payloads are 24-bit lengths.
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;
/// Limits on what a peer can make us hold for one header block.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
const MAX_HEADER_PAIRS: u32 = 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;
pub const RST_FLOW_CONTROL_ERROR: u32 = 7;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// Header names (lowercase) and values; several values of one name are
/// NUL-separated on the wire.
pub type Headers = Vec<(String, String)>;

pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame type SPDY/3.1 says to ignore.
    Unknown {
        frame_type: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        frame: &'static str,
        reason: &'static str,
    },
    #[error("header block: {0}")]
    HeaderBlock(String),
    #[error("frame payload of {0} bytes is too large")]
    TooLarge(usize),
}

fn malformed(frame: &'static str, reason: &'static str) -> FrameError {
    FrameError::Malformed { frame, reason }
}

/// Compresses outgoing header blocks.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(HEADER_DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        Self { zlib }
    }
}

impl HeaderEncoder {
    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.to_ascii_lowercase().as_bytes());
            raw.put_u32(value.len() as u32);
            raw.put_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0;
        loop {
            out.reserve(raw.len() + 64);
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .expect("in-memory deflate cannot fail");
            consumed += (self.zlib.total_in() - before) as usize;
            // A sync flush is complete when output space was left over.
            if consumed == raw.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// Decompresses incoming header blocks.
pub struct HeaderDecoder {
    zlib: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }
}

impl HeaderDecoder {
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, FrameError> {
        let mut raw = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if raw.len() >= MAX_HEADER_BLOCK {
                return Err(FrameError::HeaderBlock("too large".into()));
            }
            raw.reserve(4096);
            let before = self.zlib.total_in();
            let result =
                self.zlib
                    .decompress_vec(&block[consumed..], &mut raw, FlushDecompress::Sync);
            // The zlib header is consumed before the dictionary is asked for.
            consumed += (self.zlib.total_in() - before) as usize;
            let status = match result {
                Ok(status) => status,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(HEADER_DICTIONARY)
                        .map_err(|e| FrameError::HeaderBlock(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(FrameError::HeaderBlock(e.to_string())),
            };
            let room_left = raw.len() < raw.capacity();
            if status == Status::StreamEnd || (consumed == block.len() && room_left) {
                break;
            }
            if consumed == block.len() && status == Status::BufError {
                break;
            }
        }
        parse_header_block(&raw)
    }
}

fn parse_header_block(mut raw: &[u8]) -> Result<Headers, FrameError> {
    let bad = |reason: &str| FrameError::HeaderBlock(reason.to_string());
    if raw.remaining() < 4 {
        return Err(bad("truncated pair count"));
    }
    let pairs = raw.get_u32();
    if pairs > MAX_HEADER_PAIRS {
        return Err(bad("too many headers"));
    }
    let mut headers = Vec::with_capacity(pairs as usize);
    let read_string = |raw: &mut &[u8]| -> Result<String, FrameError> {
        if raw.remaining() < 4 {
            return Err(bad("truncated length"));
        }
        let len = raw.get_u32() as usize;
        if raw.remaining() < len {
            return Err(bad("truncated string"));
        }
        let s = String::from_utf8(raw[..len].to_vec()).map_err(|_| bad("not UTF-8"))?;
        raw.advance(len);
        Ok(s)
    };
    for _ in 0..pairs {
        let name = read_string(&mut raw)?;
        let value = read_string(&mut raw)?;
        if name.is_empty() {
            return Err(bad("empty header name"));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

impl Frame {
    /// Appends the wire form of the frame to `out`.
    pub fn encode(&self, headers: &mut HeaderEncoder, out: &mut BytesMut) {
        let control = |out: &mut BytesMut, frame_type: u16, flags: u8, payload: &[u8]| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(frame_type);
            out.put_u8(flags);
            out.put_uint(payload.len() as u64, 3);
            out.put_slice(payload);
        };
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match self {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin: f,
                unidirectional,
                headers: h,
            } => {
                let mut p = Vec::new();
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 0x7) << 5);
                p.put_u8(0);
                p.extend_from_slice(&headers.encode(h));
                let flags = fin(*f)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(out, TYPE_SYN_STREAM, flags, &p);
            }
            Frame::SynReply {
                stream_id,
                fin: f,
                headers: h,
            } => {
                let mut p = Vec::new();
                p.put_u32(stream_id & 0x7fff_ffff);
                p.extend_from_slice(&headers.encode(h));
                control(out, TYPE_SYN_REPLY, fin(*f), &p);
            }
            Frame::Headers {
                stream_id,
                fin: f,
                headers: h,
            } => {
                let mut p = Vec::new();
                p.put_u32(stream_id & 0x7fff_ffff);
                p.extend_from_slice(&headers.encode(h));
                control(out, TYPE_HEADERS, fin(*f), &p);
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = Vec::new();
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(*status);
                control(out, TYPE_RST_STREAM, 0, &p);
            }
            Frame::Settings { entries } => {
                let mut p = Vec::new();
                p.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    p.put_u8(*flags);
                    p.put_uint(u64::from(*id), 3);
                    p.put_u32(*value);
                }
                control(out, TYPE_SETTINGS, 0, &p);
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut p = Vec::new();
                p.put_u32(last_good_stream_id & 0x7fff_ffff);
                p.put_u32(*status);
                control(out, TYPE_GOAWAY, 0, &p);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = Vec::new();
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                control(out, TYPE_WINDOW_UPDATE, 0, &p);
            }
            Frame::Data {
                stream_id,
                fin: f,
                data,
            } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u8(fin(*f));
                out.put_uint(data.len() as u64, 3);
                out.put_slice(data);
            }
            Frame::Unknown { .. } => {}
        }
    }

    /// Takes one frame off the front of `buf`; `Ok(None)` until it is whole.
    pub fn decode(
        buf: &mut BytesMut,
        headers: &mut HeaderDecoder,
    ) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = ((buf[5] as usize) << 16) | ((buf[6] as usize) << 8) | buf[7] as usize;
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut payload = buf.split_to(length).freeze();
        let flags = head[4];
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if word & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: word,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let frame_type = (word & 0xffff) as u16;
        let fin = flags & FLAG_FIN != 0;
        let need = |payload: &Bytes, n: usize, frame: &'static str| {
            if payload.len() < n {
                Err(malformed(frame, "payload too short"))
            } else {
                Ok(())
            }
        };
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                need(&payload, 10, "SYN_STREAM")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let associated_to = payload.get_u32() & 0x7fff_ffff;
                let priority = payload.get_u8() >> 5;
                payload.advance(1);
                if stream_id == 0 {
                    return Err(malformed("SYN_STREAM", "stream id 0"));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: headers.decode(&payload)?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let name = if frame_type == TYPE_SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                need(&payload, 4, name)?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let h = headers.decode(&payload)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers: h,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers: h,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need(&payload, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    status: payload.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                need(&payload, 4, "SETTINGS")?;
                let count = payload.get_u32() as usize;
                if payload.len() != count.saturating_mul(8) {
                    return Err(malformed(
                        "SETTINGS",
                        "entry count does not match the length",
                    ));
                }
                let entries = (0..count)
                    .map(|_| {
                        let flags = payload.get_u8();
                        let id = payload.get_uint(3) as u32;
                        (flags, id, payload.get_u32())
                    })
                    .collect();
                Frame::Settings { entries }
            }
            TYPE_PING => {
                need(&payload, 4, "PING")?;
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            TYPE_GOAWAY => {
                need(&payload, 4, "GOAWAY")?;
                let last_good_stream_id = payload.get_u32() & 0x7fff_ffff;
                let status = if payload.len() >= 4 {
                    payload.get_u32()
                } else {
                    0
                };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(&payload, 8, "WINDOW_UPDATE")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let delta = payload.get_u32() & 0x7fff_ffff;
                if delta == 0 {
                    return Err(malformed("WINDOW_UPDATE", "zero delta"));
                }
                Frame::WindowUpdate { stream_id, delta }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = HeaderEncoder::default();
        let mut dec = HeaderDecoder::default();
        let mut wire = BytesMut::new();
        for f in frames {
            f.encode(&mut enc, &mut wire);
        }
        let mut out = Vec::new();
        while let Some(f) = Frame::decode(&mut wire, &mut dec).unwrap() {
            out.push(f);
        }
        assert!(wire.is_empty());
        out
    }

    #[test]
    fn dictionary_is_spdy3s() {
        assert_eq!(HEADER_DICTIONARY.len(), 1423);
        // zlib's Adler-32 of the dictionary is in every header block's zlib header.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in HEADER_DICTIONARY {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn every_frame_type_round_trips_with_a_shared_compression_context() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 7,
                fin: true,
                unidirectional: false,
                headers: h(&[("streamtype", "stdout"), ("port", "80")]),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                fin: true,
                headers: h(&[("x", "a\0b")]),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                entries: vec![(0, SETTINGS_INITIAL_WINDOW_SIZE, 65536)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 4096,
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::new(),
            },
        ];
        assert_eq!(round_trip(&frames), frames);
        assert_eq!(
            header(&h(&[("StreamType", "stdin")]), "streamtype"),
            Some("stdin")
        );
    }

    #[test]
    fn known_wire_bytes() {
        // A PING with id 1 and a data frame, byte for byte per the spec.
        let mut wire = BytesMut::new();
        let mut enc = HeaderEncoder::default();
        Frame::Ping { id: 1 }.encode(&mut enc, &mut wire);
        Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"ab"),
        }
        .encode(&mut enc, &mut wire);
        assert_eq!(
            &wire[..],
            &[
                0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1, 0, 0, 0, 3, 1, 0, 0, 2,
                b'a', b'b'
            ]
        );
    }

    #[test]
    fn header_blocks_use_the_dictionary() {
        let mut enc = HeaderEncoder::default();
        let block = enc.encode(&h(&[("streamtype", "error")]));
        // zlib header with FDICT set, then the dictionary's Adler-32.
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut enc = HeaderEncoder::default();
        let mut dec = HeaderDecoder::default();
        let mut wire = BytesMut::new();
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"0123456789"),
        }
        .encode(&mut enc, &mut wire);
        let mut partial = BytesMut::from(&wire[..12]);
        assert_eq!(Frame::decode(&mut partial, &mut dec).unwrap(), None);
        assert_eq!(partial.len(), 12, "nothing consumed");
    }

    #[test]
    fn malformed_frames_are_rejected() {
        let mut dec = HeaderDecoder::default();
        let mut bad_version = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(
            Frame::decode(&mut bad_version, &mut dec),
            Err(FrameError::Version(2))
        );
        let mut short_rst = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 2, 0, 1][..]);
        assert!(matches!(
            Frame::decode(&mut short_rst, &mut dec),
            Err(FrameError::Malformed { .. })
        ));
        let mut bad_settings =
            BytesMut::from(&[0x80, 0x03, 0x00, 0x04, 0, 0, 0, 4, 0, 0, 0, 9][..]);
        assert!(matches!(
            Frame::decode(&mut bad_settings, &mut dec),
            Err(FrameError::Malformed { .. })
        ));
        let mut zero_window =
            BytesMut::from(&[0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert!(matches!(
            Frame::decode(&mut zero_window, &mut dec),
            Err(FrameError::Malformed { .. })
        ));
        // A SYN_STREAM whose header block is not zlib data.
        let mut garbage = BytesMut::from(
            &[
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ][..],
        );
        assert!(matches!(
            Frame::decode(&mut garbage, &mut HeaderDecoder::default()),
            Err(FrameError::HeaderBlock(_))
        ));
        let mut unknown = BytesMut::from(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 0][..]);
        assert_eq!(
            Frame::decode(&mut unknown, &mut dec).unwrap(),
            Some(Frame::Unknown { frame_type: 10 })
        );
    }

    #[test]
    fn truncated_header_blocks_are_rejected() {
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 5, b'a']).is_err());
        assert!(parse_header_block(&[0, 0, 0]).is_err());
        assert!(parse_header_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
