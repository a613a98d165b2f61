//! Named channels on the tunnel: raw streams for protocols other than bridges, on the same
//! mutual-TLS connection, refused with a reason when the peer serves no such channel.

#![allow(clippy::expect_used)]

mod common;

use common::*;
use mesh_bridge::{Channel, Error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_carries_raw_bytes_both_ways_and_names_the_verified_peer() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        let b = mesh.agent("pc2");
        b.serve_channel("echo", |mut ch: Channel| async move {
            // Prefix every reply with the peer's name as the tunnel verified it.
            let mut out = format!("{}:", ch.peer).into_bytes();
            let got = ch.recv.read_to_end(1 << 20).await.expect("read");
            out.extend(got);
            ch.send.write_all(&out).await.expect("write");
            ch.send.finish().await.expect("finish");
        });
        let (mut send, mut recv) = a.open_channel(&peer(&b), "echo").await.expect("open");
        // Bytes that look like nothing in particular: the channel must not parse them.
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        send.write_all(&payload).await.expect("send");
        send.finish().await.expect("finish");
        let back = recv.read_to_end(1 << 20).await.expect("reply");
        let mut expected = b"mainpc:".to_vec();
        expected.extend(&payload);
        assert_eq!(back, expected);
        // The channel used the one connection between the two agents.
        let c1 = a.connect(&peer(&b)).await.expect("conn");
        let (_s, _r) = a.open_channel(&peer(&b), "echo").await.expect("again");
        let c2 = a.connect(&peer(&b)).await.expect("conn");
        assert_eq!(c1.stable_id(), c2.stable_id());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_stopped_channel_is_refused_with_the_reason() {
    within(20, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        let b = mesh.agent("pc2");
        let e = a
            .open_channel(&peer(&b), "volume-replication")
            .await
            .expect_err("nobody serves it");
        let text = e.to_string();
        match e {
            Error::ChannelRefused {
                peer,
                channel,
                reason,
            } => {
                assert_eq!(peer, "pc2");
                assert_eq!(channel, "volume-replication");
                assert!(
                    reason.contains("serves no channel 'volume-replication'"),
                    "{reason}"
                );
            }
            other => panic!("expected ChannelRefused, got {other}"),
        }
        assert!(
            text.contains("refused channel 'volume-replication'"),
            "{text}"
        );

        b.serve_channel("x", |_ch: Channel| async {});
        a.open_channel(&peer(&b), "x").await.expect("served");
        assert!(b.stop_channel("x"));
        let e = a.open_channel(&peer(&b), "x").await.expect_err("stopped");
        assert!(matches!(e, Error::ChannelRefused { .. }), "{e}");
    })
    .await;
}
