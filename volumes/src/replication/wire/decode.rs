//! Decoding of [`Message`] frames: every length is checked against its
//! bound before anything is allocated, and every read against what is
//! left, so no input can make it panic.

use super::*;

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
