//! Capped exponential backoff with jitter, as a pure function of the
//! attempt number and a random fraction, so a thousand agents that lost the
//! coordinator together do not all come back in the same millisecond.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Fraction of the delay that is randomised, 0.0..=1.0.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0 = first retry); `random` is
    /// uniform in 0.0..1.0. The result lies in
    /// `[d * (1 - jitter), d]` where `d = min(cap, base * 2^attempt)`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(31)));
        let d = exp.min(self.cap);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let random = random.clamp(0.0, 1.0);
        d.mul_f64(1.0 - jitter * random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        let ms: Vec<u128> = (0..7).map(|a| b.delay(a, 0.7).as_millis()).collect();
        assert_eq!(ms, vec![200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(5));
    }

    proptest! {
        #[test]
        fn within_jitter_band(attempt in 0u32..100, r in 0.0f64..1.0) {
            let b = Backoff::default();
            let full = b.base.saturating_mul(2u32.saturating_pow(attempt.min(31))).min(b.cap);
            let d = b.delay(attempt, r);
            prop_assert!(d <= full);
            prop_assert!(d >= full.mul_f64(0.5) - Duration::from_nanos(1));
        }
    }
}
