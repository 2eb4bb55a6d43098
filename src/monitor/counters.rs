//! Counter arrays that many threads add to without contention.
//!
//! Each live thread that records owns one shard (its [`thread_slot`](crate::thread_slot)) and writes it with a plain load and store,
//! because no other thread writes it; threads beyond the owned shards share one shard written with atomic adds.
//! Shards are allocated on a thread's first write, so an idle route costs a few pointers.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::thread_slot;

/// `len` counters, sharded per recording thread.
#[derive(Debug)]
pub(crate) struct ShardedCounters {
    len: usize,
    owned: Box<[OnceLock<Box<[AtomicU64]>>]>,
    shared: OnceLock<Box<[AtomicU64]>>,
}

fn new_shard(len: usize) -> Box<[AtomicU64]> {
    (0..len).map(|_| AtomicU64::new(0)).collect()
}

/// A handle on the current thread's shard, valid for a few writes.
#[derive(Debug)]
pub(crate) enum ShardRef<'a> {
    /// Written only by this thread.
    Owned(&'a [AtomicU64]),
    /// Written by several threads.
    Shared(&'a [AtomicU64]),
}

impl ShardRef<'_> {
    /// Adds `by` to counter `index` (ignored when out of range).
    #[inline]
    pub(crate) fn add(&self, index: usize, by: u64) {
        match self {
            ShardRef::Owned(cells) => {
                if let Some(cell) = cells.get(index) {
                    cell.store(
                        cell.load(Ordering::Relaxed).wrapping_add(by),
                        Ordering::Relaxed,
                    );
                }
            }
            ShardRef::Shared(cells) => {
                if let Some(cell) = cells.get(index) {
                    cell.fetch_add(by, Ordering::Relaxed);
                }
            }
        }
    }

    /// Raises counter `index` to `value` if it is lower.
    #[inline]
    pub(crate) fn max(&self, index: usize, value: u64) {
        match self {
            ShardRef::Owned(cells) => {
                if let Some(cell) = cells.get(index)
                    && value > cell.load(Ordering::Relaxed)
                {
                    cell.store(value, Ordering::Relaxed);
                }
            }
            ShardRef::Shared(cells) => {
                if let Some(cell) = cells.get(index) {
                    cell.fetch_max(value, Ordering::Relaxed);
                }
            }
        }
    }
}

impl ShardedCounters {
    pub(crate) fn new(len: usize) -> Self {
        ShardedCounters {
            len,
            owned: (0..thread_slot::OWNED).map(|_| OnceLock::new()).collect(),
            shared: OnceLock::new(),
        }
    }

    /// The current thread's shard, created on first use.
    #[inline]
    pub(crate) fn shard(&self) -> ShardRef<'_> {
        match thread_slot::current() {
            // Stripes below OWNED (the length of `owned`) have one writer; OWNED itself is shared.
            slot if slot < self.owned.len() => {
                ShardRef::Owned(self.owned[slot].get_or_init(|| new_shard(self.len)))
            }
            _ => ShardRef::Shared(self.shared.get_or_init(|| new_shard(self.len))),
        }
    }

    fn shards(&self) -> impl Iterator<Item = &[AtomicU64]> {
        self.owned
            .iter()
            .chain(std::iter::once(&self.shared))
            .filter_map(|shard| shard.get().map(|cells| &cells[..]))
    }

    /// Adds counters `range` of every shard into `totals`.
    pub(crate) fn sum_into(&self, start: usize, totals: &mut [u64]) {
        for shard in self.shards() {
            for (total, cell) in totals.iter_mut().zip(shard.iter().skip(start)) {
                *total = total.wrapping_add(cell.load(Ordering::Relaxed));
            }
        }
    }

    /// The sum of counter `index` over all shards.
    pub(crate) fn sum(&self, index: usize) -> u64 {
        self.shards()
            .filter_map(|shard| shard.get(index))
            .fold(0u64, |total, cell| {
                total.wrapping_add(cell.load(Ordering::Relaxed))
            })
    }

    /// The largest value of counter `index` over all shards.
    pub(crate) fn max(&self, index: usize) -> u64 {
        self.shards()
            .filter_map(|shard| shard.get(index))
            .map(|cell| cell.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_adds_from_many_threads_are_all_counted() {
        let counters = Arc::new(ShardedCounters::new(3));
        let threads: Vec<_> = (0..thread_slot::OWNED + 6)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for value in 0..1_000 {
                        let shard = counters.shard();
                        shard.add(0, 1);
                        shard.add(1, value);
                        shard.max(2, value);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let threads = thread_slot::OWNED as u64 + 6;
        assert_eq!(counters.sum(0), threads * 1_000);
        assert_eq!(counters.sum(1), threads * 999 * 1_000 / 2);
        assert_eq!(counters.max(2), 999);
        let mut totals = [0u64; 2];
        counters.sum_into(0, &mut totals);
        assert_eq!(totals, [threads * 1_000, threads * 999 * 1_000 / 2]);
    }

    #[test]
    fn out_of_range_indices_are_ignored() {
        let counters = ShardedCounters::new(1);
        counters.shard().add(5, 1);
        counters.shard().max(5, 1);
        assert_eq!(counters.sum(0), 0);
        assert_eq!(counters.sum(5), 0);
    }
}
