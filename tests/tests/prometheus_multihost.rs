//! The real Prometheus server (Debian's `prometheus`) scrapes a running
//! test mesh's coordinator with the shipped `deploy/prometheus.yml`, and
//! its HTTP API answers for every host, the failover group, a container
//! restart counted after a kill, and the round-trip histogram of requests
//! through a bridge. Needs root, podman, /dev/fuse,
//! e2fsprogs, curl and prometheus: CI runs it (scripts/install-deps.sh).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::process::{self, Proc};
use mesh_tests::volumes;

/// An instant query through Prometheus' HTTP API, in the coordinator's
/// namespace: the result vector.
fn query(mesh: &MeshFixture, q: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut cmd = process::command(
        Some(&mesh.hosts[&mesh.coordinator_host]),
        std::path::Path::new("curl"),
    );
    cmd.args([
        "-sS",
        "--max-time",
        "5",
        "-G",
        "http://127.0.0.1:9090/api/v1/query",
    ])
    .arg("--data-urlencode")
    .arg(format!("query={q}"));
    let out = process::run(cmd);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(v.to_string());
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn prometheus_scrapes_the_coordinator_with_the_shipped_config() {
    if !require_podman("prometheus_scrapes_the_coordinator_with_the_shipped_config") {
        return;
    }
    ensure_demo_image();
    let mesh = volumes::start_bridged_mesh();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus.yml"),
    )
    .unwrap();
    // The shipped file, scraping every second so the test is quick.
    let config = mesh.state.path().join("prometheus.yml");
    std::fs::write(&config, shipped.replace("5s", "1s")).unwrap();
    let data = mesh.state.path().join("prometheus-data");
    let mut cmd = process::command(
        Some(&mesh.hosts[&mesh.coordinator_host]),
        std::path::Path::new("prometheus"),
    );
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--web.listen-address=127.0.0.1:9090");
    let _prometheus = Proc::spawn("prometheus", cmd);
    let ready = mesh_tests::wait::until(
        "Prometheus to have scraped every host Ready",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let r = query(&mesh, "mesh_node_state{state=\"ready\"} == 1")?;
            Ok((r.len() == volumes::HOSTS.len()).then_some(r))
        },
    );
    let nodes: Vec<&str> = ready
        .iter()
        .filter_map(|s| s["metric"]["node"].as_str())
        .collect();
    for host in volumes::HOSTS {
        assert!(nodes.contains(&host), "{host} missing from {nodes:?}");
    }
    let epoch = query(&mesh, "mesh_failover_epoch{group=\"memory\"}").unwrap();
    assert_eq!(epoch.len(), 1, "{epoch:?}");
    assert_eq!(value(&epoch[0]), 1.0);
    // A container killed behind its agent's back is restarted, and the
    // restart is counted.
    mesh.kill_container(volumes::PRIMARY, "memory-db");
    mesh_tests::wait::until(
        "Prometheus to see the restart counted",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let r = query(
                &mesh,
                "mesh_container_restarts_total{container=\"memory-db\",node=\"pc2\"}",
            )?;
            Ok(r.first().is_some_and(|s| value(s) >= 1.0).then_some(()))
        },
    );
    // Requests through mainpc's bridge endpoint to the service on pc2: the
    // round-trip histogram has their samples, and the tunnel is up.
    mesh_tests::wait::until(
        "writes through the bridge to be acknowledged",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || Ok(volumes::write_bridged(&mesh, 1, 20).then_some(())),
    );
    let bridge = "node=\"mainpc\",service=\"memory-db\"";
    mesh_tests::wait::until(
        "Prometheus to hold the bridge's round trips",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let count = query(&mesh, &format!("mesh_bridge_rtt_seconds_count{{{bridge}}}"))?;
            let inf = query(
                &mesh,
                &format!("mesh_bridge_rtt_seconds_bucket{{{bridge},le=\"+Inf\"}}"),
            )?;
            let out = query(
                &mesh,
                &format!("mesh_bridge_messages_total{{{bridge},direction=\"out\"}}"),
            )?;
            let done = [count, inf, out]
                .iter()
                .all(|r| r.first().is_some_and(|s| value(s) >= 20.0));
            Ok(done.then_some(()))
        },
    );
    let p99 = query(
        &mesh,
        &format!("histogram_quantile(0.99, mesh_bridge_rtt_seconds_bucket{{{bridge}}})"),
    )
    .unwrap();
    let p99 = p99.first().map(value).unwrap_or(f64::NAN);
    assert!(p99 > 0.0 && p99 < 10.0, "bridge p99 {p99} s");
    // The writes were fsynced through the standby: the volume's fsync
    // histogram has them.
    mesh_tests::wait::until(
        "Prometheus to hold the volume's fsync round trips",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let r = query(&mesh, "mesh_volume_fsync_seconds_count{group=\"memory\"}")?;
            Ok(r.first().is_some_and(|s| value(s) >= 1.0).then_some(()))
        },
    );
    let up = query(&mesh, "mesh_tunnel_up{node=\"mainpc\",peer=\"pc2\"}").unwrap();
    assert!(up.first().is_some_and(|s| value(s) == 1.0), "{up:?}");
    // And the event history has the restart, for that node.
    let out = mesh.meshctl("mainpc", &["events", "--node", "pc2"]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains("pc2/memory-db: restarted by its agent"),
        "{events}"
    );
}
