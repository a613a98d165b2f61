//! Health checks the agent runs itself, between and within passes: due
//! probes run concurrently; a verdict that changes is logged and reported,
//! and a healthy run resets the restart backoff.

use futures::future::join_all;
use mesh_proto::v1::{ContainerFailure, ContainerSpec};
use tokio::time::Instant;

use super::tracked::Problem;
use super::Manager;
use crate::containers::lifecycle::{Health, State};
use crate::containers::machine::Phase;
use crate::containers::spec::container_name;
use crate::health::{probe, HealthTracker, Timing};
use crate::runtime::{ContainerRuntime, ObservedContainer};

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    /// Health checks that are due, against what the last pass saw; no
    /// Podman reads unless a probe needs the container's address.
    pub async fn health_pass(&mut self) {
        let Some(desired) = self.desired.clone() else {
            return;
        };
        if self.observed.is_empty() {
            return;
        }
        let observed = std::mem::take(&mut self.observed);
        let before: Vec<i32> = self.health_states();
        self.check_health(&desired.containers, &observed).await;
        if self.health_states() != before {
            self.publish(&observed, Some(&desired));
        }
        self.observed = observed;
    }

    fn health_states(&self) -> Vec<i32> {
        self.tracked
            .values()
            .map(|t| t.health.as_ref().map_or(0, |h| h.health() as i32 + 1))
            .collect()
    }

    pub(super) async fn check_health(
        &mut self,
        specs: &[ContainerSpec],
        raw: &[ObservedContainer],
    ) {
        let now = Instant::now();
        let mut due = Vec::new();
        for spec in specs {
            let (Some(check), Some(probe)) = (
                &spec.health,
                spec.health.as_ref().and_then(|h| h.probe.clone()),
            ) else {
                continue;
            };
            let running = raw
                .iter()
                .filter_map(ObservedContainer::owned)
                .any(|o| o.name == spec.name && o.state == State::Running);
            if !running {
                continue;
            }
            // Adopted containers (the agent restarted) get tracked here.
            let tracked = self.tracked.entry(spec.name.clone()).or_default();
            // Being held, restarted or removed: no verdict on the way down.
            let phase = &tracked.machine.phase;
            if phase.is_under_way() || matches!(phase, Phase::Held(_)) {
                continue;
            }
            let tracker = tracked
                .health
                .get_or_insert_with(|| HealthTracker::new(Timing::of(check), now));
            if tracker.is_due(now) {
                due.push((
                    spec.name.clone(),
                    probe,
                    tracker.timing().timeout,
                    tracked.ip,
                ));
            }
        }
        if due.is_empty() {
            return;
        }
        let runtime = &self.runtime;
        let results = join_all(
            due.into_iter()
                .map(|(name, probe, timeout, ip)| async move {
                    let ip = match ip {
                        Some(ip) => Some(ip),
                        None => runtime.address(&container_name(&name)).await.ok().flatten(),
                    };
                    let outcome =
                        probe::run(&probe, runtime, &container_name(&name), ip, timeout).await;
                    (name, ip, outcome)
                }),
        )
        .await;
        let now = Instant::now();
        let unix_ms = crate::manager::report::unix_ms();
        for (name, ip, outcome) in results {
            let Some(tracked) = self.tracked.get_mut(&name) else {
                continue;
            };
            tracked.ip = ip;
            let Some(tracker) = tracked.health.as_mut() else {
                continue;
            };
            let before = tracker.health();
            let after = tracker.record(outcome.passed, outcome.message.clone(), now);
            if after != before {
                let group = specs
                    .iter()
                    .find(|s| s.name == name)
                    .map_or("", |s| s.group.as_str());
                let _span =
                    tracing::info_span!("health", group = %group, service = %name).entered();
                tracing::info!(from = ?before, to = ?after, detail = %outcome.message, "health changed");
            }
            match after {
                Health::Healthy => {
                    if tracked.healthy_since_unix_ms == 0 {
                        tracked.healthy_since_unix_ms = unix_ms;
                    }
                    tracked.machine.restart.stable();
                    if tracked
                        .problem
                        .as_ref()
                        .is_some_and(|p| p.failure == ContainerFailure::Unhealthy)
                    {
                        tracked.problem = None;
                    }
                }
                Health::Unhealthy => {
                    tracked.healthy_since_unix_ms = 0;
                    tracked.problem = Some(Problem {
                        failure: ContainerFailure::Unhealthy,
                        text: format!("unhealthy: {}", outcome.message),
                    });
                }
                _ => {}
            }
        }
    }
}
