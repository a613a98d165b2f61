//! Automatic failover of a singleton group with a replicated volume
//! (network namespaces, real agents with their own Podman, the SQLite demo
//! service, the bridge): the primary host killed hard, the standby
//! promoted at a new epoch, the service answering through the same bridge
//! endpoint with every write it acknowledged. Needs root, podman,
//! /dev/fuse and e2fsprogs: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::volumes;

#[test]
fn the_primary_host_killed_hard_the_standby_serves_every_acknowledged_write_at_the_same_endpoint() {
    if !require_podman("the_primary_host_killed_hard_the_standby_serves_every_acknowledged_write_at_the_same_endpoint") {
        return;
    }
    ensure_demo_image();
    let mut mesh = volumes::start_bridged_mesh();
    // The what-if says what failover would do.
    let file = mesh.state.path().join("volumes.toml");
    let out = mesh.meshctl(
        "mainpc",
        &["place", &file.to_string_lossy(), "--fail", "pc2"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "memory: its primary pc2 gone, failover to pc3 at epoch 2 (standby UpToDate)"
        ),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    volumes::kill_primary_host(&mut mesh);
    let mut writer = writer;
    volumes::wait_writer_gone(&mut writer);
    let (mut acked, _) = volumes::writer_tally(&writer);
    acked.insert(0);
    assert!(acked.len() > 10, "{}", writer.logs());
    let next = acked.iter().max().copied().unwrap_or(0) + 1;
    // The same endpoint answers again, now served on pc3.
    volumes::wait_served_again(
        &mesh,
        next,
        "a write through the same bridge endpoint after the failover",
    );
    let failover = killed.elapsed();
    acked.insert(next);
    eprintln!("failover: first acknowledged write {failover:?} after the kill");
    let v = volumes::volumes_json(&mesh).unwrap();
    let row = volumes::row(&v).unwrap();
    assert_eq!(row["primary"], "pc3", "{row}");
    assert_eq!(row["epoch"], 2, "{row}");
    assert_eq!(row["standby"], "pc2", "{row}");
    // Everything acknowledged before and after is on pc3's volume: kill
    // pc3 too and read its image as the checker does.
    assert!(volumes::write_bridged(&mesh, next + 1, 50));
    for k in next + 1..next + 51 {
        acked.insert(k);
    }
    let _ = mesh_tests::process::run({
        let mut c = mesh.podman(volumes::STANDBY);
        c.args(["kill", "--signal", "KILL", "--all"]);
        c
    });
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}

fn started_mesh() -> MeshFixture {
    volumes::start_bridged_mesh()
}

#[test]
fn the_primary_host_unplugged_fences_itself_before_the_standby_starts_and_returns_as_standby() {
    if !require_podman(
        "the_primary_host_unplugged_fences_itself_before_the_standby_starts_and_returns_as_standby",
    ) {
        return;
    }
    ensure_demo_image();
    let mesh = started_mesh();
    let writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1500));
    // Everything on pc2 keeps running, cut off from all.
    mesh.lan.cut(mesh.host(volumes::PRIMARY));
    let mut writer = writer;
    volumes::wait_writer_gone(&mut writer);
    let (mut acked, _) = volumes::writer_tally(&writer);
    acked.insert(0);
    let next = 1_000_000;
    volumes::wait_served_again(
        &mesh,
        next,
        "a write through the same bridge endpoint, served on pc3",
    );
    acked.insert(next);
    // pc2's agent killed its own container (no lease) before pc3 started one.
    let died = mesh_tests::wait::until(
        "pc2's agent to have killed its container",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let t = volumes::container_time_ns(&mesh, volumes::PRIMARY, "FinishedAt");
            Ok((t > 0).then_some(t))
        },
    );
    let started = volumes::container_time_ns(&mesh, volumes::STANDBY, "StartedAt");
    assert!(started > 0, "pc3 never started the service");
    let before = volumes::one_writer_at_a_time(Some(died), started, volumes::now_ns())
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "unplugged: pc2's container died {} ms before pc3's started",
        before / 1_000_000
    );
    // The event history has pc2 going suspect, for that node.
    let out = mesh.meshctl("mainpc", &["events", "--node", "pc2"]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(events.contains("pc2 ready -> suspect"), "{events}");
    // Back on the LAN, pc2 becomes the standby and is resynced.

    mesh.lan.restore(mesh.host(volumes::PRIMARY));
    let row = mesh_tests::wait::until(
        "pc2 back as the standby, resynced",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let v = volumes::volumes_json(&mesh)?;
            let r = volumes::row(&v).cloned().ok_or("no row")?;
            let ok = r["primary"] == "pc3"
                && r["standby"] == "pc2"
                && r["standing"] == "in sync"
                && r["standby_outdated"] == false;
            Ok(ok.then_some(r))
        },
    );
    assert_eq!(row["epoch"], 2, "{row}");
    assert!(volumes::write_bridged(&mesh, next + 1, 20));
    for k in next + 1..next + 21 {
        acked.insert(k);
    }
    let mut mesh = mesh;
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}

#[test]
fn a_coordinator_down_longer_than_the_lease_neither_fails_over_nor_stops_the_service() {
    if !require_podman(
        "a_coordinator_down_longer_than_the_lease_neither_fails_over_nor_stops_the_service",
    ) {
        return;
    }
    ensure_demo_image();
    // A 5 s lease here: with the 2 s default, under the whole suite's load
    // on 2 cores, the primary once fenced itself for want of a standby
    // acknowledgement within 1.5 s while the coordinator was down (see
    // the issue note: the default does not yet hold on a loaded machine).
    let mut mesh = volumes::start_mesh();
    volumes::apply_text(&mesh, &volumes::bridged_topology_with(5000));
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    mesh_tests::wait::until(
        "writes through mainpc's bridge endpoint",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || Ok(volumes::write_bridged(&mesh, 0, 1).then_some(())),
    );
    let writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(1000));
    mesh.coordinator.kill();
    let count = |w: &mesh_tests::process::Proc| volumes::writer_tally(w).0.len();
    let at_kill = count(&writer);
    // Two and a half leases without a coordinator: the standby's grants
    // keep the primary going (static stability).
    std::thread::sleep(Duration::from_secs(12));
    let mut writer = writer;
    assert!(writer.is_running(), "the writer stopped: {}", writer.logs());
    let during = count(&writer);
    assert!(
        during > at_kill + 50,
        "writes stalled without the coordinator: {at_kill} -> {during}"
    );
    mesh.restart_coordinator();
    std::thread::sleep(Duration::from_secs(5));
    assert!(writer.is_running(), "the writer stopped: {}", writer.logs());
    let v = volumes::volumes_json(&mesh).unwrap();
    let row = volumes::row(&v).unwrap();
    assert_eq!(row["primary"], "pc2", "a failover happened: {row}");
    assert_eq!(row["epoch"], 1, "a failover happened: {row}");
    assert!(
        count(&writer) > during + 50,
        "writes stalled after the restart"
    );
}

#[test]
fn a_primary_agent_paused_past_its_lease_acknowledges_nothing_after_it_wakes() {
    if !require_podman("a_primary_agent_paused_past_its_lease_acknowledges_nothing_after_it_wakes")
    {
        return;
    }
    ensure_demo_image();
    let mesh = started_mesh();
    // A patient writer: a reply pc2 might send after waking would be seen.
    let writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    let agent = mesh.agents[volumes::PRIMARY].pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &agent])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {agent}");
    };
    signal("-STOP");
    // The coordinator promotes pc3 after the lease; the endpoint answers.
    let next = 1_000_000;
    volumes::wait_served_again(
        &mesh,
        next,
        "a write through the same bridge endpoint, served on pc3",
    );
    // pc2's agent wakes up long past its lease.
    signal("-CONT");
    // Its container goes: killed by its fencing (no lease: the coordinator
    // grants none to a replaced primary), or removed with the new
    // assignment, whichever comes first.
    mesh_tests::wait::until(
        "pc2's agent to have stopped its container",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || Ok((!volumes::container_running(&mesh, volumes::PRIMARY)).then_some(())),
    );
    let agent = mesh.agents[volumes::PRIMARY].logs();
    eprintln!(
        "paused: after waking pc2's agent {}",
        if agent.contains("no lease from the coordinator or the standby: fencing") {
            "fenced itself"
        } else {
            "released the volume with its new assignment"
        }
    );
    let mut writer = writer;
    writer.kill();
    let (mut acked, _) = volumes::writer_tally(&writer);
    acked.insert(0);
    acked.insert(next);
    let mut mesh = mesh;
    // Whatever was acknowledged, before the pause or by anyone after it,
    // is on the new primary.
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}

#[test]
fn a_coordinator_killed_between_recording_a_promotion_and_moving_the_group_completes_it_after_restart(
) {
    if !require_podman("a_coordinator_killed_between_recording_a_promotion_and_moving_the_group_completes_it_after_restart") {
        return;
    }
    ensure_demo_image();
    let mut mesh = started_mesh();
    // The coordinator exits right after it has persisted a promotion's
    // records (epoch 2, pc3 primary), before it moves the group's placement.
    mesh.restart_coordinator_with_env(&[("MESH_FAULT_EXIT_AT", "after-promotion-recorded")]);
    volumes::wait_in_sync(&mesh, Duration::from_secs(60));
    let writer = volumes::start_retrying_writer(&mesh, 1, Duration::from_millis(500));
    volumes::wait_acked(&writer, 20);
    volumes::kill_primary_host(&mut mesh);
    mesh_tests::wait::until(
        "the coordinator to stop at the fault point",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || Ok((!mesh.coordinator.is_running()).then_some(())),
    );
    assert!(
        mesh.coordinator
            .logs()
            .contains("MESH_FAULT_EXIT_AT: exiting here as asked"),
        "{}",
        mesh.coordinator.logs()
    );
    mesh.restart_coordinator();
    // The restarted coordinator moves the group to the primary its
    // records name, at the recorded epoch: no second promotion.
    let next = 1_000_000;
    volumes::wait_served_again(
        &mesh,
        next,
        "a write through the same bridge endpoint, served on pc3",
    );
    assert!(
        mesh.coordinator
            .logs()
            .contains("its placement was not moved yet (the coordinator stopped in between)"),
        "{}",
        mesh.coordinator.logs()
    );
    let v = volumes::volumes_json(&mesh).unwrap();
    let row = volumes::row(&v).unwrap();
    assert_eq!(row["primary"], "pc3", "{row}");
    assert_eq!(row["epoch"], 2, "{row}");
    let mut writer = writer;
    writer.kill();
    let (mut acked, _) = volumes::writer_tally(&writer);
    acked.insert(0);
    acked.insert(next);
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}

#[test]
fn negative_control_with_fencing_disabled_the_checker_finds_two_writers() {
    if !require_podman("negative_control_with_fencing_disabled_the_checker_finds_two_writers") {
        return;
    }
    ensure_demo_image();
    // The same unplug as above, with the agents told not to fence.
    let mesh = volumes::start_bridged_mesh_with_env(&[("MESH_UNSAFE_DISABLE_FENCING", "1")]);
    mesh.lan.cut(mesh.host(volumes::PRIMARY));
    volumes::wait_served_again(
        &mesh,
        1_000_000,
        "a write through the same bridge endpoint, served on pc3",
    );
    mesh_tests::wait::until(
        "pc2's agent to pass its lease without fencing",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let logs = mesh.agents[volumes::PRIMARY].logs();
            Ok(logs
                .contains("MESH_UNSAFE_DISABLE_FENCING: no lease")
                .then_some(()))
        },
    );
    let started = volumes::container_time_ns(&mesh, volumes::STANDBY, "StartedAt");
    assert!(started > 0, "pc3 never started the service");
    let observed = volumes::now_ns();
    let died = (!volumes::container_running(&mesh, volumes::PRIMARY))
        .then(|| volumes::container_time_ns(&mesh, volumes::PRIMARY, "FinishedAt"));
    let verdict = volumes::one_writer_at_a_time(died, started, observed);
    eprintln!("negative control: {verdict:?}");
    assert!(
        verdict
            .as_ref()
            .is_err_and(|e| e.starts_with("two writers")),
        "with fencing disabled the checker found no second writer: {verdict:?}"
    );
}
