//! `meshctl nodes` and `meshctl status`: the JSON schema (stable, versioned
//! by its `schema` field) and the readable tables.

use std::collections::BTreeMap;

use mesh_proto::v1::{self, GpuSource, NodeState};
use serde::Serialize;

use crate::table;

pub const NODES_SCHEMA: &str = "meshctl.nodes.v1";
pub const STATUS_SCHEMA: &str = "meshctl.status.v1";
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Serialize)]
pub struct NodesJson {
    pub schema: &'static str,
    pub now_unix_ms: i64,
    pub nodes: Vec<NodeJson>,
}

#[derive(Serialize)]
pub struct NodeJson {
    pub name: String,
    pub address: String,
    /// "ready" | "suspect" | "down" | "unknown"
    pub state: &'static str,
    pub state_since_unix_ms: i64,
    pub connected: bool,
    pub last_heartbeat_unix_ms: i64,
    pub last_heartbeat_age_ms: u64,
    pub heartbeat_interval_ms: u32,
    /// The longest gap between two heartbeats of the current session, as
    /// the coordinator received them, and how many it got.
    pub heartbeat_gap_max_us: u64,
    pub session_heartbeats: u64,
    /// The certificate the agent's stream uses: serial (hex), expiry and
    /// when the coordinator last issued it (0: issued offline).
    pub cert_serial: String,
    pub cert_not_after_unix: i64,
    pub cert_renewed_unix: i64,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub cpu: CpuJson,
    pub memory: MemoryJson,
    pub disk: Option<DiskJson>,
    pub uptime_seconds: u64,
    pub gpu: GpuJson,
    pub problems: Vec<String>,
    pub history: Vec<ChangeJson>,
}

#[derive(Serialize)]
pub struct CpuJson {
    pub count: u32,
    pub load_1m: f64,
    pub load_5m: f64,
    pub load_15m: f64,
}

#[derive(Serialize)]
pub struct MemoryJson {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Serialize)]
pub struct DiskJson {
    pub path: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct GpuJson {
    /// "nvml" (measured) | "declared" (from configuration) | "none"
    pub source: &'static str,
    pub nvml_unavailable: Option<String>,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    pub devices: Vec<GpuDeviceJson>,
}

#[derive(Serialize)]
pub struct GpuDeviceJson {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub memory_free_bytes: u64,
    pub utilization_percent: Option<u32>,
    pub temperature_celsius: Option<u32>,
    pub declared: bool,
}

#[derive(Serialize)]
pub struct ChangeJson {
    pub from: &'static str,
    pub to: &'static str,
    pub at_unix_ms: i64,
    pub reason: String,
}

fn state_label(raw: i32) -> &'static str {
    NodeState::try_from(raw)
        .unwrap_or(NodeState::Unspecified)
        .label()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn to_json(response: &v1::ListNodesResponse) -> NodesJson {
    NodesJson {
        schema: NODES_SCHEMA,
        now_unix_ms: response.now_unix_ms,
        nodes: response.nodes.iter().map(node_json).collect(),
    }
}

fn node_json(n: &v1::Node) -> NodeJson {
    let inv = n.inventory.clone().unwrap_or_default();
    let gpus = inv.gpus.clone().unwrap_or_default();
    NodeJson {
        name: n.name.clone(),
        address: n.address.clone(),
        state: state_label(n.state),
        state_since_unix_ms: n.state_since_unix_ms,
        connected: n.connected,
        last_heartbeat_unix_ms: n.last_heartbeat_unix_ms,
        last_heartbeat_age_ms: n.last_heartbeat_age_ms,
        heartbeat_interval_ms: n.heartbeat_interval_ms,
        heartbeat_gap_max_us: n.heartbeat_gap_max_us,
        session_heartbeats: n.session_heartbeats,
        cert_serial: n.cert_serial.clone(),
        cert_not_after_unix: n.cert_not_after_unix,
        cert_renewed_unix: n.cert_renewed_unix,
        agent_version: n.agent_version.clone(),
        labels: n.labels.clone().into_iter().collect(),
        cpu: CpuJson {
            count: inv.cpu_count,
            load_1m: inv.load_1m,
            load_5m: inv.load_5m,
            load_15m: inv.load_15m,
        },
        memory: MemoryJson {
            total_bytes: inv.memory_total_bytes,
            available_bytes: inv.memory_available_bytes,
        },
        disk: inv.disk.as_ref().map(|d| DiskJson {
            path: d.path.clone(),
            total_bytes: d.total_bytes,
            available_bytes: d.available_bytes,
            error: non_empty(&d.error),
        }),
        uptime_seconds: inv.uptime_seconds,
        gpu: GpuJson {
            source: match GpuSource::try_from(gpus.source) {
                Ok(GpuSource::Nvml) => "nvml",
                Ok(GpuSource::Declared) => "declared",
                _ => "none",
            },
            nvml_unavailable: non_empty(&gpus.nvml_unavailable),
            driver_version: non_empty(&gpus.driver_version),
            cuda_version: non_empty(&gpus.cuda_version),
            devices: gpus
                .gpus
                .iter()
                .map(|g| GpuDeviceJson {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    name: g.name.clone(),
                    memory_total_bytes: g.memory_total_bytes,
                    memory_used_bytes: g.memory_used_bytes,
                    memory_free_bytes: g.memory_free_bytes,
                    utilization_percent: g.utilization_percent,
                    temperature_celsius: g.temperature_celsius,
                    declared: g.declared,
                })
                .collect(),
        },
        problems: inv.problems.clone(),
        history: n
            .history
            .iter()
            .map(|c| ChangeJson {
                from: state_label(c.from),
                to: state_label(c.to),
                at_unix_ms: c.at_unix_ms,
                reason: c.reason.clone(),
            })
            .collect(),
    }
}

fn age(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

fn gpu_cell(g: &GpuJson) -> String {
    if g.devices.is_empty() {
        return match g.source {
            "none" if g.nvml_unavailable.is_some() => "none (no NVML)".into(),
            _ => "none".into(),
        };
    }
    g.devices
        .iter()
        .map(|d| {
            format!(
                "{} {:.1}/{:.1} GiB{}",
                d.name,
                d.memory_free_bytes as f64 / GIB,
                d.memory_total_bytes as f64 / GIB,
                if d.declared { " (declared)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn nodes_table(json: &NodesJson) -> String {
    let rows: Vec<Vec<String>> = json
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.address.clone(),
                if n.connected {
                    n.state.to_string()
                } else {
                    format!("{} (disconnected)", n.state)
                },
                age(n.last_heartbeat_age_ms),
                format!("{} (load {:.2})", n.cpu.count, n.cpu.load_1m),
                format!(
                    "{:.1}/{:.1} GiB",
                    n.memory.available_bytes as f64 / GIB,
                    n.memory.total_bytes as f64 / GIB
                ),
                gpu_cell(&n.gpu),
                cert_cell(n.cert_not_after_unix, json.now_unix_ms / 1000),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no nodes have registered yet\n".into();
    }
    table::render(
        &[
            "NAME",
            "ADDRESS",
            "STATE",
            "HEARTBEAT",
            "CPUS",
            "MEM FREE/TOTAL",
            "GPUS (FREE/TOTAL)",
            "CERT EXPIRES IN",
        ],
        &rows,
    )
}

/// Time left on a certificate ("-" when unknown).
fn cert_cell(not_after: i64, now: i64) -> String {
    if not_after == 0 {
        return "-".into();
    }
    let left = not_after - now;
    match left {
        l if l <= 0 => "expired".into(),
        l if l < 120 => format!("{l}s"),
        l if l < 7200 => format!("{}m", l / 60),
        l if l < 172_800 => format!("{}h", l / 3600),
        l => format!("{}d", l / 86_400),
    }
}

#[derive(Serialize)]
pub struct StatusJson {
    pub schema: &'static str,
    pub coordinator_version: String,
    pub mesh: String,
    pub uptime_seconds: u64,
    pub nodes: StatusCounts,
    pub agent_streams_open: u32,
    pub heartbeats_received: u64,
    pub connections_refused: u64,
    pub calls_refused: u64,
}

#[derive(Serialize)]
pub struct StatusCounts {
    pub ready: u32,
    pub suspect: u32,
    pub down: u32,
}

pub fn status_json(s: &v1::GetStatusResponse) -> StatusJson {
    StatusJson {
        schema: STATUS_SCHEMA,
        coordinator_version: s.coordinator_version.clone(),
        mesh: s.mesh.clone(),
        uptime_seconds: s.uptime_seconds,
        nodes: StatusCounts {
            ready: s.nodes_ready,
            suspect: s.nodes_suspect,
            down: s.nodes_down,
        },
        agent_streams_open: s.agent_streams_open,
        heartbeats_received: s.heartbeats_received,
        connections_refused: s.connections_refused,
        calls_refused: s.calls_refused,
    }
}

pub fn status_text(s: &StatusJson) -> String {
    format!(
        "mesh:          {}\ncoordinator:   v{} (up {}s)\nnodes:         {} ready, {} suspect, {} down\nagent streams: {}\nheartbeats:    {}\nrefused:       {} connections, {} calls\n",
        s.mesh,
        s.coordinator_version,
        s.uptime_seconds,
        s.nodes.ready,
        s.nodes.suspect,
        s.nodes.down,
        s.agent_streams_open,
        s.heartbeats_received,
        s.connections_refused,
        s.calls_refused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_cells() {
        let none = GpuJson {
            source: "none",
            nvml_unavailable: Some("no NVML: x".into()),
            driver_version: None,
            cuda_version: None,
            devices: vec![],
        };
        assert_eq!(gpu_cell(&none), "none (no NVML)");
        let declared = GpuJson {
            source: "declared",
            devices: vec![GpuDeviceJson {
                index: 0,
                uuid: "declared-0".into(),
                name: "RTX 4090".into(),
                memory_total_bytes: 24 << 30,
                memory_used_bytes: 0,
                memory_free_bytes: 24 << 30,
                utilization_percent: None,
                temperature_celsius: None,
                declared: true,
            }],
            ..none
        };
        assert_eq!(gpu_cell(&declared), "RTX 4090 24.0/24.0 GiB (declared)");
    }
}
