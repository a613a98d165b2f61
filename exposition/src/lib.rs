//! The mesh's metrics that come from agents' reports, in the OpenMetrics
//! text format through `prometheus-client`: hosts (load, memory, disk),
//! GPUs (with the VRAM the placement plans), containers (state, health,
//! restarts, resource usage), services' rollout phases, bridges (traffic,
//! errors, a round-trip histogram) and tunnels. The coordinator's
//! `/metrics` shows them for every node; each agent's own `/metrics` for
//! its host, under the same names, so one dashboard reads both. Label
//! values are node, container, group, service and peer names: bounded by
//! the mesh's size.

pub mod bridges;
pub mod hosts;

use std::sync::atomic::AtomicU64;

use mesh_proto::v1::{BridgeStat, ContainerUsage, TunnelStat};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use bridges::{bridges, ReportedHistogram};
pub use hosts::{containers, gpus, nodes, services, usage, NodeFacts};

pub type FloatGauge = Gauge<f64, AtomicU64>;

/// One node's bridge endpoints, tunnels and containers' resource usage as
/// its agent last reported them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTraffic {
    pub bridges: Vec<BridgeStat>,
    pub tunnels: Vec<TunnelStat>,
    pub usage: Vec<ContainerUsage>,
}

/// A family of float gauges, registered.
pub fn gauges<L>(reg: &mut Registry, name: &str, help: &str) -> Family<L, FloatGauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, FloatGauge>::default();
    reg.register(name, help, f.clone());
    f
}

/// A family of counters, registered (its samples get `_total`).
pub fn counters<L>(reg: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

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
    "mesh_volume_fsync_seconds_bucket",
    "mesh_volume_fsync_seconds_sum",
    "mesh_volume_fsync_seconds_count",
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
