//! Hostile input to every parser the mesh reads from files, tokens and
//! CSRs: the valid texts mutations start from, and one check per parser
//! that says whether its contract held (a value, or an error with a
//! message; never a panic, which the caller catches). Used by the
//! property tests (`tests/tests/hostile_input.rs`, bounded in CI) and the
//! longer fuzz benchmark (`bench-fuzz`).

use std::path::{Path, PathBuf};

use mesh_topology::compose::{import, ComposeFile, Options};

pub const TOPOLOGY: &str = include_str!("../../topology/examples/ai-system.toml");
pub const COMPOSE: &str = include_str!("../../topology/tests/compose/pc2-compose.yml");
pub const CONTAINERS: &str = r#"
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
pub const AGENT_TOML: &str = r#"
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

pub const COORDINATOR_TOML: &str = r#"
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

/// A parser the mesh exposes to hostile input, with the text it starts from.
pub struct Target {
    pub name: &'static str,
    pub base: fn() -> String,
    /// Err: the contract was broken (an error without a message).
    pub check: fn(&str) -> Result<(), String>,
}

fn need_message(e: impl std::fmt::Display) -> Result<(), String> {
    let text = e.to_string();
    if text.trim().is_empty() {
        Err("an error without a message".into())
    } else {
        Ok(())
    }
}

pub fn check_topology(text: &str) -> Result<(), String> {
    match mesh_coordinator::decide::planning::parse("t.toml", text) {
        Ok(_) => Ok(()),
        Err(problems) if problems.is_empty() => Err("refused with no problem named".into()),
        Err(problems) => problems.iter().try_for_each(need_message),
    }
}

pub fn check_compose(text: &str) -> Result<(), String> {
    let file = ComposeFile {
        path: PathBuf::from("pc2-compose.yml"),
        base_dir: PathBuf::from("/srv"),
        text: text.to_string(),
    };
    import(&[file], Options::default())
        .map(|_| ())
        .or_else(need_message)
}

pub fn check_containers(text: &str) -> Result<(), String> {
    let parsed: Result<mesh_topology::service::ContainersFile, _> =
        mesh_topology::parse_toml(Path::new("c.toml"), text);
    match parsed {
        Ok(file) => file.containers.iter().try_for_each(|s| {
            mesh_proto::from_topology::container_spec(s)
                .map(|_| ())
                .or_else(need_message)
        }),
        Err(e) => need_message(e),
    }
}

pub fn check_coordinator_config(text: &str) -> Result<(), String> {
    use mesh_coordinator::config::{parse_file, resolve, Overrides};
    match parse_file(Path::new("coordinator.toml"), text) {
        Ok(file) => resolve(file, Overrides::default())
            .map(|_| ())
            .or_else(need_message),
        Err(e) => need_message(e),
    }
}

pub fn check_agent_config(text: &str) -> Result<(), String> {
    use mesh_node_agent::config::{parse_file, resolve, Overrides};
    match parse_file(Path::new("agent.toml"), text) {
        Ok(file) => resolve(file, Overrides::default())
            .map(|_| ())
            .or_else(need_message),
        Err(e) => need_message(e),
    }
}

pub fn check_join_token(text: &str) -> Result<(), String> {
    match text.parse::<mesh_certs::JoinToken>() {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("token") => Ok(()),
        Err(e) => Err(format!(
            "a refusal that does not say it is about the token: {e}"
        )),
    }
}

struct JoinFixture {
    ca: mesh_certs::CertificateAuthority,
    token: String,
    csr: String,
}

fn join_fixture() -> &'static JoinFixture {
    use std::sync::OnceLock;
    static FIXTURE: OnceLock<JoinFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = mesh_certs::CertificateAuthority::generate("prod", mesh_certs::Validity::days(1))
            .unwrap_or_else(|e| panic!("CA: {e}"));
        let fp = mesh_certs::ca_fingerprint(ca.cert_pem()).unwrap_or_else(|e| panic!("{e}"));
        let token = mesh_certs::JoinToken::generate(&fp)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let csr = mesh_certs::new_key_and_csr(&pc3())
            .unwrap_or_else(|e| panic!("{e}"))
            .csr_pem;
        JoinFixture { ca, token, csr }
    })
}

fn pc3() -> mesh_certs::Identity {
    mesh_certs::Identity::new("prod", mesh_certs::Role::Agent, "pc3")
        .unwrap_or_else(|e| panic!("identity: {e}"))
}

pub fn join_token_text() -> String {
    join_fixture().token.clone()
}

pub fn csr_text() -> String {
    join_fixture().csr.clone()
}

/// Whatever is signed is a mesh leaf for the asked identity alone.
pub fn check_csr(text: &str) -> Result<(), String> {
    match join_fixture()
        .ca
        .sign_csr(&pc3(), text, mesh_certs::Validity::days(1))
    {
        Ok(chain) => mesh_certs::leaf_facts_pem(&chain)
            .map(|_| ())
            .map_err(|e| format!("signed something that is not a certificate: {e}")),
        Err(e) => need_message(e),
    }
}

/// Every target, for the fuzz benchmark.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "topology",
            base: || TOPOLOGY.to_string(),
            check: check_topology,
        },
        Target {
            name: "compose",
            base: || COMPOSE.to_string(),
            check: check_compose,
        },
        Target {
            name: "containers",
            base: || CONTAINERS.to_string(),
            check: check_containers,
        },
        Target {
            name: "coordinator.toml",
            base: || COORDINATOR_TOML.to_string(),
            check: check_coordinator_config,
        },
        Target {
            name: "agent.toml",
            base: || AGENT_TOML.to_string(),
            check: check_agent_config,
        },
        Target {
            name: "join token",
            base: join_token_text,
            check: check_join_token,
        },
        Target {
            name: "CSR",
            base: csr_text,
            check: check_csr,
        },
    ]
}
