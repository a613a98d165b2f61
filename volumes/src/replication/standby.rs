//! The standby's side: applies a primary's writes to a real image file in
//! sequence order, fdatasyncs on `Flush` and acknowledges only after the
//! fdatasync returned, refuses any primary whose epoch is older than its
//! own, and takes resync blocks while it is Inconsistent.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::error::{io_err, Result};
use super::image::Image;
use super::resync::{block_len, block_sums, SUMS_PER_CHUNK};
use super::state::{DiskState, VolumeIdentity, VolumeMeta};
use super::wire::{Message, RefuseReason};

/// Acknowledge applied (not yet flushed) writes this often, so the primary
/// can show the standby's lag without a flush.
const APPLIED_ACK_EVERY: u64 = 256;

#[derive(Debug)]
struct Session {
    epoch: u64,
    expected_seq: u64,
    applied_seq: u64,
    /// The image was fresh (all zeros) at Hello: a full sync, no sums.
    full_sync: bool,
    unacked_applied: u64,
}

/// One replica's standby role.
#[derive(Debug)]
pub struct Standby<I: Image> {
    image: I,
    state_path: PathBuf,
    meta: VolumeMeta,
    /// No state file existed: the image holds nothing worth comparing.
    fresh: bool,
    session: Option<Session>,
}

impl Standby<File> {
    /// Opens (or creates, sparse) the image and reads its state file. An
    /// existing state of another volume, or an image of another size, is
    /// an error that names both sides.
    pub fn open(image_path: &Path, state_path: &Path, identity: VolumeIdentity) -> Result<Self> {
        let meta = VolumeMeta::load(state_path)?;
        let mut image = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(image_path)
            .map_err(io_err(format!("open image {}", image_path.display())))?;
        if meta.is_none() {
            Image::set_len(&mut image, identity.size_bytes)
                .map_err(io_err(format!("size image {}", image_path.display())))?;
        }
        Self::with_image(image, state_path, meta, identity)
    }
}

impl<I: Image> Standby<I> {
    /// `meta`: the loaded state file, `None` when there was none.
    pub fn with_image(
        image: I,
        state_path: &Path,
        meta: Option<VolumeMeta>,
        identity: VolumeIdentity,
    ) -> Result<Self> {
        identity.validate()?;
        let fresh = meta.is_none();
        let meta = meta.unwrap_or_else(|| VolumeMeta::unsynced(identity.clone()));
        if let Some(reason) = identity_mismatch(&meta.identity, &identity) {
            return Err(super::Error::Refused(reason));
        }
        let len = image
            .size()
            .map_err(io_err(format!("stat image of {}", identity.volume_id)))?;
        if len != identity.size_bytes {
            return Err(super::Error::Refused(RefuseReason::SizeMismatch {
                ours: len,
                theirs: identity.size_bytes,
            }));
        }
        Ok(Self {
            image,
            state_path: state_path.to_owned(),
            meta,
            fresh,
            session: None,
        })
    }

    pub fn meta(&self) -> &VolumeMeta {
        &self.meta
    }

    pub fn image(&self) -> &I {
        &self.image
    }

    pub fn image_mut(&mut self) -> &mut I {
        &mut self.image
    }

    /// The coordinator announced `epoch` (a promotion, or this host becoming
    /// standby of a newer primary): persist it, refuse older writers from
    /// now on, and end a session of an older epoch.
    pub fn fence(&mut self, epoch: u64) -> Result<()> {
        if epoch > self.meta.epoch {
            self.meta.epoch = epoch;
            self.meta.store(&self.state_path)?;
        }
        if self.session.as_ref().is_some_and(|s| s.epoch < epoch) {
            self.session = None;
        }
        Ok(())
    }

    /// The coordinator recorded this replica Outdated.
    pub fn mark_outdated(&mut self) -> Result<()> {
        if self.meta.disk == DiskState::UpToDate {
            self.meta.disk = DiskState::Outdated;
            self.meta.store(&self.state_path)?;
        }
        Ok(())
    }

    /// The session with the primary ended (connection lost).
    pub fn on_link_down(&mut self) {
        self.session = None;
    }

    /// Handles one message from the primary; returns the replies, in
    /// order. A refusal ends the session.
    pub fn handle(&mut self, msg: Message) -> Vec<Message> {
        match self.handle_inner(msg) {
            Ok(replies) => replies,
            Err(reason) => {
                self.session = None;
                vec![Message::Refused { reason }]
            }
        }
    }

    fn handle_inner(&mut self, msg: Message) -> std::result::Result<Vec<Message>, RefuseReason> {
        match msg {
            Message::Hello {
                volume_id,
                group,
                size_bytes,
                epoch,
                block_size,
                next_seq,
            } => {
                let theirs = VolumeIdentity {
                    volume_id,
                    group,
                    size_bytes,
                    block_size,
                };
                self.hello(theirs, epoch, next_seq)
            }
            Message::Write {
                epoch,
                seq,
                offset,
                data,
            } => self.write(epoch, seq, offset, &data),
            Message::Block {
                epoch,
                seq,
                index,
                data,
            } => {
                let id = &self.meta.identity;
                if index >= id.total_blocks() || data.len() as u64 != block_len(id, index) {
                    return Err(RefuseReason::OutOfRange {
                        offset: index.saturating_mul(u64::from(id.block_size)),
                        len: data.len() as u64,
                    });
                }
                let offset = index * u64::from(id.block_size);
                self.write(epoch, seq, offset, &data)
            }
            Message::Flush { epoch, seq } => {
                let s = self.session_of(epoch)?;
                if seq > s.applied_seq {
                    return Err(RefuseReason::OutOfOrder {
                        expected: s.applied_seq,
                        got: seq,
                    });
                }
                self.image.sync_data().map_err(io_refusal("fdatasync"))?;
                if let Some(s) = self.session.as_mut() {
                    s.unacked_applied = 0;
                }
                Ok(vec![Message::Ack { seq, flushed: true }])
            }
            Message::ResyncProgress {
                epoch, done_blocks, ..
            } => self.progress(epoch, done_blocks),
            Message::ResyncDone { epoch, seq } => {
                self.next_in_order(epoch, seq)?;
                self.image.sync_data().map_err(io_refusal("fdatasync"))?;
                self.meta.disk = DiskState::UpToDate;
                self.meta.store(&self.state_path).map_err(refusal)?;
                self.fresh = false;
                if let Some(s) = self.session.as_mut() {
                    s.applied_seq = seq;
                    s.unacked_applied = 0;
                }
                Ok(vec![Message::Ack { seq, flushed: true }])
            }
            other => Err(RefuseReason::Unexpected {
                what: format!("{} at a standby", kind(&other)),
            }),
        }
    }

    fn hello(
        &mut self,
        theirs: VolumeIdentity,
        epoch: u64,
        next_seq: u64,
    ) -> std::result::Result<Vec<Message>, RefuseReason> {
        if let Some(reason) = identity_mismatch(&self.meta.identity, &theirs) {
            return Err(reason);
        }
        if epoch < self.meta.epoch {
            return Err(RefuseReason::StaleEpoch {
                ours: self.meta.epoch,
                theirs: epoch,
            });
        }
        // Sequence numbers start at 1 and are far from wrapping.
        if next_seq == 0 || next_seq > u64::MAX / 2 {
            return Err(RefuseReason::OutOfOrder {
                expected: 1,
                got: next_seq,
            });
        }
        let full_sync = self.fresh;
        if full_sync {
            // All zeros, so a full sync may skip the primary's zero blocks.
            let size = self.meta.identity.size_bytes;
            self.image
                .set_len(0)
                .and_then(|_| self.image.set_len(size))
                .map_err(io_refusal("reset the fresh image"))?;
        }
        // Inconsistent and the new epoch are on disk before the first block
        // of this session touches the image.
        self.meta.epoch = epoch;
        self.meta.disk = DiskState::Inconsistent {
            done_blocks: 0,
            total_blocks: self.meta.identity.total_blocks(),
        };
        self.meta.store(&self.state_path).map_err(refusal)?;
        self.session = Some(Session {
            epoch,
            expected_seq: next_seq,
            applied_seq: next_seq.saturating_sub(1),
            full_sync,
            unacked_applied: 0,
        });
        let mut replies = vec![Message::HelloAck {
            epoch,
            disk: self.meta.disk,
            fresh_image: full_sync,
        }];
        if !full_sync {
            replies.extend(self.sums_from(0)?);
        }
        Ok(replies)
    }

    fn write(
        &mut self,
        epoch: u64,
        seq: u64,
        offset: u64,
        data: &[u8],
    ) -> std::result::Result<Vec<Message>, RefuseReason> {
        let len = data.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.meta.identity.size_bytes)
        {
            return Err(RefuseReason::OutOfRange { offset, len });
        }
        self.next_in_order(epoch, seq)?;
        self.image
            .pwrite_all(data, offset)
            .map_err(io_refusal("write"))?;
        let Some(s) = self.session.as_mut() else {
            return Err(RefuseReason::NoSession);
        };
        s.applied_seq = seq;
        s.unacked_applied += 1;
        if s.unacked_applied >= APPLIED_ACK_EVERY {
            s.unacked_applied = 0;
            return Ok(vec![Message::Ack {
                seq,
                flushed: false,
            }]);
        }
        Ok(Vec::new())
    }

    fn progress(
        &mut self,
        epoch: u64,
        done_blocks: u64,
    ) -> std::result::Result<Vec<Message>, RefuseReason> {
        let full_sync = self.session_of(epoch)?.full_sync;
        let total = self.meta.identity.total_blocks();
        let done = done_blocks.min(total);
        // Progress is recorded only once the blocks it covers are on disk.
        self.image.sync_data().map_err(io_refusal("fdatasync"))?;
        self.meta.disk = DiskState::Inconsistent {
            done_blocks: done,
            total_blocks: total,
        };
        self.meta.store(&self.state_path).map_err(refusal)?;
        if full_sync || done >= total {
            return Ok(Vec::new());
        }
        self.sums_from(done)
    }

    fn sums_from(&self, start: u64) -> std::result::Result<Vec<Message>, RefuseReason> {
        if start >= self.meta.identity.total_blocks() {
            return Ok(Vec::new());
        }
        let sums = block_sums(&self.image, &self.meta.identity, start, SUMS_PER_CHUNK)
            .map_err(io_refusal("checksum the image"))?;
        Ok(vec![Message::BlockSums { start, sums }])
    }

    fn session_of(&self, epoch: u64) -> std::result::Result<&Session, RefuseReason> {
        if epoch < self.meta.epoch {
            return Err(RefuseReason::StaleEpoch {
                ours: self.meta.epoch,
                theirs: epoch,
            });
        }
        match &self.session {
            None => Err(RefuseReason::NoSession),
            Some(s) if s.epoch != epoch => Err(RefuseReason::StaleEpoch {
                ours: s.epoch,
                theirs: epoch,
            }),
            Some(s) => Ok(s),
        }
    }

    /// Checks epoch and sequence of a seq-consuming message and consumes it.
    fn next_in_order(&mut self, epoch: u64, seq: u64) -> std::result::Result<(), RefuseReason> {
        let expected = self.session_of(epoch)?.expected_seq;
        if seq != expected {
            return Err(RefuseReason::OutOfOrder { expected, got: seq });
        }
        if let Some(s) = self.session.as_mut() {
            s.expected_seq += 1;
        }
        Ok(())
    }
}

/// The first field in which the standby's identity differs from the
/// primary's, as a refusal naming both values.
pub fn identity_mismatch(ours: &VolumeIdentity, theirs: &VolumeIdentity) -> Option<RefuseReason> {
    if ours.group != theirs.group {
        return Some(RefuseReason::WrongGroup {
            ours: ours.group.clone(),
            theirs: theirs.group.clone(),
        });
    }
    if ours.volume_id != theirs.volume_id {
        return Some(RefuseReason::WrongVolume {
            ours: ours.volume_id.clone(),
            theirs: theirs.volume_id.clone(),
        });
    }
    if ours.size_bytes != theirs.size_bytes {
        return Some(RefuseReason::SizeMismatch {
            ours: ours.size_bytes,
            theirs: theirs.size_bytes,
        });
    }
    if ours.block_size != theirs.block_size {
        return Some(RefuseReason::BlockSizeMismatch {
            ours: ours.block_size,
            theirs: theirs.block_size,
        });
    }
    None
}

fn io_refusal(what: &'static str) -> impl FnOnce(std::io::Error) -> RefuseReason {
    move |e| RefuseReason::Io {
        detail: format!("{what}: {e}"),
    }
}

fn refusal(e: super::Error) -> RefuseReason {
    RefuseReason::Io {
        detail: e.to_string(),
    }
}

fn kind(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "Hello",
        Message::HelloAck { .. } => "HelloAck",
        Message::Write { .. } => "Write",
        Message::Flush { .. } => "Flush",
        Message::Ack { .. } => "Ack",
        Message::Refused { .. } => "Refused",
        Message::BlockSums { .. } => "BlockSums",
        Message::Block { .. } => "Block",
        Message::ResyncProgress { .. } => "ResyncProgress",
        Message::ResyncDone { .. } => "ResyncDone",
    }
}

#[cfg(test)]
mod tests;
