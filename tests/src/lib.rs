//! Test harness for the mesh, its integration tests (`tests/`) and its
//! benchmark binaries (`src/bin/`: `bench-control-plane`,
//! `bench-containers`, `bench-placement`, `bench-bridge`).
//!
//! - [`netns`]: isolated hosts in network namespaces on one virtual LAN,
//!   which a test can cut off and restore; removed on drop.
//! - [`process`]: real `mesh-coordinator` / `mesh-agent` / `meshctl` /
//!   `mesh-demo-service` processes, run inside a host, killed on drop,
//!   logs kept for failures.
//! - [`mesh`]: a whole mesh on test hosts, a coordinator and an agent each.
//! - [`podman`]: a Podman service of a test's own, with a tiny image.
//! - [`pki`]: a fresh mesh CA and certificates per test.
//! - [`binaries`]: where the workspace's binaries were built.
//! - [`browser`]: headless Chromium in a host's namespace, driven over the
//!   DevTools protocol (the dashboard's browser test).
//! - [`moves`]: a bridged service moved between hosts by re-applying a
//!   topology, and the wait until every host's bridge follows it.
//! - [`volumes`]: a replicated volume's mesh, the hard kill of its
//!   primary host, and the checker of the standby's image.
//! - [`wait`]: polling with a deadline that names what was awaited.
//!
//! Everything is named per test and per process, so tests run in parallel.
//!
//! What it must not do: be a dependency of any other crate; leave
//! anything behind (namespaces, processes, containers, files), also when
//! a test fails; change the machine's own network, or its Podman beyond
//! importing the busybox test image into the system image store (which
//! the agents' own Podman services share read-only); fake what it tests
//! (real binaries, real TLS, real Podman).
#![forbid(unsafe_code)]
// A test harness fails the test that uses it by panicking with a message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod binaries;
pub mod browser;
pub mod hostile;
pub mod mesh;
pub mod moves;
pub mod netns;
pub mod pki;
pub mod podman;
pub mod process;
pub mod volumes;
pub mod wait;

/// Tests that need root and namespaces call this first. In CI (CI=true)
/// a missing prerequisite fails the test; elsewhere the test is skipped
/// with the reason printed.
pub fn require_root(test: &str) -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has_ip = std::process::Command::new("ip").arg("-V").output().is_ok();
    let problem = if !root {
        Some("needs root for network namespaces")
    } else if !has_ip {
        Some("needs iproute2 (`ip`); run scripts/install-deps.sh")
    } else {
        None
    };
    match problem {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: {why}, and CI must not skip it")
        }
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}
