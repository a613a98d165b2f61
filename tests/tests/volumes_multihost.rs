//! Replicated volumes across hosts (network namespaces, real agents with
//! their own Podman, the demo service in sqlite mode on a FUSE-served,
//! loop-mounted ext4, replicated over the agents' mutual-TLS QUIC tunnel):
//! every write the service acknowledged is on the standby's image after
//! the primary host is killed hard. Needs root, podman, /dev/fuse and
//! e2fsprogs: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::MeshFixture;
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::volumes;

fn mesh() -> MeshFixture {
    volumes::start_mesh()
}

#[test]
fn every_acknowledged_write_is_on_the_standby_after_the_primary_host_is_killed() {
    if !require_podman(
        "every_acknowledged_write_is_on_the_standby_after_the_primary_host_is_killed",
    ) {
        return;
    }
    ensure_demo_image();
    for round in 0..2 {
        let mut mesh = mesh();
        volumes::apply(&mesh);
        let row = volumes::wait_in_sync(&mesh, Duration::from_secs(120));
        assert_eq!(row["primary"], "pc2", "{row}");
        assert_eq!(row["standby"], "pc3", "{row}");
        let r = volumes::kill_round(
            &mut mesh,
            Duration::from_millis(2000 + 700 * round),
            round == 0,
        );
        assert!(
            r.acked > 10,
            "round {round}: only {} writes acknowledged",
            r.acked
        );
        assert!(r.verdict.ok(), "round {round}: {:?}", r.verdict);
        if let Some(control) = r.control {
            // The checker sees a loss when one is there.
            assert!(
                !control.ok() && !control.lost.is_empty(),
                "the negative control found no loss: {control:?}"
            );
        }
    }
}

/// How many writes the writer saw acknowledged so far.
fn ack_count(writer: &mesh_tests::process::Proc) -> usize {
    volumes::writer_tally(writer).0.len()
}

#[test]
fn a_cut_between_primary_and_standby_stalls_writes_until_the_coordinator_outdates_the_standby() {
    if !require_podman(
        "a_cut_between_primary_and_standby_stalls_writes_until_the_coordinator_outdates_the_standby",
    ) {
        return;
    }
    ensure_demo_image();
    let mut mesh = mesh();
    volumes::apply(&mesh);
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    // It waits out the fsync bound (5 s) and the coordinator's answer.
    let writer = volumes::start_writer(&mesh, 0, Duration::from_secs(30));
    mesh_tests::wait::until(
        "writes to be acknowledged",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((ack_count(&writer) > 20).then_some(())),
    );

    // The coordinator still sees both; only pc2 <-> pc3 is cut.
    let cut_at = std::time::Instant::now();
    mesh.lan
        .cut_between(mesh.host(volumes::PRIMARY), mesh.host(volumes::STANDBY));
    let at_cut = ack_count(&writer);
    // Writes stall until the coordinator has recorded the standby
    // Outdated; then they go on, the primary alone.
    let row = mesh_tests::wait::until(
        "the standby to be recorded Outdated and the primary to run alone",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let v = volumes::volumes_json(&mesh)?;
            let r = volumes::row(&v).cloned().ok_or("no row")?;
            Ok((r["standby_outdated"] == true && r["standing"] == "alone").then_some(r))
        },
    );
    assert_eq!(row["replicas"][1]["disk"], "Outdated", "{row}");
    mesh_tests::wait::until(
        "writes to go on with the standby outdated",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((ack_count(&writer) > at_cut + 20).then_some(())),
    );
    // The writer's own clock: around the cut, no write was acknowledged
    // for (almost) the whole fsync bound (5 s): the primary neither went
    // on without its standby nor without the coordinator's record.
    let times = volumes::ack_times(&writer);
    let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    eprintln!(
        "cut: {at_cut} acknowledged at the cut, longest pause {longest} ms, alone after {:?}",
        cut_at.elapsed()
    );
    assert!(
        longest >= 4000,
        "writes went on during the cut: the longest pause between acknowledgements was {longest} ms"
    );

    // Reconnected: the standby resyncs and is UpToDate again.
    mesh.lan
        .restore_between(mesh.host(volumes::PRIMARY), mesh.host(volumes::STANDBY));
    let row = volumes::wait_in_sync(&mesh, Duration::from_secs(60));
    assert_eq!(row["standby_outdated"], false, "{row}");

    // And it holds every acknowledged write: kill the primary, check it.
    std::thread::sleep(Duration::from_millis(500));
    volumes::kill_primary_host(&mut mesh);
    let mut writer = writer;
    volumes::wait_writer_gone(&mut writer);
    let (acked, _) = volumes::writer_tally(&writer);
    let verdict = volumes::check_image(
        &volumes::image_path(&mesh.state_dir(volumes::STANDBY)),
        &acked,
    );
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}

/// Byte-equal images, retried while the primary's ext4 may still be
/// writing (a journal commit replicates within milliseconds).
fn wait_images_equal(mesh: &MeshFixture) {
    let primary = volumes::image_path(&mesh.state_dir(volumes::PRIMARY));
    let standby = volumes::image_path(&mesh.state_dir(volumes::STANDBY));
    mesh_tests::wait::until(
        "the standby's image to equal the primary's",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let same = std::process::Command::new("cmp")
                .arg("-s")
                .arg(&primary)
                .arg(&standby)
                .status()
                .map_err(|e| e.to_string())?
                .success();
            Ok(same.then_some(()))
        },
    );
}

/// Runs the writer for keys `first..first + count` to its end; true if
/// every one was acknowledged.
fn write_keys(mesh: &MeshFixture, first: u64, count: u64) -> bool {
    let mut cmd = mesh_tests::process::command(
        Some(mesh.host("mainpc")),
        &mesh_tests::binaries::path("volume-writer"),
    );
    cmd.arg("--connect")
        .arg(format!(
            "tcp://{}:{}",
            mesh.host(volumes::PRIMARY).address,
            volumes::PORT
        ))
        .args(["--first", &first.to_string(), "--count", &count.to_string()]);
    mesh_tests::process::run(cmd).status.success()
}

#[test]
fn a_standby_killed_mid_stream_resyncs_to_the_primarys_exact_content() {
    if !require_podman("a_standby_killed_mid_stream_resyncs_to_the_primarys_exact_content") {
        return;
    }
    ensure_demo_image();
    let mut mesh = mesh();
    volumes::apply(&mesh);
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    let mut writer = volumes::start_writer(&mesh, 0, Duration::from_secs(30));
    mesh_tests::wait::until(
        "writes to be acknowledged",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((ack_count(&writer) > 50).then_some(())),
    );
    mesh.agents.get_mut(volumes::STANDBY).unwrap().kill();
    // The primary goes on alone once the coordinator has outdated pc3.
    let before = ack_count(&writer);
    mesh_tests::wait::until(
        "writes to go on without the standby",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((ack_count(&writer) > before + 50).then_some(())),
    );
    mesh.start_agent(volumes::STANDBY);
    let row = volumes::wait_in_sync(&mesh, Duration::from_secs(60));
    assert_eq!(row["standby_outdated"], false, "{row}");
    writer.kill();
    wait_images_equal(&mesh);
}

#[test]
fn a_restarted_primary_agent_reattaches_its_volume_and_goes_on_replicating() {
    if !require_podman("a_restarted_primary_agent_reattaches_its_volume_and_goes_on_replicating") {
        return;
    }
    ensure_demo_image();
    let mut mesh = mesh();
    volumes::apply(&mesh);
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    assert!(write_keys(&mesh, 0, 100), "the first 100 writes");
    // The agent dies (its FUSE server with it); the container lives on
    // with a dead mount until the new agent restarts it.
    mesh.agents.get_mut(volumes::PRIMARY).unwrap().kill();
    mesh.start_agent(volumes::PRIMARY);
    volumes::wait_in_sync(&mesh, Duration::from_secs(60));
    mesh_tests::wait::until(
        "the service to take writes on the reattached volume",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || Ok(write_keys(&mesh, 100, 1).then_some(())),
    );
    assert!(write_keys(&mesh, 101, 99), "the next 99 writes");
    volumes::kill_primary_host(&mut mesh);
    let acked = (0..200).collect();
    let verdict = volumes::check_image(
        &volumes::image_path(&mesh.state_dir(volumes::STANDBY)),
        &acked,
    );
    assert!(verdict.ok(), "{verdict:?}");
}
