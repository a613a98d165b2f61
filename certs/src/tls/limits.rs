//! How many TLS (and QUIC) handshakes may be under way at once: in all,
//! and from one IP address. A connection beyond either is refused before
//! any cryptography is done, so a peer holding many idle or slow
//! handshakes cannot take every slot, nor the CPU, from real members.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits; see [`HandshakeSlots`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeLimits {
    pub global: usize,
    pub per_peer: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            global: 512,
            per_peer: 64,
        }
    }
}

/// Which limit a refused handshake hit; its label is the metrics reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// `global` handshakes already under way.
    Overload,
    /// `per_peer` handshakes from this IP already under way.
    PeerLimit,
}

impl LimitHit {
    pub fn label(self) -> &'static str {
        match self {
            LimitHit::Overload => "overload",
            LimitHit::PeerLimit => "peer_limit",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// Handshakes under way; a [`Slot`] is given back when dropped.
#[derive(Debug, Clone, Default)]
pub struct HandshakeSlots {
    limits: HandshakeLimits,
    counts: Arc<Mutex<Counts>>,
}

/// One handshake's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl HandshakeSlots {
    pub fn new(limits: HandshakeLimits) -> HandshakeSlots {
        HandshakeSlots {
            limits,
            counts: Arc::default(),
        }
    }

    pub fn limits(&self) -> HandshakeLimits {
        self.limits
    }

    /// A place for one more handshake from `ip`, or which limit is hit.
    pub fn take(&self, ip: IpAddr) -> Result<Slot, LimitHit> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.limits.global {
            return Err(LimitHit::Overload);
        }
        let n = c.per_peer.entry(ip).or_insert(0);
        if *n >= self.limits.per_peer {
            return Err(LimitHit::PeerLimit);
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_peer.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_peer.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_and_global_limits_and_slots_come_back() {
        let slots = HandshakeSlots::new(HandshakeLimits {
            global: 3,
            per_peer: 2,
        });
        let a: IpAddr = [10, 0, 0, 2].into();
        let b: IpAddr = [10, 0, 0, 3].into();
        let c: IpAddr = [10, 0, 0, 4].into();
        let one = slots.take(a).unwrap();
        let _two = slots.take(a).unwrap();
        assert_eq!(slots.take(a).unwrap_err(), LimitHit::PeerLimit);
        let _three = slots.take(b).unwrap();
        assert_eq!(slots.take(c).unwrap_err(), LimitHit::Overload);
        drop(one);
        assert!(
            slots.take(a).is_ok(),
            "a finished handshake gives its slot back"
        );
    }
}
