use super::*;
use proptest::prelude::*;

fn frames(sizes: &[usize]) -> Vec<Bytes> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, n)| Bytes::from(vec![i as u8; *n]))
        .collect()
}

#[test]
fn greetings_are_checked() {
    assert!(check_greeting(&greeting(true)).is_ok());
    let mut curve = greeting(false);
    curve[12..17].copy_from_slice(b"CURVE");
    let e = check_greeting(&curve).expect_err("curve");
    assert!(e.to_string().contains("CURVE mechanism"), "{e}");
    let mut old = greeting(false);
    old[10] = 2;
    assert!(check_greeting(&old).is_err());
    let mut junk = greeting(false);
    junk[0] = b'G';
    assert!(check_greeting(&junk).is_err());
}

#[test]
fn ready_round_trips_and_error_commands_are_reasons() {
    let mut cmd = ready("DEALER", b"mb-pc2-1-7");
    let (flags, body) = parse_frame(&mut cmd, 1 << 20)
        .expect("parse")
        .expect("whole");
    assert_eq!(flags & FLAG_COMMAND, FLAG_COMMAND);
    let info = parse_ready(&body).expect("ready");
    assert_eq!(info.socket_type, "DEALER");
    assert_eq!(&info.identity[..], b"mb-pc2-1-7");
    let e = parse_ready(b"\x05ERROR\x06denied").expect_err("error");
    assert!(e.to_string().contains("denied"), "{e}");
    assert!(parse_ready(b"\x05READY\x0bSocket-Type\x00\x00\x00\x09REQ").is_err());
}

#[test]
fn oversized_frames_are_refused_before_reading_them() {
    let mut buf = BytesMut::new();
    put_header(&mut buf, 0, 10_000);
    let e = parse_frame(&mut buf, 1024).expect_err("too large");
    assert!(matches!(e, ZmtpError::TooLarge { size: 10_000, .. }), "{e}");
}

proptest! {
    /// What a batch writes parses back into the same messages, whatever the frame sizes
    /// (inline, by reference, short and long headers) and however the bytes arrive.
    #[test]
    fn batches_parse_back(
        messages in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![0..300usize, Just(INLINE_FRAME), Just(INLINE_FRAME + 1), 5000..9000usize],
                1..4,
            ),
            1..8,
        ),
        cut in 1..5000usize,
    ) {
        let sent: Vec<Vec<Bytes>> = messages.iter().map(|m| frames(m)).collect();
        let mut batch = WriteBatch::default();
        for m in &sent {
            batch.push(m);
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let mut wire = Vec::new();
        rt.block_on(batch.write_to(&mut wire)).expect("write");
        // Arrives in pieces of `cut` bytes.
        let (client, mut server) = tokio::io::duplex(cut);
        let got = rt.block_on(async move {
            let feed = async {
                server.write_all(&wire).await.expect("feed");
                drop(server);
            };
            let read = async {
                let mut reader = MessageReader::new(client, BytesMut::new(), 1 << 20);
                let mut got = Vec::new();
                while let Some(m) = reader.next().await.expect("parse") {
                    got.push(m);
                }
                got
            };
            tokio::join!(feed, read).1
        });
        prop_assert_eq!(got, sent);
    }
}
