//! `--explain GROUP`: the reasoning for one group, host by host, against
//! what the rest of the plan leaves on each host.

use std::collections::BTreeMap;

use super::{anti_map, misfit, take, GroupNeeds, HostState, Plan, Room};

pub fn explain(
    hosts: &[HostState],
    groups: &[GroupNeeds],
    plan: &Plan,
    group: &str,
    headroom_mib: u64,
) -> Vec<String> {
    let Some(g) = groups.iter().find(|g| g.name == group) else {
        return vec![format!("no group named '{group}' in the topology")];
    };
    let anti = anti_map(groups);
    let by_name: BTreeMap<&str, &GroupNeeds> =
        groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let mut lines = Vec::new();
    let vram: u64 = g.vram_mib.iter().sum();
    lines.push(format!(
        "{} needs {:.1} CPUs, {:.1} GiB memory{}{}",
        g.name,
        g.cpus,
        g.memory_mib as f64 / 1024.0,
        if vram > 0 {
            format!(
                ", {:.1} GiB VRAM ({} on one GPU each)",
                vram as f64 / 1024.0,
                g.vram_mib
                    .iter()
                    .map(|v| format!("{:.1}", *v as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(" + ")
            )
        } else {
            String::new()
        },
        if g.constraints.is_empty() {
            String::new()
        } else {
            format!(
                ", labels {}",
                g.constraints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    ));
    for h in hosts {
        let mut room = Room::new(h, headroom_mib);
        for (other, host) in &plan.placements {
            if host == &h.name && other != group {
                if let Some(o) = by_name.get(other.as_str()) {
                    take(&mut room, o);
                }
            }
        }
        let placed_here = plan.placements.get(group) == Some(&h.name);
        let verdict = match misfit(g, h, &room, &anti) {
            Some(reason) => format!("  {}: no: {reason}", h.name),
            None if placed_here => format!("  {}: chosen", h.name),
            None => format!("  {}: fits", h.name),
        };
        lines.push(verdict);
    }
    if !g.prefer.is_empty() {
        lines.push(format!("  preference order: {}", g.prefer.join(", ")));
    }
    lines
}
