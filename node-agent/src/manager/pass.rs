//! One reconcile pass: read Podman, step every container's machine, run
//! the actions it asks for, check health, report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mesh_proto::v1::ContainerSpec;
use tokio::time::Instant;
use tracing::Instrument;

use super::Manager;
use crate::containers::machine::{self, Machine, Phase, Seen};
use crate::containers::reconcile::Observed;
use crate::containers::spec::{spec_hash, LABEL_GROUP, LABEL_NAME};
use crate::runtime::{ContainerRuntime, ObservedContainer};

/// Images change rarely, but a copy (`meshctl images copy`) or a `podman load` should show
/// in `meshctl images` and placement within seconds; one list call is cheap.
const IMAGES_EVERY: Duration = Duration::from_secs(5);

/// What the runtime shows for a desired (or undesired: `None`) container.
pub fn seen(spec: Option<&ContainerSpec>, observed: Option<&Observed>) -> Seen {
    match (spec, observed) {
        (_, None) => Seen::Absent,
        (Some(s), Some(o)) if o.spec_hash != spec_hash(s) => Seen::Stale(o.state),
        (_, Some(o)) => Seen::Current {
            state: o.state,
            exit_code: o.exit_code,
        },
    }
}

/// Says what a container's new phase means, once, as it is entered.
fn log_phase(before: &Machine, after: &Machine, now: Instant) {
    let exit_code = after.restart.last_exit_code.unwrap_or_default();
    match (&before.phase, &after.phase) {
        (a, b) if a.label() == b.label() => {}
        (_, Phase::BackingOff { until, attempt }) => tracing::warn!(
            exit_code,
            attempt,
            restart_in = ?until.saturating_duration_since(now),
            "container exited; restarting with backoff"
        ),
        (_, Phase::StayingStopped) => {
            tracing::info!(exit_code, "container exited; policy keeps it stopped")
        }
        (a, b) => tracing::debug!(from = a.label(), to = b.label(), "phase"),
    }
}

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    pub async fn pass(&mut self) {
        let now = Instant::now();
        while let Ok(finished) = self.finished_rx.try_recv() {
            self.finish(finished, now);
        }
        let raw = match self.runtime.list(&self.config.mesh).await {
            Ok(raw) => raw,
            Err(e) => {
                let text = e.to_string();
                if self.runtime_error.as_ref() != Some(&text) {
                    tracing::warn!(error = %text, "container runtime unavailable; nothing changed");
                    self.runtime_error = Some(text.clone());
                }
                for t in self.tracked.values_mut() {
                    if !t.machine.phase.is_under_way() {
                        t.reply(Some(&text));
                    }
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
        let mesh = self.config.mesh.clone();
        let observed: BTreeMap<String, Observed> = raw
            .iter()
            .filter_map(ObservedContainer::owned)
            .filter(|o| o.mesh == mesh)
            .map(|o| (o.name.clone(), o))
            .collect();
        let groups: BTreeMap<&str, &str> = raw
            .iter()
            .filter_map(|c| Some((c.labels.get(LABEL_NAME)?, c.labels.get(LABEL_GROUP)?)))
            .map(|(n, g)| (n.as_str(), g.as_str()))
            .collect();
        let specs: BTreeMap<&str, &ContainerSpec> = desired
            .containers
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let names: BTreeSet<String> = specs
            .keys()
            .map(|n| n.to_string())
            .chain(observed.keys().cloned())
            .chain(self.tracked.keys().cloned())
            .collect();
        let mut acted = false;
        for name in names {
            let spec = specs.get(name.as_str()).copied();
            let group = spec.map_or_else(
                || groups.get(name.as_str()).copied().unwrap_or_default(),
                |s| s.group.as_str(),
            );
            let span = tracing::info_span!("container", group = %group, service = %name);
            let entered = span.enter();
            let seen = seen(spec, observed.get(&name));
            let tracked = self.tracked.entry(name.clone()).or_default();
            let fenced = self.fenced_groups.contains(group);
            let want = spec.map(|s| {
                let mut w = tracked.want(s);
                if fenced {
                    // No lease for the group's volumes: killed, kept down.
                    w.hold = Some(crate::containers::machine::Hold::Killed);
                }
                w
            });
            let (machine, actions) = machine::next(&tracked.machine, seen, want, now);
            log_phase(&tracked.machine, &machine, now);
            tracked.machine = machine;
            if seen.is_down() {
                tracked.health = None;
            }
            if spec.is_none() && seen == Seen::Absent && !tracked.machine.phase.is_under_way() {
                tracked.reply(None);
                self.tracked.remove(&name);
                continue;
            }
            acted |= !actions.is_empty();
            drop(entered);
            let error = match spec {
                Some(spec) => {
                    self.execute(spec, actions, desired.generation, now)
                        .instrument(span.clone())
                        .await
                }
                None => span.in_scope(|| self.execute_undesired(&name, actions)),
            };
            if let Some(t) = self.tracked.get_mut(&name) {
                if !t.machine.phase.is_under_way() {
                    t.reply(error.as_deref());
                }
            }
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
}
