//! The bridge directory: for every bridged service of the applied topology,
//! where it runs now and whether it is healthy, plus every agent's tunnel
//! endpoint. Agents receive it on their stream and move their endpoints
//! when it changes. Pure functions of the topology, the placement, health
//! and the registrations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use mesh_proto::v1::{BridgeEntry, BridgePattern, Directory, InFlightPolicy, TunnelPeer};
use mesh_topology::model::Topology;
use mesh_topology::service::parse_port;

/// One `[[bridges]]` entry, resolved against its service.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeDef {
    pub service: String,
    pub pattern: BridgePattern,
    pub port: u16,
    pub target_port: u16,
    pub in_flight: InFlightPolicy,
    pub env: String,
    pub probe_request: String,
    pub probe_expect: String,
}

/// The bridge pattern for a topology's pattern word (the service's socket
/// type; validated when the topology is read).
pub fn pattern_of(word: &str) -> BridgePattern {
    match word {
        "pub" => BridgePattern::Pubsub,
        "pull" => BridgePattern::Pushpull,
        "push" => BridgePattern::Distribute,
        "tcp" => BridgePattern::Tcp,
        _ => BridgePattern::Reqrep,
    }
}

/// The in-flight policy for a topology's word (validated when read).
pub fn in_flight_of(word: &str) -> InFlightPolicy {
    match word {
        "retry-once" => InFlightPolicy::RetryOnce,
        _ => InFlightPolicy::Error,
    }
}

pub fn bridge_defs(t: &Topology) -> Vec<BridgeDef> {
    t.bridges
        .iter()
        .map(|b| {
            let spec = t
                .groups
                .iter()
                .flat_map(|g| g.services.iter())
                .map(|s| s.get_ref())
                .find(|s| &s.name == b.service.get_ref());
            let target_port = spec
                .and_then(|s| {
                    s.ports
                        .iter()
                        .filter_map(|p| parse_port(p).ok())
                        .find(|p| p.host == b.port)
                        .map(|p| p.container)
                })
                .unwrap_or(b.port);
            let zmq = spec
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.zmq.as_ref());
            BridgeDef {
                service: b.service.get_ref().clone(),
                pattern: pattern_of(&b.pattern),
                port: b.port,
                target_port,
                in_flight: in_flight_of(&b.in_flight),
                env: b.env_name(),
                probe_request: zmq.map(|z| z.request.clone()).unwrap_or_default(),
                probe_expect: zmq.map(|z| z.expect.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The environment every container on a host with address `ip` gets: each
/// bridge's stable endpoint on that host.
pub fn bridge_env(defs: &[BridgeDef], ip: &str) -> BTreeMap<String, String> {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return BTreeMap::new();
    };
    defs.iter()
        .map(|d| {
            (
                d.env.clone(),
                format!("tcp://{}", SocketAddr::new(ip, d.port)),
            )
        })
        .collect()
}

/// The directory (generation left 0: the caller numbers changes).
/// `epochs`: service -> its failover group's epoch (absent: none).
pub fn compute(
    defs: &[BridgeDef],
    hosts: &BTreeMap<String, String>,
    healthy: &BTreeSet<String>,
    peers: &[(String, String)],
    epochs: &BTreeMap<String, u64>,
) -> Directory {
    Directory {
        generation: 0,
        bridges: defs
            .iter()
            .map(|d| BridgeEntry {
                service: d.service.clone(),
                kind: d.pattern as i32,
                port: u32::from(d.port),
                target_port: u32::from(d.target_port),
                host: hosts.get(&d.service).cloned().unwrap_or_default(),
                healthy: healthy.contains(&d.service),
                in_flight_policy: d.in_flight as i32,
                env: d.env.clone(),
                probe_request: d.probe_request.clone(),
                probe_expect: d.probe_expect.clone(),
                epoch: epochs.get(&d.service).copied().unwrap_or(0),
            })
            .collect(),
        peers: peers
            .iter()
            .map(|(node, address)| TunnelPeer {
                node: node.clone(),
                address: address.clone(),
            })
            .collect(),
        revoked_serials: Vec::new(),
    }
}

/// Same content, whatever the generation.
pub fn same(a: &Directory, b: &Directory) -> bool {
    a.bridges == b.bridges && a.peers == b.peers && a.revoked_serials == b.revoked_serials
}

/// The bridged services whose host or epoch differs between two
/// directories, as history entries' words ("memory-db moved pc2 -> mainpc
/// (epoch 2)"), with the new host. Nothing for a first directory (a
/// coordinator that just started knows no old place).
pub fn moves(old: &Directory, new: &Directory) -> Vec<(String, String, String)> {
    if old.generation == 0 {
        return Vec::new();
    }
    new.bridges
        .iter()
        .filter_map(|b| {
            let before = old.bridges.iter().find(|o| o.service == b.service)?;
            if before.host == b.host && before.epoch == b.epoch {
                return None;
            }
            let place = |h: &str| {
                if h.is_empty() {
                    "nowhere".to_string()
                } else {
                    h.to_string()
                }
            };
            let epoch = if before.epoch == b.epoch {
                String::new()
            } else {
                format!(" (epoch {})", b.epoch)
            };
            Some((
                b.service.clone(),
                b.host.clone(),
                format!(
                    "bridge {}: {} -> {}{epoch}",
                    b.service,
                    place(&before.host),
                    place(&b.host)
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = r#"
[[hosts]]
name = "pc2"
[[groups]]
name = "memory-system"
[[groups.services]]
name = "memory-orchestrator"
image = "img"
ports = ["7140:5555"]
[groups.services.health]
zmq = { port = 5555 }
[[groups.services]]
name = "events"
image = "img"
ports = ["7150:6000"]
[[bridges]]
service = "memory-orchestrator"
port = 7140
pattern = "rep"
[[bridges]]
service = "events"
port = 7150
pattern = "pub"
in_flight = "retry-once"
env = "EVENTS_URL"
"#;

    #[test]
    fn every_topology_pattern_names_a_bridge_pattern() {
        for (word, bridge) in [
            ("rep", BridgePattern::Reqrep),
            ("router", BridgePattern::Reqrep),
            ("", BridgePattern::Reqrep),
            ("pub", BridgePattern::Pubsub),
            ("pull", BridgePattern::Pushpull),
            ("push", BridgePattern::Distribute),
            ("tcp", BridgePattern::Tcp),
        ] {
            assert_eq!(pattern_of(word), bridge, "{word}");
        }
        assert_eq!(in_flight_of(""), InFlightPolicy::Error);
        assert_eq!(in_flight_of("retry-once"), InFlightPolicy::RetryOnce);
    }

    #[test]
    fn bridges_resolve_ports_probes_and_env_names() {
        let t = mesh_topology::validate::parse(std::path::Path::new("t.toml"), TOPOLOGY)
            .expect("valid");
        let defs = bridge_defs(&t);
        assert_eq!(defs[0].service, "memory-orchestrator");
        assert_eq!(defs[0].pattern, BridgePattern::Reqrep);
        assert_eq!((defs[0].port, defs[0].target_port), (7140, 5555));
        assert_eq!(defs[0].env, "MESH_MEMORY_ORCHESTRATOR_ADDR");
        assert_eq!(
            (
                defs[0].probe_request.as_str(),
                defs[0].probe_expect.as_str()
            ),
            ("health", "ok")
        );
        assert_eq!(defs[0].in_flight, InFlightPolicy::Error);
        assert_eq!(defs[1].pattern, BridgePattern::Pubsub);
        assert_eq!(defs[1].in_flight, InFlightPolicy::RetryOnce);
        assert_eq!(defs[1].env, "EVENTS_URL");
        assert_eq!(defs[1].probe_request, "");
        let env = bridge_env(&defs, "10.99.0.1");
        assert_eq!(env["MESH_MEMORY_ORCHESTRATOR_ADDR"], "tcp://10.99.0.1:7140");
        assert_eq!(env["EVENTS_URL"], "tcp://10.99.0.1:7150");
        assert!(bridge_env(&defs, "not-an-ip").is_empty());
    }

    #[test]
    fn directory_says_where_and_whether_healthy() {
        let t = mesh_topology::validate::parse(std::path::Path::new("t.toml"), TOPOLOGY)
            .expect("valid");
        let defs = bridge_defs(&t);
        let hosts: BTreeMap<String, String> =
            [("memory-orchestrator".to_string(), "pc2".to_string())].into();
        let healthy: BTreeSet<String> = ["memory-orchestrator".to_string()].into();
        let peers = vec![("pc2".to_string(), "10.99.0.2:7444".to_string())];
        let epochs: BTreeMap<String, u64> = [("memory-orchestrator".to_string(), 3)].into();
        let d = compute(&defs, &hosts, &healthy, &peers, &epochs);
        assert_eq!(d.bridges[0].host, "pc2");
        assert_eq!(d.bridges[0].epoch, 3, "the failover group's epoch");
        assert_eq!(d.bridges[1].epoch, 0);
        assert!(d.bridges[0].healthy);
        assert_eq!(d.bridges[1].host, "", "events runs nowhere");
        assert!(!d.bridges[1].healthy);
        assert_eq!(d.peers[0].address, "10.99.0.2:7444");
        let mut e = d.clone();
        e.generation = 9;
        assert!(same(&d, &e));
        e.bridges[0].healthy = false;
        assert!(!same(&d, &e));
        // A new epoch on the same host is a change the agents must get.
        let mut f = d.clone();
        f.bridges[0].epoch = 4;
        assert!(!same(&d, &f));
    }

    #[test]
    fn a_service_that_moves_is_news_but_a_first_directory_is_not() {
        let entry = |host: &str, epoch: u64| BridgeEntry {
            service: "memory-db".into(),
            host: host.into(),
            epoch,
            ..Default::default()
        };
        let old = Directory {
            generation: 5,
            bridges: vec![entry("pc2", 1)],
            peers: vec![],
            revoked_serials: vec![],
        };
        let new = Directory {
            generation: 6,
            bridges: vec![entry("mainpc", 2)],
            peers: vec![],
            revoked_serials: vec![],
        };
        assert_eq!(
            moves(&old, &new),
            [(
                "memory-db".to_string(),
                "mainpc".to_string(),
                "bridge memory-db: pc2 -> mainpc (epoch 2)".to_string()
            )]
        );
        assert!(moves(&old, &old).is_empty());
        let first = Directory {
            generation: 0,
            ..Default::default()
        };
        assert!(moves(&first, &new).is_empty());
        let gone = Directory {
            generation: 6,
            bridges: vec![entry("", 1)],
            peers: vec![],
            revoked_serials: vec![],
        };
        assert_eq!(moves(&old, &gone)[0].2, "bridge memory-db: pc2 -> nowhere");
    }
}
