//! The REQ/REP bridge's own ZMTP against libzmq itself (Debian's python3-zmq): a libzmq REP
//! service behind the bridge, libzmq REQ and DEALER clients in front of it, multipart and
//! large messages, pipelined requests, and a CURVE client refused with a reason instead of a
//! hang. CI installs python3-zmq (scripts/install-deps.sh); there the test fails without it.

#![allow(clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mesh_bridge::{InFlightPolicy, Pattern};

const PYTHON: &str = "/usr/bin/python3";

/// Kills the child on drop, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn libzmq_present() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import zmq"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("python3-zmq is missing: run scripts/install-deps.sh");
    }
    if !ok {
        eprintln!("skipping: python3-zmq is not installed (scripts/install-deps.sh installs it)");
    }
    ok
}

/// A libzmq REP echo on a free loopback port; its endpoint.
fn rep_service() -> (Reaped, String) {
    let script = r#"
import zmq, sys
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    parts = s.recv_multipart()
    s.send_multipart([b"rep:" + parts[0]] + parts[1:])
"#;
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the libzmq REP service");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("its port");
    let port: u16 = line.trim().parse().expect("a port number");
    (Reaped(child), format!("tcp://127.0.0.1:{port}"))
}

/// Runs a libzmq client script against `endpoint`; its stdout (it prints "ok" when every
/// check passed) and stderr.
async fn client(script: &'static str, endpoint: String) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(PYTHON)
            .args(["-c", script, &endpoint])
            .output()
            .expect("run the libzmq client");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .expect("client thread")
}

const REQ_CLIENT: &str = r#"
import zmq, sys
ctx = zmq.Context()
s = ctx.socket(zmq.REQ)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
for i in range(200):
    s.send_multipart([b"m%d" % i, b"second", b""])
    assert s.recv_multipart() == [b"rep:m%d" % i, b"second", b""], i
big = bytes(range(256)) * 4096 * 4  # 4 MiB
s.send(big)
assert s.recv() == b"rep:" + big
print("ok")
"#;

const DEALER_CLIENT: &str = r#"
import zmq, sys
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.RCVTIMEO, 10000)
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.IDENTITY, b"python-dealer")
s.connect(sys.argv[1])
n = 2000
for i in range(n):
    s.send_multipart([b"", b"%d" % i])
got = sorted(int(s.recv_multipart()[1][4:]) for _ in range(n))
assert got == list(range(n)), got[:10]
print("ok")
"#;

const CURVE_CLIENT: &str = r#"
import zmq, sys
ctx = zmq.Context()
s = ctx.socket(zmq.REQ)
pub, sec = zmq.curve_keypair()
spub, _ = zmq.curve_keypair()
s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, spub
s.setsockopt(zmq.RCVTIMEO, 1500)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
s.send(b"x")
try:
    s.recv()
    print("answered")
except zmq.Again:
    print("refused")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_clients_and_services_talk_through_the_bridge() {
    if !libzmq_present() {
        return;
    }
    within(60, async {
        let mesh = Mesh::new("home");
        let a = mesh.agent("mainpc");
        let b = mesh.agent("pc2");
        let (_service, endpoint) = rep_service();
        let (bridge, _target) = bridge(
            &a,
            &b,
            "py-rep",
            Pattern::ReqRep,
            &endpoint,
            InFlightPolicy::Error,
        )
        .await;
        let local = bridge.endpoint().to_string();
        let out = client(REQ_CLIENT, local.clone()).await;
        assert_eq!(out.trim(), "ok", "libzmq REQ through the bridge: {out}");
        let out = client(DEALER_CLIENT, local.clone()).await;
        assert_eq!(out.trim(), "ok", "libzmq DEALER through the bridge: {out}");
        // A CURVE client gets no answer (the local endpoint speaks NULL), and the bridge
        // still serves others afterwards.
        let out = client(CURVE_CLIENT, local.clone()).await;
        assert_eq!(out.trim(), "refused", "{out}");
        let out = tokio::time::timeout(Duration::from_secs(30), client(REQ_CLIENT, local))
            .await
            .expect("in time");
        assert_eq!(out.trim(), "ok", "{out}");
    })
    .await;
}
