//! The containers each node should run. In memory for now: placement
//! (next issue) persists the topology and re-derives these sets on start.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mesh_proto::v1::{ContainerSpec, DesiredContainers};

#[derive(Debug, Default)]
pub struct DesiredStore {
    sets: Mutex<BTreeMap<String, DesiredContainers>>,
}

/// The next generation: above the last one, and at least the wall clock in
/// milliseconds, so a restarted coordinator still outranks what agents
/// remember from before the restart.
pub fn next_generation(previous: u64, now_unix_ms: u64) -> u64 {
    (previous + 1).max(now_unix_ms)
}

impl DesiredStore {
    pub fn set(
        &self,
        node: &str,
        containers: Vec<ContainerSpec>,
        now_unix_ms: u64,
    ) -> DesiredContainers {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let previous = sets.get(node).map_or(0, |d| d.generation);
        let desired = DesiredContainers {
            generation: next_generation(previous, now_unix_ms),
            containers,
        };
        sets.insert(node.to_string(), desired.clone());
        desired
    }

    pub fn get(&self, node: &str) -> Option<DesiredContainers> {
        let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.get(node).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_only_grow() {
        assert_eq!(next_generation(0, 1000), 1000);
        assert_eq!(next_generation(1000, 1000), 1001);
        assert_eq!(next_generation(5000, 10), 5001);
        let store = DesiredStore::default();
        let a = store.set("pc2", vec![], 1000);
        let b = store.set("pc2", vec![], 1000);
        assert!(b.generation > a.generation);
        assert_eq!(store.get("pc2").unwrap().generation, b.generation);
        assert!(store.get("mainpc").is_none());
    }
}
