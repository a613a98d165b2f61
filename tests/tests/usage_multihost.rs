//! Per-container resource usage from real Podman stats: a container on
//! pc2 that burns CPU and holds memory shows up in `meshctl top -o json`
//! and in `/metrics` with its CPU, memory and processes; and the mapping
//! the GPU accounting uses (a process's cgroup to its container id) gives
//! that container's id for its real process. (No GPU here: the NVML side
//! is unit-tested with fake processes.) The agent's own `/metrics` shows
//! the same figures with the coordinator gone. Needs root, podman and
//! curl: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_system_busybox_image, require_podman, BUSYBOX_IMAGE};

fn busy() -> String {
    format!(
        r#"
[[containers]]
name = "busy"
group = "work"
image = "{BUSYBOX_IMAGE}"
command = ["/bin/sh", "-c", "while :; do :; done & exec sleep 3600"]
memory_mib = 64
"#
    )
}

#[test]
fn top_shows_each_containers_cpu_memory_and_processes() {
    if !require_podman("top_shows_each_containers_cpu_memory_and_processes") {
        return;
    }
    ensure_system_busybox_image();
    let mut mesh = MeshFixture::start_with_containers(&["mainpc", "pc2"]);
    let out = mesh.set_containers("pc2", &busy());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The change is in the event history with who made it.
    let out = mesh.meshctl("mainpc", &["events", "--node", ""]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains("SetContainers by spiffe://testmesh/admin/admin: allowed"),
        "{events}"
    );
    mesh.wait_container("pc2", "busy", "running", Duration::from_secs(60), |r| {
        r["state"] == "running"
    });
    let row = mesh_tests::wait::until(
        "meshctl top to show the busy container using CPU",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let out = mesh.meshctl("mainpc", &["-o", "json", "top", "pc2"]);
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let row = v
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["container"] == "busy").cloned());
            Ok(row.filter(|r| r["cpu_percent"].as_f64().is_some_and(|c| c > 10.0)))
        },
    );
    assert_eq!(row["node"], "pc2");
    assert_eq!(row["group"], "work");
    assert!(row["memory_bytes"].as_u64().unwrap() > 0, "{row}");
    // 64 MiB asked: Podman's limit says so.
    assert_eq!(
        row["memory_limit_bytes"].as_u64().unwrap(),
        64 << 20,
        "{row}"
    );
    assert!(row["pids"].as_u64().unwrap() >= 2, "{row}");
    // The table, for people.
    let out = mesh.meshctl("mainpc", &["top"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("busy") && table.contains("CPU"), "{table}");
    // The same figures are metrics.
    let metrics = mesh.scrape_metrics().unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("mesh_container_memory_bytes{") && l.contains("container=\"busy\""))
        .unwrap_or_else(|| panic!("no memory sample for busy in\n{metrics}"));
    assert!(line.contains("node=\"pc2\""), "{line}");
    // The process-to-container mapping the GPU accounting uses, on the
    // container's real process.
    let inspect = mesh
        .podman("pc2")
        .args(["inspect", "--format", "{{.State.Pid}}", "mesh-busy"])
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&inspect.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        mesh_node_agent::usage::container_of_pid(pid).as_deref(),
        row["id"].as_str(),
        "pid {pid}"
    );
    // A host process belongs to no container.
    assert_eq!(
        mesh_node_agent::usage::container_of_pid(std::process::id()),
        None
    );
    // pc2's agent serves its own /metrics, under the same names, also
    // while the coordinator is gone.
    mesh.restart_agent_with_env("pc2", &[("MESH_AGENT_METRICS_LISTEN", "127.0.0.1:9465")]);
    mesh.coordinator.kill();
    let pc2 = mesh.host("pc2").clone();
    mesh_tests::wait::until(
        "pc2's agent to serve its own metrics with the busy container's usage",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let mut cmd = mesh_tests::process::command(Some(&pc2), std::path::Path::new("curl"));
            cmd.args(["-sS", "--max-time", "5", "http://127.0.0.1:9465/metrics"]);
            let out = mesh_tests::process::run(cmd);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let ok = text.contains("mesh_node_load1{node=\"pc2\"}")
                && text.lines().any(|l| {
                    l.starts_with("mesh_container_memory_bytes{")
                        && l.contains("container=\"busy\"")
                        && !l.ends_with(" 0.0")
                });
            Ok(ok.then_some(()))
        },
    );
}
