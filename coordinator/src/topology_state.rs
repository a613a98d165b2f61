//! The applied topology while it runs: its services and their hosts, what
//! was handed out, and the rollout's progress. `tick` applies one pure
//! rollout step to the live mesh: it updates the desired sets of the hosts
//! that reported, and publishes progress to whoever follows the rollout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh_proto::v1::{
    rollout_event, ContainerStatus, GroupStatus, RolloutEvent, RolloutSummary, ServicePhase,
    ServiceProgress, ServiceStatus, TopologyStatus, UnplacedGroup,
};
use tokio::sync::broadcast;

use crate::rollout::{self, Observed, Planned, Step};
use crate::store::{Applied, Store, StoreError};

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;

/// One rollout's events, tagged with the rollout they belong to.
pub type Tagged = (u64, RolloutEvent);

#[derive(Debug)]
pub struct Active {
    pub id: u64,
    pub applied: Applied,
    pub planned: Vec<Planned>,
    pub hosts: Vec<String>,
    pub unplaced: Vec<UnplacedGroup>,
    pub bridges: Vec<crate::directory::BridgeDef>,
    released: BTreeSet<String>,
    halted: Option<String>,
    started: Instant,
    timeout: Duration,
    summary: Option<RolloutSummary>,
    last: BTreeMap<String, (i32, String)>,
    last_step: Option<Step>,
    /// Services already healthy when this rollout began.
    unchanged: BTreeSet<String>,
    first_tick: bool,
}

#[derive(Debug)]
pub struct TopologyState {
    store: Option<Arc<Store>>,
    active: Mutex<Option<Active>>,
    events: broadcast::Sender<Tagged>,
    next_id: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TopologyState {
    pub fn new(store: Option<Arc<Store>>) -> TopologyState {
        let (events, _) = broadcast::channel(4096);
        TopologyState {
            store,
            active: Mutex::new(None),
            events,
            next_id: Mutex::new(0),
        }
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_deref()
    }

    /// The applied topology, if any.
    pub fn applied(&self) -> Option<Applied> {
        lock(&self.active).as_ref().map(|a| a.applied.clone())
    }

    /// Whether `node` is managed by the applied topology.
    pub fn manages(&self, node: &str) -> Option<String> {
        lock(&self.active)
            .as_ref()
            .filter(|a| a.hosts.iter().any(|h| h == node))
            .map(|a| a.applied.source_name.clone())
    }

    /// Persists `applied` (when a store is configured), then makes it the
    /// active rollout. Returns the rollout's id and a receiver subscribed
    /// before the rollout begins, so no event is missed.
    pub fn begin(
        &self,
        applied: Applied,
        planned: Vec<Planned>,
        hosts: Vec<String>,
        unplaced: Vec<UnplacedGroup>,
        bridges: Vec<crate::directory::BridgeDef>,
    ) -> Result<(u64, broadcast::Receiver<Tagged>), StoreError> {
        if let Some(store) = &self.store {
            store.save_applied(&applied)?;
        }
        let receiver = self.events.subscribe();
        let id = {
            let mut n = lock(&self.next_id);
            *n += 1;
            *n
        };
        let mut active = lock(&self.active);
        if let Some(old) = active.as_ref() {
            if old.summary.is_none() {
                let summary = RolloutSummary {
                    ok: false,
                    message: "replaced by a newer apply".into(),
                    elapsed_ms: old.started.elapsed().as_millis() as u64,
                    ..Default::default()
                };
                let _ = self.events.send((
                    old.id,
                    RolloutEvent {
                        body: Some(rollout_event::Body::Summary(summary)),
                    },
                ));
            }
        }
        let timeout = Duration::from_secs(u64::from(if applied.timeout_seconds == 0 {
            DEFAULT_TIMEOUT_SECONDS
        } else {
            applied.timeout_seconds
        }));
        *active = Some(Active {
            id,
            applied,
            planned,
            hosts,
            unplaced,
            bridges,
            released: BTreeSet::new(),
            halted: None,
            started: Instant::now(),
            timeout,
            summary: None,
            last: BTreeMap::new(),
            last_step: None,
            unchanged: BTreeSet::new(),
            first_tick: true,
        });
        Ok((id, receiver))
    }

    /// The summary of rollout `id` if it has finished (for a follower that
    /// subscribed late or lagged).
    pub fn summary_of(&self, id: u64) -> Option<RolloutSummary> {
        lock(&self.active)
            .as_ref()
            .filter(|a| a.id == id)
            .and_then(|a| a.summary.clone())
    }

    /// One rollout step against the agents' latest reports. `reports` holds
    /// only hosts whose agent reported with a working runtime: the others
    /// keep their desired sets untouched until they do. Returns the desired
    /// sets to push.
    pub fn tick(&self, reports: &Observed) -> Vec<(String, Vec<mesh_proto::v1::ContainerSpec>)> {
        let mut guard = lock(&self.active);
        let Some(a) = guard.as_mut() else {
            return Vec::new();
        };
        let elapsed = a.started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        let step = rollout::step(
            &a.planned,
            &a.hosts,
            reports,
            &a.released,
            a.halted.is_some(),
            elapsed_ms,
        );
        if a.first_tick {
            a.first_tick = false;
            a.unchanged = step
                .progress
                .iter()
                .filter(|r| r.phase == ServicePhase::Healthy as i32)
                .map(|r| r.service.clone())
                .collect();
        }
        // Hand out only to hosts that reported: a host not heard from yet
        // (e.g. after a coordinator restart) must not get a partial set.
        a.released = step
            .released
            .iter()
            .filter(|s| {
                a.planned
                    .iter()
                    .find(|p| &p.service == *s)
                    .and_then(|p| p.host.as_ref())
                    .is_some_and(|h| reports.contains_key(h))
                    || a.released.contains(*s)
            })
            .cloned()
            .collect();
        let push: Vec<_> = step
            .desired
            .iter()
            .filter(|(h, _)| reports.contains_key(*h))
            .map(|(h, set)| (h.clone(), set.clone()))
            .collect();
        for row in &step.progress {
            let key = (row.phase, row.message.clone());
            if a.last.get(&row.service) != Some(&key) {
                a.last.insert(row.service.clone(), key);
                let _ = self.events.send((
                    a.id,
                    RolloutEvent {
                        body: Some(rollout_event::Body::Progress(row.clone())),
                    },
                ));
            }
        }
        if a.summary.is_none() {
            let halt = if step.failed {
                let failed: Vec<String> = step
                    .progress
                    .iter()
                    .filter(|r| r.phase == ServicePhase::Failed as i32)
                    .map(|r| format!("{} on {}: {}", r.service, r.host, r.message))
                    .collect();
                Some(format!("stopped: {}", failed.join("; ")))
            } else if step.complete {
                None
            } else if elapsed > a.timeout {
                Some(format!(
                    "stopped: timed out after {} s; raise it with --timeout",
                    a.timeout.as_secs()
                ))
            } else {
                a.last_step = Some(step);
                return push;
            };
            a.halted = halt.clone();
            let summary = summarize(a, &step, halt, elapsed_ms);
            a.summary = Some(summary.clone());
            let _ = self.events.send((
                a.id,
                RolloutEvent {
                    body: Some(rollout_event::Body::Summary(summary)),
                },
            ));
        }
        a.last_step = Some(step);
        push
    }

    /// The bridges of the applied topology, where each bridged service runs
    /// and which are healthy, for the directory.
    pub fn bridge_view(
        &self,
    ) -> (
        Vec<crate::directory::BridgeDef>,
        BTreeMap<String, String>,
        BTreeSet<String>,
    ) {
        let guard = lock(&self.active);
        let Some(a) = guard.as_ref() else {
            return Default::default();
        };
        let hosts = a
            .planned
            .iter()
            .filter_map(|p| p.host.clone().map(|h| (p.service.clone(), h)))
            .collect();
        let healthy = a
            .last_step
            .as_ref()
            .map(|s| {
                s.progress
                    .iter()
                    .filter(|r| r.phase == ServicePhase::Healthy as i32)
                    .map(|r| r.service.clone())
                    .collect()
            })
            .unwrap_or_default();
        (a.bridges.clone(), hosts, healthy)
    }

    /// Groups, their hosts and health, for `meshctl status`.
    pub fn status(&self, reports: &Observed) -> TopologyStatus {
        let guard = lock(&self.active);
        let Some(a) = guard.as_ref() else {
            return TopologyStatus::default();
        };
        let rollout = match (&a.summary, &a.halted) {
            (None, _) => "rolling out".to_string(),
            (Some(_), Some(why)) => why.clone(),
            (Some(s), None) if s.ok => "complete".to_string(),
            (Some(s), None) => format!("complete except: {}", s.message),
        };
        let mut groups: BTreeMap<String, GroupStatus> = BTreeMap::new();
        for p in &a.planned {
            let g = groups
                .entry(p.group.clone())
                .or_insert_with(|| GroupStatus {
                    group: p.group.clone(),
                    host: p.host.clone().unwrap_or_default(),
                    healthy: true,
                    services: Vec::new(),
                });
            let row = a
                .last_step
                .as_ref()
                .and_then(|s| s.progress.iter().find(|r| r.service == p.service));
            let seen: Option<&ContainerStatus> = p.host.as_ref().and_then(|h| {
                reports
                    .get(h)
                    .and_then(|l| l.iter().find(|c| c.name == p.spec.name))
            });
            let phase = row.map_or(ServicePhase::Unspecified as i32, |r| r.phase);
            g.healthy &= phase == ServicePhase::Healthy as i32;
            g.services.push(ServiceStatus {
                service: p.service.clone(),
                host: p.host.clone().unwrap_or_default(),
                phase,
                state: seen.map_or(0, |c| c.state),
                health: seen.map_or(0, |c| c.health),
                waiting_on: row.map(|r| r.waiting_on.clone()).unwrap_or_default(),
                message: row.map(|r| r.message.clone()).unwrap_or_default(),
            });
        }
        TopologyStatus {
            applied: true,
            source_name: a.applied.source_name.clone(),
            applied_unix_ms: a.applied.applied_unix_ms,
            rollout,
            groups: groups.into_values().collect(),
        }
    }
}

fn summarize(a: &Active, step: &Step, halt: Option<String>, elapsed_ms: u64) -> RolloutSummary {
    let phase =
        |r: &ServiceProgress| ServicePhase::try_from(r.phase).unwrap_or(ServicePhase::Unspecified);
    let mut s = RolloutSummary {
        ok: false,
        message: String::new(),
        elapsed_ms,
        unplaced: a.unplaced.clone(),
        ..Default::default()
    };
    for r in &step.progress {
        match phase(r) {
            ServicePhase::Healthy if a.unchanged.contains(&r.service) => {
                s.unchanged.push(r.service.clone())
            }
            ServicePhase::Healthy => s.started.push(r.service.clone()),
            ServicePhase::Failed => s.failed.push(r.clone()),
            _ => s.not_started.push(r.clone()),
        }
    }
    s.ok =
        halt.is_none() && s.failed.is_empty() && s.not_started.is_empty() && s.unplaced.is_empty();
    s.message = match halt {
        Some(why) => format!("{why}; nothing healthy was torn down"),
        None if s.ok => format!(
            "all {} services healthy",
            s.started.len() + s.unchanged.len()
        ),
        None => format!(
            "{} services healthy; {} could not start (unplaced groups or what depends on them)",
            s.started.len() + s.unchanged.len(),
            s.not_started.len()
        ),
    };
    s
}

/// The latest reports of `hosts` whose runtime works, for a rollout step.
pub fn usable_reports(reports: Vec<(String, Option<mesh_proto::v1::ContainerReport>)>) -> Observed {
    reports
        .into_iter()
        .filter_map(|(node, r)| {
            r.filter(|r| r.runtime_available)
                .map(|r| (node, r.containers))
        })
        .collect()
}

/// Pushes each changed desired set to its node.
pub fn push_sets(
    shared: &crate::state::Shared,
    sets: Vec<(String, Vec<mesh_proto::v1::ContainerSpec>)>,
    now_unix_ms: u64,
) {
    for (node, set) in sets {
        let same = shared
            .desired
            .get(&node)
            .is_some_and(|d| rollout::same_set(&d.containers, &set));
        if same {
            continue;
        }
        let count = set.len();
        let desired = match shared.desired.set(&node, set, now_unix_ms) {
            Ok(d) => d,
            Err(e) => {
                // Unchanged: the next tick tries again.
                tracing::error!(node = %node, error = %e, "topology: cannot number the desired set");
                continue;
            }
        };
        let generation = desired.generation;
        let delivered = shared
            .sync_node(&node, Instant::now())
            .contains(&crate::sync::Kind::Desired);
        tracing::info!(node = %node, generation, count, delivered, "topology: desired containers updated");
    }
}
