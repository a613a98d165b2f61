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
    pub volumes: Vec<String>,
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
