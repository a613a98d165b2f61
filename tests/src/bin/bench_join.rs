//! Join benchmark (issue #14): from starting `mesh-agent join` on a fresh
//! host (a network namespace) with a one-use token to the node Ready in
//! the coordinator's node list, over N joins. Each join is a new name, a
//! new key, a new token; the node is removed after it (its certificate
//! revoked), so the next one starts from a clean slate.
//!
//! Ready is polled with `meshctl nodes -o json` every 20 ms, so each
//! figure includes up to one poll (a meshctl process and its TLS
//! handshake, ~30-60 ms) of observation delay.
//!
//! Needs root. Run:
//! `cargo build --release --bins && target/release/bench-join --joins 20`

// A benchmark: a failed step ends it with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::process::{self, Proc};
use mesh_tests::{binaries, wait};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 20)]
    joins: usize,
}

fn main() {
    let args = Args::parse();
    if !mesh_tests::require_root("bench-join") {
        std::process::exit(1);
    }
    let mut mesh = MeshFixture::start(&["mainpc"], MeshOptions::default());
    mesh.wait_ready_with_inventory("mainpc", Duration::from_secs(30));
    let host = mesh.lan.add_host("joiner");
    mesh.hosts.insert("joiner".into(), host.clone());
    let mut times = Vec::new();
    for i in 0..args.joins {
        let name = format!("j{i}");
        let out = mesh.meshctl(
            "mainpc",
            &["token", "create", "--name", &name, "-o", "json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = v["token"].as_str().unwrap().to_string();
        let dir = tempfile::Builder::new()
            .prefix("mesh-join-")
            .tempdir()
            .unwrap();
        let mut cmd = process::command(Some(&host), &binaries::path("mesh-agent"));
        cmd.arg("--certs-dir")
            .arg(dir.path())
            .args([
                "--heartbeat-ms",
                "200",
                "--advertise-address",
                &host.address,
            ])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("join")
            .arg(mesh.coordinator_address())
            .args(["--token", &token, "--name", &name]);
        let started = Instant::now();
        let mut agent = Proc::spawn(&format!("agent-{name}"), cmd);
        wait::until(
            "the joined node to be Ready",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                let nodes = mesh.nodes_json()?;
                Ok(MeshFixture::node(&nodes, &name)
                    .filter(|n| n["state"] == "ready")
                    .map(|_| ()))
            },
        );
        let took = started.elapsed();
        times.push(took);
        eprintln!("join {i}: {:.1} ms", took.as_secs_f64() * 1e3);
        agent.kill();
        let out = mesh.meshctl("mainpc", &["nodes", "remove", &name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "joins: {}  p50 {:.1} ms  p90 {:.1} ms  min {:.1} ms  max {:.1} ms",
        times.len(),
        ms(p(0.5)),
        ms(p(0.9)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}
