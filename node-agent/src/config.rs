//! Agent configuration: `agent.toml`, overridden by flags and environment.
//! Parsing is pure; every error names the field and how to fix it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_certs::{Role, TlsFiles};
pub use mesh_topology::ConfigError;
use serde::Deserialize;

use crate::inventory::gpu::DeclaredGpu;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node: Option<String>,
    pub coordinator: Option<String>,
    pub advertise_address: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub storage_path: Option<PathBuf>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub gpus: Vec<DeclaredGpu>,
    /// Where the agent keeps its state (the last desired set, its own
    /// Podman service when it runs one).
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub podman: PodmanSection,
    #[serde(default)]
    pub bridge: BridgeSection,
    #[serde(default)]
    pub volumes: VolumesSection,
    /// Where the agent serves its own `/metrics` [default: nowhere], e.g.
    /// "127.0.0.1:9465".
    pub metrics_listen: Option<String>,
}

/// `[volumes]`: managed and replicated volumes.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumesSection {
    /// How long an fsync waits for an unreachable standby before the
    /// primary asks the coordinator to outdate it [default 5000].
    pub fsync_bound_ms: Option<u64>,
}

/// How long an fsync waits for an unreachable standby by default.
pub const DEFAULT_FSYNC_BOUND: Duration = Duration::from_secs(5);

/// `[bridge]`: the QUIC tunnel endpoint and where local bridge endpoints listen.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// false: no tunnel endpoint, no bridges on this host.
    pub enabled: Option<bool>,
    /// UDP address of the tunnel endpoint [default 0.0.0.0:7444].
    pub listen: Option<String>,
    /// Where local bridge endpoints listen [default 0.0.0.0, reachable
    /// from this host's containers].
    pub endpoint_address: Option<String>,
    /// What tunnels to other hosts are dialled with: "tls" (TLS 1.3 over
    /// TCP, default: faster on a LAN) or "quic" (UDP). Every agent accepts
    /// both on the same port number (UDP and TCP), so hosts may differ.
    pub transport: Option<String>,
}

/// Resolved `[bridge]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSettings {
    pub listen: std::net::SocketAddr,
    pub endpoint_address: std::net::IpAddr,
    pub transport: mesh_bridge::Transport,
}

pub const DEFAULT_TUNNEL_LISTEN: &str = "0.0.0.0:7444";

/// How the agent reaches Podman.
#[derive(Debug, Default, Deserialize, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
pub struct PodmanSection {
    /// An existing Podman API socket [default: /run/podman/podman.sock].
    pub socket: Option<PathBuf>,
    /// Start a Podman service of the agent's own under state_dir instead.
    pub own_service: Option<bool>,
    /// OCI runtime for an own service [default: runc].
    pub oci_runtime: Option<String>,
    /// Read-only image stores an own service shares [default: the system store].
    pub shared_image_stores: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub certs_dir: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Flags and environment; labels given here are added to the file's.
#[derive(Debug, Default)]
pub struct Overrides {
    pub node: Option<String>,
    pub coordinator: Option<String>,
    pub advertise_address: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub storage_path: Option<PathBuf>,
    pub labels: Vec<String>,
    pub tls: TlsSection,
    pub state_dir: Option<PathBuf>,
    pub podman_socket: Option<PathBuf>,
    pub podman_own_service: Option<bool>,
    pub tunnel_listen: Option<String>,
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node: String,
    pub coordinator: String,
    pub advertise_address: String,
    pub heartbeat: Duration,
    pub storage_path: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub tls: TlsFiles,
    pub gpus: Vec<DeclaredGpu>,
    pub state_dir: PathBuf,
    pub podman: PodmanSettings,
    /// None: bridges disabled.
    pub bridge: Option<BridgeSettings>,
    /// The fsync bound of replicated volumes (see [`VolumesSection`]).
    pub volume_fsync_bound: Duration,
    /// Where the agent's own `/metrics` is served (None: not at all).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PodmanSettings {
    /// Use the Podman service at this socket.
    Socket(PathBuf),
    /// Run one of our own under state_dir/podman.
    Own {
        oci_runtime: String,
        shared_image_stores: Vec<PathBuf>,
    },
}

pub const DEFAULT_PODMAN_SOCKET: &str = "/run/podman/podman.sock";

pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    mesh_topology::parse_toml(path, text)
}

pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    mesh_topology::load_toml(path)
}

pub fn resolve(file: FileConfig, over: Overrides) -> Result<Config, ConfigError> {
    let node = over.node.or(file.node).ok_or_else(|| {
        ConfigError::field("node", "missing; set node = \"NAME\" or pass --node NAME")
    })?;
    mesh_certs::validate_name("node name", &node)
        .map_err(|e| ConfigError::field("node", e.to_string()))?;
    let coordinator = over.coordinator.or(file.coordinator).ok_or_else(|| {
        ConfigError::field(
            "coordinator",
            "missing; set coordinator = \"HOST:7443\" or pass --coordinator HOST:PORT",
        )
    })?;
    if coordinator
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        return Err(ConfigError::field(
            "coordinator",
            format!("'{coordinator}' is not HOST:PORT, e.g. 10.0.0.1:7443"),
        ));
    }
    let heartbeat_ms = over.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(500);
    if !(50..=60_000).contains(&heartbeat_ms) {
        return Err(ConfigError::field(
            "heartbeat_ms",
            format!("{heartbeat_ms} is outside 50..=60000"),
        ));
    }
    let mut labels = file.labels;
    for (k, v) in &labels {
        mesh_topology::validate_label(k, v)
            .map_err(|e| ConfigError::field("labels", e.to_string()))?;
    }
    for text in &over.labels {
        let (k, v) = mesh_topology::parse_label(text)
            .map_err(|e| ConfigError::field("--label", e.to_string()))?;
        labels.insert(k, v);
    }
    for (i, gpu) in file.gpus.iter().enumerate() {
        if gpu.vram_mib == 0 {
            return Err(ConfigError::field(
                "gpus",
                format!(
                    "gpus[{i}] ({}) has vram_mib = 0; give its memory in MiB",
                    gpu.name
                ),
            ));
        }
    }
    let tls = TlsFiles::resolve(
        over.tls.certs_dir.or(file.tls.certs_dir).as_deref(),
        Role::Agent,
        &node,
        over.tls.ca.or(file.tls.ca),
        over.tls.cert.or(file.tls.cert),
        over.tls.key.or(file.tls.key),
    )
    .map_err(|m| ConfigError::field("tls", m))?;
    let state_dir = over
        .state_dir
        .or(file.state_dir)
        .unwrap_or_else(|| PathBuf::from("/var/lib/mesh-agent").join(&node));
    let own = over
        .podman_own_service
        .or(file.podman.own_service)
        .unwrap_or(false);
    let podman = if own {
        PodmanSettings::Own {
            oci_runtime: file
                .podman
                .oci_runtime
                .clone()
                .unwrap_or_else(|| "runc".into()),
            shared_image_stores: file
                .podman
                .shared_image_stores
                .clone()
                .unwrap_or_else(|| vec![PathBuf::from("/var/lib/containers/storage")]),
        }
    } else {
        PodmanSettings::Socket(
            over.podman_socket
                .or(file.podman.socket)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PODMAN_SOCKET)),
        )
    };
    let bridge = if file.bridge.enabled == Some(false) {
        None
    } else {
        let text = over
            .tunnel_listen
            .or(file.bridge.listen.clone())
            .unwrap_or_else(|| DEFAULT_TUNNEL_LISTEN.into());
        let listen = text.parse().map_err(|e| {
            ConfigError::field(
                "bridge.listen",
                format!("'{text}' is not IP:PORT ({e}); e.g. 0.0.0.0:7444"),
            )
        })?;
        let ep = file
            .bridge
            .endpoint_address
            .clone()
            .unwrap_or_else(|| "0.0.0.0".into());
        let endpoint_address = ep.parse().map_err(|e| {
            ConfigError::field(
                "bridge.endpoint_address",
                format!("'{ep}' is not an IP address ({e})"),
            )
        })?;
        let transport = match &file.bridge.transport {
            None => mesh_bridge::Transport::default(),
            Some(t) => t
                .parse()
                .map_err(|e: String| ConfigError::field("bridge.transport", e))?,
        };
        Some(BridgeSettings {
            listen,
            endpoint_address,
            transport,
        })
    };
    let volume_fsync_bound = match file.volumes.fsync_bound_ms {
        None => DEFAULT_FSYNC_BOUND,
        Some(ms) if (100..=600_000).contains(&ms) => Duration::from_millis(ms),
        Some(ms) => {
            return Err(ConfigError::field(
                "volumes.fsync_bound_ms",
                format!("{ms} is out of range; use 100 to 600000 (milliseconds)"),
            ))
        }
    };
    let metrics_listen = match over.metrics_listen.or(file.metrics_listen).as_deref() {
        None | Some("off") => None,
        Some(text) => Some(text.parse().map_err(|e| {
            ConfigError::field(
                "metrics_listen",
                format!(
                    "'{text}' is not an address and port ({e}); e.g. 127.0.0.1:9465, or \"off\""
                ),
            )
        })?),
    };
    Ok(Config {
        bridge,
        volume_fsync_bound,
        metrics_listen,
        node,
        coordinator,
        advertise_address: over
            .advertise_address
            .or(file.advertise_address)
            .unwrap_or_default(),
        heartbeat: Duration::from_millis(heartbeat_ms),
        storage_path: over
            .storage_path
            .or(file.storage_path)
            .unwrap_or_else(|| PathBuf::from("/")),
        labels,
        tls,
        gpus: file.gpus,
        state_dir,
        podman,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
node = "pc2"
coordinator = "10.0.0.1:7443"
heartbeat_ms = 250
[labels]
role = "pc2"
[tls]
certs_dir = "/certs"
[[gpus]]
name = "RTX 3060"
vram_mib = 12288
"#;

    #[test]
    fn file_and_overrides_merge() {
        let file = parse_file(Path::new("a.toml"), FULL).unwrap();
        let over = Overrides {
            labels: vec!["gpu=true".into()],
            heartbeat_ms: Some(500),
            ..Default::default()
        };
        let c = resolve(file, over).unwrap();
        assert_eq!(c.node, "pc2");
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.labels.get("role").map(String::as_str), Some("pc2"));
        assert_eq!(c.labels.get("gpu").map(String::as_str), Some("true"));
        assert_eq!(c.tls.cert, PathBuf::from("/certs/agent-pc2.crt"));
        assert_eq!(c.gpus[0].vram_mib, 12288);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("coordinator = \"x:1\"\n", "node:"),
            ("node = \"PC 2\"\ncoordinator = \"x:1\"\n", "node:"),
            ("node = \"pc2\"\n", "coordinator:"),
            ("node = \"pc2\"\ncoordinator = \"x\"\n", "coordinator:"),
            (
                "node = \"pc2\"\ncoordinator = \"x:1\"\nheartbeat_ms = 1\n",
                "heartbeat_ms:",
            ),
            (
                "node = \"pc2\"\ncoordinator = \"x:1\"\n[labels]\n\"bad key\" = \"1\"\n",
                "labels:",
            ),
            ("node = \"pc2\"\ncoordinator = \"x:1\"\n", "tls:"),
        ];
        for (text, prefix) in cases {
            let file = parse_file(Path::new("a.toml"), text).unwrap();
            let err = resolve(file, Overrides::default()).unwrap_err().to_string();
            assert!(err.starts_with(prefix), "{text:?} gave {err}");
        }
        let err = parse_file(Path::new("a.toml"), "nod = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nod"), "{err}");
    }
}
