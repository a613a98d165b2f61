//! Each agent's bridge endpoints and tunnels as its latest heartbeat
//! reported them: what `/metrics` and the dashboard show of bridges.
//! Replaced whole at each heartbeat (state, not events).

use std::collections::BTreeMap;
use std::sync::Mutex;

use mesh_proto::v1::{BridgeStat, TunnelStat};

/// One node's latest bridge and tunnel report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTraffic {
    pub bridges: Vec<BridgeStat>,
    pub tunnels: Vec<TunnelStat>,
}

#[derive(Debug, Default)]
pub struct Traffic {
    nodes: Mutex<BTreeMap<String, NodeTraffic>>,
}

impl Traffic {
    pub fn report(&self, node: &str, bridges: Vec<BridgeStat>, tunnels: Vec<TunnelStat>) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), NodeTraffic { bridges, tunnels });
    }

    /// node -> its latest report, by node name.
    pub fn all(&self) -> BTreeMap<String, NodeTraffic> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
