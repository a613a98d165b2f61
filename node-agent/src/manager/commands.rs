//! Operator commands on one container: stop, kill, pause, resume, start,
//! restart, logs. Stop, kill and pause apply that hold at once, until a
//! newer desired set (which carries the coordinator's persisted hold)
//! replaces it; resume, start and restart lift it. The command only
//! changes what the machine is asked for; the pass that follows runs the
//! actions, slow ones in the background, and the reply is sent when they
//! end. The loop never waits for Podman's stop timeout.

use mesh_proto::v1::{CommandAction, CommandResult, ContainerCommand};
use tokio::sync::oneshot;

use super::tracked::Waiting;
use super::Manager;
use crate::containers::machine::{self, Command, Hold};
use crate::containers::spec::container_name;
use crate::runtime::ContainerRuntime;

const DEFAULT_TAIL: usize = 100;

impl<R: ContainerRuntime + Clone + 'static> Manager<R> {
    /// Takes `command`; `reply` gets its result once done.
    pub async fn command(
        &mut self,
        command: ContainerCommand,
        reply: oneshot::Sender<CommandResult>,
    ) {
        let action = CommandAction::try_from(command.action).unwrap_or(CommandAction::Unspecified);
        let name = command.container.clone();
        let group = self
            .desired
            .as_ref()
            .and_then(|d| d.containers.iter().find(|s| s.name == name))
            .map(|s| s.group.clone());
        let mut result = CommandResult {
            id: command.id,
            ..Default::default()
        };
        let Some(group) = group else {
            result.message =
                format!("no container named '{name}' is desired on this node; see `meshctl ps`");
            let _ = reply.send(result);
            return;
        };
        let span = tracing::info_span!("command", group = %group, service = %name);
        span.in_scope(|| tracing::info!(action = action.as_str_name(), "command"));
        let (hold, start, done): (Option<Option<Hold>>, Option<Command>, &'static str) =
            match action {
                CommandAction::Logs => {
                    let tail = if command.tail == 0 {
                        DEFAULT_TAIL
                    } else {
                        command.tail as usize
                    };
                    match self.runtime.logs(&container_name(&name), tail).await {
                        Ok(lines) => {
                            result.ok = true;
                            result.message = "logs".into();
                            result.lines = lines;
                        }
                        Err(e) => result.message = e.to_string(),
                    }
                    let _ = reply.send(result);
                    return;
                }
                CommandAction::Stop => (Some(Some(Hold::Stopped)), None, "stopped"),
                CommandAction::Kill => (Some(Some(Hold::Killed)), None, "killed"),
                CommandAction::Pause => (Some(Some(Hold::Paused)), None, "paused"),
                CommandAction::Resume => (Some(None), None, "resumed"),
                CommandAction::Start => (Some(None), Some(Command::Start), "started"),
                CommandAction::Restart => (Some(None), Some(Command::Restart), "restarted"),
                CommandAction::Unspecified => (None, None, "nothing to do"),
            };
        let tracked = self.tracked.entry(name.clone()).or_default();
        let same_hold_under_way = hold
            .flatten()
            .is_some_and(|h| tracked.machine.phase == machine::Phase::Holding(h));
        if tracked.machine.phase.is_under_way() && !same_hold_under_way {
            result.message = format!(
                "{name} is {} now; try again when that is done",
                tracked.machine.phase.label()
            );
            let _ = reply.send(result);
            return;
        }
        if let Some(c) = start {
            if let Some(m) = machine::command(&tracked.machine, c) {
                tracked.machine = m;
            }
        }
        if let Some(hold) = hold {
            tracked.command_hold = Some(hold);
        }
        tracked.waiting.push(Waiting {
            reply,
            result,
            done,
        });
        self.pass().await;
    }
}
