//! Placement: which host each group runs on. A pure, deterministic
//! function of the groups' needs, the hosts' capacity and the current
//! placement. It honours label constraints, co-location (a group is one
//! unit), anti-affinity and `prefer`; packs VRAM per GPU with headroom;
//! never over-commits CPU, memory, VRAM or host ports; and leaves a running
//! group where it is whenever that host still fits it.

mod explain;
mod needs;

use std::collections::{BTreeMap, BTreeSet};

pub use explain::explain;
pub use needs::{group_needs, hosts_from_topology};

const MIB_PER_GIB: f64 = 1024.0;

/// What placement may use on one host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostState {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// False for a host that is down (or assumed gone in a what-if).
    pub available: bool,
    pub cpus: f64,
    pub memory_mib: u64,
    /// VRAM the mesh may use on each GPU, MiB (before headroom).
    pub gpus_mib: Vec<u64>,
}

/// What one group needs from the single host it runs on.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNeeds {
    pub name: String,
    pub constraints: BTreeMap<String, String>,
    pub prefer: Vec<String>,
    pub anti_affinity: Vec<String>,
    pub cpus: f64,
    pub memory_mib: u64,
    /// One entry per service that needs VRAM; each must fit on one GPU.
    pub vram_mib: Vec<u64>,
    pub host_ports: Vec<(u16, String)>,
    /// How many services of other groups depend on this group's services,
    /// directly or not. Groups others need are placed first, so when room
    /// runs short (a host lost) it is the leaves that stay unplaced.
    pub dependents: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Start {
        group: String,
        host: String,
    },
    Move {
        group: String,
        from: String,
        to: String,
        reason: String,
    },
    Stop {
        group: String,
        host: String,
        reason: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// group -> host
    pub placements: BTreeMap<String, String>,
    /// group -> one line per host saying why it does not fit there
    pub unplaced: BTreeMap<String, Vec<String>>,
    pub changes: Vec<Change>,
    /// group -> the GPU index (on its host) of each of its VRAM needs, in
    /// the order of `GroupNeeds::vram_mib`.
    pub gpus: BTreeMap<String, Vec<usize>>,
}

/// Remaining capacity of a host while a plan is being made.
#[derive(Clone, Debug)]
pub(crate) struct Room {
    pub cpus: f64,
    pub memory_mib: u64,
    pub gpus_mib: Vec<u64>,
    pub groups: BTreeSet<String>,
    pub ports: BTreeSet<(u16, String)>,
}

impl Room {
    fn new(h: &HostState, headroom_mib: u64) -> Room {
        Room {
            cpus: h.cpus,
            memory_mib: h.memory_mib,
            gpus_mib: h
                .gpus_mib
                .iter()
                .map(|g| g.saturating_sub(headroom_mib))
                .collect(),
            groups: BTreeSet::new(),
            ports: BTreeSet::new(),
        }
    }
}

/// Where each VRAM need goes on a host's GPUs (first fit, largest first);
/// None if some need fits on no GPU.
pub(crate) fn pack_vram(needs: &[u64], gpus: &[u64]) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..needs.len()).collect();
    order.sort_by(|a, b| needs[*b].cmp(&needs[*a]).then(a.cmp(b)));
    let mut free = gpus.to_vec();
    let mut at = vec![0; needs.len()];
    for i in order {
        let gpu = (0..free.len()).find(|g| free[*g] >= needs[i])?;
        free[gpu] -= needs[i];
        at[i] = gpu;
    }
    Some(at)
}

/// Why `g` cannot go on host `h` with `room` left, or None if it can.
pub(crate) fn misfit(
    g: &GroupNeeds,
    h: &HostState,
    room: &Room,
    anti: &BTreeMap<&str, BTreeSet<&str>>,
) -> Option<String> {
    if !h.available {
        return Some(format!("{} is not available", h.name));
    }
    for (k, v) in &g.constraints {
        if h.labels.get(k) != Some(v) {
            return Some(format!("{} lacks label {k}={v}", h.name));
        }
    }
    let banned = anti.get(g.name.as_str());
    if let Some(other) = room
        .groups
        .iter()
        .find(|o| banned.is_some_and(|b| b.contains(o.as_str())))
    {
        return Some(format!(
            "{} runs {other}, which {} must not share a host with",
            h.name, g.name
        ));
    }
    if let Some(p) = g.host_ports.iter().find(|p| room.ports.contains(*p)) {
        return Some(format!(
            "{} already has host port {}/{} taken",
            h.name, p.0, p.1
        ));
    }
    if g.cpus > room.cpus + 1e-9 {
        return Some(format!(
            "{} has {:.1} CPUs free, {} needs {:.1}",
            h.name,
            room.cpus.max(0.0),
            g.name,
            g.cpus
        ));
    }
    if g.memory_mib > room.memory_mib {
        return Some(format!(
            "{} has {:.1} GiB memory free, {} needs {:.1} GiB",
            h.name,
            room.memory_mib as f64 / MIB_PER_GIB,
            g.name,
            g.memory_mib as f64 / MIB_PER_GIB
        ));
    }
    if !g.vram_mib.is_empty() && pack_vram(&g.vram_mib, &room.gpus_mib).is_none() {
        let biggest = g.vram_mib.iter().copied().max().unwrap_or(0);
        let free: Vec<String> = room
            .gpus_mib
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{:.1} GiB free on GPU{i}", *f as f64 / MIB_PER_GIB))
            .collect();
        return Some(if free.is_empty() {
            format!("{} has no GPU", h.name)
        } else {
            format!(
                "{} has {} (needs {:.1} GiB on one GPU, {:.1} GiB in all)",
                h.name,
                free.join(", "),
                biggest as f64 / MIB_PER_GIB,
                g.vram_mib.iter().sum::<u64>() as f64 / MIB_PER_GIB
            )
        });
    }
    None
}

/// Takes `g`'s needs out of `room`; returns the GPU of each VRAM need.
fn take(room: &mut Room, g: &GroupNeeds) -> Vec<usize> {
    room.cpus -= g.cpus;
    room.memory_mib = room.memory_mib.saturating_sub(g.memory_mib);
    let at = pack_vram(&g.vram_mib, &room.gpus_mib).unwrap_or_default();
    for (i, gpu) in at.iter().enumerate() {
        room.gpus_mib[*gpu] -= g.vram_mib[i];
    }
    room.groups.insert(g.name.clone());
    room.ports.extend(g.host_ports.iter().cloned());
    at
}

/// What the plan gives each host: CPUs, memory and VRAM per GPU, replayed
/// from the plan's own GPU assignment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostUsage {
    pub cpus: f64,
    pub memory_mib: u64,
    pub gpus_mib: Vec<u64>,
    pub groups: Vec<String>,
}

pub fn usage(
    hosts: &[HostState],
    groups: &[GroupNeeds],
    plan: &Plan,
) -> BTreeMap<String, HostUsage> {
    let mut out: BTreeMap<String, HostUsage> = hosts
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                HostUsage {
                    gpus_mib: vec![0; h.gpus_mib.len()],
                    ..HostUsage::default()
                },
            )
        })
        .collect();
    for g in groups {
        let Some(u) = plan.placements.get(&g.name).and_then(|h| out.get_mut(h)) else {
            continue;
        };
        u.cpus += g.cpus;
        u.memory_mib += g.memory_mib;
        u.groups.push(g.name.clone());
        let at = plan.gpus.get(&g.name).map(Vec::as_slice).unwrap_or(&[]);
        for (need, gpu) in g.vram_mib.iter().zip(at) {
            if let Some(slot) = u.gpus_mib.get_mut(*gpu) {
                *slot += need;
            }
        }
    }
    out
}

/// Symmetric anti-affinity: if A avoids B, B avoids A.
pub(crate) fn anti_map(groups: &[GroupNeeds]) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut m: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for g in groups {
        for a in &g.anti_affinity {
            m.entry(g.name.as_str()).or_default().insert(a.as_str());
            m.entry(a.as_str()).or_default().insert(g.name.as_str());
        }
    }
    m
}

/// Leftover VRAM after packing `g` on `room` (best fit wins), then free memory.
fn score(g: &GroupNeeds, room: &Room) -> (u64, std::cmp::Reverse<u64>) {
    let mut gpus = room.gpus_mib.clone();
    if let Some(at) = pack_vram(&g.vram_mib, &gpus) {
        for (i, gpu) in at.into_iter().enumerate() {
            gpus[gpu] -= g.vram_mib[i];
        }
    }
    let leftover = if g.vram_mib.is_empty() {
        0
    } else {
        gpus.iter().sum()
    };
    (
        leftover,
        std::cmp::Reverse(room.memory_mib.saturating_sub(g.memory_mib)),
    )
}

pub fn plan(
    hosts: &[HostState],
    groups: &[GroupNeeds],
    current: &BTreeMap<String, String>,
    headroom_mib: u64,
) -> Plan {
    let index: BTreeMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();
    let mut rooms: Vec<Room> = hosts.iter().map(|h| Room::new(h, headroom_mib)).collect();
    let anti = anti_map(groups);
    // Running groups first (stability), then the hardest to place.
    let mut order: Vec<&GroupNeeds> = groups.iter().collect();
    order.sort_by(|a, b| {
        let placed = |g: &GroupNeeds| !current.contains_key(&g.name);
        placed(a)
            .cmp(&placed(b))
            .then(b.dependents.cmp(&a.dependents))
            .then(b.vram_mib.iter().max().cmp(&a.vram_mib.iter().max()))
            .then(
                b.vram_mib
                    .iter()
                    .sum::<u64>()
                    .cmp(&a.vram_mib.iter().sum::<u64>()),
            )
            .then(b.memory_mib.cmp(&a.memory_mib))
            .then(a.name.cmp(&b.name))
    });
    let mut plan = Plan::default();
    for g in order {
        let stay = current
            .get(&g.name)
            .and_then(|h| index.get(h.as_str()).copied())
            .filter(|i| misfit(g, &hosts[*i], &rooms[*i], &anti).is_none());
        let chosen = stay.or_else(|| {
            let preferred = g
                .prefer
                .iter()
                .filter_map(|p| index.get(p.as_str()).copied())
                .find(|i| misfit(g, &hosts[*i], &rooms[*i], &anti).is_none());
            preferred.or_else(|| {
                (0..hosts.len())
                    .filter(|i| misfit(g, &hosts[*i], &rooms[*i], &anti).is_none())
                    .min_by(|a, b| {
                        score(g, &rooms[*a])
                            .cmp(&score(g, &rooms[*b]))
                            .then(hosts[*a].name.cmp(&hosts[*b].name))
                    })
            })
        });
        match chosen {
            Some(i) => {
                let at = take(&mut rooms[i], g);
                if !at.is_empty() {
                    plan.gpus.insert(g.name.clone(), at);
                }
                plan.placements
                    .insert(g.name.clone(), hosts[i].name.clone());
            }
            None => {
                let reasons = hosts
                    .iter()
                    .zip(&rooms)
                    .filter_map(|(h, r)| misfit(g, h, r, &anti))
                    .collect();
                plan.unplaced.insert(g.name.clone(), reasons);
            }
        }
    }
    plan.changes = changes(hosts, groups, current, &plan, &anti);
    plan
}

fn changes(
    hosts: &[HostState],
    groups: &[GroupNeeds],
    current: &BTreeMap<String, String>,
    plan: &Plan,
    anti: &BTreeMap<&str, BTreeSet<&str>>,
) -> Vec<Change> {
    let known: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let mut out = Vec::new();
    for g in groups {
        let now = current.get(&g.name);
        match (now, plan.placements.get(&g.name)) {
            (None, Some(to)) => out.push(Change::Start {
                group: g.name.clone(),
                host: to.clone(),
            }),
            (Some(from), Some(to)) if from != to => {
                let reason = match hosts.iter().find(|h| &h.name == from) {
                    None => format!("{from} is no longer a host"),
                    Some(h) => {
                        let empty = Room::new(h, 0);
                        misfit(g, h, &empty, anti)
                            .unwrap_or_else(|| format!("{from} has no room left for it"))
                    }
                };
                out.push(Change::Move {
                    group: g.name.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    reason,
                });
            }
            (Some(from), None) => out.push(Change::Stop {
                group: g.name.clone(),
                host: from.clone(),
                reason: "it fits on no host now".into(),
            }),
            _ => {}
        }
    }
    for (group, host) in current {
        if !known.contains(group.as_str()) {
            out.push(Change::Stop {
                group: group.clone(),
                host: host.clone(),
                reason: "no longer in the topology".into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
