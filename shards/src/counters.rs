//! Per-shard counters: each shard adds to its own cache line, any thread sums them without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// One `u64` per shard, each on its own cache line so shards never contend.
///
/// Share it with `Arc`. Adds are `Relaxed`: a reader's sum is a consistent-enough snapshot for
/// statistics, not a synchronisation point.
#[derive(Debug)]
pub struct Counters {
    slots: Box<[CachePadded<AtomicU64>]>,
}

impl Counters {
    /// Counters for `shards` shards (at least one slot).
    pub fn new(shards: usize) -> Self {
        Self {
            slots: (0..shards.max(1))
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: there is at least one slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds `n` to `shard`'s slot. An out-of-range shard wraps around rather than panicking.
    pub fn add(&self, shard: usize, n: u64) {
        self.slot(shard).fetch_add(n, Ordering::Relaxed);
    }

    /// `shard`'s own count (wrapping like `add`).
    pub fn get(&self, shard: usize) -> u64 {
        self.slot(shard).load(Ordering::Relaxed)
    }

    /// The total over all shards.
    pub fn sum(&self) -> u64 {
        self.slots
            .iter()
            .fold(0u64, |acc, s| acc.wrapping_add(s.load(Ordering::Relaxed)))
    }

    fn slot(&self, shard: usize) -> &AtomicU64 {
        &self.slots[shard % self.slots.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn add_get_sum_table() {
        // (slots, adds as (shard, n), expected per-slot, expected sum)
        type Case = (usize, &'static [(usize, u64)], &'static [u64], u64);
        let cases: [Case; 3] = [
            (2, &[(0, 1), (1, 2), (1, 3)], &[1, 5], 6),
            (0, &[(5, 7)], &[7], 7),
            (3, &[(4, 1)], &[0, 1, 0], 1),
        ];
        for (slots, adds, per_slot, sum) in cases {
            let c = Counters::new(slots);
            for &(shard, n) in adds {
                c.add(shard, n);
            }
            let got: Vec<u64> = (0..c.len()).map(|i| c.get(i)).collect();
            assert_eq!(got, per_slot);
            assert_eq!(c.sum(), sum);
        }
    }

    #[test]
    fn threads_add_concurrently() {
        let c = Arc::new(Counters::new(4));
        let threads: Vec<_> = (0..4)
            .map(|shard| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(shard, 1)))
            })
            .collect();
        for t in threads {
            t.join().expect("adder");
        }
        assert_eq!(c.sum(), 4000);
    }
}
