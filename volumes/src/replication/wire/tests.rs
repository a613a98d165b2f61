use proptest::prelude::*;

use super::*;
use crate::replication::state::DiskState;

fn roundtrip(m: &Message) {
    let frame = m.to_frame().unwrap();
    match decode_frame(&frame).unwrap() {
        Decoded::Frame { message, consumed } => {
            assert_eq!(&message, m);
            assert_eq!(consumed, frame.len());
        }
        other => panic!("incomplete: {other:?}"),
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9-]{0,40}"
}

fn disk_state() -> impl Strategy<Value = DiskState> {
    prop_oneof![
        Just(DiskState::UpToDate),
        Just(DiskState::Outdated),
        (any::<u64>(), any::<u64>()).prop_map(|(d, t)| DiskState::Inconsistent {
            done_blocks: d,
            total_blocks: t
        }),
    ]
}

fn reason() -> impl Strategy<Value = RefuseReason> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(o, t)| RefuseReason::StaleEpoch { ours: o, theirs: t }),
        (name(), name()).prop_map(|(o, t)| RefuseReason::WrongVolume { ours: o, theirs: t }),
        (name(), name()).prop_map(|(o, t)| RefuseReason::WrongGroup { ours: o, theirs: t }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(o, t)| RefuseReason::SizeMismatch { ours: o, theirs: t }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(o, t)| RefuseReason::BlockSizeMismatch { ours: o, theirs: t }),
        (any::<u64>(), any::<u64>()).prop_map(|(e, g)| RefuseReason::OutOfOrder {
            expected: e,
            got: g
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(o, l)| RefuseReason::OutOfRange { offset: o, len: l }),
        Just(RefuseReason::NoSession),
        name().prop_map(|d| RefuseReason::Io { detail: d }),
        name().prop_map(|w| RefuseReason::Unexpected { what: w }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let data = proptest::collection::vec(any::<u8>(), 0..2048);
    prop_oneof![
        (
            name(),
            name(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(|(v, g, s, e, b, n)| Message::Hello {
                volume_id: v,
                group: g,
                size_bytes: s,
                epoch: e,
                block_size: b,
                next_seq: n
            }),
        (any::<u64>(), disk_state(), any::<bool>()).prop_map(|(e, d, f)| Message::HelloAck {
            epoch: e,
            disk: d,
            fresh_image: f
        }),
        (any::<u64>(), any::<u64>(), any::<u64>(), data.clone()).prop_map(|(e, s, o, d)| {
            Message::Write {
                epoch: e,
                seq: s,
                offset: o,
                data: d,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(e, s)| Message::Flush { epoch: e, seq: s }),
        (any::<u64>(), any::<bool>()).prop_map(|(s, f)| Message::Ack { seq: s, flushed: f }),
        reason().prop_map(|r| Message::Refused { reason: r }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<[u8; SUM_LEN]>(), 0..64)
        )
            .prop_map(|(s, sums)| Message::BlockSums { start: s, sums }),
        (any::<u64>(), any::<u64>(), any::<u64>(), data).prop_map(|(e, s, i, d)| Message::Block {
            epoch: e,
            seq: s,
            index: i,
            data: d
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(e, s, d)| {
            Message::ResyncProgress {
                epoch: e,
                seq: s,
                done_blocks: d,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(e, s)| Message::ResyncDone { epoch: e, seq: s }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(m in message()) {
        roundtrip(&m);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode_frame(&bytes);
        let _ = decode_body(&bytes);
    }

    /// Mutating one byte of a valid frame gives an error or some message,
    /// never a panic; cutting it short is always Incomplete, never a
    /// partial message.
    #[test]
    fn damaged_frames_never_panic(m in message(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut frame = m.to_frame().unwrap();
        let cut = pos % frame.len();
        let short = decode_frame(&frame[..cut]);
        prop_assert!(matches!(short, Ok(Decoded::Incomplete { .. })), "cut at {}: {:?}", cut, short);
        frame[cut] = byte;
        let _ = decode_frame(&frame);
    }
}

#[test]
fn length_above_the_bound_is_refused_from_the_prefix_alone() {
    let len = (MAX_FRAME_BODY as u32 + 1).to_le_bytes();
    assert!(matches!(
        frame_len(len),
        Err(WireError::FrameTooLong { .. })
    ));
    // Only the 4-byte prefix is present: refused without waiting for a body.
    assert!(matches!(
        decode_frame(&u32::MAX.to_le_bytes()),
        Err(WireError::FrameTooLong { .. })
    ));
}

#[test]
fn data_length_above_the_bound_is_refused_before_allocating() {
    // A Write whose data length field claims 4 GiB inside a small frame.
    let mut body = vec![WIRE_VERSION, 3];
    body.extend_from_slice(&[0u8; 24]);
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_body(&body),
        Err(WireError::FieldTooLong { what: "data", .. })
    ));
    let mut sums = vec![WIRE_VERSION, 7];
    sums.extend_from_slice(&[0u8; 8]);
    sums.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_body(&sums),
        Err(WireError::FieldTooLong {
            what: "checksum list",
            ..
        })
    ));
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    let too_big = Message::Write {
        epoch: 1,
        seq: 1,
        offset: 0,
        data: vec![0; MAX_DATA + 1],
    };
    let mut out = Vec::new();
    assert!(too_big.encode(&mut out).is_err());
    assert!(out.is_empty());
    let long_name = Message::Hello {
        volume_id: "v".repeat(MAX_NAME + 1),
        group: "g".into(),
        size_bytes: 1,
        epoch: 1,
        block_size: 4096,
        next_seq: 1,
    };
    assert!(long_name.to_frame().is_err());
    // The largest legal Write fits a frame.
    roundtrip(&Message::Write {
        epoch: 1,
        seq: 1,
        offset: 0,
        data: vec![7; MAX_DATA],
    });
}

#[test]
fn other_versions_and_trailing_bytes_are_refused() {
    let mut frame = Message::Ack {
        seq: 3,
        flushed: true,
    }
    .to_frame()
    .unwrap();
    let mut v2 = frame.clone();
    v2[4] = WIRE_VERSION + 1;
    assert_eq!(decode_frame(&v2), Err(WireError::Version(WIRE_VERSION + 1)));
    frame.push(0);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    assert_eq!(decode_frame(&frame), Err(WireError::TrailingBytes(1)));
}

#[test]
fn long_io_detail_is_cut_not_refused() {
    let m = Message::Refused {
        reason: RefuseReason::Io {
            detail: "é".repeat(300),
        },
    };
    let frame = m.to_frame().unwrap();
    match decode_frame(&frame).unwrap() {
        Decoded::Frame {
            message:
                Message::Refused {
                    reason: RefuseReason::Io { detail },
                },
            ..
        } => assert!(detail.len() <= MAX_NAME && detail.chars().all(|c| c == 'é')),
        other => panic!("{other:?}"),
    }
}
