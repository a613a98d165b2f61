use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use proptest::prelude::*;

use super::*;

fn id() -> VolumeIdentity {
    VolumeIdentity {
        volume_id: "memory-db".into(),
        group: "memory".into(),
        size_bytes: 256 << 10,
        block_size: 4096,
    }
}

fn hello(id: &VolumeIdentity, epoch: u64) -> Message {
    Message::Hello {
        volume_id: id.volume_id.clone(),
        group: id.group.clone(),
        size_bytes: id.size_bytes,
        epoch,
        block_size: id.block_size,
        next_seq: 1,
    }
}

fn write(epoch: u64, seq: u64, offset: u64, data: &[u8]) -> Message {
    Message::Write {
        epoch,
        seq,
        offset,
        data: data.to_vec(),
    }
}

fn refused(replies: &[Message]) -> &RefuseReason {
    match replies {
        [Message::Refused { reason }] => reason,
        other => panic!("not refused: {other:?}"),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    image: PathBuf,
    state: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        image: dir.path().join("vol.img"),
        state: dir.path().join("vol.state"),
        _dir: dir,
    }
}

#[test]
fn another_groups_or_sizes_primary_is_refused_with_the_reason() {
    let f = fixture();
    let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
    let mut other = id();
    other.group = "analytics".into();
    assert_eq!(
        refused(&sb.handle(hello(&other, 1))),
        &RefuseReason::WrongGroup {
            ours: "memory".into(),
            theirs: "analytics".into()
        }
    );
    let mut other = id();
    other.size_bytes *= 2;
    assert_eq!(
        refused(&sb.handle(hello(&other, 1))),
        &RefuseReason::SizeMismatch {
            ours: 256 << 10,
            theirs: 512 << 10
        }
    );
    let mut other = id();
    other.volume_id = "other".into();
    assert!(matches!(
        refused(&sb.handle(hello(&other, 1))),
        RefuseReason::WrongVolume { .. }
    ));
    let mut other = id();
    other.block_size = 65536;
    assert!(matches!(
        refused(&sb.handle(hello(&other, 1))),
        RefuseReason::BlockSizeMismatch { .. }
    ));
    // Nothing was accepted: no state file was written.
    assert_eq!(VolumeMeta::load(&f.state).unwrap(), None);
}

#[test]
fn an_image_of_another_size_or_volume_does_not_open() {
    let f = fixture();
    Standby::open(&f.image, &f.state, id()).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f.image)
        .unwrap()
        .set_len(4096)
        .unwrap();
    VolumeMeta::unsynced(id()).store(&f.state).unwrap();
    assert!(matches!(
        Standby::open(&f.image, &f.state, id()),
        Err(crate::replication::Error::Refused(
            RefuseReason::SizeMismatch { .. }
        ))
    ));
    let mut other = id();
    other.group = "x".into();
    assert!(matches!(
        Standby::open(&f.image, &f.state, other),
        Err(crate::replication::Error::Refused(
            RefuseReason::WrongGroup { .. }
        ))
    ));
}

#[test]
fn hello_persists_the_epoch_and_inconsistent_before_any_write() {
    let f = fixture();
    let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
    let replies = sb.handle(hello(&id(), 4));
    assert!(matches!(
        replies.as_slice(),
        [Message::HelloAck {
            epoch: 4,
            fresh_image: true,
            ..
        }]
    ));
    let meta = VolumeMeta::load(&f.state).unwrap().unwrap();
    assert_eq!(meta.epoch, 4);
    assert!(matches!(meta.disk, DiskState::Inconsistent { .. }));
    assert!(!meta.promotable());
    assert!(sb.handle(write(4, 1, 0, b"hello")).is_empty());
    assert_eq!(
        sb.handle(Message::ResyncDone { epoch: 4, seq: 2 }),
        vec![Message::Ack {
            seq: 2,
            flushed: true
        }]
    );
    let meta = VolumeMeta::load(&f.state).unwrap().unwrap();
    assert_eq!(meta.disk, DiskState::UpToDate);
    assert!(meta.promotable());
}

#[test]
fn writes_of_an_older_epoch_are_refused_and_not_written() {
    let f = fixture();
    let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
    sb.handle(hello(&id(), 1));
    assert!(sb.handle(write(1, 1, 0, b"old primary")).is_empty());
    // The coordinator promoted someone at epoch 2.
    sb.fence(2).unwrap();
    assert_eq!(
        refused(&sb.handle(write(1, 2, 0, b"LATE WRITE!"))),
        &RefuseReason::StaleEpoch { ours: 2, theirs: 1 }
    );
    let mut buf = [0u8; 11];
    crate::replication::image::read_full(sb.image(), &mut buf, 0).unwrap();
    assert_eq!(&buf, b"old primary");
    // A reconnect of the old primary is refused too, also after a restart.
    assert_eq!(
        refused(&sb.handle(hello(&id(), 1))),
        &RefuseReason::StaleEpoch { ours: 2, theirs: 1 }
    );
    drop(sb);
    let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
    assert_eq!(
        refused(&sb.handle(hello(&id(), 1))),
        &RefuseReason::StaleEpoch { ours: 2, theirs: 1 }
    );
    // The new primary is accepted.
    assert!(matches!(
        sb.handle(hello(&id(), 2)).first(),
        Some(Message::HelloAck { epoch: 2, .. })
    ));
}

#[test]
fn out_of_order_out_of_range_and_sessionless_writes_are_refused() {
    let f = fixture();
    let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
    assert_eq!(
        refused(&sb.handle(write(1, 1, 0, b"x"))),
        &RefuseReason::NoSession
    );
    sb.handle(hello(&id(), 1));
    assert_eq!(
        refused(&sb.handle(write(1, 2, 0, b"x"))),
        &RefuseReason::OutOfOrder {
            expected: 1,
            got: 2
        }
    );
    sb.handle(hello(&id(), 1));
    assert!(matches!(
        refused(&sb.handle(write(1, 1, (256 << 10) - 1, b"xy"))),
        RefuseReason::OutOfRange { .. }
    ));
    sb.handle(hello(&id(), 1));
    assert!(matches!(
        refused(&sb.handle(Message::Ack {
            seq: 1,
            flushed: true
        })),
        RefuseReason::Unexpected { .. }
    ));
}

/// An image that logs every call, to see what came before an ack.
struct Recording {
    file: std::fs::File,
    log: Rc<RefCell<Vec<&'static str>>>,
}

impl Image for Recording {
    fn pwrite_all(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.log.borrow_mut().push("write");
        Image::pwrite_all(&mut self.file, buf, offset)
    }
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Image::pread(&self.file, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.log.borrow_mut().push("sync");
        Image::sync_data(&mut self.file)
    }
    fn size(&self) -> io::Result<u64> {
        Image::size(&self.file)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        Image::set_len(&mut self.file, len)
    }
}

#[test]
fn a_flushed_ack_comes_only_after_fdatasync() {
    let f = fixture();
    let file = tempfile::tempfile().unwrap();
    file.set_len(id().size_bytes).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut sb = Standby::with_image(
        Recording {
            file,
            log: log.clone(),
        },
        &f.state,
        None,
        id(),
    )
    .unwrap();
    sb.handle(hello(&id(), 1));
    sb.handle(write(1, 1, 0, b"a"));
    sb.handle(write(1, 2, 4096, b"b"));
    assert_eq!(*log.borrow(), vec!["write", "write"]);
    // A flush beyond what was applied is refused, not acked.
    assert!(matches!(
        refused(&sb.handle(Message::Flush { epoch: 1, seq: 3 })),
        RefuseReason::OutOfOrder { .. }
    ));
    sb.handle(hello(&id(), 1));
    sb.handle(write(1, 1, 0, b"a"));
    log.borrow_mut().clear();
    let replies = sb.handle(Message::Flush { epoch: 1, seq: 1 });
    assert_eq!(
        replies,
        vec![Message::Ack {
            seq: 1,
            flushed: true
        }]
    );
    assert_eq!(*log.borrow(), vec!["sync"]);
}

#[test]
fn a_failing_fdatasync_is_refused_never_acked() {
    struct FailingSync(std::fs::File);
    impl Image for FailingSync {
        fn pwrite_all(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
            Image::pwrite_all(&mut self.0, buf, offset)
        }
        fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            Image::pread(&self.0, buf, offset)
        }
        fn sync_data(&mut self) -> io::Result<()> {
            Err(io::Error::other("disk on fire"))
        }
        fn size(&self) -> io::Result<u64> {
            Image::size(&self.0)
        }
        fn set_len(&mut self, len: u64) -> io::Result<()> {
            Image::set_len(&mut self.0, len)
        }
    }
    let f = fixture();
    let file = tempfile::tempfile().unwrap();
    file.set_len(id().size_bytes).unwrap();
    let mut sb = Standby::with_image(FailingSync(file), &f.state, None, id()).unwrap();
    sb.handle(hello(&id(), 1));
    sb.handle(write(1, 1, 0, b"a"));
    assert!(matches!(
        refused(&sb.handle(Message::Flush { epoch: 1, seq: 1 })),
        RefuseReason::Io { detail } if detail.contains("disk on fire")
    ));
}

fn any_message() -> impl Strategy<Value = Message> {
    let seq = prop_oneof![0u64..8, any::<u64>()];
    let epoch = prop_oneof![0u64..4, any::<u64>()];
    let offset = prop_oneof![0u64..(300 << 10), any::<u64>()];
    let data = proptest::collection::vec(any::<u8>(), 0..5000);
    prop_oneof![
        (epoch.clone(), seq.clone()).prop_map(|(e, n)| Message::Hello {
            volume_id: id().volume_id,
            group: id().group,
            size_bytes: id().size_bytes,
            epoch: e,
            block_size: id().block_size,
            next_seq: n,
        }),
        (epoch.clone(), seq.clone(), offset.clone(), data.clone()).prop_map(|(e, s, o, d)| {
            Message::Write {
                epoch: e,
                seq: s,
                offset: o,
                data: d,
            }
        }),
        (epoch.clone(), seq.clone(), offset, data).prop_map(|(e, s, i, d)| Message::Block {
            epoch: e,
            seq: s,
            index: i / 4096,
            data: d,
        }),
        (epoch.clone(), seq.clone()).prop_map(|(e, s)| Message::Flush { epoch: e, seq: s }),
        (epoch.clone(), seq.clone(), any::<u64>()).prop_map(|(e, s, d)| {
            Message::ResyncProgress {
                epoch: e,
                seq: s,
                done_blocks: d,
            }
        }),
        (epoch, seq.clone()).prop_map(|(e, s)| Message::ResyncDone { epoch: e, seq: s }),
        seq.prop_map(|s| Message::Ack {
            seq: s,
            flushed: true
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any sequence of messages, sensible or not, gets replies or a
    /// refusal, never a panic; and the persisted epoch never goes down.
    #[test]
    fn any_message_sequence_never_panics(msgs in proptest::collection::vec(any_message(), 1..40)) {
        let f = fixture();
        let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
        let mut epoch = 0;
        for m in msgs {
            let _ = sb.handle(m);
            prop_assert!(sb.meta().epoch >= epoch);
            epoch = sb.meta().epoch;
        }
    }
}

#[test]
fn a_hello_with_an_impossible_sequence_start_is_refused() {
    let f = fixture();
    let mut sb = Standby::open(&f.image, &f.state, id()).unwrap();
    for n in [0, u64::MAX] {
        let Message::Hello {
            volume_id,
            group,
            size_bytes,
            epoch,
            block_size,
            ..
        } = hello(&id(), 1)
        else {
            panic!()
        };
        let m = Message::Hello {
            volume_id,
            group,
            size_bytes,
            epoch,
            block_size,
            next_seq: n,
        };
        assert!(matches!(
            refused(&sb.handle(m)),
            RefuseReason::OutOfOrder { .. }
        ));
    }
}
