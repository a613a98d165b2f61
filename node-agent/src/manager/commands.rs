//! Operator commands on one container: stop, start, restart, pause,
//! resume, kill, logs. Stop, pause and kill hold the container where the
//! operator put it (the restart policy does not undo them); start, resume
//! and restart release it.

use std::time::Duration;

use tokio::time::Instant;

use mesh_proto::v1::{CommandAction, CommandResult, ContainerCommand};

use super::Manager;
use crate::containers::spec::container_name;
use crate::runtime::ContainerRuntime;

const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TAIL: usize = 100;

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    pub(super) async fn command(&mut self, command: ContainerCommand) -> CommandResult {
        let action = CommandAction::try_from(command.action).unwrap_or(CommandAction::Unspecified);
        let name = command.container.clone();
        tracing::info!(service = %name, action = action.as_str_name(), "command");
        let known = self
            .desired
            .as_ref()
            .is_some_and(|d| d.containers.iter().any(|s| s.name == name));
        let mut result = CommandResult {
            id: command.id,
            ..Default::default()
        };
        if !known {
            result.message =
                format!("no container named '{name}' is desired on this node; see `meshctl ps`");
            return result;
        }
        let podman = container_name(&name);
        let outcome = match action {
            CommandAction::Logs => {
                let tail = if command.tail == 0 {
                    DEFAULT_TAIL
                } else {
                    command.tail as usize
                };
                match self.runtime.logs(&podman, tail).await {
                    Ok(lines) => {
                        result.lines = lines;
                        Ok("logs".to_string())
                    }
                    Err(e) => Err(e),
                }
            }
            CommandAction::Stop => {
                self.hold(&name, true);
                self.writes += 1;
                self.runtime
                    .stop(&podman, STOP_TIMEOUT)
                    .await
                    .map(|_| "stopped".into())
            }
            CommandAction::Kill => {
                self.hold(&name, true);
                self.writes += 1;
                self.runtime.kill(&podman).await.map(|_| "killed".into())
            }
            CommandAction::Pause => {
                self.hold(&name, true);
                self.writes += 1;
                self.runtime.pause(&podman).await.map(|_| "paused".into())
            }
            CommandAction::Resume => {
                self.hold(&name, false);
                self.writes += 1;
                self.runtime
                    .unpause(&podman)
                    .await
                    .map(|_| "resumed".into())
            }
            CommandAction::Start => {
                self.hold(&name, false);
                self.start(&name, Instant::now()).await;
                self.start_error(&name).map(|_| "started".into())
            }
            CommandAction::Restart => {
                self.hold(&name, false);
                self.writes += 1;
                let _ = self.runtime.stop(&podman, STOP_TIMEOUT).await;
                self.start(&name, Instant::now()).await;
                self.start_error(&name).map(|_| "restarted".into())
            }
            CommandAction::Unspecified => Ok("nothing to do".into()),
        };
        match outcome {
            Ok(message) => {
                result.ok = true;
                result.message = message;
            }
            Err(e) => result.message = e.to_string(),
        }
        result
    }

    fn hold(&mut self, name: &str, held: bool) {
        let tracked = self.tracked.entry(name.to_string()).or_default();
        tracked.held = held;
        if !held {
            tracked.stay_stopped = false;
            tracked.retry_at = None;
            tracked.next_restart = None;
        }
    }

    fn start_error(&self, name: &str) -> Result<(), crate::runtime::RuntimeError> {
        match self.tracked.get(name) {
            Some(t) if t.retry_at.is_some() => {
                Err(crate::runtime::RuntimeError::Podman(t.error.clone()))
            }
            _ => Ok(()),
        }
    }
}
