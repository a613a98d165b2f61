//! Leases against clocks: the primary's agent sees its wall clock step an
//! hour forward and then back (libfaketime, for that one process) while a
//! client writes through the bridge; its leases are measured on the boot
//! clock, so nothing fences, fails over or pauses. Needs root, podman,
//! /dev/fuse, e2fsprogs and libfaketime: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::volumes;

const LIBFAKETIME: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];

/// Waits until the writer has been acknowledged for `span` past now.
fn writes_go_on_for(writer: &mesh_tests::process::Proc, span: Duration) {
    let from = volumes::ack_times(writer).last().copied().unwrap_or(0);
    mesh_tests::wait::until(
        "the writer to be acknowledged for two leases past the step",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let last = volumes::ack_times(writer).last().copied().unwrap_or(0);
            Ok((last >= from + span.as_millis() as u64).then_some(()))
        },
    );
}

#[test]
fn a_wall_clock_step_of_an_hour_on_the_primary_touches_no_lease() {
    if !require_podman("a_wall_clock_step_of_an_hour_on_the_primary_touches_no_lease") {
        return;
    }
    let Some(lib) = LIBFAKETIME
        .iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!(
            "libfaketime is missing: apt-get install libfaketime (scripts/install-deps.sh does)"
        );
    };
    ensure_demo_image();
    let mut mesh = volumes::start_mesh();
    let rc = mesh.state.path().join("faketime.rc");
    std::fs::write(&rc, "+0\n").unwrap();
    let rc_path = rc.to_string_lossy().into_owned();
    // pc2's agent on a wall clock the test can step, before anything runs
    // there (restarting a primary's agent later would fail it over).
    mesh.restart_agent_with_env(
        volumes::PRIMARY,
        &[
            ("LD_PRELOAD", lib),
            ("FAKETIME_TIMESTAMP_FILE", &rc_path),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    mesh.wait_ready_with_inventory(volumes::PRIMARY, Duration::from_secs(30));
    // The interposer that fakes its wall clock is loaded in that process.
    let pid = mesh.agents[volumes::PRIMARY].pid();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    assert!(
        maps.contains("libfaketimeMT.so.1"),
        "libfaketime is not loaded in pc2's agent (pid {pid})"
    );
    volumes::apply_text(&mesh, &volumes::bridged_topology());
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    let writer = volumes::start_retrying_writer(&mesh, 1, Duration::from_secs(1));
    writes_go_on_for(&writer, Duration::from_secs(1));
    let lease = Duration::from_secs(2);
    std::fs::write(&rc, "+1h\n").unwrap();
    writes_go_on_for(&writer, 2 * lease);
    std::fs::write(&rc, "+0\n").unwrap();
    writes_go_on_for(&writer, 2 * lease);
    let gap = volumes::longest_gap_ms(&writer);
    let mut writer = writer;
    writer.kill();
    let agent = mesh.agents[volumes::PRIMARY].logs();
    assert!(!agent.contains("fencing"), "pc2 fenced itself: {agent}");
    assert!(
        !mesh.coordinator.logs().contains("standby promoted"),
        "a failover happened"
    );
    let v = volumes::volumes_json(&mesh).unwrap();
    let row = volumes::row(&v).unwrap();
    assert_eq!(row["primary"], "pc2", "{row}");
    assert_eq!(row["epoch"], 1, "{row}");
    eprintln!("wall clock +1 h and back on pc2: longest pause between acknowledgements {gap} ms");
    assert!(
        gap < lease.as_millis() as u64,
        "writes paused {gap} ms around the steps"
    );
    let (acked, _) = volumes::writer_tally(&writer);
    let verdict = volumes::check_standby_after_kill(&mut mesh, &acked);
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}
