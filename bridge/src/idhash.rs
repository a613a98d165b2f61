//! A cheap hasher for maps keyed by ids this agent assigns itself (request ids): sequential
//! `u64`s that neither peers nor local clients choose, so SipHash's resistance to chosen keys
//! buys nothing there, while it showed up in the pipelined request path's profile.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiplicative hashing (the constant of rustc's FxHasher): distinct low bits for sequential
/// keys, mixed high bits for hashbrown's control bytes.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }
}

/// A map keyed by self-assigned ids.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn sequential_ids_round_trip() {
        let mut m: IdMap<u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert(i, i * 2);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000u64).all(|i| m.get(&i) == Some(&(i * 2))));
        assert_eq!(m.remove(&42), Some(84));
        assert_eq!(m.get(&42), None);
    }
}
