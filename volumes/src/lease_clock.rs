//! The clock leases are measured on: `CLOCK_BOOTTIME`, which is monotonic
//! (a wall-clock step does not move it) and, unlike `CLOCK_MONOTONIC`
//! (Rust's `Instant`), keeps counting while the machine is suspended. A
//! primary PC that wakes from suspend must see its lease as long gone, as
//! the coordinator and the standby (which kept running) do; with
//! `Instant` it would believe the lease still held for up to its length.

use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};

/// A point on the boot-time clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseInstant(Duration);

impl LeaseInstant {
    pub fn now() -> LeaseInstant {
        let t = clock_gettime(ClockId::Boottime);
        LeaseInstant(Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        ))
    }

    /// Time since `self` (zero if `self` is later).
    pub fn elapsed(&self) -> Duration {
        LeaseInstant::now().saturating_duration_since(*self)
    }

    pub fn saturating_duration_since(&self, earlier: LeaseInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for LeaseInstant {
    type Output = LeaseInstant;

    fn add(self, d: Duration) -> LeaseInstant {
        LeaseInstant(self.0.saturating_add(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_advances_with_time_and_orders() {
        let a = LeaseInstant::now();
        std::thread::sleep(Duration::from_millis(20));
        let b = LeaseInstant::now();
        assert!(b > a);
        assert!(b.saturating_duration_since(a) >= Duration::from_millis(20));
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert!(a.elapsed() >= Duration::from_millis(20));
        assert!(a + Duration::from_secs(1) > b);
    }

    #[test]
    fn it_counts_what_monotonic_counts_at_least() {
        // Boot time = monotonic + time suspended: never behind it.
        let m0 = std::time::Instant::now();
        let b0 = LeaseInstant::now();
        std::thread::sleep(Duration::from_millis(30));
        let (m, b) = (m0.elapsed(), b0.elapsed());
        assert!(b + Duration::from_millis(5) >= m, "{b:?} vs {m:?}");
    }
}
