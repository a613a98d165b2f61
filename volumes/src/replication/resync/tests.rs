use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::*;
use crate::replication::primary::{Action, PrimaryConfig};
use crate::replication::standby::Standby;
use crate::replication::state::{DiskState, VolumeMeta};
use crate::replication::wire::{decode_frame, Decoded};

const BS: u32 = 64 << 10;
const BLOCKS: u64 = 64; // 4 MiB

fn id() -> VolumeIdentity {
    VolumeIdentity {
        volume_id: "v".into(),
        group: "g".into(),
        // Not a multiple of the block size: the last block is short.
        size_bytes: BLOCKS * u64::from(BS) - 1000,
        block_size: BS,
    }
}

fn primary(outdated: bool) -> Primary {
    Primary::new(
        PrimaryConfig {
            identity: id(),
            max_inflight_bytes: 1 << 20,
            max_inflight_writes: 64,
            fsync_bound: Duration::from_secs(5),
            coordinator_retry: Duration::from_secs(1),
        },
        3,
        1,
        outdated,
    )
    .unwrap()
}

/// Deterministic bytes without a random-number crate.
fn fill(seed: u64, buf: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

fn whole_file_sum(f: &File) -> BlockSum {
    let mut h = blake3::Hasher::new();
    let len = f.metadata().unwrap().len();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0;
    while off < len {
        let n = f.read_at(&mut buf, off).unwrap();
        assert!(n > 0);
        h.update(&buf[..n]);
        off += n as u64;
    }
    *h.finalize().as_bytes()
}

fn through_wire(m: Message) -> Message {
    match decode_frame(&m.to_frame().unwrap()).unwrap() {
        Decoded::Frame { message, .. } => message,
        other => panic!("{other:?}"),
    }
}

/// Runs a session from Hello to the synced ResyncDone ack, over in-memory
/// queues of encoded frames.
fn resync(p: &mut Primary, src: &File, sb: &mut Standby<File>) -> SourceResync {
    let now = Instant::now();
    let mut to_standby = VecDeque::from([p.open_session().unwrap()]);
    let mut to_primary = VecDeque::new();
    let mut rs: Option<SourceResync> = None;
    for _ in 0..100_000 {
        while let Some(m) = to_standby.pop_front() {
            to_primary.extend(sb.handle(through_wire(m)));
        }
        while let Some(m) = to_primary.pop_front() {
            match through_wire(m) {
                Message::HelloAck {
                    epoch, fresh_image, ..
                } => {
                    p.on_hello_ack(epoch).unwrap();
                    rs = Some(SourceResync::new(id(), fresh_image));
                }
                Message::BlockSums { start, sums } => {
                    rs.as_mut().unwrap().on_sums(src, start, &sums).unwrap()
                }
                Message::Ack { seq, flushed } => p.on_ack(seq, flushed).unwrap(),
                other => panic!("unexpected at the primary: {other:?}"),
            }
        }
        if let Some(r) = rs.as_mut() {
            to_standby.extend(r.pump(p, src, now).unwrap());
        }
        for a in p.poll(now) {
            if let Action::Send(m) = a {
                to_standby.push_back(m);
            }
        }
        if p.session_synced() == Some(true) && to_standby.is_empty() {
            return rs.unwrap();
        }
    }
    panic!("resync did not finish");
}

fn temp_image(dir: &tempfile::TempDir, name: &str) -> File {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join(name))
        .unwrap();
    f.set_len(id().size_bytes).unwrap();
    f
}

#[test]
fn sparse_regions_and_the_short_tail_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let f = temp_image(&dir, "a.img");
    let sums = block_sums(&f, &id(), 0, BLOCKS).unwrap();
    assert_eq!(sums.len() as u64, BLOCKS);
    assert_eq!(sums[0], block_sum(&[0u8; BS as usize]));
    let last = block_len(&id(), BLOCKS - 1) as usize;
    assert_eq!(last, BS as usize - 1000);
    assert_eq!(sums[BLOCKS as usize - 1], block_sum(&vec![0u8; last]));
    // A file shorter than the volume reads as zeros past its end.
    f.set_len(10).unwrap();
    assert_eq!(block_sums(&f, &id(), 0, BLOCKS).unwrap(), sums);
    assert_eq!(block_len(&id(), BLOCKS), 0);
}

#[test]
fn differing_lists_the_changed_and_the_missing() {
    let a = [[1u8; 32], [2; 32], [3; 32]];
    let b = [[1u8; 32], [9; 32]];
    assert_eq!(differing(10, &a, &b), vec![11, 12]);
    assert_eq!(differing(0, &a, &a), Vec::<u64>::new());
}

#[test]
fn checksum_resync_of_ten_percent_changed_makes_the_images_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = temp_image(&dir, "primary.img");
    let mut data = vec![0u8; id().size_bytes as usize];
    fill(1, &mut data);
    // Leave a sparse hole in the middle.
    data[20 * BS as usize..24 * BS as usize].fill(0);
    src.write_all_at(&data, 0).unwrap();
    // The standby had the same image, then 10% of its blocks diverged
    // (writes of an old primary that were never acknowledged).
    let dst_path = dir.path().join("standby.img");
    let state = dir.path().join("standby.state");
    std::fs::write(&dst_path, &data[..]).unwrap();
    VolumeMeta {
        identity: id(),
        disk: DiskState::Outdated,
        epoch: 2,
    }
    .store(&state)
    .unwrap();
    let changed: Vec<u64> = (0..BLOCKS).filter(|i| i % 10 == 3).collect();
    {
        let dst = File::options().write(true).open(&dst_path).unwrap();
        for &i in &changed {
            dst.write_all_at(b"diverged", i * u64::from(BS) + 17)
                .unwrap();
        }
    }
    let mut sb = Standby::open(&dst_path, &state, id()).unwrap();
    assert_ne!(whole_file_sum(&src), whole_file_sum(sb.image()));
    let mut p = primary(true);
    let rs = resync(&mut p, &src, &mut sb);
    assert_eq!(
        rs.blocks_sent,
        changed.len() as u64,
        "only changed blocks travel"
    );
    assert_eq!(whole_file_sum(&src), whole_file_sum(sb.image()));
    let meta = VolumeMeta::load(&state).unwrap().unwrap();
    assert_eq!(meta.disk, DiskState::UpToDate);
    assert_eq!(meta.epoch, 3);
    assert_eq!(p.standing(), crate::replication::Standing::InSync);
}

#[test]
fn full_sync_into_a_fresh_image_skips_zero_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let src = temp_image(&dir, "primary.img");
    // Data in 5 blocks only; the rest of the volume is a hole.
    for i in [0u64, 7, 8, 30, BLOCKS - 1] {
        let mut b = vec![0u8; 1000];
        fill(i + 100, &mut b);
        src.write_all_at(&b, i * u64::from(BS)).unwrap();
    }
    let dst_path = dir.path().join("standby.img");
    // A stale file of the right size but no state file: treated as fresh,
    // so it is reset to zeros before the sync.
    std::fs::write(&dst_path, vec![0xAA; id().size_bytes as usize]).unwrap();
    let state = dir.path().join("standby.state");
    let mut sb = Standby::open(&dst_path, &state, id()).unwrap();
    let mut p = primary(true);
    let rs = resync(&mut p, &src, &mut sb);
    assert_eq!(rs.blocks_sent, 5);
    assert_eq!(rs.done_blocks(), BLOCKS);
    assert_eq!(whole_file_sum(&src), whole_file_sum(sb.image()));
    assert_eq!(sb.meta().disk, DiskState::UpToDate);
}

#[test]
fn a_resync_with_a_small_window_waits_and_still_completes() {
    let dir = tempfile::tempdir().unwrap();
    let src = temp_image(&dir, "primary.img");
    let mut data = vec![0u8; id().size_bytes as usize];
    fill(9, &mut data);
    src.write_all_at(&data, 0).unwrap();
    let dst_path = dir.path().join("standby.img");
    let state = dir.path().join("standby.state");
    let mut sb = Standby::open(&dst_path, &state, id()).unwrap();
    let mut p = Primary::new(
        PrimaryConfig {
            identity: id(),
            max_inflight_bytes: u64::from(BS) * 2,
            max_inflight_writes: 2,
            fsync_bound: Duration::from_secs(5),
            coordinator_retry: Duration::from_secs(1),
        },
        1,
        1,
        true,
    )
    .unwrap();
    resync(&mut p, &src, &mut sb);
    assert_eq!(whole_file_sum(&src), whole_file_sum(sb.image()));
}

#[test]
fn progress_is_persisted_while_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let dst_path = dir.path().join("standby.img");
    let state = dir.path().join("standby.state");
    let mut sb = Standby::open(&dst_path, &state, id()).unwrap();
    let mut p = primary(true);
    sb.handle(p.open_session().unwrap());
    p.on_hello_ack(3).unwrap();
    let m = p.resync_progress(32).unwrap();
    assert!(sb.handle(m).is_empty());
    let meta = VolumeMeta::load(&state).unwrap().unwrap();
    assert_eq!(
        meta.disk,
        DiskState::Inconsistent {
            done_blocks: 32,
            total_blocks: BLOCKS
        }
    );
    assert!(!meta.promotable());
}

#[test]
fn sums_not_asked_for_are_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = temp_image(&dir, "primary.img");
    let mut rs = SourceResync::new(id(), false);
    assert!(rs.on_sums(&src, 5, &[[0; 32]]).is_err());
    assert!(rs.on_sums(&src, 0, &[[0; 32]; 65]).is_err());
    assert!(rs.on_sums(&src, 0, &[]).is_err());
    let mut full = SourceResync::new(id(), true);
    assert!(full.on_sums(&src, 0, &[[0; 32]]).is_err());
}
