//! What the coordinator's services share: the registry, counters and facts
//! about this coordinator.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::desired::DesiredStore;
use crate::liveness::LivenessPolicy;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::sessions::Sessions;
use crate::store::Store;
use crate::topology_state::TopologyState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug)]
pub struct Shared {
    pub mesh: String,
    pub started: Instant,
    pub metrics: Metrics,
    pub desired: DesiredStore,
    pub sessions: Sessions,
    pub topology: TopologyState,
    directory: Mutex<mesh_proto::v1::Directory>,
    registry: Mutex<Registry>,
}

impl Shared {
    pub fn new(mesh: String, policy: LivenessPolicy, store: Option<Store>) -> Arc<Shared> {
        Arc::new(Shared {
            mesh,
            started: Instant::now(),
            metrics: Metrics::default(),
            desired: DesiredStore::default(),
            sessions: Sessions::default(),
            topology: TopologyState::new(store),
            directory: Mutex::new(mesh_proto::v1::Directory::default()),
            registry: Mutex::new(Registry::new(policy)),
        })
    }

    /// The bridge directory as last sent to agents.
    pub fn directory(&self) -> mesh_proto::v1::Directory {
        self.directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Recomputes the directory; when its content changed, numbers it and
    /// sends it to every connected agent.
    pub fn refresh_directory(&self) {
        let (defs, hosts, healthy) = self.topology.bridge_view();
        let peers = self.registry().tunnel_peers();
        let mut next = crate::directory::compute(&defs, &hosts, &healthy, &peers);
        let mut current = self.directory.lock().unwrap_or_else(|p| p.into_inner());
        if crate::directory::same(&current, &next) {
            return;
        }
        next.generation = current.generation + 1;
        *current = next.clone();
        drop(current);
        let sent = self
            .sessions
            .send_all(mesh_proto::v1::coordinator_message::Body::Directory(
                next.clone(),
            ));
        tracing::info!(
            generation = next.generation,
            bridges = next.bridges.len(),
            peers = next.peers.len(),
            sent,
            "bridge directory changed"
        );
    }

    /// The registry is only touched in short, non-async critical sections,
    /// so a poisoned lock (a panic while held) still holds consistent data.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
