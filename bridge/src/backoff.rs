//! Capped exponential backoff between tunnel connection attempts. Pure: the caller keeps the
//! clock.

use std::time::Duration;

/// Delay before attempt `n + 1` after `n` consecutive failures: `base * 2^(n-1)`, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound on any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (zero when there were none).
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let got: Vec<u128> = (0..8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(got, vec![0, 100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn never_overflows() {
        let b = Backoff::default();
        for n in [31, 32, 33, 64, u32::MAX] {
            assert_eq!(b.delay(n), b.max);
        }
    }
}
