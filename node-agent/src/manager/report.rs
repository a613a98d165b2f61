//! The container report carried by heartbeats: what runs, how healthy,
//! the machine's phase and the hold it applies, restarts, typed failures
//! and errors with their fix, and the images on the host.

use tokio::time::Instant;

use mesh_proto::v1::{
    ContainerFailure, ContainerState, ContainerStatus, DesiredContainers, HealthState,
};

use super::tracked::hold_proto;
use super::Manager;
use crate::containers::lifecycle::{Health, State};
use crate::containers::machine::Phase;
use crate::runtime::{ContainerRuntime, ObservedContainer};

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn state_proto(state: State) -> ContainerState {
    match state {
        State::Created => ContainerState::Created,
        State::Starting => ContainerState::Starting,
        State::Running => ContainerState::Running,
        State::Paused => ContainerState::Paused,
        State::Stopping => ContainerState::Stopping,
        State::Stopped => ContainerState::Stopped,
        State::Error => ContainerState::Error,
        State::Deleted => ContainerState::Deleted,
    }
}

pub fn health_proto(health: Health) -> HealthState {
    match health {
        Health::None => HealthState::None,
        Health::Starting => HealthState::Starting,
        Health::Healthy => HealthState::Healthy,
        Health::Unhealthy => HealthState::Unhealthy,
    }
}

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    pub(super) fn publish_unavailable(&self, error: String) {
        self.report.send_modify(|r| {
            r.runtime_available = false;
            r.runtime_error = error;
        });
    }

    pub(super) fn publish(&self, raw: &[ObservedContainer], desired: Option<&DesiredContainers>) {
        let now = Instant::now();
        let now_ms = unix_ms();
        let observed: Vec<_> = raw
            .iter()
            .filter_map(|c| c.owned().map(|o| (o, c)))
            .collect();
        let mut containers = Vec::new();
        let specs = desired.map(|d| d.containers.as_slice()).unwrap_or_default();
        for spec in specs {
            let found = observed.iter().find(|(o, _)| o.name == spec.name);
            let tracked = self.tracked.get(&spec.name);
            // Not there at all is an error until it is created (the error
            // field says why, e.g. a missing image).
            let state = found.map_or(State::Error, |(o, _)| o.state);
            let health = match (&spec.health, tracked.and_then(|t| t.health.as_ref())) {
                (None, _) => Health::None,
                (Some(_), Some(h)) if state == State::Running => h.health(),
                (Some(_), _) => Health::Starting,
            };
            let problem = tracked.and_then(|t| t.problem.clone());
            let (failure, error) = match problem {
                Some(p) => (p.failure, p.text),
                None if found.is_none() => (
                    ContainerFailure::NotCreatedYet,
                    mesh_proto::spec::NOT_CREATED_YET.to_string(),
                ),
                None => (ContainerFailure::None, String::new()),
            };
            let machine = tracked.map(|t| &t.machine);
            let restart = machine.map(|m| &m.restart);
            let hold = tracked.map_or_else(
                || super::tracked::hold_of(spec.hold()),
                |t| t.want(spec).hold,
            );
            let next_restart_unix_ms = match machine.map(|m| &m.phase) {
                Some(Phase::BackingOff { until, .. }) => {
                    now_ms + until.saturating_duration_since(now).as_millis() as i64
                }
                _ => 0,
            };
            containers.push(ContainerStatus {
                failure: failure as i32,
                phase: machine
                    .map_or(Phase::Pending.label(), |m| m.phase.label())
                    .into(),
                hold: hold_proto(hold) as i32,
                name: spec.name.clone(),
                group: spec.group.clone(),
                service: spec.service.clone(),
                image: spec.image.clone(),
                state: state_proto(state) as i32,
                health: health_proto(health) as i32,
                restart_count: restart.map_or(0, |r| r.total),
                last_exit_code: restart.and_then(|r| r.last_exit_code),
                crash_looping: restart.is_some_and(|r| r.is_crash_looping()),
                error,
                last_logs: tracked.map(|t| t.last_logs.clone()).unwrap_or_default(),
                generation: found.map_or(0, |(o, _)| o.generation),
                spec_hash: found.map(|(o, _)| o.spec_hash.clone()).unwrap_or_default(),
                desired_spec_hash: mesh_proto::spec::spec_hash(spec),
                healthy_since_unix_ms: tracked.map_or(0, |t| t.healthy_since_unix_ms),
                next_restart_unix_ms,
            });
        }
        // Owned containers we are not told about (no desired set yet): shown as they are.
        if desired.is_none() {
            for (o, c) in &observed {
                containers.push(ContainerStatus {
                    name: o.name.clone(),
                    image: c.image.clone(),
                    state: state_proto(o.state) as i32,
                    health: HealthState::Unspecified as i32,
                    generation: o.generation,
                    spec_hash: o.spec_hash.clone(),
                    error: "adopted; waiting for a desired set".into(),
                    ..Default::default()
                });
            }
        }
        let images = self.images.clone();
        self.report.send_modify(|r| {
            r.runtime_available = true;
            r.runtime_error.clear();
            r.desired_generation = desired.map_or(0, |d| d.generation);
            r.containers = containers;
            r.images = images;
        });
    }
}
