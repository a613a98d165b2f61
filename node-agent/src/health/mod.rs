//! Health checks the agent runs itself (Podman's healthcheck timers need
//! systemd, which these hosts may not have). [`HealthTracker`] is the pure
//! verdict: start period, consecutive failures before unhealthy, one pass to
//! recover. [`probe`] does the I/O.

pub mod probe;

use std::time::Duration;

use tokio::time::Instant;

use mesh_proto::v1::HealthCheck;

use crate::containers::lifecycle::Health;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RETRIES: u32 = 3;

/// The timing of a check, with defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Timing {
    pub fn of(check: &HealthCheck) -> Timing {
        let ms = |v: u32, default: Duration| {
            if v == 0 {
                default
            } else {
                Duration::from_millis(u64::from(v))
            }
        };
        Timing {
            interval: ms(check.interval_ms, DEFAULT_INTERVAL),
            timeout: ms(check.timeout_ms, DEFAULT_TIMEOUT),
            retries: if check.retries == 0 {
                DEFAULT_RETRIES
            } else {
                check.retries
            },
            start_period: Duration::from_millis(u64::from(check.start_period_ms)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HealthTracker {
    timing: Timing,
    started: Instant,
    failures: u32,
    health: Health,
    next_due: Instant,
    pub last_message: String,
}

impl HealthTracker {
    /// A tracker for a container that started at `started`. The first check
    /// runs at once: a service that is up should not wait a full interval.
    pub fn new(timing: Timing, started: Instant) -> HealthTracker {
        HealthTracker {
            timing,
            started,
            failures: 0,
            health: Health::Starting,
            next_due: started,
            last_message: String::new(),
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// Records one probe result at `now`; returns the health after it.
    pub fn record(&mut self, passed: bool, message: String, now: Instant) -> Health {
        self.next_due = now + self.timing.interval;
        self.last_message = message;
        if passed {
            self.failures = 0;
            self.health = Health::Healthy;
            return self.health;
        }
        let in_start_period =
            now.saturating_duration_since(self.started) < self.timing.start_period;
        if in_start_period && self.health != Health::Healthy {
            return self.health; // failures while starting up do not count
        }
        self.failures += 1;
        if self.failures >= self.timing.retries {
            self.health = Health::Unhealthy;
        }
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            retries: 3,
            start_period: Duration::from_secs(5),
        }
    }

    #[test]
    fn defaults_fill_zeroes() {
        let t = Timing::of(&HealthCheck::default());
        assert_eq!(t.interval, DEFAULT_INTERVAL);
        assert_eq!(t.retries, DEFAULT_RETRIES);
        assert_eq!(t.start_period, Duration::ZERO);
    }

    #[test]
    fn start_period_forgives_then_retries_count() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(timing(), t0);
        assert!(h.is_due(t0));
        for s in 0..5 {
            assert_eq!(
                h.record(false, "refused".into(), t0 + Duration::from_secs(s)),
                Health::Starting
            );
        }
        let after = t0 + Duration::from_secs(5);
        assert_eq!(h.record(false, "refused".into(), after), Health::Starting);
        assert_eq!(h.record(false, "refused".into(), after), Health::Starting);
        assert_eq!(h.record(false, "refused".into(), after), Health::Unhealthy);
        assert_eq!(h.record(true, "ok".into(), after), Health::Healthy);
        assert!(!h.is_due(after));
        assert!(h.is_due(after + Duration::from_secs(1)));
    }

    #[test]
    fn healthy_service_failing_in_start_period_still_counts() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(timing(), t0);
        h.record(true, "ok".into(), t0);
        for _ in 0..3 {
            h.record(false, "timeout".into(), t0 + Duration::from_secs(1));
        }
        assert_eq!(h.health(), Health::Unhealthy);
    }
}
