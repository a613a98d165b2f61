//! From a topology to placement's inputs.

use crate::model::Topology;
use crate::service::parse_port;

use super::{GroupNeeds, HostState};

/// What each group needs: the sums of its services' limits, each VRAM need
/// separately (one service runs on one GPU), and its published host ports.
pub fn group_needs(t: &Topology) -> Vec<GroupNeeds> {
    t.groups
        .iter()
        .map(|g| {
            let services = g.services.iter().map(|s| s.get_ref());
            let mut needs = GroupNeeds {
                name: g.name.get_ref().clone(),
                constraints: g.constraints.clone(),
                prefer: g.prefer.iter().map(|p| p.get_ref().clone()).collect(),
                anti_affinity: g
                    .anti_affinity
                    .iter()
                    .map(|a| a.get_ref().clone())
                    .collect(),
                cpus: 0.0,
                memory_mib: 0,
                vram_mib: Vec::new(),
                host_ports: Vec::new(),
            };
            for s in services {
                needs.cpus += s.cpus;
                needs.memory_mib += s.memory_mib;
                if s.vram_mib > 0 {
                    needs.vram_mib.push(s.vram_mib);
                }
                for p in s.ports.iter().filter_map(|p| parse_port(p).ok()) {
                    if p.host != 0 {
                        needs.host_ports.push((p.host, p.protocol));
                    }
                }
            }
            needs
        })
        .collect()
}

/// Hosts as the topology declares them, for planning without a live mesh.
/// Capacity that is not declared is not limited.
pub fn hosts_from_topology(t: &Topology) -> Vec<HostState> {
    t.hosts
        .iter()
        .map(|h| HostState {
            name: h.name.get_ref().clone(),
            labels: h.labels.clone(),
            available: true,
            cpus: h.cpus.unwrap_or(f64::MAX),
            memory_mib: h.memory_mib.unwrap_or(u64::MAX),
            gpus_mib: h.gpus.iter().map(|g| g.vram_mib).collect(),
        })
        .collect()
}
