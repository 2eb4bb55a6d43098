//! The sweep that frees expired and invalidated entries and unused tags, and the background task that runs it.

use std::cell::Cell;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::entry::EntryWeighter;
use super::stats::{Counter, NO_NAMESPACE};
use super::store::{DeadBy, Inner, State};
use crate::thread_slot as slot;

/// Largest table [`Inner::tally`] walks for a statistics read (about a millisecond per 100,000 entries); larger
/// caches report the last sweep's entries per namespace and bytes.
pub(crate) const LIVE_TALLY_MAX_ENTRIES: usize = 200_000;

/// What [`Inner::tally`] counted: weighted bytes, and per namespace index its entries and bytes.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) bytes: u64,
    pub(crate) namespaces: Vec<(u64, u64)>,
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// One pass over the table: see [`Cache::run_pending_tasks`](super::Cache::run_pending_tasks).
    pub(crate) fn sweep(&self) {
        let now = self.clock.now();
        // Read the marker before the slot count: slots interned after it are younger than the marker.
        let marker = self.tags.scan_marker();
        let live: Vec<Cell<u64>> = vec![Cell::new(0); self.tags.slots().div_ceil(64)];
        let namespaces: Vec<Cell<(u64, u64)>> =
            vec![Cell::new((0, 0)); self.stats.namespaces.capacity()];
        let bytes = Cell::new(0_u64);
        let stripe = slot::current();
        self.table.retain(|_, stored| {
            let state = self.classify(stored, now);
            let counter = match state {
                State::Fresh | State::Stale | State::Expired { fail_safe: true } => None,
                State::Expired { fail_safe: false } => Some(Counter::EvictExpired),
                State::Dead(DeadBy::Tag) => Some(Counter::EvictTag),
                State::Dead(DeadBy::Clear) => Some(Counter::EvictExplicit),
            };
            if let Some(counter) = counter {
                self.stats.add(stripe, stored.meta.ns, counter, 1);
                return false;
            }
            for &id in stored.meta.tags() {
                if let Some(word) = live.get(id as usize / 64) {
                    word.set(word.get() | 1 << (id % 64));
                }
            }
            bytes.set(bytes.get() + u64::from(stored.meta.bytes));
            if stored.meta.ns != NO_NAMESPACE
                && let Some(tally) = namespaces.get(stored.meta.ns as usize)
            {
                let (entries, ns_bytes) = tally.get();
                tally.set((entries + 1, ns_bytes + u64::from(stored.meta.bytes)));
            }
            true
        });
        let live: Vec<u64> = live.into_iter().map(Cell::into_inner).collect();
        self.tags.reclaim(&live, marker, &self.seq);
        for (index, tally) in namespaces.into_iter().enumerate() {
            let (entries, ns_bytes) = tally.into_inner();
            if let Some(slot) = self.stats.namespaces.slot(index as u16)
                && (entries > 0 || slot.swept_entries.load(Ordering::Relaxed) > 0)
            {
                slot.swept_entries.store(entries, Ordering::Relaxed);
                slot.swept_bytes.store(ns_bytes, Ordering::Relaxed);
            }
        }
        self.stats.swept_bytes.store(bytes.get(), Ordering::Relaxed);
        self.stats.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Live weighted bytes: the table's weight when it counts bytes, else `tally`'s count or, without one (a
    /// table too large to walk for a read), what the last sweep counted.
    pub(crate) fn weighted_bytes(&self, tally: Option<&Tally>) -> u64 {
        match (self.weight_mode, tally) {
            (EntryWeighter::Bytes { .. }, _) => self.table.weight(),
            (EntryWeighter::Count, Some(tally)) => tally.bytes,
            (EntryWeighter::Count, None) => self.stats.swept_bytes.load(Ordering::Relaxed),
        }
    }

    /// Entries and weighted bytes of the table now, in total and per namespace: one pass over the table (each
    /// shard locked in turn, as a sweep does), for a statistics read. `None` past [`LIVE_TALLY_MAX_ENTRIES`]
    /// entries, where the last sweep's counts serve instead.
    pub(crate) fn tally(&self) -> Option<Tally> {
        if self.table.len() > LIVE_TALLY_MAX_ENTRIES {
            return None;
        }
        // `retain` takes an `Fn`: count through cells, as the sweep does.
        let bytes = Cell::new(0_u64);
        let namespaces: Vec<Cell<(u64, u64)>> =
            vec![Cell::new((0, 0)); self.stats.namespaces.capacity()];
        self.table.retain(|_, stored| {
            let weight = u64::from(stored.meta.bytes);
            bytes.set(bytes.get() + weight);
            if let Some(tally) = namespaces.get(usize::from(stored.meta.ns)) {
                let (entries, ns_bytes) = tally.get();
                tally.set((entries + 1, ns_bytes + weight));
            }
            true
        });
        Some(Tally {
            bytes: bytes.into_inner(),
            namespaces: namespaces.into_iter().map(Cell::into_inner).collect(),
        })
    }
}

/// Starts the background sweeper if it is configured, not started yet, and a tokio runtime is current.
pub(crate) fn start<K, V>(inner: &Arc<Inner<K, V>>)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let Some(interval) = inner.sweep_interval else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut task = inner.sweeper.lock();
    if inner.sweeper_started.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(inner);
    let handle = runtime.spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(inner) = weak.upgrade() else {
                break;
            };
            // The sweep is CPU work proportional to the entries: keep it off the async workers.
            if tokio::task::spawn_blocking(move || inner.sweep())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    *task = Some(handle.abort_handle());
}

/// [`start`] once, from the first load when the cache was built outside a runtime.
#[inline]
pub(crate) fn ensure_started<K, V>(inner: &Arc<Inner<K, V>>)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    if inner.sweep_interval.is_some() && !inner.sweeper_started.load(Ordering::Relaxed) {
        start(inner);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cache::{Cache, CacheKey};

    #[test]
    fn a_sweep_removes_the_dead_counts_the_living_and_frees_tags() {
        let cache: Cache<CacheKey, u32> = Cache::builder()
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap();
        for i in 0..10 {
            cache.insert_with_tags(CacheKey::new("p").part(i), i, [format!("t{i}")]);
        }
        cache.insert(CacheKey::new("q").part(1), 1);
        cache.invalidate_tags(["t1", "t2"]);
        cache.run_pending_tasks();
        let stats = cache.stats();
        assert_eq!(stats.entries, 9);
        assert_eq!(stats.evictions.tag, 2);
        // t0..t9 minus t1 and t2, plus the prefix tags `p` and `q`.
        assert_eq!(stats.tags.interned, 8 + 2);
        assert_eq!(stats.tags.reclaimed, 2);
        let p = &stats.namespaces[0];
        assert_eq!((p.namespace.as_str(), p.entries), ("p", 8));
        assert!(p.weighted_bytes > 0);
        assert_eq!(stats.sweeps, 1);
        // Count-bounded caches report the bytes the sweep counted.
        assert!(stats.weighted_bytes >= p.weighted_bytes);
    }
}
