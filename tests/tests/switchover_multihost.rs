//! Planned switchover (`meshctl failover GROUP`) of a singleton group with
//! a replicated volume, in network namespaces with real agents, Podman and
//! the SQLite demo service behind the bridge: the group moves to its
//! standby and back while a client keeps writing through the same
//! endpoint; nothing acknowledged is lost, the old container is gone
//! before the new one starts, and a move to a host that is not the
//! standby is refused with the reason. Needs root, podman, /dev/fuse and
//! e2fsprogs: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::volumes;

/// `meshctl failover memory ARGS`; its stdout, asserting it succeeded.
fn switch(mesh: &MeshFixture, args: &[&str]) -> String {
    let mut all = vec!["failover", "memory"];
    all.extend_from_slice(args);
    let out = mesh.meshctl("mainpc", &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "meshctl failover memory {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    text
}

/// Waits until `host` is the primary at `epoch` and the other replica is
/// an UpToDate standby again (resynced after the move).
fn wait_protected(mesh: &MeshFixture, host: &str, epoch: u64) {
    mesh_tests::wait::until(
        &format!("{host} primary at epoch {epoch} with its standby resynced"),
        Duration::from_secs(120),
        Duration::from_millis(300),
        || {
            let v = volumes::volumes_json(mesh)?;
            let r = volumes::row(&v).cloned().ok_or("no row")?;
            let ok = r["primary"] == host
                && r["epoch"] == epoch
                && r["standing"] == "in sync"
                && r["standby_outdated"] == false;
            Ok(ok.then_some(()))
        },
    );
}

#[test]
fn a_switchover_moves_the_group_to_its_standby_and_back_losing_nothing() {
    if !require_podman("a_switchover_moves_the_group_to_its_standby_and_back_losing_nothing") {
        return;
    }
    ensure_demo_image();
    let mut mesh = volumes::start_bridged_mesh();
    // Refused, nothing changed: a host that is not the standby.
    let out = mesh.meshctl("mainpc", &["failover", "memory", "--to", "mainpc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("mainpc is not the standby of 'memory' (its standby is pc3)"),
        "{err}"
    );
    let writer = volumes::start_retrying_writer(&mesh, 1, Duration::from_millis(300));
    volumes::wait_acked(&writer, 20);
    let text = switch(&mesh, &[]);
    assert!(
        text.contains("switching memory over from pc2 to pc3 (epoch 1 -> 2)"),
        "{text}"
    );
    assert!(text.contains("memory runs on pc3 at epoch 2"), "{text}");
    for phase in ["stop", "promote", "mount", "start", "healthy", "re-pointed"] {
        assert!(
            text.contains(&format!("  {phase} ")),
            "no {phase} phase: {text}"
        );
    }
    // One writer at a time: pc2's agent could detach the volume (its
    // container gone: nothing held the device) before pc3's container
    // started. The agent's own timestamp; the container itself was removed.
    let stopped = volumes::log_time_ns(
        &mesh.agents[volumes::PRIMARY].logs(),
        "handed over: detached, every write flushed to the standby",
    )
    .unwrap_or(0);
    let started = volumes::container_time_ns(&mesh, volumes::STANDBY, "StartedAt");
    assert!(stopped > 0 && started > 0, "{stopped} {started}");
    assert!(
        stopped < started,
        "two writers: pc3 started {} ms before pc2 handed the volume over",
        (stopped - started) / 1_000_000
    );
    let first_gap = volumes::longest_gap_ms(&writer);
    // And home again, once pc2 is a resynced standby.
    wait_protected(&mesh, "pc3", 2);
    // A follower of the event history sees the next move as it happens.
    let follower = {
        let mut cmd = mesh_tests::process::command(
            Some(mesh.host("mainpc")),
            &mesh_tests::binaries::path("meshctl"),
        );
        cmd.arg("--coordinator")
            .arg(mesh.coordinator_address())
            .arg("--certs-dir")
            .arg(mesh.pki.dir())
            .args(["events", "-f", "--group", "memory"]);
        mesh_tests::process::Proc::spawn("meshctl-events-f", cmd)
    };
    let text = switch(&mesh, &["--to", "pc2"]);
    assert!(text.contains("memory runs on pc2 at epoch 3"), "{text}");
    wait_protected(&mesh, "pc2", 3);
    // The writer rode through both moves on the same endpoint.
    let acked_before = volumes::writer_tally(&writer).0.len();
    mesh_tests::wait::until(
        "the writer to go on after both moves",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((volumes::writer_tally(&writer).0.len() > acked_before + 20).then_some(())),
    );
    let mut writer = writer;
    writer.kill();
    let gap = volumes::longest_gap_ms(&writer);
    eprintln!("switchover: longest pause between acknowledgements {first_gap} ms (first move), {gap} ms (both)");
    let (acked, _) = volumes::writer_tally(&writer);
    assert!(acked.len() > 50, "{}", writer.logs());
    mesh_tests::wait::until(
        "the event follower to print the second switchover",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let logs = follower.logs();
            Ok(logs
                .contains("switchover of memory from pc3 to pc2 begun")
                .then_some(()))
        },
    );
    // The history holds both moves and the promotions, for the group.
    let out = mesh.meshctl("mainpc", &["events", "--group", "memory", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    for needle in [
        "switchover of memory from pc2 to pc3 begun",
        "pc3 promoted to primary of memory at epoch 2",
        "pc2 promoted to primary of memory at epoch 3",
        "memory healthy on pc2 with its bridges re-pointed",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(needle)),
            "no event {needle:?} in {messages:?}"
        );
    }
    // The coordinator's /metrics tells the same story.
    let metrics = mesh.scrape_metrics().unwrap();
    for line in [
        "mesh_node_state{node=\"pc2\",state=\"ready\"} 1.0",
        "mesh_failover_epoch{group=\"memory\"} 3.0",
        "mesh_failovers_total{group=\"memory\",cause=\"switchover\"} 2",
        "mesh_volume_standby_up_to_date{group=\"memory\",volume=\"memory-data\"} 1.0",
        "mesh_failover_last_duration_seconds{group=\"memory\"}",
        "mesh_container_running{node=\"pc2\",container=\"memory-db\",group=\"memory\",service=\"memory-db\"} 1.0",
    ] {
        assert!(
            metrics.contains(line),
            "no {line:?} in /metrics:\n{metrics}"
        );
    }
    for name in mesh_coordinator::state::exposition::sample_names(&metrics) {
        assert!(
            mesh_coordinator::state::exposition::EXPORTED.contains(&name.as_str()),
            "{name} is served but not listed in EXPORTED"
        );
    }
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}

#[test]
fn with_failback_auto_the_group_goes_home_once_its_host_is_back_and_resynced() {
    if !require_podman("with_failback_auto_the_group_goes_home_once_its_host_is_back_and_resynced")
    {
        return;
    }
    ensure_demo_image();
    let mesh = volumes::start_mesh();
    let topology = volumes::bridged_topology().replace(
        "lease_ms = 2000 }",
        "lease_ms = 2000, failback = \"auto\", failback_hold_ms = 2000 }",
    );
    assert!(topology.contains("failback = \"auto\""), "{topology}");
    volumes::apply_text(&mesh, &topology);
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    mesh_tests::wait::until(
        "writes through mainpc's bridge endpoint",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || Ok(volumes::write_bridged(&mesh, 0, 1).then_some(())),
    );
    let writer = volumes::start_retrying_writer(&mesh, 1, Duration::from_millis(500));
    volumes::wait_acked(&writer, 20);
    // pc2 cut off: the group fails over to pc3 ...
    mesh.lan.cut(mesh.host(volumes::PRIMARY));
    mesh_tests::wait::until(
        "the failover to pc3",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let v = volumes::volumes_json(&mesh)?;
            let r = volumes::row(&v).cloned().ok_or("no row")?;
            Ok((r["primary"] == "pc3").then_some(()))
        },
    );
    // ... and once pc2 is back and resynced, it goes home by itself.
    mesh.lan.restore(mesh.host(volumes::PRIMARY));
    wait_protected(&mesh, "pc2", 3);
    let row = mesh_tests::wait::until(
        "the failback to be done",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let v = volumes::volumes_json(&mesh)?;
            let r = volumes::row(&v).cloned().ok_or("no row")?;
            Ok((r["failover"]["done"] == true).then_some(r))
        },
    );
    assert_eq!(row["failover"]["cause"], "failback", "{row}");
    assert_eq!(row["failover"]["from"], "pc3", "{row}");
    let before = volumes::writer_tally(&writer).0.len();
    mesh_tests::wait::until(
        "the writer to go on at home",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((volumes::writer_tally(&writer).0.len() > before + 20).then_some(())),
    );
    let mut writer = writer;
    writer.kill();
    let (acked, _) = volumes::writer_tally(&writer);
    let mut mesh = mesh;
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}
