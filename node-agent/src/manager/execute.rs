//! Runs what a container's machine asked for: quick actions (create,
//! start, resume, logs) in the pass, slow ones (stop, kill, pause,
//! restart, remove) in the background, whose ends come back as
//! [`Finished`] and are taken by [`Manager::finish`].

use std::time::Duration;

use mesh_proto::v1::{ContainerFailure, ContainerSpec};
use tokio::time::Instant;
use tracing::Instrument;

use super::tracked::{Problem, Tracked};
use super::{Finished, Manager};
use crate::containers::machine::{self, Action};
use crate::containers::spec::container_name;
use crate::health::{HealthTracker, Timing};
use crate::runtime::{ContainerRuntime, RuntimeError};

/// Podman's stop timeout: SIGTERM, then SIGKILL this much later.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines kept after a crash.
const CRASH_LOG_LINES: usize = 20;

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    /// Runs `actions` for the desired `spec` in order, stopping at the
    /// first failure; returns its text.
    pub(super) async fn execute(
        &mut self,
        spec: &ContainerSpec,
        actions: Vec<Action>,
        generation: u64,
        now: Instant,
    ) -> Option<String> {
        let name = spec.name.as_str();
        let podman = container_name(name);
        for action in actions {
            // A container on a managed volume never starts without it (it
            // would see the empty mount point).
            if matches!(action, Action::Start | Action::Restart) {
                if let Err(waiting) = self.resolve_mounts(spec) {
                    if let Some(t) = self.tracked.get_mut(name) {
                        t.problem = Some(Problem {
                            failure: ContainerFailure::NotCreatedYet,
                            text: waiting.clone(),
                        });
                    }
                    return Some(waiting);
                }
            }
            if action.is_slow() {
                if action == Action::Remove {
                    tracing::info!("spec changed; recreating");
                }
                self.spawn(name, action);
                continue;
            }
            let result = match action {
                Action::Create => {
                    let resolved = match self.resolve_mounts(spec) {
                        Ok(r) => r,
                        Err(waiting) => {
                            // Not a failure: created once its volume is attached.
                            if let Some(t) = self.tracked.get_mut(name) {
                                t.problem = Some(Problem {
                                    failure: ContainerFailure::NotCreatedYet,
                                    text: waiting.clone(),
                                });
                            }
                            return Some(waiting);
                        }
                    };
                    self.writes += 1;
                    let created = self
                        .runtime
                        .create(&self.config.mesh, &resolved, generation);
                    created.await.map(|_| ())
                }
                Action::Start => {
                    self.writes += 1;
                    self.runtime.start(&podman).await
                }
                Action::Unpause => {
                    self.writes += 1;
                    self.runtime.unpause(&podman).await
                }
                Action::FetchLogs => {
                    // Asked for after a crash: keep its code and last words.
                    let logs = self.runtime.logs(&podman, CRASH_LOG_LINES).await;
                    if let Some(t) = self.tracked.get_mut(name) {
                        let code = t.machine.restart.last_exit_code.unwrap_or_default();
                        t.problem = Some(Problem {
                            failure: ContainerFailure::Exited,
                            text: format!("exited with code {code}"),
                        });
                        if let Ok(lines) = logs {
                            t.last_logs = lines;
                        }
                    }
                    Ok(())
                }
                _ => Ok(()),
            };
            let error = result.as_ref().err().map(RuntimeError::to_string);
            self.finish_action(name, action, result, now);
            if error.is_some() {
                return error;
            }
        }
        None
    }

    /// A container that is not desired: only its removal is ever asked.
    pub(super) fn execute_undesired(&mut self, name: &str, actions: Vec<Action>) -> Option<String> {
        for action in actions {
            if action == Action::Remove {
                tracing::info!("no longer desired; removing");
            }
            self.spawn(name, action);
        }
        None
    }

    fn spawn(&mut self, name: &str, action: Action) {
        self.writes += 1;
        let runtime = self.runtime.clone();
        let finished = self.finished_tx.clone();
        let name = name.to_string();
        let podman = container_name(&name);
        let work = async move {
            let result = match action {
                Action::Stop => runtime.stop(&podman, STOP_TIMEOUT).await,
                Action::Kill => runtime.kill(&podman).await,
                Action::Pause => runtime.pause(&podman).await,
                Action::Remove => runtime.remove(&podman).await,
                Action::Restart => {
                    // A stop that fails (already stopped) does not stop the start.
                    if let Err(e) = runtime.stop(&podman, STOP_TIMEOUT).await {
                        tracing::debug!(error = %e, "stop before restart");
                    }
                    runtime.start(&podman).await
                }
                Action::Create | Action::Start | Action::Unpause | Action::FetchLogs => Ok(()),
            };
            let _ = finished.send(Finished {
                name,
                action,
                result,
            });
        };
        tokio::spawn(work.in_current_span());
    }

    /// A background operation ended: the machine takes its result, and the
    /// commands waiting for it get their replies.
    pub fn finish(&mut self, finished: Finished, now: Instant) {
        let Finished {
            name,
            action,
            result,
        } = finished;
        let error = result.as_ref().err().map(RuntimeError::to_string);
        self.finish_action(&name, action, result, now);
        let desired = self.is_desired(&name);
        let Some(t) = self.tracked.get_mut(&name) else {
            return;
        };
        if !t.machine.phase.is_under_way() {
            t.reply(error.as_deref());
        }
        if !desired && action == Action::Remove && error.is_none() {
            self.tracked.remove(&name);
        }
    }

    fn is_desired(&self, name: &str) -> bool {
        self.desired
            .as_ref()
            .is_some_and(|d| d.containers.iter().any(|s| s.name == name))
    }

    fn health_timing(&self, name: &str) -> Option<Timing> {
        let desired = self.desired.as_ref()?;
        let spec = desired.containers.iter().find(|s| s.name == name)?;
        spec.health.as_ref().map(Timing::of)
    }

    /// The machine and the bookkeeping after `action` on `name` ended.
    fn finish_action(
        &mut self,
        name: &str,
        action: Action,
        result: crate::runtime::Result<()>,
        now: Instant,
    ) {
        let timing = self.health_timing(name);
        let Some(t) = self.tracked.get_mut(name) else {
            return;
        };
        t.machine = machine::done(&t.machine, action, result.clone(), now);
        match (action, result) {
            (Action::FetchLogs, _) => {}
            (_, Err(e)) => {
                tracing::warn!(action = ?action, error = %e, "failed");
                t.problem = Some(Problem::runtime(&e));
            }
            (Action::Create, Ok(())) => {
                tracing::info!("created");
                t.problem = None;
                self.images_refreshed = None;
            }
            (Action::Start | Action::Restart, Ok(())) => {
                tracing::info!(action = ?action, "started");
                t.problem = None;
                t.healthy_since_unix_ms = 0;
                t.ip = None;
                t.health = timing.map(|timing| HealthTracker::new(timing, now));
            }
            (Action::Remove, Ok(())) => {
                // A new container is a new record; a command's hold stays.
                let fresh = Tracked {
                    command_hold: t.command_hold,
                    waiting: std::mem::take(&mut t.waiting),
                    ..Tracked::default()
                };
                *t = fresh;
            }
            (Action::Unpause, Ok(())) => tracing::info!("resumed"),
            (Action::Stop | Action::Kill | Action::Pause, Ok(())) => {
                tracing::info!(action = ?action, "held");
                t.problem = None;
            }
        }
    }
}
