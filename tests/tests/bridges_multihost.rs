//! Bridges between `mainpc` and `pc2` (network namespaces, real agents with
//! their own Podman, real demo-service containers): a service on pc2 is
//! reachable from mainpc at a stable endpoint through the agents' mutual-TLS
//! QUIC tunnel, directly on pc2, its address is in every container's
//! environment, a PUSHing service feeds a PULL worker on mainpc, and
//! `meshctl check` sees the tunnels and probes every
//! bridge, failing with a cause when the service goes away. Needs root and
//! podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_demo_image, require_podman, DEMO_IMAGE};
use mesh_tests::wait;
use serde_json::Value;

const TOPOLOGY: &str = r#"
[[hosts]]
name = "mainpc"
[[hosts]]
name = "pc2"

[[groups]]
name = "core"
prefer = ["mainpc"]
[[groups.services]]
name = "registry"
image = "IMAGE"
env = { DEMO_MODE = "router", DEMO_NAME = "registry" }
ports = ["7200:5555"]
[groups.services.health]
zmq = { port = 5555 }
interval_ms = 300

[[groups]]
name = "memory-system"
prefer = ["pc2"]
[[groups.services]]
name = "memory-orchestrator"
image = "IMAGE"
env = { DEMO_MODE = "router", DEMO_NAME = "memory-orchestrator" }
ports = ["7140:5555"]
[groups.services.health]
zmq = { port = 5555 }
interval_ms = 300

[[groups]]
name = "events"
prefer = ["pc2"]
[[groups.services]]
name = "event-bus"
image = "IMAGE"
env = { DEMO_MODE = "pub", DEMO_NAME = "bus", DEMO_TOPICS = "alpha,beta", DEMO_RATE_HZ = "200" }
ports = ["7150:5555"]
[groups.services.health]
zmq = { port = 5556 }
interval_ms = 300

[[groups]]
name = "work"
prefer = ["pc2"]
[[groups.services]]
name = "ventilator"
image = "IMAGE"
env = { DEMO_MODE = "push", DEMO_NAME = "ventilator", DEMO_TOPICS = "jobs", DEMO_COUNT = "300", DEMO_RATE_HZ = "0" }
ports = ["7160:5555"]
[groups.services.health]
zmq = { port = 5556 }
interval_ms = 300

[[bridges]]
service = "memory-orchestrator"
port = 7140
pattern = "router"

[[bridges]]
service = "ventilator"
port = 7160
pattern = "push"

[[bridges]]
service = "event-bus"
port = 7150
pattern = "pub"
"#;

/// The demo client on `node`; every answer must be correct.
fn client_container(mesh: &MeshFixture, node: &str, env: &[(&str, String)]) -> Value {
    let (report, ok) = mesh.demo_client(node, env);
    assert!(ok, "client on {node} failed: {report:#}");
    report
}

fn json_of(mesh: &MeshFixture, args: &[&str]) -> Result<Value, String> {
    let out = mesh.meshctl("mainpc", args);
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "meshctl {args:?}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(v)
}

fn bridge_row<'a>(check: &'a Value, from: &str, service: &str) -> Option<&'a Value> {
    check["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["node"] == from)?["bridges"]
        .as_array()?
        .iter()
        .find(|b| b["service"] == service)
}

#[test]
fn a_service_on_pc2_is_reachable_from_mainpc_through_the_tunnel() {
    if !require_podman("a_service_on_pc2_is_reachable_from_mainpc_through_the_tunnel") {
        return;
    }
    ensure_demo_image();
    let mesh = MeshFixture::start_with_containers(&["mainpc", "pc2"]);
    let file = mesh.state.path().join("bridged.toml");
    std::fs::write(&file, TOPOLOGY.replace("IMAGE", DEMO_IMAGE)).unwrap();
    let file = file.to_string_lossy().into_owned();
    let out = mesh.meshctl("mainpc", &["place", &file, "--apply", "--timeout", "120"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The directory says where it runs; every agent has it.
    let directory = wait::until(
        "the directory to place memory-orchestrator on pc2, healthy, with both tunnels",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let check = json_of(&mesh, &["check", "-o", "json"])?;
            let ok = check["ok"] == true;
            let via_tunnel = bridge_row(&check, "mainpc", "memory-orchestrator")
                .is_some_and(|b| b["ok"] == true && b["via"] == "tunnel");
            let direct = bridge_row(&check, "pc2", "memory-orchestrator")
                .is_some_and(|b| b["ok"] == true && b["via"] == "direct");
            if ok && via_tunnel && direct {
                Ok(Some(check))
            } else {
                Err(check.to_string())
            }
        },
    );
    // Both hosts reached each other's tunnel, with a round-trip time.
    for host in directory["hosts"].as_array().unwrap() {
        let tunnels = host["tunnels"].as_array().unwrap();
        assert_eq!(tunnels.len(), 1, "{host:#}");
        assert_eq!(tunnels[0]["ok"], true, "{host:#}");
        assert!(tunnels[0]["rtt_us"].as_u64().unwrap() > 0);
    }

    // Every container has the bridge's address on its own host.
    for (node, name) in [("mainpc", "registry"), ("pc2", "memory-orchestrator")] {
        let out = mesh
            .podman(node)
            .args([
                "inspect",
                "--format",
                "{{range .Config.Env}}{{println .}}{{end}}",
                &format!("mesh-{name}"),
            ])
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        let want = format!(
            "MESH_MEMORY_ORCHESTRATOR_ADDR=tcp://{}:7140",
            mesh.host(node).address
        );
        assert!(env.lines().any(|l| l == want), "{node}/{name}: {env}");
    }

    // Real ZeroMQ traffic from a container on mainpc, through mainpc's
    // bridge endpoint and the tunnel, to the service on pc2.
    let endpoint = format!("tcp://{}:7140", mesh.host("mainpc").address);
    let req = client_container(
        &mesh,
        "mainpc",
        &[
            ("DEMO_CONNECT", endpoint.clone()),
            ("DEMO_PATTERN", "req".into()),
            ("DEMO_CLIENTS", "10".into()),
            ("DEMO_REQUESTS", "100".into()),
        ],
    );
    assert_eq!(req["replies_ok"], 1000, "{req:#}");
    assert_eq!(req["replies_wrong"], 0, "{req:#}");
    let dealer = client_container(
        &mesh,
        "mainpc",
        &[
            ("DEMO_CONNECT", endpoint.clone()),
            ("DEMO_PATTERN", "dealer".into()),
            ("DEMO_CLIENTS", "10".into()),
            ("DEMO_REQUESTS", "100".into()),
            ("DEMO_WINDOW", "10".into()),
        ],
    );
    assert_eq!(dealer["replies_ok"], 1000, "{dealer:#}");
    assert_eq!(dealer["replies_wrong"], 0, "{dealer:#}");
    let big = client_container(
        &mesh,
        "mainpc",
        &[
            ("DEMO_CONNECT", endpoint.clone()),
            ("DEMO_PATTERN", "req".into()),
            ("DEMO_REQUESTS", "2".into()),
            ("DEMO_SIZE", (16 * 1024 * 1024).to_string()),
            ("DEMO_TIMEOUT_MS", "30000".into()),
        ],
    );
    assert_eq!(big["replies_ok"], 2, "16 MiB messages: {big:#}");
    // PUB/SUB across hosts: every message, in order per publisher.
    let sub = client_container(
        &mesh,
        "mainpc",
        &[
            (
                "DEMO_CONNECT",
                format!("tcp://{}:7150", mesh.host("mainpc").address),
            ),
            ("DEMO_PATTERN", "sub".into()),
            ("DEMO_TOPICS", "alpha,beta".into()),
            ("DEMO_COUNT", "300".into()),
            ("DEMO_TIMEOUT_MS", "20000".into()),
        ],
    );
    assert_eq!(sub["in_order"], true, "{sub:#}");
    assert!(sub["messages_received"].as_u64().unwrap() >= 600, "{sub:#}");

    // PUSH/PULL from the service: a worker on mainpc takes every job the
    // ventilator on pc2 hands out, in order.
    let pull = client_container(
        &mesh,
        "mainpc",
        &[
            (
                "DEMO_CONNECT",
                format!("tcp://{}:7160", mesh.host("mainpc").address),
            ),
            ("DEMO_PATTERN", "pull".into()),
            ("DEMO_TOPICS", "jobs".into()),
            ("DEMO_COUNT", "300".into()),
            ("DEMO_TIMEOUT_MS", "20000".into()),
        ],
    );
    assert_eq!(pull["messages_received"], 300, "{pull:#}");
    assert_eq!(pull["in_order"], true, "{pull:#}");

    // mainpc's bridge endpoint counted that traffic.
    let check = json_of(&mesh, &["check", "-o", "json"]).unwrap();
    let counters = &bridge_row(&check, "mainpc", "memory-orchestrator").unwrap()["counters"];
    assert!(
        counters["msgs_out"].as_u64().unwrap() >= 2002,
        "{counters:#}"
    );
    assert!(
        counters["msgs_in"].as_u64().unwrap() >= 2002,
        "{counters:#}"
    );
    assert!(
        counters["bytes_out"].as_u64().unwrap() >= 2 * 16 * 1024 * 1024,
        "{counters:#}"
    );
    assert_eq!(counters["in_flight"], 0, "{counters:#}");
    assert!(
        counters["rtt_mean_us"].as_u64().unwrap() > 0,
        "{counters:#}"
    );

    // When the service goes away, check fails and names the cause.
    let out = mesh.meshctl("mainpc", &["stop", "pc2", "memory-orchestrator"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = wait::until(
        "check to fail for the stopped service",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            let out = mesh.meshctl("mainpc", &["check", "-o", "json", "--timeout-ms", "1000"]);
            let check: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let row = bridge_row(&check, "mainpc", "memory-orchestrator").cloned();
            match row {
                Some(r) if r["ok"] == false && !out.status.success() => Ok(Some(r)),
                _ => Err(check.to_string()),
            }
        },
    );
    let cause = failed["cause"].as_str().unwrap();
    assert!(
        cause == "service unhealthy" || cause == "service",
        "{failed:#}"
    );
}
