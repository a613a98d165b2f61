//! What the agent remembers about each desired container between passes:
//! restarts, retries, health, the last error. Lost on agent restart by
//! design: Podman's own state is the truth that gets re-read.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::containers::restart::{delay_for, RestartTracker};
use crate::health::HealthTracker;

#[derive(Debug, Default)]
pub struct Tracked {
    pub restart: RestartTracker,
    /// A restart scheduled by the policy.
    pub next_restart: Option<Instant>,
    /// The policy said not to restart after the last exit.
    pub stay_stopped: bool,
    /// An operator stopped or paused it: reconcile leaves it alone.
    pub held: bool,
    /// Create/start failures in a row, and when to try again.
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    pub error: String,
    pub last_logs: Vec<String>,
    pub health: Option<HealthTracker>,
    pub healthy_since_unix_ms: i64,
    pub ip: Option<IpAddr>,
}

impl Tracked {
    pub fn may_try(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// A create or start failed: back off like a crash would.
    pub fn failed(&mut self, error: String, now: Instant) {
        self.error = error;
        self.retry_at = Some(now + delay_for(self.attempts).min(Duration::from_secs(30)));
        self.attempts = self.attempts.saturating_add(1);
    }

    pub fn succeeded(&mut self) {
        self.attempts = 0;
        self.retry_at = None;
        self.error.clear();
    }
}
