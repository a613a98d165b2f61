//! Automatic failover of a singleton group with a replicated volume
//! (network namespaces, real agents with their own Podman, the SQLite demo
//! service, the bridge): the primary host killed hard, the standby
//! promoted at a new epoch, the service answering through the same bridge
//! endpoint with every write it acknowledged. Needs root, podman,
//! /dev/fuse and e2fsprogs: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::volumes::{self, HOSTS};

#[test]
fn the_primary_host_killed_hard_the_standby_serves_every_acknowledged_write_at_the_same_endpoint() {
    if !require_podman("the_primary_host_killed_hard_the_standby_serves_every_acknowledged_write_at_the_same_endpoint") {
        return;
    }
    ensure_demo_image();
    let mut mesh = MeshFixture::start(
        &HOSTS,
        MeshOptions {
            containers: true,
            ..MeshOptions::default()
        },
    );
    for host in HOSTS {
        mesh.wait_ready_with_inventory(host, Duration::from_secs(30));
    }
    volumes::apply_text(&mesh, &volumes::bridged_topology());
    volumes::wait_in_sync(&mesh, Duration::from_secs(120));
    mesh_tests::wait::until(
        "writes through mainpc's bridge endpoint",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || Ok(volumes::write_bridged(&mesh, 0, 1).then_some(())),
    );
    let writer = volumes::start_bridged_writer(&mesh, 1, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    volumes::kill_primary_host(&mut mesh);
    let mut writer = writer;
    mesh_tests::wait::until(
        "the writer to give up",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok((!writer.is_running()).then_some(())),
    );
    let (mut acked, _) = volumes::writer_tally(&writer);
    acked.insert(0);
    assert!(acked.len() > 10, "{}", writer.logs());
    let next = acked.iter().max().copied().unwrap_or(0) + 1;
    // The same endpoint answers again, now served on pc3.
    mesh_tests::wait::until(
        "a write through the same bridge endpoint after the failover",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || Ok(volumes::write_bridged(&mesh, next, 1).then_some(())),
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
    mesh.agents.get_mut(volumes::STANDBY).unwrap().kill();
    let _ = mesh_tests::process::run({
        let mut c = mesh.podman(volumes::STANDBY);
        c.args(["kill", "--signal", "KILL", "--all"]);
        c
    });
    let verdict = volumes::check_image(
        &volumes::image_path(&mesh.state_dir(volumes::STANDBY)),
        &acked,
    );
    assert!(verdict.ok(), "{} acknowledged: {verdict:?}", acked.len());
}
