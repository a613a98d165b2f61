//! Hosts, GPUs, containers (with their resource usage) and services'
//! rollout phases, from agents' inventories and container reports.

use mesh_proto::v1::{ContainerState, HealthState, Node};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::registry::Registry;

use crate::{counters, gauges, NodeTraffic};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuLabels {
    node: String,
    index: String,
    uuid: String,
    name: String,
    /// "measured" (NVML) or "declared" (the agent's configuration).
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    node: String,
    container: String,
    group: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStateLabels {
    node: String,
    state: String,
}

/// What is known of one node: its state and heartbeat age (the
/// coordinator's view; an agent reporting itself has neither) and its
/// latest inventory.
#[derive(Clone, Copy, Debug)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub state: Option<mesh_proto::v1::NodeState>,
    pub heartbeat_age: Option<std::time::Duration>,
    pub inventory: Option<&'a mesh_proto::v1::HostInventory>,
}

/// Each node's state, heartbeat age, load, memory and disk.
pub fn nodes(reg: &mut Registry, nodes: &[NodeFacts<'_>]) {
    use mesh_proto::v1::NodeState;
    let state = gauges::<NodeStateLabels>(
        reg,
        "mesh_node_state",
        "1 for the node's current state (ready, suspect, down), 0 for the others",
    );
    let age = gauges::<NodeLabels>(
        reg,
        "mesh_node_heartbeat_age_seconds",
        "Time since the node's last heartbeat was received",
    );
    let load = gauges::<NodeLabels>(reg, "mesh_node_load1", "The host's 1-minute load average");
    let mem_total = gauges::<NodeLabels>(reg, "mesh_node_memory_total_bytes", "The host's memory");
    let mem_free = gauges::<NodeLabels>(
        reg,
        "mesh_node_memory_available_bytes",
        "The host's available memory",
    );
    let disk_free = gauges::<NodeLabels>(
        reg,
        "mesh_node_disk_available_bytes",
        "Free space where the host's container storage lives",
    );
    for n in nodes {
        let node = NodeLabels {
            node: n.name.to_string(),
        };
        if let Some(now) = n.state {
            for s in [NodeState::Ready, NodeState::Suspect, NodeState::Down] {
                state
                    .get_or_create(&NodeStateLabels {
                        node: n.name.to_string(),
                        state: s.label().into(),
                    })
                    .set(if now == s { 1.0 } else { 0.0 });
            }
        }
        if let Some(a) = n.heartbeat_age {
            age.get_or_create(&node).set(a.as_secs_f64());
        }
        if let Some(inv) = n.inventory {
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

/// Every GPU of every node: memory (and what the placement plans on it,
/// from `planned`: (node, index) -> MiB), utilisation, temperature.
pub fn gpus(
    reg: &mut Registry,
    nodes: &[Node],
    planned: &std::collections::BTreeMap<(String, usize), u64>,
) {
    let total = gauges::<GpuLabels>(reg, "mesh_gpu_memory_total_bytes", "The GPU's memory");
    let used = gauges::<GpuLabels>(reg, "mesh_gpu_memory_used_bytes", "GPU memory in use");
    let free = gauges::<GpuLabels>(reg, "mesh_gpu_memory_free_bytes", "GPU memory free");
    let plan = gauges::<GpuLabels>(
        reg,
        "mesh_gpu_memory_planned_bytes",
        "GPU memory the applied placement plans for the services placed on it",
    );
    let util = gauges::<GpuLabels>(
        reg,
        "mesh_gpu_utilization_ratio",
        "The GPU's utilisation, 0 to 1 (measured GPUs only)",
    );
    let temp = gauges::<GpuLabels>(
        reg,
        "mesh_gpu_temperature_celsius",
        "The GPU's temperature (measured GPUs only)",
    );
    for n in nodes {
        let Some(report) = n.inventory.as_ref().and_then(|i| i.gpus.as_ref()) else {
            continue;
        };
        for g in &report.gpus {
            let l = GpuLabels {
                node: n.name.clone(),
                index: g.index.to_string(),
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                source: if g.declared { "declared" } else { "measured" }.into(),
            };
            total.get_or_create(&l).set(g.memory_total_bytes as f64);
            used.get_or_create(&l).set(g.memory_used_bytes as f64);
            free.get_or_create(&l).set(g.memory_free_bytes as f64);
            let mib = planned
                .get(&(n.name.clone(), g.index as usize))
                .copied()
                .unwrap_or(0);
            plan.get_or_create(&l).set((mib << 20) as f64);
            if let Some(u) = g.utilization_percent {
                util.get_or_create(&l).set(f64::from(u) / 100.0);
            }
            if let Some(t) = g.temperature_celsius {
                temp.get_or_create(&l).set(f64::from(t));
            }
        }
    }
}

/// Each container's resource usage as its agent last sampled it (Podman's
/// stats; GPU memory from NVML per process). Usage is sampled, so the
/// I/O totals are counters of the container's life, reset when it is
/// recreated.
pub fn usage(reg: &mut Registry, traffic: &std::collections::BTreeMap<String, NodeTraffic>) {
    let cpu = gauges::<ContainerLabels>(
        reg,
        "mesh_container_cpu_usage_ratio",
        "CPU the container uses, in CPUs (1.0: one full CPU)",
    );
    let mem = gauges::<ContainerLabels>(
        reg,
        "mesh_container_memory_bytes",
        "Memory the container uses",
    );
    let limit = gauges::<ContainerLabels>(
        reg,
        "mesh_container_memory_limit_bytes",
        "The container's memory limit (the host's memory without one)",
    );
    let pids = gauges::<ContainerLabels>(reg, "mesh_container_pids", "Processes in the container");
    let gpu = gauges::<ContainerLabels>(
        reg,
        "mesh_container_gpu_memory_bytes",
        "GPU memory the container's processes use (NVML per-process accounting)",
    );
    let io = counters::<ContainerLabels>;
    let block_read = io(
        reg,
        "mesh_container_block_read_bytes",
        "Bytes the container read from block devices",
    );
    let block_write = io(
        reg,
        "mesh_container_block_write_bytes",
        "Bytes the container wrote to block devices",
    );
    let net_rx = io(
        reg,
        "mesh_container_network_receive_bytes",
        "Bytes the container received over the network",
    );
    let net_tx = io(
        reg,
        "mesh_container_network_transmit_bytes",
        "Bytes the container sent over the network",
    );
    for (node, t) in traffic {
        for u in &t.usage {
            let l = ContainerLabels {
                node: node.clone(),
                container: u.name.clone(),
                group: u.group.clone(),
                service: u.service.clone(),
            };
            cpu.get_or_create(&l).set(u.cpu_percent / 100.0);
            mem.get_or_create(&l).set(u.memory_bytes as f64);
            limit.get_or_create(&l).set(u.memory_limit_bytes as f64);
            pids.get_or_create(&l).set(u.pids as f64);
            gpu.get_or_create(&l).set(u.gpu_memory_bytes as f64);
            block_read.get_or_create(&l).inc_by(u.block_read_bytes);
            block_write.get_or_create(&l).inc_by(u.block_write_bytes);
            net_rx.get_or_create(&l).inc_by(u.net_rx_bytes);
            net_tx.get_or_create(&l).inc_by(u.net_tx_bytes);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    group: String,
    service: String,
    phase: String,
}

/// Each service of the applied topology: 1 for its rollout phase
/// (waiting, starting, healthy, failed, blocked), 0 for the others.
pub fn services(reg: &mut Registry, status: &mesh_proto::v1::TopologyStatus) {
    use mesh_proto::v1::ServicePhase;
    let phase = gauges::<PhaseLabels>(
        reg,
        "mesh_service_phase",
        "1 for the service's rollout phase (waiting, starting, healthy, failed, blocked), 0 for the others",
    );
    for g in &status.groups {
        for svc in &g.services {
            let now = ServicePhase::try_from(svc.phase).unwrap_or(ServicePhase::Unspecified);
            for p in [
                ServicePhase::Waiting,
                ServicePhase::Starting,
                ServicePhase::Healthy,
                ServicePhase::Failed,
                ServicePhase::Blocked,
            ] {
                phase
                    .get_or_create(&PhaseLabels {
                        group: g.group.clone(),
                        service: svc.service.clone(),
                        phase: p.label().into(),
                    })
                    .set(if now == p { 1.0 } else { 0.0 });
            }
        }
    }
}

/// Every container the agents report: running, healthy, restarts, last
/// exit code.
pub fn containers(
    reg: &mut Registry,
    reports: &[(String, Option<mesh_proto::v1::ContainerReport>)],
) {
    let running = gauges::<ContainerLabels>(
        reg,
        "mesh_container_running",
        "1 when the container is running, 0 otherwise",
    );
    let healthy = gauges::<ContainerLabels>(
        reg,
        "mesh_container_healthy",
        "1 when the container's health check passes, 0 otherwise",
    );
    let exit = gauges::<ContainerLabels>(
        reg,
        "mesh_container_last_exit_code",
        "The container's last exit code",
    );
    let restarts = counters::<ContainerLabels>(
        reg,
        "mesh_container_restarts",
        "Restarts of the container by its agent",
    );
    for (node, report) in reports {
        let Some(report) = report else { continue };
        for c in &report.containers {
            let l = ContainerLabels {
                node: node.clone(),
                container: c.name.clone(),
                group: c.group.clone(),
                service: c.service.clone(),
            };
            let is = |b: bool| if b { 1.0 } else { 0.0 };
            running
                .get_or_create(&l)
                .set(is(c.state() == ContainerState::Running));
            healthy
                .get_or_create(&l)
                .set(is(c.health() == HealthState::Healthy));
            if let Some(code) = c.last_exit_code {
                exit.get_or_create(&l).set(code as f64);
            }
            restarts
                .get_or_create(&l)
                .inc_by(u64::from(c.restart_count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::v1::{ContainerReport, ContainerStatus, Gpu, GpuReport, HostInventory};
    use prometheus_client::encoding::text::encode;

    #[test]
    fn gpus_and_containers_carry_their_labels() {
        let node = Node {
            name: "pc2".into(),
            inventory: Some(HostInventory {
                gpus: Some(GpuReport {
                    gpus: vec![Gpu {
                        index: 0,
                        uuid: "GPU-1".into(),
                        name: "RTX 3060".into(),
                        memory_total_bytes: 12 << 30,
                        memory_used_bytes: 2 << 30,
                        memory_free_bytes: 10 << 30,
                        utilization_percent: Some(40),
                        temperature_celsius: Some(55),
                        declared: false,
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let report = ContainerReport {
            runtime_available: true,
            containers: vec![ContainerStatus {
                name: "memory-db".into(),
                group: "memory".into(),
                service: "memory-db".into(),
                state: ContainerState::Running as i32,
                health: HealthState::Healthy as i32,
                restart_count: 3,
                last_exit_code: Some(137),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut reg = Registry::default();
        gpus(&mut reg, &[node], &[(("pc2".to_string(), 0), 3000)].into());
        services(
            &mut reg,
            &mesh_proto::v1::TopologyStatus {
                groups: vec![mesh_proto::v1::GroupStatus {
                    group: "memory".into(),
                    services: vec![mesh_proto::v1::ServiceStatus {
                        service: "memory-db".into(),
                        phase: mesh_proto::v1::ServicePhase::Starting as i32,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        containers(
            &mut reg,
            &[("pc2".into(), Some(report)), ("pc3".into(), None)],
        );
        let mut traffic = std::collections::BTreeMap::new();
        traffic.insert(
            "pc2".to_string(),
            crate::NodeTraffic {
                usage: vec![mesh_proto::v1::ContainerUsage {
                    name: "memory-db".into(),
                    group: "memory".into(),
                    service: "memory-db".into(),
                    cpu_percent: 150.0,
                    memory_bytes: 1024,
                    net_rx_bytes: 77,
                    gpu_memory_bytes: 2048,
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        usage(&mut reg, &traffic);
        let mut text = String::new();
        encode(&mut text, &reg).expect("encode");
        let gpu = "node=\"pc2\",index=\"0\",uuid=\"GPU-1\",name=\"RTX 3060\",source=\"measured\"";
        let c = "node=\"pc2\",container=\"memory-db\",group=\"memory\",service=\"memory-db\"";
        for line in [
            format!("mesh_gpu_memory_total_bytes{{{gpu}}} 12884901888.0"),
            format!("mesh_gpu_utilization_ratio{{{gpu}}} 0.4"),
            format!("mesh_gpu_memory_planned_bytes{{{gpu}}} {}.0", 3000u64 << 20),
            "mesh_service_phase{group=\"memory\",service=\"memory-db\",phase=\"starting\"} 1.0"
                .to_string(),
            "mesh_service_phase{group=\"memory\",service=\"memory-db\",phase=\"healthy\"} 0.0"
                .to_string(),
            format!("mesh_gpu_temperature_celsius{{{gpu}}} 55.0"),
            format!("mesh_container_running{{{c}}} 1.0"),
            format!("mesh_container_healthy{{{c}}} 1.0"),
            format!("mesh_container_restarts_total{{{c}}} 3"),
            format!("mesh_container_last_exit_code{{{c}}} 137.0"),
            format!("mesh_container_cpu_usage_ratio{{{c}}} 1.5"),
            format!("mesh_container_memory_bytes{{{c}}} 1024.0"),
            format!("mesh_container_network_receive_bytes_total{{{c}}} 77"),
            format!("mesh_container_gpu_memory_bytes{{{c}}} 2048.0"),
        ] {
            assert!(text.contains(&line), "missing {line:?} in:\n{text}");
        }
        for name in crate::sample_names(&text) {
            assert!(
                crate::EXPORTED.contains(&name.as_str()),
                "{name} is not in EXPORTED"
            );
        }
    }
}
