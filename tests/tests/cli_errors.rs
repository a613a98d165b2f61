//! The real binaries on bad input: a clear message that names what is
//! wrong and how to fix it, a non-zero exit, and nothing changed.

use std::process::Command;
use std::time::Duration;

use mesh_tests::binaries;
use mesh_tests::process::{self, Proc};

fn meshctl(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(binaries::path("meshctl"));
    cmd.args(args);
    let out = process::run(cmd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn certs_init_issue_list_and_refuse_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    let d = d.to_str().unwrap();
    let (ok, out, err) = meshctl(&["certs", "init", "--dir", d, "--mesh", "home"]);
    assert!(ok, "{err}");
    assert!(out.contains("created CA for mesh 'home'"), "{out}");
    let ca_before = std::fs::read(dir.path().join("certs/ca.crt")).unwrap();

    let (ok, _, err) = meshctl(&["certs", "init", "--dir", d, "--mesh", "home"]);
    assert!(!ok);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("certs/ca.crt")).unwrap(),
        ca_before
    );

    let (ok, out, err) = meshctl(&[
        "certs", "issue", "--dir", d, "--role", "agent", "--name", "pc2", "--san", "10.0.0.2",
        "--days", "7",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("spiffe://home/agent/pc2"), "{out}");
    let (ok, _, err) = meshctl(&[
        "certs", "issue", "--dir", d, "--role", "agent", "--name", "pc2",
    ]);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, _, err) = meshctl(&[
        "certs", "issue", "--dir", d, "--role", "boss", "--name", "x",
    ]);
    assert!(!ok && err.contains("coordinator"), "{err}");
    let (ok, _, err) = meshctl(&[
        "certs", "issue", "--dir", d, "--role", "agent", "--name", "PC 2",
    ]);
    assert!(!ok && err.contains("node name"), "{err}");

    let (ok, out, err) = meshctl(&["certs", "list", "--dir", d, "-o", "json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pc2 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pc2")
        .unwrap();
    assert_eq!(pc2["role"], "agent");
    assert_eq!(pc2["expiring_soon"], true);
    assert!(pc2["sans"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "10.0.0.2"));
    let (ok, table, _) = meshctl(&["certs", "list", "--dir", d]);
    assert!(ok);
    assert!(table.contains("WARNING: expires in"), "{table}");
}

#[test]
fn meshctl_without_coordinator_or_certificates_says_what_to_pass() {
    let (ok, _, err) = meshctl(&["nodes"]);
    assert!(!ok);
    assert!(err.contains("--coordinator"), "{err}");
    let (ok, _, err) = meshctl(&["--coordinator", "127.0.0.1:1", "nodes"]);
    assert!(!ok);
    assert!(err.contains("--certs-dir"), "{err}");
}

#[test]
fn agent_with_missing_or_foreign_certificate_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(meshctl(&["certs", "init", "--dir", d]).0);
    assert!(meshctl(&["certs", "issue", "--dir", d, "--role", "agent", "--name", "pc2"]).0);
    let run_agent = |extra: &[&str]| {
        let mut cmd = Command::new(binaries::path("mesh-agent"));
        cmd.args(["--coordinator", "127.0.0.1:1"]).args(extra);
        let out = process::run(cmd);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run_agent(&["--node", "mainpc", "--certs-dir", d]);
    assert!(!ok);
    assert!(
        err.contains("agent-mainpc.crt") && err.contains("meshctl certs issue"),
        "{err}"
    );
    let cert = format!("{d}/agent-pc2.crt");
    let key = format!("{d}/agent-pc2.key");
    let ca = format!("{d}/ca.crt");
    let (ok, err) = run_agent(&[
        "--node", "mainpc", "--ca", &ca, "--cert", &cert, "--key", &key,
    ]);
    assert!(!ok);
    assert!(err.contains("does not belong to agent 'mainpc'"), "{err}");
    let (ok, err) = run_agent(&["--certs-dir", d]);
    assert!(!ok && err.contains("node: missing"), "{err}");
}

/// A coordinator that is not there is a fact to report and retry, never a
/// reason for the agent to exit (static stability).
#[test]
fn agent_keeps_running_and_explains_when_coordinator_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(meshctl(&["certs", "init", "--dir", d]).0);
    assert!(meshctl(&["certs", "issue", "--dir", d, "--role", "agent", "--name", "pc2"]).0);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(binaries::path("mesh-agent"));
    cmd.args(["--node", "pc2", "--certs-dir", d])
        .arg("--coordinator")
        .arg(format!("127.0.0.1:{port}"));
    let mut agent = Proc::spawn("agent-unreachable", cmd);
    mesh_tests::wait::until(
        "two failed connection attempts in the agent log",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || Ok((agent.logs().matches("coordinator session ended").count() >= 2).then_some(())),
    );
    assert!(agent.is_running());
    let logs = agent.logs();
    assert!(logs.contains("Connection refused"), "{logs}");
    assert!(logs.contains("is the coordinator running"), "{logs}");
    // It stops cleanly on SIGTERM.
    let status = agent.stop(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "agent did not exit cleanly on SIGTERM"
    );
}
