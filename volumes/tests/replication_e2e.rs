//! A primary and a standby in one process, over in-memory queues of
//! encoded frames, with real image files. The checker: after every
//! acknowledged fsync, what the standby would still have after a crash
//! (its image with every write since its last fdatasync undone) holds
//! every acknowledged write. The negative control runs the same checker
//! against a driver that acknowledges fsyncs without waiting for the
//! standby, and must see losses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use mesh_volumes::replication::image::{read_full, Image};
use mesh_volumes::replication::wire::{decode_frame, Decoded};
use mesh_volumes::replication::{
    Action, Error, FsyncState, Message, Primary, PrimaryConfig, RefuseReason, SourceResync,
    Standby, Standing, VolumeIdentity, WriteTicket,
};

const SECTOR: u64 = 512;
const SIZE: u64 = 1 << 20;

/// A real file that forgets, on `crash`, every write since its last
/// fdatasync: what a power cut does to a page cache.
struct Crashable {
    file: File,
    undo: Vec<(u64, Vec<u8>)>,
}

impl Crashable {
    fn crash(&mut self) {
        for (offset, old) in self.undo.drain(..).rev() {
            self.file.write_all_at(&old, offset).unwrap();
        }
    }

    /// The content a crash now would leave, without crashing.
    fn durable_view(&self) -> Vec<u8> {
        let mut v = vec![0u8; SIZE as usize];
        read_full(&self.file, &mut v, 0).unwrap();
        for (offset, old) in self.undo.iter().rev() {
            let o = *offset as usize;
            v[o..o + old.len()].copy_from_slice(old);
        }
        v
    }
}

impl Image for Crashable {
    fn pwrite_all(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut old = vec![0u8; buf.len()];
        read_full(&self.file, &mut old, offset)?;
        self.undo.push((offset, old));
        self.file.write_all_at(buf, offset)
    }
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.undo.clear();
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.undo.clear(); // only used on a fresh image, before any data
        self.file.set_len(len)
    }
}

struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn identity() -> VolumeIdentity {
    VolumeIdentity {
        volume_id: "memory-db".into(),
        group: "memory".into(),
        size_bytes: SIZE,
        block_size: 4096,
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    p: Primary,
    pimg: File,
    sb: Standby<Crashable>,
    to_sb: VecDeque<Vec<u8>>,
    to_p: VecDeque<Vec<u8>>,
    resync: Option<SourceResync>,
    coordinator_asks: usize,
    last_request: u64,
    refusals: Vec<Error>,
    now: Instant,
}

impl Rig {
    fn new(epoch: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let f = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.path().join(name))
                .unwrap();
            f.set_len(SIZE).unwrap();
            f
        };
        let pimg = open("primary.img");
        let simg = Crashable {
            file: open("standby.img"),
            undo: Vec::new(),
        };
        let sb =
            Standby::with_image(simg, &dir.path().join("standby.state"), None, identity()).unwrap();
        let cfg = PrimaryConfig {
            identity: identity(),
            max_inflight_bytes: 64 << 10,
            max_inflight_writes: 32,
            fsync_bound: Duration::from_secs(3),
            coordinator_retry: Duration::from_secs(1),
        };
        Self {
            _dir: dir,
            // A brand-new standby is not UpToDate: the primary may start alone.
            p: Primary::new(cfg, epoch, 1, true).unwrap(),
            pimg,
            sb,
            to_sb: VecDeque::new(),
            to_p: VecDeque::new(),
            resync: None,
            coordinator_asks: 0,
            last_request: 0,
            refusals: Vec::new(),
            now: Instant::now(),
        }
    }

    fn send(&mut self, m: Message) {
        self.to_sb.push_back(m.to_frame().unwrap());
    }

    fn decode(frame: &[u8]) -> Message {
        match decode_frame(frame).unwrap() {
            Decoded::Frame { message, consumed } => {
                assert_eq!(consumed, frame.len());
                message
            }
            other => panic!("{other:?}"),
        }
    }

    /// Delivers up to `n` frames to the standby, then every reply.
    fn deliver(&mut self, n: usize) {
        for _ in 0..n {
            let Some(frame) = self.to_sb.pop_front() else {
                break;
            };
            for r in self.sb.handle(Self::decode(&frame)) {
                self.to_p.push_back(r.to_frame().unwrap());
            }
        }
        while let Some(frame) = self.to_p.pop_front() {
            match Self::decode(&frame) {
                Message::HelloAck {
                    epoch, fresh_image, ..
                } => {
                    self.p.on_hello_ack(epoch).unwrap();
                    self.resync = Some(SourceResync::new(identity(), fresh_image));
                }
                Message::BlockSums { start, sums } => self
                    .resync
                    .as_mut()
                    .unwrap()
                    .on_sums(&self.pimg, start, &sums)
                    .unwrap(),
                Message::Ack { seq, flushed } => self.p.on_ack(seq, flushed).unwrap(),
                Message::Refused { reason } => {
                    let e = self.p.on_refused(reason);
                    self.refusals.push(e);
                }
                other => panic!("unexpected at the primary: {other:?}"),
            }
        }
        self.react();
    }

    /// What the primary wants done after any event.
    fn react(&mut self) {
        if let Some(rs) = self.resync.as_mut() {
            if !self.p.is_fenced() && self.p.session_synced() == Some(false) {
                let out = rs.pump(&mut self.p, &self.pimg, self.now).unwrap();
                for m in out {
                    self.send(m);
                }
            }
        }
        for a in self.p.poll(self.now) {
            match a {
                Action::Send(m) => self.send(m),
                Action::AskCoordinatorToOutdateStandby { request, .. } => {
                    self.coordinator_asks += 1;
                    self.last_request = request;
                }
                Action::ReportStandbyUpToDate { .. } => {}
                Action::DropSession => self.link_down(),
            }
        }
    }

    fn link_down(&mut self) {
        self.to_sb.clear();
        self.to_p.clear();
        self.p.on_link_down();
        self.sb.on_link_down();
        self.resync = None;
    }

    fn connect(&mut self) {
        let hello = self.p.open_session().unwrap();
        self.send(hello);
        self.sync();
    }

    fn sync(&mut self) {
        for _ in 0..10_000 {
            self.deliver(usize::MAX);
            if self.p.session_synced() == Some(true) && self.to_sb.is_empty() {
                return;
            }
        }
        panic!("session did not sync");
    }

    /// Writes locally and to the standby, waiting out backpressure by
    /// delivering frames (as acks would arrive).
    fn write(&mut self, offset: u64, data: &[u8]) -> u64 {
        loop {
            match self.p.write(offset, data.len() as u64, self.now).unwrap() {
                WriteTicket::Send { epoch, seq } => {
                    self.pimg.write_all_at(data, offset).unwrap();
                    self.send(Message::Write {
                        epoch,
                        seq,
                        offset,
                        data: data.to_vec(),
                    });
                    self.react();
                    return seq;
                }
                WriteTicket::LocalOnly { seq } => {
                    self.pimg.write_all_at(data, offset).unwrap();
                    return seq;
                }
                WriteTicket::Wait => {
                    self.react();
                    assert!(!self.to_sb.is_empty(), "waiting with nothing in flight");
                    self.deliver(1);
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AckMode {
    /// Protocol C: the fsync returns once the standby flushed.
    Synchronous,
    /// Negative control: the fsync returns at once.
    Asynchronous,
}

/// The model of what was acknowledged.
struct Model {
    current: Vec<u8>,
    /// Per sector, the seq of the last write that touched it.
    last_seq: Vec<u64>,
    acked: Vec<u8>,
    acked_barrier: u64,
}

impl Model {
    fn new() -> Self {
        Self {
            current: vec![0; SIZE as usize],
            last_seq: vec![0; (SIZE / SECTOR) as usize],
            acked: vec![0; SIZE as usize],
            acked_barrier: 0,
        }
    }

    fn write(&mut self, seq: u64, offset: u64, data: &[u8]) {
        let o = offset as usize;
        self.current[o..o + data.len()].copy_from_slice(data);
        for s in offset / SECTOR..(offset + data.len() as u64).div_ceil(SECTOR) {
            self.last_seq[s as usize] = seq;
        }
    }

    fn ack(&mut self, barrier: u64) {
        self.acked.clone_from(&self.current);
        self.acked_barrier = barrier;
    }

    /// Sectors whose acknowledged content the standby lost. A sector
    /// written again after the acknowledgement may hold either version.
    fn lost_sectors(&self, standby: &[u8]) -> usize {
        (0..(SIZE / SECTOR) as usize)
            .filter(|&s| self.last_seq[s] <= self.acked_barrier)
            .filter(|&s| {
                let r = s * SECTOR as usize..(s + 1) * SECTOR as usize;
                standby[r.clone()] != self.acked[r]
            })
            .count()
    }
}

/// `n` random writes with an fsync every few, delivering frames lazily
/// and at random. Returns the sectors lost at the worst acknowledged
/// fsync and after a final crash of the standby.
fn run(mode: AckMode, seed: u64, n: usize) -> (usize, usize) {
    let mut rng = Rng(seed | 1);
    let mut rig = Rig::new(1);
    rig.connect();
    let mut model = Model::new();
    let mut worst = 0;
    for i in 0..n {
        let sectors = 1 + rng.below(16);
        let offset = rng.below(SIZE / SECTOR - sectors) * SECTOR;
        let mut data = vec![0u8; (sectors * SECTOR) as usize];
        data.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let seq = rig.write(offset, &data);
        model.write(seq, offset, &data);
        // The network delivers at its own pace.
        if rng.below(3) == 0 {
            let k = rng.below(4) as usize;
            rig.deliver(k);
        }
        if i % 8 == 7 || i == n - 1 {
            let t = rig.p.fsync(rig.now).unwrap();
            rig.react();
            if mode == AckMode::Synchronous {
                while rig.p.fsync_state(t).unwrap() == FsyncState::Waiting {
                    assert!(!rig.to_sb.is_empty(), "fsync waits with nothing in flight");
                    rig.deliver(1 + rng.below(3) as usize);
                }
            }
            model.ack(t.barrier);
            let view = rig.sb.image().durable_view();
            worst = worst.max(model.lost_sectors(&view));
        }
    }
    // The standby's host crashes: frames in flight and its page cache go.
    rig.to_sb.clear();
    rig.sb.image_mut().crash();
    let mut after = vec![0u8; SIZE as usize];
    read_full(rig.sb.image(), &mut after, 0).unwrap();
    (worst, model.lost_sectors(&after))
}

#[test]
fn every_acknowledged_fsync_survives_a_standby_crash() {
    for seed in [1, 2, 3, 0xDEAD_BEEF, 42] {
        let (worst, after_crash) = run(AckMode::Synchronous, seed, 400);
        assert_eq!(
            worst, 0,
            "seed {seed}: an acknowledged write was not durable"
        );
        assert_eq!(after_crash, 0, "seed {seed}: lost after the crash");
    }
}

#[test]
fn negative_control_asynchronous_acks_lose_acknowledged_writes() {
    // The same checker must see the loss, or it proves nothing.
    for seed in [1, 2, 3, 0xDEAD_BEEF, 42] {
        let (worst, after_crash) = run(AckMode::Asynchronous, seed, 400);
        eprintln!("seed {seed}: {worst} acknowledged sectors not durable at the worst ack, {after_crash} lost after the crash");
        assert!(worst > 0, "seed {seed}: the checker saw no loss");
        assert!(after_crash > 0, "seed {seed}: the crash lost nothing");
    }
}

#[test]
fn an_old_epoch_primary_gets_no_write_acknowledged() {
    let mut rig = Rig::new(1);
    rig.connect();
    rig.write(0, b"before the promotion");
    let t = rig.p.fsync(rig.now).unwrap();
    rig.react();
    while rig.p.fsync_state(t).unwrap() == FsyncState::Waiting {
        rig.deliver(1);
    }
    // The coordinator promotes a new primary at epoch 2 and tells the
    // standby; the old primary, not yet aware, writes on.
    rig.sb.fence(2).unwrap();
    rig.write(0, b"LATE WRITE, OLD EPOCH");
    let t = rig.p.fsync(rig.now).unwrap();
    rig.react();
    rig.deliver(usize::MAX);
    // The write and the flush behind it are both refused as stale.
    assert!(!rig.refusals.is_empty());
    for e in &rig.refusals {
        assert!(
            matches!(e, Error::Fenced { ours: 1, newer: 2 }),
            "{:?}",
            rig.refusals
        );
    }
    assert!(matches!(rig.p.fsync_state(t), Err(Error::Fenced { .. })));
    assert!(rig.p.write(0, 1, rig.now).is_err());
    let mut buf = [0u8; 20];
    read_full(rig.sb.image(), &mut buf, 0).unwrap();
    assert_eq!(&buf, b"before the promotion");
    // Reconnecting does not help it: it cannot open a session, and a Hello
    // of its epoch is refused.
    assert!(matches!(rig.p.open_session(), Err(Error::Fenced { .. })));
    let hello = Message::Hello {
        volume_id: identity().volume_id,
        group: identity().group,
        size_bytes: SIZE,
        epoch: 1,
        block_size: 4096,
        next_seq: rig.p.last_seq() + 1,
    };
    assert!(matches!(
        rig.sb.handle(hello).as_slice(),
        [Message::Refused {
            reason: RefuseReason::StaleEpoch { ours: 2, theirs: 1 }
        }]
    ));
}

#[test]
fn an_unreachable_standby_is_outdated_only_through_the_coordinator_then_resynced() {
    let mut rig = Rig::new(1);
    rig.connect();
    assert_eq!(rig.p.standing(), Standing::InSync);
    let mut model = Model::new();
    let mut rng = Rng(7);
    for _ in 0..20 {
        let off = rng.below(SIZE / SECTOR - 8) * SECTOR;
        let data = vec![rng.next_u64() as u8; 4096];
        let seq = rig.write(off, &data);
        model.write(seq, off, &data);
    }
    // The link is cut: the fsync waits.
    rig.link_down();
    let t = rig.p.fsync(rig.now).unwrap();
    rig.react();
    assert_eq!(rig.p.fsync_state(t).unwrap(), FsyncState::Waiting);
    let start = rig.now;
    // Past the bound it asks the coordinator; the coordinator is down too:
    // it keeps asking and never acknowledges.
    while rig.now < start + Duration::from_secs(20) {
        rig.now = rig.p.next_deadline().unwrap();
        rig.react();
        assert_eq!(rig.p.fsync_state(t).unwrap(), FsyncState::Waiting);
    }
    assert!(rig.coordinator_asks >= 15, "asked {}", rig.coordinator_asks);
    // The coordinator persists the standby Outdated: the fsync returns and
    // the primary goes on alone, tracking dirty blocks.
    let request = rig.last_request;
    rig.p.on_coordinator_outdated(request);
    assert_eq!(rig.p.fsync_state(t).unwrap(), FsyncState::Durable);
    for _ in 0..30 {
        let off = rng.below(SIZE / SECTOR - 8) * SECTOR;
        let data = vec![rng.next_u64() as u8; 2048];
        let seq = rig.write(off, &data);
        model.write(seq, off, &data);
    }
    assert!(!rig.p.dirty_blocks().is_empty());
    // The standby comes back: a checksum resync makes it identical.
    rig.connect();
    assert_eq!(rig.p.standing(), Standing::InSync);
    assert!(rig.p.dirty_blocks().is_empty());
    assert!(rig.sb.meta().promotable());
    let mut standby = vec![0u8; SIZE as usize];
    read_full(rig.sb.image(), &mut standby, 0).unwrap();
    assert!(
        standby == model.current,
        "the images differ after the resync"
    );
}

#[test]
fn writes_made_while_the_standby_rejoins_reach_it_in_order() {
    let mut rig = Rig::new(1);
    rig.connect();
    let mut rng = Rng(11);
    let mut write_some = |rig: &mut Rig, n: usize| {
        for _ in 0..n {
            let off = rng.below(SIZE / SECTOR - 8) * SECTOR;
            let data = vec![rng.next_u64() as u8; 3000];
            rig.write(off, &data);
        }
    };
    write_some(&mut rig, 10);
    rig.link_down();
    write_some(&mut rig, 10); // local only
    let hello = rig.p.open_session().unwrap();
    rig.send(hello);
    write_some(&mut rig, 10); // behind the Hello, before its ack
    rig.sync();
    write_some(&mut rig, 10);
    let t = rig.p.fsync(rig.now).unwrap();
    rig.react();
    while rig.p.fsync_state(t).unwrap() == FsyncState::Waiting {
        rig.deliver(1);
    }
    assert!(rig.refusals.is_empty(), "{:?}", rig.refusals);
    let mut primary = vec![0u8; SIZE as usize];
    read_full(&rig.pimg, &mut primary, 0).unwrap();
    let standby = rig.sb.image().durable_view();
    assert!(primary == standby, "the images differ");
}
