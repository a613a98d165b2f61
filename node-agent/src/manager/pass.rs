//! One reconcile pass: read Podman, plan, act, check health, report.

use std::time::{Duration, Instant};

use futures::future::join_all;
use mesh_proto::v1::ContainerSpec;
use tracing::Instrument;

use super::Manager;
use crate::containers::lifecycle::{Health, State};
use crate::containers::reconcile::{self, Action};
use crate::containers::restart::{Decision, RestartPolicy};
use crate::containers::spec::container_name;
use crate::health::{probe, HealthTracker, Timing};
use crate::runtime::{ContainerRuntime, ObservedContainer};

/// Images change rarely; re-read them this often.
const IMAGES_EVERY: Duration = Duration::from_secs(30);

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    pub async fn pass(&mut self) {
        let now = Instant::now();
        let raw = match self.runtime.list(&self.config.mesh).await {
            Ok(raw) => raw,
            Err(e) => {
                let text = e.to_string();
                if self.runtime_error.as_ref() != Some(&text) {
                    tracing::warn!(error = %text, "container runtime unavailable; nothing changed");
                    self.runtime_error = Some(text.clone());
                }
                self.publish_unavailable(text);
                return;
            }
        };
        if self.runtime_error.take().is_some() {
            tracing::info!("container runtime available again");
        }
        if self
            .images_refreshed
            .is_none_or(|t| now.duration_since(t) >= IMAGES_EVERY)
        {
            self.refresh_images().await;
        }
        let Some(desired) = self.desired.clone() else {
            self.publish(&raw, None);
            return;
        };
        let observed: Vec<_> = raw.iter().filter_map(ObservedContainer::owned).collect();
        let plan = reconcile::plan(&self.config.mesh, &desired.containers, &observed);
        let acted = !plan.is_noop() || !plan.exited.is_empty();
        for action in plan.actions {
            match action {
                Action::Create(spec) => self.create_and_start(&spec, desired.generation, now).await,
                Action::Recreate(spec) => {
                    tracing::info!(group = %spec.group, service = %spec.name, "spec changed; recreating");
                    self.writes += 1;
                    if let Err(e) = self.runtime.remove(&container_name(&spec.name)).await {
                        self.tracked
                            .entry(spec.name.clone())
                            .or_default()
                            .failed(e.to_string(), now);
                        continue;
                    }
                    self.tracked.remove(&spec.name);
                    self.create_and_start(&spec, desired.generation, now).await;
                }
                Action::Remove(name) => self.remove_in_background(name),
            }
        }
        for name in plan.to_start {
            self.start(&name, now).await;
        }
        for (name, exit_code) in plan.exited {
            self.handle_exit(&desired.containers, &name, exit_code, now)
                .await;
        }
        if !acted {
            // Nothing changed on the host: no second read.
            self.check_health(&desired.containers, &raw).await;
            self.publish(&raw, Some(&desired));
            self.observed = raw;
            return;
        }
        // Re-read so the report shows what this pass did.
        match self.runtime.list(&self.config.mesh).await {
            Ok(after) => {
                self.check_health(&desired.containers, &after).await;
                self.publish(&after, Some(&desired));
                self.observed = after;
            }
            Err(e) => self.publish_unavailable(e.to_string()),
        }
    }

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

    fn remove_in_background(&mut self, name: String) {
        let removing = self.removing.clone();
        {
            let mut set = removing.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(name.clone()) {
                return; // already on its way out
            }
        }
        tracing::info!(service = %name, "no longer desired; removing");
        self.writes += 1;
        self.tracked.remove(&name);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.remove(&container_name(&name)).await {
                tracing::warn!(service = %name, error = %e, "remove failed; will retry");
            }
            removing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        });
    }

    async fn refresh_images(&mut self) {
        match self.runtime.images().await {
            Ok(images) => {
                self.images = images
                    .into_iter()
                    .map(|i| mesh_proto::v1::ImageSummary {
                        id: i.id,
                        names: i.names,
                        size_bytes: i.size_bytes,
                    })
                    .collect();
                self.images_refreshed = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot list images"),
        }
    }

    async fn create_and_start(&mut self, spec: &ContainerSpec, generation: u64, now: Instant) {
        let tracked = self.tracked.entry(spec.name.clone()).or_default();
        if !tracked.may_try(now) {
            return;
        }
        self.writes += 1;
        let span = tracing::info_span!("create", group = %spec.group, service = %spec.name);
        let created = self
            .runtime
            .create(&self.config.mesh, spec, generation)
            .instrument(span)
            .await;
        match created {
            Ok(_) => {
                tracing::info!(group = %spec.group, service = %spec.name, "created");
                self.images_refreshed = None;
                self.start(&spec.name, now).await;
            }
            Err(e) => {
                tracing::warn!(group = %spec.group, service = %spec.name, error = %e, "create failed");
                self.tracked
                    .entry(spec.name.clone())
                    .or_default()
                    .failed(e.to_string(), now);
            }
        }
    }

    pub(super) async fn start(&mut self, name: &str, now: Instant) {
        let health_timing = self
            .desired
            .as_ref()
            .and_then(|d| d.containers.iter().find(|s| s.name == name))
            .and_then(|s| s.health.as_ref())
            .map(Timing::of);
        let tracked = self.tracked.entry(name.to_string()).or_default();
        if tracked.held || !tracked.may_try(now) {
            return;
        }
        self.writes += 1;
        match self.runtime.start(&container_name(name)).await {
            Ok(()) => {
                tracing::info!(service = %name, "started");
                tracked.succeeded();
                tracked.restart.started(now);
                tracked.next_restart = None;
                tracked.stay_stopped = false;
                tracked.healthy_since_unix_ms = 0;
                tracked.ip = None;
                tracked.health = health_timing.map(|t| HealthTracker::new(t, now));
            }
            Err(e) => {
                tracing::warn!(service = %name, error = %e, "start failed");
                tracked.failed(e.to_string(), now);
            }
        }
    }

    async fn handle_exit(
        &mut self,
        specs: &[ContainerSpec],
        name: &str,
        exit_code: i64,
        now: Instant,
    ) {
        let policy = specs
            .iter()
            .find(|s| s.name == name)
            .map(|s| RestartPolicy::of(s.restart()))
            .unwrap_or_default();
        let tracked = self.tracked.entry(name.to_string()).or_default();
        if tracked.held || tracked.stay_stopped {
            return;
        }
        if tracked.next_restart.is_none() {
            tracked.health = None;
            match tracked.restart.exited(policy, exit_code, now) {
                Decision::RestartAt(at) => {
                    tracing::warn!(service = %name, exit_code, restart_in = ?at.saturating_duration_since(now), "container exited; restarting with backoff");
                    tracked.next_restart = Some(at);
                }
                Decision::StayStopped => {
                    tracing::info!(service = %name, exit_code, "container exited; policy keeps it stopped");
                    tracked.stay_stopped = true;
                }
            }
            if exit_code != 0 {
                tracked.error = format!("exited with code {exit_code}");
                if let Ok(lines) = self.runtime.logs(&container_name(name), 20).await {
                    if let Some(t) = self.tracked.get_mut(name) {
                        t.last_logs = lines;
                    }
                }
            }
        }
        let due = self
            .tracked
            .get(name)
            .and_then(|t| t.next_restart)
            .is_some_and(|at| now >= at);
        if due {
            self.start(name, now).await;
        }
    }

    async fn check_health(&mut self, specs: &[ContainerSpec], raw: &[ObservedContainer]) {
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
                let _span = tracing::info_span!("health", service = %name).entered();
                tracing::info!(from = ?before, to = ?after, detail = %outcome.message, "health changed");
            }
            match after {
                Health::Healthy => {
                    if tracked.healthy_since_unix_ms == 0 {
                        tracked.healthy_since_unix_ms = unix_ms;
                    }
                    tracked.restart.stable();
                    if tracked.error.starts_with("unhealthy") {
                        tracked.error.clear();
                    }
                }
                Health::Unhealthy => {
                    tracked.healthy_since_unix_ms = 0;
                    tracked.error = format!("unhealthy: {}", outcome.message);
                }
                _ => {}
            }
        }
    }
}
