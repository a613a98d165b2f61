//! The set of blocks a standby misses while the primary runs alone: one
//! bit per block, so its memory is fixed by the volume's size (2 KiB for
//! 1 GiB of 64 KiB blocks) however long the standby stays away.

/// A fixed-size bitmap of block indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBlocks {
    words: Vec<u64>,
    total_blocks: u64,
    count: u64,
}

impl DirtyBlocks {
    pub fn new(total_blocks: u64) -> Self {
        let words = usize::try_from(total_blocks.div_ceil(64)).unwrap_or(usize::MAX);
        Self {
            words: vec![0; words],
            total_blocks,
            count: 0,
        }
    }

    /// Marks the blocks that bytes `offset..offset + len` touch. Bytes past
    /// the end of the volume are ignored (the caller refused such writes).
    pub fn mark_range(&mut self, offset: u64, len: u64, block_size: u32) {
        if len == 0 || block_size == 0 {
            return;
        }
        let bs = u64::from(block_size);
        let first = offset / bs;
        let last = (offset.saturating_add(len - 1) / bs).min(self.total_blocks.saturating_sub(1));
        let mut i = first;
        while i <= last && i < self.total_blocks {
            self.mark(i);
            i += 1;
        }
    }

    pub fn mark(&mut self, index: u64) {
        let (w, bit) = (index / 64, index % 64);
        if let Some(word) = usize::try_from(w).ok().and_then(|w| self.words.get_mut(w)) {
            if *word & (1 << bit) == 0 {
                *word |= 1 << bit;
                self.count += 1;
            }
        }
    }

    pub fn contains(&self, index: u64) -> bool {
        let (w, bit) = (index / 64, index % 64);
        usize::try_from(w)
            .ok()
            .and_then(|w| self.words.get(w))
            .is_some_and(|word| word & (1 << bit) != 0)
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
    }

    /// The marked block indexes, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &word)| {
            (0..64u64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| wi as u64 * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_mark_every_touched_block_once() {
        let mut d = DirtyBlocks::new(10);
        d.mark_range(4095, 2, 4096); // blocks 0 and 1
        d.mark_range(0, 1, 4096); // block 0 again
        d.mark_range(9 * 4096, 100_000, 4096); // runs past the end: block 9 only
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![0, 1, 9]);
        assert_eq!(d.len(), 3);
        d.mark(1_000); // outside: ignored, no panic
        assert_eq!(d.len(), 3);
        assert!(d.contains(9) && !d.contains(5));
        d.clear();
        assert!(d.is_empty());
    }
}
