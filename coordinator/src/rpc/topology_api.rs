//! Planning and applying topologies against the live mesh: the glue between
//! the admin API, the pure planner and rollout, and the durable store.

use std::collections::BTreeMap;

use mesh_proto::v1::{TopologyPlan, UnplacedGroup};
use mesh_topology::model::Topology;
use mesh_topology::placement::{self, Plan};
use tonic::Status;

use crate::decide::planning::{self, PlanInputs};
use crate::decide::rollout::Planned;
use crate::state::registry::Now;
use crate::state::store::Applied;
use crate::state::topology_state::usable_reports;
use crate::state::Shared;

/// A checked topology with its plan, ready to show or apply.
pub struct Prepared {
    pub topology: Topology,
    pub plan: Plan,
    pub planned: Vec<Planned>,
    pub proto: TopologyPlan,
    /// host -> IP used for the bridge addresses in the containers' env.
    pub addresses: BTreeMap<String, String>,
}

fn refused(source: &str, problems: Vec<String>) -> Status {
    Status::invalid_argument(format!(
        "{source}: {} problem(s), nothing changed:\n{}",
        problems.len(),
        problems.join("\n")
    ))
}

/// Validates `text` and plans it against the live inventory and where
/// groups run now. Changes nothing.
pub fn prepare(
    shared: &Shared,
    source_name: &str,
    text: &str,
    fail: &[String],
    explain_group: &str,
) -> Result<Prepared, Status> {
    let topology = planning::parse(source_name, text).map_err(|p| refused(source_name, p))?;
    for f in fail {
        if !topology.hosts.iter().any(|h| h.name.get_ref() == f) {
            return Err(Status::invalid_argument(format!(
                "--fail {f}: no host named '{f}' in {source_name}"
            )));
        }
    }
    let (nodes, reports, addresses) = {
        let registry = shared.registry();
        (
            registry.snapshot(Now::system()),
            registry.container_reports(None),
            registry.addresses(),
        )
    };
    let observed = usable_reports(reports);
    let applied = shared.topology.applied();
    let current = planning::current_placement(applied.as_ref().map(|a| &a.placement), &observed);
    let (hosts, notes) = planning::host_states(&topology, &nodes, fail);
    let groups = placement::group_needs(&topology);
    let plan = placement::plan(
        &hosts,
        &groups,
        &current,
        topology.placement.vram_headroom_mib,
    );
    // Addresses of hosts that keep their groups stay as applied, so an
    // unchanged topology gives unchanged specs.
    let mut addresses = addresses;
    if let Some(a) = &applied {
        for (host, ip) in &a.addresses {
            addresses.entry(host.clone()).or_insert_with(|| ip.clone());
        }
    }
    let planned = planning::planned_services(&topology, &plan, &addresses)
        .map_err(|p| refused(source_name, p))?;
    let disk = crate::decide::volumes::disk_problems(
        &crate::decide::volumes::volume_defs(&topology),
        &plan.placements,
        &nodes,
        &shared.volumes.records(),
    );
    if !disk.is_empty() {
        return Err(refused(source_name, disk));
    }
    let previous = match &applied {
        Some(a) => planning::parse(&a.source_name, &a.topology_toml)
            .ok()
            .and_then(|t| {
                let old_plan = Plan {
                    placements: a.placement.clone(),
                    ..Plan::default()
                };
                planning::planned_services(&t, &old_plan, &a.addresses).ok()
            })
            .map(|p| planning::spec_hashes(&p)),
        None => None,
    };
    let mut proto = planning::to_proto(&PlanInputs {
        source_name,
        topology: &topology,
        hosts: &hosts,
        host_notes: &notes,
        groups: &groups,
        plan: &plan,
        planned: &planned,
        previous: previous.as_ref(),
        fail,
        explain_group,
    });
    if !fail.is_empty() {
        let leases = crate::decide::volumes::volume_defs(&topology)
            .into_iter()
            .map(|d| (d.group, d.lease))
            .collect();
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        proto.failover = crate::decide::failover::what_if(
            &shared.volumes.records(),
            &shared.volumes.reports(),
            &leases,
            &crate::state::failover::missing_images_map(shared, &[]),
            &names,
            fail,
        );
    }
    proto.missing_images = missing_images(shared, &topology, &plan);
    proto.already_applied = applied
        .as_ref()
        .is_some_and(|a| a.topology_toml == text && a.placement == plan.placements);
    Ok(Prepared {
        topology,
        plan,
        planned,
        proto,
        addresses,
    })
}

/// The images each placed group's host, and each replicated group's standby, lacks.
fn missing_images(shared: &Shared, topology: &Topology, plan: &Plan) -> Vec<String> {
    crate::decide::images::missing_lines(
        &crate::state::image_sync::where_groups_run(shared, &plan.placements),
        &crate::decide::images::group_images(topology),
        &shared.registry().held_images(),
    )
}

pub fn unplaced(plan: &Plan) -> Vec<UnplacedGroup> {
    plan.unplaced
        .iter()
        .map(|(group, reasons)| UnplacedGroup {
            group: group.clone(),
            reasons: reasons.clone(),
        })
        .collect()
}

pub fn host_names(t: &Topology) -> Vec<String> {
    t.hosts.iter().map(|h| h.name.get_ref().clone()).collect()
}

/// Re-activates the topology a previous run of this coordinator applied,
/// with the placement it recorded. The rollout resumes: what runs is
/// adopted, what does not is started in dependency order.
pub fn restore(shared: &Shared) -> Result<Option<String>, String> {
    let Some(store) = shared.topology.store() else {
        return Ok(None);
    };
    let Some(mut applied) = store.load_applied().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    // The volume records are written first in a promotion: a run that
    // died before it moved the placement is finished here, so the group
    // starts on the primary its epoch names, never on the old one.
    for (group, host) in crate::decide::volumes::primaries(&shared.volumes.records()) {
        let handing_over = shared
            .volumes
            .records()
            .values()
            .any(|r| r.group == group && r.handover);
        if handing_over {
            // A switchover under way keeps the group stopped.
            continue;
        }
        if applied.placement.get(&group).is_some_and(|h| *h != host) {
            tracing::warn!(group = %group, primary = %host, "restore: the group's volumes were promoted to {host} but its placement was not moved yet (the coordinator stopped in between); moving it now");
            applied.placement.insert(group, host);
        }
    }
    activate(shared, applied).map(Some)
}

/// Test-only fault injection: with `MESH_FAULT_EXIT_AT=POINT` in the
/// coordinator's environment, the process exits at that point (as if
/// killed there), so tests can stop it between two steps that must both
/// happen.
pub fn fault_point(point: &str) {
    if std::env::var("MESH_FAULT_EXIT_AT").is_ok_and(|p| p == point) {
        tracing::error!(point, "MESH_FAULT_EXIT_AT: exiting here as asked");
        std::process::exit(70);
    }
}

/// Stops `group`'s services where they run (a switchover's first step):
/// the applied placement, persisted, no longer places it.
pub fn stop_group(shared: &Shared, group: &str) -> Result<String, String> {
    let Some(mut applied) = shared.topology.applied() else {
        return Err("no topology is applied".into());
    };
    applied.placement.remove(group);
    activate(shared, applied)
}

/// Moves `group` to `host` in the applied topology (a failover): the
/// placement is persisted with the rest, then the rollout re-plans, so the
/// group's services start on `host` in dependency order and leave its
/// old host; the directory follows the rollout's hosts.
pub fn fail_over(shared: &Shared, group: &str, host: &str) -> Result<String, String> {
    let Some(mut applied) = shared.topology.applied() else {
        return Err("no topology is applied".into());
    };
    applied
        .placement
        .insert(group.to_string(), host.to_string());
    if let Some(ip) = shared.registry().addresses().get(host) {
        applied
            .addresses
            .entry(host.to_string())
            .or_insert_with(|| ip.clone());
    }
    activate(shared, applied)
}

fn activate(shared: &Shared, applied: crate::state::store::Applied) -> Result<String, String> {
    let topology = planning::parse(&applied.source_name, &applied.topology_toml)
        .map_err(|p| format!("the stored topology no longer validates: {}", p.join("; ")))?;
    let plan = Plan {
        placements: applied.placement.clone(),
        ..Plan::default()
    };
    let planned =
        planning::planned_services(&topology, &plan, &applied.addresses).map_err(|p| {
            format!(
                "the stored topology's containers are invalid: {}",
                p.join("; ")
            )
        })?;
    let unplaced: Vec<UnplacedGroup> = topology
        .groups
        .iter()
        .filter(|g| !applied.placement.contains_key(g.name.get_ref()))
        .map(|g| UnplacedGroup {
            group: g.name.get_ref().clone(),
            reasons: vec!["was not placed when applied".into()],
        })
        .collect();
    let source = applied.source_name.clone();
    let hosts = host_names(&topology);
    let bridges = crate::decide::directory::bridge_defs(&topology);
    let volumes = crate::decide::volumes::volume_defs(&topology);
    // Already stored: begin() writes it again, harmlessly.
    shared
        .topology
        .begin(applied, planned, hosts, unplaced, bridges, volumes)
        .map_err(|e| e.to_string())?;
    Ok(source)
}

pub fn applied_record(
    prepared: &Prepared,
    source_name: &str,
    text: &str,
    timeout_seconds: u32,
) -> Applied {
    // Only the hosts that run something: their address is in the specs.
    let used: std::collections::BTreeSet<&String> = prepared.plan.placements.values().collect();
    Applied {
        source_name: source_name.to_string(),
        topology_toml: text.to_string(),
        applied_unix_ms: Now::system().unix_ms,
        placement: prepared.plan.placements.clone(),
        timeout_seconds,
        addresses: prepared
            .addresses
            .iter()
            .filter(|(h, _)| used.contains(h))
            .map(|(h, ip)| (h.clone(), ip.clone()))
            .collect(),
        gpus: prepared.plan.gpus.clone(),
    }
}
