//! `/metrics` and the dashboard over mutual TLS for scrapers on other
//! hosts: the coordinator on mainpc serves them on its LAN address with
//! its mesh certificate; from pc2, curl with a mesh client certificate
//! gets the metrics and the page, and without one (or over plain HTTP, or
//! with a certificate of another CA) it is refused. Needs root and curl
//! (namespaces): CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use mesh_certs::{IssueRequest, Role};
use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::netns::Host;
use mesh_tests::pki::Pki;
use mesh_tests::process;

fn curl(from: &Host, args: &[&str]) -> std::process::Output {
    let mut cmd = process::command(Some(from), Path::new("curl"));
    cmd.args(["-sS", "--max-time", "5"]).args(args);
    process::run(cmd)
}

#[test]
fn remote_scrapers_need_a_mesh_certificate() {
    if !mesh_tests::require_root("remote_scrapers_need_a_mesh_certificate") {
        return;
    }
    let mut mesh = MeshFixture::start(&["mainpc", "pc2"], MeshOptions::default());
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let ip = mesh.host("mainpc").address.clone();
    // The coordinator's certificate names its address too, so clients
    // that check names (curl, Prometheus) accept it.
    mesh_certs::issue_to_dir(
        mesh.pki.dir(),
        &IssueRequest {
            role: Role::Coordinator,
            name: "coordinator".into(),
            sans: vec![ip.clone()],
            days: 30,
            force: true,
        },
    )
    .unwrap();
    let listen = format!("{ip}:9464");
    mesh.restart_coordinator_with_env(&[
        ("MESH_COORDINATOR_METRICS_TLS", "true"),
        ("MESH_COORDINATOR_METRICS_LISTEN", listen.as_str()),
    ]);
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let dir = mesh.pki.dir().to_path_buf();
    let ca = mesh_certs::ca_cert_path(&dir);
    let (cert, key) = mesh_certs::leaf_paths(&dir, Role::Admin, "admin");
    let ca = ca.display().to_string();
    let cert = cert.display().to_string();
    let key = key.display().to_string();
    let url = format!("https://{ip}:9464/metrics");
    let pc2 = mesh.host("pc2").clone();
    let body = mesh_tests::wait::until(
        "pc2 to scrape the coordinator over mutual TLS",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let out = curl(
                &pc2,
                &["--cacert", &ca, "--cert", &cert, "--key", &key, &url],
            );
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok((out.status.success() && body.contains("mesh_node_state")).then_some(body))
        },
    );
    assert!(body.contains("node=\"pc2\""), "{body}");
    let page = curl(
        &pc2,
        &[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            &format!("https://{ip}:9464/"),
        ],
    );
    assert!(String::from_utf8_lossy(&page.stdout).contains("dashboard.js"));
    // No client certificate: the handshake is refused.
    let out = curl(&pc2, &["--cacert", &ca, &url]);
    assert!(
        !out.status.success(),
        "scraped without a client certificate"
    );
    // Plain HTTP on the TLS port gets nothing.
    let out = curl(&pc2, &[&format!("http://{ip}:9464/metrics")]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("mesh_node_state"),
        "plain HTTP answered"
    );
    // A certificate of another mesh CA is refused.
    let other = Pki::new("othermesh");
    other.issue(Role::Admin, "admin", &[]);
    let (ocert, okey) = mesh_certs::leaf_paths(other.dir(), Role::Admin, "admin");
    let out = curl(
        &pc2,
        &[
            "--cacert",
            &ca,
            "--cert",
            &ocert.display().to_string(),
            "--key",
            &okey.display().to_string(),
            &url,
        ],
    );
    assert!(
        !out.status.success(),
        "scraped with another CA's certificate"
    );
}
