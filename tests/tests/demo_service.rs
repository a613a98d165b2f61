//! `mesh-demo-service`, the ZeroMQ service the demo mesh runs in
//! containers, as a native process on loopback (no Podman, no root):
//! REP health and multipart echo, a ROUTER serving REQ and DEALER clients
//! at once, and the memory mode keeping every acknowledged write across a
//! SIGKILL. Clients use the `zeromq` crate, as the mesh's bridge will.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mesh_tests::binaries;
use mesh_tests::process::{self, Proc};
use zeromq::{DealerSocket, ReqSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

type Frames = Vec<Vec<u8>>;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn endpoint(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// Starts the service; `DEMO_*` from the caller's environment is cleared
/// so only the flags given here count.
fn start(mode: &str, port: u16, data_dir: Option<&Path>) -> Proc {
    let mut cmd = Command::new(binaries::path("mesh-demo-service"));
    for var in ["DEMO_MODE", "DEMO_BIND", "DEMO_DATA_DIR"] {
        cmd.env_remove(var);
    }
    cmd.env("DEMO_NAME", format!("demo-{mode}"))
        .args(["--mode", mode, "--bind", &endpoint(port)]);
    if let Some(dir) = data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    Proc::spawn(&format!("demo-{mode}"), cmd)
}

fn options() -> SocketOptions {
    let mut options = SocketOptions::default();
    options.connect_timeout(Duration::from_secs(15));
    options
}

/// `connect` retries while the port is refused, so this also waits for
/// the service to bind.
async fn req(port: u16) -> ReqSocket {
    let mut socket = ReqSocket::with_options(options());
    socket.connect(&endpoint(port)).await.unwrap();
    socket
}

fn message(frames: &[&[u8]]) -> ZmqMessage {
    let mut message = ZmqMessage::from(frames[0].to_vec());
    for frame in &frames[1..] {
        message.push_back(frame.to_vec().into());
    }
    message
}

fn frames(message: ZmqMessage) -> Frames {
    message.into_vec().iter().map(|f| f.to_vec()).collect()
}

fn owned(frames: &[&[u8]]) -> Frames {
    frames.iter().map(|f| f.to_vec()).collect()
}

async fn recv(socket: &mut impl SocketRecv) -> Frames {
    let reply = tokio::time::timeout(REPLY_TIMEOUT, socket.recv())
        .await
        .expect("no reply in time")
        .unwrap();
    frames(reply)
}

async fn call(socket: &mut ReqSocket, request: &[&[u8]]) -> Frames {
    socket.send(message(request)).await.unwrap();
    recv(socket).await
}

#[test]
fn version_and_bad_arguments() {
    let bin = binaries::path("mesh-demo-service");
    let out = process::run({
        let mut c = Command::new(&bin);
        c.arg("--version");
        c
    });
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("mesh-demo-service "), "{version}");

    let out = process::run({
        let mut c = Command::new(&bin);
        c.args(["--mode", "pub"]);
        c
    });
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'pub'"), "{err}");
}

#[tokio::test]
async fn rep_answers_health_echoes_multipart_and_stops_on_sigterm() {
    let port = free_port();
    let mut service = start("rep", port, None);
    let mut socket = req(port).await;

    assert_eq!(call(&mut socket, &[b"health"]).await, owned(&[b"ok"]));
    assert_eq!(call(&mut socket, &[b"whoami"]).await, owned(&[b"demo-rep"]));
    let three: &[&[u8]] = &[b"first", b"", b"third \x00\xff"];
    assert_eq!(call(&mut socket, three).await, owned(three));
    // `health` inside a multipart message is data, not a probe.
    let not_probe: &[&[u8]] = &[b"health", b"now"];
    assert_eq!(call(&mut socket, not_probe).await, owned(not_probe));

    let status = service.stop(Duration::from_secs(5));
    let status = status.expect("still running 5 s after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", service.logs());
}

/// One client's 100 requests; every reply must be the answer to the
/// request it follows (REQ) or to the request at the same position
/// (DEALER, pipelined: one TCP stream keeps order).
async fn router_client(port: u16, client: usize, dealer: bool) -> usize {
    let request = |i: usize| -> Frames {
        if i % 10 == 9 {
            vec![b"health".to_vec()]
        } else {
            let tag = format!("client-{client}");
            vec![
                tag.into_bytes(),
                Vec::new(),
                format!("request-{i}").into_bytes(),
            ]
        }
    };
    let expected = |i: usize| -> Frames {
        if i % 10 == 9 {
            vec![b"ok".to_vec()]
        } else {
            request(i)
        }
    };
    let as_refs = |f: &Frames| -> ZmqMessage {
        let refs: Vec<&[u8]> = f.iter().map(Vec::as_slice).collect();
        message(&refs)
    };
    let mut matched = 0;
    if dealer {
        let mut socket = DealerSocket::with_options(options());
        socket.connect(&endpoint(port)).await.unwrap();
        for i in 0..100 {
            socket.send(as_refs(&request(i))).await.unwrap();
        }
        for i in 0..100 {
            assert_eq!(recv(&mut socket).await, expected(i), "dealer {client} #{i}");
            matched += 1;
        }
    } else {
        let mut socket = req(port).await;
        for i in 0..100 {
            socket.send(as_refs(&request(i))).await.unwrap();
            assert_eq!(recv(&mut socket).await, expected(i), "req {client} #{i}");
            matched += 1;
        }
    }
    matched
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_serves_concurrent_req_and_dealer_clients() {
    let port = free_port();
    let _service = start("router", port, None);

    // Clients 0-2 are REQ (envelope: identity + delimiter), 3-4 DEALER
    // (identity only; their bodies contain empty frames of their own).
    let clients: Vec<_> = (0..5)
        .map(|client| tokio::spawn(router_client(port, client, client >= 3)))
        .collect();
    for (client, handle) in clients.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), 100, "client {client}");
    }
}

#[tokio::test]
async fn memory_keeps_every_acknowledged_write_across_sigkill() {
    let data = tempfile::Builder::new()
        .prefix("mesh-demo-data-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let mut service = start("memory", port, Some(data.path()));

    let mut socket = req(port).await;
    assert_eq!(call(&mut socket, &[b"health"]).await, owned(&[b"ok"]));
    for i in 0..50 {
        let (key, value) = (format!("key-{i}"), format!("value {i}\x00"));
        let reply = call(&mut socket, &[b"put", key.as_bytes(), value.as_bytes()]).await;
        assert_eq!(reply, owned(&[b"ok"]), "put {key}");
    }
    assert_eq!(call(&mut socket, &[b"count"]).await, owned(&[b"50"]));

    service.kill();
    drop(socket);
    // The crate's REQ never reconnects to a restarted peer, so a new
    // socket is needed (see the report on zeromq 0.7).
    let _service = start("memory", port, Some(data.path()));
    let mut socket = req(port).await;
    assert_eq!(call(&mut socket, &[b"count"]).await, owned(&[b"50"]));
    for i in 0..50 {
        let (key, value) = (format!("key-{i}"), format!("value {i}\x00"));
        let reply = call(&mut socket, &[b"get", key.as_bytes()]).await;
        assert_eq!(reply, owned(&[value.as_bytes()]), "get {key}");
    }
    let reply = call(&mut socket, &[b"get", b"key-50"]).await;
    assert_eq!(reply, owned(&[b"missing"]));
    let reply = call(&mut socket, &[b"put", b"only-key"]).await;
    assert!(reply[0].starts_with(b"error: put takes 2"), "{reply:?}");
}
