//! PUB/SUB, PUSH/PULL and raw TCP through bridges.

#![allow(clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mesh_bridge::{InFlightPolicy, Pattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeromq::{PubSocket, PullSocket, PushSocket, Socket, SocketRecv, SocketSend, SubSocket};

/// A publisher that sends `{topic}.sync` until `go`, then `{topic}.{i}` for i in 0..n, then
/// `{topic}.end`.
async fn publisher(topic: &'static str, n: usize, go: Arc<AtomicBool>) -> String {
    let mut publ = PubSocket::new();
    let ep = publ
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind PUB")
        .to_string();
    tokio::spawn(async move {
        while !go.load(Ordering::SeqCst) {
            let _ = publ.send(msg(&[format!("{topic}.sync").as_bytes()])).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in 0..n {
            let m = msg(&[format!("{topic}.{i}").as_bytes(), b"payload"]);
            publ.send(m).await.expect("publish");
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publ.send(msg(&[format!("{topic}.end").as_bytes()]))
            .await
            .expect("end");
        // Keep the socket open while the end travels.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    ep
}

/// Receives until every topic in `topics` has seen its sync message.
async fn wait_sync(sub: &mut SubSocket, topics: &[&str]) {
    let mut seen: Vec<&str> = Vec::new();
    while seen.len() < topics.len() {
        let f = frames(sub.recv().await.expect("recv"));
        let t = String::from_utf8(f[0].clone()).expect("utf8");
        for topic in topics {
            if t == format!("{topic}.sync") && !seen.contains(topic) {
                seen.push(topic);
            }
        }
    }
}

/// Receives until every topic has ended; returns the sequence numbers per topic.
async fn collect(sub: &mut SubSocket, topics: &[&str]) -> HashMap<String, Vec<usize>> {
    let mut got: HashMap<String, Vec<usize>> = HashMap::new();
    let mut ended = 0;
    while ended < topics.len() {
        let f = frames(sub.recv().await.expect("recv"));
        let t = String::from_utf8(f[0].clone()).expect("utf8");
        let Some((topic, rest)) = t.split_once('.') else {
            continue;
        };
        match rest {
            "sync" => {}
            "end" => ended += 1,
            n => {
                assert_eq!(f[1], b"payload".to_vec(), "multipart kept");
                got.entry(topic.to_string())
                    .or_default()
                    .push(n.parse().expect("seq"));
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_across_hosts_delivers_every_message_in_order_per_publisher() {
    within(60, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let go = Arc::new(AtomicBool::new(false));
        const N: usize = 2000;
        let pa = publisher("a", N, go.clone()).await;
        let pb = publisher("b", N, go.clone()).await;
        let (bridge_a, _ta) = bridge(
            &mainpc,
            &pc2,
            "events-a",
            Pattern::PubSub,
            &pa,
            InFlightPolicy::Error,
        )
        .await;
        let (bridge_b, _tb) = bridge(
            &mainpc,
            &pc2,
            "events-b",
            Pattern::PubSub,
            &pb,
            InFlightPolicy::Error,
        )
        .await;

        // X hears both publishers; Y only publisher a; Z subscribes to nothing it will get.
        let mut x = SubSocket::new();
        x.connect(bridge_a.endpoint()).await.expect("x->a");
        x.connect(bridge_b.endpoint()).await.expect("x->b");
        x.subscribe("a.").await.expect("sub");
        x.subscribe("b.").await.expect("sub");
        let mut y = SubSocket::new();
        y.connect(bridge_a.endpoint()).await.expect("y->a");
        y.subscribe("a.").await.expect("sub");

        wait_sync(&mut x, &["a", "b"]).await;
        wait_sync(&mut y, &["a"]).await;
        go.store(true, Ordering::SeqCst);

        let (gx, gy) = tokio::join!(collect(&mut x, &["a", "b"]), collect(&mut y, &["a"]));
        let all: Vec<usize> = (0..N).collect();
        assert_eq!(gx.get("a"), Some(&all), "x: every message from a, in order");
        assert_eq!(gx.get("b"), Some(&all), "x: every message from b, in order");
        assert_eq!(gy.get("a"), Some(&all), "y: every message from a, in order");
        assert_eq!(gy.get("b"), None, "y never subscribed to b");
        // One stream per bridge: each published message crossed once, whatever the number of
        // local subscribers.
        let c = bridge_a.counters();
        assert!(c.msgs_in > N as u64, "{c:?}");
        assert!(
            c.msgs_in < 2 * N as u64,
            "crossed once, not per subscriber: {c:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_delivers_every_message_in_order_per_pusher() {
    within(60, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let mut pull = PullSocket::new();
        let ep = pull
            .bind("tcp://127.0.0.1:0")
            .await
            .expect("bind PULL")
            .to_string();
        let (bridge, _t) = bridge(
            &mainpc,
            &pc2,
            "sink",
            Pattern::PushPull,
            &ep,
            InFlightPolicy::Error,
        )
        .await;

        const N: usize = 300;
        for c in 0..3 {
            let ep = bridge.endpoint().to_string();
            tokio::spawn(async move {
                let mut push = PushSocket::new();
                push.connect(&ep).await.expect("connect PUSH");
                for i in 0..N {
                    push.send(msg(&[format!("{c}").as_bytes(), format!("{i}").as_bytes()]))
                        .await
                        .expect("push");
                }
                // Keep the socket until everything is delivered.
                tokio::time::sleep(Duration::from_secs(10)).await;
            });
        }
        let mut got: HashMap<String, Vec<usize>> = HashMap::new();
        for _ in 0..3 * N {
            let f = frames(pull.recv().await.expect("pull"));
            assert_eq!(f.len(), 2);
            got.entry(String::from_utf8(f[0].clone()).expect("utf8"))
                .or_default()
                .push(
                    String::from_utf8(f[1].clone())
                        .expect("utf8")
                        .parse()
                        .expect("n"),
                );
        }
        let all: Vec<usize> = (0..N).collect();
        for c in 0..3 {
            assert_eq!(got.get(&c.to_string()), Some(&all), "pusher {c}");
        }
        assert_eq!(bridge.counters().msgs_out, 3 * N as u64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_forwards_raw_bytes_both_ways() {
    within(60, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        // An echo server that closes after the client's half-close.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let service = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        let (bridge, _t) = bridge(
            &mainpc,
            &pc2,
            "raw",
            Pattern::Tcp,
            &service,
            InFlightPolicy::Error,
        )
        .await;

        let mut tasks = Vec::new();
        for c in 0..5u8 {
            let ep = bridge.endpoint().to_string();
            tasks.push(tokio::spawn(async move {
                let conn = tokio::net::TcpStream::connect(&ep).await.expect("connect");
                let (mut r, mut w) = conn.into_split();
                let data: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i as u8) ^ c).collect();
                let sent = data.clone();
                let writer = tokio::spawn(async move {
                    w.write_all(&sent).await.expect("write");
                    w.shutdown().await.expect("half-close");
                });
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.expect("read");
                writer.await.expect("writer");
                assert!(back == data, "client {c}: bytes changed");
            }));
        }
        for t in tasks {
            t.await.expect("client");
        }
        // Counters are updated when each stream has fully ended.
        let mut c = bridge.counters();
        for _ in 0..50 {
            if c.msgs_in == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            c = bridge.counters();
        }
        assert_eq!((c.msgs_out, c.msgs_in), (5, 5), "{c:?}");
        assert_eq!(c.bytes_out, 5 * 1024 * 1024);
        assert_eq!(c.bytes_in, 5 * 1024 * 1024);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_with_the_service_down_closes_the_local_connection() {
    within(30, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let (bridge, _t) = bridge(
            &mainpc,
            &pc2,
            "raw",
            Pattern::Tcp,
            &port.to_string(),
            InFlightPolicy::Error,
        )
        .await;
        let mut conn = tokio::net::TcpStream::connect(bridge.endpoint())
            .await
            .expect("connect");
        let mut buf = Vec::new();
        let n = conn.read_to_end(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
        let mut errors = 0;
        for _ in 0..50 {
            errors = bridge.counters().errors;
            if errors == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(errors, 1);
    })
    .await;
}

/// A service that PUSHes work: PULL workers on another host get every message through the
/// bridge, each exactly once, in the service's order per worker; nothing is pulled before a
/// worker is there (the service's PUSH holds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushing_service_feeds_pull_workers_on_another_host() {
    within(60, async {
        let mesh = Mesh::new("home");
        let mainpc = mesh.agent("mainpc");
        let pc2 = mesh.agent("pc2");
        let mut ventilator = PushSocket::new();
        let ep = ventilator
            .bind("tcp://127.0.0.1:0")
            .await
            .expect("bind PUSH")
            .to_string();
        let (bridge, _t) = bridge(
            &mainpc,
            &pc2,
            "work",
            Pattern::Distribute,
            &ep,
            InFlightPolicy::Error,
        )
        .await;

        // No worker yet: the bridge takes nothing, so the service has no peer to send to.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            ventilator.send(msg(&[b"too early"])).await.is_err(),
            "the bridge must not pull work before a worker is there"
        );

        const WORKERS: usize = 3;
        const N: usize = 600;
        let mut tasks = Vec::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
        let connected = Arc::new(tokio::sync::Barrier::new(WORKERS + 1));
        for w in 0..WORKERS {
            let ep = bridge.endpoint().to_string();
            let done_tx = done_tx.clone();
            let connected = connected.clone();
            tasks.push(tokio::spawn(async move {
                let mut pull = PullSocket::new();
                pull.connect(&ep).await.expect("connect PULL");
                connected.wait().await;
                loop {
                    let f = frames(pull.recv().await.expect("pull"));
                    assert_eq!(f[0], b"job".to_vec());
                    let n: usize = String::from_utf8(f[1].clone())
                        .expect("utf8")
                        .parse()
                        .expect("n");
                    if done_tx.send((w, n)).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(done_tx);
        connected.wait().await;
        // The service's PUSH has a peer (the bridge's PULL) once a worker connected.
        let mut sent = 0;
        while sent < N {
            match ventilator
                .send(msg(&[b"job", sent.to_string().as_bytes()]))
                .await
            {
                Ok(()) => sent += 1,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let mut seen = vec![0usize; N];
        let mut last: Vec<Option<usize>> = vec![None; WORKERS];
        let mut per_worker = vec![0usize; WORKERS];
        for _ in 0..N {
            let (w, n) = done_rx.recv().await.expect("a job");
            seen[n] += 1;
            per_worker[w] += 1;
            assert!(
                last[w].is_none_or(|l| l < n),
                "worker {w}: {n} after {last:?}"
            );
            last[w] = Some(n);
        }
        assert!(seen.iter().all(|&c| c == 1), "every job exactly once");
        assert!(
            per_worker.iter().all(|&c| c > 0),
            "round robin over the workers: {per_worker:?}"
        );
        let c = bridge.counters();
        assert_eq!(c.msgs_in, N as u64);
        assert_eq!(c.errors, 0);
        for t in tasks {
            t.abort();
        }
    })
    .await;
}
