//! The coordinator's volume records (persisted in the store before they
//! are acted on) and the volume states each agent last reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use mesh_proto::v1::{VolumeEventAnswer, VolumeEventRequest, VolumeEventResponse, VolumeStatus};

use crate::decide::volumes::{on_event, RecordKey, VolumeRecord};
use crate::state::store::{Store, StoreError};

#[derive(Debug, Default)]
pub struct VolumeState {
    records: Mutex<BTreeMap<RecordKey, VolumeRecord>>,
    /// node -> its volumes as of its last heartbeat.
    reports: Mutex<BTreeMap<String, Vec<VolumeStatus>>>,
    store: Option<Arc<Store>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl VolumeState {
    /// Loads the records kept in `store`.
    pub fn new(store: Option<Arc<Store>>) -> Result<VolumeState, StoreError> {
        let records = match &store {
            Some(s) => s.load_volumes()?,
            None => BTreeMap::new(),
        };
        Ok(VolumeState {
            records: Mutex::new(records),
            reports: Mutex::default(),
            store,
        })
    }

    pub fn records(&self) -> BTreeMap<RecordKey, VolumeRecord> {
        lock(&self.records).clone()
    }

    /// Persists `changed`, then makes it the records; unchanged on error.
    pub fn save(&self, changed: Vec<VolumeRecord>) -> Result<(), StoreError> {
        if changed.is_empty() {
            return Ok(());
        }
        let mut records = lock(&self.records);
        if let Some(store) = &self.store {
            store.save_volumes(&changed)?;
        }
        for r in changed {
            records.insert(r.key(), r);
        }
        Ok(())
    }

    /// A primary's event: answered `Recorded` only once the record is
    /// committed.
    pub fn event(&self, caller: &str, req: &VolumeEventRequest) -> VolumeEventResponse {
        let mut records = lock(&self.records);
        let key = (req.group.clone(), req.volume.clone());
        let current = records.get(&key);
        let epoch = current.map_or(0, |r| r.epoch);
        let (answer, next) = on_event(current, caller, req);
        let mut message = match answer {
            VolumeEventAnswer::NotPrimary => format!(
                "{caller} is not the primary of volume {}/{}",
                req.group, req.volume
            ),
            VolumeEventAnswer::NewerEpoch => {
                format!("group {} is at epoch {epoch}", req.group)
            }
            _ => String::new(),
        };
        let mut answer = answer;
        if let Some(next) = next {
            let saved = match &self.store {
                Some(store) => store.save_volumes(std::slice::from_ref(&next)),
                None => Ok(()),
            };
            match saved {
                Ok(()) => {
                    tracing::info!(group = %next.group, volume = %next.name, standby = %next.standby, outdated = next.standby_outdated, "volume record changed by its primary");
                    records.insert(key, next);
                }
                Err(e) => {
                    // Not recorded: the primary must not act on it.
                    answer = VolumeEventAnswer::Unspecified;
                    message = format!("not recorded: {e}");
                }
            }
        }
        VolumeEventResponse {
            answer: answer as i32,
            epoch,
            request: req.request,
            message,
        }
    }

    /// Keeps `node`'s latest report; returns (group, message) for each of
    /// its replicas whose state changed since the one before.
    pub fn report(&self, node: &str, volumes: Vec<VolumeStatus>) -> Vec<(String, String)> {
        let mut reports = lock(&self.reports);
        let changes = crate::decide::volume_events::changes(
            node,
            reports.get(node).map(Vec::as_slice),
            &volumes,
        );
        reports.insert(node.to_string(), volumes);
        changes
    }

    pub fn reports(&self) -> BTreeMap<String, Vec<VolumeStatus>> {
        lock(&self.reports).clone()
    }
}
