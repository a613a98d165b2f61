//! `meshctl volumes`: each volume's record joined with what its hosts
//! report. Pure: built from the records, the reports and the topology's
//! volume definitions.

use std::collections::BTreeMap;

use mesh_proto::v1::{
    DiskState, ReplicationStanding, VolumePhase, VolumeReplica, VolumeRole, VolumeRow, VolumeStatus,
};

use crate::decide::volumes::{RecordKey, VolumeDef, VolumeRecord};

pub fn rows(
    defs: &[VolumeDef],
    records: &BTreeMap<RecordKey, VolumeRecord>,
    reports: &BTreeMap<String, Vec<VolumeStatus>>,
) -> Vec<VolumeRow> {
    let reported = |node: &str, r: &VolumeRecord| -> Option<VolumeStatus> {
        reports
            .get(node)?
            .iter()
            .find(|s| s.group == r.group && s.name == r.name)
            .cloned()
    };
    let mut out = Vec::new();
    for r in records.values() {
        let primary = reported(&r.primary, r);
        let mut replicas = vec![replica(
            &r.primary,
            VolumeRole::Primary,
            primary.as_ref(),
            false,
        )];
        let standby = (!r.standby.is_empty()).then(|| reported(&r.standby, r));
        if let Some(s) = &standby {
            replicas.push(replica(
                &r.standby,
                VolumeRole::Standby,
                s.as_ref(),
                r.standby_outdated,
            ));
        }
        let p = primary.clone().unwrap_or_default();
        let mut problems = Vec::new();
        if !defs.iter().any(|d| d.group == r.group && d.name == r.name) {
            problems.push("not in the applied topology (kept on disk, not attached)".to_string());
        }
        match &primary {
            None => problems.push(format!("{} has not reported this volume", r.primary)),
            Some(s) if !s.error.is_empty() => problems.push(format!("{}: {}", r.primary, s.error)),
            Some(_) => {}
        }
        if r.replicate && r.standby.is_empty() {
            problems.push("no standby: no fallback was Ready; writes are on one host only".into());
        }
        if r.standby_outdated {
            problems.push(format!(
                "standby {} is Outdated: the primary runs alone until it has resynced it",
                r.standby
            ));
        }
        if let Some(Some(s)) = &standby {
            if !s.error.is_empty() {
                problems.push(format!("{}: {}", r.standby, s.error));
            }
        }
        out.push(VolumeRow {
            group: r.group.clone(),
            name: r.name.clone(),
            size_bytes: r.size_bytes,
            used_bytes: p.used_bytes,
            replicate: r.replicate,
            primary: r.primary.clone(),
            standby: r.standby.clone(),
            epoch: r.epoch,
            replicas,
            lag_writes: p.lag_writes,
            lag_bytes: p.lag_bytes,
            last_fsync_us: p.last_fsync_us,
            standing: if primary.is_some() {
                p.standing
            } else {
                ReplicationStanding::Unspecified as i32
            },
            standby_outdated: r.standby_outdated,
            problem: problems.join("; "),
            ..Default::default()
        });
    }
    for d in defs {
        if !records.contains_key(&(d.group.clone(), d.name.clone())) {
            out.push(VolumeRow {
                group: d.group.clone(),
                name: d.name.clone(),
                size_bytes: d.size_bytes,
                replicate: d.replicate,
                problem: "not created yet: its group is not placed".into(),
                ..Default::default()
            });
        }
    }
    out
}

/// Every volume's row as `meshctl volumes` shows it: the records and
/// reports, with what keeps each from being protected (invalid standby,
/// blocked failover), the primary's lease left, and the last failover.
pub fn live_rows(s: &crate::state::Shared) -> Vec<VolumeRow> {
    let (defs, _) = s.topology.volume_view();
    let mut volumes = rows(&defs, &s.volumes.records(), &s.volumes.reports());
    let blocked = s.failover.blocked();
    let last = s.failover.last();
    let missing = crate::state::failover::missing_images_map(s, &[]);
    let now = std::time::Instant::now();
    let silence = s.registry().silences(now);
    for v in &mut volumes {
        if let Some(m) = missing.get(&(v.group.clone(), v.standby.clone())) {
            let why = format!(
                "standby not valid: {}",
                crate::decide::failover::missing_images_problem(&v.standby, m)
            );
            v.problem = if v.problem.is_empty() {
                why
            } else {
                format!("{}; {why}", v.problem)
            };
        }
        if let Some(lease) = defs
            .iter()
            .find(|d| d.group == v.group && d.replicate)
            .map(|d| d.lease)
        {
            v.lease_remaining_ms = silence
                .get(&v.primary)
                .map(|s| lease.saturating_sub(*s).as_millis() as u64);
        }
        if let Some(reason) = blocked.get(&v.group) {
            v.problem = if v.problem.is_empty() {
                format!("failover blocked: {reason}")
            } else {
                format!("failover blocked: {reason}; {}", v.problem)
            };
        }
        if let Some(l) = last.get(&v.group) {
            let record = l.to_proto(now);
            v.last_failover = failover_line(&record);
            v.failover = Some(record);
        }
    }
    volumes
}

fn replica(
    node: &str,
    role: VolumeRole,
    status: Option<&VolumeStatus>,
    recorded_outdated: bool,
) -> VolumeReplica {
    let Some(s) = status else {
        return VolumeReplica {
            node: node.to_string(),
            role: role as i32,
            disk: if recorded_outdated {
                DiskState::Outdated as i32
            } else {
                DiskState::Unspecified as i32
            },
            ..Default::default()
        };
    };
    // The coordinator's record wins: a standby cut off does not know the
    // primary went on without it.
    let disk = if recorded_outdated && s.disk() != DiskState::Inconsistent {
        DiskState::Outdated
    } else {
        s.disk()
    };
    VolumeReplica {
        node: node.to_string(),
        role: role as i32,
        disk: disk as i32,
        resync_done_blocks: s.resync_done_blocks,
        resync_total_blocks: s.resync_total_blocks,
        phase: if s.phase == 0 {
            VolumePhase::Unspecified as i32
        } else {
            s.phase
        },
        reported: true,
        error: s.error.clone(),
    }
}

/// One line for people: "pc2 -> mainpc (switchover) at epoch 3: stop
/// 310 ms, promote 2 ms, ..., 1.2 s in all".
pub fn failover_line(r: &mesh_proto::v1::FailoverRecord) -> String {
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {} ms", p.name, p.ms))
        .collect();
    let state = if !r.error.is_empty() {
        format!("stopped: {}", r.error)
    } else if r.done {
        format!("{:.2} s in all", r.total_ms as f64 / 1000.0)
    } else {
        format!("under way for {:.1} s", r.total_ms as f64 / 1000.0)
    };
    format!(
        "{} -> {} ({}) at epoch {}: {}{}{}",
        r.from,
        r.to,
        r.cause,
        r.epoch,
        phases.join(", "),
        if phases.is_empty() { "" } else { "; " },
        state
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outdated: bool) -> VolumeRecord {
        VolumeRecord {
            group: "memory".into(),
            name: "db".into(),
            size_bytes: 1 << 26,
            replicate: true,
            primary: "mainpc".into(),
            standby: "pc2".into(),
            epoch: 1,
            standby_outdated: outdated,
            attached: true,
            home: "mainpc".into(),
            ..Default::default()
        }
    }

    fn status(role: VolumeRole, disk: DiskState) -> VolumeStatus {
        VolumeStatus {
            group: "memory".into(),
            name: "db".into(),
            role: role as i32,
            disk: disk as i32,
            lag_writes: 3,
            ..Default::default()
        }
    }

    #[test]
    fn the_record_outdates_a_standby_that_thinks_it_is_up_to_date() {
        let r = record(true);
        let records = [(r.key(), r)].into();
        let reports = [
            (
                "mainpc".to_string(),
                vec![status(VolumeRole::Primary, DiskState::UpToDate)],
            ),
            (
                "pc2".to_string(),
                vec![status(VolumeRole::Standby, DiskState::UpToDate)],
            ),
        ]
        .into();
        let rows = rows(&[], &records, &reports);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.replicas[0].disk(), DiskState::UpToDate);
        assert_eq!(row.replicas[1].disk(), DiskState::Outdated);
        assert_eq!(row.lag_writes, 3);
        assert!(row.problem.contains("pc2 is Outdated"), "{}", row.problem);
        assert!(
            row.problem.contains("not in the applied topology"),
            "{}",
            row.problem
        );
    }

    #[test]
    fn a_silent_host_and_an_unplaced_volume_are_named() {
        let r = record(false);
        let records = [(r.key(), r)].into();
        let defs = vec![VolumeDef {
            group: "memory".into(),
            name: "log".into(),
            size_bytes: 1 << 26,
            replicate: false,
            import: String::new(),
            fallbacks: vec![],
            lease: std::time::Duration::from_secs(2),
            ..Default::default()
        }];
        let rows = rows(&defs, &records, &BTreeMap::new());
        assert_eq!(rows.len(), 2);
        assert!(!rows[0].replicas[0].reported);
        assert!(
            rows[0].problem.contains("mainpc has not reported"),
            "{}",
            rows[0].problem
        );
        assert!(
            rows[1].problem.contains("not created yet"),
            "{}",
            rows[1].problem
        );
    }
}
