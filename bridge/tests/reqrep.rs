//! REQ/REP and DEALER/ROUTER through a bridge between two agents on loopback.

#![allow(clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::*;
use mesh_bridge::{Bytes, InFlightPolicy, Pattern};
use zeromq::{DealerSocket, ReqSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_rep_through_the_bridge() {
    within(30, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let service = rep_service(b"pc2:").await;
        let (bridge, _target) = bridge(
            &mainpc,
            &pc2,
            "memory",
            Pattern::ReqRep,
            &service,
            InFlightPolicy::Error,
        )
        .await;

        // Several REQ clients, each with sequential requests, multipart included.
        let mut tasks = Vec::new();
        for c in 0..5 {
            let ep = bridge.endpoint().to_string();
            tasks.push(tokio::spawn(async move {
                let mut req = ReqSocket::new();
                req.connect(&ep).await.expect("connect REQ");
                for i in 0..20 {
                    let body = format!("c{c}-r{i}");
                    req.send(msg(&[body.as_bytes(), b"second"]))
                        .await
                        .expect("send");
                    let reply = frames(req.recv().await.expect("recv"));
                    assert_eq!(
                        reply,
                        vec![b"pc2:".to_vec(), body.into_bytes(), b"second".to_vec()]
                    );
                }
            }));
        }
        for t in tasks {
            t.await.expect("client");
        }
        let c = bridge.counters();
        assert_eq!(c.msgs_out, 100);
        assert_eq!(c.msgs_in, 100);
        assert_eq!(c.in_flight, 0);
        assert_eq!(c.errors, 0);
        assert_eq!(c.rtt_count, 100);
        assert!(c.rtt_mean.is_some());
        assert!(c.bytes_out > 0 && c.bytes_in > c.bytes_out);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_dealers_with_a_hundred_concurrent_requests_each_get_their_own_replies() {
    within(60, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        // Replies come back in random order.
        let service = router_echo_service(5).await;
        let (bridge, _target) = bridge(
            &mainpc,
            &pc2,
            "memory",
            Pattern::ReqRep,
            &service,
            InFlightPolicy::Error,
        )
        .await;

        let mut tasks = Vec::new();
        for c in 0..10 {
            let ep = bridge.endpoint().to_string();
            tasks.push(tokio::spawn(async move {
                let mut dealer = DealerSocket::new();
                dealer.connect(&ep).await.expect("connect DEALER");
                let mut want = HashSet::new();
                // All 100 requests go out before any reply is read.
                for i in 0..100 {
                    let id = format!("c{c}-r{i}");
                    let body = format!("body of {id}");
                    dealer
                        .send(msg(&[id.as_bytes(), b"", body.as_bytes()]))
                        .await
                        .expect("send");
                    want.insert((id, body));
                }
                let mut got = HashSet::new();
                for _ in 0..100 {
                    let f = frames(dealer.recv().await.expect("recv"));
                    assert_eq!(f.len(), 3, "envelope kept: {f:?}");
                    assert!(f[1].is_empty());
                    let id = String::from_utf8(f[0].clone()).expect("utf8");
                    let body = String::from_utf8(f[2].clone()).expect("utf8");
                    assert!(
                        id.starts_with(&format!("c{c}-")),
                        "reply for another client: {id}"
                    );
                    assert_eq!(body, format!("body of {id}"));
                    assert!(got.insert((id, body)), "answered twice");
                }
                assert_eq!(got, want);
            }));
        }
        for t in tasks {
            t.await.expect("client");
        }
        let c = bridge.counters();
        assert_eq!(
            (c.msgs_out, c.msgs_in, c.in_flight, c.errors),
            (1000, 1000, 0, 0)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixteen_mib_multipart_message_passes_unchanged() {
    within(60, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let service = router_echo_service(0).await;
        let (bridge, _target) = bridge(
            &mainpc,
            &pc2,
            "memory",
            Pattern::ReqRep,
            &service,
            InFlightPolicy::Error,
        )
        .await;
        let big: Vec<u8> = (0..16 * 1024 * 1024)
            .map(|i: u32| (i % 251) as u8)
            .collect();
        let mut req = ReqSocket::new();
        req.connect(bridge.endpoint()).await.expect("connect");
        let sent = vec![
            Bytes::from_static(b"head"),
            Bytes::new(),
            Bytes::from(big.clone()),
            Bytes::from_static(b"tail"),
        ];
        req.send(ZmqMessage::try_from(sent.clone()).expect("msg"))
            .await
            .expect("send");
        let got = req.recv().await.expect("recv").into_vec();
        assert_eq!(got.len(), 4);
        assert!(got == sent, "the 16 MiB message changed on the way");
        assert!(bridge.counters().bytes_in >= 16 * 1024 * 1024);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_service_is_answered_with_a_clear_error() {
    within(30, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let service = rep_service(b"x").await;
        let (bridge, target) = bridge(
            &mainpc,
            &pc2,
            "memory",
            Pattern::ReqRep,
            &service,
            InFlightPolicy::Error,
        )
        .await;
        pc2.exports().remove("memory");
        let _ = target;
        let mut req = ReqSocket::new();
        req.connect(bridge.endpoint()).await.expect("connect");
        req.send(msg(&[b"hello"])).await.expect("send");
        let reply = frames(req.recv().await.expect("recv"));
        assert_eq!(reply.len(), 1);
        let text = String::from_utf8(reply[0].clone()).expect("utf8");
        assert!(text.starts_with(mesh_bridge::ERROR_PREFIX), "{text}");
        assert!(text.contains("does not export service 'memory'"), "{text}");
        assert_eq!(bridge.counters().errors, 1);
    })
    .await;
}
