//! `meshctl logs -f` streams: a container on pc2 writes a numbered line
//! every 200 ms, and `meshctl logs pc2 ticker -f` on mainpc prints new
//! lines as they come (server-side stream from pc2's agent through the
//! coordinator, no polling), in order; a container that does not exist is
//! a clear error. Needs root and podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_system_busybox_image, require_podman, BUSYBOX_IMAGE};

fn ticker() -> String {
    format!(
        r#"
[[containers]]
name = "ticker"
group = "work"
image = "{BUSYBOX_IMAGE}"
command = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
"#
    )
}

/// Kills the follower on drop, also when the test fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn logs_follow_streams_new_lines_as_they_are_written() {
    if !require_podman("logs_follow_streams_new_lines_as_they_are_written") {
        return;
    }
    ensure_system_busybox_image();
    let mesh = MeshFixture::start_with_containers(&["mainpc", "pc2"]);
    let out = mesh.set_containers("pc2", &ticker());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mesh.wait_container("pc2", "ticker", "running", Duration::from_secs(60), |r| {
        r["state"] == "running"
    });
    let mut cmd = mesh.meshctl_command("mainpc", &["logs", "pc2", "ticker", "-f", "--tail", "1"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Child(cmd.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    // Ten new lines, in order, arriving over time (not in one batch at
    // the end: a poll-and-exit would print them at once or not at all).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got: Vec<(Instant, u64)> = Vec::new();
    while got.len() < 10 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, line) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {} lines followed: {got:?}", got.len()));
        let n: u64 = line
            .strip_prefix("tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        got.push((at, n));
    }
    for w in got.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "lines out of order or missing: {got:?}");
    }
    let spread = got[9].0.duration_since(got[0].0);
    assert!(
        spread >= Duration::from_millis(900),
        "ten lines written 200 ms apart arrived within {spread:?}: not followed live"
    );
    drop(child);
    // A container that does not exist: an error that names it.
    let out = mesh.meshctl("mainpc", &["logs", "pc2", "nosuch", "-f"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch"), "{err}");
}
