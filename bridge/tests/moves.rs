//! A service that moves while requests are in flight: each in-flight request gets exactly one
//! answer, an error or the retried reply, per the bridge's policy; late replies from the old
//! place are dropped.

#![allow(clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mesh_bridge::{Export, InFlightPolicy, Pattern, ServiceTarget, ERROR_PREFIX};
use tokio::sync::Notify;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend};

struct Setup {
    _hosts: Vec<mesh_bridge::Tunnels>,
    bridge: mesh_bridge::Bridge,
    target: mesh_bridge::Target,
    new_place: ServiceTarget,
    old_open: Arc<Notify>,
    old_held: Arc<AtomicUsize>,
    dealer: DealerSocket,
}

async fn setup(policy: InFlightPolicy) -> Setup {
    let mesh = Mesh::new("home");
    let mainpc = mesh.agent("mainpc");
    let pc2 = mesh.agent("pc2");
    let pc3 = mesh.agent("pc3");
    let old_open = Arc::new(Notify::new());
    let old_held = Arc::new(AtomicUsize::new(0));
    let old = gated_router_service("pc2:", old_open.clone(), old_held.clone()).await;
    // pc3's service answers at once.
    let pc3_gate = Arc::new(Notify::new());
    pc3_gate.notify_one();
    let new = gated_router_service("pc3:", pc3_gate, Arc::new(AtomicUsize::new(0))).await;
    let (bridge, target) = bridge(&mainpc, &pc2, "memory", Pattern::ReqRep, &old, policy).await;
    pc3.exports().set(
        "memory",
        Export {
            pattern: Pattern::ReqRep,
            endpoint: new.clone(),
        },
    );
    let new_place = ServiceTarget {
        peer: peer(&pc3),
        service: "memory".to_string(),
        epoch: 0,
    };
    let mut dealer = DealerSocket::new();
    dealer.connect(bridge.endpoint()).await.expect("connect");
    Setup {
        _hosts: vec![mainpc, pc2, pc3],
        bridge,
        target,
        new_place,
        old_open,
        old_held,
        dealer,
    }
}

async fn send_requests(dealer: &mut DealerSocket, tag: &str, n: usize) {
    for i in 0..n {
        let id = format!("{tag}{i}");
        dealer
            .send(msg(&[id.as_bytes(), b"", format!("body-{id}").as_bytes()]))
            .await
            .expect("send");
    }
}

async fn recv_replies(dealer: &mut DealerSocket, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let f = frames(dealer.recv().await.expect("recv"));
        assert_eq!(f.len(), 3, "envelope kept: {f:?}");
        out.push((
            String::from_utf8(f[0].clone()).expect("utf8"),
            String::from_utf8(f[2].clone()).expect("utf8"),
        ));
    }
    out.sort();
    out
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Nothing more arrives for a while.
async fn assert_silent(dealer: &mut DealerSocket) {
    let more = tokio::time::timeout(Duration::from_millis(300), dealer.recv()).await;
    assert!(more.is_err(), "a request was answered twice: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_moved_mid_flight_with_the_error_policy() {
    within(30, async {
        let mut s = setup(InFlightPolicy::Error).await;
        send_requests(&mut s.dealer, "old", 5).await;
        let held = s.old_held.clone();
        wait_for("pc2 to hold 5 requests", || {
            held.load(Ordering::SeqCst) == 5
        })
        .await;
        assert_eq!(s.bridge.counters().in_flight, 5);

        s.target.set(s.new_place.clone());
        let replies = recv_replies(&mut s.dealer, 5).await;
        for (i, (id, body)) in replies.iter().enumerate() {
            assert_eq!(id, &format!("old{i}"));
            assert!(body.starts_with(ERROR_PREFIX), "{body}");
            assert!(
                body.contains("moved from agent 'pc2' to agent 'pc3'"),
                "{body}"
            );
        }
        assert_eq!(s.bridge.counters().errors, 5);

        // The old place answers late: dropped, never delivered.
        s.old_open.notify_one();
        let bridge = &s.bridge;
        wait_for("late replies to be dropped", || {
            bridge.counters().late_replies == 5
        })
        .await;
        assert_silent(&mut s.dealer).await;
        assert_eq!(s.bridge.counters().in_flight, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_moved_mid_flight_with_the_retry_policy() {
    within(30, async {
        let mut s = setup(InFlightPolicy::RetryOnce).await;
        send_requests(&mut s.dealer, "old", 5).await;
        let held = s.old_held.clone();
        wait_for("pc2 to hold 5 requests", || {
            held.load(Ordering::SeqCst) == 5
        })
        .await;

        s.target.set(s.new_place.clone());
        // Once the bridge has seen the move (it re-sent all five to pc3), pc2 answers too:
        // its replies must be dropped. (Opened earlier, pc2 could answer before the move is
        // seen, and such replies are rightly delivered.)
        let bridge = &s.bridge;
        wait_for("the five requests to be re-sent", || {
            bridge.counters().retries == 5
        })
        .await;
        s.old_open.notify_one();
        let replies = recv_replies(&mut s.dealer, 5).await;
        for (i, (id, body)) in replies.iter().enumerate() {
            assert_eq!(id, &format!("old{i}"));
            assert_eq!(
                body,
                &format!("pc3:body-old{i}"),
                "retried at the new place"
            );
        }
        let bridge = &s.bridge;
        wait_for("late replies to be dropped", || {
            bridge.counters().late_replies == 5
        })
        .await;
        assert_silent(&mut s.dealer).await;
        let c = s.bridge.counters();
        assert_eq!((c.retries, c.errors, c.in_flight), (5, 0, 0), "{c:?}");

        // New requests go to the new place.
        send_requests(&mut s.dealer, "new", 3).await;
        let replies = recv_replies(&mut s.dealer, 3).await;
        for (i, (id, body)) in replies.iter().enumerate() {
            assert_eq!(id, &format!("new{i}"));
            assert_eq!(body, &format!("pc3:body-new{i}"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_host_going_away_mid_flight_answers_with_errors() {
    within(30, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let held = Arc::new(AtomicUsize::new(0));
        let svc = gated_router_service("pc2:", Arc::new(Notify::new()), held.clone()).await;
        let (bridge, _target) = bridge(
            &mainpc,
            &pc2,
            "memory",
            Pattern::ReqRep,
            &svc,
            InFlightPolicy::Error,
        )
        .await;
        let mut dealer = DealerSocket::new();
        dealer.connect(bridge.endpoint()).await.expect("connect");
        send_requests(&mut dealer, "r", 4).await;
        wait_for("pc2 to hold 4 requests", || {
            held.load(Ordering::SeqCst) == 4
        })
        .await;

        pc2.close();
        let replies = recv_replies(&mut dealer, 4).await;
        for (i, (id, body)) in replies.iter().enumerate() {
            assert_eq!(id, &format!("r{i}"));
            assert!(body.starts_with(ERROR_PREFIX), "{body}");
            assert!(body.contains("pc2"), "{body}");
        }
        assert_eq!(bridge.counters().errors, 4);
    })
    .await;
}

/// The service itself dies mid-request (the zeromq DEALER would never notice, finding 1 of
/// docs/zeromq-0.7-notes.md): the request is answered with an error, and once the service is
/// back on the same port the next request reaches it through a fresh DEALER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_dying_mid_request_answers_with_an_error_and_recovers() {
    within(30, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let mut service = zeromq::RouterSocket::new();
        let ep = service
            .bind("tcp://127.0.0.1:0")
            .await
            .expect("bind")
            .to_string();
        let (bridge, _target) = bridge(
            &mainpc,
            &pc2,
            "memory",
            Pattern::ReqRep,
            &ep,
            InFlightPolicy::Error,
        )
        .await;
        let mut req = zeromq::ReqSocket::new();
        req.connect(bridge.endpoint()).await.expect("connect");
        req.send(msg(&[b"first"])).await.expect("send");
        let got = service.recv().await.expect("the service got the request");
        assert_eq!(got.len(), 3, "identity, delimiter, body: {got:?}");
        let identity = String::from_utf8_lossy(&got.into_vec()[0]).into_owned();
        assert!(
            identity.starts_with("mb-mainpc-"),
            "bridge-assigned identity: {identity}"
        );
        drop(service);

        let reply = frames(req.recv().await.expect("recv"));
        let text = String::from_utf8(reply[0].clone()).expect("utf8");
        assert!(text.starts_with(ERROR_PREFIX), "{text}");
        assert!(text.contains("closed the connection"), "{text}");

        // The service comes back on the same port.
        let mut back = None;
        for _ in 0..50 {
            let mut rep = zeromq::RepSocket::new();
            if rep.bind(&ep).await.is_ok() {
                back = Some(rep);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut rep = back.expect("rebind the service");
        tokio::spawn(async move {
            while let Ok(m) = rep.recv().await {
                if rep.send(m).await.is_err() {
                    return;
                }
            }
        });
        req.send(msg(&[b"second"])).await.expect("send");
        let reply = frames(req.recv().await.expect("recv"));
        assert_eq!(reply, vec![b"second".to_vec()]);
    })
    .await;
}

/// A service moving onto this host publishes the very port the bridge endpoint listened on:
/// `close` returns only once that port can be bound again, for every pattern, also while a
/// local client is still connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_bridge_frees_its_port_for_the_service() {
    within(30, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let service = rep_service(b"pc2:").await;
        for pattern in [
            Pattern::ReqRep,
            Pattern::PubSub,
            Pattern::PushPull,
            Pattern::Tcp,
        ] {
            let (bridge, _target) = bridge(
                &mainpc,
                &pc2,
                "svc",
                pattern,
                &service,
                InFlightPolicy::Error,
            )
            .await;
            let endpoint = bridge.endpoint().to_string();
            let addr = endpoint.trim_start_matches("tcp://").to_string();
            let client = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect to the bridge endpoint");
            assert!(
                tokio::net::TcpListener::bind(&addr).await.is_err(),
                "{pattern}: the open bridge endpoint must hold {addr}"
            );
            assert!(
                bridge.close(Duration::from_secs(5)).await,
                "{pattern}: port of {endpoint} still taken after close"
            );
            // What the service's container does on this host: listen on that port.
            let mut rep = zeromq::RepSocket::new();
            rep.bind(&format!("tcp://{addr}"))
                .await
                .unwrap_or_else(|e| panic!("{pattern}: bind {addr} after close: {e}"));
            drop(rep);
            drop(client);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_epoch_on_the_same_host_is_a_move_and_late_replies_of_the_old_one_are_dropped() {
    within(30, async {
        let mut s = setup(InFlightPolicy::Error).await;
        send_requests(&mut s.dealer, "old", 3).await;
        let held = s.old_held.clone();
        wait_for("pc2 to hold 3 requests", || {
            held.load(Ordering::SeqCst) == 3
        })
        .await;
        // The group failed over and back to pc2 (epoch 0 -> 2): the
        // requests sent to the old instance are answered with errors.
        let mut same_host = s.target.get();
        same_host.epoch = 2;
        s.target.set(same_host);
        let replies = recv_replies(&mut s.dealer, 3).await;
        for (_, body) in &replies {
            assert!(body.starts_with(ERROR_PREFIX), "{body}");
            assert!(
                body.contains("moved to failover epoch 2 (from 0)"),
                "{body}"
            );
        }
        // Their replies from the old instance come late: dropped, counted.
        s.old_open.notify_one();
        let bridge = &s.bridge;
        wait_for("late replies to be dropped", || {
            bridge.counters().late_replies == 3
        })
        .await;
        assert_silent(&mut s.dealer).await;
    })
    .await;
}
