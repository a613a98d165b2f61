//! Container lifecycle states and the one function that says which
//! transitions are legal. Every state change the agent records goes
//! through [`transition`], so an impossible history cannot be reported.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Created,
    Starting,
    Running,
    Paused,
    Stopping,
    Stopped,
    Error,
    Deleted,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Created,
        State::Starting,
        State::Running,
        State::Paused,
        State::Stopping,
        State::Stopped,
        State::Error,
        State::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Error => "error",
            State::Deleted => "deleted",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health as the agent's own checks see it (Podman's timers need systemd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// No health check configured.
    None,
    /// Within the start period, or no verdict yet.
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: State,
    pub to: State,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a container cannot go from {} to {}", self.from, self.to)
    }
}

impl std::error::Error for IllegalTransition {}

/// Whether `from -> to` is a legal step. Staying in a state is legal.
pub fn is_legal(from: State, to: State) -> bool {
    use State::*;
    if from == to {
        return from != Deleted;
    }
    match (from, to) {
        // Nothing comes back from Deleted: a new container is a new record.
        (Deleted, _) => false,
        // Anything that exists can fail or be removed.
        (_, Error) | (_, Deleted) => true,
        (Created, Starting) => true,
        (Starting, Running) | (Starting, Stopped) => true,
        (Running, Paused) | (Running, Stopping) | (Running, Stopped) => true,
        (Paused, Running) | (Paused, Stopping) => true,
        (Stopping, Stopped) => true,
        (Stopped, Starting) => true,
        (Error, Starting) | (Error, Stopped) => true,
        _ => false,
    }
}

pub fn transition(from: State, to: State) -> Result<State, IllegalTransition> {
    if is_legal(from, to) {
        Ok(to)
    } else {
        Err(IllegalTransition { from, to })
    }
}

/// The lifecycle state of what Podman reports (`created`, `running`,
/// `paused`, `exited`, ...), for containers observed rather than driven.
pub fn from_podman(status: &str, exit_code: i64) -> State {
    match status {
        "created" | "configured" | "initialized" => State::Created,
        "running" => State::Running,
        "paused" => State::Paused,
        "stopping" => State::Stopping,
        "exited" | "stopped" if exit_code == 0 => State::Stopped,
        "exited" | "stopped" => State::Error,
        "removing" => State::Deleted,
        _ => State::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    /// The whole table, written out: a change to the rules must change it.
    #[test]
    fn whole_transition_table() {
        let legal: &[(State, &[State])] = &[
            (Created, &[Created, Starting, Error, Deleted]),
            (Starting, &[Starting, Running, Stopped, Error, Deleted]),
            (
                Running,
                &[Running, Paused, Stopping, Stopped, Error, Deleted],
            ),
            (Paused, &[Paused, Running, Stopping, Error, Deleted]),
            (Stopping, &[Stopping, Stopped, Error, Deleted]),
            (Stopped, &[Stopped, Starting, Error, Deleted]),
            (Error, &[Error, Starting, Stopped, Deleted]),
            (Deleted, &[]),
        ];
        for (from, allowed) in legal {
            for to in State::ALL {
                assert_eq!(is_legal(*from, to), allowed.contains(&to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn illegal_step_is_named() {
        let err = transition(Deleted, Running).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a container cannot go from deleted to running"
        );
        assert_eq!(transition(Created, Starting), Ok(Starting));
    }

    #[test]
    fn podman_statuses() {
        assert_eq!(from_podman("running", 0), Running);
        assert_eq!(from_podman("exited", 0), Stopped);
        assert_eq!(from_podman("exited", 137), Error);
        assert_eq!(from_podman("paused", 0), Paused);
        assert_eq!(from_podman("configured", 0), Created);
        assert_eq!(from_podman("weird", 0), Error);
    }
}
