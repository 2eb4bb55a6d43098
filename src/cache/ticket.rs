//! [`Ticket`]: the point of the invalidation clock a compute started at, and the per-key stamps that let an
//! insert made with it know whether its key was invalidated since.
//!
//! # Protocol
//! `invalidate(&key)` takes a new clock value `s`, raises the stamp of the key's stripe to `s`, *then* removes
//! the key. [`Cache::insert_since`](super::Cache::insert_since) with a ticket read at `t` first puts a
//! placeholder in the key's table slot (under the shard lock), *then* reads the stripe's stamp, and publishes
//! its value into the placeholder only if the stamp is still `<= t`. Either the removal comes after the
//! placeholder (it removes the placeholder, and publishing fails), or it came before, and then so did the stamp
//! raise, which the read after the placeholder sees. Tags, prefixes and `clear` need no stamp: the value is
//! stored with `born = t`, and every read compares `born` with their counters.
//!
//! Keys share [`STRIPES`] stamps by hash: an invalidation of another key of the same stripe after the ticket
//! also refuses the insert (a miss later, never a stale read).

use std::hash::{BuildHasher, Hash};

use quick_cache::DefaultHashBuilder;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-key invalidation stamps kept per cache (8 bytes each).
pub(crate) const STRIPES: usize = 1024;

/// A point of a cache's invalidation clock, taken before reading what a value is computed from; see
/// [`Cache::ticket`](super::Cache::ticket) and [`Cache::insert_since`](super::Cache::insert_since).
///
/// Opaque and `Copy`: it holds the clock value and which cache it belongs to (a ticket of another cache is
/// refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub(crate) seq: u64,
    pub(crate) cache: usize,
}

/// The clock value of the last `invalidate(&key)` of any key of each stripe.
#[derive(Debug)]
pub(crate) struct KeyStamps {
    stamps: Box<[AtomicU64]>,
    hasher: DefaultHashBuilder,
}

impl KeyStamps {
    pub(crate) fn new() -> Self {
        KeyStamps {
            stamps: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn stamp<K: Hash>(&self, key: &K) -> Option<&AtomicU64> {
        let index = (self.hasher.hash_one(key) as usize) % STRIPES;
        self.stamps.get(index)
    }

    /// Records that `key` was invalidated at clock value `s` (before the key is removed).
    pub(crate) fn invalidate<K: Hash>(&self, key: &K, s: u64) {
        if let Some(stamp) = self.stamp(key) {
            stamp.fetch_max(s, Ordering::SeqCst);
        }
    }

    /// Whether `key` (or a key of its stripe) was invalidated after clock value `born`.
    pub(crate) fn invalidated_since<K: Hash>(&self, key: &K, born: u64) -> bool {
        self.stamp(key)
            .is_none_or(|stamp| stamp.load(Ordering::SeqCst) > born)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_refuse_only_after_the_ticket() {
        let stamps = KeyStamps::new();
        assert!(!stamps.invalidated_since(&"a", 5));
        stamps.invalidate(&"a", 6);
        assert!(stamps.invalidated_since(&"a", 5));
        assert!(!stamps.invalidated_since(&"a", 6));
        // Stamps only grow.
        stamps.invalidate(&"a", 3);
        assert!(stamps.invalidated_since(&"a", 5));
    }
}
