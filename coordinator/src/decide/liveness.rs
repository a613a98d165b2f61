//! Node liveness as a pure function of the last heartbeat and `now`.
//!
//! A node is Ready while heartbeats arrive, Suspect once `suspect_after`
//! heartbeats in a row are missing, Down once `down_after` are. Counting
//! in the agent's own interval keeps the policy meaningful for agents that
//! heartbeat at different rates.

use std::time::Duration;

use mesh_proto::v1::NodeState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessPolicy {
    /// Missed heartbeats before a node is Suspect.
    pub suspect_after: u32,
    /// Missed heartbeats before a node is Down.
    pub down_after: u32,
}

impl Default for LivenessPolicy {
    fn default() -> Self {
        LivenessPolicy {
            suspect_after: 3,
            down_after: 10,
        }
    }
}

impl LivenessPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if self.suspect_after == 0 {
            return Err("suspect_after must be at least 1 missed heartbeat".into());
        }
        if self.down_after <= self.suspect_after {
            return Err(format!(
                "down_after ({}) must be greater than suspect_after ({})",
                self.down_after, self.suspect_after
            ));
        }
        Ok(())
    }
}

/// How many whole heartbeats were missed after `silence` with no heartbeat.
pub fn missed_heartbeats(silence: Duration, interval: Duration) -> u64 {
    if interval.is_zero() {
        return 0;
    }
    (silence.as_nanos() / interval.as_nanos()) as u64
}

/// The state a node should be in after `silence` without a heartbeat.
pub fn assess(silence: Duration, interval: Duration, policy: &LivenessPolicy) -> NodeState {
    let missed = missed_heartbeats(silence, interval);
    if missed >= u64::from(policy.down_after) {
        NodeState::Down
    } else if missed >= u64::from(policy.suspect_after) {
        NodeState::Suspect
    } else {
        NodeState::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn thresholds() {
        let p = LivenessPolicy {
            suspect_after: 3,
            down_after: 10,
        };
        assert_eq!(assess(MS(0), MS(500), &p), NodeState::Ready);
        assert_eq!(assess(MS(1499), MS(500), &p), NodeState::Ready);
        assert_eq!(assess(MS(1500), MS(500), &p), NodeState::Suspect);
        assert_eq!(assess(MS(4999), MS(500), &p), NodeState::Suspect);
        assert_eq!(assess(MS(5000), MS(500), &p), NodeState::Down);
    }

    #[test]
    fn policy_validation() {
        assert!(LivenessPolicy::default().validate().is_ok());
        let bad = LivenessPolicy {
            suspect_after: 5,
            down_after: 5,
        };
        assert!(bad.validate().unwrap_err().contains("greater than"));
        let zero = LivenessPolicy {
            suspect_after: 0,
            down_after: 5,
        };
        assert!(zero.validate().is_err());
    }

    proptest! {
        /// Longer silence never makes a node look healthier.
        #[test]
        fn monotone_in_silence(a in 0u64..100_000, b in 0u64..100_000, interval in 1u64..5_000,
                               s in 1u32..20, extra in 1u32..20) {
            let p = LivenessPolicy { suspect_after: s, down_after: s + extra };
            let rank = |st: NodeState| match st {
                NodeState::Ready => 0, NodeState::Suspect => 1, _ => 2 };
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(rank(assess(MS(lo), MS(interval), &p)) <= rank(assess(MS(hi), MS(interval), &p)));
        }
    }
}
