//! The pure pieces of the pub mode and the client: request payloads that
//! an echo proves, the published message format, the subscriber's order
//! check and latency percentiles.
//!
//! A request payload starts with the tag `c<client> s<seq> ` and is filled
//! up to the requested size with bytes derived from `(client, seq)` alone,
//! so a reply can be checked completely (tag and every filler byte) by
//! regenerating the payload, without keeping the requests in flight. The
//! tag never reads `health` or `whoami`, so the rep and router modes echo
//! it unchanged. A size below the tag's length gives the tag alone.

use std::collections::HashMap;

/// First bytes of an error reply made by a mesh bridge (not by the
/// service): a copy of `mesh_bridge::ERROR_PREFIX`, so that this binary
/// does not depend on the bridge (QUIC, TLS); a test checks they match.
pub const BRIDGE_ERROR_PREFIX: &str = "MESH-BRIDGE-ERROR: ";

/// The payload of `client`'s request number `seq`: `size` bytes, or the
/// tag alone when `size` is shorter than the tag.
pub fn request_payload(client: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut payload = format!("c{client} s{seq} ").into_bytes();
    if payload.len() < size {
        payload.reserve_exact(size - payload.len());
        // splitmix64 over a counter seeded from (client, seq): cheap enough
        // for 16 MiB payloads, different for every request.
        let mut state = (client as u64).rotate_left(32) ^ seq ^ 0x6d65_7368_2d64_656d;
        while payload.len() < size {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let take = (size - payload.len()).min(8);
            payload.extend_from_slice(&z.to_le_bytes()[..take]);
        }
    }
    payload
}

/// The `(client, seq)` a payload's tag names; `None` without a tag.
pub fn payload_tag(payload: &[u8]) -> Option<(usize, u64)> {
    fn number<T: std::str::FromStr>(bytes: &[u8], prefix: u8) -> Option<(T, &[u8])> {
        let (first, rest) = bytes.split_first()?;
        if *first != prefix {
            return None;
        }
        let end = rest.iter().position(|&b| b == b' ')?;
        let digits = rest.get(..end)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = std::str::from_utf8(digits).ok()?.parse().ok()?;
        Some((value, rest.get(end + 1..)?))
    }
    let (client, rest) = number(payload, b'c')?;
    let (seq, _) = number(rest, b's')?;
    Some((client, seq))
}

/// The request of `client` an echoed payload claims to answer.
pub fn check_tag(body: &[u8], client: usize) -> Result<u64, String> {
    let Some((owner, seq)) = payload_tag(body) else {
        return Err(format!(
            "the reply is not an echo of any request: {}",
            describe(body)
        ));
    };
    if owner != client {
        return Err(format!(
            "client {owner}'s request {seq} was answered to client {client}"
        ));
    }
    Ok(seq)
}

/// Checks that an echoed payload is exactly request `seq` of `client`.
pub fn check_content(body: &[u8], client: usize, seq: u64, size: usize) -> Result<(), String> {
    if body != request_payload(client, seq, size).as_slice() {
        return Err(format!(
            "the reply to request {seq} differs from the request: {}",
            describe(body)
        ));
    }
    Ok(())
}

/// Checks an echoed payload: it must be exactly `client`'s request (tag
/// and content) for some sequence number, which is returned.
pub fn check_echo(body: &[u8], client: usize, size: usize) -> Result<u64, String> {
    let seq = check_tag(body, client)?;
    check_content(body, client, seq, size)?;
    Ok(seq)
}

/// A frame in a problem report: its length and its first bytes, escaped.
pub fn describe(frame: &[u8]) -> String {
    const SHOWN: usize = 32;
    let shown = frame.get(..SHOWN).unwrap_or(frame);
    let more = if frame.len() > SHOWN { "..." } else { "" };
    format!("{} bytes \"{}{more}\"", frame.len(), shown.escape_ascii())
}

/// Several frames in a problem report.
pub fn describe_frames<F: AsRef<[u8]>>(frames: &[F]) -> String {
    let parts: Vec<String> = frames.iter().map(|f| describe(f.as_ref())).collect();
    format!("{} frame(s): [{}]", frames.len(), parts.join(", "))
}

/// `DEMO_TOPICS`: a comma list; blanks trimmed, empty items and repeats
/// dropped, order kept.
pub fn parse_topics(list: &str) -> Vec<String> {
    let mut topics: Vec<String> = Vec::new();
    for topic in list.split(',').map(str::trim) {
        if !topic.is_empty() && !topics.iter().any(|t| t == topic) {
            topics.push(topic.to_string());
        }
    }
    topics
}

/// The second frame of every published message: `<publisher> <seq>`.
pub fn published_body(publisher: &str, seq: u64) -> String {
    format!("{publisher} {seq}")
}

/// One message as the pub mode sends it.
#[derive(Debug, PartialEq, Eq)]
pub struct Published {
    pub topic: String,
    pub publisher: String,
    pub seq: u64,
}

/// Reads `[topic, "<publisher> <seq>"]`; the publisher's name may hold
/// spaces (the number is after the last one).
pub fn parse_published<F: AsRef<[u8]>>(frames: &[F]) -> Result<Published, String> {
    let malformed = || {
        format!(
            "a message not in the pub mode's format [topic, \"<publisher> <seq>\"]: {}",
            describe_frames(frames)
        )
    };
    let [topic, body] = frames else {
        return Err(malformed());
    };
    let topic = std::str::from_utf8(topic.as_ref()).map_err(|_| malformed())?;
    let body = std::str::from_utf8(body.as_ref()).map_err(|_| malformed())?;
    let (publisher, seq) = body.rsplit_once(' ').ok_or_else(malformed)?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let seq = seq.parse().map_err(|_| malformed())?;
    Ok(Published {
        topic: topic.to_string(),
        publisher: publisher.to_string(),
        seq,
    })
}

/// Per (publisher, topic), every sequence number must be the previous one
/// plus one. The first one seen may be anything: a subscriber that joins
/// a running publisher misses what was sent before its subscription.
#[derive(Debug, Default)]
pub struct OrderCheck {
    last: HashMap<(String, String), u64>,
    broken: bool,
}

impl OrderCheck {
    /// Records one message; `Err` describes a gap, a repeat or a step back.
    pub fn observe(&mut self, message: &Published) -> Result<(), String> {
        let key = (message.publisher.clone(), message.topic.clone());
        let previous = self.last.insert(key, message.seq);
        let Some(previous) = previous else {
            return Ok(());
        };
        let expected = previous.saturating_add(1);
        if message.seq == expected {
            return Ok(());
        }
        self.broken = true;
        let what = if message.seq > expected {
            format!("gap: {} message(s) missing", message.seq - expected)
        } else {
            "out of order (repeated or earlier)".to_string()
        };
        Err(format!(
            "{what} on topic '{}' from '{}': seq {} after {previous}",
            message.topic, message.publisher, message.seq
        ))
    }

    pub fn in_order(&self) -> bool {
        !self.broken
    }
}

/// The nearest-rank percentile `percent` of sorted values.
pub fn percentile(sorted: &[u64], percent: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_error_prefix_is_the_bridges() {
        assert_eq!(BRIDGE_ERROR_PREFIX, mesh_bridge::ERROR_PREFIX);
    }

    #[test]
    fn payloads_are_sized_unique_and_tagged() {
        let a = request_payload(3, 17, 64);
        assert_eq!(a.len(), 64);
        assert!(a.starts_with(b"c3 s17 "));
        assert_eq!(a, request_payload(3, 17, 64));
        assert_ne!(a, request_payload(3, 18, 64));
        assert_ne!(a, request_payload(4, 17, 64));
        // Same tag prefix, different filler: (1, 23) vs (12, 3) differ.
        assert_ne!(
            request_payload(1, 23, 64)[8..],
            request_payload(12, 3, 64)[8..]
        );
        assert_eq!(request_payload(123, 4567, 4), b"c123 s4567 ".to_vec());
        assert_eq!(
            request_payload(0, 0, 16 * 1024 * 1024).len(),
            16 * 1024 * 1024
        );
        assert_eq!(payload_tag(&a), Some((3, 17)));
    }

    #[test]
    fn tags_reject_what_is_not_a_request() {
        for bad in [
            &b"health"[..],
            b"whoami",
            b"",
            b"c1 s2",
            b"c s2 ",
            b"c1 2 ",
            b"c+1 s2 ",
            b"c1 s99999999999999999999999 ",
        ] {
            assert_eq!(payload_tag(bad), None, "{}", bad.escape_ascii());
        }
        assert_eq!(payload_tag(b"c1 s2 "), Some((1, 2)));
    }

    #[test]
    fn echoes_are_checked_completely() {
        let good = request_payload(2, 5, 100);
        assert_eq!(check_echo(&good, 2, 100), Ok(5));
        let err = check_echo(&good, 3, 100).unwrap_err();
        assert!(err.contains("client 2's request 5"), "{err}");
        let mut flipped = good.clone();
        flipped[90] ^= 1;
        let err = check_echo(&flipped, 2, 100).unwrap_err();
        assert!(err.contains("differs"), "{err}");
        let err = check_echo(&good[..99], 2, 100).unwrap_err();
        assert!(err.contains("differs"), "{err}");
        let err = check_echo(b"ok", 2, 100).unwrap_err();
        assert!(err.contains("2 bytes \"ok\""), "{err}");
    }

    #[test]
    fn topics_and_published_messages() {
        assert_eq!(parse_topics(" a, b,,a ,c "), ["a", "b", "c"]);
        assert!(parse_topics(" , ").is_empty());
        let body = published_body("pub one", 42);
        let parsed = parse_published(&[b"events".as_slice(), body.as_bytes()]).unwrap();
        assert_eq!(
            parsed,
            Published {
                topic: "events".into(),
                publisher: "pub one".into(),
                seq: 42
            }
        );
        assert!(parse_published(&[b"events".as_slice()]).is_err());
        assert!(parse_published(&[b"t".as_slice(), b"name"]).is_err());
        assert!(parse_published(&[b"t".as_slice(), b"name -1"]).is_err());
        assert!(parse_published(&[b"t".as_slice(), b"name 1", b"x"]).is_err());
    }

    #[test]
    fn order_check_reports_gaps_and_steps_back_per_publisher_and_topic() {
        let m = |publisher: &str, topic: &str, seq| Published {
            topic: topic.into(),
            publisher: publisher.into(),
            seq,
        };
        let mut check = OrderCheck::default();
        // Joining late: the first seq may be anything.
        check.observe(&m("a", "x", 7)).unwrap();
        check.observe(&m("a", "y", 0)).unwrap();
        check.observe(&m("b", "x", 3)).unwrap();
        check.observe(&m("a", "x", 8)).unwrap();
        check.observe(&m("a", "y", 1)).unwrap();
        assert!(check.in_order());
        let err = check.observe(&m("a", "x", 11)).unwrap_err();
        assert!(
            err.contains("gap: 2 message(s) missing on topic 'x' from 'a': seq 11 after 8"),
            "{err}"
        );
        assert!(!check.in_order());
        let err = check.observe(&m("b", "x", 3)).unwrap_err();
        assert!(err.contains("out of order"), "{err}");
        check.observe(&m("b", "x", 4)).unwrap();
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), Some(50));
        assert_eq!(percentile(&values, 99), Some(99));
        assert_eq!(percentile(&values[..10], 99), Some(10));
    }
}
