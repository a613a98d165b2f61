//! Each agent's bridge endpoints, tunnels and containers' resource usage
//! as its latest heartbeat reported them: what `/metrics`, the dashboard
//! and `meshctl top` show of them. Replaced whole at each heartbeat
//! (state, not events).

use std::collections::BTreeMap;
use std::sync::Mutex;

pub use mesh_exposition::NodeTraffic;

#[derive(Debug, Default)]
pub struct Traffic {
    nodes: Mutex<BTreeMap<String, NodeTraffic>>,
}

impl Traffic {
    pub fn report(&self, node: &str, report: NodeTraffic) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_string(), report);
    }

    /// node -> its latest report, by node name.
    pub fn all(&self) -> BTreeMap<String, NodeTraffic> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
