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
            registry: Mutex::new(Registry::new(policy)),
        })
    }

    /// The registry is only touched in short, non-async critical sections,
    /// so a poisoned lock (a panic while held) still holds consistent data.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
