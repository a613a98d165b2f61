//! Capped exponential backoff, the one implementation in the workspace:
//! coordinator reconnects (with jitter), tunnel and stream reconnects, and
//! container restarts all use it.
//!
//! Pure: a delay is a function of the number of failures in a row and, for
//! jitter, a random fraction the caller draws. It keeps no clock and no
//! counter; callers do. It must never sleep, read time or draw randomness
//! itself, so that every use stays testable with paused time.

#![forbid(unsafe_code)]

use std::time::Duration;

/// Delay after `n` consecutive failures: `first * 2^(n-1)`, at most `cap`,
/// less up to `jitter` of it when the caller asks for jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub first: Duration,
    /// Upper bound on any delay.
    pub cap: Duration,
    /// Fraction of the delay that [`Backoff::jittered`] randomises, 0.0..=1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s, no jitter (the tunnel's reconnect pace).
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

impl Backoff {
    /// Without jitter.
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff {
            first,
            cap,
            jitter: 0.0,
        }
    }

    /// The same pace, with `jitter` (clamped to 0.0..=1.0) of each delay
    /// randomised by [`Backoff::jittered`].
    pub const fn with_jitter(self, jitter: f64) -> Backoff {
        Backoff { jitter, ..self }
    }

    /// The delay after `failures` consecutive failures (zero when there
    /// were none), without jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// [`Backoff::delay`] less a random part: `random` is uniform in
    /// 0.0..1.0, and the result lies in `[d * (1 - jitter), d]`, so many
    /// clients that failed together do not all come back in the same
    /// millisecond.
    pub fn jittered(&self, failures: u32, random: f64) -> Duration {
        let d = self.delay(failures);
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let random = if random.is_nan() {
            0.0
        } else {
            random.clamp(0.0, 1.0)
        };
        d.mul_f64(1.0 - jitter * random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let got: Vec<u128> = (0..8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(got, vec![0, 100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn never_overflows() {
        let b = Backoff::default();
        for n in [31, 32, 33, 64, u32::MAX] {
            assert_eq!(b.delay(n), b.cap);
        }
        let huge = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(u32::MAX), Duration::MAX);
    }

    #[test]
    fn restart_pace_is_one_second_doubling_to_a_minute() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let secs: Vec<u64> = (1..10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn no_jitter_ignores_the_random_fraction() {
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let ms: Vec<u128> = (1..8).map(|a| b.jittered(a, 0.7).as_millis()).collect();
        assert_eq!(ms, vec![200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.jittered(u32::MAX, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn odd_inputs_are_clamped() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).with_jitter(7.0);
        assert_eq!(b.jittered(1, 0.5), Duration::from_millis(500));
        assert_eq!(b.jittered(1, f64::NAN), Duration::from_secs(1));
        assert_eq!(b.jittered(1, -3.0), Duration::from_secs(1));
        let nan = b.with_jitter(f64::NAN);
        assert_eq!(nan.jittered(1, 0.9), Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn within_jitter_band(failures in 1u32..100, r in 0.0f64..1.0) {
            let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5)).with_jitter(0.5);
            let full = b.delay(failures);
            let d = b.jittered(failures, r);
            prop_assert!(d <= full);
            prop_assert!(d >= full.mul_f64(0.5) - Duration::from_nanos(1));
        }

        #[test]
        fn never_shrinks_with_more_failures(failures in 0u32..100) {
            let b = Backoff::default();
            prop_assert!(b.delay(failures) <= b.delay(failures + 1));
        }
    }
}
