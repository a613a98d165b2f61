//! Runs the failover decisions each control-loop tick: persists a
//! promotion's records (new epoch, roles swapped) before anything else,
//! then re-plans the group onto its new primary (a rollout of the applied
//! topology with that one placement changed, so its services start there
//! in dependency order and the directory re-points its bridges). The
//! volumes' assignments follow from the records on the same tick.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::decide::failover::{decide, promoted, Blocked, Inputs, Promote};
use crate::state::Shared;

/// A promotion that happened, for `meshctl volumes` / `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFailover {
    pub promote: Promote,
    pub at_unix_ms: i64,
    /// From the primary's last heartbeat to the promotion's records.
    pub detected_after: Duration,
}

#[derive(Debug, Default)]
pub struct FailoverState {
    last: Mutex<BTreeMap<String, LastFailover>>,
    blocked: Mutex<BTreeMap<String, String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FailoverState {
    pub fn last(&self) -> BTreeMap<String, LastFailover> {
        lock(&self.last).clone()
    }

    /// group -> why its gone primary is not replaced.
    pub fn blocked(&self) -> BTreeMap<String, String> {
        lock(&self.blocked).clone()
    }
}

/// One tick: promote what must be, and remember what cannot.
pub fn tick(shared: &Shared) {
    let records = shared.volumes.records();
    if records.is_empty() {
        return;
    }
    let silence = shared.registry().silences(Instant::now());
    let reports = shared.volumes.reports();
    let (defs, _) = shared.topology.volume_view();
    let leases: BTreeMap<String, Duration> =
        defs.iter().map(|d| (d.group.clone(), d.lease)).collect();
    let (promote, blocked) = decide(&Inputs {
        records: &records,
        silence: &silence,
        reports: &reports,
        uptime: shared.started.elapsed(),
        leases: &leases,
    });
    {
        let mut b = lock(&shared.failover.blocked);
        let next: BTreeMap<String, String> = blocked
            .into_iter()
            .map(|Blocked { group, reason }| (group, reason))
            .collect();
        for (g, r) in &next {
            if b.get(g) != Some(r) {
                tracing::warn!(group = %g, reason = %r, "failover: the group's primary is gone and it stays down");
            }
        }
        *b = next;
    }
    for p in promote {
        let span = tracing::info_span!("failover", group = %p.group, from = %p.from, to = %p.to, epoch = p.epoch);
        let _e = span.enter();
        if let Err(e) = shared.volumes.save(promoted(&records, &p)) {
            tracing::error!(error = %e, "failover: cannot record the promotion; nothing changed, retrying next tick");
            continue;
        }
        tracing::warn!(
            "failover: primary silent for its lease; standby promoted (epoch persisted)"
        );
        if let Err(e) = crate::rpc::topology_api::fail_over(shared, &p.group, &p.to) {
            tracing::error!(error = %e, "failover: the group could not be re-planned onto its new primary");
        }
        let detected_after = silence.get(&p.from).copied().unwrap_or_default();
        lock(&shared.failover.last).insert(
            p.group.clone(),
            LastFailover {
                promote: p,
                at_unix_ms: crate::state::registry::Now::system().unix_ms,
                detected_after,
            },
        );
    }
}
