//! Generations that only grow: across coordinator restarts (the last one
//! handed out is persisted before it is sent) and across a wall clock
//! stepped back (the persisted value is a floor).

use std::sync::Arc;

use crate::state::store::{GenerationKey, Store, StoreError};

/// The next generation: above the last one, and at least the wall clock in
/// milliseconds, so a restarted coordinator without a store still outranks
/// what agents remember from before the restart.
pub fn next_generation(previous: u64, now_unix_ms: u64) -> u64 {
    previous.saturating_add(1).max(now_unix_ms)
}

/// Numbers directories and container sets; with a store, every number is
/// committed there before it is returned.
#[derive(Clone, Debug, Default)]
pub struct Numbering {
    store: Option<Arc<Store>>,
}

impl Numbering {
    pub fn new(store: Option<Arc<Store>>) -> Numbering {
        Numbering { store }
    }

    /// The generation after `previous` (what this process last handed out
    /// for `key`) at `now_unix_ms`.
    pub fn next(
        &self,
        key: &GenerationKey,
        previous: u64,
        now_unix_ms: u64,
    ) -> Result<u64, StoreError> {
        let floor = next_generation(previous, now_unix_ms);
        match &self.store {
            Some(store) => store.next_generation(key, floor),
            None => Ok(floor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_only_grow() {
        assert_eq!(next_generation(0, 1000), 1000);
        assert_eq!(next_generation(1000, 1000), 1001);
        assert_eq!(next_generation(5000, 10), 5001);
        assert_eq!(next_generation(u64::MAX, 10), u64::MAX);
    }

    #[test]
    fn a_restarted_process_numbers_above_the_last_even_with_the_clock_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || Numbering::new(Some(Arc::new(Store::open(dir.path()).expect("open"))));
        let key = GenerationKey::Desired("pc2".into());
        let first = open();
        let a = first.next(&key, 0, 1_000_000).expect("number");
        let b = first.next(&key, a, 1_000_000).expect("number");
        assert_eq!((a, b), (1_000_000, 1_000_001));
        drop(first);
        // A new process knows nothing in memory, and its clock is behind.
        let again = open();
        let c = again.next(&key, 0, 5).expect("number");
        assert!(c > b, "{c} after {b}");
        let directory = again.next(&GenerationKey::Directory, 0, 5).expect("number");
        assert_eq!(directory, 5, "each key has its own floor");
    }

    #[test]
    fn without_a_store_the_wall_clock_is_the_floor() {
        let n = Numbering::default();
        let key = GenerationKey::Directory;
        assert_eq!(n.next(&key, 0, 700).expect("number"), 700);
        assert_eq!(n.next(&key, 700, 700).expect("number"), 701);
    }
}
