use super::*;
use proptest::prelude::*;

fn encode(record: &Record, max: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    RecordCodec::new(max)
        .encode(record.clone(), &mut buf)
        .expect("encode");
    buf
}

fn kinds() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hello),
        Just(Kind::Ready),
        Just(Kind::Refused),
        Just(Kind::Request),
        Just(Kind::Reply),
        Just(Kind::Failed),
        Just(Kind::Message),
    ]
}

fn records() -> impl Strategy<Value = Record> {
    (
        kinds(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
    )
        .prop_map(|(kind, id, client, frames)| Record {
            kind,
            id,
            client,
            frames: frames.into_iter().map(Bytes::from).collect(),
        })
}

proptest! {
    #[test]
    fn round_trip_any_record(record in records()) {
        let mut buf = encode(&record, DEFAULT_MAX_RECORD);
        let decoded = RecordCodec::default().decode(&mut buf).expect("decode");
        prop_assert_eq!(decoded, Some(record));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn round_trip_a_sequence_split_anywhere(
        records in prop::collection::vec(records(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut all = BytesMut::new();
        for r in &records {
            all.extend_from_slice(&encode(r, DEFAULT_MAX_RECORD));
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
        cut_points.push(all.len());
        cut_points.sort_unstable();
        let mut codec = RecordCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut from = 0;
        for to in cut_points {
            buf.extend_from_slice(&all[from..to]);
            from = to;
            while let Some(r) = codec.decode(&mut buf).expect("decode") {
                out.push(r);
            }
        }
        prop_assert_eq!(out, records);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn header_plus_frames_equals_encoding(record in records()) {
        let mut manual = BytesMut::new();
        manual.extend_from_slice(&header(&record, DEFAULT_MAX_RECORD).expect("header"));
        for f in &record.frames {
            manual.extend_from_slice(f);
        }
        prop_assert_eq!(manual, encode(&record, DEFAULT_MAX_RECORD));
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = RecordCodec::new(1024).decode(&mut buf);
    }
}

#[test]
fn sixteen_mib_multipart_round_trips() {
    let big = Bytes::from(vec![0xa5u8; 16 * 1024 * 1024]);
    let record = Record {
        kind: Kind::Request,
        id: 7,
        client: 3,
        frames: vec![Bytes::new(), big, Bytes::from_static(b"tail")],
    };
    let mut buf = encode(&record, DEFAULT_MAX_RECORD);
    assert_eq!(
        RecordCodec::default().decode(&mut buf).expect("decode"),
        Some(record)
    );
}

#[test]
fn too_large_is_refused_both_ways() {
    let record = Record::new(Kind::Message, vec![Bytes::from(vec![0u8; 100])]);
    let err = header(&record, 50).expect_err("too large");
    assert!(matches!(err, FrameError::TooLarge { max: 50, .. }), "{err}");
    let mut buf = encode(&record, 1000);
    let err = RecordCodec::new(50)
        .decode(&mut buf)
        .expect_err("too large");
    assert!(err.to_string().contains("exceeds the limit of 50"), "{err}");
}

#[test]
fn malformed_headers_are_refused() {
    // Unknown kind.
    let mut buf = encode(&Record::new(Kind::Ready, vec![]), 1000);
    buf[4] = 99;
    let err = RecordCodec::default().decode(&mut buf).expect_err("kind");
    assert!(matches!(err, FrameError::UnknownKind(99)), "{err}");

    // Frame lengths that do not add up.
    let mut buf = encode(
        &Record::new(Kind::Message, vec![Bytes::from_static(b"abc")]),
        1000,
    );
    let last_len = FIXED_HEADER + 3;
    buf[last_len] = 4;
    let err = RecordCodec::default()
        .decode(&mut buf)
        .expect_err("lengths");
    assert!(matches!(err, FrameError::Malformed(_)), "{err}");

    // A body shorter than the fixed header.
    let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 1, 2, 3][..]);
    let err = RecordCodec::default().decode(&mut buf).expect_err("short");
    assert!(matches!(err, FrameError::Malformed(_)), "{err}");
}

#[test]
fn partial_input_waits() {
    let buf_full = encode(
        &Record::new(Kind::Message, vec![Bytes::from_static(b"hello")]),
        1000,
    );
    for cut in 0..buf_full.len() {
        let mut buf = BytesMut::from(&buf_full[..cut]);
        assert_eq!(
            RecordCodec::default().decode(&mut buf).expect("partial"),
            None
        );
    }
}
