//! The container report carried by heartbeats: what runs, how healthy,
//! restarts, errors with their fix, and the images on the host.

use std::time::Instant;

use mesh_proto::v1::{
    ContainerFailure, ContainerState, ContainerStatus, DesiredContainers, HealthState,
};

use super::Manager;
use crate::containers::lifecycle::{Health, State};
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
            let mut error = tracked.map(|t| t.error.clone()).unwrap_or_default();
            let mut failure = if error.is_empty() {
                ContainerFailure::None
            } else {
                ContainerFailure::Runtime
            };
            if found.is_none() && error.is_empty() {
                error = mesh_proto::spec::NOT_CREATED_YET.into();
                failure = ContainerFailure::NotCreatedYet;
            }
            containers.push(ContainerStatus {
                failure: failure as i32,
                phase: String::new(),
                hold: spec.hold,
                name: spec.name.clone(),
                group: spec.group.clone(),
                service: spec.service.clone(),
                image: spec.image.clone(),
                state: state_proto(state) as i32,
                health: health_proto(health) as i32,
                restart_count: tracked.map_or(0, |t| t.restart.total),
                last_exit_code: tracked.and_then(|t| t.restart.last_exit_code),
                crash_looping: tracked.is_some_and(|t| t.restart.is_crash_looping()),
                error,
                last_logs: tracked.map(|t| t.last_logs.clone()).unwrap_or_default(),
                generation: found.map_or(0, |(o, _)| o.generation),
                spec_hash: found.map(|(o, _)| o.spec_hash.clone()).unwrap_or_default(),
                desired_spec_hash: mesh_proto::spec::spec_hash(spec),
                healthy_since_unix_ms: tracked.map_or(0, |t| t.healthy_since_unix_ms),
                next_restart_unix_ms: tracked.and_then(|t| t.next_restart).map_or(0, |at| {
                    now_ms + at.saturating_duration_since(now).as_millis() as i64
                }),
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
