//! Joining with a token, certificates renewed without a restart, and
//! removal that takes effect at once, on real hosts (network namespaces),
//! real binaries and real mutual TLS:
//!
//! * bad tokens (garbage, another mesh's CA, the wrong role) are refused
//!   with the reason and nothing is written on the joining host; the
//!   admin token gives an operator a working admin certificate
//!   (`meshctl certs join`);
//! * pc3 joins with `mesh-agent join` and a one-use token and becomes
//!   Ready; its key never left it (mode 0600, made there); the used token
//!   is refused the second time;
//! * with 20 s certificates, pc3 renews several times while its stream
//!   stays up (one session: its heartbeat count never resets); after the
//!   coordinator restarts, pc3 reconnects with the renewed certificate
//!   (the first one has expired by then);
//! * the coordinator, started with a 30 s certificate, renews its own
//!   certificate from the signing CA in the same window without dropping
//!   a stream, writes it back, and starts again from the renewed file;
//! * `meshctl nodes remove pc3`: pc3 leaves the node list, its reconnects
//!   are refused, and pc2 refuses a tunnel from pc3's certificate.
//!
//! Needs root (namespaces): CI runs it.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use mesh_certs::Role;
use mesh_tests::mesh::{MeshFixture, MeshOptions};
use mesh_tests::pki::Pki;
use mesh_tests::process::{self, Proc};
use mesh_tests::{binaries, wait};

const LIFETIME_S: &str = "20";

fn token(mesh: &MeshFixture, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "-o", "json"];
    all.extend_from_slice(args);
    let out = mesh.meshctl("mainpc", &all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn join_cmd(
    mesh: &MeshFixture,
    dir: &std::path::Path,
    token: &str,
    no_start: bool,
) -> std::process::Command {
    let host = mesh.host("pc3");
    let mut cmd = process::command(Some(host), &binaries::path("mesh-agent"));
    cmd.arg("--certs-dir")
        .arg(dir)
        .arg("--heartbeat-ms")
        .arg("200")
        .arg("--advertise-address")
        .arg(&host.address)
        .arg("--state-dir")
        .arg(mesh.state_dir("pc3"))
        .arg("join")
        .arg(mesh.coordinator_address())
        .arg("--token")
        .arg(token)
        .arg("--name")
        .arg("pc3");
    if no_start {
        cmd.arg("--no-start");
    }
    cmd
}

fn refused(mesh: &MeshFixture, dir: &std::path::Path, token: &str, why: &str) {
    let out = process::run(join_cmd(mesh, dir, token, true));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "joined with a bad token ({why})");
    assert!(err.contains(why), "expected '{why}' in: {err}");
    assert_eq!(
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0),
        0,
        "a refused join wrote files"
    );
}

#[test]
fn join_renew_and_remove() {
    if !mesh_tests::require_root("join_renew_and_remove") {
        return;
    }
    let mut mesh = MeshFixture::start(&["mainpc", "pc2"], MeshOptions::default());
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    // The coordinator gets a certificate that expires within the test.
    let ca = mesh_certs::load_signing_ca(mesh.pki.dir()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let short = ca
        .issue(
            &mesh_certs::Identity::new("testmesh", Role::Coordinator, "coordinator").unwrap(),
            &[],
            mesh_certs::Validity::between(
                now - time::Duration::seconds(5),
                now + time::Duration::seconds(30),
            ),
        )
        .unwrap();
    let (coord_cert, coord_key) =
        mesh_certs::leaf_paths(mesh.pki.dir(), Role::Coordinator, "coordinator");
    mesh_certs::write_file_atomic(&coord_key, &short.key_pem, true).unwrap();
    mesh_certs::write_file_atomic(&coord_cert, &short.cert_pem, false).unwrap();
    mesh.restart_coordinator_with_env(&[("MESH_MEMBER_CERT_LIFETIME_S", LIFETIME_S)]);
    mesh.wait_ready_with_inventory("pc2", Duration::from_secs(30));
    let pc3 = mesh.lan.add_host("pc3");
    mesh.hosts.insert("pc3".into(), pc3);
    let dir = tempfile::Builder::new()
        .prefix("mesh-pc3-")
        .tempdir()
        .unwrap();
    let certs = dir.path().join("certs");

    // Bad tokens: refused with the reason, nothing written.
    refused(&mesh, &certs, "not-a-token", "dot-separated parts");
    let other = Pki::new("othermesh");
    let foreign_fp = mesh_certs::ca_fingerprint(
        &std::fs::read_to_string(mesh_certs::ca_cert_path(other.dir())).unwrap(),
    )
    .unwrap();
    let foreign = mesh_certs::JoinToken::generate(&foreign_fp)
        .unwrap()
        .to_string();
    refused(
        &mesh,
        &certs,
        &foreign,
        "did not present the CA the token pins",
    );
    let admin_token = token(&mesh, &["--role", "admin"]);
    refused(&mesh, &certs, &admin_token, "for role admin, not agent");
    // The same admin token (refused for an agent, so still unused) gives
    // an operator on pc3 an admin certificate, which works at once.
    let ops = dir.path().join("ops");
    let mut cmd = process::command(Some(mesh.host("pc3")), &binaries::path("meshctl"));
    cmd.args(["certs", "join"])
        .arg(mesh.coordinator_address())
        .args(["--token", &admin_token, "--name", "ops", "--dir"])
        .arg(&ops);
    let out = process::run(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = process::command(Some(mesh.host("pc3")), &binaries::path("meshctl"));
    cmd.arg("--coordinator")
        .arg(mesh.coordinator_address())
        .arg("--certs-dir")
        .arg(&ops)
        .args(["--admin-name", "ops", "nodes", "-o", "json"]);
    let out = process::run(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"pc2\""));
    let named = token(&mesh, &["--name", "pc9"]);
    refused(&mesh, &certs, &named, "admits only the name 'pc9'");

    // The join: a one-use token, then the agent runs from what it wrote.
    let good = token(&mesh, &["--name", "pc3", "--ttl", "10m"]);
    let started = std::time::Instant::now();
    let mut agent = Proc::spawn("agent-pc3", join_cmd(&mesh, &certs, &good, false));
    let first = mesh.wait_ready_with_inventory("pc3", Duration::from_secs(30));
    eprintln!("pc3 joined and Ready in {:?}", started.elapsed());
    let (cert, key) = mesh_certs::leaf_paths(&certs, Role::Agent, "pc3");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(mesh_certs::ca_cert_path(&certs).exists());
    let first_serial = first["cert_serial"].as_str().unwrap().to_string();
    assert!(!first_serial.is_empty(), "{first}");
    let first_pem = std::fs::read_to_string(&cert).unwrap();
    let again = dir.path().join("again");
    refused(&mesh, &again, &good, "is not known here");

    // Renewal: three lifetimes on one stream.
    let mut last_beats = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut serials = std::collections::BTreeSet::from([first_serial.clone()]);
    while std::time::Instant::now() < deadline {
        let nodes = mesh.nodes_json().unwrap();
        let n = MeshFixture::node(&nodes, "pc3").unwrap().clone();
        let beats = n["session_heartbeats"].as_u64().unwrap();
        assert!(
            beats >= last_beats,
            "pc3's stream was re-established ({beats} < {last_beats} heartbeats): {}",
            mesh.agents
                .get("pc3")
                .map(|a| a.logs())
                .unwrap_or_else(|| agent.logs())
        );
        assert_eq!(n["state"], "ready", "{n}");
        last_beats = beats;
        serials.insert(n["cert_serial"].as_str().unwrap_or_default().to_string());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        serials.len() >= 3,
        "pc3 renewed fewer than twice in 60 s with {LIFETIME_S} s certificates: {serials:?}\n{}",
        agent.logs()
    );
    assert_ne!(
        std::fs::read_to_string(&cert).unwrap(),
        first_pem,
        "renewed pair not written"
    );
    let coord_now = std::fs::read_to_string(&coord_cert).unwrap();
    assert_ne!(
        coord_now, short.cert_pem,
        "the coordinator did not renew its own certificate"
    );
    let coord_leaf = mesh_certs::leaf_facts_pem(&coord_now).unwrap();
    assert!(
        coord_leaf.not_after_unix > short.not_after.unix_timestamp(),
        "the coordinator's renewed certificate does not outlive the first"
    );
    assert!(mesh
        .coordinator
        .logs()
        .contains("coordinator certificate renewed"));
    let issued = mesh.meshctl("mainpc", &["certs", "issued", "-o", "json"]);
    let issued: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
    let pc3_certs = issued
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["identity"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/agent/pc3")
        })
        .count();
    assert!(pc3_certs >= 3, "{issued}");

    // A new connection uses the renewed certificate: the first expired.
    mesh.restart_coordinator_with_env(&[("MESH_MEMBER_CERT_LIFETIME_S", LIFETIME_S)]);
    mesh.wait_ready_with_inventory("pc3", Duration::from_secs(30));

    // A tunnel from pc3's certificate to pc2 works before the removal...
    let pc2_tunnel = format!("{}:7444", mesh.host("pc2").address);
    let tunnel_check = || {
        let mut cmd = process::command(Some(mesh.host("pc3")), &binaries::path("mesh-agent"));
        cmd.args(["--node", "pc3", "--certs-dir"])
            .arg(&certs)
            .args([
                "tunnel-check",
                "--peer",
                &pc2_tunnel,
                "--peer-name",
                "pc2",
                "--timeout-ms",
                "2000",
            ]);
        process::run(cmd)
    };
    let out = tunnel_check();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // ...and removal takes effect at once.
    let out = mesh.meshctl("mainpc", &["nodes", "remove", "pc3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait::until(
        "pc3 to leave the node list and stay out",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let nodes = mesh.nodes_json()?;
            Ok(MeshFixture::node(&nodes, "pc3").is_none().then_some(()))
        },
    );
    wait::until(
        "pc2 to refuse a tunnel from pc3's revoked certificate",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let out = tunnel_check();
            Ok((!out.status.success()).then_some(()))
        },
    );
    wait::until(
        "pc3's reconnects to be refused as revoked",
        Duration::from_secs(15),
        Duration::from_millis(300),
        || Ok(agent.logs().contains("revoked").then_some(())),
    );
    let nodes = mesh.nodes_json().unwrap();
    assert!(
        MeshFixture::node(&nodes, "pc3").is_none(),
        "pc3 came back after removal"
    );
    let events = mesh.meshctl("mainpc", &["events", "-o", "json"]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("RemoveNode by spiffe://testmesh/admin/admin"),
        "{events}"
    );
    assert!(events.contains("joined from"), "{events}");
    agent.kill();
}
