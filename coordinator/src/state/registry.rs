//! The live node inventory: who is registered, their last report, and the
//! liveness state machine. Every method takes `now`, so the whole thing is
//! tested without sockets or sleeps.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use mesh_proto::v1::{self, ContainerReport, HostInventory, NodeState, StateChange};

use crate::decide::liveness::{assess, missed_heartbeats, LivenessPolicy};

/// How many state changes each node keeps for `meshctl nodes`.
const HISTORY_LEN: usize = 16;
/// Agents may not choose a heartbeat interval outside these bounds.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// A point in time, monotonic for decisions and wall-clock for display.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: i64,
}

impl Now {
    pub fn system() -> Now {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Now {
            mono: Instant::now(),
            unix_ms,
        }
    }

    pub fn after(&self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            unix_ms: self.unix_ms + d.as_millis() as i64,
        }
    }
}

/// Identifies one agent stream; a reconnect gets a new one, so a stale
/// stream closing late cannot mark the fresh connection as gone.
pub type SessionId = u64;

#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub address: String,
    pub heartbeat_interval: Duration,
    /// UDP port of the agent's bridge tunnel endpoint; 0: none.
    pub tunnel_port: u16,
}

#[derive(Debug)]
struct NodeRecord {
    registration: Registration,
    session: Option<SessionId>,
    inventory: Option<HostInventory>,
    containers: Option<ContainerReport>,
    last_heartbeat: Instant,
    last_heartbeat_unix_ms: i64,
    /// This session's heartbeats and the longest gap between two of them.
    session_heartbeats: u64,
    heartbeat_gap_max: Duration,
    state: NodeState,
    state_since_unix_ms: i64,
    history: VecDeque<StateChange>,
}

impl NodeRecord {
    fn transition(&mut self, to: NodeState, now: Now, reason: String) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let change = StateChange {
            from: self.state as i32,
            to: to as i32,
            at_unix_ms: now.unix_ms,
            reason: reason.clone(),
        };
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        }
        self.history.push_back(change);
        let from = self.state;
        self.state = to;
        self.state_since_unix_ms = now.unix_ms;
        Some(Transition {
            node: self.registration.node.clone(),
            from,
            to,
            reason,
        })
    }
}

/// A state change, returned so the caller can log it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub node: String,
    pub from: NodeState,
    pub to: NodeState,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("heartbeat on a stream that is no longer current for node '{0}'; the agent reconnected elsewhere")]
    StaleSession(String),
}

#[derive(Debug, Default)]
pub struct Registry {
    policy: LivenessPolicy,
    nodes: HashMap<String, NodeRecord>,
    next_session: SessionId,
}

impl Registry {
    pub fn new(policy: LivenessPolicy) -> Registry {
        Registry {
            policy,
            nodes: HashMap::new(),
            next_session: 1,
        }
    }

    /// Records a (re)registration. A node that registers again replaces its
    /// earlier session; it is Ready at once because registering is proof of life.
    pub fn register(
        &mut self,
        mut registration: Registration,
        now: Now,
    ) -> (SessionId, Option<Transition>) {
        registration.heartbeat_interval = registration
            .heartbeat_interval
            .clamp(MIN_INTERVAL, MAX_INTERVAL);
        let session = self.next_session;
        self.next_session += 1;
        let name = registration.node.clone();
        let record = self.nodes.entry(name).or_insert_with(|| NodeRecord {
            registration: registration.clone(),
            session: None,
            inventory: None,
            containers: None,
            last_heartbeat: now.mono,
            last_heartbeat_unix_ms: now.unix_ms,
            session_heartbeats: 0,
            heartbeat_gap_max: Duration::ZERO,
            state: NodeState::Unspecified,
            state_since_unix_ms: now.unix_ms,
            history: VecDeque::new(),
        });
        record.registration = registration;
        record.session = Some(session);
        record.session_heartbeats = 0;
        record.heartbeat_gap_max = Duration::ZERO;
        record.last_heartbeat = now.mono;
        record.last_heartbeat_unix_ms = now.unix_ms;
        let transition = record.transition(NodeState::Ready, now, "agent registered".into());
        (session, transition)
    }

    /// Records a heartbeat from the current session of `node`.
    pub fn heartbeat(
        &mut self,
        node: &str,
        session: SessionId,
        inventory: Option<HostInventory>,
        containers: Option<ContainerReport>,
        now: Now,
    ) -> Result<Option<Transition>, RegistryError> {
        let record = match self.nodes.get_mut(node) {
            Some(r) if r.session == Some(session) => r,
            _ => return Err(RegistryError::StaleSession(node.to_string())),
        };
        // The gap from registration to the first heartbeat is not one.
        if record.session_heartbeats > 0 {
            let gap = now.mono.saturating_duration_since(record.last_heartbeat);
            record.heartbeat_gap_max = record.heartbeat_gap_max.max(gap);
        }
        record.session_heartbeats += 1;
        record.last_heartbeat = now.mono;
        record.last_heartbeat_unix_ms = now.unix_ms;
        if inventory.is_some() {
            record.inventory = inventory;
        }
        if containers.is_some() {
            record.containers = containers;
        }
        Ok(record.transition(NodeState::Ready, now, "heartbeats resumed".into()))
    }

    /// The stream of `session` ended. Liveness still follows heartbeats:
    /// a closed stream only marks the node disconnected.
    pub fn disconnect(&mut self, node: &str, session: SessionId) {
        if let Some(record) = self.nodes.get_mut(node) {
            if record.session == Some(session) {
                record.session = None;
            }
        }
    }

    /// Re-assesses every node against `now`; returns the changes.
    pub fn tick(&mut self, now: Now) -> Vec<Transition> {
        let policy = self.policy;
        let mut changes = Vec::new();
        for record in self.nodes.values_mut() {
            let silence = now.mono.saturating_duration_since(record.last_heartbeat);
            let interval = record.registration.heartbeat_interval;
            let target = assess(silence, interval, &policy);
            if target == NodeState::Ready {
                continue; // only heartbeats and registration bring a node back
            }
            let reason = format!(
                "no heartbeat for {:.1} s ({} missed at {} ms)",
                silence.as_secs_f64(),
                missed_heartbeats(silence, interval),
                interval.as_millis()
            );
            if let Some(t) = record.transition(target, now, reason) {
                changes.push(t);
            }
        }
        changes.sort_by(|a, b| a.node.cmp(&b.node));
        changes
    }

    pub fn counts(&self) -> (u32, u32, u32) {
        let mut counts = (0, 0, 0);
        for r in self.nodes.values() {
            match r.state {
                NodeState::Ready => counts.0 += 1,
                NodeState::Suspect => counts.1 += 1,
                NodeState::Down => counts.2 += 1,
                NodeState::Unspecified => {}
            }
        }
        counts
    }

    pub fn open_sessions(&self) -> u32 {
        self.nodes.values().filter(|r| r.session.is_some()).count() as u32
    }

    /// Each registered node's tunnel endpoint (`IP:PORT`), for bridges.
    pub fn tunnel_peers(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .filter(|(_, r)| r.registration.tunnel_port != 0)
            .filter_map(|(name, r)| {
                let ip = host_ip(&r.registration.address)?;
                Some((
                    name.clone(),
                    std::net::SocketAddr::new(ip, r.registration.tunnel_port).to_string(),
                ))
            })
            .collect()
    }

    /// Each registered node's address (IP), as its agent advertises it.
    pub fn addresses(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .filter_map(|(name, r)| {
                host_ip(&r.registration.address).map(|ip| (name.clone(), ip.to_string()))
            })
            .collect()
    }

    /// The last container report of each node (or of `only`), by name.
    pub fn container_reports(&self, only: Option<&str>) -> Vec<(String, Option<ContainerReport>)> {
        let mut out: Vec<(String, Option<ContainerReport>)> = self
            .nodes
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .map(|(name, r)| (name.clone(), r.containers.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// node -> the images it last reported, for nodes whose Podman answered then.
    pub fn held_images(&self) -> BTreeMap<String, Vec<v1::ImageSummary>> {
        self.nodes
            .iter()
            .filter_map(|(name, r)| {
                r.containers
                    .as_ref()
                    .filter(|c| c.runtime_available)
                    .map(|c| (name.clone(), c.images.clone()))
            })
            .collect()
    }

    /// node -> how long since its last heartbeat was received (monotonic).
    pub fn silences(&self, now: std::time::Instant) -> BTreeMap<String, Duration> {
        self.nodes
            .iter()
            .map(|(n, r)| (n.clone(), now.saturating_duration_since(r.last_heartbeat)))
            .collect()
    }

    /// Forgets `node` (it was removed from the mesh); whether it was known.
    pub fn remove(&mut self, node: &str) -> bool {
        self.nodes.remove(node).is_some()
    }

    pub fn is_known(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// All nodes, sorted by name, as the admin API shows them.
    pub fn snapshot(&self, now: Now) -> Vec<v1::Node> {
        let mut nodes: Vec<v1::Node> = self
            .nodes
            .values()
            .map(|r| v1::Node {
                name: r.registration.node.clone(),
                address: r.registration.address.clone(),
                state: r.state as i32,
                state_since_unix_ms: r.state_since_unix_ms,
                last_heartbeat_unix_ms: r.last_heartbeat_unix_ms,
                last_heartbeat_age_ms: now
                    .mono
                    .saturating_duration_since(r.last_heartbeat)
                    .as_millis() as u64,
                labels: r.registration.labels.clone().into_iter().collect(),
                agent_version: r.registration.agent_version.clone(),
                inventory: r.inventory.clone(),
                connected: r.session.is_some(),
                heartbeat_interval_ms: r.registration.heartbeat_interval.as_millis() as u32,
                history: r.history.iter().cloned().collect(),
                heartbeat_gap_max_us: r.heartbeat_gap_max.as_micros() as u64,
                session_heartbeats: r.session_heartbeats,
                ..Default::default()
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }
}

#[cfg(test)]
mod tests;

/// The IP in an advertised address ("10.0.0.2" or "10.0.0.2:7443").
pub fn host_ip(address: &str) -> Option<std::net::IpAddr> {
    address
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| address.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}
