use proptest::prelude::*;

use super::*;

fn identity() -> VolumeIdentity {
    VolumeIdentity {
        volume_id: "memory-db".into(),
        group: "memory".into(),
        size_bytes: 1 << 30,
        block_size: 64 << 10,
    }
}

#[test]
fn store_then_load_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.state");
    for disk in [
        DiskState::UpToDate,
        DiskState::Outdated,
        DiskState::Inconsistent {
            done_blocks: 5,
            total_blocks: 16384,
        },
    ] {
        let meta = VolumeMeta {
            identity: identity(),
            disk,
            epoch: 7,
        };
        meta.store(&path).unwrap();
        assert_eq!(VolumeMeta::load(&path).unwrap(), Some(meta));
    }
    assert!(
        !tmp_path(&path).exists(),
        "the temporary file was renamed away"
    );
}

#[test]
fn missing_file_is_unsynced_and_not_promotable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.state");
    assert_eq!(VolumeMeta::load(&path).unwrap(), None);
    let meta = VolumeMeta::load_or_unsynced(&path, identity()).unwrap();
    assert_eq!(
        meta.disk,
        DiskState::Inconsistent {
            done_blocks: 0,
            total_blocks: 16384
        }
    );
    assert_eq!(meta.epoch, 0);
    assert!(!meta.promotable());
}

#[test]
fn only_up_to_date_is_promotable() {
    assert!(DiskState::UpToDate.promotable());
    assert!(!DiskState::Outdated.promotable());
    assert!(!DiskState::Inconsistent {
        done_blocks: 9,
        total_blocks: 10
    }
    .promotable());
}

#[test]
fn every_damaged_byte_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.state");
    let good = VolumeMeta {
        identity: identity(),
        disk: DiskState::UpToDate,
        epoch: 3,
    }
    .encode();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        fs::write(&path, bad).unwrap();
        match VolumeMeta::load(&path) {
            Err(Error::CorruptState { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(!reason.is_empty());
            }
            other => panic!("byte {i}: {other:?}"),
        }
    }
    // Truncated at every length.
    for n in 0..good.len() {
        fs::write(&path, &good[..n]).unwrap();
        assert!(matches!(
            VolumeMeta::load(&path),
            Err(Error::CorruptState { .. })
        ));
    }
    fs::write(&path, vec![0u8; 10_000]).unwrap();
    assert!(matches!(
        VolumeMeta::load(&path),
        Err(Error::CorruptState { .. })
    ));
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = VolumeMeta::decode(&bytes);
    }
}

#[test]
fn invalid_identities_are_refused_naming_the_field() {
    identity().validate().unwrap();
    type Change = fn(&mut VolumeIdentity);
    let cases: [(Change, &str); 5] = [
        (|i| i.volume_id.clear(), "volume_id"),
        (|i| i.group = "g".repeat(300), "group"),
        (|i| i.size_bytes = 0, "size_bytes"),
        (|i| i.block_size = 3000, "block_size"),
        (|i| i.block_size = 2 << 20, "block_size"),
    ];
    for (change, field) in cases {
        let mut id = identity();
        change(&mut id);
        match id.validate() {
            Err(Error::Config(m)) => assert!(m.contains(field), "{m}"),
            other => panic!("{field}: {other:?}"),
        }
    }
}
