//! `meshctl volumes`: managed volumes, their replicas and replication, and
//! the one-line-per-group summary of `meshctl status`.

use anyhow::Result;
use mesh_proto::v1::admin_service_client::AdminServiceClient;
use mesh_proto::v1::{
    DiskState, ListVolumesRequest, ReplicationStanding, VolumeReplica, VolumeRow,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::table::render;

pub async fn list(client: &mut AdminServiceClient<Channel>) -> Result<Vec<VolumeRow>> {
    Ok(client
        .list_volumes(ListVolumesRequest {})
        .await
        .map_err(crate::admin::call_error)?
        .into_inner()
        .volumes)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

/// "UpToDate", "Outdated", "Inconsistent 42%", "?" (not reported).
pub fn disk_text(r: &VolumeReplica) -> String {
    r.disk_text()
}

pub fn standing_text(s: ReplicationStanding) -> &'static str {
    s.label()
}

fn replica_text(r: &VolumeReplica) -> String {
    format!("{} {}", r.node, disk_text(r))
}

pub fn to_json(rows: &[VolumeRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|v| {
                json!({
                    "group": v.group,
                    "volume": v.name,
                    "size_bytes": v.size_bytes,
                    "used_bytes": v.used_bytes,
                    "replicate": v.replicate,
                    "primary": v.primary,
                    "standby": v.standby,
                    "epoch": v.epoch,
                    "standing": standing_text(v.standing()),
                    "standby_outdated": v.standby_outdated,
                    "lag_writes": v.lag_writes,
                    "lag_bytes": v.lag_bytes,
                    "last_fsync_us": v.last_fsync_us,
                    "replicas": v.replicas.iter().map(|r| json!({
                        "node": r.node,
                        "role": r.role().as_str_name(),
                        "disk": disk_text(r),
                        "resync_done_blocks": r.resync_done_blocks,
                        "resync_total_blocks": r.resync_total_blocks,
                        "reported": r.reported,
                        "error": r.error,
                    })).collect::<Vec<_>>(),
                    "problem": v.problem,
                    "last_failover": v.last_failover,
                    "lease_remaining_ms": v.lease_remaining_ms,
                    "failover": v.failover.as_ref().map(|f| json!({
                        "cause": f.cause,
                        "from": f.from,
                        "to": f.to,
                        "epoch": f.epoch,
                        "started_unix_ms": f.started_unix_ms,
                        "done": f.done,
                        "total_ms": f.total_ms,
                        "error": f.error,
                        "phases": f.phases.iter().map(|p| json!({"name": p.name, "ms": p.ms})).collect::<Vec<_>>(),
                    })),
                })
            })
            .collect(),
    )
}

pub fn table(rows: &[VolumeRow]) -> String {
    if rows.is_empty() {
        return "no managed volumes (declare them in a topology: volumes = [{ name, target, size_mib, replicate }])\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|v| {
            let replica = |i: usize| v.replicas.get(i).map(replica_text).unwrap_or("-".into());
            vec![
                v.group.clone(),
                v.name.clone(),
                mib(v.size_bytes),
                mib(v.used_bytes),
                replica(0),
                if v.replicate {
                    replica(1)
                } else {
                    "(local)".into()
                },
                standing_text(v.standing()).into(),
                format!("{} writes / {} B", v.lag_writes, v.lag_bytes),
                v.epoch.to_string(),
                if v.last_fsync_us == 0 {
                    "-".into()
                } else {
                    format!("{:.2} ms", v.last_fsync_us as f64 / 1000.0)
                },
            ]
        })
        .collect();
    let mut out = render(
        &[
            "GROUP",
            "VOLUME",
            "SIZE",
            "USED",
            "PRIMARY",
            "STANDBY",
            "REPLICATION",
            "LAG",
            "EPOCH",
            "FSYNC",
        ],
        &body,
    );
    for v in rows.iter().filter(|v| !v.problem.is_empty()) {
        out.push_str(&format!("{}/{}: {}\n", v.group, v.name, v.problem));
    }
    for v in rows.iter().filter(|v| !v.last_failover.is_empty()) {
        out.push_str(&format!(
            "{}/{}: last failover {}\n",
            v.group, v.name, v.last_failover
        ));
    }
    out
}

/// One line per group with volumes, for `meshctl status`.
pub fn summary(rows: &[VolumeRow]) -> String {
    let mut groups: Vec<&str> = rows.iter().map(|v| v.group.as_str()).collect();
    groups.dedup();
    let mut out = String::new();
    for g in groups {
        let vols: Vec<&VolumeRow> = rows.iter().filter(|v| v.group == g).collect();
        let protected = vols.iter().all(|v| {
            !v.replicate
                || (v.standing() == ReplicationStanding::InSync
                    && v.replicas.iter().all(|r| r.disk() == DiskState::UpToDate))
        });
        let parts: Vec<String> = vols
            .iter()
            .map(|v| {
                let standby = v
                    .replicas
                    .get(1)
                    .map(|r| format!(" -> {}", replica_text(r)))
                    .unwrap_or_default();
                format!("{} on {}{standby}", v.name, v.primary)
            })
            .collect();
        let epoch = vols.iter().map(|v| v.epoch).max().unwrap_or(0);
        let lease = vols
            .iter()
            .filter_map(|v| v.lease_remaining_ms)
            .min()
            .map(|ms| format!(", lease {:.1} s left", ms as f64 / 1000.0))
            .unwrap_or_default();
        let lag: u64 = vols.iter().map(|v| v.lag_bytes).sum();
        let lag = if vols.iter().any(|v| v.replicate) {
            format!(", lag {lag} B")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "volumes of {g}: {} at epoch {epoch}{lease}{lag} ({})\n",
            if protected {
                "protected"
            } else {
                "NOT fully protected"
            },
            parts.join(", ")
        ));
        // Group-wide facts, once: why it cannot fail over, its last failover.
        if let Some(blocked) = vols.iter().find_map(|v| {
            v.problem
                .split("; ")
                .find(|p| p.starts_with("failover blocked:"))
        }) {
            out.push_str(&format!("  {blocked}\n"));
        }
        if let Some(last) = vols
            .iter()
            .map(|v| v.last_failover.as_str())
            .find(|l| !l.is_empty())
        {
            out.push_str(&format!("  last failover: {last}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::VolumeRole;

    fn row(standby_disk: DiskState) -> VolumeRow {
        VolumeRow {
            group: "memory".into(),
            name: "db".into(),
            size_bytes: 1 << 30,
            used_bytes: 3 << 20,
            replicate: true,
            primary: "mainpc".into(),
            standby: "pc2".into(),
            epoch: 1,
            standing: ReplicationStanding::InSync as i32,
            replicas: vec![
                VolumeReplica {
                    node: "mainpc".into(),
                    role: VolumeRole::Primary as i32,
                    disk: DiskState::UpToDate as i32,
                    reported: true,
                    ..Default::default()
                },
                VolumeReplica {
                    node: "pc2".into(),
                    role: VolumeRole::Standby as i32,
                    disk: standby_disk as i32,
                    resync_done_blocks: 25,
                    resync_total_blocks: 100,
                    reported: true,
                    ..Default::default()
                },
            ],
            last_fsync_us: 1540,
            ..Default::default()
        }
    }

    #[test]
    fn table_shows_states_lag_and_fsync() {
        let t = table(&[row(DiskState::Inconsistent)]);
        assert!(t.contains("pc2 Inconsistent 25%"), "{t}");
        assert!(t.contains("mainpc UpToDate"), "{t}");
        assert!(t.contains("1024 MiB"), "{t}");
        assert!(t.contains("1.54 ms"), "{t}");
        assert!(summary(&[row(DiskState::Inconsistent)]).contains("NOT fully protected"));
        let mut failed_over = row(DiskState::UpToDate);
        failed_over.epoch = 2;
        failed_over.last_failover = "pc2 -> mainpc at epoch 2".into();
        failed_over.problem = "failover blocked: pc2 is gone, but no valid standby".into();
        let text = summary(&[failed_over]);
        assert!(text.contains("protected at epoch 2"), "{text}");
        assert!(text.contains("\n  failover blocked: pc2 is gone"), "{text}");
        assert!(
            text.contains("\n  last failover: pc2 -> mainpc at epoch 2"),
            "{text}"
        );
        assert!(summary(&[row(DiskState::UpToDate)]).starts_with("volumes of memory: protected"));
    }
}
