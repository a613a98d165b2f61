//! Two hosts, `mainpc` and `pc2`, in their own network namespaces; the
//! coordinator on mainpc, an agent on each; real binaries and mutual TLS.
//! Needs root (namespaces): runs in CI, skips with a reason elsewhere.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::require_root;

#[test]
fn both_hosts_become_ready_with_inventory() {
    if !require_root("both_hosts_become_ready_with_inventory") {
        return;
    }
    let mesh = MeshFixture::start(&["mainpc", "pc2"], MeshOptions::default());
    for name in ["mainpc", "pc2"] {
        let node = mesh.wait_ready_with_inventory(name, Duration::from_secs(20));
        assert_eq!(node["address"], mesh.host(name).address);
        assert_eq!(node["connected"], true);
        assert_eq!(node["labels"]["role"], name);
        assert!(node["cpu"]["count"].as_u64().unwrap() >= 1, "{node}");
        assert!(
            node["memory"]["total_bytes"].as_u64().unwrap() > 0,
            "{node}"
        );
        assert!(node["disk"]["total_bytes"].as_u64().unwrap() > 0, "{node}");
        // These machines have no GPU: the fact is reported, not hidden.
        let gpu = &node["gpu"];
        if gpu["source"] != "nvml" {
            assert_eq!(gpu["source"], "none", "{gpu}");
            assert!(
                gpu["nvml_unavailable"]
                    .as_str()
                    .unwrap()
                    .starts_with("no NVML"),
                "{gpu}"
            );
        }
    }
    // The readable table and status agree.
    let table = mesh.meshctl("pc2", &["nodes"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        text.contains("mainpc") && text.contains("pc2") && text.contains("ready"),
        "{text}"
    );
    let status = mesh.meshctl("mainpc", &["status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["mesh"], "testmesh");
    assert_eq!(status["nodes"]["ready"], 2);
}

#[test]
fn cut_host_goes_suspect_then_down_and_recovers_without_restart() {
    if !require_root("cut_host_goes_suspect_then_down_and_recovers_without_restart") {
        return;
    }
    let options = MeshOptions {
        heartbeat_ms: 200,
        suspect_after: 3,
        down_after: 8,
        ..MeshOptions::default()
    };
    let mut mesh = MeshFixture::start(&["mainpc", "pc2"], options.clone());
    mesh.wait_state("pc2", "ready", Duration::from_secs(20));
    let agent_pid = mesh.agents["pc2"].pid();
    let coordinator_pid = mesh.coordinator.pid();

    let pc2 = mesh.host("pc2").clone();
    let cut_at = Instant::now();
    mesh.lan.cut(&pc2);
    let suspect_after = Duration::from_millis(options.heartbeat_ms * options.suspect_after as u64);
    let down_after = Duration::from_millis(options.heartbeat_ms * options.down_after as u64);
    // Allowance for the last heartbeat in flight, the 100 ms liveness tick
    // and polling through meshctl.
    let slack = Duration::from_millis(1500);

    mesh.wait_state("pc2", "suspect", suspect_after + slack);
    let suspect_seen = cut_at.elapsed();
    let node = mesh.wait_state("pc2", "down", down_after + slack);
    let down_seen = cut_at.elapsed();
    assert!(suspect_seen < down_seen);
    // The coordinator recorded each change with its time, in order.
    let history = node["history"].as_array().unwrap();
    let last_two: Vec<&str> = history[history.len() - 2..]
        .iter()
        .map(|c| c["to"].as_str().unwrap())
        .collect();
    assert_eq!(last_two, ["suspect", "down"]);
    let t_suspect = history[history.len() - 2]["at_unix_ms"].as_i64().unwrap();
    let t_down = history[history.len() - 1]["at_unix_ms"].as_i64().unwrap();
    let between = Duration::from_millis((t_down - t_suspect) as u64);
    assert!(
        between + Duration::from_millis(250) >= down_after - suspect_after,
        "suspect -> down took {between:?}, policy says {:?}",
        down_after - suspect_after
    );
    // mainpc was never affected.
    let nodes = mesh.nodes_json().unwrap();
    assert_eq!(
        MeshFixture::node(&nodes, "mainpc").unwrap()["state"],
        "ready"
    );

    mesh.lan.restore(&pc2);
    // Reconnect backoff is capped at 5 s; HTTP/2 keepalive notices the dead
    // connection within ~6 s.
    mesh.wait_state("pc2", "ready", Duration::from_secs(20));
    assert_eq!(mesh.agents["pc2"].pid(), agent_pid);
    assert!(
        mesh.agents.get_mut("pc2").unwrap().is_running(),
        "agent restarted or died"
    );
    assert_eq!(mesh.coordinator.pid(), coordinator_pid);
    assert!(mesh.coordinator.is_running());
}

#[test]
fn killed_agent_goes_down_and_a_new_agent_recovers_the_node() {
    if !require_root("killed_agent_goes_down_and_a_new_agent_recovers_the_node") {
        return;
    }
    let mut mesh = MeshFixture::start(&["mainpc", "pc2"], MeshOptions::default());
    mesh.wait_state("pc2", "ready", Duration::from_secs(20));
    mesh.agents.get_mut("pc2").unwrap().kill();
    let node = mesh.wait_state("pc2", "down", Duration::from_secs(10));
    assert_eq!(node["connected"], false);
    mesh.start_agent("pc2");
    let node = mesh.wait_state("pc2", "ready", Duration::from_secs(20));
    assert_eq!(node["connected"], true);
}
