//! The control loop across restarts (network namespaces, real agents with
//! their own Podman, real demo-service containers): a coordinator that
//! restarts keeps numbering directories above what agents hold, so bridges
//! on every host follow a service that moves afterwards; and heartbeats,
//! as the coordinator receives them, never wait while services move (the
//! failover leases of the next issues depend on it). Needs root and
//! podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::podman::{ensure_demo_image, require_podman, DEMO_IMAGE};
use mesh_tests::wait;
use serde_json::Value;

const TOPOLOGY: &str = r#"
[[hosts]]
name = "mainpc"
labels = { role = "mainpc" }
[[hosts]]
name = "pc2"
labels = { role = "pc2" }
[[hosts]]
name = "pc3"
labels = { role = "pc3" }

[[groups]]
name = "memory-system"
constraints = { role = "ROLE" }
[[groups.services]]
name = "memory-orchestrator"
image = "IMAGE"
env = { DEMO_MODE = "router", DEMO_NAME = "memory-orchestrator" }
ports = ["7140:5555"]
[groups.services.health]
zmq = { port = 5555 }
interval_ms = 200

[[bridges]]
service = "memory-orchestrator"
port = 7140
pattern = "router"
in_flight = "retry-once"
"#;

const HOSTS: [&str; 3] = ["mainpc", "pc2", "pc3"];

/// Heartbeats every 500 ms, the agent's default.
const HEARTBEAT_MS: u64 = 500;

fn apply(mesh: &MeshFixture, role: &str) {
    let file = mesh.state.path().join(format!("loop-{role}.toml"));
    std::fs::write(
        &file,
        TOPOLOGY.replace("IMAGE", DEMO_IMAGE).replace("ROLE", role),
    )
    .unwrap();
    let out = mesh.meshctl(
        "mainpc",
        &[
            "place",
            &file.to_string_lossy(),
            "--apply",
            "--timeout",
            "120",
        ],
    );
    assert!(
        out.status.success(),
        "apply with the service on {role}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `meshctl check` passes from every host with the service on
/// `host`: reached directly there, through the tunnel everywhere else.
fn wait_check_on(mesh: &MeshFixture, host: &str) {
    wait::until(
        &format!("check to pass everywhere with memory-orchestrator on {host}"),
        Duration::from_secs(45),
        Duration::from_millis(300),
        || {
            let out = mesh.meshctl("mainpc", &["check", "-o", "json", "--timeout-ms", "2000"]);
            let check: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let rows_ok = HOSTS.iter().all(|from| {
                check["hosts"].as_array().is_some_and(|hosts| {
                    hosts.iter().any(|h| {
                        h["node"] == *from
                            && h["bridges"].as_array().is_some_and(|b| {
                                b.iter().any(|b| {
                                    b["service"] == "memory-orchestrator"
                                        && b["ok"] == true
                                        && b["host"] == host
                                        && b["via"]
                                            == if *from == host { "direct" } else { "tunnel" }
                                })
                            })
                    })
                })
            });
            if out.status.success() && check["ok"] == true && rows_ok {
                Ok(Some(()))
            } else {
                Err(check.to_string())
            }
        },
    )
}

/// 5 REQ clients x 40 requests from `node` through its local endpoint.
fn requests_pass_from(mesh: &MeshFixture, node: &str) {
    let (report, ok) = mesh.demo_client(
        node,
        &[
            (
                "DEMO_CONNECT",
                format!("tcp://{}:7140", mesh.host(node).address),
            ),
            ("DEMO_CLIENTS", "5".into()),
            ("DEMO_REQUESTS", "40".into()),
        ],
    );
    assert!(ok, "from {node}: {report:#}");
    assert_eq!(report["replies_ok"], 200, "from {node}: {report:#}");
}

/// (longest gap in microseconds, heartbeats) of `node`'s current session.
fn heartbeat_gaps(mesh: &MeshFixture, node: &str) -> (u64, u64) {
    let nodes = mesh.nodes_json().unwrap();
    let n = MeshFixture::node(&nodes, node).unwrap();
    (
        n["heartbeat_gap_max_us"].as_u64().unwrap(),
        n["session_heartbeats"].as_u64().unwrap(),
    )
}

#[test]
fn bridges_follow_moves_after_a_coordinator_restart_and_heartbeats_never_wait() {
    if !require_podman("bridges_follow_moves_after_a_coordinator_restart_and_heartbeats_never_wait")
    {
        return;
    }
    ensure_demo_image();
    let mut mesh = MeshFixture::start(
        &HOSTS,
        MeshOptions {
            containers: true,
            heartbeat_ms: HEARTBEAT_MS,
            ..MeshOptions::default()
        },
    );
    for host in HOSTS {
        mesh.wait_ready_with_inventory(host, Duration::from_secs(30));
    }
    apply(&mesh, "pc2");
    wait_check_on(&mesh, "pc2");

    // A new coordinator process, same store: its directories must still
    // be newer than what the agents hold, or they ignore the move.
    mesh.restart_coordinator();
    for host in HOSTS {
        mesh.wait_ready_with_inventory(host, Duration::from_secs(30));
    }
    let sessions_before: Vec<u64> = HOSTS.iter().map(|h| heartbeat_gaps(&mesh, h).1).collect();
    apply(&mesh, "pc3");
    wait_check_on(&mesh, "pc3");
    requests_pass_from(&mesh, "mainpc");
    requests_pass_from(&mesh, "pc2");

    // More moves, onto and off the hosts of bridge endpoints (an endpoint
    // giving its port back took the agent's session loop up to 3 s).
    for role in ["mainpc", "pc2", "pc3", "mainpc"] {
        apply(&mesh, role);
        wait_check_on(&mesh, role);
    }

    let limit_us = HEARTBEAT_MS * 1000 * 3 / 2;
    for (host, before) in HOSTS.iter().zip(sessions_before) {
        let (gap_us, beats) = heartbeat_gaps(&mesh, host);
        eprintln!("{host}: {beats} heartbeats, longest gap {gap_us} us");
        assert!(
            beats > before,
            "{host}: its session restarted during the moves ({beats} heartbeats now, {before} before)"
        );
        assert!(
            gap_us < limit_us,
            "{host}: a heartbeat gap of {gap_us} us during service moves, over 1.5x the {HEARTBEAT_MS} ms interval"
        );
    }
}
