//! What `/metrics` shows (issue #13, first part): the mesh as the
//! coordinator sees it, in the OpenMetrics text format, encoded by
//! `prometheus-client`. Built afresh from the shared state at each scrape,
//! so it is never stale and holds no series of a node or group that is
//! gone. Label values are node, group and volume names and a fixed set of
//! states and causes: bounded by the mesh's size.

use std::time::Instant;

use mesh_proto::v1::DiskState;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Every sample name the mesh exports, and the names in a text.
pub use mesh_exposition::{sample_names, EXPORTED};

use mesh_exposition::{counters, gauges};

use crate::state::registry::Now;
use crate::state::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    group: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    group: String,
    volume: String,
}

fn counter(reg: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    reg.register(name, help, c);
}

/// The exposition text of the whole mesh now.
pub fn render(shared: &Shared) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    let snapshot = shared.registry().snapshot(Now::system());
    nodes(&mut reg, shared, &snapshot);
    mesh_exposition::gpus(&mut reg, &snapshot, &shared.topology.planned_vram());
    let reports = shared.registry().container_reports(None);
    mesh_exposition::containers(&mut reg, &reports);
    mesh_exposition::services(
        &mut reg,
        &shared
            .topology
            .status(&crate::state::topology_state::usable_reports(reports)),
    );
    failover(&mut reg, shared);
    volumes(&mut reg, shared);
    let traffic = shared.traffic.all();
    mesh_exposition::bridges(&mut reg, &traffic);
    mesh_exposition::usage(&mut reg, &traffic);
    let m = &shared.metrics;
    counter(
        &mut reg,
        "mesh_heartbeats_received",
        "Heartbeats the coordinator received from agents",
        m.heartbeats(),
    );
    let by_reason = |reg: &mut Registry,
                     name: &str,
                     help: &str,
                     counts: std::collections::BTreeMap<&'static str, u64>| {
        let f = counters::<ReasonLabels>(reg, name, help);
        for (reason, n) in counts {
            f.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(n);
        }
    };
    by_reason(
        &mut reg,
        "mesh_refused_connections",
        "TLS connections refused, by reason (unknown_ca, expired, no_certificate, bad_certificate, timeout, handshake)",
        m.connections_refused_by_reason(),
    );
    by_reason(
        &mut reg,
        "mesh_refused_calls",
        "Calls refused, by reason (no_identity, wrong_mesh, wrong_role, wrong_name, protocol)",
        m.calls_refused_by_reason(),
    );
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

fn nodes(reg: &mut Registry, shared: &Shared, snapshot: &[mesh_proto::v1::Node]) {
    let silences = shared.registry().silences(Instant::now());
    let facts: Vec<mesh_exposition::NodeFacts<'_>> = snapshot
        .iter()
        .map(|n| mesh_exposition::NodeFacts {
            name: &n.name,
            state: Some(n.state()),
            heartbeat_age: silences.get(&n.name).copied(),
            inventory: n.inventory.as_ref(),
        })
        .collect();
    mesh_exposition::nodes(reg, &facts);
}

fn failover(reg: &mut Registry, shared: &Shared) {
    let epoch = gauges::<GroupLabels>(reg, "mesh_failover_epoch", "The failover group's epoch");
    let lease = gauges::<GroupLabels>(
        reg,
        "mesh_failover_lease_remaining_seconds",
        "The primary's lease left, as the coordinator counts it",
    );
    let last = gauges::<GroupLabels>(
        reg,
        "mesh_failover_last_duration_seconds",
        "The last failover or switchover, from its start to healthy and re-pointed",
    );
    let total = counters::<CauseLabels>(
        reg,
        "mesh_failovers",
        "Failovers and switchovers by cause, since the coordinator started",
    );
    let records = shared.volumes.records();
    let (defs, _) = shared.topology.volume_view();
    let silence = shared.registry().silences(Instant::now());
    for r in records.values().filter(|r| r.replicate) {
        let g = GroupLabels {
            group: r.group.clone(),
        };
        let e = epoch.get_or_create(&g);
        e.set(e.get().max(r.epoch as f64));
        if let (Some(d), Some(s)) = (
            defs.iter().find(|d| d.group == r.group),
            silence.get(&r.primary),
        ) {
            lease
                .get_or_create(&g)
                .set(d.lease.saturating_sub(*s).as_secs_f64());
        }
    }
    let now = Instant::now();
    for (group, t) in shared.failover.last() {
        let p = t.to_proto(now);
        if p.done {
            last.get_or_create(&GroupLabels {
                group: group.clone(),
            })
            .set(p.total_ms as f64 / 1000.0);
        }
    }
    for ((group, cause), n) in shared.failover.counts() {
        total
            .get_or_create(&CauseLabels {
                group,
                cause: cause.to_string(),
            })
            .inc_by(n);
    }
}

fn volumes(reg: &mut Registry, shared: &Shared) {
    let lag = gauges::<VolumeLabels>(
        reg,
        "mesh_volume_lag_bytes",
        "Bytes the primary sent that the standby has not acknowledged",
    );
    let up = gauges::<VolumeLabels>(
        reg,
        "mesh_volume_standby_up_to_date",
        "1 when the standby is UpToDate and in sync, 0 otherwise",
    );
    let fsync = gauges::<VolumeLabels>(
        reg,
        "mesh_volume_last_fsync_seconds",
        "How long the primary's last fsync through the standby took",
    );
    let fsyncs = Family::<VolumeLabels, mesh_exposition::ReportedHistogram>::default();
    reg.register(
        "mesh_volume_fsync_seconds",
        "Round trips of the primary's fsyncs through the standby, since the volume was attached there",
        fsyncs.clone(),
    );
    let (defs, _) = shared.topology.volume_view();
    let reports = shared.volumes.reports();
    let rows = crate::rpc::volumes_api::rows(&defs, &shared.volumes.records(), &reports);
    for v in rows.iter().filter(|v| v.replicate && !v.primary.is_empty()) {
        if let Some(p) = reports
            .get(&v.primary)
            .and_then(|r| r.iter().find(|s| s.group == v.group && s.name == v.name))
        {
            fsyncs
                .get_or_create(&VolumeLabels {
                    group: v.group.clone(),
                    volume: v.name.clone(),
                })
                .set(
                    &p.fsync_bucket_le_us,
                    &p.fsync_bucket_counts,
                    p.fsync_count,
                    p.fsync_sum_us,
                );
        }
        let l = VolumeLabels {
            group: v.group.clone(),
            volume: v.name.clone(),
        };
        lag.get_or_create(&l).set(v.lag_bytes as f64);
        fsync
            .get_or_create(&l)
            .set(v.last_fsync_us as f64 / 1_000_000.0);
        let in_sync = v.standing() == mesh_proto::v1::ReplicationStanding::InSync
            && !v.standby_outdated
            && v.replicas
                .get(1)
                .is_some_and(|r| r.disk() == DiskState::UpToDate);
        up.get_or_create(&l).set(if in_sync { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::failover_phases::{Cause, Tracked};
    use crate::decide::volumes::VolumeRecord;

    #[test]
    fn the_exposition_is_openmetrics_with_units_and_totals() {
        let s = Shared::new("prod".into(), Default::default(), None).expect("shared");
        s.metrics.count_heartbeat();
        s.metrics.count_heartbeat();
        s.metrics.count_call_refused("wrong_role");
        s.volumes
            .save(vec![VolumeRecord {
                group: "memory".into(),
                name: "db".into(),
                replicate: true,
                primary: "pc2".into(),
                standby: "mainpc".into(),
                epoch: 3,
                ..Default::default()
            }])
            .expect("save");
        s.volumes.report(
            "pc2",
            vec![mesh_proto::v1::VolumeStatus {
                group: "memory".into(),
                name: "db".into(),
                fsync_bucket_le_us: vec![1000, 10_000],
                fsync_bucket_counts: vec![3, 1],
                fsync_count: 5,
                fsync_sum_us: 60_000,
                ..Default::default()
            }],
        );
        s.failover.track(
            "memory",
            Tracked::new(Cause::Switchover, "pc2", "mainpc", 4, Instant::now(), 0),
        );
        let text = render(&s).expect("render");
        for line in [
            "# TYPE mesh_heartbeats_received counter",
            "mesh_heartbeats_received_total 2",
            "mesh_refused_calls_total{reason=\"wrong_role\"} 1",
            "# TYPE mesh_failover_epoch gauge",
            "mesh_failover_epoch{group=\"memory\"} 3.0",
            "mesh_failovers_total{group=\"memory\",cause=\"switchover\"} 1",
            "# HELP mesh_failover_epoch The failover group's epoch.\n",
            "mesh_volume_fsync_seconds_count{group=\"memory\",volume=\"db\"} 5",
            "mesh_volume_fsync_seconds_bucket{le=\"0.001\",group=\"memory\",volume=\"db\"} 3",
            "mesh_volume_fsync_seconds_bucket{le=\"+Inf\",group=\"memory\",volume=\"db\"} 5",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        for name in sample_names(&text) {
            assert!(
                EXPORTED.contains(&name.as_str()),
                "{name} is not in EXPORTED"
            );
        }
        // A failover still under way has no duration yet.
        assert!(
            !text.contains("mesh_failover_last_duration_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn every_dashboard_expression_names_an_exported_metric() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let text = std::fs::read_to_string(dir.join("grafana/mesh-dashboard.json"))
            .expect("deploy/grafana/mesh-dashboard.json");
        let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let mut exprs = 0;
        for panel in d["panels"].as_array().expect("panels") {
            for t in panel["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr");
                exprs += 1;
                let mut named = 0;
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("mesh_") {
                        named += 1;
                        assert!(
                            EXPORTED.contains(&word),
                            "panel {:?}: {word} is not a metric the coordinator exports",
                            panel["title"]
                        );
                    }
                }
                assert!(named > 0, "{expr} names no mesh metric");
            }
        }
        assert!(exprs >= 10, "only {exprs} expressions");
        // The shipped scrape configuration points at the default address.
        let scrape = std::fs::read_to_string(dir.join("prometheus.yml")).expect("prometheus.yml");
        assert!(scrape.contains(&format!(
            "127.0.0.1:{}",
            crate::rpc::server::DEFAULT_METRICS_PORT
        )));
    }
}
