//! Encoding of [`Message`] frames. See the parent module for the layout.

use super::*;

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
