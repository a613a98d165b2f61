//! From a topology to placement's inputs.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Topology;
use crate::service::parse_port;

use super::{GroupNeeds, HostState};

/// What each group needs: the sums of its services' limits, each VRAM need
/// separately (one service runs on one GPU), and its published host ports.
pub fn group_needs(t: &Topology) -> Vec<GroupNeeds> {
    let dependents = dependents_per_group(t);
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
                dependents: dependents.get(g.name.get_ref()).copied().unwrap_or(0),
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

/// group -> how many services of other groups depend on its services,
/// directly or through others.
fn dependents_per_group(t: &Topology) -> BTreeMap<String, usize> {
    let mut group_of: BTreeMap<&str, &str> = BTreeMap::new();
    let mut needed_by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in &t.groups {
        for s in &g.services {
            let s = s.get_ref();
            group_of.insert(s.name.as_str(), g.name.get_ref().as_str());
            for d in &s.depends_on {
                needed_by
                    .entry(d.get_ref().as_str())
                    .or_default()
                    .push(s.name.as_str());
            }
        }
    }
    t.groups
        .iter()
        .map(|g| {
            let own = g.name.get_ref().as_str();
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = g
                .services
                .iter()
                .map(|s| s.get_ref().name.as_str())
                .collect();
            while let Some(s) = todo.pop() {
                for n in needed_by.get(s).into_iter().flatten() {
                    if seen.insert(n) {
                        todo.push(n);
                    }
                }
            }
            let count = seen
                .iter()
                .filter(|s| group_of.get(*s).is_some_and(|g| *g != own))
                .count();
            (own.to_string(), count)
        })
        .collect()
}
