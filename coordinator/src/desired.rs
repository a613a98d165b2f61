//! The containers each node should run. In memory: the applied topology is
//! persisted and re-derives these sets on start; their generations are
//! numbered by [`Numbering`], so they never go back.

use std::collections::BTreeMap;
use std::sync::Mutex;

use mesh_proto::v1::{ContainerSpec, DesiredContainers};

pub use crate::numbering::next_generation;
use crate::numbering::Numbering;
use crate::store::{GenerationKey, StoreError};

#[derive(Debug, Default)]
pub struct DesiredStore {
    sets: Mutex<BTreeMap<String, DesiredContainers>>,
    numbering: Numbering,
}

impl DesiredStore {
    pub fn new(numbering: Numbering) -> DesiredStore {
        DesiredStore {
            sets: Mutex::new(BTreeMap::new()),
            numbering,
        }
    }

    /// Makes `containers` the desired set of `node` under a new generation
    /// (persisted first when there is a store); unchanged on error.
    pub fn set(
        &self,
        node: &str,
        containers: Vec<ContainerSpec>,
        now_unix_ms: u64,
    ) -> Result<DesiredContainers, StoreError> {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let previous = sets.get(node).map_or(0, |d| d.generation);
        let generation = self.numbering.next(
            &GenerationKey::Desired(node.to_string()),
            previous,
            now_unix_ms,
        )?;
        let desired = DesiredContainers {
            generation,
            containers,
        };
        sets.insert(node.to_string(), desired.clone());
        Ok(desired)
    }

    pub fn get(&self, node: &str) -> Option<DesiredContainers> {
        let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.get(node).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn generations_only_grow() {
        let store = DesiredStore::default();
        let a = store.set("pc2", vec![], 1000).expect("set");
        let b = store.set("pc2", vec![], 1000).expect("set");
        assert!(b.generation > a.generation);
        assert_eq!(store.get("pc2").expect("set").generation, b.generation);
        assert!(store.get("mainpc").is_none());
    }

    #[test]
    fn a_reopened_store_numbers_the_next_set_above_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || {
            let store = crate::store::Store::open(dir.path()).expect("open");
            DesiredStore::new(Numbering::new(Some(Arc::new(store))))
        };
        let before = open().set("pc2", vec![], 2000).expect("set");
        // Restarted, with the wall clock stepped back.
        let after = open().set("pc2", vec![], 1000).expect("set");
        assert!(after.generation > before.generation);
    }
}
