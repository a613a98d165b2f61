//! Replicated volumes across hosts (network namespaces, real agents with
//! their own Podman, the demo service in sqlite mode on a FUSE-served,
//! loop-mounted ext4, replicated over the agents' mutual-TLS QUIC tunnel):
//! every write the service acknowledged is on the standby's image after
//! the primary host is killed hard. Needs root, podman, /dev/fuse and
//! e2fsprogs: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::podman::{ensure_demo_image, require_podman};
use mesh_tests::volumes::{self, HOSTS};

fn mesh() -> MeshFixture {
    let mesh = MeshFixture::start(
        &HOSTS,
        MeshOptions {
            containers: true,
            ..MeshOptions::default()
        },
    );
    for host in HOSTS {
        mesh.wait_ready_with_inventory(host, Duration::from_secs(30));
    }
    mesh
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
