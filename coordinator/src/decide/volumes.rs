//! Managed volumes: which host holds each one and in what role, and what
//! the coordinator records about them. Pure functions of the topology's
//! volumes, the placement, which nodes are Ready and the records.
//!
//! - The primary is the host the volume was created on (its record), or,
//!   for a new volume, its group's host.
//! - A replicated volume's standby is the recorded one while it stays in
//!   the group's fallbacks; else the first Ready fallback that is not the
//!   primary. A standby that is down stays the standby: the primary
//!   outdates it (through the coordinator) and resyncs it when it returns.
//! - A standby new to an existing volume starts Outdated (the primary goes
//!   on alone and resyncs it); the standby of a new volume does not (both
//!   images are empty).
//! - Only the primary may change a record, and only at the record's epoch.

use std::collections::{BTreeMap, BTreeSet};

use mesh_proto::v1::{
    VolumeAssignment, VolumeEventAnswer, VolumeEventKind, VolumeEventRequest, VolumeRole,
};
use mesh_topology::model::Topology;
use mesh_topology::service::VolumeEntry;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// A managed volume as the applied topology declares it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeDef {
    pub group: String,
    pub name: String,
    pub size_bytes: u64,
    pub replicate: bool,
    pub import: String,
    /// The group's failover fallbacks, in order.
    pub fallbacks: Vec<String>,
    /// The group's failover lease.
    pub lease: std::time::Duration,
    /// The images the group's services run (a standby must hold them).
    pub images: Vec<String>,
    /// `failback = "auto"`: how long the group's home host must be a valid
    /// standby before a switchover takes the group home. None: manual.
    pub failback_hold: Option<std::time::Duration>,
}

/// What the coordinator keeps about a volume (in its store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub group: String,
    pub name: String,
    pub size_bytes: u64,
    pub replicate: bool,
    pub primary: String,
    /// Empty: no standby (not replicated, or none was ever Ready).
    pub standby: String,
    pub epoch: u64,
    /// The primary went on without the standby: it misses writes.
    pub standby_outdated: bool,
    /// The primary has reported it attached: its image exists.
    #[serde(default)]
    pub attached: bool,
    /// The host it was made on (the group's own host): after a failover it
    /// stays a standby candidate, though it is not a fallback.
    #[serde(default)]
    pub home: String,
    /// A planned switchover is under way: the primary is to stop, flush
    /// everything to the standby and detach (then the standby is promoted).
    #[serde(default)]
    pub handover: bool,
    /// The primary took over from one that handed over cleanly: it has no
    /// lease of the old primary's to wait out.
    #[serde(default)]
    pub clean_handover: bool,
}

pub type RecordKey = (String, String);

impl VolumeRecord {
    pub fn key(&self) -> RecordKey {
        (self.group.clone(), self.name.clone())
    }
}

/// Every managed volume of `t`, once per group and name (services of one
/// group that name the same volume share it).
pub fn volume_defs(t: &Topology) -> Vec<VolumeDef> {
    let mut out: Vec<VolumeDef> = Vec::new();
    let images = super::images::group_images(t);
    for g in &t.groups {
        let group = g.name.get_ref();
        let fallbacks = g
            .failover
            .as_ref()
            .map(|f| f.fallbacks.clone())
            .unwrap_or_default();
        let lease = g.failover.as_ref().and_then(|f| f.lease_ms).map_or(
            super::failover::DEFAULT_LEASE,
            std::time::Duration::from_millis,
        );
        let failback_hold = g
            .failover
            .as_ref()
            .filter(|f| f.failback.as_deref() == Some("auto"))
            .map(|f| std::time::Duration::from_millis(f.failback_hold_ms.unwrap_or(60_000)));
        for s in &g.services {
            for v in &s.get_ref().volumes {
                let VolumeEntry::Managed(m) = v else { continue };
                if out.iter().any(|d| d.group == *group && d.name == m.name) {
                    continue;
                }
                out.push(VolumeDef {
                    group: group.clone(),
                    name: m.name.clone(),
                    size_bytes: m.size_mib * MIB,
                    replicate: m.replicate,
                    import: m.import.clone(),
                    fallbacks: fallbacks.clone(),
                    lease,
                    images: images.get(group).cloned().unwrap_or_default(),
                    failback_hold,
                });
            }
        }
    }
    out
}

/// group -> the primary its replicated volumes' records name (groups
/// whose volumes disagree are left out).
pub fn primaries(records: &BTreeMap<RecordKey, VolumeRecord>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in records.values().filter(|r| r.replicate) {
        let e = out
            .entry(r.group.clone())
            .or_insert_with(|| Some(r.primary.clone()));
        if e.as_deref() != Some(r.primary.as_str()) {
            *e = None;
        }
    }
    out.into_iter()
        .filter_map(|(g, p)| p.map(|p| (g, p)))
        .collect()
}

/// How long before its lease ends a primary fences itself: a quarter of
/// the lease, at least 400 ms. The lease is safe while the margin covers
/// the agent's kill latency plus the clocks' drift over one lease
/// (m >= kill + 2 * drift * L): a SIGKILL of the group's containers took
/// under 200 ms here, and drift of monotonic clocks is parts per million.
pub fn fence_margin(lease: std::time::Duration) -> std::time::Duration {
    (lease / 4).max(std::time::Duration::from_millis(400))
}

/// What [`plan`] decided.
#[derive(Debug, Default, PartialEq)]
pub struct VolumePlan {
    /// New or changed records: persisted before any assignment is sent.
    pub records: Vec<VolumeRecord>,
    /// node -> the volumes it holds.
    pub assignments: BTreeMap<String, Vec<VolumeAssignment>>,
}

/// `attached`: the volumes whose recorded primary reports them attached.
pub fn plan(
    defs: &[VolumeDef],
    placement: &BTreeMap<String, String>,
    ready: &BTreeSet<String>,
    records: &BTreeMap<RecordKey, VolumeRecord>,
    attached: &BTreeSet<RecordKey>,
) -> VolumePlan {
    let mut out = VolumePlan::default();
    for d in defs {
        let key = (d.group.clone(), d.name.clone());
        let existing = records.get(&key);
        let Some(primary) = existing
            .map(|r| r.primary.clone())
            .or_else(|| placement.get(&d.group).cloned())
        else {
            continue;
        };
        let mut record = existing.cloned().unwrap_or_else(|| VolumeRecord {
            group: d.group.clone(),
            name: d.name.clone(),
            size_bytes: d.size_bytes,
            replicate: d.replicate,
            primary: primary.clone(),
            standby: String::new(),
            epoch: 1,
            standby_outdated: false,
            attached: false,
            home: primary.clone(),
            ..VolumeRecord::default()
        });
        record.attached |= existing.is_some() && attached.contains(&key);
        record.size_bytes = d.size_bytes;
        record.replicate = d.replicate;
        if d.replicate {
            // The volume's home host, then the fallbacks, in order.
            let candidates: Vec<&String> = std::iter::once(&record.home)
                .filter(|h| !h.is_empty())
                .chain(d.fallbacks.iter())
                .collect();
            let keep = !record.standby.is_empty()
                && record.standby != primary
                && candidates.contains(&&record.standby);
            if !keep {
                let next = candidates
                    .iter()
                    .find(|h| ***h != primary && ready.contains(**h))
                    .map(|h| (*h).clone())
                    .unwrap_or_default();
                if next != record.standby {
                    // An existing volume's new standby misses everything.
                    record.standby_outdated = existing.is_some() && !next.is_empty();
                    record.standby = next;
                }
            }
        } else {
            record.standby.clear();
            record.standby_outdated = false;
        }
        if existing != Some(&record) {
            out.records.push(record.clone());
        }
        let assignment = |role: VolumeRole, peer: &str| VolumeAssignment {
            group: record.group.clone(),
            name: record.name.clone(),
            size_bytes: record.size_bytes,
            role: role as i32,
            replicate: record.replicate,
            peer: peer.to_string(),
            epoch: record.epoch,
            standby_outdated: record.standby_outdated,
            import_from: if role == VolumeRole::Primary {
                d.import.clone()
            } else {
                String::new()
            },
            existing: record.attached,
            lease_ms: d.lease.as_millis() as u32,
            fence_margin_ms: fence_margin(d.lease).as_millis() as u32,
            handover: role == VolumeRole::Primary && record.handover,
            clean_handover: role == VolumeRole::Primary && record.clean_handover,
        };
        out.assignments
            .entry(primary.clone())
            .or_default()
            .push(assignment(VolumeRole::Primary, &record.standby));
        if !record.standby.is_empty() {
            out.assignments
                .entry(record.standby.clone())
                .or_default()
                .push(assignment(VolumeRole::Standby, &primary));
        }
    }
    out
}

/// New volumes that do not fit on their hosts, each as one line naming
/// the volume, the host, the space it needs and what is free. Checked at
/// plan time against the disk each agent reports (its storage path): an
/// image is sparse, so this is the space the volume may come to use.
/// Volumes already recorded are not checked again (their images exist).
pub fn disk_problems(
    defs: &[VolumeDef],
    placement: &BTreeMap<String, String>,
    nodes: &[mesh_proto::v1::Node],
    records: &BTreeMap<RecordKey, VolumeRecord>,
) -> Vec<String> {
    let ready: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.state() == mesh_proto::v1::NodeState::Ready)
        .map(|n| n.name.clone())
        .collect();
    // host -> the new volumes it would hold
    let mut needs: BTreeMap<String, Vec<&VolumeDef>> = BTreeMap::new();
    for d in defs {
        if records.contains_key(&(d.group.clone(), d.name.clone())) {
            continue;
        }
        let Some(primary) = placement.get(&d.group) else {
            continue;
        };
        needs.entry(primary.clone()).or_default().push(d);
        if d.replicate {
            if let Some(standby) = d
                .fallbacks
                .iter()
                .find(|h| *h != primary && ready.contains(*h))
            {
                needs.entry(standby.clone()).or_default().push(d);
            }
        }
    }
    let mut problems = Vec::new();
    for (host, vols) in needs {
        let Some(disk) = nodes
            .iter()
            .find(|n| n.name == host)
            .and_then(|n| n.inventory.as_ref())
            .and_then(|i| i.disk.as_ref())
            .filter(|d| d.error.is_empty() && d.total_bytes > 0)
        else {
            continue;
        };
        let total: u64 = vols.iter().map(|v| v.size_bytes).sum();
        if total > disk.available_bytes {
            let names: Vec<String> = vols
                .iter()
                .map(|v| format!("{}/{} ({} MiB)", v.group, v.name, v.size_bytes / MIB))
                .collect();
            problems.push(format!(
                "volume {} needs {} MiB on {host}, which has {} MiB free at {}: free space there, lower size_mib, or place the group on another host",
                names.join(", "),
                total / MIB,
                disk.available_bytes / MIB,
                disk.path
            ));
        }
    }
    problems
}

/// The answer to a primary's event, and the record to persist first.
pub fn on_event(
    record: Option<&VolumeRecord>,
    caller: &str,
    req: &VolumeEventRequest,
) -> (VolumeEventAnswer, Option<VolumeRecord>) {
    let Some(record) = record else {
        return (VolumeEventAnswer::NotPrimary, None);
    };
    if record.primary != caller {
        return (VolumeEventAnswer::NotPrimary, None);
    }
    if req.epoch < record.epoch {
        return (VolumeEventAnswer::NewerEpoch, None);
    }
    let outdated = match req.kind() {
        VolumeEventKind::OutdateStandby => true,
        VolumeEventKind::StandbyUpToDate => false,
        VolumeEventKind::Unspecified => return (VolumeEventAnswer::Unspecified, None),
    };
    if record.standby_outdated == outdated {
        return (VolumeEventAnswer::Recorded, None);
    }
    let mut next = record.clone();
    next.standby_outdated = outdated;
    (VolumeEventAnswer::Recorded, Some(next))
}

#[cfg(test)]
mod tests;
