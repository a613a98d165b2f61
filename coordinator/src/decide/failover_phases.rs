//! A failover or switchover in phases: when each ended, from what the
//! coordinator sees (a pure function of the record so far, what the
//! agents report and `now`).
//!
//! Automatic failover: detect (the primary's last heartbeat to the
//! promotion), promote (records persisted, plan sent), mount (the new
//! primary reports every volume attached; this includes waiting out a
//! lease the standby granted the old primary), start (the group's
//! containers running there), healthy (the rollout sees every service
//! healthy), re-pointed (every bridge entry of the group names the new
//! host). A switchover has `stop` (services stopped, volumes handed
//! over with every write) in place of detect.

use std::time::{Duration, Instant};

use mesh_proto::v1::{FailoverPhase, FailoverRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    PrimarySilent,
    Switchover,
    Failback,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::PrimarySilent => "primary silent",
            Cause::Switchover => "switchover",
            Cause::Failback => "failback",
        }
    }
}

/// The phases after the promotion, in order.
pub const AFTER_PROMOTION: [&str; 4] = ["mount", "start", "healthy", "re-pointed"];

#[derive(Debug, Clone)]
pub struct Tracked {
    pub cause: Cause,
    pub from: String,
    pub to: String,
    /// The epoch it moves (or moved) the group to.
    pub epoch: u64,
    /// The fault (the primary's last heartbeat) or the switchover's start.
    pub started: Instant,
    pub started_unix_ms: i64,
    /// Each phase's name and when it ended, in order.
    pub marks: Vec<(&'static str, Instant)>,
    pub error: String,
}

/// What the coordinator sees of the group on its new host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Every volume of the group attached on the new primary at the epoch.
    pub attached: bool,
    /// Every service of the group has a running container there.
    pub running: bool,
    /// Every service of the group is healthy there.
    pub healthy: bool,
    /// Every bridge entry of the group's services names the new host.
    pub repointed: bool,
}

impl Tracked {
    pub fn new(
        cause: Cause,
        from: &str,
        to: &str,
        epoch: u64,
        started: Instant,
        unix_ms: i64,
    ) -> Self {
        Tracked {
            cause,
            from: from.to_string(),
            to: to.to_string(),
            epoch,
            started,
            started_unix_ms: unix_ms,
            marks: Vec::new(),
            error: String::new(),
        }
    }

    pub fn mark(&mut self, phase: &'static str, at: Instant) {
        if !self.marks.iter().any(|(p, _)| *p == phase) {
            self.marks.push((phase, at.max(self.last_mark())));
        }
    }

    fn last_mark(&self) -> Instant {
        self.marks.last().map_or(self.started, |(_, t)| *t)
    }

    pub fn done(&self) -> bool {
        !self.error.is_empty() || self.marks.iter().any(|(p, _)| *p == "re-pointed")
    }

    /// Marks the phases `seen` shows have ended (each only after the one
    /// before it).
    pub fn advance(&mut self, seen: Seen, now: Instant) {
        if !self.marks.iter().any(|(p, _)| *p == "promote") || self.done() {
            return;
        }
        let reached = [seen.attached, seen.running, seen.healthy, seen.repointed];
        for (phase, ok) in AFTER_PROMOTION.iter().zip(reached) {
            if self.marks.iter().any(|(p, _)| p == phase) {
                continue;
            }
            if !ok {
                break;
            }
            self.mark(phase, now);
        }
    }

    /// For `meshctl`: each phase's duration, and the total so far.
    pub fn to_proto(&self, now: Instant) -> FailoverRecord {
        let mut phases = Vec::new();
        let mut from = self.started;
        for (name, at) in &self.marks {
            phases.push(FailoverPhase {
                name: name.to_string(),
                ms: ms(at.saturating_duration_since(from)),
            });
            from = *at;
        }
        let end = if self.done() { self.last_mark() } else { now };
        FailoverRecord {
            cause: self.cause.label().to_string(),
            from: self.from.clone(),
            to: self.to.clone(),
            epoch: self.epoch,
            started_unix_ms: self.started_unix_ms,
            phases,
            done: self.done(),
            total_ms: ms(end.saturating_duration_since(self.started)),
            error: self.error.clone(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_end_in_order_and_sum_to_the_total() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tracked::new(Cause::PrimarySilent, "pc2", "mainpc", 2, t0, 0);
        t.mark("detect", at(2000));
        t.mark("promote", at(2010));
        // Running reported before attached counts only once attached is.
        t.advance(
            Seen {
                running: true,
                ..Seen::default()
            },
            at(2100),
        );
        assert_eq!(t.marks.len(), 2);
        t.advance(
            Seen {
                attached: true,
                running: true,
                ..Seen::default()
            },
            at(2300),
        );
        t.advance(
            Seen {
                attached: true,
                running: true,
                healthy: true,
                repointed: true,
            },
            at(2800),
        );
        assert!(t.done());
        let p = t.to_proto(at(9999));
        let names: Vec<&str> = p.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "detect",
                "promote",
                "mount",
                "start",
                "healthy",
                "re-pointed"
            ]
        );
        let ms: Vec<u64> = p.phases.iter().map(|p| p.ms).collect();
        assert_eq!(ms, [2000, 10, 290, 0, 500, 0]);
        assert_eq!(p.total_ms, 2800);
        assert_eq!(p.cause, "primary silent");
        assert!(p.done);
    }

    #[test]
    fn nothing_after_the_promotion_is_marked_before_it() {
        let t0 = Instant::now();
        let mut t = Tracked::new(Cause::Switchover, "pc2", "mainpc", 4, t0, 0);
        t.advance(
            Seen {
                attached: true,
                running: true,
                healthy: true,
                repointed: true,
            },
            t0 + Duration::from_millis(5),
        );
        assert!(t.marks.is_empty());
        let p = t.to_proto(t0 + Duration::from_millis(700));
        assert!(!p.done);
        assert_eq!(p.total_ms, 700);
    }
}
