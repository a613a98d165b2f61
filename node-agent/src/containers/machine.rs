//! The lifecycle of one container on this host as an explicit state
//! machine: a [`Phase`] per container, [`next`] to decide from the phase,
//! what the runtime shows ([`Seen`]), what the desired set wants
//! ([`Want`]) and `now`, and [`done`] to take the result of an
//! [`Action`]. Operator starts and restarts enter through [`command`].
//!
//! Pure: no I/O and no clock. The manager runs the actions and passes the
//! time in. Every runtime operation asked for passes its guard
//! (`lifecycle::can_start`, ...) for the state seen. A held container is
//! never started, and a container is never started twice without being
//! seen down (exited, created, or gone) in between.

use std::time::Duration;

use tokio::time::Instant;

use super::lifecycle::{self, State};
use super::restart::{delay_for, Decision, RestartPolicy, RestartTracker};
use crate::runtime::RuntimeError;

/// Failed creates and starts are retried at the restart pace, at most
/// this far apart.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// An operator's hold on a container (`meshctl stop/pause/kill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hold {
    /// Stopped (SIGTERM, then SIGKILL after the stop timeout), kept stopped.
    Stopped,
    /// Frozen, kept frozen.
    Paused,
    /// Killed (SIGKILL), kept stopped.
    Killed,
}

impl Hold {
    /// Whether a container in `state` is where this hold wants it.
    pub fn is_met(self, state: State) -> bool {
        match self {
            Hold::Stopped | Hold::Killed => lifecycle::is_down(state),
            Hold::Paused => state == State::Paused,
        }
    }
}

/// What the desired set (and an operator command since it) wants for a
/// desired container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Want {
    pub hold: Option<Hold>,
    pub restart: RestartPolicy,
}

/// What the runtime shows for a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Absent,
    /// There, but created from another spec: it is replaced.
    Stale(State),
    Current {
        state: State,
        exit_code: i64,
    },
}

impl Seen {
    /// Gone, or there and not running.
    pub fn is_down(self) -> bool {
        match self {
            Seen::Absent => true,
            Seen::Stale(state) | Seen::Current { state, .. } => lifecycle::is_down(state),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Nothing decided yet: new, adopted, just created or just removed.
    Pending,
    /// Started; not yet seen running (or exited).
    Starting,
    Running,
    /// Exited; the restart policy starts it again at `until`.
    BackingOff {
        until: Instant,
        attempt: u32,
    },
    /// Exited, and the restart policy keeps it stopped.
    StayingStopped,
    /// Where an operator's hold wants it (or as near as it can be).
    Held(Hold),
    /// The stop, kill or pause for this hold is under way.
    Holding(Hold),
    /// An operator asked for a start: at once, whatever the backoff.
    StartRequested,
    /// An operator asked for a restart.
    RestartRequested,
    /// The operator's restart (stop, then start) is under way.
    Restarting,
    /// A create, start or resume failed; tried again at `retry_at`.
    Failed {
        retry_at: Instant,
        attempts: u32,
        error: RuntimeError,
    },
    /// A removal is under way (its spec changed, or it is not desired).
    Removing,
}

impl Phase {
    /// For people (`ContainerStatus.phase`).
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::BackingOff { .. } => "backing off",
            Phase::StayingStopped => "staying stopped",
            Phase::Held(_) => "held",
            Phase::Holding(_) => "holding",
            Phase::StartRequested => "start requested",
            Phase::RestartRequested => "restart requested",
            Phase::Restarting => "restarting",
            Phase::Failed { .. } => "failed",
            Phase::Removing => "removing",
        }
    }

    /// A background operation is under way: nothing else is decided
    /// until it is [`done`].
    pub fn is_under_way(&self) -> bool {
        matches!(
            self,
            Phase::Holding(_) | Phase::Restarting | Phase::Removing
        )
    }

    fn is_waiting_to_retry(&self, now: Instant) -> bool {
        matches!(self, Phase::Failed { retry_at, .. } if now < *retry_at)
    }
}

/// A runtime operation on the container, for the manager to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Create (not start) it from the desired spec.
    Create,
    Start,
    Stop,
    Kill,
    Pause,
    Unpause,
    /// Stop, then start (an operator's restart).
    Restart,
    /// Remove, stopping it first if needed.
    Remove,
    /// Keep the last log lines (after a crash).
    FetchLogs,
}

impl Action {
    /// Whether it may take long (Podman's stop timeout), so runs in the
    /// background while the manager goes on.
    pub fn is_slow(self) -> bool {
        matches!(
            self,
            Action::Stop | Action::Kill | Action::Pause | Action::Restart | Action::Remove
        )
    }

    /// Whether it makes the container run.
    pub fn runs(self) -> bool {
        matches!(self, Action::Start | Action::Unpause | Action::Restart)
    }
}

/// What one container's machine remembers.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    pub phase: Phase,
    pub restart: RestartTracker,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            phase: Phase::Pending,
            restart: RestartTracker::default(),
        }
    }
}

/// Operator commands that are not holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Restart,
}

/// The operator's start or restart: taken unless an operation is under
/// way (then `None`: the caller says to try again).
pub fn command(m: &Machine, command: Command) -> Option<Machine> {
    if m.phase.is_under_way() {
        return None;
    }
    let phase = match command {
        Command::Start => Phase::StartRequested,
        Command::Restart => Phase::RestartRequested,
    };
    Some(Machine {
        phase,
        restart: m.restart.clone(),
    })
}

/// The next phase and the actions to run, for a container the runtime
/// shows as `seen`, that the desired set wants as `want` (`None`: not
/// desired), at `now`.
pub fn next(m: &Machine, seen: Seen, want: Option<Want>, now: Instant) -> (Machine, Vec<Action>) {
    let mut out = m.clone();
    let mut actions = Vec::new();
    if m.phase.is_under_way() {
        return (out, actions);
    }
    let (state, exit_code) = match (seen, want) {
        (Seen::Absent, None) => return (out, actions),
        (Seen::Stale(state) | Seen::Current { state, .. }, None)
        | (Seen::Stale(state), Some(_)) => {
            if lifecycle::can_delete(state) {
                out.phase = Phase::Removing;
                actions.push(Action::Remove);
            }
            return (out, actions);
        }
        (Seen::Absent, Some(want)) => {
            if !m.phase.is_waiting_to_retry(now) {
                actions.push(Action::Create);
                if want.hold.is_none() {
                    actions.push(Action::Start);
                }
            }
            return (out, actions);
        }
        (Seen::Current { state, exit_code }, Some(_)) => (state, exit_code),
    };
    let want = want.unwrap_or_default();
    if let Some(hold) = want.hold {
        out.phase = Phase::Held(hold);
        let action = match hold {
            _ if hold.is_met(state) => None,
            Hold::Stopped if lifecycle::can_stop(state) => Some(Action::Stop),
            Hold::Killed if lifecycle::can_kill(state) => Some(Action::Kill),
            Hold::Paused if lifecycle::can_pause(state) => Some(Action::Pause),
            // E.g. a pause of a stopped container: it stays down.
            _ => None,
        };
        if let Some(action) = action {
            out.phase = Phase::Holding(hold);
            actions.push(action);
        }
        return (out, actions);
    }
    let retrying = m.phase.is_waiting_to_retry(now);
    match state {
        State::Running | State::Paused if m.phase == Phase::RestartRequested => {
            out.phase = Phase::Restarting;
            actions.push(Action::Restart);
        }
        State::Running => out.phase = Phase::Running,
        State::Paused => {
            if lifecycle::can_resume(state) && !retrying {
                actions.push(Action::Unpause);
            }
        }
        // On its way somewhere: wait for where it lands.
        State::Starting | State::Stopping | State::Deleted => {}
        State::Created => {
            if m.phase != Phase::Starting && !retrying && lifecycle::can_start(state) {
                actions.push(Action::Start);
            }
        }
        State::Stopped | State::Error => match m.phase {
            Phase::Pending | Phase::Starting | Phase::Running => {
                out.phase = match out.restart.exited(want.restart, exit_code, now) {
                    Decision::RestartAt(until) => Phase::BackingOff {
                        until,
                        attempt: out.restart.consecutive,
                    },
                    Decision::StayStopped => Phase::StayingStopped,
                };
                if exit_code != 0 {
                    actions.push(Action::FetchLogs);
                }
            }
            Phase::BackingOff { until, .. } if now < until => {}
            Phase::StayingStopped => {}
            Phase::Failed { .. } if retrying => {}
            // Backoff over, retry due, hold lifted, or an operator's start.
            _ => {
                if lifecycle::can_start(state) {
                    actions.push(Action::Start);
                }
            }
        },
    }
    (out, actions)
}

/// The machine after `action` ended with `result` at `now`.
pub fn done(
    m: &Machine,
    action: Action,
    result: Result<(), RuntimeError>,
    now: Instant,
) -> Machine {
    let mut out = m.clone();
    match (action, result) {
        (Action::FetchLogs, _) => {}
        (Action::Create, Ok(())) => out.phase = Phase::Pending,
        (Action::Start | Action::Restart, Ok(())) => {
            out.restart.started(now);
            out.phase = Phase::Starting;
        }
        (Action::Unpause, Ok(())) => out.phase = Phase::Running,
        (Action::Create | Action::Start | Action::Restart | Action::Unpause, Err(error)) => {
            let attempts = match m.phase {
                Phase::Failed { attempts, .. } => attempts,
                _ => 0,
            };
            out.phase = Phase::Failed {
                retry_at: now + delay_for(attempts).min(MAX_RETRY),
                attempts: attempts.saturating_add(1),
                error,
            };
        }
        // A failed hold is tried again on the next pass.
        (Action::Stop | Action::Kill | Action::Pause, _) => {
            if let Phase::Holding(hold) = m.phase {
                out.phase = Phase::Held(hold);
            }
        }
        (Action::Remove, Ok(())) => out = Machine::default(),
        (Action::Remove, Err(_)) => out.phase = Phase::Pending,
    }
    out
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
