//! What `/metrics` shows (issue #13, first part): the mesh as the
//! coordinator sees it, in the OpenMetrics text format, encoded by
//! `prometheus-client`. Built afresh from the shared state at each scrape,
//! so it is never stale and holds no series of a node or group that is
//! gone. Label values are node, group and volume names and a fixed set of
//! states and causes: bounded by the mesh's size.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use mesh_proto::v1::{DiskState, NodeState};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::registry::Now;
use crate::state::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStateLabels {
    node: String,
    state: String,
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

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every sample name `/metrics` can show (counters with their `_total`),
/// for the shipped dashboard's test and for people writing queries.
pub const EXPORTED: &[&str] = &[
    "mesh_node_state",
    "mesh_node_heartbeat_age_seconds",
    "mesh_node_load1",
    "mesh_node_memory_total_bytes",
    "mesh_node_memory_available_bytes",
    "mesh_node_disk_available_bytes",
    "mesh_heartbeats_received_total",
    "mesh_refused_connections_total",
    "mesh_refused_calls_total",
    "mesh_gpu_memory_total_bytes",
    "mesh_gpu_memory_used_bytes",
    "mesh_gpu_memory_free_bytes",
    "mesh_gpu_memory_planned_bytes",
    "mesh_service_phase",
    "mesh_gpu_utilization_ratio",
    "mesh_gpu_temperature_celsius",
    "mesh_container_running",
    "mesh_container_healthy",
    "mesh_container_last_exit_code",
    "mesh_container_restarts_total",
    "mesh_container_cpu_usage_ratio",
    "mesh_container_memory_bytes",
    "mesh_container_memory_limit_bytes",
    "mesh_container_pids",
    "mesh_container_gpu_memory_bytes",
    "mesh_container_block_read_bytes_total",
    "mesh_container_block_write_bytes_total",
    "mesh_container_network_receive_bytes_total",
    "mesh_container_network_transmit_bytes_total",
    "mesh_failover_epoch",
    "mesh_failover_lease_remaining_seconds",
    "mesh_failover_last_duration_seconds",
    "mesh_failovers_total",
    "mesh_volume_lag_bytes",
    "mesh_volume_standby_up_to_date",
    "mesh_volume_last_fsync_seconds",
    "mesh_bridge_messages_total",
    "mesh_bridge_bytes_total",
    "mesh_bridge_errors_total",
    "mesh_bridge_retries_total",
    "mesh_bridge_late_replies_total",
    "mesh_bridge_in_flight",
    "mesh_bridge_rtt_seconds_bucket",
    "mesh_bridge_rtt_seconds_sum",
    "mesh_bridge_rtt_seconds_count",
    "mesh_tunnel_rtt_seconds",
    "mesh_tunnel_up",
    "mesh_tunnel_reconnects_total",
];

/// The sample names in an exposition text.
pub fn sample_names(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

fn family<L>(reg: &mut Registry, name: &str, help: &str) -> Family<L, FloatGauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, FloatGauge>::default();
    reg.register(name, help, f.clone());
    f
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
    super::exposition_hosts::gpus(&mut reg, &snapshot, &shared.topology.planned_vram());
    let reports = shared.registry().container_reports(None);
    super::exposition_hosts::containers(&mut reg, &reports);
    super::exposition_hosts::services(
        &mut reg,
        &shared
            .topology
            .status(&crate::state::topology_state::usable_reports(reports)),
    );
    failover(&mut reg, shared);
    volumes(&mut reg, shared);
    let traffic = shared.traffic.all();
    super::exposition_bridges::bridges(&mut reg, &traffic);
    super::exposition_hosts::usage(&mut reg, &traffic);
    let m = &shared.metrics;
    counter(
        &mut reg,
        "mesh_heartbeats_received",
        "Heartbeats the coordinator received from agents",
        m.heartbeats(),
    );
    counter(
        &mut reg,
        "mesh_refused_connections",
        "Connections refused for their certificate",
        m.connections_refused(),
    );
    counter(
        &mut reg,
        "mesh_refused_calls",
        "Calls refused for the caller's role",
        m.calls_refused(),
    );
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

fn nodes(reg: &mut Registry, shared: &Shared, snapshot: &[mesh_proto::v1::Node]) {
    let state = family::<NodeStateLabels>(
        reg,
        "mesh_node_state",
        "1 for the node's current state (ready, suspect, down), 0 for the others",
    );
    let age = family::<NodeLabels>(
        reg,
        "mesh_node_heartbeat_age_seconds",
        "Time since the node's last heartbeat was received",
    );
    let load = family::<NodeLabels>(reg, "mesh_node_load1", "The host's 1-minute load average");
    let mem_total = family::<NodeLabels>(reg, "mesh_node_memory_total_bytes", "The host's memory");
    let mem_free = family::<NodeLabels>(
        reg,
        "mesh_node_memory_available_bytes",
        "The host's available memory",
    );
    let disk_free = family::<NodeLabels>(
        reg,
        "mesh_node_disk_available_bytes",
        "Free space where the host's container storage lives",
    );
    let silences = shared.registry().silences(Instant::now());
    for n in snapshot {
        let node = NodeLabels {
            node: n.name.clone(),
        };
        for s in [NodeState::Ready, NodeState::Suspect, NodeState::Down] {
            state
                .get_or_create(&NodeStateLabels {
                    node: n.name.clone(),
                    state: s.label().into(),
                })
                .set(if n.state() == s { 1.0 } else { 0.0 });
        }
        if let Some(s) = silences.get(&n.name) {
            age.get_or_create(&node).set(s.as_secs_f64());
        }
        if let Some(inv) = &n.inventory {
            load.get_or_create(&node).set(inv.load_1m);
            mem_total
                .get_or_create(&node)
                .set(inv.memory_total_bytes as f64);
            mem_free
                .get_or_create(&node)
                .set(inv.memory_available_bytes as f64);
            if let Some(d) = &inv.disk {
                disk_free.get_or_create(&node).set(d.available_bytes as f64);
            }
        }
    }
}

fn failover(reg: &mut Registry, shared: &Shared) {
    let epoch = family::<GroupLabels>(reg, "mesh_failover_epoch", "The failover group's epoch");
    let lease = family::<GroupLabels>(
        reg,
        "mesh_failover_lease_remaining_seconds",
        "The primary's lease left, as the coordinator counts it",
    );
    let last = family::<GroupLabels>(
        reg,
        "mesh_failover_last_duration_seconds",
        "The last failover or switchover, from its start to healthy and re-pointed",
    );
    let total = Family::<CauseLabels, Counter>::default();
    reg.register(
        "mesh_failovers",
        "Failovers and switchovers by cause, since the coordinator started",
        total.clone(),
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
    let lag = family::<VolumeLabels>(
        reg,
        "mesh_volume_lag_bytes",
        "Bytes the primary sent that the standby has not acknowledged",
    );
    let up = family::<VolumeLabels>(
        reg,
        "mesh_volume_standby_up_to_date",
        "1 when the standby is UpToDate and in sync, 0 otherwise",
    );
    let fsync = family::<VolumeLabels>(
        reg,
        "mesh_volume_last_fsync_seconds",
        "How long the primary's last fsync through the standby took",
    );
    let (defs, _) = shared.topology.volume_view();
    let rows =
        crate::rpc::volumes_api::rows(&defs, &shared.volumes.records(), &shared.volumes.reports());
    for v in rows.iter().filter(|v| v.replicate && !v.primary.is_empty()) {
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
        s.failover.track(
            "memory",
            Tracked::new(Cause::Switchover, "pc2", "mainpc", 4, Instant::now(), 0),
        );
        let text = render(&s).expect("render");
        for line in [
            "# TYPE mesh_heartbeats_received counter",
            "mesh_heartbeats_received_total 2",
            "mesh_refused_connections_total 0",
            "# TYPE mesh_failover_epoch gauge",
            "mesh_failover_epoch{group=\"memory\"} 3.0",
            "mesh_failovers_total{group=\"memory\",cause=\"switchover\"} 1",
            "# HELP mesh_failover_epoch The failover group's epoch.\n",
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
