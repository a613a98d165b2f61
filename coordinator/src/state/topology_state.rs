//! The applied topology while it runs: its services and their hosts, and
//! its rollout controller. `tick` runs one pure controller step
//! ([`rollout::controller::advance`]) and executes what it returns: it
//! publishes the events to whoever follows the rollout and hands back the
//! desired sets to push.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh_proto::v1::{
    ContainerStatus, GroupStatus, RolloutEvent, RolloutSummary, ServicePhase, ServiceStatus,
    TopologyStatus, UnplacedGroup,
};
use tokio::sync::broadcast;

use crate::decide::rollout::controller::{advance, Controller, Push};
use crate::decide::rollout::{self, Observed, Planned};
use crate::state::store::{Applied, Store, StoreError};

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 300;

/// One rollout's events, tagged with the rollout they belong to.
pub type Tagged = (u64, RolloutEvent);

#[derive(Debug)]
pub struct Active {
    pub id: u64,
    pub applied: Applied,
    pub bridges: Vec<crate::decide::directory::BridgeDef>,
    pub volumes: Vec<crate::decide::volumes::VolumeDef>,
    pub rollout: Controller,
    /// (host, GPU index) -> the VRAM the placement plans there, MiB.
    pub planned_vram: BTreeMap<(String, usize), u64>,
}

/// The applied topology's groups as image copies see them.
pub struct CopyView {
    /// group -> the images its services run.
    pub images: BTreeMap<String, Vec<String>>,
    /// group -> host.
    pub placement: BTreeMap<String, String>,
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
            .filter(|a| a.rollout.hosts.iter().any(|h| h == node))
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
        bridges: Vec<crate::decide::directory::BridgeDef>,
        volumes: Vec<crate::decide::volumes::VolumeDef>,
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
        let now = Instant::now();
        if let Some(event) = active
            .as_ref()
            .and_then(|old| old.rollout.replaced(now).map(|e| (old.id, e)))
        {
            let _ = self.events.send(event);
        }
        let timeout = Duration::from_secs(u64::from(if applied.timeout_seconds == 0 {
            DEFAULT_TIMEOUT_SECONDS
        } else {
            applied.timeout_seconds
        }));
        let parsed =
            crate::decide::planning::parse(&applied.source_name, &applied.topology_toml).ok();
        let planned_vram = parsed
            .as_ref()
            .map(|t| {
                crate::decide::vram_plan::planned_vram(
                    &mesh_topology::placement::group_needs(t),
                    &applied.placement,
                    &applied.gpus,
                )
            })
            .unwrap_or_default();
        let mut rollout = Controller::new(planned, hosts, unplaced, now, timeout);
        rollout.wait_for_images = parsed.is_some_and(|t| t.placement.copy_images);
        *active = Some(Active {
            id,
            planned_vram,
            applied,
            bridges,
            volumes,
            rollout,
        });
        Ok((id, receiver))
    }

    /// (host, GPU index) -> the VRAM the applied placement plans there, MiB.
    pub fn planned_vram(&self) -> BTreeMap<(String, usize), u64> {
        lock(&self.active)
            .as_ref()
            .map(|a| a.planned_vram.clone())
            .unwrap_or_default()
    }

    /// The summary of rollout `id` if it has finished (for a follower that
    /// subscribed late or lagged).
    pub fn summary_of(&self, id: u64) -> Option<RolloutSummary> {
        lock(&self.active)
            .as_ref()
            .filter(|a| a.id == id)
            .and_then(|a| a.rollout.summary.clone())
    }

    /// One rollout step against the agents' latest reports (only hosts
    /// whose agent reported with a working runtime). Publishes its events
    /// (to followers of the rollout, and the steps that are news to the
    /// event history); returns the desired sets to push.
    pub fn tick(&self, reports: &Observed, history: &crate::state::events::EventLog) -> Vec<Push> {
        let mut guard = lock(&self.active);
        let Some(mut a) = guard.take() else {
            return Vec::new();
        };
        let (rollout, events, pushes) = advance(a.rollout, reports, Instant::now());
        a.rollout = rollout;
        for event in events {
            if let Some((kind, node, group, message)) =
                crate::decide::rollout_events::rollout_entry(&event, &a.rollout.unchanged)
            {
                history.record(kind, &node, &group, message);
            }
            let _ = self.events.send((a.id, event));
        }
        *guard = Some(a);
        pushes
    }

    /// The bridges of the applied topology, where each bridged service runs
    /// and which are healthy, for the directory.
    pub fn bridge_view(
        &self,
    ) -> (
        Vec<crate::decide::directory::BridgeDef>,
        BTreeMap<String, String>,
        BTreeSet<String>,
    ) {
        let guard = lock(&self.active);
        let Some(a) = guard.as_ref() else {
            return Default::default();
        };
        let hosts = a
            .rollout
            .planned
            .iter()
            .filter_map(|p| p.host.clone().map(|h| (p.service.clone(), h)))
            .collect();
        (a.bridges.clone(), hosts, a.rollout.healthy())
    }

    /// service -> its group, for every service of the applied topology.
    pub fn service_groups(&self) -> BTreeMap<String, String> {
        let guard = lock(&self.active);
        let Some(a) = guard.as_ref() else {
            return BTreeMap::new();
        };
        a.rollout
            .planned
            .iter()
            .map(|p| (p.service.clone(), p.group.clone()))
            .collect()
    }

    /// With `[placement] copy_images`: what the coordinator copies images for (None: no
    /// topology, or it does not ask for copies).
    pub fn copy_view(&self) -> Option<CopyView> {
        let guard = lock(&self.active);
        let a = guard.as_ref().filter(|a| a.rollout.wait_for_images)?;
        let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &a.rollout.planned {
            let list = images.entry(p.group.clone()).or_default();
            if !list.contains(&p.spec.image) {
                list.push(p.spec.image.clone());
            }
        }
        Some(CopyView {
            images,
            placement: a.applied.placement.clone(),
        })
    }

    /// The applied topology's managed volumes and where its groups are
    /// placed.
    pub fn volume_view(
        &self,
    ) -> (
        Vec<crate::decide::volumes::VolumeDef>,
        BTreeMap<String, String>,
    ) {
        let guard = lock(&self.active);
        let Some(a) = guard.as_ref() else {
            return Default::default();
        };
        (a.volumes.clone(), a.applied.placement.clone())
    }

    /// Groups, their hosts and health, for `meshctl status`.
    pub fn status(&self, reports: &Observed) -> TopologyStatus {
        let guard = lock(&self.active);
        let Some(a) = guard.as_ref() else {
            return TopologyStatus::default();
        };
        let rollout = match (&a.rollout.summary, &a.rollout.halted) {
            (None, _) => "rolling out".to_string(),
            (Some(_), Some(why)) => why.clone(),
            (Some(s), None) if s.ok => "complete".to_string(),
            (Some(s), None) => format!("complete except: {}", s.message),
        };
        let mut groups: BTreeMap<String, GroupStatus> = BTreeMap::new();
        for p in &a.rollout.planned {
            let g = groups
                .entry(p.group.clone())
                .or_insert_with(|| GroupStatus {
                    group: p.group.clone(),
                    host: p.host.clone().unwrap_or_default(),
                    healthy: true,
                    services: Vec::new(),
                    images: Vec::new(),
                    standby: String::new(),
                });
            if !g.images.contains(&p.spec.image) {
                g.images.push(p.spec.image.clone());
            }
            let row = a
                .rollout
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

/// Before any container set of this run goes out: every node gets the
/// volumes the records give it (when nothing is left to decide), so the
/// first set a restarted coordinator sends a primary still holds them.
pub fn seed_volumes(shared: &crate::state::Shared) {
    let plan = volume_plan(shared);
    if !plan.records.is_empty() {
        // Decisions not recorded yet: refresh_volumes records them first.
        return;
    }
    for (node, list) in plan.assignments {
        shared.desired.seed_volumes(&node, list);
    }
}

fn volume_plan(shared: &crate::state::Shared) -> crate::decide::volumes::VolumePlan {
    let (defs, placement) = shared.topology.volume_view();
    let snapshot = shared
        .registry()
        .snapshot(crate::state::registry::Now::system());
    let ready: BTreeSet<String> = snapshot
        .iter()
        .filter(|n| n.state() == mesh_proto::v1::NodeState::Ready)
        .map(|n| n.name.clone())
        .collect();
    let records = shared.volumes.records();
    let reports = shared.volumes.reports();
    let attached: BTreeSet<(String, String)> = records
        .values()
        .filter(|r| {
            reports.get(&r.primary).is_some_and(|list| {
                list.iter().any(|s| {
                    s.group == r.group
                        && s.name == r.name
                        && s.phase() == mesh_proto::v1::VolumePhase::Attached
                })
            })
        })
        .map(|r| r.key())
        .collect();
    crate::decide::volumes::plan(&defs, &placement, &ready, &records, &attached)
}

/// Decides which node holds which volume, persists what changed in the
/// records, then sends every node whose volumes changed its new set.
pub fn refresh_volumes(shared: &crate::state::Shared, now_unix_ms: u64) {
    let plan = volume_plan(shared);
    let snapshot = shared
        .registry()
        .snapshot(crate::state::registry::Now::system());
    if let Err(e) = shared.volumes.save(plan.records) {
        // Nothing is sent on an unrecorded decision; the next tick retries.
        tracing::error!(error = %e, "volumes: cannot record the volume assignments");
        return;
    }
    let nodes: BTreeSet<String> = snapshot
        .iter()
        .map(|n| n.name.clone())
        .chain(plan.assignments.keys().cloned())
        .collect();
    let (_, service_hosts, _) = shared.topology.bridge_view();
    let container_hosts: BTreeSet<String> = service_hosts.into_values().collect();
    for node in nodes {
        // A host the rollout has services for gets its volumes with the
        // set the rollout makes for it: a set made here first would carry
        // no containers (after a coordinator restart, before the rollout
        // has adopted what runs) and the agent would remove them.
        if container_hosts.contains(&node) && shared.desired.get(&node).is_none() {
            continue;
        }
        let list = plan.assignments.get(&node).cloned().unwrap_or_default();
        match shared.desired.set_volumes(&node, list, now_unix_ms) {
            Ok(None) => {}
            Ok(Some(d)) => {
                let delivered = shared
                    .sync_node(&node, Instant::now())
                    .contains(&crate::decide::sync::Kind::Desired);
                tracing::info!(node = %node, generation = d.generation, volumes = d.volumes.len(), delivered, "volumes: assignments updated");
            }
            Err(e) => {
                tracing::error!(node = %node, error = %e, "volumes: cannot number the desired set")
            }
        }
    }
}

/// Pushes each changed desired set to its node.
pub fn push_sets(shared: &crate::state::Shared, sets: Vec<Push>, now_unix_ms: u64) {
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
            .contains(&crate::decide::sync::Kind::Desired);
        tracing::info!(node = %node, generation, count, delivered, "topology: desired containers updated");
    }
}
