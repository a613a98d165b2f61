//! Real containers on hosts `mainpc` and `pc2` (network namespaces, a
//! Podman service of each agent's own), driven through the coordinator
//! with meshctl: desired containers appear on the right host and become
//! healthy, survive an agent restart untouched, are recreated after a spec
//! change, restarted with backoff after being killed, removed when no
//! longer desired; a missing image and a taken port come back as errors
//! that say what to fix. Needs root and podman: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::podman::{ensure_system_busybox_image, require_podman, BUSYBOX_IMAGE};

fn web(env_value: &str) -> String {
    format!(
        r#"
[[containers]]
name = "web"
group = "memory-system"
image = "{BUSYBOX_IMAGE}"
command = ["/bin/sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
env = {{ VERSION = "{env_value}" }}
memory_mib = 64
[containers.health]
http = {{ port = 8080, path = "/index.html" }}
interval_ms = 300
timeout_ms = 1000
"#
    )
}

fn mesh() -> MeshFixture {
    ensure_system_busybox_image();
    MeshFixture::start(
        &["mainpc", "pc2"],
        MeshOptions {
            containers: true,
            ..MeshOptions::default()
        },
    )
}

/// (container id, started at) as Podman on `node` sees `mesh-NAME`.
fn podman_identity(mesh: &MeshFixture, node: &str, name: &str) -> String {
    let out = mesh
        .podman(node)
        .args([
            "inspect",
            "--format",
            "{{.Id}} {{.State.StartedAt}}",
            &format!("mesh-{name}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn healthy(r: &serde_json::Value) -> bool {
    r["state"] == "running" && r["health"] == "healthy"
}

#[test]
fn desired_containers_run_heal_survive_agent_restart_update_and_go() {
    if !require_podman("desired_containers_run_heal_survive_agent_restart_update_and_go") {
        return;
    }
    let mut mesh = mesh();
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let out = mesh.set_containers("pc2", &web("1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    mesh.wait_container(
        "pc2",
        "web",
        "running and healthy",
        Duration::from_secs(60),
        healthy,
    );
    // On pc2, and only there.
    let ps = mesh.ps_json().unwrap();
    let hosts: Vec<&str> = ps["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["pc2"]);
    let listed = mesh
        .podman("mainpc")
        .args(["ps", "-a", "-q"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "mainpc runs nothing"
    );
    // Memory limit enforced by the runtime.
    let mem = mesh
        .podman("pc2")
        .args(["inspect", "--format", "{{.HostConfig.Memory}}", "mesh-web"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&mem.stdout).trim(),
        (64 * 1024 * 1024).to_string()
    );

    // An agent restart adopts the container without touching it.
    let before = podman_identity(&mesh, "pc2", "web");
    mesh.agents.get_mut("pc2").unwrap().kill();
    mesh.start_agent("pc2");
    mesh.wait_state("pc2", "ready", Duration::from_secs(30));
    mesh.wait_container(
        "pc2",
        "web",
        "healthy after agent restart",
        Duration::from_secs(30),
        healthy,
    );
    // A few reconcile passes (reports) of the new agent.
    mesh.wait_heartbeats("pc2", 10);
    assert_eq!(
        podman_identity(&mesh, "pc2", "web"),
        before,
        "agent restart touched the container"
    );

    // A changed spec recreates it.
    let old = mesh.wait_container(
        "pc2",
        "web",
        "generation known",
        Duration::from_secs(5),
        healthy,
    );
    let old_generation = old["generation"].as_u64().unwrap();
    assert!(mesh.set_containers("pc2", &web("2")).status.success());
    mesh.wait_container(
        "pc2",
        "web",
        "recreated and healthy",
        Duration::from_secs(60),
        |r| {
            healthy(r)
                && r["generation"].as_u64() > Some(old_generation)
                && r["spec_hash"] != old["spec_hash"]
        },
    );
    let env = mesh
        .podman("pc2")
        .args([
            "inspect",
            "--format",
            "{{range .Config.Env}}{{.}} {{end}}",
            "mesh-web",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&env.stdout).contains("VERSION=2"));
    assert_ne!(podman_identity(&mesh, "pc2", "web"), before);

    // No longer desired: removed.
    assert!(mesh.set_containers("pc2", "").status.success());
    mesh_tests::wait::until(
        "web removed from pc2",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let out = mesh
                .podman("pc2")
                .args(["ps", "-a", "--format", "{{.Names}}"])
                .output()
                .map_err(|e| e.to_string())?;
            let names = String::from_utf8_lossy(&out.stdout).to_string();
            Ok((!names.contains("mesh-web")).then_some(()))
        },
    );
}

#[test]
fn killed_container_is_restarted_with_backoff_and_commands_work() {
    if !require_podman("killed_container_is_restarted_with_backoff_and_commands_work") {
        return;
    }
    let mesh = mesh();
    mesh.wait_ready_with_inventory("mainpc", Duration::from_secs(30));
    let set = format!(
        "{}\n[[containers]]\nname = \"sleeper\"\nimage = \"{BUSYBOX_IMAGE}\"\ncommand = [\"sleep\", \"600\"]\n",
        web("1")
    );
    assert!(mesh.set_containers("mainpc", &set).status.success());
    mesh.wait_container("mainpc", "web", "healthy", Duration::from_secs(60), healthy);

    // Killed behind the agent's back: the restart policy brings it back.
    let killed_at = Instant::now();
    mesh.kill_container("mainpc", "web");
    let row = mesh.wait_container(
        "mainpc",
        "web",
        "restarted and healthy",
        Duration::from_secs(60),
        |r| healthy(r) && r["restarts"].as_u64() >= Some(1),
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "first restart waits 1 s"
    );
    assert_eq!(row["last_exit_code"], 137);

    // Commands through the coordinator.
    let logs = mesh.meshctl("mainpc", &["logs", "mainpc", "web", "--tail", "5"]);
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let stop = mesh.meshctl("mainpc", &["stop", "mainpc", "web"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    mesh.wait_container("mainpc", "web", "stopped", Duration::from_secs(30), |r| {
        r["state"] == "stopped" || r["state"] == "error"
    });
    // Kept stopped: a crash of the other container is repaired by the same
    // agent (restart policy, first backoff 1 s, as web's would be), and
    // by then web has still not been started again.
    mesh.kill_container("mainpc", "sleeper");
    mesh.wait_container(
        "mainpc",
        "sleeper",
        "restarted after its kill",
        Duration::from_secs(60),
        |r| r["state"] == "running" && r["restarts"].as_u64() >= Some(1),
    );
    let ps = mesh.ps_json().unwrap();
    let row = ps["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap()
        .clone();
    assert_ne!(
        row["state"], "running",
        "a stopped container was restarted: {row}"
    );
    let start = mesh.meshctl("mainpc", &["start", "mainpc", "web"]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    mesh.wait_container(
        "mainpc",
        "web",
        "started again",
        Duration::from_secs(30),
        healthy,
    );
    let unknown = mesh.meshctl("mainpc", &["stop", "mainpc", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no container named 'nope'"));
}

#[test]
fn missing_image_and_taken_port_are_reported_with_the_fix() {
    if !require_podman("missing_image_and_taken_port_are_reported_with_the_fix") {
        return;
    }
    let mesh = mesh();
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let set = format!(
        r#"
[[containers]]
name = "ghost"
image = "localhost/never-built:1"

[[containers]]
name = "first"
image = "{BUSYBOX_IMAGE}"
command = ["sleep", "600"]
ports = ["18081:8080"]
"#
    );
    assert!(mesh.set_containers("pc2", &set).status.success());
    let ghost = mesh.wait_container(
        "pc2",
        "ghost",
        "image missing reported",
        Duration::from_secs(30),
        |r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("is not on this host"))
        },
    );
    assert_eq!(ghost["state"], "error");
    mesh.wait_container("pc2", "first", "running", Duration::from_secs(30), |r| {
        r["state"] == "running"
    });

    // Something else on pc2 holds the port the next container wants.
    let blocker = mesh
        .podman("pc2")
        .args([
            "run",
            "-d",
            "--name",
            "not-ours",
            "-p",
            "18082:8080",
            BUSYBOX_IMAGE,
            "sleep",
            "600",
        ])
        .output()
        .unwrap();
    assert!(
        blocker.status.success(),
        "{}",
        String::from_utf8_lossy(&blocker.stderr)
    );
    let set2 = format!("{set}\n[[containers]]\nname = \"second\"\nimage = \"{BUSYBOX_IMAGE}\"\ncommand = [\"sleep\", \"600\"]\nports = [\"18082:8080\"]\n");
    assert!(mesh.set_containers("pc2", &set2).status.success());
    mesh.wait_container(
        "pc2",
        "second",
        "port taken reported",
        Duration::from_secs(30),
        |r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("host port 18082 is already taken"))
        },
    );
    // The container the mesh does not own was never touched.
    let out = mesh
        .podman("pc2")
        .args(["inspect", "--format", "{{.State.Status}}", "not-ours"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running");

    // A set the coordinator can see is wrong is refused before any agent sees it.
    let bad = mesh.set_containers("pc2", "[[containers]]\nname = \"a\"\nimage = \"i\"\nports = [\"9000:1\"]\n[[containers]]\nname = \"b\"\nimage = \"i\"\nports = [\"9000:2\"]\n");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("claimed by both a and b") && err.contains("nothing changed"),
        "{err}"
    );
}

#[test]
fn dead_podman_service_is_a_reported_state_and_a_lost_coordinator_changes_nothing() {
    if !require_podman(
        "dead_podman_service_is_a_reported_state_and_a_lost_coordinator_changes_nothing",
    ) {
        return;
    }
    let mut mesh = mesh();
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    assert!(mesh.set_containers("pc2", &web("1")).status.success());
    mesh.wait_container("pc2", "web", "healthy", Duration::from_secs(60), healthy);
    let before = podman_identity(&mesh, "pc2", "web");

    let socket = mesh.state_dir("pc2").join("podman/podman.sock");
    let pattern = format!("system service --time=0 unix://{}", socket.display());
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status()
        .unwrap();
    assert!(killed.success(), "no Podman service matched {pattern}");

    let unavailable = mesh_tests::wait::until(
        "pc2 to report its runtime unavailable",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let ps = mesh.ps_json()?;
            let problems = ps["problems"].to_string();
            Ok(problems
                .contains("pc2: container runtime unavailable")
                .then_some(problems))
        },
    );
    assert!(
        unavailable.contains("podman system service"),
        "the fix is named: {unavailable}"
    );
    // The agent starts its service again; the container was never touched.
    mesh_tests::wait::until(
        "runtime back",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let ps = mesh.ps_json()?;
            Ok(ps["problems"]
                .as_array()
                .is_some_and(|p| p.is_empty())
                .then_some(()))
        },
    );
    mesh.wait_container(
        "pc2",
        "web",
        "healthy after runtime came back",
        Duration::from_secs(30),
        healthy,
    );
    assert_eq!(podman_identity(&mesh, "pc2", "web"), before);
    assert_eq!(
        mesh.nodes_json().unwrap()["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Static stability: with the coordinator gone, nothing on the host changes.
    mesh.coordinator.kill();
    // Its reconnect attempts fail (the agent logs each); meanwhile its
    // container manager keeps making passes.
    let ended = |mesh: &MeshFixture| {
        mesh.agents["pc2"]
            .logs()
            .matches("coordinator session ended")
            .count()
    };
    let before_kill = ended(&mesh);
    mesh_tests::wait::until(
        "two failed reconnects of pc2's agent",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || Ok((ended(&mesh) >= before_kill + 2).then_some(())),
    );
    assert!(
        mesh.agents.get_mut("pc2").unwrap().is_running(),
        "agent exited without its coordinator"
    );
    assert_eq!(
        podman_identity(&mesh, "pc2", "web"),
        before,
        "container touched without a coordinator"
    );
    let status = mesh
        .podman("pc2")
        .args(["inspect", "--format", "{{.State.Status}}", "mesh-web"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&status.stdout).trim(), "running");
}
