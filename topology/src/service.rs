//! A service's container, as users write it in TOML (containers files and
//! a topology's services share this shape): image, command, env, ports, volumes,
//! limits, health check, restart policy. Compact forms follow compose:
//! ports `"HOST:CONTAINER[/udp]"`, volumes `"SOURCE:TARGET[:ro]"`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub group: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<VolumeEntry>,
    #[serde(default)]
    pub cpus: f64,
    #[serde(default)]
    pub memory_mib: u64,
    #[serde(default)]
    pub gpus: Vec<String>,
    #[serde(default)]
    pub vram_mib: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: String,
    pub health: Option<HealthSpec>,
    /// Services (by name) that must be healthy before this one starts.
    /// Used in topologies; a plain containers file has no ordering.
    #[serde(default)]
    pub depends_on: Vec<toml::Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    pub tcp: Option<PortOnly>,
    pub http: Option<HttpSpec>,
    pub exec: Option<Vec<String>>,
    pub zmq: Option<ZmqSpec>,
    #[serde(default)]
    pub interval_ms: u32,
    #[serde(default)]
    pub timeout_ms: u32,
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub start_period_ms: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortOnly {
    pub port: u16,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub port: u16,
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ZmqSpec {
    pub port: u16,
    #[serde(default = "health_word")]
    pub request: String,
    #[serde(default = "ok_word")]
    pub expect: String,
}

fn health_word() -> String {
    "health".into()
}
fn ok_word() -> String {
    "ok".into()
}

/// One entry of a service's `volumes`: `"SOURCE:TARGET[:ro]"` (a Podman
/// named volume or a host path), or a table for a volume the mesh makes,
/// with a size, and with `replicate = true` keeps on two hosts:
/// `{ name = "memory-data", target = "/data", size_mib = 1024, replicate = true }`.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeEntry {
    Mount(String),
    Managed(ManagedVolume),
}

/// A volume the mesh makes for a service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedVolume {
    pub name: String,
    /// Where the service sees it (absolute path in the container).
    pub target: String,
    pub size_mib: u64,
    /// On the group's host and its standby (the first Ready fallback),
    /// every acknowledged write on both. Only in a failover group.
    #[serde(default)]
    pub replicate: bool,
    /// Seeds the volume once, before the service first starts: a host
    /// directory (absolute path) or a Podman named volume on its host.
    #[serde(default)]
    pub import: String,
}

impl PartialEq<&str> for VolumeEntry {
    fn eq(&self, other: &&str) -> bool {
        matches!(self, VolumeEntry::Mount(m) if m == other)
    }
}

impl From<&str> for VolumeEntry {
    fn from(text: &str) -> VolumeEntry {
        VolumeEntry::Mount(text.to_string())
    }
}

impl<'de> Deserialize<'de> for VolumeEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<VolumeEntry, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = VolumeEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a volume: \"SOURCE:TARGET[:ro]\", or { name, target, size_mib, replicate }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VolumeEntry, E> {
                Ok(VolumeEntry::Mount(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<VolumeEntry, A::Error> {
                ManagedVolume::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(VolumeEntry::Managed)
            }
        }
        d.deserialize_any(Entry)
    }
}

/// Problems with a managed volume, each naming the key (the group's
/// failover policy is checked by the topology's validation).
pub fn check_managed(v: &ManagedVolume) -> Vec<String> {
    let mut problems = Vec::new();
    let n = &v.name;
    let name_ok = !n.is_empty()
        && n.len() <= 63
        && !n.starts_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        problems.push(format!(
            "volume name '{n}': use 1-63 characters a-z, 0-9 and '-', not starting with '-'"
        ));
    }
    if !v.target.starts_with('/') {
        problems.push(format!(
            "volume '{n}': target '{}' must be an absolute path in the container",
            v.target
        ));
    }
    if v.size_mib < MIN_VOLUME_MIB {
        problems.push(format!(
            "volume '{n}': size_mib = {} is too small; an ext4 volume needs at least {MIN_VOLUME_MIB} MiB",
            v.size_mib
        ));
    }
    if !v.import.is_empty()
        && !v.import.starts_with('/')
        && !v
            .import
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        problems.push(format!(
            "volume '{n}': import = '{}' is neither an absolute host path nor a Podman volume name",
            v.import
        ));
    }
    problems
}

/// The smallest managed volume (ext4 with a journal fits comfortably).
pub const MIN_VOLUME_MIB: u64 = 16;

/// A file of containers for one node: `[[containers]]` tables.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ContainersFile {
    #[serde(default)]
    pub containers: Vec<ServiceSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host: u16,
    pub container: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// "7140:5555", "9000:9000/udp", or "5555" (container port only, not published).
pub fn parse_port(text: &str) -> Result<Port, String> {
    let (ports, protocol) = match text.split_once('/') {
        Some((p, proto)) => (p, proto.to_string()),
        None => (text, "tcp".to_string()),
    };
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!(
            "port '{text}': protocol '{protocol}' is not tcp or udp"
        ));
    }
    let number = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port '{text}': '{s}' is not a port number (1-65535)"))
    };
    let (host, container) = match ports.split_once(':') {
        Some((h, c)) => (number(h)?, number(c)?),
        None => (0, number(ports)?),
    };
    Ok(Port {
        host,
        container,
        protocol,
    })
}

/// "memdata:/data", "/etc/models:/models:ro".
pub fn parse_volume(text: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        _ => {
            return Err(format!(
                "volume '{text}': write SOURCE:TARGET or SOURCE:TARGET:ro"
            ))
        }
    };
    if source.is_empty() || !target.starts_with('/') {
        return Err(format!(
            "volume '{text}': the source must not be empty and the target must be an absolute path"
        ));
    }
    Ok(Volume {
        source: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

impl HealthSpec {
    /// Exactly one probe must be given.
    pub fn probe_count(&self) -> usize {
        [
            self.tcp.is_some(),
            self.http.is_some(),
            self.exec.is_some(),
            self.zmq.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_volumes() {
        assert_eq!(
            parse_port("7140:5555").unwrap(),
            Port {
                host: 7140,
                container: 5555,
                protocol: "tcp".into()
            }
        );
        assert_eq!(parse_port("9000:9000/udp").unwrap().protocol, "udp");
        assert_eq!(parse_port("5555").unwrap().host, 0);
        assert!(parse_port("x:1").unwrap_err().contains("'x' is not a port"));
        assert!(parse_port("1:2/sctp").unwrap_err().contains("sctp"));
        assert_eq!(
            parse_volume("/etc/m:/models:ro").unwrap(),
            Volume {
                source: "/etc/m".into(),
                target: "/models".into(),
                read_only: true
            }
        );
        assert!(!parse_volume("data:/data").unwrap().read_only);
        assert!(parse_volume("data").is_err());
        assert!(parse_volume("data:rel").is_err());
    }

    #[test]
    fn file_parses_with_health() {
        let text = r#"
[[containers]]
name = "memory-orchestrator"
group = "memory-system"
image = "localhost/mesh-demo:latest"
command = ["--mode", "memory"]
ports = ["7140:5555"]
volumes = ["memdata:/data"]
memory_mib = 128
[containers.health]
zmq = { port = 5555 }
interval_ms = 500
"#;
        let f: ContainersFile = crate::parse_toml(std::path::Path::new("c.toml"), text).unwrap();
        let h = f.containers[0].health.as_ref().unwrap();
        assert_eq!(h.zmq.as_ref().unwrap().request, "health");
        assert_eq!(h.probe_count(), 1);
        let err = crate::parse_toml::<ContainersFile>(
            std::path::Path::new("c.toml"),
            "[[containers]]\nname = \"x\"\nimage = \"i\"\nimgae = \"j\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("imgae") && err.contains("line 4"), "{err}");
    }
}
