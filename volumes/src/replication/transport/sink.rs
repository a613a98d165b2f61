//! The primary's side: [`ReplicatingSink`], the FUSE server's `WriteSink`
//! of a replicated volume.
//!
//! Threads and locks: the sink's methods run on FUSE threads and are
//! synchronous. All of the volume's replication state (the pure
//! [`Primary`], the resync, the link) sits under one `std::sync::Mutex`;
//! a `Condvar` wakes FUSE threads when an ack, a lost link or a
//! coordinator answer changes it. FUSE threads never enter the tokio
//! runtime: frames go to the stream's writer task through an unbounded
//! channel, which the primary's in-flight window bounds (a write past the
//! window gets `Wait` and blocks on the condvar: that is the
//! backpressure), so nothing needs `block_on`. The runtime's tasks (the
//! connector, a reader and a writer per stream) take the same lock only
//! between awaits. Coordinator calls run on blocking threads, outside the
//! lock.
//!
//! Timeouts: opening the channel and every frame write are bounded; a
//! failure drops the session (its in-flight blocks become dirty), fsyncs
//! go on waiting, and the primary's `fsync_bound` decides when to ask the
//! coordinator to outdate the standby. Without a confirmed answer the
//! sink never acknowledges an fsync the standby has not flushed.

use crate::lease_clock::LeaseInstant;
use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh_bridge::{PeerAddr, Tunnels};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::{Coordinator, OutdateAnswer};
use crate::local::WriteSink;
use crate::replication::primary::{Action, FsyncState, Primary, PrimaryConfig, Standing};
use crate::replication::wire::Message;
use crate::replication::{Result, SourceResync};

mod link;

/// The longest a blocked FUSE thread sleeps before it looks again (the
/// primary's own deadlines are usually sooner).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// How a [`ReplicatingSink`] starts and how long it waits on the network.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub primary: PrimaryConfig,
    /// The group's current epoch.
    pub epoch: u64,
    /// The first sequence number to assign.
    pub next_seq: u64,
    /// What the coordinator's record says about the standby at start.
    pub standby_outdated: bool,
    /// Bound on opening the channel to the standby's agent.
    pub open_timeout: Duration,
    /// Bound on one frame write making no progress.
    pub write_timeout: Duration,
    /// Pause between a lost or refused stream and the next attempt.
    pub reconnect_delay: Duration,
}

/// A snapshot of the sink, for status reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    pub standing: Standing,
    pub connected: bool,
    pub synced: Option<bool>,
    pub last_seq: u64,
    pub durable_seq: u64,
    pub fenced: bool,
    /// The last reason a stream ended or an attempt failed.
    pub last_error: Option<String>,
    /// The last reason the standby refused the session.
    pub last_refusal: Option<String>,
    /// Writes and bytes sent and not yet acknowledged by the standby.
    pub inflight_writes: u64,
    pub inflight_bytes: u64,
    /// Blocks the resync of the standby has covered, of all, while one runs.
    pub resync: Option<(u64, u64)>,
    /// How long the last fsync through the sink took.
    pub last_fsync: Option<Duration>,
    /// Every fsync's round trip since the sink opened.
    pub fsyncs: mesh_bridge::HistogramSnapshot,
    /// When the newest Flush the standby acknowledged was sent: the start
    /// of the lease the standby grants (see [`ReplicatingSink::start_keepalive`]).
    pub last_grant: Option<LeaseInstant>,
}

struct Link {
    id: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
}

struct State {
    primary: Primary,
    resync: Option<SourceResync>,
    link: Option<Link>,
    links_opened: u64,
    /// A coordinator call is under way: a retry the primary asks for
    /// meanwhile is skipped (it asks again at its next retry time).
    asking: bool,
    closed: bool,
    /// Fenced by its own host (no lease): every write and fsync, waiting
    /// or new, fails with EIO at once.
    fenced_here: bool,
    last_error: Option<String>,
    last_refusal: Option<String>,
    last_fsync: Option<Duration>,
    fsyncs: mesh_bridge::LatencyHistogram,
    /// Flushes sent and not yet acknowledged: (seq, when sent).
    flushes_sent: std::collections::VecDeque<(u64, LeaseInstant)>,
    last_grant: Option<LeaseInstant>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    reconnect: Notify,
    /// A read handle on the primary's image, for the resync.
    image: File,
    coordinator: Arc<dyn Coordinator>,
    runtime: Handle,
    tunnels: Tunnels,
    peer: PeerAddr,
    cfg: SinkConfig,
}

/// The `WriteSink` that replicates a volume to its standby's agent over
/// the tunnel (protocol C at fsync boundaries).
pub struct ReplicatingSink {
    shared: Arc<Shared>,
}

impl ReplicatingSink {
    /// Starts replicating to `peer`: `image` reads the primary's image
    /// (for the resync), `runtime` runs the network tasks.
    pub fn start(
        cfg: SinkConfig,
        image: File,
        tunnels: Tunnels,
        peer: PeerAddr,
        coordinator: Arc<dyn Coordinator>,
        runtime: Handle,
    ) -> Result<ReplicatingSink> {
        let primary = Primary::new(
            cfg.primary.clone(),
            cfg.epoch,
            cfg.next_seq,
            cfg.standby_outdated,
        )?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                primary,
                resync: None,
                link: None,
                links_opened: 0,
                asking: false,
                closed: false,
                fenced_here: false,
                last_error: None,
                last_refusal: None,
                last_fsync: None,
                fsyncs: Default::default(),
                flushes_sent: std::collections::VecDeque::new(),
                last_grant: None,
            }),
            changed: Condvar::new(),
            reconnect: Notify::new(),
            image,
            coordinator,
            runtime: runtime.clone(),
            tunnels,
            peer,
            cfg,
        });
        runtime.spawn(link::connect_loop(shared.clone()));
        Ok(ReplicatingSink { shared })
    }

    pub fn status(&self) -> SinkStatus {
        let st = self.shared.lock();
        SinkStatus {
            standing: st.primary.standing(),
            connected: st.link.is_some(),
            synced: st.primary.session_synced(),
            last_seq: st.primary.last_seq(),
            durable_seq: st.primary.durable_seq(),
            fenced: st.primary.is_fenced(),
            last_error: st.last_error.clone(),
            last_refusal: st.last_refusal.clone(),
            inflight_writes: st.primary.inflight_writes() as u64,
            inflight_bytes: st.primary.inflight_bytes(),
            resync: st.resync.as_ref().map(|r| {
                (
                    r.done_blocks(),
                    self.shared.cfg.primary.identity.total_blocks(),
                )
            }),
            last_fsync: st.last_fsync,
            fsyncs: st.fsyncs.snapshot(),
            last_grant: st.last_grant,
        }
    }

    /// Blocks until `pred` holds for the status or `timeout` passes; the
    /// last status either way.
    pub fn wait_status(&self, timeout: Duration, pred: impl Fn(&SinkStatus) -> bool) -> SinkStatus {
        let end = Instant::now() + timeout;
        loop {
            let s = self.status();
            let now = Instant::now();
            if pred(&s) || now >= end {
                return s;
            }
            let st = self.shared.lock();
            let _ = self
                .shared
                .changed
                .wait_timeout(st, (end - now).min(MAX_WAIT));
        }
    }

    /// Sends a keepalive Flush whenever none was sent for `every`, so an
    /// idle primary keeps the standby's lease fresh. Stops with the sink.
    pub fn start_keepalive(&self, every: Duration) {
        let weak = Arc::downgrade(&self.shared);
        self.shared.runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(sh) = weak.upgrade() else { return };
                let mut st = sh.lock();
                if st.closed {
                    return;
                }
                let recent = st
                    .flushes_sent
                    .back()
                    .is_some_and(|(_, at)| at.elapsed() < every);
                if st.link.is_none() || recent {
                    continue;
                }
                if let Some(m) = st.primary.keepalive() {
                    sh.send(&mut st, &m);
                }
            }
        });
    }

    /// Fences the volume on this host (its lease is gone): the stream is
    /// closed, and every write and fsync, also one waiting now for the
    /// standby, fails with EIO, so a writer blocked in an fsync returns
    /// (and can be killed) instead of waiting for a standby that may
    /// already be the primary.
    pub fn fence(&self) {
        let mut st = self.shared.lock();
        st.fenced_here = true;
        st.closed = true;
        self.shared.drop_link(&mut st, "fenced: no lease".into());
        self.shared.changed.notify_all();
    }

    /// Stops replicating: the stream is closed and no new one opened.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.drop_link(&mut st, "the sink was closed".into());
        self.shared.changed.notify_all();
    }
}

impl Drop for ReplicatingSink {
    fn drop(&mut self) {
        self.close();
    }
}

impl WriteSink for ReplicatingSink {
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock();
        loop {
            if st.fenced_here {
                return Err(fenced_error());
            }
            let now = Instant::now();
            match st
                .primary
                .write(offset, data.len() as u64, now)
                .map_err(to_io)?
            {
                crate::replication::WriteTicket::Send { epoch, seq } => {
                    let m = Message::Write {
                        epoch,
                        seq,
                        offset,
                        data: data.to_vec(),
                    };
                    sh.send(&mut st, &m);
                    sh.drive(&mut st);
                    return Ok(());
                }
                crate::replication::WriteTicket::LocalOnly { .. } => {
                    sh.drive(&mut st);
                    return Ok(());
                }
                crate::replication::WriteTicket::Wait => {
                    sh.drive(&mut st);
                    st = sh.wait(st);
                }
            }
        }
    }

    fn fsync(&self) -> io::Result<()> {
        let sh = &self.shared;
        let mut st = sh.lock();
        if st.fenced_here {
            return Err(fenced_error());
        }
        let started = Instant::now();
        let ticket = st.primary.fsync(started).map_err(to_io)?;
        sh.drive(&mut st);
        loop {
            match st.primary.fsync_state(ticket).map_err(to_io)? {
                FsyncState::Durable => {
                    let took = started.elapsed();
                    st.last_fsync = Some(took);
                    st.fsyncs.observe(took);
                    return Ok(());
                }
                FsyncState::Waiting => {
                    st = sh.wait(st);
                    if st.fenced_here {
                        return Err(fenced_error());
                    }
                    sh.drive(&mut st);
                }
            }
        }
    }
}

fn fenced_error() -> io::Error {
    io::Error::from_raw_os_error(5) // EIO
}

fn to_io(e: crate::replication::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sleeps until something changes or the primary's next deadline.
    fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let now = Instant::now();
        let timeout = st
            .primary
            .next_deadline()
            .map_or(MAX_WAIT, |d| d.saturating_duration_since(now))
            .min(MAX_WAIT);
        match self.changed.wait_timeout(st, timeout) {
            Ok((st, _)) => st,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    fn send(&self, st: &mut State, m: &Message) {
        if let Message::Flush { seq, .. } = m {
            if st.link.is_some() {
                st.flushes_sent.push_back((*seq, LeaseInstant::now()));
                // Bounded: a standby that never answers is dropped anyway.
                if st.flushes_sent.len() > 4096 {
                    st.flushes_sent.pop_front();
                }
            }
        }
        match m.to_frame() {
            Ok(frame) => {
                // A closed channel means the link is going down; its end
                // drops the session, which marks the write dirty.
                if let Some(link) = &st.link {
                    let _ = link.tx.send(frame);
                }
            }
            Err(e) => self.drop_link(st, format!("cannot encode a frame: {e}")),
        }
    }

    fn drop_link(&self, st: &mut State, reason: String) {
        if let Some(link) = st.link.take() {
            link.reader.abort();
            info!(peer = %self.peer.node, "replication session dropped: {reason}");
        }
        st.primary.on_link_down();
        st.resync = None;
        st.flushes_sent.clear();
        st.last_error = Some(reason);
        self.reconnect.notify_one();
    }

    /// Runs the resync and the primary's time-driven decisions and carries
    /// out what it asks. Call after every event, under the lock.
    fn drive(self: &Arc<Self>, st: &mut State) {
        let now = Instant::now();
        let pumped = match st.resync.as_mut() {
            Some(rs) if !st.primary.is_fenced() && st.primary.session_synced() == Some(false) => {
                Some(rs.pump(&mut st.primary, &self.image, now))
            }
            _ => None,
        };
        match pumped {
            Some(Ok(out)) => {
                for m in out {
                    self.send(st, &m);
                }
            }
            Some(Err(e)) => self.drop_link(st, format!("resync: {e}")),
            None => {}
        }
        for action in st.primary.poll(now) {
            match action {
                Action::Send(m) => self.send(st, &m),
                Action::AskCoordinatorToOutdateStandby { epoch, request } => {
                    if !st.asking {
                        st.asking = true;
                        self.ask_coordinator(epoch, request);
                    }
                }
                Action::ReportStandbyUpToDate { epoch } => {
                    let sh = self.clone();
                    self.runtime.spawn_blocking(move || {
                        let group = &sh.cfg.primary.identity.group;
                        if let Err(e) = sh.coordinator.standby_up_to_date(group, epoch) {
                            warn!("cannot report the standby UpToDate: {e}");
                        }
                    });
                }
                Action::DropSession => {
                    self.drop_link(st, "the standby was outdated; it will resync".into());
                }
            }
        }
    }

    fn ask_coordinator(self: &Arc<Self>, epoch: u64, request: u64) {
        let sh = self.clone();
        self.runtime.spawn_blocking(move || {
            let group = sh.cfg.primary.identity.group.clone();
            warn!(%group, epoch, request, "standby not answering: asking the coordinator to outdate it");
            let answer = sh.coordinator.outdate_standby(&group, epoch, request);
            let mut st = sh.lock();
            st.asking = false;
            match answer {
                Ok(OutdateAnswer::Outdated) => {
                    info!(%group, epoch, "standby outdated: going on alone");
                    st.primary.on_coordinator_outdated(request);
                }
                Ok(OutdateAnswer::NewerEpoch(newer)) => {
                    let e = st.primary.on_coordinator_refused(newer);
                    st.last_error = Some(e.to_string());
                }
                Err(e) => st.last_error = Some(e.to_string()),
            }
            sh.drive(&mut st);
            sh.changed.notify_all();
        });
    }
}
