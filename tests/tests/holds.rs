//! Operator holds are desired state (network namespaces, an agent with its
//! own Podman, real containers): a container stopped with `meshctl stop`
//! stays stopped when its agent is killed and restarts, and when the
//! coordinator restarts; `meshctl ps` shows the hold; `meshctl start` lifts
//! it. Needs root and podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::podman::{ensure_system_busybox_image, require_podman, BUSYBOX_IMAGE};

fn set() -> String {
    let sleeper = |name: &str| {
        format!(
            "[[containers]]\nname = \"{name}\"\nimage = \"{BUSYBOX_IMAGE}\"\ncommand = [\"sleep\", \"600\"]\n"
        )
    };
    format!("{}\n{}", sleeper("held"), sleeper("free"))
}

fn row(mesh: &MeshFixture, name: &str) -> serde_json::Value {
    let ps = mesh.ps_json().unwrap();
    ps["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == "pc2" && r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {name}: {ps}"))
}

/// `free` was killed behind the agent's back: wait until the agent has
/// repaired it (restart policy, 1 s first backoff). By then it has also
/// had every chance to start `held` again.
fn wait_free_repaired(mesh: &MeshFixture, restarts: u64, what: &str) {
    mesh.wait_container("pc2", "free", what, Duration::from_secs(60), |r| {
        r["state"] == "running" && r["restarts"].as_u64() >= Some(restarts)
    });
}

#[test]
fn a_stopped_container_stays_stopped_across_agent_and_coordinator_restarts() {
    if !require_podman("a_stopped_container_stays_stopped_across_agent_and_coordinator_restarts") {
        return;
    }
    ensure_system_busybox_image();
    let mut mesh = MeshFixture::start(
        &["mainpc", "pc2"],
        MeshOptions {
            containers: true,
            ..MeshOptions::default()
        },
    );
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let out = mesh.set_containers("pc2", &set());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["held", "free"] {
        mesh.wait_container("pc2", name, "running", Duration::from_secs(60), |r| {
            r["state"] == "running"
        });
    }
    let stop = mesh.meshctl("mainpc", &["stop", "pc2", "held"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    mesh.wait_container(
        "pc2",
        "held",
        "stopped and shown held",
        Duration::from_secs(30),
        |r| r["state"] != "running" && r["hold"] == "stopped",
    );

    // The agent dies and comes back: it adopts its containers, and the
    // hold comes with the desired set, not from the agent's memory.
    mesh.agents.get_mut("pc2").unwrap().kill();
    mesh.kill_container("pc2", "free");
    mesh.start_agent("pc2");
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    wait_free_repaired(&mesh, 1, "restarted by the new agent");
    let held = row(&mesh, "held");
    assert_ne!(
        held["state"], "running",
        "the restarted agent started a held container: {held}"
    );
    assert_eq!(held["hold"], "stopped", "{held}");

    // The coordinator dies and comes back: the hold is in its store.
    mesh.restart_coordinator();
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let before = row(&mesh, "free")["restarts"].as_u64().unwrap();
    mesh.kill_container("pc2", "free");
    wait_free_repaired(&mesh, before + 1, "restarted after the coordinator restart");
    let held = row(&mesh, "held");
    assert_ne!(
        held["state"], "running",
        "a held container was started after the coordinator restarted: {held}"
    );
    assert_eq!(held["hold"], "stopped", "{held}");

    // Lifting the hold starts it again.
    let start = mesh.meshctl("mainpc", &["start", "pc2", "held"]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    mesh.wait_container(
        "pc2",
        "held",
        "running again, no hold",
        Duration::from_secs(30),
        |r| r["state"] == "running" && r["hold"] == "-",
    );
}
