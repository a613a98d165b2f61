//! What the agent remembers about each container between passes: its
//! lifecycle machine (phase and restarts), an operator command's hold,
//! health, the last problem and logs, and the commands waiting for an
//! operation to end. Lost on agent restart by design: Podman's own state
//! is the truth that gets re-read.

use std::net::IpAddr;

use mesh_proto::v1::{CommandResult, ContainerFailure, ContainerSpec};
use tokio::sync::oneshot;

use crate::containers::machine::{Hold, Machine, Want};
use crate::containers::restart::RestartPolicy;
use crate::health::HealthTracker;
use crate::runtime::RuntimeError;

/// Why a container is not as wanted: a type for the coordinator, a text
/// (with its fix) for people.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub failure: ContainerFailure,
    pub text: String,
}

impl Problem {
    pub fn runtime(error: &RuntimeError) -> Problem {
        Problem {
            failure: failure_of(error),
            text: error.to_string(),
        }
    }
}

/// The typed cause of a runtime error.
pub fn failure_of(error: &RuntimeError) -> ContainerFailure {
    match error {
        RuntimeError::Unavailable { .. } => ContainerFailure::RuntimeUnavailable,
        RuntimeError::ImageMissing { .. } => ContainerFailure::ImageMissing,
        RuntimeError::PortTaken { .. } => ContainerFailure::PortTaken,
        RuntimeError::InvalidSpec(_) => ContainerFailure::InvalidSpec,
        RuntimeError::NotFound { .. } | RuntimeError::Podman(_) => ContainerFailure::Runtime,
    }
}

/// The machine's hold for a hold on the wire.
pub fn hold_of(wire: mesh_proto::v1::Hold) -> Option<Hold> {
    match wire {
        mesh_proto::v1::Hold::None => None,
        mesh_proto::v1::Hold::Stopped => Some(Hold::Stopped),
        mesh_proto::v1::Hold::Paused => Some(Hold::Paused),
        mesh_proto::v1::Hold::Killed => Some(Hold::Killed),
    }
}

/// The wire's hold for the machine's.
pub fn hold_proto(hold: Option<Hold>) -> mesh_proto::v1::Hold {
    match hold {
        None => mesh_proto::v1::Hold::None,
        Some(Hold::Stopped) => mesh_proto::v1::Hold::Stopped,
        Some(Hold::Paused) => mesh_proto::v1::Hold::Paused,
        Some(Hold::Killed) => mesh_proto::v1::Hold::Killed,
    }
}

/// A command's reply, sent once what it asked for is done.
#[derive(Debug)]
pub struct Waiting {
    pub reply: oneshot::Sender<CommandResult>,
    pub result: CommandResult,
    /// The message when it worked ("stopped", ...).
    pub done: &'static str,
}

#[derive(Debug, Default)]
pub struct Tracked {
    pub machine: Machine,
    /// The hold an operator command set (`Some(None)`: lifted) since the
    /// desired set; the next desired set replaces it.
    pub command_hold: Option<Option<Hold>>,
    pub problem: Option<Problem>,
    pub last_logs: Vec<String>,
    pub health: Option<HealthTracker>,
    pub healthy_since_unix_ms: i64,
    pub ip: Option<IpAddr>,
    pub waiting: Vec<Waiting>,
}

impl Tracked {
    /// What the machine is asked for: the spec's hold unless a command
    /// set another since, and the spec's restart policy.
    pub fn want(&self, spec: &ContainerSpec) -> Want {
        Want {
            hold: self.command_hold.unwrap_or_else(|| hold_of(spec.hold())),
            restart: RestartPolicy::of(spec.restart()),
        }
    }

    /// Sends the waiting commands' replies: an error if `error`.
    pub fn reply(&mut self, error: Option<&str>) {
        for mut w in self.waiting.drain(..) {
            match error {
                None => {
                    w.result.ok = true;
                    w.result.message = w.done.into();
                }
                Some(e) => {
                    w.result.ok = false;
                    w.result.message = e.into();
                }
            }
            let _ = w.reply.send(w.result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_typed_and_holds_map_both_ways() {
        let missing = RuntimeError::ImageMissing { image: "i".into() };
        let p = Problem::runtime(&missing);
        assert_eq!(p.failure, ContainerFailure::ImageMissing);
        assert!(p.text.contains("build or load it here"));
        assert_eq!(
            failure_of(&RuntimeError::Podman("x".into())),
            ContainerFailure::Runtime
        );
        for wire in [
            mesh_proto::v1::Hold::None,
            mesh_proto::v1::Hold::Stopped,
            mesh_proto::v1::Hold::Paused,
            mesh_proto::v1::Hold::Killed,
        ] {
            assert_eq!(hold_proto(hold_of(wire)), wire);
        }
    }

    #[test]
    fn a_command_hold_wins_over_the_spec_until_replaced() {
        let spec = ContainerSpec {
            hold: mesh_proto::v1::Hold::Paused as i32,
            restart: mesh_proto::v1::RestartPolicy::Never as i32,
            ..Default::default()
        };
        let mut t = Tracked::default();
        assert_eq!(t.want(&spec).hold, Some(Hold::Paused));
        assert_eq!(t.want(&spec).restart, RestartPolicy::Never);
        t.command_hold = Some(None);
        assert_eq!(t.want(&spec).hold, None);
        t.command_hold = Some(Some(Hold::Killed));
        assert_eq!(t.want(&spec).hold, Some(Hold::Killed));
    }
}
