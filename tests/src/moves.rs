//! A bridged ZeroMQ service that moves between the hosts `mainpc`, `pc2`
//! and `pc3` by re-applying a topology: the topology, the apply, and the
//! wait until `meshctl check` shows every host's bridge following it.
//! Shared by the move tests and the heartbeat-gap benchmark.

use std::time::Duration;

use serde_json::Value;

use crate::mesh::MeshFixture;
use crate::podman::DEMO_IMAGE;
use crate::wait;

/// The hosts of a move mesh; the coordinator runs on the first.
pub const HOSTS: [&str; 3] = ["mainpc", "pc2", "pc3"];

/// The memory orchestrator (demo service, router mode) on the host whose
/// role label is ROLE, bridged on port 7140 with in-flight retry-once.
pub const TOPOLOGY: &str = r#"
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

/// Applies [`TOPOLOGY`] with the service on `host` and waits for the
/// rollout (`meshctl place --apply`); panics with meshctl's output if it
/// fails.
pub fn apply_on(mesh: &MeshFixture, host: &str) {
    let file = mesh.state.path().join(format!("move-{host}.toml"));
    std::fs::write(
        &file,
        TOPOLOGY.replace("IMAGE", DEMO_IMAGE).replace("ROLE", host),
    )
    .expect("write topology");
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
        "apply with the service on {host}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `check` (meshctl check -o json) shows the service on `host`,
/// reached directly there and through the tunnel from every other host.
fn follows(check: &Value, host: &str) -> bool {
    HOSTS.iter().all(|from| {
        check["hosts"].as_array().is_some_and(|hosts| {
            hosts.iter().any(|h| {
                h["node"] == *from
                    && h["bridges"].as_array().is_some_and(|b| {
                        b.iter().any(|b| {
                            b["service"] == "memory-orchestrator"
                                && b["ok"] == true
                                && b["host"] == host
                                && b["via"] == if *from == host { "direct" } else { "tunnel" }
                        })
                    })
            })
        })
    })
}

/// Waits until `meshctl check` passes from every host with the service on
/// `host`; returns the check.
pub fn wait_check_on(mesh: &MeshFixture, host: &str) -> Value {
    wait::until(
        &format!("check to pass everywhere with memory-orchestrator on {host}"),
        Duration::from_secs(45),
        Duration::from_millis(300),
        || {
            let out = mesh.meshctl("mainpc", &["check", "-o", "json", "--timeout-ms", "2000"]);
            let check: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            if out.status.success() && check["ok"] == true && follows(&check, host) {
                Ok(Some(check))
            } else {
                Err(check.to_string())
            }
        },
    )
}

/// (longest heartbeat gap in microseconds, heartbeats) of `node`'s current
/// session, as the coordinator received them.
pub fn heartbeat_gaps(mesh: &MeshFixture, node: &str) -> (u64, u64) {
    let nodes = mesh.nodes_json().expect("meshctl nodes");
    let n = MeshFixture::node(&nodes, node).expect("node listed");
    (
        n["heartbeat_gap_max_us"].as_u64().unwrap_or(0),
        n["session_heartbeats"].as_u64().unwrap_or(0),
    )
}

/// `clients` REQ clients x `requests` requests from `node` through its
/// local endpoint (a demo client container); every reply must be right.
pub fn requests_pass_from(mesh: &MeshFixture, node: &str, clients: u32, requests: u32) {
    let (report, ok) = mesh.demo_client(
        node,
        &[
            (
                "DEMO_CONNECT",
                format!("tcp://{}:7140", mesh.host(node).address),
            ),
            ("DEMO_CLIENTS", clients.to_string()),
            ("DEMO_REQUESTS", requests.to_string()),
        ],
    );
    assert!(ok, "from {node}: {report:#}");
    assert_eq!(
        report["replies_ok"],
        u64::from(clients * requests),
        "from {node}: {report:#}"
    );
    assert_eq!(
        report["first_problem"],
        Value::Null,
        "from {node}: {report:#}"
    );
}
