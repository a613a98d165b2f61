//! How long resync takes for the sizes issue #11 names, in one process
//! without a network (so a lower bound for the real path). Ignored by
//! default: it writes 2 GiB of temp files. Run it with
//! `cargo test -p mesh-volumes --release --test resync_speed -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use mesh_volumes::replication::{
    Action, Message, Primary, PrimaryConfig, SourceResync, Standby, VolumeIdentity,
};

const GIB: u64 = 1 << 30;
const BS: u32 = 64 << 10;

fn identity() -> VolumeIdentity {
    VolumeIdentity {
        volume_id: "speed".into(),
        group: "g".into(),
        size_bytes: GIB,
        block_size: BS,
    }
}

fn primary() -> Primary {
    Primary::new(
        PrimaryConfig {
            identity: identity(),
            max_inflight_bytes: 8 << 20,
            max_inflight_writes: 256,
            fsync_bound: Duration::from_secs(30),
            coordinator_retry: Duration::from_secs(1),
        },
        1,
        1,
        true,
    )
    .unwrap()
}

/// Hello to synced ResyncDone ack, through encoded frames. Returns the
/// blocks sent.
fn resync(p: &mut Primary, src: &File, sb: &mut Standby<File>) -> u64 {
    let now = Instant::now();
    let roundtrip = |m: Message| {
        let f = m.to_frame().unwrap();
        match mesh_volumes::replication::wire::decode_frame(&f).unwrap() {
            mesh_volumes::replication::wire::Decoded::Frame { message, .. } => message,
            other => panic!("{other:?}"),
        }
    };
    let mut to_sb = VecDeque::from([p.open_session().unwrap()]);
    let mut to_p = VecDeque::new();
    let mut rs: Option<SourceResync> = None;
    loop {
        while let Some(m) = to_sb.pop_front() {
            to_p.extend(sb.handle(roundtrip(m)));
        }
        while let Some(m) = to_p.pop_front() {
            match roundtrip(m) {
                Message::HelloAck {
                    epoch, fresh_image, ..
                } => {
                    p.on_hello_ack(epoch).unwrap();
                    rs = Some(SourceResync::new(identity(), fresh_image));
                }
                Message::BlockSums { start, sums } => {
                    rs.as_mut().unwrap().on_sums(src, start, &sums).unwrap()
                }
                Message::Ack { seq, flushed } => p.on_ack(seq, flushed).unwrap(),
                other => panic!("{other:?}"),
            }
        }
        if let Some(r) = rs.as_mut() {
            to_sb.extend(r.pump(p, src, now).unwrap());
        }
        for a in p.poll(now) {
            if let Action::Send(m) = a {
                to_sb.push_back(m);
            }
        }
        if p.session_synced() == Some(true) && to_sb.is_empty() {
            return rs.unwrap().blocks_sent;
        }
    }
}

#[test]
#[ignore = "writes 2 GiB; run by hand in release mode"]
fn one_gib_full_sync_and_ten_percent_resync() {
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("primary.img");
    let src = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&src_path)
        .unwrap();
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut chunk = vec![0u8; 8 << 20];
    for off in (0..GIB).step_by(chunk.len()) {
        for b in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        src.write_all_at(&chunk, off).unwrap();
    }
    src.sync_all().unwrap();
    let dst = dir.path().join("standby.img");
    let state = dir.path().join("standby.state");

    let mut sb = Standby::open(&dst, &state, identity()).unwrap();
    let t = Instant::now();
    let sent = resync(&mut primary(), &src, &mut sb);
    let full = t.elapsed();
    eprintln!("full sync of 1 GiB: {full:?} ({sent} blocks)");
    drop(sb);

    // 10% of the standby's blocks diverge.
    {
        let f = File::options().write(true).open(&dst).unwrap();
        for i in (0..GIB / u64::from(BS)).filter(|i| i % 10 == 0) {
            f.write_all_at(b"diverged", i * u64::from(BS)).unwrap();
        }
        f.sync_all().unwrap();
    }
    let mut sb = Standby::open(&dst, &state, identity()).unwrap();
    let t = Instant::now();
    let sent = resync(&mut primary(), &src, &mut sb);
    let partial = t.elapsed();
    eprintln!("checksum resync of 1 GiB, 10% changed: {partial:?} ({sent} blocks)");
    assert_eq!(sent, GIB / u64::from(BS) / 10 + 1);
    assert!(full < Duration::from_secs(30), "full sync took {full:?}");
    assert!(partial < Duration::from_secs(15), "resync took {partial:?}");
}
