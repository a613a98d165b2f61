//! Restart policy with exponential backoff: 1 s doubling to a 60 s cap,
//! reset once a container has stayed up (healthy) long enough. Pure: the
//! caller passes the exit and `now`.

use std::time::Duration;

use mesh_backoff::Backoff;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The policy of a spec on the wire.
    pub fn of(wire: mesh_proto::v1::RestartPolicy) -> RestartPolicy {
        match wire {
            mesh_proto::v1::RestartPolicy::Unspecified | mesh_proto::v1::RestartPolicy::Always => {
                RestartPolicy::Always
            }
            mesh_proto::v1::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
            mesh_proto::v1::RestartPolicy::Never => RestartPolicy::Never,
        }
    }

    /// Whether a container that exited with `exit_code` should run again.
    pub fn wants_restart(self, exit_code: i64) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Up this long after a start, the next crash counts as the first again.
pub const RESET_AFTER: Duration = Duration::from_secs(120);
/// This many restarts in a row without a stable run is a crash loop.
pub const CRASH_LOOP_AFTER: u32 = 5;

/// Restart bookkeeping of one container.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RestartTracker {
    /// Restarts since the container last ran stably.
    pub consecutive: u32,
    /// Restarts over the container's life on this agent.
    pub total: u32,
    pub last_exit_code: Option<i64>,
    pub last_start: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start again at this time.
    RestartAt(Instant),
    /// Leave it stopped (policy says so).
    StayStopped,
}

impl RestartTracker {
    pub fn started(&mut self, now: Instant) {
        self.last_start = Some(now);
    }

    /// A health check passed or the container has been up a while: the
    /// backoff starts over.
    pub fn stable(&mut self) {
        self.consecutive = 0;
    }

    pub fn is_crash_looping(&self) -> bool {
        self.consecutive >= CRASH_LOOP_AFTER
    }

    /// The container exited at `now` with `exit_code`.
    pub fn exited(&mut self, policy: RestartPolicy, exit_code: i64, now: Instant) -> Decision {
        self.last_exit_code = Some(exit_code);
        if self
            .last_start
            .is_some_and(|s| now.saturating_duration_since(s) >= RESET_AFTER)
        {
            self.consecutive = 0;
        }
        if !policy.wants_restart(exit_code) {
            return Decision::StayStopped;
        }
        let delay = delay_for(self.consecutive);
        self.consecutive = self.consecutive.saturating_add(1);
        self.total = self.total.saturating_add(1);
        Decision::RestartAt(now + delay)
    }
}

/// The restart pace: 1 s doubling to 60 s.
pub const BACKOFF: Backoff = Backoff::new(FIRST_DELAY, MAX_DELAY);

/// The delay before the restart after `consecutive` earlier restarts in a
/// row: 1 s, 2 s, 4 s, ... capped at 60 s.
pub fn delay_for(consecutive: u32) -> Duration {
    BACKOFF.delay(consecutive.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_cap() {
        let secs: Vec<u64> = (0..9).map(|n| delay_for(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn policies() {
        assert!(RestartPolicy::Always.wants_restart(0));
        assert!(!RestartPolicy::OnFailure.wants_restart(0));
        assert!(RestartPolicy::OnFailure.wants_restart(1));
        assert!(!RestartPolicy::Never.wants_restart(137));
        use mesh_proto::v1::RestartPolicy as Wire;
        assert_eq!(RestartPolicy::of(Wire::Unspecified), RestartPolicy::Always);
        assert_eq!(RestartPolicy::of(Wire::OnFailure), RestartPolicy::OnFailure);
        assert_eq!(RestartPolicy::of(Wire::Never), RestartPolicy::Never);
    }

    #[test]
    fn crash_loop_backs_off_and_stable_run_resets() {
        let t0 = Instant::now();
        let mut r = RestartTracker::default();
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            r.started(now);
            now += Duration::from_millis(100);
            match r.exited(RestartPolicy::Always, 1, now) {
                Decision::RestartAt(at) => {
                    delays.push((at - now).as_secs());
                    now = at;
                }
                Decision::StayStopped => panic!("always restarts"),
            }
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32]);
        assert!(r.is_crash_looping());
        assert_eq!(r.last_exit_code, Some(1));
        // A long, stable run: the next crash is a first crash again.
        r.started(now);
        now += RESET_AFTER;
        assert_eq!(
            r.exited(RestartPolicy::Always, 1, now),
            Decision::RestartAt(now + FIRST_DELAY)
        );
        assert_eq!(r.total, 7);
        r.stable();
        assert!(!r.is_crash_looping());
    }

    #[test]
    fn on_failure_leaves_clean_exit_stopped() {
        let mut r = RestartTracker::default();
        let now = Instant::now();
        assert_eq!(
            r.exited(RestartPolicy::OnFailure, 0, now),
            Decision::StayStopped
        );
        assert_eq!(r.total, 0);
    }
}
