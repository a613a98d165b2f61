use std::fs;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::*;

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn request(role: Role, name: &str, force: bool) -> IssueRequest {
    IssueRequest {
        role,
        name: name.to_string(),
        sans: vec!["10.0.0.2".to_string()],
        days: 30,
        force,
    }
}

#[test]
fn init_dir_writes_ca_with_safe_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let summary = init_dir(&dir, "prod", 365, false).unwrap();
    assert_eq!(summary.mesh, "prod");
    assert_eq!(summary.cert_path, dir.join("ca.crt"));
    assert_eq!(summary.key_path, dir.join("ca.key"));
    assert!(summary.not_after > OffsetDateTime::now_utc() + Duration::days(364));
    let ca = CertificateAuthority::load(
        &fs::read_to_string(&summary.cert_path).unwrap(),
        &fs::read_to_string(&summary.key_path).unwrap(),
    )
    .unwrap();
    assert_eq!(ca.mesh(), "prod");
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&summary.cert_path), 0o644);
        assert_eq!(mode(&summary.key_path), 0o600);
    }
    // No temporary files are left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
}

#[test]
fn init_dir_refuses_overwrite_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_dir(dir, "prod", 365, false).unwrap();
    let cert_before = fs::read(ca_cert_path(dir)).unwrap();
    let key_before = fs::read(ca_key_path(dir)).unwrap();

    let err = init_dir(dir, "prod", 365, false).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("refusing to overwrite"), "{msg}");
    assert!(msg.contains("pass --force"), "{msg}");
    assert_eq!(fs::read(ca_cert_path(dir)).unwrap(), cert_before);
    assert_eq!(fs::read(ca_key_path(dir)).unwrap(), key_before);

    // Only the key left: still refused, and ca.crt is not recreated.
    fs::remove_file(ca_cert_path(dir)).unwrap();
    let err = init_dir(dir, "prod", 365, false).unwrap_err();
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert!(!ca_cert_path(dir).exists());
    assert_eq!(fs::read(ca_key_path(dir)).unwrap(), key_before);

    let summary = init_dir(dir, "other", 365, true).unwrap();
    assert_eq!(summary.mesh, "other");
    assert_ne!(fs::read(ca_key_path(dir)).unwrap(), key_before);
    #[cfg(unix)]
    assert_eq!(mode(&ca_key_path(dir)), 0o600);
}

#[test]
fn init_dir_rejects_bad_input_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new");
    assert!(init_dir(&dir, "Bad_Mesh", 365, false).is_err());
    assert!(init_dir(&dir, "prod", 0, false).is_err());
    assert!(!dir.exists());
}

#[test]
fn issue_to_dir_writes_leaf_in_the_ca_mesh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_dir(dir, "prod", 365, false).unwrap();
    let issued = issue_to_dir(dir, &request(Role::Agent, "pc2", false)).unwrap();
    assert_eq!(issued.identity.uri(), "spiffe://prod/agent/pc2");
    assert_eq!(issued.cert_path, dir.join("agent-pc2.crt"));
    assert_eq!(issued.key_path, dir.join("agent-pc2.key"));
    #[cfg(unix)]
    {
        assert_eq!(mode(&issued.cert_path), 0o644);
        assert_eq!(mode(&issued.key_path), 0o600);
    }
    let pem = fs::read(&issued.cert_path).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(Identity::from_cert_der(&der).unwrap(), issued.identity);

    let before = fs::read(&issued.key_path).unwrap();
    let err = issue_to_dir(dir, &request(Role::Agent, "pc2", false)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("refusing to overwrite") && msg.contains("agent-pc2.crt"),
        "{msg}"
    );
    assert_eq!(fs::read(&issued.key_path).unwrap(), before);

    issue_to_dir(dir, &request(Role::Agent, "pc2", true)).unwrap();
    assert_ne!(fs::read(&issued.key_path).unwrap(), before);
    #[cfg(unix)]
    assert_eq!(mode(&issued.key_path), 0o600);

    let err = issue_to_dir(dir, &request(Role::Agent, "PC2", false)).unwrap_err();
    assert!(err.to_string().contains("node name"), "{err}");
}

#[test]
fn issue_to_dir_without_ca_says_how_to_create_one() {
    let tmp = tempfile::tempdir().unwrap();
    let err = issue_to_dir(tmp.path(), &request(Role::Admin, "alice", false)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot read CA certificate"), "{msg}");
    assert!(msg.contains("ca.crt"), "{msg}");
    assert!(msg.contains("meshctl certs init --dir"), "{msg}");

    fs::write(ca_cert_path(tmp.path()), "not a certificate").unwrap();
    fs::write(ca_key_path(tmp.path()), "not a key").unwrap();
    let msg = issue_to_dir(tmp.path(), &request(Role::Admin, "alice", false))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ca.crt"), "{msg}");
}

#[test]
fn list_dir_flags_expiry_and_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_dir(dir, "prod", 365, false).unwrap();
    issue_to_dir(dir, &request(Role::Coordinator, "main", false)).unwrap();
    let ca = CertificateAuthority::load(
        &fs::read_to_string(ca_cert_path(dir)).unwrap(),
        &fs::read_to_string(ca_key_path(dir)).unwrap(),
    )
    .unwrap();
    let now = OffsetDateTime::now_utc();
    let write_leaf = |name: &str, validity: Validity| {
        let id = Identity::new("prod", Role::Agent, name).unwrap();
        let leaf = ca.issue(&id, &[], validity).unwrap();
        let (crt, key) = leaf_paths(dir, Role::Agent, name);
        fs::write(crt, leaf.cert_pem).unwrap();
        fs::write(key, leaf.key_pem).unwrap();
    };
    write_leaf(
        "old",
        Validity::between(now - Duration::days(30), now - Duration::days(1)),
    );
    write_leaf(
        "soon",
        Validity::between(now - Duration::days(1), now + Duration::days(5)),
    );
    fs::write(dir.join("garbage.crt"), "hello").unwrap();
    fs::write(dir.join("notes.txt"), "ignored").unwrap();

    let list = list_dir(dir, now).unwrap();
    let names: Vec<String> = list
        .iter()
        .map(|i| i.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "agent-old.crt",
            "agent-soon.crt",
            "ca.crt",
            "coordinator-main.crt",
            "garbage.crt"
        ]
    );
    let [old, soon, ca_info, coord, garbage] = &list[..] else {
        panic!("unexpected listing {list:?}");
    };
    assert!(old.expired && !old.expiring_soon && old.expires_in_days < 0);
    assert!(soon.expiring_soon && !soon.expired);
    assert!((4..=5).contains(&soon.expires_in_days), "{soon:?}");
    assert!(ca_info.is_ca && ca_info.identity.is_none());
    assert_eq!(ca_info.mesh.as_deref(), Some("prod"));
    assert_eq!(ca_info.sans, ["spiffe://prod"]);
    assert!(!ca_info.expired && !ca_info.expiring_soon);
    assert_eq!(
        coord.identity.as_ref().map(|i| i.uri()).as_deref(),
        Some("spiffe://prod/coordinator/main")
    );
    assert_eq!(coord.sans, ["spiffe://prod/coordinator/main", "10.0.0.2"]);
    assert!(coord.problem.is_none() && !coord.is_ca);
    assert!(coord.expires_in_days >= 29);
    let problem = garbage.problem.as_deref().unwrap();
    assert!(problem.contains("garbage.crt"), "{problem}");
    assert!([old, soon, ca_info, coord]
        .iter()
        .all(|i| i.problem.is_none()));
}

#[test]
fn list_dir_of_missing_dir_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = list_dir(&tmp.path().join("nope"), OffsetDateTime::now_utc()).unwrap_err();
    assert!(err.to_string().contains("meshctl certs init"), "{err}");
}
