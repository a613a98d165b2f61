//! Container lifecycle states and the one function that says which
//! transitions are legal ([`is_legal`]), with the guards read off it
//! ([`can_start`], [`can_stop`], ...). The container machine
//! (`containers::machine`) issues only the runtime operations the guards
//! allow for the state it observed, so it never asks Podman for an
//! impossible step.

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

// Guards, in the style of youki's `can_start()/can_kill()/can_delete()`:
// whether a runtime operation makes sense for a container observed in
// `state`, read off the transition table so the two cannot disagree.

/// A start goes through `Starting`.
pub fn can_start(state: State) -> bool {
    state != State::Starting && is_legal(state, State::Starting)
}

/// A stop goes through `Stopping`.
pub fn can_stop(state: State) -> bool {
    state != State::Stopping && is_legal(state, State::Stopping)
}

/// A kill ends what could be stopped, without the grace period.
pub fn can_kill(state: State) -> bool {
    can_stop(state)
}

pub fn can_pause(state: State) -> bool {
    state != State::Paused && is_legal(state, State::Paused)
}

pub fn can_resume(state: State) -> bool {
    state == State::Paused && is_legal(state, State::Running)
}

pub fn can_delete(state: State) -> bool {
    is_legal(state, State::Deleted)
}

/// Not running and not about to: what a stop or a kill leaves.
pub fn is_down(state: State) -> bool {
    matches!(state, State::Created | State::Stopped | State::Error)
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
    fn guards_follow_the_table() {
        let starts: Vec<State> = State::ALL.into_iter().filter(|s| can_start(*s)).collect();
        assert_eq!(starts, vec![Created, Stopped, Error]);
        let stops: Vec<State> = State::ALL.into_iter().filter(|s| can_stop(*s)).collect();
        assert_eq!(stops, vec![Running, Paused]);
        let kills: Vec<State> = State::ALL.into_iter().filter(|s| can_kill(*s)).collect();
        assert_eq!(kills, stops);
        let pauses: Vec<State> = State::ALL.into_iter().filter(|s| can_pause(*s)).collect();
        assert_eq!(pauses, vec![Running]);
        let resumes: Vec<State> = State::ALL.into_iter().filter(|s| can_resume(*s)).collect();
        assert_eq!(resumes, vec![Paused]);
        assert!(State::ALL
            .into_iter()
            .all(|s| can_delete(s) == (s != Deleted)));
        for s in State::ALL {
            // Whatever can be started is down; nothing down can be paused.
            assert!(!can_start(s) || is_down(s), "{s}");
            assert!(!(is_down(s) && can_pause(s)), "{s}");
        }
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
