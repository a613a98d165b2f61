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
use mesh_tests::moves::{
    apply_on as apply, heartbeat_gaps, requests_pass_from, wait_check_on, HOSTS,
};
use mesh_tests::podman::{ensure_demo_image, require_podman};

/// Heartbeats every 500 ms, the agent's default.
const HEARTBEAT_MS: u64 = 500;

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
    requests_pass_from(&mesh, "mainpc", 5, 40);
    requests_pass_from(&mesh, "pc2", 5, 40);

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
