//! The containers each node should run, with the operators' holds. The
//! sets are in memory (the applied topology is persisted and re-derives
//! them on start); their generations are numbered by [`Numbering`], so they
//! never go back, and holds are persisted, so every set built after a
//! restart carries them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mesh_proto::v1::{ContainerSpec, DesiredContainers, Hold, VolumeAssignment};

use crate::decide::holds::{self, NodeHolds};
pub use crate::state::numbering::next_generation;
use crate::state::numbering::Numbering;
use crate::state::store::{GenerationKey, Store, StoreError};

#[derive(Debug, Default)]
pub struct DesiredStore {
    sets: Mutex<BTreeMap<String, DesiredContainers>>,
    holds: Mutex<BTreeMap<String, NodeHolds>>,
    /// node -> the volumes it holds (part of every set sent to it).
    volumes: Mutex<BTreeMap<String, Vec<VolumeAssignment>>>,
    numbering: Numbering,
    store: Option<Arc<Store>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DesiredStore {
    /// Loads the holds recorded in `store`.
    pub fn new(
        numbering: Numbering,
        store: Option<Arc<Store>>,
    ) -> Result<DesiredStore, StoreError> {
        let holds = match &store {
            Some(s) => s.load_holds()?,
            None => BTreeMap::new(),
        };
        Ok(DesiredStore {
            sets: Mutex::new(BTreeMap::new()),
            holds: Mutex::new(holds),
            volumes: Mutex::default(),
            numbering,
            store,
        })
    }

    /// Makes `containers`, with the holds recorded for them, the desired
    /// set of `node` under a new generation (persisted first when there is
    /// a store); unchanged on error.
    pub fn set(
        &self,
        node: &str,
        containers: Vec<ContainerSpec>,
        now_unix_ms: u64,
    ) -> Result<DesiredContainers, StoreError> {
        let mut sets = lock(&self.sets);
        let containers = holds::with_holds(containers, &self.holds_of(node));
        let volumes = self.volumes_of(node);
        self.replace(&mut sets, node, containers, volumes, now_unix_ms)
    }

    /// Makes `volumes` the volumes `node` holds; a change is a new
    /// generation of its set (returned to be sent), with the same containers.
    pub fn set_volumes(
        &self,
        node: &str,
        volumes: Vec<VolumeAssignment>,
        now_unix_ms: u64,
    ) -> Result<Option<DesiredContainers>, StoreError> {
        let mut sets = lock(&self.sets);
        if self.volumes_of(node) == volumes {
            return Ok(None);
        }
        let containers = sets
            .get(node)
            .map(|d| d.containers.clone())
            .unwrap_or_default();
        let desired = self.replace(&mut sets, node, containers, volumes.clone(), now_unix_ms)?;
        let mut all = lock(&self.volumes);
        if volumes.is_empty() {
            all.remove(node);
        } else {
            all.insert(node.to_string(), volumes);
        }
        Ok(Some(desired))
    }

    /// Gives `node` the volumes it holds by the records, if this run has
    /// none for it yet, without making a new set: a restarted
    /// coordinator's first container set must not leave out the volumes a
    /// primary holds (its agent would release them).
    pub fn seed_volumes(&self, node: &str, volumes: Vec<VolumeAssignment>) {
        if volumes.is_empty() {
            return;
        }
        lock(&self.volumes)
            .entry(node.to_string())
            .or_insert(volumes);
    }

    pub fn volumes_of(&self, node: &str) -> Vec<VolumeAssignment> {
        lock(&self.volumes).get(node).cloned().unwrap_or_default()
    }

    fn replace(
        &self,
        sets: &mut BTreeMap<String, DesiredContainers>,
        node: &str,
        containers: Vec<ContainerSpec>,
        volumes: Vec<VolumeAssignment>,
        now_unix_ms: u64,
    ) -> Result<DesiredContainers, StoreError> {
        let previous = sets.get(node).map_or(0, |d| d.generation);
        let key = GenerationKey::Desired(node.to_string());
        let generation = self.numbering.next(&key, previous, now_unix_ms)?;
        let desired = DesiredContainers {
            generation,
            containers,
            volumes,
        };
        sets.insert(node.to_string(), desired.clone());
        Ok(desired)
    }

    /// Records `hold` on `container` of `node` (Hold::None lifts it),
    /// persisted first. When the node's set holds that container under
    /// another hold, it becomes a new generation, returned to be sent.
    /// The hold is kept also for a container not in the set yet: a set
    /// built later (e.g. re-derived after a restart) carries it.
    pub fn hold(
        &self,
        node: &str,
        container: &str,
        hold: Hold,
        now_unix_ms: u64,
    ) -> Result<Option<DesiredContainers>, StoreError> {
        let mut sets = lock(&self.sets);
        if let Some(store) = &self.store {
            store.save_hold(node, container, hold)?;
        }
        let node_holds = {
            let mut all = lock(&self.holds);
            let updated = holds::record(all.remove(node).unwrap_or_default(), container, hold);
            if !updated.is_empty() {
                all.insert(node.to_string(), updated.clone());
            }
            updated
        };
        let Some(current) = sets.get(node) else {
            return Ok(None);
        };
        let changes = current
            .containers
            .iter()
            .any(|c| c.name == container && c.hold() != hold);
        if !changes {
            return Ok(None);
        }
        let containers = holds::with_holds(current.containers.clone(), &node_holds);
        let volumes = current.volumes.clone();
        self.replace(&mut sets, node, containers, volumes, now_unix_ms)
            .map(Some)
    }

    /// The holds recorded for `node`.
    pub fn holds_of(&self, node: &str) -> NodeHolds {
        lock(&self.holds).get(node).cloned().unwrap_or_default()
    }

    pub fn get(&self, node: &str) -> Option<DesiredContainers> {
        lock(&self.sets).get(node).cloned()
    }
}

#[cfg(test)]
mod tests;
