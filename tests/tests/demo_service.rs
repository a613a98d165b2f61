//! `mesh-demo-service`, the ZeroMQ service the demo mesh runs in
//! containers, as a native process on loopback (no Podman, no root):
//! REP health and multipart echo, a ROUTER serving REQ and DEALER clients
//! at once, and the memory and sqlite modes keeping every acknowledged
//! write across a SIGKILL. Clients use the `zeromq` crate, as the mesh's bridge will.
//! Then the pub mode (numbered messages, health on a second socket) and
//! the client mode's load patterns against the service and against test
//! servers that misbehave on purpose, judged by its JSON report.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mesh_tests::binaries;
use mesh_tests::process::{self, Proc};
use serde_json::{json, Value};
use zeromq::{
    DealerSocket, PubSocket, ReqSocket, RouterSocket, Socket, SocketOptions, SocketRecv,
    SocketSend, SubSocket, ZmqMessage,
};

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

type Frames = Vec<Vec<u8>>;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn endpoint(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// The service binary with every `DEMO_*` of the caller's environment
/// cleared, so only the settings a test gives count.
fn demo_command() -> Command {
    let mut cmd = Command::new(binaries::path("mesh-demo-service"));
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("DEMO_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// Starts the service with flags only.
fn start(mode: &str, port: u16, data_dir: Option<&Path>) -> Proc {
    let mut cmd = demo_command();
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
        c.args(["--mode", "bogus"]);
        c
    });
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'bogus'"), "{err}");
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

/// The sqlite mode under a stream of numbered writes, SIGKILLed in the
/// middle of it (a write in flight), then read back by the sqlite-check
/// mode as a failover test reads the standby's copy: integrity ok, every
/// acknowledged key present, nothing present that was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_across_sigkill_mid_stream() {
    const BEFORE_KILL: usize = 200;
    let data = tempfile::Builder::new()
        .prefix("mesh-demo-sqlite-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let mut service = start("sqlite", port, Some(data.path()));
    let mut socket = req(port).await;
    assert_eq!(call(&mut socket, &[b"health"]).await, owned(&[b"ok"]));

    // The writer puts key-0, key-1, ... back to back until the service is
    // gone; `acked` counts the puts answered `ok`, `sent` the ones tried.
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0usize);
    let (killed_tx, mut killed_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        loop {
            let key = format!("key-{sent}");
            let request = message(&[b"put", key.as_bytes(), b"value"]);
            // Counted before it goes: a send cut short may still arrive.
            sent += 1;
            // A send to a peer that is gone may wait for one: the kill ends it.
            let delivered = tokio::select! {
                biased;
                result = socket.send(request) => result.is_ok(),
                _ = killed_rx.wait_for(|killed| *killed) => false,
            };
            if !delivered {
                break;
            }
            // A reply already there is taken even once the kill is known.
            let reply = tokio::select! {
                biased;
                reply = socket.recv() => reply,
                _ = killed_rx.wait_for(|killed| *killed) => break,
            };
            match reply {
                Ok(reply) => assert_eq!(frames(reply), owned(&[b"ok"]), "put {key}"),
                Err(_) => break,
            }
            acked_tx.send_modify(|n| *n += 1);
        }
        (*acked_tx.borrow(), sent)
    });

    tokio::time::timeout(
        Duration::from_secs(60),
        acked_rx.wait_for(|n| *n >= BEFORE_KILL),
    )
    .await
    .expect("the first writes were not acknowledged in time")
    .unwrap();
    service.kill();
    // The writer may have stopped already (its socket saw the peer go).
    killed_tx.send_replace(true);
    let (acked, sent) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer did not stop after the kill")
        .unwrap();
    assert!(
        acked >= BEFORE_KILL && sent <= acked + 1,
        "{acked} acked, {sent} sent"
    );
    eprintln!("{acked} puts acknowledged, {sent} sent before the kill");

    let output = tokio::task::spawn_blocking({
        let dir = data.path().to_path_buf();
        move || {
            let mut cmd = demo_command();
            cmd.args(["--mode", "sqlite-check", "--data-dir"]).arg(dir);
            cmd.output().unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["integrity_ok"], json!(true), "{report}");
    assert_eq!(report["integrity_check"], json!(["ok"]), "{report}");
    let keys: std::collections::BTreeSet<String> =
        serde_json::from_value(report["keys"].clone()).unwrap();
    for i in 0..acked {
        assert!(
            keys.contains(&format!("key-{i}")),
            "acknowledged key-{i} lost: {report}"
        );
    }
    // The one write in flight at the kill may or may not have committed.
    let sent_keys: std::collections::BTreeSet<String> =
        (0..sent).map(|i| format!("key-{i}")).collect();
    assert!(keys.is_subset(&sent_keys), "{report}");
    assert_eq!(report["records"], json!(keys.len()));
}

// ---------------------------------------------------------------------
// pub mode and client mode

/// Longest a client run may take in these tests before it counts as hung.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Starts the pub mode through the environment, as in a container.
fn start_pub(port: u16, health_port: u16, settings: &[(&str, &str)]) -> Proc {
    start_sender("pub", port, health_port, settings)
}

/// The pub or push mode (`mode`), named `pub-a`.
fn start_sender(mode: &str, port: u16, health_port: u16, settings: &[(&str, &str)]) -> Proc {
    let mut cmd = demo_command();
    cmd.env("DEMO_MODE", mode)
        .env("DEMO_NAME", "pub-a")
        .env("DEMO_BIND", endpoint(port))
        .env("DEMO_HEALTH_BIND", endpoint(health_port))
        .envs(settings.iter().copied());
    Proc::spawn(&format!("demo-{mode}"), cmd)
}

struct ClientRun {
    status: ExitStatus,
    report: Value,
    elapsed: Duration,
    stderr: String,
}

impl ClientRun {
    /// Every field of `expected` must have that value in the report.
    fn assert_fields(&self, expected: Value) {
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(&self.report[field], value, "field {field}\n{self}");
        }
    }

    fn problem(&self) -> &str {
        self.report["first_problem"].as_str().unwrap_or_default()
    }
}

impl std::fmt::Display for ClientRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}; report {}\nstderr:\n{}",
            self.status.code(),
            self.elapsed,
            self.report,
            self.stderr
        )
    }
}

/// Runs the client mode to its end with settings from the environment
/// (`DEMO_MODE=client` plus `settings`) and reads its one JSON line.
fn run_client(settings: &[(&str, String)]) -> ClientRun {
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = demo_command();
    cmd.env("DEMO_MODE", "client")
        .env("RUST_LOG", "warn")
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        // One JSON line: far below the pipe's buffer, so waiting first is safe.
        .stdout(Stdio::piped())
        .stderr(stderr_file.reopen().unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CLIENT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("client still running after {CLIENT_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let stderr = std::fs::read_to_string(stderr_file.path()).unwrap_or_default();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout:?}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(lines[0]).unwrap();
    for field in [
        "pattern",
        "clients",
        "requests_sent",
        "replies_ok",
        "replies_wrong",
        "bridge_errors",
        "errors",
        "messages_received",
        "in_order",
        "first_problem",
        "elapsed_ms",
        "p50_us",
        "p99_us",
    ] {
        assert!(report.get(field).is_some(), "no {field} in {report}");
    }
    assert_eq!(report.as_object().unwrap().len(), 13, "{report}");
    ClientRun {
        status,
        report,
        elapsed,
        stderr,
    }
}

/// The same from async tests, whose runtime must keep serving meanwhile.
async fn run_client_async(settings: Vec<(&'static str, String)>) -> ClientRun {
    tokio::task::spawn_blocking(move || run_client(&settings))
        .await
        .unwrap()
}

fn assert_latencies(run: &ClientRun) {
    let p50 = run.report["p50_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("{run}"));
    let p99 = run.report["p99_us"]
        .as_u64()
        .unwrap_or_else(|| panic!("{run}"));
    assert!(0 < p50 && p50 <= p99, "{run}");
}

#[test]
fn client_req_against_rep_10_clients_by_100() {
    let port = free_port();
    let _service = start("rep", port, None);
    // No wait for the bind: the client's connect retries while refused.
    let run = run_client(&[
        ("DEMO_CONNECT", endpoint(port)),
        ("DEMO_PATTERN", "req".into()),
        ("DEMO_CLIENTS", "10".into()),
        ("DEMO_REQUESTS", "100".into()),
    ]);
    assert!(run.status.success(), "{run}");
    run.assert_fields(json!({
        "pattern": "req",
        "clients": 10,
        "requests_sent": 1000,
        "replies_ok": 1000,
        "replies_wrong": 0,
        "errors": 0,
        "messages_received": 1000,
        "in_order": null,
        "first_problem": null,
    }));
    assert_latencies(&run);
}

#[test]
fn client_dealer_against_router_10_clients_by_100_window_10() {
    let port = free_port();
    let _service = start("router", port, None);
    let run = run_client(&[
        ("DEMO_CONNECT", endpoint(port)),
        ("DEMO_PATTERN", "dealer".into()),
        ("DEMO_CLIENTS", "10".into()),
        ("DEMO_REQUESTS", "100".into()),
        ("DEMO_WINDOW", "10".into()),
    ]);
    assert!(run.status.success(), "{run}");
    run.assert_fields(json!({
        "pattern": "dealer",
        "clients": 10,
        "requests_sent": 1000,
        "replies_ok": 1000,
        "replies_wrong": 0,
        "errors": 0,
        "messages_received": 1000,
        "in_order": null,
        "first_problem": null,
    }));
    assert_latencies(&run);
}

#[test]
fn client_16_mib_round_trips_req_to_rep_and_dealer_to_router() {
    let rep_port = free_port();
    let router_port = free_port();
    let _rep = start("rep", rep_port, None);
    let _router = start("router", router_port, None);
    for (pattern, port) in [("req", rep_port), ("dealer", router_port)] {
        let run = run_client(&[
            ("DEMO_CONNECT", endpoint(port)),
            ("DEMO_PATTERN", pattern.into()),
            ("DEMO_REQUESTS", "2".into()),
            ("DEMO_WINDOW", "2".into()),
            ("DEMO_SIZE", (16 * 1024 * 1024).to_string()),
            ("DEMO_TIMEOUT_MS", "60000".into()),
        ]);
        assert!(run.status.success(), "{pattern}: {run}");
        run.assert_fields(json!({
            "pattern": pattern,
            "clients": 1,
            "requests_sent": 2,
            "replies_ok": 2,
            "errors": 0,
        }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_publishes_in_order_and_answers_health() {
    let (port, health_port) = (free_port(), free_port());
    let _service = start_pub(
        port,
        health_port,
        &[("DEMO_TOPICS", "alpha, beta"), ("DEMO_RATE_HZ", "200")],
    );
    // The health probe as the agent sends it, on the second socket.
    let mut health = req(health_port).await;
    assert_eq!(call(&mut health, &[b"health"]).await, owned(&[b"ok"]));
    assert_eq!(call(&mut health, &[b"whoami"]).await, owned(&[b"pub-a"]));

    let run = run_client_async(vec![
        ("DEMO_CONNECT", endpoint(port)),
        ("DEMO_PATTERN", "sub".into()),
        ("DEMO_TOPICS", "alpha,beta".into()),
        ("DEMO_COUNT", "100".into()),
        ("DEMO_TIMEOUT_MS", "30000".into()),
    ])
    .await;
    assert!(run.status.success(), "{run}");
    run.assert_fields(json!({
        "pattern": "sub",
        "clients": 1,
        "requests_sent": 0,
        "replies_ok": 0,
        "errors": 0,
        "in_order": true,
        "first_problem": null,
        "p50_us": null,
        "p99_us": null,
    }));
    assert!(
        run.report["messages_received"].as_u64().unwrap() >= 200,
        "{run}"
    );
    assert_eq!(call(&mut health, &[b"health"]).await, owned(&[b"ok"]));
}

/// PUSH waits for a worker, so a PULL that connects late still gets every
/// message from the first, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_hands_every_message_to_a_late_pull_worker() {
    let (port, health_port) = (free_port(), free_port());
    let _service = start_sender(
        "push",
        port,
        health_port,
        &[
            ("DEMO_TOPICS", "jobs"),
            ("DEMO_RATE_HZ", "0"),
            ("DEMO_COUNT", "200"),
        ],
    );
    let mut health = req(health_port).await;
    assert_eq!(call(&mut health, &[b"health"]).await, owned(&[b"ok"]));
    // Nothing is lost while no worker is connected.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = run_client_async(vec![
        ("DEMO_CONNECT", endpoint(port)),
        ("DEMO_PATTERN", "pull".into()),
        ("DEMO_TOPICS", "jobs".into()),
        ("DEMO_COUNT", "200".into()),
        ("DEMO_TIMEOUT_MS", "20000".into()),
    ])
    .await;
    assert!(run.status.success(), "{run}");
    run.assert_fields(json!({
        "pattern": "pull",
        "messages_received": 200,
        "errors": 0,
        "in_order": true,
        "first_problem": null,
    }));
    assert_eq!(call(&mut health, &[b"health"]).await, owned(&[b"ok"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_stops_after_count_and_stays_healthy() {
    let (port, health_port) = (free_port(), free_port());
    let mut service = start_pub(
        port,
        health_port,
        &[
            ("DEMO_TOPICS", "t1,t2"),
            ("DEMO_RATE_HZ", "20"),
            ("DEMO_COUNT", "30"),
        ],
    );
    let mut health = req(health_port).await;
    assert_eq!(call(&mut health, &[b"health"]).await, owned(&[b"ok"]));
    let mut sub = SubSocket::with_options(options());
    sub.connect(&endpoint(port)).await.unwrap();
    sub.subscribe("t").await.unwrap();
    // 30 rounds at 20 Hz: 1.5 s. It joined early, so it sees the end.
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(2), sub.recv()).await {
            Err(_) => break, // quiet for 2 s: the publisher is idle
            Ok(message) => frames(message.unwrap()),
        };
        assert_eq!(message.len(), 2, "{message:?}");
        let topic = String::from_utf8(message[0].clone()).unwrap();
        let body = String::from_utf8(message[1].clone()).unwrap();
        let seq: u64 = body.strip_prefix("pub-a ").unwrap().parse().unwrap();
        if let Some(previous) = last.insert(topic.clone(), seq) {
            assert_eq!(seq, previous + 1, "{topic}");
        }
    }
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last["t1"], 29);
    assert_eq!(last["t2"], 29);
    assert!(service.is_running(), "{}", service.logs());
    assert_eq!(call(&mut health, &[b"health"]).await, owned(&[b"ok"]));
    let status = service
        .stop(Duration::from_secs(5))
        .expect("no exit on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn client_against_a_dead_endpoint_fails_within_its_timeout() {
    // Nothing listens there.
    let port = free_port();
    for pattern in ["req", "dealer", "sub"] {
        let run = run_client(&[
            ("DEMO_CONNECT", endpoint(port)),
            ("DEMO_PATTERN", pattern.into()),
            ("DEMO_CLIENTS", "3".into()),
            ("DEMO_TIMEOUT_MS", "500".into()),
        ]);
        assert_eq!(run.status.code(), Some(1), "{pattern}: {run}");
        assert!(run.elapsed < Duration::from_secs(5), "{pattern}: {run}");
        run.assert_fields(json!({
            "pattern": pattern,
            "replies_ok": 0,
            "messages_received": 0,
            "p50_us": null,
        }));
        assert!(run.report["errors"].as_u64().unwrap() >= 1, "{run}");
        assert!(
            run.problem().contains("cannot connect to"),
            "{pattern}: {run}"
        );
    }
    // Bad settings are reported the same way.
    let run = run_client(&[("DEMO_PATTERN", "req".into())]);
    assert_eq!(run.status.code(), Some(1), "{run}");
    assert!(run.problem().contains("DEMO_CONNECT"), "{run}");
}

/// A ROUTER echo server that never answers request 3 and answers
/// request 5 with its last byte changed.
async fn faulty_router(port: u16) -> tokio::task::JoinHandle<()> {
    let mut socket = RouterSocket::new();
    socket.bind(&endpoint(port)).await.unwrap();
    tokio::spawn(async move {
        while let Ok(received) = socket.recv().await {
            let mut request = frames(received);
            let Some(body) = request.last_mut() else {
                continue;
            };
            if body.starts_with(b"c0 s3 ") {
                continue;
            }
            if body.starts_with(b"c0 s5 ") {
                if let Some(byte) = body.last_mut() {
                    *byte ^= 0xff;
                }
            }
            let refs: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
            if socket.send(message(&refs)).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_counts_lost_and_wrong_replies_and_goes_on() {
    for pattern in ["req", "dealer"] {
        let port = free_port();
        let server = faulty_router(port).await;
        let run = run_client_async(vec![
            ("DEMO_CONNECT", endpoint(port)),
            ("DEMO_PATTERN", pattern.into()),
            ("DEMO_REQUESTS", "10".into()),
            ("DEMO_TIMEOUT_MS", "500".into()),
        ])
        .await;
        server.abort();
        assert_eq!(run.status.code(), Some(1), "{pattern}: {run}");
        // Request 3 timed out; a REQ is replaced and the rest still run.
        run.assert_fields(json!({
            "pattern": pattern,
            "requests_sent": 10,
            "replies_ok": 8,
            "replies_wrong": 1,
            "errors": 1,
            "messages_received": 9,
        }));
        let expected = match pattern {
            // One at a time: request 3's timeout comes first.
            "req" => "client 0 request 3: no reply within 500 ms",
            // Pipelined: the wrong reply to 5 arrives before 3 times out.
            _ => "client 0: the reply to request 5 differs from the request",
        };
        assert!(run.problem().contains(expected), "{pattern}: {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sub_reports_the_first_gap() {
    let port = free_port();
    let mut socket = PubSocket::new();
    socket.bind(&endpoint(port)).await.unwrap();
    // Publishes forever (the subscriber joins whenever it joins), one
    // number in 20 missing.
    let publisher = tokio::spawn(async move {
        let mut seq: u64 = 0;
        loop {
            let body = format!("gappy pub {seq}");
            if socket
                .send(message(&[b"events", body.as_bytes()]))
                .await
                .is_err()
            {
                break;
            }
            seq += if seq % 20 == 10 { 2 } else { 1 };
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let run = run_client_async(vec![
        ("DEMO_CONNECT", endpoint(port)),
        ("DEMO_PATTERN", "sub".into()),
        ("DEMO_COUNT", "100".into()),
        ("DEMO_TIMEOUT_MS", "30000".into()),
    ])
    .await;
    publisher.abort();
    assert_eq!(run.status.code(), Some(1), "{run}");
    run.assert_fields(json!({"pattern": "sub", "in_order": false, "errors": 0}));
    assert!(
        run.problem()
            .contains("gap: 1 message(s) missing on topic 'events' from 'gappy pub'"),
        "{run}"
    );
}
