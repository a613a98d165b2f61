//! The rollout controller over time: [`advance`] takes the controller's
//! state, the agents' latest reports and `now`, and returns the new state,
//! the events for whoever follows the rollout and the desired sets to push.
//! Pure: the caller (`topology_state`) only executes the pushes and
//! forwards the events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mesh_proto::v1::{
    rollout_event, ContainerSpec, RolloutEvent, RolloutSummary, ServicePhase, ServiceProgress,
    UnplacedGroup,
};

use super::{step, Observed, Planned, Step};

/// A desired set to hand to a host.
pub type Push = (String, Vec<ContainerSpec>);

/// One applied topology's rollout.
#[derive(Clone, Debug)]
pub struct Controller {
    pub planned: Vec<Planned>,
    /// The hosts the topology manages.
    pub hosts: Vec<String>,
    pub unplaced: Vec<UnplacedGroup>,
    pub started: Instant,
    pub timeout: Duration,
    /// Services handed out so far.
    pub released: BTreeSet<String>,
    /// Why it stopped handing out (a failure or the timeout).
    pub halted: Option<String>,
    /// Set once, when the rollout ends.
    pub summary: Option<RolloutSummary>,
    pub last_step: Option<Step>,
    /// `[placement] copy_images`: a service whose image is missing on its host waits for the
    /// copy (`state::image_sync`) instead of failing the rollout; the timeout still bounds it.
    pub wait_for_images: bool,
    /// service -> (phase, message) as last announced.
    announced: BTreeMap<String, (i32, String)>,
    /// Services already healthy when this rollout began.
    pub unchanged: BTreeSet<String>,
    first: bool,
}

impl Controller {
    pub fn new(
        planned: Vec<Planned>,
        hosts: Vec<String>,
        unplaced: Vec<UnplacedGroup>,
        started: Instant,
        timeout: Duration,
    ) -> Controller {
        Controller {
            planned,
            hosts,
            unplaced,
            started,
            timeout,
            released: BTreeSet::new(),
            halted: None,
            summary: None,
            last_step: None,
            wait_for_images: false,
            announced: BTreeMap::new(),
            unchanged: BTreeSet::new(),
            first: true,
        }
    }

    /// The last event of a rollout that a newer apply replaces, unless it
    /// had ended already.
    pub fn replaced(&self, now: Instant) -> Option<RolloutEvent> {
        if self.summary.is_some() {
            return None;
        }
        Some(summary_event(RolloutSummary {
            ok: false,
            message: "replaced by a newer apply".into(),
            elapsed_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            ..Default::default()
        }))
    }

    /// The services the last step found healthy.
    pub fn healthy(&self) -> BTreeSet<String> {
        self.last_step
            .as_ref()
            .map(|s| {
                s.progress
                    .iter()
                    .filter(|r| r.phase == ServicePhase::Healthy as i32)
                    .map(|r| r.service.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `reports` with every "image missing" creation failure read as not created yet: the image
/// is being copied there.
fn images_awaited(reports: &Observed) -> Observed {
    let mut out = reports.clone();
    for list in out.values_mut() {
        for c in list.iter_mut() {
            if c.spec_hash.is_empty()
                && c.failure() == mesh_proto::v1::ContainerFailure::ImageMissing
            {
                c.failure = mesh_proto::v1::ContainerFailure::NotCreatedYet as i32;
            }
        }
    }
    out
}

fn summary_event(summary: RolloutSummary) -> RolloutEvent {
    RolloutEvent {
        body: Some(rollout_event::Body::Summary(summary)),
    }
}

/// One rollout step at `now` against `reports`, which hold only hosts whose
/// agent reported with a working runtime: the others get no desired set
/// (a host not heard from yet, e.g. after a coordinator restart, must not
/// get a partial one) and nothing is released onto them.
pub fn advance(
    mut c: Controller,
    reports: &Observed,
    now: Instant,
) -> (Controller, Vec<RolloutEvent>, Vec<Push>) {
    let elapsed = now.saturating_duration_since(c.started);
    let elapsed_ms = elapsed.as_millis() as u64;
    let waiting;
    let reports = if c.wait_for_images {
        waiting = images_awaited(reports);
        &waiting
    } else {
        reports
    };
    let step = step(
        &c.planned,
        &c.hosts,
        reports,
        &c.released,
        c.halted.is_some(),
        elapsed_ms,
    );
    if c.first {
        c.first = false;
        c.unchanged = step
            .progress
            .iter()
            .filter(|r| r.phase == ServicePhase::Healthy as i32)
            .map(|r| r.service.clone())
            .collect();
    }
    let host_of = |service: &str| {
        c.planned
            .iter()
            .find(|p| p.service == service)
            .and_then(|p| p.host.clone())
    };
    c.released = step
        .released
        .iter()
        .filter(|s| c.released.contains(*s) || host_of(s).is_some_and(|h| reports.contains_key(&h)))
        .cloned()
        .collect();
    let pushes: Vec<Push> = step
        .desired
        .iter()
        .filter(|(h, _)| reports.contains_key(*h))
        .map(|(h, set)| (h.clone(), set.clone()))
        .collect();
    let mut events = Vec::new();
    for row in &step.progress {
        let key = (row.phase, row.message.clone());
        if c.announced.get(&row.service) != Some(&key) {
            c.announced.insert(row.service.clone(), key);
            events.push(RolloutEvent {
                body: Some(rollout_event::Body::Progress(row.clone())),
            });
        }
    }
    if c.summary.is_none() {
        let end = if step.failed {
            let failed: Vec<String> = step
                .progress
                .iter()
                .filter(|r| r.phase == ServicePhase::Failed as i32)
                .map(|r| format!("{} on {}: {}", r.service, r.host, r.message))
                .collect();
            Some(Some(format!("stopped: {}", failed.join("; "))))
        } else if step.complete {
            Some(None)
        } else if elapsed > c.timeout {
            Some(Some(format!(
                "stopped: timed out after {} s; raise it with --timeout",
                c.timeout.as_secs()
            )))
        } else {
            None
        };
        if let Some(halt) = end {
            c.halted = halt.clone();
            let summary = summarize(&c, &step, halt, elapsed_ms);
            c.summary = Some(summary.clone());
            events.push(summary_event(summary));
        }
    }
    c.last_step = Some(step);
    (c, events, pushes)
}

fn summarize(c: &Controller, step: &Step, halt: Option<String>, elapsed_ms: u64) -> RolloutSummary {
    let phase =
        |r: &ServiceProgress| ServicePhase::try_from(r.phase).unwrap_or(ServicePhase::Unspecified);
    let mut s = RolloutSummary {
        ok: false,
        message: String::new(),
        elapsed_ms,
        unplaced: c.unplaced.clone(),
        ..Default::default()
    };
    for r in &step.progress {
        match phase(r) {
            ServicePhase::Healthy if c.unchanged.contains(&r.service) => {
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
