//! What the web dashboard shows, as one JSON document built from the
//! shared state: hosts with state and heartbeat age, GPUs with planned,
//! used and free VRAM, groups and services with health and rollout phase,
//! bridges with traffic and round trips, failover groups with primary,
//! standby, epoch and replication, and the newest events. The same sources
//! as `/metrics` and `meshctl`, so the three never disagree.

use std::collections::BTreeMap;
use std::time::Instant;

use mesh_proto::v1::{ContainerState, HealthState, ListEventsRequest, NodeState, ServicePhase};
use serde::Serialize;

use crate::state::registry::Now;
use crate::state::Shared;

/// Events the dashboard's feed shows.
pub const FEED_LEN: u32 = 30;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct View {
    pub mesh: String,
    pub hosts: Vec<Host>,
    pub groups: Vec<Group>,
    pub bridges: Vec<Bridge>,
    pub failover: Vec<FailoverGroup>,
    pub events: Vec<Event>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Host {
    pub name: String,
    pub address: String,
    /// ready, suspect, down
    pub state: String,
    /// Tenths of a second since the last heartbeat (rounded so an idle
    /// mesh's view does not change at every tick).
    pub heartbeat_age_ds: u64,
    pub connected: bool,
    pub load1: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_available_bytes: u64,
    pub gpus: Vec<Gpu>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    /// measured (NVML) or declared (the agent's configuration)
    pub source: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub planned_bytes: u64,
    pub utilization_percent: Option<u32>,
    pub temperature_celsius: Option<u32>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Group {
    pub name: String,
    /// Where it is placed; empty: not placed.
    pub host: String,
    pub healthy: bool,
    pub services: Vec<Service>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Service {
    pub name: String,
    pub host: String,
    /// The rollout phase: waiting, starting, healthy, failed, blocked.
    pub phase: String,
    pub state: String,
    pub health: String,
    pub restarts: u32,
    pub message: String,
    /// Its container's usage as last sampled (none while not running).
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub gpu_memory_bytes: Option<u64>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Bridge {
    pub service: String,
    /// Where the service runs now; empty: nowhere.
    pub host: String,
    pub port: u32,
    pub healthy: bool,
    pub epoch: u64,
    /// Each host's endpoint that carried traffic.
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Endpoint {
    pub node: String,
    pub msgs_out: u64,
    pub msgs_in: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub errors: u64,
    pub in_flight: u64,
    pub rtt_mean_us: u64,
    pub rtt_max_us: u64,
    /// The tunnel's round trip from this node to the service's host.
    pub tunnel_rtt_us: Option<u64>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct FailoverGroup {
    pub group: String,
    pub volume: String,
    pub primary: String,
    pub standby: String,
    pub epoch: u64,
    /// in sync, catching up, disconnected, ... (the replication standing)
    pub replication: String,
    pub standby_disk: String,
    pub lag_bytes: u64,
    pub lease_remaining_ms: Option<u64>,
    pub problem: String,
    pub last_failover: String,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub at_unix_ms: i64,
    pub kind: String,
    pub node: String,
    pub group: String,
    pub message: String,
}

/// The view now.
pub fn view(shared: &Shared) -> View {
    let nodes = shared.registry().snapshot(Now::system());
    let silences = shared.registry().silences(Instant::now());
    let planned = shared.topology.planned_vram();
    let hosts = nodes
        .iter()
        .map(|n| {
            let inv = n.inventory.clone().unwrap_or_default();
            let gpus = inv
                .gpus
                .as_ref()
                .map(|r| {
                    r.gpus
                        .iter()
                        .map(|g| Gpu {
                            index: g.index,
                            name: g.name.clone(),
                            source: if g.declared { "declared" } else { "measured" }.into(),
                            total_bytes: g.memory_total_bytes,
                            used_bytes: g.memory_used_bytes,
                            free_bytes: g.memory_free_bytes,
                            planned_bytes: planned
                                .get(&(n.name.clone(), g.index as usize))
                                .map_or(0, |mib| mib << 20),
                            utilization_percent: g.utilization_percent,
                            temperature_celsius: g.temperature_celsius,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Host {
                name: n.name.clone(),
                address: n.address.clone(),
                state: n.state().label().into(),
                heartbeat_age_ds: silences
                    .get(&n.name)
                    .map_or(0, |s| (s.as_millis() / 100) as u64),
                connected: n.connected,
                load1: (inv.load_1m * 100.0).round() / 100.0,
                memory_total_bytes: inv.memory_total_bytes,
                memory_available_bytes: inv.memory_available_bytes,
                disk_available_bytes: inv.disk.map_or(0, |d| d.available_bytes),
                gpus,
            }
        })
        .collect();
    View {
        mesh: shared.mesh.clone(),
        hosts,
        groups: groups(shared),
        bridges: bridges(shared),
        failover: failover(shared),
        events: events(shared),
    }
}

fn groups(shared: &Shared) -> Vec<Group> {
    let reports = shared.registry().container_reports(None);
    // (host, service) -> restarts, from the agents' reports.
    let restarts: BTreeMap<(String, String), u32> = reports
        .iter()
        .filter_map(|(node, r)| r.as_ref().map(|r| (node, r)))
        .flat_map(|(node, r)| {
            r.containers
                .iter()
                .map(move |c| ((node.clone(), c.service.clone()), c.restart_count))
        })
        .collect();
    let status = shared
        .topology
        .status(&crate::state::topology_state::usable_reports(reports));
    // (host, service) -> usage.
    let usage: BTreeMap<(String, String), mesh_proto::v1::ContainerUsage> = shared
        .traffic
        .all()
        .into_iter()
        .flat_map(|(node, t)| {
            t.usage
                .into_iter()
                .map(move |u| ((node.clone(), u.service.clone()), u))
        })
        .collect();
    status
        .groups
        .into_iter()
        .map(|g| Group {
            services: g
                .services
                .iter()
                .map(|s| {
                    let u = usage.get(&(s.host.clone(), s.service.clone()));
                    Service {
                        cpu_percent: u.map(|u| (u.cpu_percent * 10.0).round() / 10.0),
                        // Whole MiB: the view changes when the figure does.
                        memory_bytes: u.map(|u| u.memory_bytes >> 20 << 20),
                        gpu_memory_bytes: u.map(|u| u.gpu_memory_bytes >> 20 << 20),
                        name: s.service.clone(),
                        host: s.host.clone(),
                        phase: ServicePhase::try_from(s.phase)
                            .unwrap_or(ServicePhase::Unspecified)
                            .label()
                            .into(),
                        state: ContainerState::try_from(s.state)
                            .unwrap_or(ContainerState::Unspecified)
                            .label()
                            .into(),
                        health: HealthState::try_from(s.health)
                            .unwrap_or(HealthState::Unspecified)
                            .label()
                            .into(),
                        restarts: restarts
                            .get(&(s.host.clone(), s.service.clone()))
                            .copied()
                            .unwrap_or(0),
                        message: s.message.clone(),
                    }
                })
                .collect(),
            name: g.group,
            host: g.host,
            healthy: g.healthy,
        })
        .collect()
}

fn bridges(shared: &Shared) -> Vec<Bridge> {
    let traffic = shared.traffic.all();
    shared
        .directory()
        .bridges
        .into_iter()
        .map(|b| {
            let endpoints = traffic
                .iter()
                .filter_map(|(node, t)| {
                    let c = t
                        .bridges
                        .iter()
                        .find(|s| s.service == b.service)?
                        .counters
                        .clone()?;
                    let tunnel_rtt_us = t
                        .tunnels
                        .iter()
                        .find(|x| x.peer == b.host)
                        .and_then(|x| x.rtt_us);
                    Some(Endpoint {
                        node: node.clone(),
                        msgs_out: c.msgs_out,
                        msgs_in: c.msgs_in,
                        bytes_out: c.bytes_out,
                        bytes_in: c.bytes_in,
                        errors: c.errors,
                        in_flight: c.in_flight,
                        rtt_mean_us: c.rtt_mean_us,
                        rtt_max_us: c.rtt_max_us,
                        // QUIC's estimate moves by microseconds at every
                        // beat; tens of microseconds are plenty here.
                        tunnel_rtt_us: tunnel_rtt_us.map(|us| us / 10 * 10),
                    })
                })
                .collect();
            Bridge {
                service: b.service,
                host: b.host,
                port: b.port,
                healthy: b.healthy,
                epoch: b.epoch,
                endpoints,
            }
        })
        .collect()
}

fn failover(shared: &Shared) -> Vec<FailoverGroup> {
    crate::rpc::volumes_api::live_rows(shared)
        .into_iter()
        .filter(|v| v.replicate)
        .map(|v| FailoverGroup {
            replication: v.standing().label().into(),
            standby_disk: v.replicas.get(1).map(|r| r.disk_text()).unwrap_or_default(),
            group: v.group,
            volume: v.name,
            primary: v.primary,
            standby: v.standby,
            epoch: v.epoch,
            lag_bytes: v.lag_bytes,
            // Whole tenths of a second, like the heartbeat age.
            lease_remaining_ms: v.lease_remaining_ms.map(|ms| ms / 100 * 100),
            problem: v.problem,
            last_failover: v.last_failover,
        })
        .collect()
}

fn events(shared: &Shared) -> Vec<Event> {
    let q = ListEventsRequest {
        limit: FEED_LEN,
        ..Default::default()
    };
    let mut events: Vec<Event> = shared
        .events
        .list(&q)
        .unwrap_or_default()
        .into_iter()
        .map(|e| Event {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            kind: e.kind,
            node: e.node,
            group: e.group,
            message: e.message,
        })
        .collect();
    // Newest first, as a feed reads.
    events.sort_by_key(|e| std::cmp::Reverse(e.seq));
    events
}

/// Whether a node state counts as lost for the page's styling.
pub fn is_lost(state: &str) -> bool {
    state == NodeState::Suspect.label() || state == NodeState::Down.label()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::registry::Registration;
    use std::time::Duration;

    #[test]
    fn the_view_has_hosts_failover_groups_and_the_feed() {
        let s = Shared::new("prod".into(), Default::default(), None).expect("shared");
        s.registry().register(
            Registration {
                node: "pc2".into(),
                labels: Default::default(),
                agent_version: "test".into(),
                address: "10.0.0.2:7001".into(),
                heartbeat_interval: Duration::from_millis(500),
                tunnel_port: 0,
            },
            Now::system(),
        );
        s.volumes
            .save(vec![crate::decide::volumes::VolumeRecord {
                group: "memory".into(),
                name: "db".into(),
                replicate: true,
                primary: "pc2".into(),
                standby: "pc3".into(),
                epoch: 4,
                ..Default::default()
            }])
            .expect("save");
        s.events.record("node", "pc2", "", "pc2: ready".into());
        s.events.record("node", "pc3", "", "pc3: down".into());
        let v = view(&s);
        assert_eq!(v.mesh, "prod");
        assert_eq!(v.hosts.len(), 1);
        assert_eq!(
            (v.hosts[0].name.as_str(), v.hosts[0].state.as_str()),
            ("pc2", "ready")
        );
        assert_eq!(v.failover.len(), 1);
        assert_eq!(
            (v.failover[0].primary.as_str(), v.failover[0].epoch),
            ("pc2", 4)
        );
        let feed: Vec<&str> = v.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(feed, ["pc3: down", "pc2: ready"], "newest first");
        // The same state gives the same view: the stream sends only changes.
        assert_eq!(view(&s), v);
        assert!(is_lost("down") && is_lost("suspect") && !is_lost("ready"));
    }
}
