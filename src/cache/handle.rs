//! [`CacheHandle`]: a type-erased view of a cache for exports and admin endpoints, and the statistics snapshot.

use std::fmt;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::key::key_from_text;
use super::stats::{
    CacheStatsSnapshot, Counter, Invalidations, ResponseStats, TagStats, evictions, hit_ratio,
    namespace_stats,
};
use super::store::{Cache, Inner};

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn snapshot(&self) -> CacheStatsSnapshot {
        let stats = &*self.stats;
        let c = &stats.global;
        let (hits, stale_hits, misses) = (
            c.sum(Counter::Hits),
            c.sum(Counter::StaleHits),
            c.sum(Counter::Misses),
        );
        let load_nanos = c.sum(Counter::LoadNanos);
        let (load_time_buckets, load_time) = stats.load_time.read(load_nanos);
        let tags = self.tags.stats();
        // Entries and bytes per namespace as they are now (the sweep's counts are as old as the last sweep).
        let tally = self.tally();
        let namespaces = stats
            .namespaces
            .list()
            .into_iter()
            .filter_map(|(name, index)| {
                let live = tally.as_ref().map(|t| {
                    t.namespaces
                        .get(usize::from(index))
                        .copied()
                        .unwrap_or((0, 0))
                });
                stats
                    .namespaces
                    .slot(index)
                    .map(|slot| namespace_stats(name, slot, live))
            })
            .collect();
        CacheStatsSnapshot {
            name: self.name.to_string(),
            hits,
            misses,
            stale_hits,
            fail_safe_hits: c.sum(Counter::FailSafeHits),
            coalesced: c.sum(Counter::Coalesced),
            loads: c.sum(Counter::Loads),
            load_failures: c.sum(Counter::LoadFailures),
            refreshes: c.sum(Counter::Refreshes),
            hit_ratio: hit_ratio(hits, stale_hits, misses),
            evictions: evictions(c),
            entries: self.table.len() as u64,
            weighted_bytes: self.weighted_bytes(tally.as_ref()),
            max_entries: self.max_entries,
            max_weight_bytes: self.max_weight,
            load_time,
            load_time_buckets,
            load_time_sum_secs: load_nanos as f64 / 1e9,
            invalidations: Invalidations {
                keys: stats.key_invalidations.load(Ordering::Relaxed),
                tags: stats.tag_invalidations.load(Ordering::Relaxed),
                prefixes: stats.prefix_invalidations.load(Ordering::Relaxed),
                patterns: stats.pattern_invalidations.load(Ordering::Relaxed),
                clears: stats.clears.load(Ordering::Relaxed),
            },
            tags: TagStats {
                interned: tags.interned,
                max_tags: tags.max_tags,
                overflowed: tags.overflowed,
                reclaimed: tags.reclaimed,
            },
            sweeps: stats.sweeps.load(Ordering::Relaxed),
            namespaces,
            namespace_overflow: stats.namespaces.overflowed(),
            responses: self.response_stats(),
            #[cfg(feature = "redis")]
            second_level: self.l2.as_ref().map(|l2| l2.stats()),
            #[cfg(not(feature = "redis"))]
            second_level: None,
        }
    }
}

impl<K, V> Inner<K, V> {
    /// The sum of the counters of the response-cache layers alive that use this cache as their store.
    fn response_stats(&self) -> Option<ResponseStats> {
        let mut layers = self.responses.lock();
        layers.retain(|layer| layer.strong_count() > 0);
        let mut total: Option<ResponseStats> = None;
        for layer in layers.iter().filter_map(Weak::upgrade) {
            layer.add_to(total.get_or_insert_with(ResponseStats::default));
        }
        total
    }
}

/// What a [`CacheHandle`] can do with a cache whose key and value types it does not know.
trait ErasedCache: Send + Sync {
    fn name(&self) -> &str;
    fn stats(&self) -> CacheStatsSnapshot;
    fn invalidate_key_str(&self, key: &str) -> bool;
    fn invalidate_tag(&self, tag: &str);
    fn invalidate_prefix(&self, prefix: &str);
    fn invalidate_matching(&self, pattern: &str) -> u64;
    fn clear(&self);
    fn run_pending_tasks(&self);
}

impl<K, V> ErasedCache for Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        Cache::name(self)
    }

    fn stats(&self) -> CacheStatsSnapshot {
        Cache::stats(self)
    }

    fn invalidate_key_str(&self, key: &str) -> bool {
        match key_from_text::<K>(key) {
            Some(key) => self.invalidate(&key),
            None => false,
        }
    }

    fn invalidate_tag(&self, tag: &str) {
        Cache::invalidate_tag(self, tag);
    }

    fn invalidate_prefix(&self, prefix: &str) {
        Cache::invalidate_prefix(self, prefix);
    }

    fn invalidate_matching(&self, pattern: &str) -> u64 {
        Cache::invalidate_matching(self, pattern)
    }

    fn clear(&self) {
        Cache::clear(self);
    }

    fn run_pending_tasks(&self) {
        Cache::run_pending_tasks(self);
    }
}

/// A cache with its key and value types erased, for statistics exports and admin endpoints; from
/// [`Cache::handle`]. Cheap to clone; it keeps the cache alive.
///
/// ```
/// use perfscope::cache::{Cache, CacheKey};
///
/// let products: Cache<CacheKey, String> = Cache::builder().name("products").build().unwrap();
/// products.insert(CacheKey::new("product").part(1), "Widget".into());
/// let handles = vec![products.handle()];
/// for cache in &handles {
///     assert_eq!(cache.name(), "products");
///     assert!(cache.invalidate_key_str("product:1"));
///     cache.invalidate_prefix("product");
///     println!("{}: {} entries", cache.name(), cache.stats().entries);
/// }
/// ```
#[derive(Clone)]
pub struct CacheHandle {
    inner: Arc<dyn ErasedCache>,
}

impl CacheHandle {
    pub(crate) fn new<K, V>(cache: Cache<K, V>) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        CacheHandle {
            inner: Arc::new(cache),
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The cache's statistics now.
    pub fn stats(&self) -> CacheStatsSnapshot {
        self.inner.stats()
    }

    /// Invalidates the key written as `key` ([`CacheKey`](super::CacheKey) text, or the string itself for
    /// `String`, `Arc<str>` and `Box<str>` keys). Returns whether a value was stored; always `false` for other
    /// key types.
    pub fn invalidate_key_str(&self, key: &str) -> bool {
        self.inner.invalidate_key_str(key)
    }

    /// See [`Cache::invalidate_tag`].
    pub fn invalidate_tag(&self, tag: &str) {
        self.inner.invalidate_tag(tag);
    }

    /// See [`Cache::invalidate_prefix`].
    pub fn invalidate_prefix(&self, prefix: &str) {
        self.inner.invalidate_prefix(prefix);
    }

    /// See [`Cache::invalidate_matching`] (scans the cache).
    pub fn invalidate_matching(&self, pattern: &str) -> u64 {
        self.inner.invalidate_matching(pattern)
    }

    /// See [`Cache::clear`].
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// See [`Cache::run_pending_tasks`].
    pub fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks();
    }
}

impl fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cache::Cache;

    #[test]
    fn a_handle_reports_and_invalidates_its_cache() {
        let cache: Cache<String, u32> = Cache::builder()
            .name("sessions")
            .max_entries(100)
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap();
        cache.insert_with_tags("s:1".into(), 1, ["user:1"]);
        cache.insert("s:2".into(), 2);
        let handle = cache.handle();
        assert_eq!(cache.get(&"s:1".into()), Some(1));
        let stats = handle.stats();
        assert_eq!(
            (stats.name.as_str(), stats.hits, stats.entries),
            ("sessions", 1, 2)
        );
        assert_eq!(stats.max_entries, Some(100));
        assert_eq!(stats.max_weight_bytes, None);
        handle.invalidate_tag("user:1");
        assert_eq!(cache.get(&"s:1".into()), None);
        // The read above removed the dead s:1; s:2 matches.
        assert_eq!(handle.invalidate_matching("s:*"), 1);
        assert_eq!(handle.stats().invalidations.patterns, 1);
        assert_eq!(handle.clone().name(), "sessions");
    }
}
