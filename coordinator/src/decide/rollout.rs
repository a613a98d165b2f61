//! Rollout in dependency order, as a pure function of the plan, what the
//! agents report and what was already handed out.
//!
//! A service is handed to its host's agent (put in that host's desired
//! set) once every service it depends on is healthy, or at once when its
//! container already runs on that host (it was started before; a changed
//! spec then recreates it in place). Once handed out, a service stays in
//! the desired set: a halted rollout (a failure or a timeout) hands out
//! nothing new but tears nothing down.

use std::collections::{BTreeMap, BTreeSet};

use mesh_proto::spec::spec_hash;
use mesh_proto::v1::{
    ContainerFailure, ContainerSpec, ContainerState, ContainerStatus, HealthState, Hold,
    ServicePhase, ServiceProgress,
};

/// One service of the applied topology, with its placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub service: String,
    pub group: String,
    /// None when its group could not be placed.
    pub host: Option<String>,
    pub depends_on: Vec<String>,
    pub spec: ContainerSpec,
}

/// What the agents last reported, by host.
pub type Observed = BTreeMap<String, Vec<ContainerStatus>>;

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// For every managed host, the containers it should run (by name).
    pub desired: BTreeMap<String, Vec<ContainerSpec>>,
    /// One entry per planned service, in plan order.
    pub progress: Vec<ServiceProgress>,
    /// Services handed out so far (the input set plus this step's).
    pub released: BTreeSet<String>,
    /// Every placed service is healthy (unplaced ones are reported apart).
    pub complete: bool,
    /// Some handed-out service failed.
    pub failed: bool,
}

/// A reported container's verdict for the rollout.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// No container, and no failed attempt at this spec.
    Absent,
    /// The agent could not create this very spec (e.g. image missing).
    CreateFailed(String),
    Present {
        current: bool,
        healthy: bool,
        failure: Option<String>,
        /// An operator holds it (stopped, paused or killed): not healthy,
        /// and not a failure of the rollout.
        held: Hold,
    },
}

fn has_health_check(spec: &ContainerSpec) -> bool {
    spec.health.as_ref().is_some_and(|h| h.probe.is_some())
}

fn seen(p: &Planned, host: &str, observed: &Observed) -> Seen {
    let Some(status) = observed
        .get(host)
        .and_then(|list| list.iter().find(|c| c.name == p.spec.name))
    else {
        return Seen::Absent;
    };
    let want = spec_hash(&p.spec);
    if status.spec_hash.is_empty() {
        // No container exists: the row is the agent's attempt at a spec.
        let attempted_this = status.desired_spec_hash == want;
        let pending = matches!(
            status.failure(),
            ContainerFailure::None | ContainerFailure::NotCreatedYet
        );
        return if attempted_this && !pending {
            Seen::CreateFailed(status.error.clone())
        } else {
            Seen::Absent
        };
    }
    let state = ContainerState::try_from(status.state).unwrap_or(ContainerState::Unspecified);
    let health = HealthState::try_from(status.health).unwrap_or(HealthState::Unspecified);
    let current = status.spec_hash == want;
    let healthy = current
        && state == ContainerState::Running
        && if has_health_check(&p.spec) {
            health == HealthState::Healthy
        } else {
            true
        };
    let held = status.hold();
    let healthy = healthy && held == Hold::None;
    let failure = if !current || held != Hold::None {
        None
    } else if status.crash_looping {
        Some(format!(
            "crash loop (last exit code {})",
            status
                .last_exit_code
                .map_or("unknown".to_string(), |c| c.to_string())
        ))
    } else if !status.error.is_empty() {
        Some(status.error.clone())
    } else if health == HealthState::Unhealthy {
        Some("health check failing".into())
    } else if state == ContainerState::Error {
        Some("container in error state".into())
    } else {
        None
    };
    Seen::Present {
        current,
        healthy,
        failure,
        held,
    }
}

/// Services that can never start: unplaced, or depending (transitively)
/// on one that is. Dependencies are acyclic (validation refuses cycles);
/// the loop is bounded anyway.
fn blocked(planned: &[Planned]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = planned
        .iter()
        .filter(|p| p.host.is_none())
        .map(|p| {
            (
                p.service.clone(),
                format!("group {} is not placed", p.group),
            )
        })
        .collect();
    let known: BTreeSet<&str> = planned.iter().map(|p| p.service.as_str()).collect();
    for _ in 0..=planned.len() {
        let mut grew = false;
        for p in planned {
            if out.contains_key(&p.service) {
                continue;
            }
            let why = p.depends_on.iter().find_map(|d| {
                if !known.contains(d.as_str()) {
                    Some(format!("depends on {d}, which is not in the topology"))
                } else if out.contains_key(d) {
                    Some(format!("depends on {d}, which cannot start"))
                } else {
                    None
                }
            });
            if let Some(why) = why {
                out.insert(p.service.clone(), why);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    out
}

/// One step of the rollout. `hosts` are the hosts the topology manages:
/// each gets a desired set, empty when nothing of it belongs there.
pub fn step(
    planned: &[Planned],
    hosts: &[String],
    observed: &Observed,
    released: &BTreeSet<String>,
    halted: bool,
    elapsed_ms: u64,
) -> Step {
    let blocked = blocked(planned);
    let healthy: BTreeSet<&str> = planned
        .iter()
        .filter(|p| {
            p.host.as_deref().is_some_and(|h| {
                matches!(seen(p, h, observed), Seen::Present { healthy: true, .. })
            })
        })
        .map(|p| p.service.as_str())
        .collect();
    let mut out_released = released.clone();
    let mut progress = Vec::with_capacity(planned.len());
    let mut desired: BTreeMap<String, Vec<ContainerSpec>> =
        hosts.iter().map(|h| (h.clone(), Vec::new())).collect();
    let (mut complete, mut failed) = (true, false);
    for p in planned {
        let mut row = ServiceProgress {
            service: p.service.clone(),
            group: p.group.clone(),
            host: p.host.clone().unwrap_or_default(),
            phase: ServicePhase::Unspecified as i32,
            waiting_on: Vec::new(),
            message: String::new(),
            elapsed_ms,
        };
        let Some(host) = p.host.as_deref() else {
            row.phase = ServicePhase::Blocked as i32;
            row.message = blocked.get(&p.service).cloned().unwrap_or_default();
            progress.push(row);
            continue;
        };
        if let Some(why) = blocked.get(&p.service) {
            row.phase = ServicePhase::Blocked as i32;
            row.message = why.clone();
            progress.push(row);
            continue;
        }
        let observed_here = seen(p, host, observed);
        let waiting_on: Vec<String> = p
            .depends_on
            .iter()
            .filter(|d| !healthy.contains(d.as_str()))
            .cloned()
            .collect();
        let release = released.contains(&p.service)
            || observed_here != Seen::Absent
            || (!halted && waiting_on.is_empty());
        if !release {
            complete = false;
            row.phase = ServicePhase::Waiting as i32;
            row.message = if halted {
                "rollout stopped".into()
            } else {
                format!("waiting for {}", waiting_on.join(", "))
            };
            row.waiting_on = waiting_on;
            progress.push(row);
            continue;
        }
        out_released.insert(p.service.clone());
        if let Some(set) = desired.get_mut(host) {
            set.push(p.spec.clone());
        }
        match observed_here {
            Seen::CreateFailed(why) => {
                failed = true;
                complete = false;
                row.phase = ServicePhase::Failed as i32;
                row.message = why;
            }
            Seen::Present { healthy: true, .. } => row.phase = ServicePhase::Healthy as i32,
            Seen::Present {
                failure: Some(why), ..
            } => {
                failed = true;
                complete = false;
                row.phase = ServicePhase::Failed as i32;
                row.message = why;
            }
            Seen::Present { held, .. } if held != Hold::None => {
                complete = false;
                row.phase = ServicePhase::Starting as i32;
                row.message = format!(
                    "held ({}) by an operator; `meshctl start {host} {}` lifts it",
                    hold_word(held),
                    p.spec.name
                );
            }
            Seen::Present { current: false, .. } => {
                complete = false;
                row.phase = ServicePhase::Starting as i32;
                row.message = "being recreated with its new spec".into();
            }
            _ => {
                complete = false;
                row.phase = ServicePhase::Starting as i32;
                row.message = if has_health_check(&p.spec) {
                    "started; waiting for its health check".into()
                } else {
                    "started; waiting for it to run".into()
                };
            }
        }
        progress.push(row);
    }
    for set in desired.values_mut() {
        set.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Step {
        desired,
        progress,
        released: out_released,
        complete,
        failed,
    }
}

fn hold_word(h: Hold) -> &'static str {
    match h {
        Hold::None => "none",
        Hold::Stopped => "stopped",
        Hold::Paused => "paused",
        Hold::Killed => "killed",
    }
}

/// Same containers, whatever their order.
pub fn same_set(a: &[ContainerSpec], b: &[ContainerSpec]) -> bool {
    let key = |s: &[ContainerSpec]| {
        let mut v: Vec<(String, String)> =
            s.iter().map(|c| (c.name.clone(), spec_hash(c))).collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

pub mod controller;

#[cfg(test)]
mod tests;
