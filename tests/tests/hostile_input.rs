//! Hostile input to every file parser the mesh reads (issue #14's
//! fuzzing, bounded time in CI): topology files, compose files for
//! import, container files, coordinator.toml and agent.toml. Random bytes,
//! and valid files mutated (bytes flipped, cut short, lines duplicated or
//! dropped), must give a value or an error with a message: never a panic.
//! `PROPTEST_CASES=N` runs longer.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mesh_topology::compose::{import, ComposeFile, Options};
use proptest::prelude::*;

const TOPOLOGY: &str = include_str!("../../topology/examples/ai-system.toml");
const COMPOSE: &str = include_str!("../../topology/tests/compose/pc2-compose.yml");
const CONTAINERS: &str = r#"
[[containers]]
name = "web"
group = "memory-system"
image = "localhost/x"
command = ["/bin/sh", "-c", "exec httpd -f -p 8080"]
env = { VERSION = "1" }
memory_mib = 64
ports = ["8080:8080"]
[containers.health]
http = { port = 8080, path = "/index.html" }
interval_ms = 300
"#;
const AGENT_TOML: &str = r#"
node = "pc2"
coordinator = "192.168.1.10:7443"
heartbeat_ms = 500
storage_path = "/var/lib/containers"
metrics_listen = "127.0.0.1:9465"
[labels]
role = "pc2"
[tls]
certs_dir = "/etc/mesh/certs"
[podman]
own_service = true
[bridge]
listen = "0.0.0.0:7444"
[volumes]
fsync_bound_ms = 5000
[[gpus]]
name = "RTX 3060"
vram_mib = 12288
"#;

const COORDINATOR_TOML: &str = r#"
listen = "0.0.0.0:7443"
metrics_listen = "127.0.0.1:9464"
metrics_tls = false
state_dir = "/var/lib/mesh"
[tls]
certs_dir = "/etc/mesh/certs"
[liveness]
suspect_after = 3
down_after = 10
[events]
keep = 5000
keep_days = 7
"#;

/// A valid text changed the way a careless edit or a corrupt disk would.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let bytes = base.as_bytes().to_vec();
    let len = bytes.len();
    prop_oneof![
        // Bytes overwritten at random places.
        prop::collection::vec((0..len, any::<u8>()), 1..8).prop_map({
            let bytes = bytes.clone();
            move |edits| {
                let mut b = bytes.clone();
                for (i, v) in edits {
                    b[i] = v;
                }
                String::from_utf8_lossy(&b).into_owned()
            }
        }),
        // Cut short anywhere.
        (0..len).prop_map({
            let bytes = bytes.clone();
            move |n| String::from_utf8_lossy(&bytes[..n]).into_owned()
        }),
        // Lines dropped or repeated.
        prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..6).prop_map(
            move |ops| {
                let mut lines: Vec<&str> = base.lines().collect();
                for (at, dup) in ops {
                    if lines.is_empty() {
                        break;
                    }
                    let i = at.index(lines.len());
                    if dup {
                        let l = lines[i];
                        lines.insert(i, l);
                    } else {
                        lines.remove(i);
                    }
                }
                lines.join("\n")
            }
        ),
        // Anything at all.
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// A real join token and a real CSR, the bases for the CSR/token path.
fn join_inputs() -> (&'static str, &'static str, mesh_certs::CertificateAuthority) {
    use std::sync::OnceLock;
    static TEXTS: OnceLock<(String, String)> = OnceLock::new();
    let ca = mesh_certs::CertificateAuthority::generate("prod", mesh_certs::Validity::days(1))
        .expect("CA");
    let (token, csr) = TEXTS.get_or_init(|| {
        let fp = mesh_certs::ca_fingerprint(ca.cert_pem()).expect("fingerprint");
        let token = mesh_certs::JoinToken::generate(&fp)
            .expect("token")
            .to_string();
        let id = mesh_certs::Identity::new("prod", mesh_certs::Role::Agent, "pc3").expect("id");
        let csr = mesh_certs::new_key_and_csr(&id).expect("csr").csr_pem;
        (token, csr)
    });
    (token.as_str(), csr.as_str(), ca)
}

proptest! {
    #[test]
    fn join_tokens_never_panic(text in mutated(join_inputs().0)) {
        if let Err(e) = text.parse::<mesh_certs::JoinToken>() {
            prop_assert!(e.to_string().contains("token"));
        }
    }

    #[test]
    fn csrs_never_panic(text in mutated(join_inputs().1)) {
        let (_, _, ca) = join_inputs();
        let id = mesh_certs::Identity::new("prod", mesh_certs::Role::Agent, "pc3").expect("id");
        match ca.sign_csr(&id, &text, mesh_certs::Validity::days(1)) {
            // Whatever is signed is a mesh leaf for `id` alone.
            Ok(chain) => prop_assert!(mesh_certs::leaf_facts_pem(&chain).is_ok()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn topology_files_never_panic(text in mutated(TOPOLOGY)) {
        if let Err(problems) = mesh_coordinator::decide::planning::parse("t.toml", &text) {
            prop_assert!(!problems.is_empty());
            prop_assert!(problems.iter().all(|p| !p.is_empty()));
        }
    }

    #[test]
    fn compose_files_never_panic(text in mutated(COMPOSE)) {
        let file = ComposeFile {
            path: PathBuf::from("pc2-compose.yml"),
            base_dir: PathBuf::from("/srv"),
            text,
        };
        if let Err(e) = import(&[file], Options::default()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn container_files_never_panic(text in mutated(CONTAINERS)) {
        let parsed: Result<mesh_topology::service::ContainersFile, _> =
            mesh_topology::parse_toml(Path::new("c.toml"), &text);
        match parsed {
            Ok(file) => {
                for s in &file.containers {
                    if let Err(e) = mesh_proto::from_topology::container_spec(s) {
                        prop_assert!(!e.is_empty());
                    }
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn coordinator_config_never_panics(text in mutated(COORDINATOR_TOML)) {
        use mesh_coordinator::config::{parse_file, resolve, Overrides};
        match parse_file(Path::new("coordinator.toml"), &text) {
            Ok(file) => {
                if let Err(e) = resolve(file, Overrides::default()) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn agent_config_never_panics(text in mutated(AGENT_TOML)) {
        use mesh_node_agent::config::{parse_file, resolve, Overrides};
        match parse_file(Path::new("agent.toml"), &text) {
            Ok(file) => {
                if let Err(e) = resolve(file, Overrides::default()) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn the_unmutated_files_parse() {
    mesh_coordinator::decide::planning::parse("t.toml", TOPOLOGY).expect("topology");
    let file = ComposeFile {
        path: PathBuf::from("pc2-compose.yml"),
        base_dir: PathBuf::from("/srv"),
        text: COMPOSE.to_string(),
    };
    import(&[file], Options::default()).expect("compose");
    let parsed: mesh_topology::service::ContainersFile =
        mesh_topology::parse_toml(Path::new("c.toml"), CONTAINERS).expect("containers");
    for s in &parsed.containers {
        mesh_proto::from_topology::container_spec(s).expect("spec");
    }
    let file = mesh_coordinator::config::parse_file(Path::new("c.toml"), COORDINATOR_TOML)
        .expect("coordinator.toml");
    mesh_coordinator::config::resolve(file, Default::default()).expect("resolve");
}

#[test]
fn the_unmutated_file_resolves() {
    let file =
        mesh_node_agent::config::parse_file(Path::new("agent.toml"), AGENT_TOML).expect("parse");
    let c = mesh_node_agent::config::resolve(file, Default::default()).expect("resolve");
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9465")
    );
}
