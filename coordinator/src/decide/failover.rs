//! When a failover group's primary host is gone, which standby takes over:
//! a pure function of the volume records, how long each node has been
//! silent, what the standbys report, and how long this coordinator has
//! been up (`shared/design/FAILOVER.md` sections 2 and 3).
//!
//! A group is promoted only when all of these hold:
//! - this coordinator has run for one full lease (a previous run may have
//!   granted leases that still hold);
//! - its primary has been silent (no heartbeat received) for the lease;
//! - its standby heartbeats now, and reports every volume of the group
//!   UpToDate at the group's epoch, and the coordinator has not recorded
//!   it Outdated;
//! - the standby no longer hears the primary (its last acknowledgement of
//!   the primary's flushes is older than lease - margin): a primary the
//!   standby still hears is alive and may hold the standby's lease, cut
//!   off from the coordinator only (a coordinator restart, say).
//!
//! A group that cannot be promoted says why ([`Blocked`]), for `meshctl`.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_proto::v1::{DiskState, VolumeStatus};

use super::volumes::{RecordKey, VolumeRecord};

/// The lease when the topology names none, and the agents' margin.
pub const DEFAULT_LEASE: Duration = Duration::from_millis(2000);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promote {
    pub group: String,
    pub from: String,
    pub to: String,
    /// The epoch the group moves to (persisted before anything is sent).
    pub epoch: u64,
}

/// Why a group whose primary is gone stays down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub group: String,
    pub reason: String,
}

pub struct Inputs<'a> {
    pub records: &'a BTreeMap<RecordKey, VolumeRecord>,
    /// node -> time since its last heartbeat was received (absent: never
    /// heard by this coordinator run).
    pub silence: &'a BTreeMap<String, Duration>,
    pub reports: &'a BTreeMap<String, Vec<VolumeStatus>>,
    /// How long this coordinator has been up.
    pub uptime: Duration,
    /// group -> its lease (default [`DEFAULT_LEASE`]).
    pub leases: &'a BTreeMap<String, Duration>,
    /// (group, host) -> the group's images the host lacks (absent: none).
    pub missing_images: &'a BTreeMap<(String, String), Vec<String>>,
}

pub fn decide(i: &Inputs) -> (Vec<Promote>, Vec<Blocked>) {
    // group -> its replicated volumes' records
    let mut groups: BTreeMap<&str, Vec<&VolumeRecord>> = BTreeMap::new();
    for r in i.records.values().filter(|r| r.replicate) {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    let mut promote = Vec::new();
    let mut blocked = Vec::new();
    for (group, vols) in groups {
        let lease = i.leases.get(group).copied().unwrap_or(DEFAULT_LEASE);
        let Some(first) = vols.first() else { continue };
        let primary = first.primary.as_str();
        let block = |reason: String| Blocked {
            group: group.to_string(),
            reason,
        };
        // Never heard since this run began: silent for its whole uptime,
        // and never longer (a previous run's lease may still hold).
        let heard = i.silence.get(primary).copied();
        let silent = heard.unwrap_or(i.uptime).min(i.uptime);
        if silent < lease {
            if heard.is_none() {
                blocked.push(block(format!(
                    "{primary} has not been heard since this coordinator started {:.1} s ago: it waits one full lease ({:.1} s) before any promotion",
                    i.uptime.as_secs_f64(),
                    lease.as_secs_f64()
                )));
            }
            continue;
        }
        let standby = first.standby.as_str();
        if standby.is_empty() {
            blocked.push(block(format!(
                "{primary} is gone and the group has no standby: add a Ready host to failover.fallbacks"
            )));
            continue;
        }
        if vols
            .iter()
            .any(|v| v.standby != standby || v.primary != primary)
        {
            blocked.push(block(
                "the group's volumes do not share one primary and one standby".into(),
            ));
            continue;
        }
        let standby_silent = i.silence.get(standby).copied().unwrap_or(i.uptime);
        if standby_silent >= lease {
            blocked.push(block(format!(
                "{primary} is gone and the standby {standby} is not heartbeating either"
            )));
            continue;
        }
        // Past lease - margin, the primary holds no lease from the standby.
        let hears_limit = lease.saturating_sub(super::volumes::fence_margin(lease));
        let mut problems = Vec::new();
        for v in &vols {
            if v.standby_outdated {
                problems.push(format!(
                    "{}/{} on {standby} is Outdated (the primary wrote without it)",
                    v.group, v.name
                ));
                continue;
            }
            let report = i
                .reports
                .get(standby)
                .and_then(|l| l.iter().find(|s| s.group == v.group && s.name == v.name));
            match report {
                None => problems.push(format!("{standby} does not report {}/{}", v.group, v.name)),
                Some(s) if s.disk() != DiskState::UpToDate => problems.push(format!(
                    "{}/{} on {standby} is {:?}, not UpToDate",
                    v.group,
                    v.name,
                    s.disk()
                )),
                Some(s) if s.epoch != v.epoch => problems.push(format!(
                    "{}/{} on {standby} is at epoch {}, the group at {}",
                    v.group, v.name, s.epoch, v.epoch
                )),
                // The primary may still hold the lease its standby grants:
                // it is alive, cut off from this coordinator only.
                Some(s)
                    if s
                        .primary_ack_age_ms
                        .is_some_and(|age| Duration::from_millis(age) < hears_limit) =>
                {
                    problems.push(format!(
                        "{standby} still replicates {}/{} from {primary} (last acknowledged {} ms ago): {primary} is alive, only cut off from the coordinator",
                        v.group,
                        v.name,
                        s.primary_ack_age_ms.unwrap_or(0)
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(m) = i
            .missing_images
            .get(&(group.to_string(), standby.to_string()))
            .filter(|m| !m.is_empty())
        {
            problems.push(missing_images_problem(standby, m));
        }
        if !problems.is_empty() {
            blocked.push(block(format!(
                "{primary} is gone, but no valid standby: {}",
                problems.join("; ")
            )));
            continue;
        }
        let epoch = vols.iter().map(|v| v.epoch).max().unwrap_or(0) + 1;
        promote.push(Promote {
            group: group.to_string(),
            from: primary.to_string(),
            to: standby.to_string(),
            epoch,
        });
    }
    (promote, blocked)
}

/// Why a standby without the group's images is not a valid standby.
pub fn missing_images_problem(host: &str, missing: &[String]) -> String {
    format!(
        "{host} lacks the group's image(s) {}: copy them there (`podman save IMAGE | ssh {host} podman load`) so it can run the group",
        missing.join(", ")
    )
}

/// What failover would do if the `gone` hosts died now, one line per
/// replicated group they hold (for `meshctl place --fail`): the same
/// decision as [`decide`], with the gone hosts silent for long, every
/// other node just heard, and their standbys no longer hearing them.
pub fn what_if(
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
    leases: &BTreeMap<String, Duration>,
    missing_images: &BTreeMap<(String, String), Vec<String>>,
    nodes: &[String],
    gone: &[String],
) -> Vec<String> {
    const LONG: Duration = Duration::from_secs(3600);
    let is_gone = |n: &str| gone.iter().any(|g| g == n);
    let silence: BTreeMap<String, Duration> = nodes
        .iter()
        .map(|n| (n.clone(), if is_gone(n) { LONG } else { Duration::ZERO }))
        .collect();
    let mut reports = reports.clone();
    for list in reports.values_mut() {
        for s in list.iter_mut() {
            let primary_gone = records
                .values()
                .any(|r| r.group == s.group && r.name == s.name && is_gone(&r.primary));
            if primary_gone {
                s.primary_ack_age_ms = None;
            }
        }
    }
    let (promote, blocked) = decide(&Inputs {
        records,
        silence: &silence,
        reports: &reports,
        uptime: LONG,
        leases,
        missing_images,
    });
    let mut out = Vec::new();
    for p in promote {
        out.push(format!(
            "{}: its primary {} gone, failover to {} at epoch {} (standby UpToDate)",
            p.group, p.from, p.to, p.epoch
        ));
    }
    for b in blocked {
        out.push(format!("{}: would stay down: {}", b.group, b.reason));
    }
    let mut unprotected: Vec<(&str, &str)> = records
        .values()
        .filter(|r| r.replicate && !is_gone(&r.primary) && is_gone(&r.standby))
        .map(|r| (r.group.as_str(), r.standby.as_str()))
        .collect();
    unprotected.dedup();
    for (group, standby) in unprotected {
        out.push(format!(
            "{group}: keeps running, unprotected: its standby {standby} is gone"
        ));
    }
    out
}

/// The records of a promotion: the standby is the primary at the new
/// epoch, the old primary its standby, Outdated (it may have written
/// what was never acknowledged; it is resynced when it returns).
pub fn promoted(records: &BTreeMap<RecordKey, VolumeRecord>, p: &Promote) -> Vec<VolumeRecord> {
    records
        .values()
        .filter(|r| r.group == p.group && r.replicate)
        .map(|r| VolumeRecord {
            primary: p.to.clone(),
            standby: p.from.clone(),
            epoch: p.epoch,
            standby_outdated: true,
            attached: true,
            handover: false,
            clean_handover: false,
            ..r.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests;
