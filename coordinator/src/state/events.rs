//! The event history: every state change the coordinator sees, with time,
//! kind, node, group and a message for people. Persisted in the state
//! database (bounded to the newest [`EVENTS_KEPT`]) when there is one,
//! else kept in memory (the same bound); followers get each new event as
//! it is recorded (`meshctl events -f`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use mesh_proto::v1::{ListEventsRequest, MeshEvent};
use tokio::sync::broadcast;

use crate::state::registry::Now;
use crate::state::store::{Store, EVENTS_KEPT};

#[derive(Debug)]
pub struct EventLog {
    store: Option<Arc<Store>>,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<MeshEvent>,
    /// The containers as last reported (None: not looked at yet).
    containers: Mutex<Option<crate::decide::container_events::Snapshot>>,
    retention: Mutex<Retention>,
}

/// How much history is kept: the newest `keep` events, and (when set)
/// none older than `keep_for`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub keep: u64,
    pub keep_for: Option<std::time::Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep: EVENTS_KEPT,
            keep_for: None,
        }
    }
}

/// Events are made durable at least this often (each one when they are
/// rarer), so a burst costs one disk flush per interval, not per event.
const DURABLE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    /// When an event was last committed durably.
    last_durable: Option<std::time::Instant>,
    /// Events committed since then that are not durable yet.
    pending: bool,
    /// Without a store: the history itself.
    memory: VecDeque<MeshEvent>,
}

/// What a query asks for, as a filter.
pub fn matches(q: &ListEventsRequest, e: &MeshEvent) -> bool {
    e.at_unix_ms >= q.since_unix_ms
        && (q.node.is_empty() || e.node == q.node)
        && (q.group.is_empty() || e.group == q.group)
}

impl EventLog {
    pub fn new(store: Option<Arc<Store>>) -> EventLog {
        let last = store
            .as_ref()
            .and_then(|s| match s.last_event_seq() {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the event history; new events are numbered from 1");
                    None
                }
            })
            .unwrap_or(0);
        let (tx, _) = broadcast::channel(1024);
        EventLog {
            store,
            inner: Mutex::new(Inner {
                next_seq: last + 1,
                last_durable: None,
                pending: false,
                memory: VecDeque::new(),
            }),
            tx,
            containers: Mutex::new(None),
            retention: Mutex::new(Retention::default()),
        }
    }

    /// Sets how much history is kept (`[events]` in coordinator.toml).
    pub fn set_retention(&self, r: Retention) {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// Records each container change between the last reports and these
    /// (the first call only remembers them: after a restart, what runs is
    /// not news).
    pub fn containers(&self, observed: &crate::decide::rollout::Observed) {
        use crate::decide::container_events::{changes, snapshot};
        let next = snapshot(observed);
        let prev = {
            let mut seen = self.containers.lock().unwrap_or_else(|p| p.into_inner());
            seen.replace(next.clone())
        };
        let Some(prev) = prev else { return };
        for (node, group, message) in changes(&prev, &next) {
            self.record("container", &node, &group, message);
        }
    }

    /// Records one event now (and logs it, as before events existed).
    pub fn record(&self, kind: &str, node: &str, group: &str, message: String) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = MeshEvent {
            seq: inner.next_seq,
            at_unix_ms: Now::system().unix_ms,
            kind: kind.to_string(),
            node: node.to_string(),
            group: group.to_string(),
            message,
        };
        inner.next_seq += 1;
        let r = *self.retention.lock().unwrap_or_else(|p| p.into_inner());
        let cutoff = r
            .keep_for
            .map(|d| e.at_unix_ms.saturating_sub(d.as_millis() as i64));
        match &self.store {
            Some(store) => {
                let now = std::time::Instant::now();
                let durable = inner
                    .last_durable
                    .is_none_or(|t| now.duration_since(t) >= DURABLE_EVERY);
                if durable {
                    inner.last_durable = Some(now);
                }
                inner.pending = !durable;
                if let Err(err) = store.append_event(&e, r.keep, cutoff, durable) {
                    tracing::error!(error = %err, event = %e.message, "cannot record an event in the state database");
                }
            }
            None => {
                inner.memory.push_back(e.clone());
                while inner.memory.len() as u64 > r.keep
                    || inner
                        .memory
                        .front()
                        .zip(cutoff)
                        .is_some_and(|(f, c)| f.at_unix_ms < c)
                {
                    inner.memory.pop_front();
                }
            }
        }
        drop(inner);
        let _ = self.tx.send(e);
    }

    /// The newest events `q` asks for, oldest first.
    pub fn list(&self, q: &ListEventsRequest) -> Result<Vec<MeshEvent>, String> {
        let limit = if q.limit == 0 { 1000 } else { q.limit as usize };
        match &self.store {
            Some(store) => store
                .load_events(limit, |e| matches(q, e))
                .map_err(|e| e.to_string()),
            None => {
                let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                let mut out: Vec<MeshEvent> = inner
                    .memory
                    .iter()
                    .rev()
                    .filter(|e| matches(q, e))
                    .take(limit)
                    .cloned()
                    .collect();
                out.reverse();
                Ok(out)
            }
        }
    }

    /// Makes the events of a burst durable once it is over (called on the
    /// control loop's tick).
    pub fn flush(&self) {
        let Some(store) = &self.store else { return };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let due = inner
            .last_durable
            .is_none_or(|t| t.elapsed() >= DURABLE_EVERY);
        if inner.pending && due {
            match store.flush() {
                Ok(()) => {
                    inner.pending = false;
                    inner.last_durable = Some(std::time::Instant::now());
                }
                Err(e) => tracing::error!(error = %e, "cannot flush the event history"),
            }
        }
    }

    /// New events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MeshEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_filtered_and_followed() {
        let log = EventLog::new(None);
        let mut rx = log.subscribe();
        log.record("node", "pc2", "", "pc2 ready -> suspect".into());
        log.record("failover", "mainpc", "memory", "pc2 -> mainpc".into());
        let all = log.list(&ListEventsRequest::default()).expect("list");
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let memory = log
            .list(&ListEventsRequest {
                group: "memory".into(),
                ..Default::default()
            })
            .expect("list");
        assert_eq!(memory.len(), 1);
        assert_eq!(memory[0].kind, "failover");
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(1));
        assert_eq!(rx.try_recv().map(|e| e.seq), Ok(2));
    }

    #[test]
    fn a_restarted_coordinator_numbers_on_from_its_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        EventLog::new(Some(store.clone())).record("node", "pc2", "", "one".into());
        let log = EventLog::new(Some(store));
        log.record("node", "pc2", "", "two".into());
        let all = log.list(&ListEventsRequest::default()).expect("list");
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    }
}
