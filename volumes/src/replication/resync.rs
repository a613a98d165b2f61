//! Resync: bring a standby's image to the primary's content.
//!
//! Checksum resync (a standby that has an image): the standby sends the
//! BLAKE3 sums of its blocks a chunk at a time; the primary compares them
//! with its own and sends the blocks that differ, then `ResyncProgress`
//! for the chunk, which makes the standby send the next one (so neither
//! side holds more than a chunk). Full sync (a fresh, all-zero standby
//! image): the primary sends every block that is not all zeros.
//!
//! BLAKE3 rather than CRC-32 or xxHash: the service in the container
//! chooses the block contents, and a non-cryptographic sum lets it craft
//! two blocks with equal sums, which would leave a standby marked UpToDate
//! with a block that differs. BLAKE3 hashes at several GB/s per core, far
//! faster than the disk delivers the blocks, so the safety costs nothing.

use std::collections::VecDeque;
use std::time::Instant;

use super::error::{io_err, Error, Result};
use super::image::{read_full, Image};
use super::primary::{Primary, WriteTicket};
use super::state::VolumeIdentity;
use super::wire::{BlockSum, Message};

/// Checksums per `BlockSums` message (64 MiB of 64 KiB blocks).
pub const SUMS_PER_CHUNK: u64 = 1024;
/// In a full sync, a `ResyncProgress` after this many blocks.
const FULL_SYNC_PROGRESS_EVERY: u64 = 1024;

pub fn block_sum(data: &[u8]) -> BlockSum {
    *blake3::hash(data).as_bytes()
}

/// Byte length of block `index` (the last block may be short; 0 outside).
pub fn block_len(id: &VolumeIdentity, index: u64) -> u64 {
    let bs = u64::from(id.block_size);
    let start = index.saturating_mul(bs);
    id.size_bytes.saturating_sub(start).min(bs)
}

/// Reads block `index` of `image`; sparse regions and anything past the
/// end of the file read as zeros.
pub fn read_block<I: Image + ?Sized>(
    image: &I,
    id: &VolumeIdentity,
    index: u64,
) -> std::io::Result<Vec<u8>> {
    let len = usize::try_from(block_len(id, index)).unwrap_or(0);
    let mut buf = vec![0u8; len];
    read_full(image, &mut buf, index * u64::from(id.block_size))?;
    Ok(buf)
}

/// Sums of blocks `start..start + count` (clipped to the volume), reusing
/// one block buffer.
pub fn block_sums<I: Image + ?Sized>(
    image: &I,
    id: &VolumeIdentity,
    start: u64,
    count: u64,
) -> std::io::Result<Vec<BlockSum>> {
    let end = start.saturating_add(count).min(id.total_blocks());
    let mut buf = vec![0u8; id.block_size as usize];
    let mut sums = Vec::with_capacity(end.saturating_sub(start) as usize);
    for index in start..end {
        let len = block_len(id, index) as usize;
        let b = &mut buf[..len];
        read_full(image, b, index * u64::from(id.block_size))?;
        sums.push(block_sum(b));
    }
    Ok(sums)
}

/// Indexes (from `start`) whose sums differ. A list shorter than the other
/// counts every missing entry as different.
pub fn differing(start: u64, ours: &[BlockSum], theirs: &[BlockSum]) -> Vec<u64> {
    let n = ours.len().max(theirs.len());
    (0..n)
        .filter(|&i| ours.get(i) != theirs.get(i) || ours.get(i).is_none())
        .map(|i| start + i as u64)
        .collect()
}

pub fn is_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

/// The primary's side of one resync.
#[derive(Debug)]
pub struct SourceResync {
    id: VolumeIdentity,
    full: bool,
    /// Checksum mode: blocks of the current chunk still to send.
    queue: VecDeque<u64>,
    /// End of the last chunk whose sums arrived.
    chunk_end: u64,
    progress_sent: u64,
    /// Full mode: the next block to look at.
    next_full: u64,
    finished: bool,
    /// Blocks sent, for progress reports.
    pub blocks_sent: u64,
}

impl SourceResync {
    /// `fresh_image` comes from the standby's `HelloAck`.
    pub fn new(id: VolumeIdentity, fresh_image: bool) -> Self {
        Self {
            id,
            full: fresh_image,
            queue: VecDeque::new(),
            chunk_end: 0,
            progress_sent: 0,
            next_full: 0,
            finished: false,
            blocks_sent: 0,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Blocks compared (or, in a full sync, looked at) so far.
    pub fn done_blocks(&self) -> u64 {
        if self.full {
            self.next_full
        } else {
            self.progress_sent
        }
    }

    /// The standby's sums of `start..start + theirs.len()`.
    pub fn on_sums<I: Image + ?Sized>(
        &mut self,
        image: &I,
        start: u64,
        theirs: &[BlockSum],
    ) -> Result<()> {
        let total = self.id.total_blocks();
        if self.full || start != self.chunk_end || !self.queue.is_empty() {
            return Err(Error::Protocol(format!(
                "checksums from block {start} were not asked for (expected {})",
                self.chunk_end
            )));
        }
        let end = start.saturating_add(theirs.len() as u64);
        if end > total || theirs.is_empty() {
            return Err(Error::Protocol(format!(
                "checksums for blocks {start}..{end} of a {total}-block volume"
            )));
        }
        let ours = block_sums(image, &self.id, start, theirs.len() as u64)
            .map_err(io_err("checksum the primary's image"))?;
        self.queue.extend(differing(start, &ours, theirs));
        self.chunk_end = end;
        Ok(())
    }

    /// Sends as much as the window allows. Call after `on_sums`, after
    /// every ack, and after a `Wait`. Returns the messages to send, in
    /// order; an empty result with `!is_finished()` means wait.
    pub fn pump<I: Image + ?Sized>(
        &mut self,
        primary: &mut Primary,
        image: &I,
        now: Instant,
    ) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        if self.finished {
            return Ok(out);
        }
        let total = self.id.total_blocks();
        if self.full {
            while self.next_full < total {
                let index = self.next_full;
                let data = read_block(image, &self.id, index)
                    .map_err(io_err(format!("read block {index} of the primary's image")))?;
                if !is_zero(&data) && !self.send_block(primary, index, data, now, &mut out)? {
                    return Ok(out);
                }
                self.next_full += 1;
                if self.next_full - self.progress_sent >= FULL_SYNC_PROGRESS_EVERY {
                    self.progress_sent = self.next_full;
                    out.push(primary.resync_progress(self.next_full)?);
                }
            }
        } else {
            while let Some(&index) = self.queue.front() {
                let data = read_block(image, &self.id, index)
                    .map_err(io_err(format!("read block {index} of the primary's image")))?;
                if !self.send_block(primary, index, data, now, &mut out)? {
                    return Ok(out);
                }
                self.queue.pop_front();
            }
            if self.chunk_end > self.progress_sent {
                self.progress_sent = self.chunk_end;
                out.push(primary.resync_progress(self.chunk_end)?);
            }
            if self.chunk_end < total {
                return Ok(out); // the standby sends the next chunk
            }
        }
        out.push(primary.resync_done()?);
        self.finished = true;
        Ok(out)
    }

    fn send_block(
        &mut self,
        primary: &mut Primary,
        index: u64,
        data: Vec<u8>,
        now: Instant,
        out: &mut Vec<Message>,
    ) -> Result<bool> {
        match primary.resync_block(index, data.len() as u64, now)? {
            WriteTicket::Send { epoch, seq } => {
                out.push(Message::Block {
                    epoch,
                    seq,
                    index,
                    data,
                });
                self.blocks_sent += 1;
                Ok(true)
            }
            WriteTicket::Wait => Ok(false),
            WriteTicket::LocalOnly { .. } => Err(Error::Protocol(
                "the session ended during the resync".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests;
