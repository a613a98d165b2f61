//! Encoding and decoding of [`Message`] frames. See the parent module for
//! the layout.

use super::{
    Message, RefuseReason, WireError, MAX_DATA, MAX_FRAME_BODY, MAX_NAME, MAX_SUMS, SUM_LEN,
    WIRE_VERSION,
};
use crate::replication::state::DiskState;

const T_HELLO: u8 = 1;
const T_HELLO_ACK: u8 = 2;
const T_WRITE: u8 = 3;
const T_FLUSH: u8 = 4;
const T_ACK: u8 = 5;
const T_REFUSED: u8 = 6;
const T_BLOCK_SUMS: u8 = 7;
const T_BLOCK: u8 = 8;
const T_RESYNC_PROGRESS: u8 = 9;
const T_RESYNC_DONE: u8 = 10;

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame: the message and how many bytes it used.
    Frame { message: Message, consumed: usize },
    /// Not a whole frame yet: at least `needed` bytes in all are required.
    Incomplete { needed: usize },
}

/// Reads the 4-byte length prefix and checks it against the bound, so a
/// transport can refuse a frame before reading (or allocating) its body.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > MAX_FRAME_BODY {
        return Err(WireError::FrameTooLong {
            len,
            max: MAX_FRAME_BODY,
        });
    }
    Ok(len)
}

/// Decodes the first frame of `buf`, if it is complete.
pub fn decode_frame(buf: &[u8]) -> Result<Decoded, WireError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(Decoded::Incomplete { needed: 4 });
    };
    let mut p = [0u8; 4];
    p.copy_from_slice(prefix);
    let len = frame_len(p)?;
    let total = 4 + len;
    match buf.get(4..total) {
        None => Ok(Decoded::Incomplete { needed: total }),
        Some(body) => Ok(Decoded::Frame {
            message: decode_body(body)?,
            consumed: total,
        }),
    }
}

/// Decodes one frame body (without its length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, WireError> {
    if body.len() > MAX_FRAME_BODY {
        return Err(WireError::FrameTooLong {
            len: body.len(),
            max: MAX_FRAME_BODY,
        });
    }
    let mut r = Reader { buf: body };
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let message = match r.u8()? {
        T_HELLO => Message::Hello {
            volume_id: r.name()?,
            group: r.name()?,
            size_bytes: r.u64()?,
            epoch: r.u64()?,
            block_size: r.u32()?,
            next_seq: r.u64()?,
        },
        T_HELLO_ACK => Message::HelloAck {
            epoch: r.u64()?,
            disk: r.disk_state()?,
            fresh_image: r.bool()?,
        },
        T_WRITE => Message::Write {
            epoch: r.u64()?,
            seq: r.u64()?,
            offset: r.u64()?,
            data: r.data()?,
        },
        T_FLUSH => Message::Flush {
            epoch: r.u64()?,
            seq: r.u64()?,
        },
        T_ACK => Message::Ack {
            seq: r.u64()?,
            flushed: r.bool()?,
        },
        T_REFUSED => Message::Refused {
            reason: r.reason()?,
        },
        T_BLOCK_SUMS => {
            let start = r.u64()?;
            let n = r.u32()? as usize;
            if n > MAX_SUMS {
                return Err(WireError::FieldTooLong {
                    what: "checksum list",
                    len: n,
                    max: MAX_SUMS,
                });
            }
            // Bounded by MAX_SUMS and by what is actually in the frame.
            let bytes = r.take(n.saturating_mul(SUM_LEN))?;
            let sums = bytes
                .chunks_exact(SUM_LEN)
                .map(|c| {
                    let mut s = [0u8; SUM_LEN];
                    s.copy_from_slice(c);
                    s
                })
                .collect();
            Message::BlockSums { start, sums }
        }
        T_BLOCK => Message::Block {
            epoch: r.u64()?,
            seq: r.u64()?,
            index: r.u64()?,
            data: r.data()?,
        },
        T_RESYNC_PROGRESS => Message::ResyncProgress {
            epoch: r.u64()?,
            seq: r.u64()?,
            done_blocks: r.u64()?,
        },
        T_RESYNC_DONE => Message::ResyncDone {
            epoch: r.u64()?,
            seq: r.u64()?,
        },
        tag => return Err(WireError::UnknownTag(tag)),
    };
    if !r.buf.is_empty() {
        return Err(WireError::TrailingBytes(r.buf.len()));
    }
    Ok(message)
}

impl Message {
    /// Appends this message as one frame to `out`. Fails, without touching
    /// `out`, on a field the decoder would refuse, so nothing this side
    /// sends can be refused for its size at the other.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut w = Vec::with_capacity(64 + self.data_len());
        w.push(WIRE_VERSION);
        match self {
            Message::Hello {
                volume_id,
                group,
                size_bytes,
                epoch,
                block_size,
                next_seq,
            } => {
                w.push(T_HELLO);
                put_name(&mut w, volume_id)?;
                put_name(&mut w, group)?;
                put_u64(&mut w, *size_bytes);
                put_u64(&mut w, *epoch);
                w.extend_from_slice(&block_size.to_le_bytes());
                put_u64(&mut w, *next_seq);
            }
            Message::HelloAck {
                epoch,
                disk,
                fresh_image,
            } => {
                w.push(T_HELLO_ACK);
                put_u64(&mut w, *epoch);
                put_disk_state(&mut w, disk);
                w.push(u8::from(*fresh_image));
            }
            Message::Write {
                epoch,
                seq,
                offset,
                data,
            } => {
                w.push(T_WRITE);
                put_u64(&mut w, *epoch);
                put_u64(&mut w, *seq);
                put_u64(&mut w, *offset);
                put_data(&mut w, data)?;
            }
            Message::Flush { epoch, seq } => {
                w.push(T_FLUSH);
                put_u64(&mut w, *epoch);
                put_u64(&mut w, *seq);
            }
            Message::Ack { seq, flushed } => {
                w.push(T_ACK);
                put_u64(&mut w, *seq);
                w.push(u8::from(*flushed));
            }
            Message::Refused { reason } => {
                w.push(T_REFUSED);
                put_reason(&mut w, reason)?;
            }
            Message::BlockSums { start, sums } => {
                if sums.len() > MAX_SUMS {
                    return Err(WireError::FieldTooLong {
                        what: "checksum list",
                        len: sums.len(),
                        max: MAX_SUMS,
                    });
                }
                w.push(T_BLOCK_SUMS);
                put_u64(&mut w, *start);
                w.extend_from_slice(&(sums.len() as u32).to_le_bytes());
                for s in sums {
                    w.extend_from_slice(s);
                }
            }
            Message::Block {
                epoch,
                seq,
                index,
                data,
            } => {
                w.push(T_BLOCK);
                put_u64(&mut w, *epoch);
                put_u64(&mut w, *seq);
                put_u64(&mut w, *index);
                put_data(&mut w, data)?;
            }
            Message::ResyncProgress {
                epoch,
                seq,
                done_blocks,
            } => {
                w.push(T_RESYNC_PROGRESS);
                put_u64(&mut w, *epoch);
                put_u64(&mut w, *seq);
                put_u64(&mut w, *done_blocks);
            }
            Message::ResyncDone { epoch, seq } => {
                w.push(T_RESYNC_DONE);
                put_u64(&mut w, *epoch);
                put_u64(&mut w, *seq);
            }
        }
        if w.len() > MAX_FRAME_BODY {
            return Err(WireError::FrameTooLong {
                len: w.len(),
                max: MAX_FRAME_BODY,
            });
        }
        out.extend_from_slice(&(w.len() as u32).to_le_bytes());
        out.extend_from_slice(&w);
        Ok(())
    }

    /// The message as one frame.
    pub fn to_frame(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Bytes of payload data the message carries (for window accounting).
    pub fn data_len(&self) -> usize {
        match self {
            Message::Write { data, .. } | Message::Block { data, .. } => data.len(),
            Message::BlockSums { sums, .. } => sums.len() * SUM_LEN,
            _ => 0,
        }
    }
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_name(w: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    if s.len() > MAX_NAME {
        return Err(WireError::FieldTooLong {
            what: "name",
            len: s.len(),
            max: MAX_NAME,
        });
    }
    w.push(s.len() as u8);
    w.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Like `put_name`, but cuts an over-long free text (an I/O error's
/// description) at a character boundary instead of failing: a refusal
/// must always be sendable.
fn put_text(w: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_NAME);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.get(..end).unwrap_or("");
    w.push(cut.len() as u8);
    w.extend_from_slice(cut.as_bytes());
}

fn put_data(w: &mut Vec<u8>, data: &[u8]) -> Result<(), WireError> {
    if data.len() > MAX_DATA {
        return Err(WireError::FieldTooLong {
            what: "data",
            len: data.len(),
            max: MAX_DATA,
        });
    }
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(data);
    Ok(())
}

fn put_disk_state(w: &mut Vec<u8>, d: &DiskState) {
    match d {
        DiskState::UpToDate => w.push(0),
        DiskState::Outdated => w.push(1),
        DiskState::Inconsistent {
            done_blocks,
            total_blocks,
        } => {
            w.push(2);
            put_u64(w, *done_blocks);
            put_u64(w, *total_blocks);
        }
    }
}

fn put_reason(w: &mut Vec<u8>, r: &RefuseReason) -> Result<(), WireError> {
    match r {
        RefuseReason::StaleEpoch { ours, theirs } => {
            w.push(0);
            put_u64(w, *ours);
            put_u64(w, *theirs);
        }
        RefuseReason::WrongVolume { ours, theirs } => {
            w.push(1);
            put_name(w, ours)?;
            put_name(w, theirs)?;
        }
        RefuseReason::WrongGroup { ours, theirs } => {
            w.push(2);
            put_name(w, ours)?;
            put_name(w, theirs)?;
        }
        RefuseReason::SizeMismatch { ours, theirs } => {
            w.push(3);
            put_u64(w, *ours);
            put_u64(w, *theirs);
        }
        RefuseReason::BlockSizeMismatch { ours, theirs } => {
            w.push(4);
            w.extend_from_slice(&ours.to_le_bytes());
            w.extend_from_slice(&theirs.to_le_bytes());
        }
        RefuseReason::OutOfOrder { expected, got } => {
            w.push(5);
            put_u64(w, *expected);
            put_u64(w, *got);
        }
        RefuseReason::OutOfRange { offset, len } => {
            w.push(6);
            put_u64(w, *offset);
            put_u64(w, *len);
        }
        RefuseReason::NoSession => w.push(7),
        RefuseReason::Io { detail } => {
            w.push(8);
            put_text(w, detail);
        }
        RefuseReason::Unexpected { what } => {
            w.push(9);
            put_text(w, what);
        }
    }
    Ok(())
}

/// A cursor over a frame body; every read checks what is left.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            code => Err(WireError::BadCode { what: "bool", code }),
        }
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn name(&mut self) -> Result<String, WireError> {
        // A u8 length cannot exceed MAX_NAME.
        let n = self.u8()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::BadUtf8)
    }

    fn data(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_DATA {
            return Err(WireError::FieldTooLong {
                what: "data",
                len: n,
                max: MAX_DATA,
            });
        }
        Ok(self.take(n)?.to_vec())
    }

    fn disk_state(&mut self) -> Result<DiskState, WireError> {
        match self.u8()? {
            0 => Ok(DiskState::UpToDate),
            1 => Ok(DiskState::Outdated),
            2 => Ok(DiskState::Inconsistent {
                done_blocks: self.u64()?,
                total_blocks: self.u64()?,
            }),
            code => Err(WireError::BadCode {
                what: "disk state",
                code,
            }),
        }
    }

    fn reason(&mut self) -> Result<RefuseReason, WireError> {
        Ok(match self.u8()? {
            0 => RefuseReason::StaleEpoch {
                ours: self.u64()?,
                theirs: self.u64()?,
            },
            1 => RefuseReason::WrongVolume {
                ours: self.name()?,
                theirs: self.name()?,
            },
            2 => RefuseReason::WrongGroup {
                ours: self.name()?,
                theirs: self.name()?,
            },
            3 => RefuseReason::SizeMismatch {
                ours: self.u64()?,
                theirs: self.u64()?,
            },
            4 => RefuseReason::BlockSizeMismatch {
                ours: self.u32()?,
                theirs: self.u32()?,
            },
            5 => RefuseReason::OutOfOrder {
                expected: self.u64()?,
                got: self.u64()?,
            },
            6 => RefuseReason::OutOfRange {
                offset: self.u64()?,
                len: self.u64()?,
            },
            7 => RefuseReason::NoSession,
            8 => RefuseReason::Io {
                detail: self.name()?,
            },
            9 => RefuseReason::Unexpected { what: self.name()? },
            code => {
                return Err(WireError::BadCode {
                    what: "refusal reason",
                    code,
                })
            }
        })
    }
}
