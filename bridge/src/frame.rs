//! The record format on tunnel streams: a length-prefixed, multipart message with a kind and two
//! ids. Pure: no I/O here, so it is tested exhaustively with property tests.
//!
//! ```text
//! u32 body_len                  (bytes after this field)
//! u8  kind
//! u64 id                        (request id; 0 where unused)
//! u64 client                    (bridge-assigned client id; 0 where unused)
//! u32 n                         (number of frames)
//! u32 len[n]                    (length of each frame)
//! frame bytes, concatenated
//! ```
//!
//! All integers are big-endian. Frame lengths come before the payload so a writer can send the
//! header and then the frames' own buffers without copying them ([`header`]).

#[cfg(test)]
mod tests;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Default largest record body: 16 MiB messages plus a generous margin for envelopes.
pub const DEFAULT_MAX_RECORD: usize = 32 * 1024 * 1024;

/// Bytes of the fixed part of a header, the length prefix included.
const FIXED_HEADER: usize = 4 + 1 + 8 + 8 + 4;

/// What a record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// First record on a stream: `[protocol, bridge, service, pattern]`.
    Hello,
    /// The service side accepted the stream.
    Ready,
    /// The service side refused the stream: `[reason]`.
    Refused,
    /// A request from client `client` with id `id`: the client's frames after its identity.
    Request,
    /// The reply to request `id`.
    Reply,
    /// Request `id` failed on the service side: `[reason]`.
    Failed,
    /// A one-way message (PUB/SUB, PUSH/PULL).
    Message,
}

impl Kind {
    fn to_u8(self) -> u8 {
        match self {
            Kind::Hello => 1,
            Kind::Ready => 2,
            Kind::Refused => 3,
            Kind::Request => 4,
            Kind::Reply => 5,
            Kind::Failed => 6,
            Kind::Message => 7,
        }
    }

    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Ready,
            3 => Kind::Refused,
            4 => Kind::Request,
            5 => Kind::Reply,
            6 => Kind::Failed,
            7 => Kind::Message,
            _ => return None,
        })
    }
}

/// One record: a kind, two ids and a multipart message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What the record means.
    pub kind: Kind,
    /// Request id (0 where unused).
    pub id: u64,
    /// Bridge-assigned client id (0 where unused).
    pub client: u64,
    /// The frames of the message, unchanged.
    pub frames: Vec<Bytes>,
}

impl Record {
    /// A record with no ids.
    pub fn new(kind: Kind, frames: Vec<Bytes>) -> Record {
        Record {
            kind,
            id: 0,
            client: 0,
            frames,
        }
    }

    /// Total payload bytes (the frames, not the header).
    pub fn payload_len(&self) -> usize {
        self.frames.iter().map(Bytes::len).sum()
    }

    /// The first frame as text, for `Refused` and `Failed` reasons.
    pub fn reason(&self) -> String {
        self.frames
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_else(|| "no reason given".to_string())
    }
}

/// A record that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The record is larger than the limit.
    #[error("record of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The kind byte is not one we know.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// The header does not add up.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// Reading or writing the stream failed.
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The size of the body (everything after the length prefix) of `record`.
fn body_len(record: &Record) -> usize {
    FIXED_HEADER - 4 + 4 * record.frames.len() + record.payload_len()
}

/// The header of `record` (everything before the frame bytes), checked against `max`.
/// Sending this and then each frame produces exactly [`RecordCodec`]'s encoding.
pub fn header(record: &Record, max: usize) -> Result<Bytes, FrameError> {
    check(record, max)?;
    let mut buf = BytesMut::with_capacity(header_len(record));
    put_header(record, &mut buf);
    Ok(buf.freeze())
}

/// Checks that `record` can be encoded within the limit `max`; returns its body size.
pub(crate) fn check(record: &Record, max: usize) -> Result<usize, FrameError> {
    let size = body_len(record);
    // The frame count and every length must fit the u32 fields: `max` may exceed u32.
    if size > max || u32::try_from(size).is_err() {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(size)
}

/// Bytes of the header of `record`.
pub(crate) fn header_len(record: &Record) -> usize {
    FIXED_HEADER + 4 * record.frames.len()
}

/// Appends the header of `record` to `buf`. The record must have passed [`check`].
pub(crate) fn put_header(record: &Record, buf: &mut BytesMut) {
    buf.reserve(header_len(record));
    // Cannot truncate after `check`: the body, frame count included, fits in u32.
    buf.put_u32(body_len(record) as u32);
    buf.put_u8(record.kind.to_u8());
    buf.put_u64(record.id);
    buf.put_u64(record.client);
    buf.put_u32(record.frames.len() as u32);
    for f in &record.frames {
        buf.put_u32(f.len() as u32);
    }
}

/// Encoder and decoder of [`Record`]s with a size limit.
#[derive(Clone, Copy, Debug)]
pub struct RecordCodec {
    max: usize,
}

impl RecordCodec {
    /// A codec refusing bodies larger than `max` bytes.
    pub fn new(max: usize) -> RecordCodec {
        RecordCodec { max }
    }
}

impl Default for RecordCodec {
    fn default() -> Self {
        RecordCodec::new(DEFAULT_MAX_RECORD)
    }
}

impl Decoder for RecordCodec {
    type Item = Record;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Record>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if size > self.max {
            return Err(FrameError::TooLarge {
                size,
                max: self.max,
            });
        }
        if size < FIXED_HEADER - 4 {
            return Err(FrameError::Malformed("body shorter than the fixed header"));
        }
        if src.len() < 4 + size {
            src.reserve(4 + size - src.len());
            return Ok(None);
        }
        src.advance(4);
        let mut body = src.split_to(size);
        let kind_byte = body.get_u8();
        let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        let id = body.get_u64();
        let client = body.get_u64();
        let n = body.get_u32() as usize;
        let Some(lens_len) = n.checked_mul(4).filter(|l| *l <= body.len()) else {
            return Err(FrameError::Malformed("more frame lengths than bytes"));
        };
        let mut body = body.freeze();
        let lens = body.split_to(lens_len);
        let len_of = |c: &[u8]| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize;
        let total = lens
            .chunks_exact(4)
            .map(len_of)
            .fold(0usize, usize::saturating_add);
        if total != body.len() {
            return Err(FrameError::Malformed(
                "frame lengths do not add up to the body",
            ));
        }
        let frames = lens
            .chunks_exact(4)
            .map(|c| body.split_to(len_of(c)))
            .collect();
        Ok(Some(Record {
            kind,
            id,
            client,
            frames,
        }))
    }
}

impl Encoder<Record> for RecordCodec {
    type Error = FrameError;

    fn encode(&mut self, record: Record, dst: &mut BytesMut) -> Result<(), FrameError> {
        let head = header(&record, self.max)?;
        dst.reserve(head.len() + record.payload_len());
        dst.extend_from_slice(&head);
        for f in &record.frames {
            dst.extend_from_slice(f);
        }
        Ok(())
    }
}
