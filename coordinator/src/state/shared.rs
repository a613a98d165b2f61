//! What the coordinator's services share: the registry, counters and facts
//! about this coordinator.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::decide::liveness::LivenessPolicy;
use crate::decide::sync::Kind;
use crate::state::desired::DesiredStore;
use crate::state::metrics::Metrics;
use crate::state::numbering::Numbering;
use crate::state::registry::Registry;
use crate::state::sessions::Sessions;
use crate::state::store::{GenerationKey, Store, StoreError};
use crate::state::topology_state::TopologyState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug)]
pub struct Shared {
    pub mesh: String,
    pub started: Instant,
    pub metrics: Metrics,
    pub desired: DesiredStore,
    pub sessions: Sessions,
    pub topology: TopologyState,
    pub volumes: crate::state::volumes::VolumeState,
    pub failover: crate::state::failover::FailoverState,
    pub events: crate::state::events::EventLog,
    pub traffic: crate::state::traffic::Traffic,
    /// Join tokens, issued certificates and revocations.
    pub identities: crate::state::identities::Identities,
    /// Signs joining and renewing members (None: this coordinator has no
    /// signing CA; joins and renewals are refused with how to give one).
    pub signer: std::sync::OnceLock<Arc<crate::state::signer::Signer>>,
    /// What this coordinator's TLS refuses; updated with every revocation.
    pub revocations: std::sync::OnceLock<Arc<mesh_certs::Revocations>>,
    numbering: Numbering,
    directory: Mutex<mesh_proto::v1::Directory>,
    registry: Mutex<Registry>,
}

impl Shared {
    /// Fails when the store's holds cannot be read.
    pub fn new(
        mesh: String,
        policy: LivenessPolicy,
        store: Option<Store>,
    ) -> Result<Arc<Shared>, StoreError> {
        let store = store.map(Arc::new);
        let numbering = Numbering::new(store.clone());
        Ok(Arc::new(Shared {
            mesh,
            started: Instant::now(),
            metrics: Metrics::default(),
            desired: DesiredStore::new(numbering.clone(), store.clone())?,
            sessions: Sessions::default(),
            volumes: crate::state::volumes::VolumeState::new(store.clone())?,
            failover: Default::default(),
            events: crate::state::events::EventLog::new(store.clone()),
            traffic: Default::default(),
            identities: crate::state::identities::Identities::new(store.clone())?,
            signer: Default::default(),
            revocations: Default::default(),
            topology: TopologyState::new(store),
            numbering,
            directory: Mutex::new(mesh_proto::v1::Directory::default()),
            registry: Mutex::new(Registry::new(policy)),
        }))
    }

    /// The bridge directory as last sent to agents.
    pub fn directory(&self) -> mesh_proto::v1::Directory {
        self.directory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Recomputes the directory; when its content changed (or it was never
    /// numbered), numbers it above every directory handed out before, also
    /// by an earlier process, and sends it to every connected agent.
    pub fn refresh_directory(&self, now_unix_ms: u64) {
        let (defs, hosts, healthy) = self.topology.bridge_view();
        let peers = self.registry().tunnel_peers();
        // Each bridged service's failover epoch: its group's, from the records.
        let groups = self.topology.service_groups();
        let group_epochs: std::collections::BTreeMap<String, u64> = self
            .volumes
            .records()
            .values()
            .filter(|r| r.replicate)
            .map(|r| (r.group.clone(), r.epoch))
            .collect();
        let epochs: std::collections::BTreeMap<String, u64> = groups
            .into_iter()
            .filter_map(|(service, group)| group_epochs.get(&group).map(|e| (service, *e)))
            .collect();
        let mut next = crate::decide::directory::compute(&defs, &hosts, &healthy, &peers, &epochs);
        let mut revoked = self.identities.revoked_serials((now_unix_ms / 1000) as i64);
        revoked.sort();
        next.revoked_serials = revoked;
        let mut current = self.directory.lock().unwrap_or_else(|p| p.into_inner());
        if current.generation != 0 && crate::decide::directory::same(&current, &next) {
            return;
        }
        next.generation =
            match self
                .numbering
                .next(&GenerationKey::Directory, current.generation, now_unix_ms)
            {
                Ok(g) => g,
                Err(e) => {
                    // Nothing sent: the next refresh tries again.
                    tracing::error!(error = %e, "cannot number the bridge directory");
                    return;
                }
            };
        let moved = crate::decide::directory::moves(&current, &next);
        *current = next.clone();
        drop(current);
        let groups = self.topology.service_groups();
        for (service, host, message) in moved {
            let group = groups.get(&service).cloned().unwrap_or_default();
            self.events.record("bridge", &host, &group, message);
        }
        let now = Instant::now();
        let sent = self
            .sessions
            .connected()
            .iter()
            .filter(|node| self.sync_node(node, now).contains(&Kind::Directory))
            .count();
        tracing::info!(
            generation = next.generation,
            bridges = next.bridges.len(),
            peers = next.peers.len(),
            sent,
            "bridge directory changed"
        );
    }

    /// Sends `node` what it lags behind: the directory, then its container
    /// set (see [`crate::decide::sync`]); returns what was queued.
    pub fn sync_node(&self, node: &str, now: Instant) -> Vec<Kind> {
        // The set first: it is only made after the directory it needs.
        let desired = self.desired.get(node);
        let directory = self.directory();
        self.sessions.sync(node, &directory, desired.as_ref(), now)
    }

    /// The registry is only touched in short, non-async critical sections,
    /// so a poisoned lock (a panic while held) still holds consistent data.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(dir: &std::path::Path) -> Arc<Shared> {
        let store = Store::open(dir).expect("open");
        Shared::new("prod".into(), LivenessPolicy::default(), Some(store)).expect("shared")
    }

    #[test]
    fn a_restarted_coordinators_first_directory_is_newer_than_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = shared(dir.path());
        first.refresh_directory(9_000);
        let before = first.directory().generation;
        assert_eq!(before, 9_000, "numbered even though empty");
        first.refresh_directory(9_500);
        assert_eq!(first.directory().generation, before, "unchanged content");
        drop(first);
        // Same content, the clock stepped back: still numbered above.
        let again = shared(dir.path());
        again.refresh_directory(10);
        assert!(again.directory().generation > before);
    }

    #[test]
    fn without_a_store_the_wall_clock_numbers_the_directory() {
        let s = Shared::new("prod".into(), LivenessPolicy::default(), None).expect("shared");
        s.refresh_directory(1234);
        assert_eq!(s.directory().generation, 1234);
    }
}
