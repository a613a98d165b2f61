//! From a topology file and the live mesh to a plan: which capacity each
//! host really has, where groups run now, what would change and why. Pure
//! functions; the admin service and the topology controller call them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mesh_proto::spec::{spec_hash, validate_set};
use mesh_proto::v1::{
    self, ChangeKind, GpuBudget, GpuSource, HostBudget, NodeState, PlacementChange, TopologyPlan,
    UnplacedGroup,
};
use mesh_topology::model::Topology;
use mesh_topology::placement::{self, Change, GroupNeeds, HostState, Plan};

use crate::decide::rollout::{Observed, Planned};

const MIB: u64 = 1024 * 1024;

/// Parses and validates a topology; every problem as one line (with file,
/// line and column).
pub fn parse(source_name: &str, text: &str) -> Result<Topology, Vec<String>> {
    let name = if source_name.is_empty() {
        "topology.toml"
    } else {
        source_name
    };
    mesh_topology::validate::parse(Path::new(name), text)
        .map_err(|diags| diags.iter().map(|d| d.to_string()).collect())
}

/// Capacity of each topology host, from the live inventory where the host's
/// agent reports, else refused with the reason. `fail` hosts are taken away
/// (what-if). Declared capacity in the topology caps what is measured.
pub fn host_states(
    t: &Topology,
    nodes: &[v1::Node],
    fail: &[String],
) -> (Vec<HostState>, BTreeMap<String, String>) {
    let mut sources = BTreeMap::new();
    let declared = placement::hosts_from_topology(t);
    let states = declared
        .into_iter()
        .map(|mut h| {
            let node = nodes.iter().find(|n| n.name == h.name);
            if fail.contains(&h.name) {
                h.available = false;
                sources.insert(h.name.clone(), format!("{} is gone (what-if)", h.name));
                return h;
            }
            let Some(node) = node else {
                h.available = false;
                sources.insert(
                    h.name.clone(),
                    format!(
                        "{} has not registered; start its agent (see `meshctl nodes`)",
                        h.name
                    ),
                );
                return h;
            };
            let state = NodeState::try_from(node.state).unwrap_or(NodeState::Unspecified);
            if state != NodeState::Ready {
                h.available = false;
                sources.insert(h.name.clone(), format!("{} is {}", h.name, state.label()));
                return h;
            }
            for (k, v) in &node.labels {
                h.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            if let Some(inv) = &node.inventory {
                if inv.cpu_count > 0 {
                    h.cpus = h.cpus.min(f64::from(inv.cpu_count));
                }
                if inv.memory_total_bytes > 0 {
                    h.memory_mib = h.memory_mib.min(inv.memory_total_bytes / MIB);
                }
                if let Some(gpus) = &inv.gpus {
                    let source = GpuSource::try_from(gpus.source).unwrap_or(GpuSource::Unspecified);
                    if source == GpuSource::Nvml && !gpus.gpus.is_empty() {
                        // Measured: what is free plus what the mesh's own
                        // services already hold (they are re-planned too).
                        h.gpus_mib = gpus
                            .gpus
                            .iter()
                            .map(|g| g.memory_free_bytes / MIB)
                            .collect();
                        sources.insert(h.name.clone(), "nvml".into());
                    } else if source == GpuSource::Declared && h.gpus_mib.is_empty() {
                        h.gpus_mib = gpus
                            .gpus
                            .iter()
                            .map(|g| g.memory_total_bytes / MIB)
                            .collect();
                    }
                }
            }
            h
        })
        .collect();
    (states, sources)
}

/// Where groups run now: the applied placement, completed by what the
/// agents report (a group's containers carry its name).
pub fn current_placement(
    stored: Option<&BTreeMap<String, String>>,
    observed: &Observed,
) -> BTreeMap<String, String> {
    let mut out = stored.cloned().unwrap_or_default();
    for (host, containers) in observed {
        for c in containers {
            if !c.group.is_empty() {
                out.entry(c.group.clone()).or_insert_with(|| host.clone());
            }
        }
    }
    out
}

/// The services of `t` with the hosts `plan` gives their groups, as the
/// container specs the agents will run; refused when a host's set would be
/// invalid (e.g. two services publishing one port).
/// Every container gets the address of each bridge's endpoint on its own
/// host (`addresses`: host -> IP) in the bridge's environment variable,
/// unless the service sets that variable itself.
pub fn planned_services(
    t: &Topology,
    plan: &Plan,
    addresses: &BTreeMap<String, String>,
) -> Result<Vec<Planned>, Vec<String>> {
    let defs = crate::decide::directory::bridge_defs(t);
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for g in &t.groups {
        let group = g.name.get_ref();
        for s in &g.services {
            let s = s.get_ref();
            match mesh_proto::from_topology::container_spec(s) {
                Ok(mut spec) => {
                    spec.group = group.clone();
                    let host = plan.placements.get(group);
                    if let Some(ip) = host.and_then(|h| addresses.get(h)) {
                        for (k, v) in crate::decide::directory::bridge_env(&defs, ip) {
                            spec.env.entry(k).or_insert(v);
                        }
                    }
                    out.push(Planned {
                        service: s.name.clone(),
                        group: group.clone(),
                        host: plan.placements.get(group).cloned(),
                        depends_on: s.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
                        spec,
                    });
                }
                Err(e) => problems.push(e),
            }
        }
    }
    let hosts: BTreeSet<&String> = out.iter().filter_map(|p| p.host.as_ref()).collect();
    for host in hosts {
        let set: Vec<_> = out
            .iter()
            .filter(|p| p.host.as_ref() == Some(host))
            .map(|p| p.spec.clone())
            .collect();
        if let Err(e) = validate_set(&set) {
            problems.extend(e.into_iter().map(|e| format!("on {host}: {e}")));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Service -> spec hash, to tell an update in place from no change.
pub fn spec_hashes(planned: &[Planned]) -> BTreeMap<String, String> {
    planned
        .iter()
        .map(|p| (p.service.clone(), spec_hash(&p.spec)))
        .collect()
}

pub struct PlanInputs<'a> {
    pub source_name: &'a str,
    pub topology: &'a Topology,
    pub hosts: &'a [HostState],
    pub host_notes: &'a BTreeMap<String, String>,
    pub groups: &'a [GroupNeeds],
    pub plan: &'a Plan,
    pub planned: &'a [Planned],
    /// Spec hashes of the applied topology's services, if one is applied.
    pub previous: Option<&'a BTreeMap<String, String>>,
    pub fail: &'a [String],
    pub explain_group: &'a str,
}

/// The plan as the API gives it: changes per group (start, move, stop,
/// update, keep) with reasons, unplaced groups, per-host budgets.
pub fn to_proto(i: &PlanInputs<'_>) -> TopologyPlan {
    let headroom = i.topology.placement.vram_headroom_mib;
    let services_of = |group: &str| -> Vec<String> {
        i.planned
            .iter()
            .filter(|p| p.group == group)
            .map(|p| p.service.clone())
            .collect()
    };
    let mut changes: Vec<PlacementChange> = i
        .plan
        .changes
        .iter()
        .map(|c| match c {
            Change::Start { group, host } => PlacementChange {
                kind: ChangeKind::Start as i32,
                group: group.clone(),
                from_host: String::new(),
                to_host: host.clone(),
                reason: "new".into(),
                services: services_of(group),
            },
            Change::Move {
                group,
                from,
                to,
                reason,
            } => PlacementChange {
                kind: ChangeKind::Move as i32,
                group: group.clone(),
                from_host: from.clone(),
                to_host: to.clone(),
                reason: reason.clone(),
                services: services_of(group),
            },
            Change::Stop {
                group,
                host,
                reason,
            } => PlacementChange {
                kind: ChangeKind::Stop as i32,
                group: group.clone(),
                from_host: host.clone(),
                to_host: String::new(),
                reason: reason.clone(),
                services: services_of(group),
            },
        })
        .collect();
    let touched: BTreeSet<String> = changes.iter().map(|c| c.group.clone()).collect();
    let now = spec_hashes(i.planned);
    for g in i.groups {
        if touched.contains(&g.name) {
            continue;
        }
        let Some(host) = i.plan.placements.get(&g.name) else {
            continue;
        };
        let services = services_of(&g.name);
        let changed: Vec<String> = match i.previous {
            None => Vec::new(),
            Some(prev) => services
                .iter()
                .filter(|s| prev.get(*s) != now.get(*s))
                .cloned()
                .collect(),
        };
        let (kind, reason) = if changed.is_empty() {
            (ChangeKind::Keep, "unchanged".to_string())
        } else {
            (
                ChangeKind::Update,
                format!("changed or new: {}", changed.join(", ")),
            )
        };
        changes.push(PlacementChange {
            kind: kind as i32,
            group: g.name.clone(),
            from_host: host.clone(),
            to_host: host.clone(),
            reason,
            services,
        });
    }
    let usage = placement::usage(i.hosts, i.groups, i.plan);
    let hosts = i
        .hosts
        .iter()
        .map(|h| {
            let u = usage.get(&h.name).cloned().unwrap_or_default();
            let note = i.host_notes.get(&h.name).cloned().unwrap_or_default();
            let source = if note == "nvml" { "nvml" } else { "declared" };
            HostBudget {
                host: h.name.clone(),
                available: h.available,
                unavailable_reason: if h.available {
                    String::new()
                } else {
                    note.clone()
                },
                cpus: if h.cpus == f64::MAX { 0.0 } else { h.cpus },
                planned_cpus: u.cpus,
                memory_mib: if h.memory_mib == u64::MAX {
                    0
                } else {
                    h.memory_mib
                },
                planned_memory_mib: u.memory_mib,
                gpus: h
                    .gpus_mib
                    .iter()
                    .enumerate()
                    .map(|(index, total)| GpuBudget {
                        index: index as u32,
                        name: i
                            .topology
                            .hosts
                            .iter()
                            .find(|d| d.name.get_ref() == &h.name)
                            .and_then(|d| d.gpus.get(index))
                            .map(|g| g.name.clone())
                            .unwrap_or_default(),
                        usable_mib: total.saturating_sub(headroom),
                        planned_mib: u.gpus_mib.get(index).copied().unwrap_or(0),
                        source: source.into(),
                    })
                    .collect(),
                groups: u.groups,
            }
        })
        .collect();
    let explain = if i.explain_group.is_empty() {
        Vec::new()
    } else {
        placement::explain(i.hosts, i.groups, i.plan, i.explain_group, headroom)
    };
    TopologyPlan {
        source_name: i.source_name.to_string(),
        placements: i.plan.placements.clone().into_iter().collect(),
        changes,
        unplaced: i
            .plan
            .unplaced
            .iter()
            .map(|(group, reasons)| UnplacedGroup {
                group: group.clone(),
                reasons: reasons.clone(),
            })
            .collect(),
        hosts,
        explain,
        already_applied: false,
        vram_headroom_mib: headroom,
        failed_hosts: i.fail.to_vec(),
        failover: Vec::new(),
        missing_images: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
