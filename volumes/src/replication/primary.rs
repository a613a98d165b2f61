//! The primary's side of replication, as a pure state machine: no I/O, no
//! clock (`now` is a parameter), quinn-proto style. The agent's driver
//! feeds it calls and events and carries out the [`Action`]s it returns.
//!
//! The one promise it keeps: [`Primary::fsync_state`] says `Durable` for a
//! barrier only when the standby acknowledged an fdatasync covering it in
//! a session whose resync had completed, or when the coordinator confirmed
//! the standby Outdated (then the primary runs alone).
//!
//! Ordering: the caller must assign a sequence number, write its local
//! image and enqueue the message as one step under the volume's lock, so
//! that sequence order, local order and wire order agree (a resync block
//! read must not race a write to the same block).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::dirty::DirtyBlocks;
use super::error::{Error, Result};
use super::state::VolumeIdentity;
use super::wire::{Message, RefuseReason};

/// Bounds of the primary's replication.
#[derive(Debug, Clone)]
pub struct PrimaryConfig {
    pub identity: VolumeIdentity,
    /// Bytes sent to the standby and not yet fdatasync'ed there.
    pub max_inflight_bytes: u64,
    /// Writes sent to the standby and not yet fdatasync'ed there.
    pub max_inflight_writes: usize,
    /// How long an fsync (or a write held back by a full window) waits for
    /// the standby before the primary asks to outdate it.
    pub fsync_bound: Duration,
    /// How often to ask the coordinator again while it does not answer.
    pub coordinator_retry: Duration,
}

/// What the coordinator has recorded about the standby, as far as this
/// primary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The standby may be promoted: every acknowledged fsync must be on it.
    InSync,
    /// We asked the coordinator to outdate the standby and have no answer:
    /// fsyncs still wait for the standby. `next_ask` is when to ask again.
    OutdatePending { next_ask: Instant },
    /// The coordinator persisted the standby Outdated: fsyncs are local
    /// only, and `DirtyBlocks` records what the standby misses.
    Outdated,
}

/// The answer to [`Primary::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTicket {
    /// Write locally, then send `Message::Write { epoch, seq, .. }`.
    Send { epoch: u64, seq: u64 },
    /// Write locally only (no session): the block is marked dirty.
    LocalOnly { seq: u64 },
    /// The in-flight window is full: wait for an ack (or a timeout) and ask
    /// again. Nothing was assigned.
    Wait,
}

/// An fsync waiting for its barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsyncTicket {
    pub barrier: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncState {
    Durable,
    Waiting,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message to the standby.
    Send(Message),
    /// Ask the coordinator to persist the standby as Outdated for `epoch`;
    /// answer with `on_coordinator_outdated(request)` / `_refused`, or
    /// nothing (it is asked again). `request` tells a late answer to an
    /// earlier episode from an answer to this one.
    AskCoordinatorToOutdateStandby { epoch: u64, request: u64 },
    /// The standby finished its resync and is in sync again: tell the
    /// coordinator it is UpToDate (fsyncs already wait for it again).
    ReportStandbyUpToDate { epoch: u64 },
    /// Close the session with the standby; the next one resyncs.
    DropSession,
}

#[derive(Debug)]
struct Inflight {
    seq: u64,
    offset: u64,
    len: u64,
}

#[derive(Debug)]
struct Session {
    /// Acks of this session prove durability only after its resync.
    synced: bool,
    resync_done_seq: Option<u64>,
    flush_requested: u64,
    /// The standby answered the Hello with a HelloAck.
    accepted: bool,
}

/// The primary's replication state for one volume.
#[derive(Debug)]
pub struct Primary {
    cfg: PrimaryConfig,
    epoch: u64,
    next_seq: u64,
    /// Highest seq known fdatasync'ed on a synced standby.
    durable_seq: u64,
    applied_seq: u64,
    standing: Standing,
    session: Option<Session>,
    window: VecDeque<Inflight>,
    window_bytes: u64,
    /// Barrier -> when the first fsync on it started waiting.
    waiting_fsyncs: BTreeMap<u64, Instant>,
    window_blocked_since: Option<Instant>,
    dirty: DirtyBlocks,
    fenced_by: Option<u64>,
    actions: VecDeque<Action>,
    /// Ids of coordinator requests: the next one, and the first one of the
    /// current OutdatePending episode.
    next_request: u64,
    episode_first_request: u64,
}

impl Primary {
    /// `standby_outdated`: what the coordinator's record says at start (a
    /// fresh standby is never UpToDate, so the primary may start alone).
    pub fn new(
        cfg: PrimaryConfig,
        epoch: u64,
        next_seq: u64,
        standby_outdated: bool,
    ) -> Result<Self> {
        cfg.identity.validate()?;
        let total = cfg.identity.total_blocks();
        Ok(Self {
            epoch,
            next_seq: next_seq.max(1),
            // Not `next_seq - 1`: writes of an earlier run may have reached
            // the local image and not the standby; only a resync proves them.
            durable_seq: 0,
            applied_seq: 0,
            standing: if standby_outdated {
                Standing::Outdated
            } else {
                Standing::InSync
            },
            session: None,
            window: VecDeque::new(),
            window_bytes: 0,
            waiting_fsyncs: BTreeMap::new(),
            window_blocked_since: None,
            dirty: DirtyBlocks::new(total),
            fenced_by: None,
            actions: VecDeque::new(),
            next_request: 1,
            episode_first_request: u64::MAX,
            cfg,
        })
    }

    /// Opens a session: returns the `Hello` to send first. The session
    /// starts now, not at the `HelloAck`, so writes made before the ack
    /// arrives are sent behind the Hello in sequence (the standby expects
    /// them from `next_seq` on). Unsynced until its resync completes.
    pub fn open_session(&mut self) -> Result<Message> {
        self.check_fenced()?;
        self.drop_window();
        self.session = Some(Session {
            synced: false,
            resync_done_seq: None,
            flush_requested: self.next_seq - 1,
            accepted: false,
        });
        let id = &self.cfg.identity;
        Ok(Message::Hello {
            volume_id: id.volume_id.clone(),
            group: id.group.clone(),
            size_bytes: id.size_bytes,
            epoch: self.epoch,
            block_size: id.block_size,
            next_seq: self.next_seq,
        })
    }

    /// The standby accepted our Hello.
    pub fn on_hello_ack(&mut self, standby_epoch: u64) -> Result<()> {
        self.check_fenced()?;
        if standby_epoch > self.epoch {
            return Err(self.fence(standby_epoch));
        }
        match self.session.as_mut() {
            Some(s) if !s.accepted => {
                s.accepted = true;
                Ok(())
            }
            _ => Err(Error::Protocol("HelloAck without a pending Hello".into())),
        }
    }

    /// The connection to the standby is gone: what was in flight may be
    /// lost, so its blocks are dirty; waiting fsyncs go on waiting.
    pub fn on_link_down(&mut self) {
        self.session = None;
        self.drop_window();
    }

    fn drop_window(&mut self) {
        let bs = self.cfg.identity.block_size;
        for w in self.window.drain(..) {
            self.dirty.mark_range(w.offset, w.len, bs);
        }
        self.window_bytes = 0;
        // Nothing waits for the window any more.
        self.window_blocked_since = None;
    }

    /// Asks to write `len` bytes at `offset` (after the caller checked
    /// nothing else; the range is checked here).
    pub fn write(&mut self, offset: u64, len: u64, now: Instant) -> Result<WriteTicket> {
        self.check_fenced()?;
        let size = self.cfg.identity.size_bytes;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::OutOfRange { offset, len, size });
        }
        if self.session.is_none() {
            let seq = self.assign();
            self.dirty
                .mark_range(offset, len, self.cfg.identity.block_size);
            return Ok(WriteTicket::LocalOnly { seq });
        }
        let full = !self.window.is_empty()
            && (self.window.len() >= self.cfg.max_inflight_writes
                || self.window_bytes.saturating_add(len) > self.cfg.max_inflight_bytes);
        if full {
            self.window_blocked_since.get_or_insert(now);
            self.request_flush_if_needed();
            return Ok(WriteTicket::Wait);
        }
        self.window_blocked_since = None;
        let seq = self.assign();
        if self.standing == Standing::Outdated {
            self.dirty
                .mark_range(offset, len, self.cfg.identity.block_size);
        }
        self.window.push_back(Inflight { seq, offset, len });
        self.window_bytes += len;
        if self.window_bytes >= self.cfg.max_inflight_bytes / 2
            || self.window.len() >= self.cfg.max_inflight_writes / 2
        {
            self.request_flush_if_needed();
        }
        Ok(WriteTicket::Send {
            epoch: self.epoch,
            seq,
        })
    }

    /// A resync block goes through the same sequence and window as writes.
    pub fn resync_block(&mut self, index: u64, len: u64, now: Instant) -> Result<WriteTicket> {
        if self
            .session
            .as_ref()
            .is_none_or(|s| s.synced || !s.accepted)
        {
            return Err(Error::Protocol("resync block outside a resync".into()));
        }
        let offset = index.saturating_mul(u64::from(self.cfg.identity.block_size));
        self.write(offset, len, now)
    }

    /// Every block below `done_blocks` now matches: the message to send.
    pub fn resync_progress(&mut self, done_blocks: u64) -> Result<Message> {
        self.check_fenced()?;
        Ok(Message::ResyncProgress {
            epoch: self.epoch,
            seq: self.next_seq - 1,
            done_blocks,
        })
    }

    /// All blocks were compared and sent: the message that ends the resync.
    pub fn resync_done(&mut self) -> Result<Message> {
        self.check_fenced()?;
        let seq = self.assign();
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| Error::Protocol("resync done without a session".into()))?;
        session.resync_done_seq = Some(seq);
        session.flush_requested = seq;
        Ok(Message::ResyncDone {
            epoch: self.epoch,
            seq,
        })
    }

    /// An fsync arrived: its barrier is every write assigned so far.
    pub fn fsync(&mut self, now: Instant) -> Result<FsyncTicket> {
        self.check_fenced()?;
        let barrier = self.next_seq - 1;
        if self.fsync_state(FsyncTicket { barrier })? == FsyncState::Waiting {
            self.waiting_fsyncs.entry(barrier).or_insert(now);
            self.request_flush_if_needed();
        }
        Ok(FsyncTicket { barrier })
    }

    pub fn fsync_state(&self, t: FsyncTicket) -> Result<FsyncState> {
        self.check_fenced()?;
        if self.standing == Standing::Outdated || t.barrier <= self.durable_seq {
            Ok(FsyncState::Durable)
        } else {
            Ok(FsyncState::Waiting)
        }
    }

    /// An `Ack` from the standby.
    pub fn on_ack(&mut self, seq: u64, flushed: bool) -> Result<()> {
        self.check_fenced()?;
        if seq >= self.next_seq {
            return Err(Error::Protocol(format!(
                "ack of seq {seq}, never sent (last is {})",
                self.next_seq - 1
            )));
        }
        self.applied_seq = self.applied_seq.max(seq);
        if !flushed {
            return Ok(());
        }
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        while self.window.front().is_some_and(|w| w.seq <= seq) {
            if let Some(w) = self.window.pop_front() {
                self.window_bytes -= w.len;
            }
        }
        if !session.synced && session.resync_done_seq.is_some_and(|r| seq >= r) {
            session.synced = true;
            if self.standing == Standing::Outdated {
                // From here on fsyncs wait for the standby again, before the
                // coordinator hears it is UpToDate, so nothing acknowledged
                // later can be missing from a standby it may promote.
                self.standing = Standing::InSync;
                self.dirty.clear();
                self.actions
                    .push_back(Action::ReportStandbyUpToDate { epoch: self.epoch });
            }
        }
        if session.synced {
            self.durable_seq = self.durable_seq.max(seq);
            let durable = self.durable_seq;
            self.waiting_fsyncs.retain(|b, _| *b > durable);
        }
        Ok(())
    }

    fn request_flush_if_needed(&mut self) {
        let last = self.next_seq - 1;
        if let Some(s) = self.session.as_mut() {
            if s.flush_requested < last {
                s.flush_requested = last;
                self.actions.push_back(Action::Send(Message::Flush {
                    epoch: self.epoch,
                    seq: last,
                }));
            }
        }
    }

    fn assign(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn standing(&self) -> Standing {
        self.standing
    }
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }
    /// Writes the standby has applied (not necessarily flushed).
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }
    pub fn inflight_bytes(&self) -> u64 {
        self.window_bytes
    }
    pub fn inflight_writes(&self) -> usize {
        self.window.len()
    }
    pub fn dirty_blocks(&self) -> &DirtyBlocks {
        &self.dirty
    }
    pub fn session_synced(&self) -> Option<bool> {
        self.session.as_ref().map(|s| s.synced)
    }
    pub fn is_fenced(&self) -> bool {
        self.fenced_by.is_some()
    }

    /// A Flush of everything sent so far, sent while idle so the standby's
    /// flushed Ack renews the lease it grants this primary. None without a
    /// session (or fenced).
    pub fn keepalive(&self) -> Option<Message> {
        if self.session.is_none() || self.is_fenced() {
            return None;
        }
        Some(Message::Flush {
            epoch: self.epoch,
            seq: self.next_seq - 1,
        })
    }
}

mod outdate;
#[cfg(test)]
mod tests;
