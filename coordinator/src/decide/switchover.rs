//! A planned switchover of a replicated group to its standby, as pure
//! functions of the volume records and what the agents report
//! (`meshctl failover GROUP`; `shared/design/FAILOVER.md` section 5).
//!
//! It loses nothing: the group's services are stopped on the primary,
//! whose agent then detaches each volume, flushes every write to the
//! standby and reports it HANDED_OVER; only then is the standby promoted
//! (epoch + 1, persisted) and the services started there. Until the
//! promotion the switchover can be called off and the group goes back up
//! where it was.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_proto::v1::{DiskState, ReplicationStanding, VolumePhase, VolumeStatus};

use super::failover::Promote;
use super::volumes::{RecordKey, VolumeRecord};

/// Where a switchover of one group goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub group: String,
    pub from: String,
    pub to: String,
    pub epoch: u64,
}

fn group_records<'a>(
    records: &'a BTreeMap<RecordKey, VolumeRecord>,
    group: &str,
) -> Vec<&'a VolumeRecord> {
    records
        .values()
        .filter(|r| r.group == group && r.replicate)
        .collect()
}

fn report<'a>(
    reports: &'a BTreeMap<String, Vec<VolumeStatus>>,
    node: &str,
    r: &VolumeRecord,
) -> Option<&'a VolumeStatus> {
    reports
        .get(node)
        .and_then(|l| l.iter().find(|s| s.group == r.group && s.name == r.name))
}

/// Whether `group` can be switched over to `to` (empty: its standby) now;
/// the move, or why not and what would fix it. `silence`: node -> time
/// since its last heartbeat; `lease`: the group's.
pub fn check(
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
    silence: &BTreeMap<String, Duration>,
    lease: Duration,
    group: &str,
    to: &str,
) -> Result<Move, String> {
    let vols = group_records(records, group);
    let Some(first) = vols.first() else {
        return Err(format!(
            "group '{group}' has no replicated volume: only a group with `replicate = true` volumes can be switched over"
        ));
    };
    let (primary, standby) = (first.primary.as_str(), first.standby.as_str());
    if vols
        .iter()
        .any(|v| v.primary != primary || v.standby != standby)
    {
        return Err(format!(
            "the volumes of '{group}' do not share one primary and one standby"
        ));
    }
    if vols.iter().any(|v| v.handover) {
        return Err(format!(
            "a switchover of '{group}' from {primary} to {standby} is already under way"
        ));
    }
    if standby.is_empty() {
        return Err(format!(
            "'{group}' has no standby: add a Ready host to its failover.fallbacks"
        ));
    }
    if !to.is_empty() && to != standby {
        return Err(if to == primary {
            format!("'{group}' already runs on {to}")
        } else {
            format!(
                "{to} is not the standby of '{group}' (its standby is {standby}); a switchover goes to the standby, which holds the data"
            )
        });
    }
    let alive = |n: &str| silence.get(n).is_some_and(|s| *s < lease);
    if !alive(primary) {
        return Err(format!(
            "the primary {primary} is not heartbeating: automatic failover handles a lost primary; `meshctl volumes` shows why it has not happened"
        ));
    }
    if !alive(standby) {
        return Err(format!("the standby {standby} is not heartbeating"));
    }
    let mut problems = Vec::new();
    for v in &vols {
        let id = format!("{}/{}", v.group, v.name);
        if v.standby_outdated {
            problems.push(format!(
                "{id} on {standby} is Outdated; wait for its resync to finish"
            ));
            continue;
        }
        match report(reports, standby, v) {
            None => problems.push(format!("{standby} does not report {id}")),
            Some(s) if s.disk() != DiskState::UpToDate => problems.push(format!(
                "{id} on {standby} is {:?}, not UpToDate; wait for its resync",
                s.disk()
            )),
            Some(s) if s.epoch != v.epoch => problems.push(format!(
                "{id} on {standby} is at epoch {}, the group at {}",
                s.epoch, v.epoch
            )),
            Some(_) => {}
        }
        match report(reports, primary, v) {
            Some(s)
                if s.phase() == VolumePhase::Attached
                    && s.standing() == ReplicationStanding::InSync => {}
            Some(s) => problems.push(format!(
                "{id} on {primary} is {:?} and {:?}, not attached and in sync with {standby}",
                s.phase(),
                s.standing()
            )),
            None => problems.push(format!("{primary} does not report {id}")),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "cannot switch '{group}' over to {standby}: {}",
            problems.join("; ")
        ));
    }
    Ok(Move {
        group: group.to_string(),
        from: primary.to_string(),
        to: standby.to_string(),
        epoch: first.epoch,
    })
}

/// The records that begin `m`: the primary is told to hand over.
pub fn begin(records: &BTreeMap<RecordKey, VolumeRecord>, m: &Move) -> Vec<VolumeRecord> {
    group_records(records, &m.group)
        .into_iter()
        .map(|r| VolumeRecord {
            handover: true,
            ..r.clone()
        })
        .collect()
}

/// The records that call a switchover of `group` off (before its
/// promotion): the primary attaches again and its services come back.
pub fn abort(records: &BTreeMap<RecordKey, VolumeRecord>, group: &str) -> Vec<VolumeRecord> {
    group_records(records, group)
        .into_iter()
        .filter(|r| r.handover)
        .map(|r| VolumeRecord {
            handover: false,
            ..r.clone()
        })
        .collect()
}

/// What a switchover under way waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The primary has not handed every volume over yet.
    Stopping { waiting_on: Vec<String> },
    /// Every volume is handed over and the standby is UpToDate: promote.
    Promote(Promote),
}

/// The switchovers under way and what each waits for.
pub fn progress(
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
) -> BTreeMap<String, Progress> {
    let mut groups: BTreeMap<&str, Vec<&VolumeRecord>> = BTreeMap::new();
    for r in records.values().filter(|r| r.replicate && r.handover) {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for (group, vols) in groups {
        let mut waiting_on = Vec::new();
        for v in &vols {
            let id = format!("{}/{}", v.group, v.name);
            let handed = report(reports, &v.primary, v)
                .is_some_and(|s| s.phase() == VolumePhase::HandedOver && s.epoch == v.epoch);
            if !handed {
                waiting_on.push(format!("{id} to be handed over by {}", v.primary));
                continue;
            }
            let ready = report(reports, &v.standby, v)
                .is_some_and(|s| s.disk() == DiskState::UpToDate && s.epoch == v.epoch);
            if !ready {
                waiting_on.push(format!("{id} on {} to be UpToDate", v.standby));
            }
        }
        let p = if waiting_on.is_empty() {
            let Some(first) = vols.first() else { continue };
            Progress::Promote(Promote {
                group: group.to_string(),
                from: first.primary.clone(),
                to: first.standby.clone(),
                epoch: vols.iter().map(|v| v.epoch).max().unwrap_or(0) + 1,
            })
        } else {
            Progress::Stopping { waiting_on }
        };
        out.insert(group.to_string(), p);
    }
    out
}

/// Automatic failback (`failback = "auto"`): the groups whose home host
/// (where their volumes were made) is now their standby and has been a
/// valid switchover target for the whole hold-down. `since`: group -> when
/// it became one (kept across ticks); returns the new map and the moves.
pub fn failbacks(
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
    silence: &BTreeMap<String, Duration>,
    defs: &[super::volumes::VolumeDef],
    since: &BTreeMap<String, std::time::Instant>,
    now: std::time::Instant,
) -> (BTreeMap<String, std::time::Instant>, Vec<Move>) {
    let mut next = BTreeMap::new();
    let mut moves = Vec::new();
    for d in defs {
        let Some(hold) = d.failback_hold else {
            continue;
        };
        if next.contains_key(&d.group) {
            continue;
        }
        let Some(r) = records.get(&(d.group.clone(), d.name.clone())) else {
            continue;
        };
        if r.home.is_empty() || r.home == r.primary || r.standby != r.home {
            continue;
        }
        let Ok(m) = check(records, reports, silence, d.lease, &d.group, &r.home) else {
            continue;
        };
        let at = since.get(&d.group).copied().unwrap_or(now);
        next.insert(d.group.clone(), at);
        if now.saturating_duration_since(at) >= hold {
            moves.push(m);
        }
    }
    (next, moves)
}

/// The records of a switchover's promotion: like a failover's, but the
/// new primary need not wait out a lease (the old one handed over).
pub fn promoted(records: &BTreeMap<RecordKey, VolumeRecord>, p: &Promote) -> Vec<VolumeRecord> {
    super::failover::promoted(records, p)
        .into_iter()
        .map(|r| VolumeRecord {
            clean_handover: true,
            ..r
        })
        .collect()
}

#[cfg(test)]
mod tests;
