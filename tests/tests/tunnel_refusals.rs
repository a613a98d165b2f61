//! Bridge tunnels between hosts in network namespaces refuse a peer whose
//! certificate comes from another CA: a "rogue" host on the same LAN
//! presents an agent certificate for `mainpc` from a CA of its own (same
//! mesh name) and cannot open a tunnel to pc2's agent, whether it trusts
//! only its own CA or pc2's as well; the real mainpc can, with the same
//! command, and the mesh's own tunnels are untouched. Real agents, real
//! mutual-TLS QUIC, `mesh-agent tunnel-check`. Needs root: CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use mesh_certs::Role;
use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::netns::Host;
use mesh_tests::pki::Pki;
use mesh_tests::process::{self, run};
use mesh_tests::{binaries, require_root, wait};
use serde_json::Value;

/// `mesh-agent tunnel-check` from `host` as agent `node` with the
/// certificates in `certs`, towards pc2's tunnel endpoint.
fn tunnel_check(host: &Host, node: &str, certs: &Path, pc2: &Host, transport: &str) -> Output {
    let mut cmd = process::command(Some(host), &binaries::path("mesh-agent"));
    cmd.arg("tunnel-check")
        .arg("--node")
        .arg(node)
        .arg("--certs-dir")
        .arg(certs)
        .arg("--peer")
        .arg(format!("{}:7444", pc2.address))
        .arg("--peer-name")
        .arg("pc2")
        .arg("--timeout-ms")
        .arg("5000")
        .arg("--transport")
        .arg(transport);
    run(cmd)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_host_with_a_certificate_from_another_ca_cannot_open_a_tunnel() {
    if !require_root("a_host_with_a_certificate_from_another_ca_cannot_open_a_tunnel") {
        return;
    }
    let mut mesh = MeshFixture::start(&["mainpc", "pc2"], MeshOptions::default());
    for node in ["mainpc", "pc2"] {
        mesh.wait_ready_with_inventory(node, Duration::from_secs(30));
    }
    let rogue = mesh.lan.add_host("rogue");
    let pc2 = mesh.host("pc2").clone();

    // Both transports (every agent accepts QUIC and TLS over TCP) refuse the same way.
    for transport in ["tls", "quic"] {
        refusals(&mesh, &rogue, &pc2, transport);
    }
    // The mesh's own tunnels are as they were: check passes both ways.
    wait::until(
        "meshctl check to pass between mainpc and pc2",
        Duration::from_secs(20),
        Duration::from_millis(300),
        || {
            let out = mesh.meshctl("mainpc", &["check", "-o", "json"]);
            let check: Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", text(&out)))?;
            let tunnels_ok = check["hosts"].as_array().is_some_and(|hosts| {
                hosts.len() == 2
                    && hosts.iter().all(|h| {
                        h["tunnels"]
                            .as_array()
                            .is_some_and(|t| t.len() == 1 && t[0]["ok"] == true)
                    })
            });
            if out.status.success() && tunnels_ok {
                Ok(Some(()))
            } else {
                Err(check.to_string())
            }
        },
    );
}

/// The real mainpc's tunnel check passes, the rogue's fail with reasons, and pc2 logs them.
fn refusals(mesh: &MeshFixture, rogue: &Host, pc2: &Host, transport: &str) {
    // The real mainpc opens a tunnel to pc2 with this very command.
    let out = tunnel_check(
        mesh.host("mainpc"),
        "mainpc",
        mesh.pki.dir(),
        pc2,
        transport,
    );

    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tunnel to pc2"), "{}", text(&out));
    assert!(text(&out).contains(": ok"), "{}", text(&out));

    // A CA of the rogue's own, same mesh name, claiming to be mainpc.
    let rogue_pki = Pki::new(&mesh.pki.mesh);
    rogue_pki.issue(Role::Agent, "mainpc", &[]);

    // Trusting only its own CA, the rogue rejects pc2 itself.
    let out = tunnel_check(rogue, "mainpc", rogue_pki.dir(), pc2, transport);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("FAILED (certificate)"),
        "{}",
        text(&out)
    );

    // Trusting pc2's CA as well, it gets as far as pc2's agent, which
    // refuses its certificate.
    let sly = tempfile::Builder::new()
        .prefix("mesh-rogue-certs-")
        .tempdir()
        .unwrap();
    let both = format!(
        "{}{}",
        std::fs::read_to_string(mesh.pki.dir().join("ca.crt")).unwrap(),
        std::fs::read_to_string(rogue_pki.dir().join("ca.crt")).unwrap()
    );
    std::fs::write(sly.path().join("ca.crt"), both).unwrap();
    for file in ["agent-mainpc.crt", "agent-mainpc.key"] {
        std::fs::copy(rogue_pki.dir().join(file), sly.path().join(file)).unwrap();
    }
    let refused_lines = || {
        mesh.agents["pc2"]
            .logs()
            .lines()
            .filter(|l| l.contains("refused a tunnel") && l.contains(&rogue.address))
            .count()
    };
    let before = refused_lines();
    let out = tunnel_check(rogue, "mainpc", sly.path(), pc2, transport);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    eprintln!("rogue trusting both CAs: {said}");
    assert!(said.contains("FAILED (certificate)"), "{said}");
    assert!(said.contains("rejected our certificate"), "{said}");
    assert!(said.contains("same mesh CA"), "{said}");
    // pc2's agent says whom it refused.
    wait::until(
        "pc2's agent to log the refused tunnel",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            if refused_lines() > before {
                Ok(Some(()))
            } else {
                Err(String::from(
                    "no 'refused a tunnel' line naming the rogue's address",
                ))
            }
        },
    );
}
