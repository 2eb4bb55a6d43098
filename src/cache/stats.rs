//! Statistics: counters striped per thread (no lock, no shared cache line on the read path), a fixed-bucket
//! load-time histogram, a bounded table of key namespaces, and the typed snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;

use crate::snapshot::{Bucket, Percentiles};
use crate::thread_slot as slot;

/// What a counter counts. The discriminant is the index in a stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Counter {
    Hits,
    Misses,
    StaleHits,
    FailSafeHits,
    Coalesced,
    Loads,
    LoadFailures,
    LoadNanos,
    Refreshes,
    EvictSize,
    EvictExpired,
    EvictExplicit,
    EvictTag,
}

const COUNTERS: usize = 13;

/// One thread's counters, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe([AtomicU64; COUNTERS]);

/// Counters striped by thread: each live thread owns a stripe and writes it with a plain load and store.
#[derive(Debug)]
pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            stripes: (0..=slot::OWNED).map(|_| Stripe::default()).collect(),
        }
    }

    /// Adds `by` to `counter` in the stripe `stripe` (from [`slot::current`]).
    #[inline]
    pub(crate) fn add(&self, stripe: usize, counter: Counter, by: u64) {
        let Some(stripe_cells) = self.stripes.get(stripe) else {
            return;
        };
        let cell = &stripe_cells.0[counter as usize];
        if stripe < slot::OWNED {
            // Only this thread writes this stripe.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(by),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(by, Ordering::Relaxed);
        }
    }

    pub(crate) fn sum(&self, counter: Counter) -> u64 {
        self.stripes.iter().fold(0_u64, |total, stripe| {
            total.wrapping_add(stripe.0[counter as usize].load(Ordering::Relaxed))
        })
    }
}

/// Upper bounds of the load-time buckets, in microseconds: 1 µs to about 67 s in powers of two, then +Inf.
const LOAD_BUCKETS: usize = 28;

/// A fixed-bucket histogram of load times (loads are the slow path: shared atomic adds are fine).
#[derive(Debug)]
pub(crate) struct LoadHistogram {
    buckets: [AtomicU64; LOAD_BUCKETS],
    max_nanos: AtomicU64,
}

impl LoadHistogram {
    pub(crate) fn new() -> Self {
        LoadHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max_nanos: AtomicU64::new(0),
        }
    }

    fn bucket(micros: u64) -> usize {
        if micros <= 1 {
            0
        } else {
            // ceil(log2(micros))
            ((64 - (micros - 1).leading_zeros()) as usize).min(LOAD_BUCKETS - 1)
        }
    }

    fn upper_secs(bucket: usize) -> f64 {
        if bucket + 1 >= LOAD_BUCKETS {
            f64::INFINITY
        } else {
            (1_u64 << bucket) as f64 / 1e6
        }
    }

    pub(crate) fn record(&self, elapsed: Duration) {
        let nanos = super::clock::nanos(elapsed);
        let micros = nanos.div_ceil(1000);
        self.buckets[Self::bucket(micros)].fetch_add(1, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Cumulative buckets (Prometheus `le` semantics) and percentiles (bucket upper bounds, so an estimate
    /// within a factor of two).
    pub(crate) fn read(&self, sum_nanos: u64) -> (Vec<Bucket>, Percentiles) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let mut cumulative = 0;
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                cumulative += count;
                Bucket {
                    le_secs: Self::upper_secs(i),
                    count: cumulative,
                }
            })
            .collect::<Vec<_>>();
        let max_ms = self.max_nanos.load(Ordering::Relaxed) as f64 / 1e6;
        let quantile = |q: f64| -> f64 {
            if total == 0 {
                return 0.0;
            }
            let rank = ((q * total as f64).ceil() as u64).max(1);
            buckets
                .iter()
                .find(|b| b.count >= rank)
                .map_or(max_ms, |b| (b.le_secs * 1e3).min(max_ms))
        };
        let percentiles = Percentiles {
            count: total,
            p50_ms: quantile(0.50),
            p90_ms: quantile(0.90),
            p95_ms: quantile(0.95),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms,
            mean_ms: if total == 0 {
                0.0
            } else {
                sum_nanos as f64 / total as f64 / 1e6
            },
        };
        (buckets, percentiles)
    }
}

/// The namespace index meaning "no namespace".
pub(crate) const NO_NAMESPACE: u16 = u16::MAX;

/// Label of the bucket for namespaces past the cap.
pub(crate) const OTHER_NAMESPACE: &str = "<other>";

/// Per-namespace counters and the entries/bytes the last sweep counted.
#[derive(Debug)]
pub(crate) struct NamespaceSlot {
    pub(crate) counters: Counters,
    pub(crate) swept_entries: AtomicU64,
    pub(crate) swept_bytes: AtomicU64,
}

/// A bounded table of key namespaces; the last slot is `<other>`.
#[derive(Debug)]
pub(crate) struct Namespaces {
    max: usize,
    index: RwLock<HashMap<Box<str>, u16, quick_cache::DefaultHashBuilder>>,
    names: RwLock<Vec<Box<str>>>,
    slots: Box<[OnceLock<NamespaceSlot>]>,
    overflowed: AtomicU64,
}

impl Namespaces {
    pub(crate) fn new(max: usize) -> Self {
        Namespaces {
            max,
            index: RwLock::new(HashMap::default()),
            names: RwLock::new(Vec::new()),
            slots: (0..=max).map(|_| OnceLock::new()).collect(),
            overflowed: AtomicU64::new(0),
        }
    }

    /// The index of `name`, registering it if there is room, else the `<other>` index.
    pub(crate) fn resolve(&self, name: &str) -> u16 {
        if let Some(&index) = self.index.read().get(name) {
            return index;
        }
        let mut map = self.index.write();
        if let Some(&index) = map.get(name) {
            return index;
        }
        if map.len() >= self.max {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return self.max as u16;
        }
        let index = map.len() as u16;
        map.insert(name.into(), index);
        self.names.write().push(name.into());
        index
    }

    /// The slot of namespace `index`, created on first use; `None` for [`NO_NAMESPACE`].
    #[inline]
    pub(crate) fn slot(&self, index: u16) -> Option<&NamespaceSlot> {
        self.slots.get(index as usize).map(|cell| {
            cell.get_or_init(|| NamespaceSlot {
                counters: Counters::new(),
                swept_entries: AtomicU64::new(0),
                swept_bytes: AtomicU64::new(0),
            })
        })
    }

    /// Registered names with their index, then `<other>` if it was used.
    pub(crate) fn list(&self) -> Vec<(String, u16)> {
        let names = self.names.read();
        let mut out: Vec<(String, u16)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), i as u16))
            .collect();
        if self
            .slots
            .get(self.max)
            .is_some_and(|cell| cell.get().is_some())
        {
            out.push((OTHER_NAMESPACE.to_owned(), self.max as u16));
        }
        out
    }

    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.max + 1
    }
}

/// Everything a cache counts, shared with its eviction hook.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) global: Counters,
    pub(crate) namespaces: Namespaces,
    pub(crate) load_time: LoadHistogram,
    pub(crate) key_invalidations: AtomicU64,
    pub(crate) tag_invalidations: AtomicU64,
    pub(crate) prefix_invalidations: AtomicU64,
    pub(crate) pattern_invalidations: AtomicU64,
    pub(crate) clears: AtomicU64,
    pub(crate) sweeps: AtomicU64,
    pub(crate) swept_bytes: AtomicU64,
}

impl Stats {
    pub(crate) fn new(max_namespaces: usize) -> Self {
        Stats {
            global: Counters::new(),
            namespaces: Namespaces::new(max_namespaces),
            load_time: LoadHistogram::new(),
            key_invalidations: AtomicU64::new(0),
            tag_invalidations: AtomicU64::new(0),
            prefix_invalidations: AtomicU64::new(0),
            pattern_invalidations: AtomicU64::new(0),
            clears: AtomicU64::new(0),
            sweeps: AtomicU64::new(0),
            swept_bytes: AtomicU64::new(0),
        }
    }

    /// Adds to a counter, globally and for namespace `ns`.
    #[inline]
    pub(crate) fn add(&self, stripe: usize, ns: u16, counter: Counter, by: u64) {
        self.global.add(stripe, counter, by);
        if ns != NO_NAMESPACE
            && let Some(slot) = self.namespaces.slot(ns)
        {
            slot.counters.add(stripe, counter, by);
        }
    }

    /// Records a finished load of namespace `ns`.
    pub(crate) fn load(&self, stripe: usize, ns: u16, elapsed: Duration, failed: bool) {
        self.add(stripe, ns, Counter::Loads, 1);
        self.add(stripe, ns, Counter::LoadNanos, super::clock::nanos(elapsed));
        if failed {
            self.add(stripe, ns, Counter::LoadFailures, 1);
        }
        self.load_time.record(elapsed);
    }
}

/// Entries removed, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Evictions {
    /// Removed to stay within `max_entries` / `max_weight`, or never admitted because one entry outweighed a
    /// whole shard.
    pub size: u64,
    /// Removed by a read or the sweeper after its TTL (and stale and fail-safe windows) ran out.
    pub expired: u64,
    /// Removed by `invalidate`, `invalidate_prefix` (the exact key), `invalidate_matching` or after `clear`.
    pub explicit: u64,
    /// Removed by a read or the sweeper because one of its tags (or key prefixes) was invalidated.
    pub tag: u64,
}

/// Counters of one key namespace (the first part of a [`CacheKey`](super::CacheKey), or what the builder's
/// `namespace` function returns).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct NamespaceStats {
    /// The namespace, or `<other>` for namespaces past `max_namespaces`.
    pub namespace: String,
    /// Lookups that found a fresh value.
    pub hits: u64,
    /// Lookups that found no usable value and ran the loader (or read the second level); callers that waited
    /// for another caller's load are `coalesced`, not misses.
    pub misses: u64,
    /// Lookups served a stale value while it was refreshed in the background.
    pub stale_hits: u64,
    /// Failed loads answered with an expired value (fail-safe).
    pub fail_safe_hits: u64,
    /// Callers that waited for another caller's load of the same key instead of loading.
    pub coalesced: u64,
    /// Loader runs (misses and background refreshes).
    pub loads: u64,
    /// Loader runs that returned an error or panicked.
    pub load_failures: u64,
    /// Total time spent in loaders, seconds.
    pub load_time_sum_secs: f64,
    /// `(hits + stale_hits) / (hits + stale_hits + misses)`; zero before the first lookup.
    pub hit_ratio: f64,
    /// Entries removed, by cause.
    pub evictions: Evictions,
    /// Entries of this namespace now (for caches of more than 200,000 entries, as the last sweep counted them).
    pub entries: u64,
    /// Weighted bytes of this namespace, counted like `entries`.
    pub weighted_bytes: u64,
}

/// Invalidation calls, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Invalidations {
    /// `invalidate(key)` calls.
    pub keys: u64,
    /// Tags invalidated (`invalidate_tag`, each tag of `invalidate_tags`).
    pub tags: u64,
    /// `invalidate_prefix` calls.
    pub prefixes: u64,
    /// `invalidate_matching` calls (each one scans the cache).
    pub patterns: u64,
    /// `clear` calls.
    pub clears: u64,
}

/// The tag table's size and what its bound turned away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TagStats {
    /// Tag and key-prefix names interned now.
    pub interned: u64,
    /// The cap (`max_tags`).
    pub max_tags: u64,
    /// Uses of a name (one per insert) that found the table full: such names share one of 1,024 overflow
    /// counters, so invalidating one also invalidates the entries of the names sharing its counter.
    pub overflowed: u64,
    /// Names freed by the sweeper because no live entry carried them any more.
    pub reclaimed: u64,
}

/// What a cache's second level (L2) and its invalidation bus did; in [`CacheStatsSnapshot::second_level`].
///
/// `hits` to `corrupt` count this cache's L2 lookups; the other figures belong to the node's
/// [`SecondLevel`](super::l2::SecondLevel) (feature `redis`), shared by every cache attached to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SecondLevelStats {
    /// Whether this cache stores values in L2 (`false`: it shares invalidations only).
    pub stores_values: bool,
    /// L1 misses answered from L2.
    pub hits: u64,
    /// L1 misses that L2 did not answer (absent, expired, rejected, corrupt, or the store failed or was slow).
    pub misses: u64,
    /// Misses because the entry was invalidated after it was computed (its key, a tag, a key prefix, `clear`,
    /// or an outage since), or had expired.
    pub rejected: u64,
    /// Misses because the bytes were not a sound entry (corrupt, truncated, foreign, another format or codec).
    pub corrupt: u64,
    /// Calls made to the store.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Calls that ran out of time (soft or hard timeout).
    pub timeouts: u64,
    /// Calls not made because the circuit breaker was open.
    pub skipped: u64,
    /// The longest call so far, milliseconds.
    pub call_max_ms: f64,
    /// The circuit breaker now: `closed`, `open` or `half_open`.
    pub breaker: &'static str,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Times the breaker closed again.
    pub breaker_closed: u64,
    /// Background writes stored.
    pub writes: u64,
    /// Background writes the store refused (an invalidation came first) or that could not be encoded.
    pub writes_refused: u64,
    /// Background writes dropped (queue full, or the store failed).
    pub writes_dropped: u64,
    /// Invalidations sent on the bus.
    pub bus_sent: u64,
    /// Invalidations received from other nodes.
    pub bus_received: u64,
    /// Times messages of another node were found missing (by sequence number).
    pub bus_gaps: u64,
    /// Invalidations that could not be recorded in the store or sent (store down, breaker open, queue full).
    pub invalidations_unpublished: u64,
    /// Delay from sending to receiving invalidations (sender's and receiver's wall clocks).
    pub bus_lag: Percentiles,
    /// Whether versions are unverified now (the bus is lost).
    pub unverified: bool,
    /// Periods with unverified versions so far.
    pub unverified_periods: u64,
}

/// A point-in-time copy of a cache's statistics, from [`Cache::stats`](super::Cache::stats).
///
/// Counters are totals since the cache was built. `entries` and `weighted_bytes` are live; the per-namespace
/// `entries` and `weighted_bytes` are those the last sweep counted.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CacheStatsSnapshot {
    /// The cache's name (builder `name`, default `default`).
    pub name: String,
    /// Lookups that found a fresh value.
    pub hits: u64,
    /// Lookups that found no usable value and ran the loader (or read the second level); callers that waited
    /// for another caller's load are `coalesced`, not misses.
    pub misses: u64,
    /// Lookups served a stale value while it was refreshed in the background.
    pub stale_hits: u64,
    /// Failed loads answered with an expired value (fail-safe).
    pub fail_safe_hits: u64,
    /// Callers that waited for another caller's load of the same key instead of loading.
    pub coalesced: u64,
    /// Loader runs (misses and background refreshes).
    pub loads: u64,
    /// Loader runs that returned an error or panicked.
    pub load_failures: u64,
    /// Background (stale-while-revalidate) refreshes started.
    pub refreshes: u64,
    /// `(hits + stale_hits) / (hits + stale_hits + misses)`; zero before the first lookup.
    pub hit_ratio: f64,
    /// Entries removed, by cause.
    pub evictions: Evictions,
    /// Entries in the table now (expired entries count until a read or the sweeper removes them).
    pub entries: u64,
    /// Sum of the entries' weights in bytes (key, value per the weigher, metadata and table overhead). For a
    /// cache bounded by `max_entries` only, the sum the last sweep counted.
    pub weighted_bytes: u64,
    /// The entry bound, if any.
    pub max_entries: Option<u64>,
    /// The weight bound in bytes, if any.
    pub max_weight_bytes: Option<u64>,
    /// Load-time summary, milliseconds (percentiles are bucket upper bounds: within a factor of two).
    pub load_time: Percentiles,
    /// Cumulative load-time buckets (upper bound in seconds, count at or below it).
    pub load_time_buckets: Vec<Bucket>,
    /// Total time spent in loaders, seconds.
    pub load_time_sum_secs: f64,
    /// Invalidation calls, by kind.
    pub invalidations: Invalidations,
    /// The tag table.
    pub tags: TagStats,
    /// Sweeps run so far (`run_pending_tasks`, by hand or by the background sweeper).
    pub sweeps: u64,
    /// Per key namespace, in order of first use; `<other>` last.
    pub namespaces: Vec<NamespaceStats>,
    /// Lookups of namespaces past `max_namespaces`, counted under `<other>`.
    pub namespace_overflow: u64,
    /// For the store of HTTP response-cache layers: what those layers did (absent for other caches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responses: Option<ResponseStats>,
    /// The second level and invalidation bus, when the cache has one (feature `redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_level: Option<SecondLevelStats>,
}

/// What the [`ResponseCacheLayer`](super::http::ResponseCacheLayer)s using a cache as their store did, summed
/// over the layers alive: the part of [`ResponseCacheStats`](super::http::ResponseCacheStats) that the cache's
/// own counters do not hold. The cache's `hits`, `stale_hits`, `misses` and `coalesced` count the layers'
/// lookups as their `X-Cache` says (`HIT`, `STALE`, `MISS`); requests that bypass the cache are counted here
/// only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResponseStats {
    /// Responses served fresh from the store (`X-Cache: HIT`).
    pub hits: u64,
    /// Responses served stale (`X-Cache: STALE`).
    pub stale: u64,
    /// Requests that went to the handler after a lookup (`X-Cache: MISS`).
    pub misses: u64,
    /// Requests that could not use the cache (`X-Cache: BYPASS`).
    pub bypassed: u64,
    /// Responses stored.
    pub stores: u64,
    /// `304 Not Modified` answers sent from the store.
    pub not_modified: u64,
    /// Requests that waited for another request's load of the same key.
    pub coalesced: u64,
    /// Background refreshes that stored a new response.
    pub refreshes: u64,
    /// Requests that bypassed the cache and responses not stored, by reason
    /// ([`SkipReason::as_str`](super::http::SkipReason::as_str)); reasons never seen are left out.
    pub skipped: BTreeMap<&'static str, u64>,
}

pub(crate) fn hit_ratio(hits: u64, stale_hits: u64, misses: u64) -> f64 {
    let served = hits + stale_hits;
    let total = served + misses;
    if total == 0 {
        0.0
    } else {
        served as f64 / total as f64
    }
}

pub(crate) fn evictions(counters: &Counters) -> Evictions {
    Evictions {
        size: counters.sum(Counter::EvictSize),
        expired: counters.sum(Counter::EvictExpired),
        explicit: counters.sum(Counter::EvictExplicit),
        tag: counters.sum(Counter::EvictTag),
    }
}

/// The statistics of one namespace; `live` is its (entries, bytes) counted now, else the last sweep's serve.
pub(crate) fn namespace_stats(
    name: String,
    slot: &NamespaceSlot,
    live: Option<(u64, u64)>,
) -> NamespaceStats {
    let c = &slot.counters;
    let (hits, stale_hits, misses) = (
        c.sum(Counter::Hits),
        c.sum(Counter::StaleHits),
        c.sum(Counter::Misses),
    );
    NamespaceStats {
        namespace: name,
        hits,
        misses,
        stale_hits,
        fail_safe_hits: c.sum(Counter::FailSafeHits),
        coalesced: c.sum(Counter::Coalesced),
        loads: c.sum(Counter::Loads),
        load_failures: c.sum(Counter::LoadFailures),
        load_time_sum_secs: c.sum(Counter::LoadNanos) as f64 / 1e9,
        hit_ratio: hit_ratio(hits, stale_hits, misses),
        evictions: evictions(c),
        entries: live.map_or_else(|| slot.swept_entries.load(Ordering::Relaxed), |(n, _)| n),
        weighted_bytes: live.map_or_else(|| slot.swept_bytes.load(Ordering::Relaxed), |(_, b)| b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_counters_add_up_across_threads() {
        let counters = std::sync::Arc::new(Counters::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counters.add(slot::current(), Counter::Hits, 1);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        counters.add(slot::OWNED, Counter::Hits, 5);
        assert_eq!(counters.sum(Counter::Hits), 4005);
        assert_eq!(counters.sum(Counter::Misses), 0);
    }

    #[test]
    fn load_histogram_buckets_and_percentiles() {
        let histogram = LoadHistogram::new();
        for _ in 0..90 {
            histogram.record(Duration::from_micros(3));
        }
        for _ in 0..10 {
            histogram.record(Duration::from_millis(100));
        }
        let (buckets, p) = histogram.read(90 * 3_000 + 10 * 100_000_000);
        assert_eq!(p.count, 100);
        assert_eq!(buckets.last().unwrap().count, 100);
        assert!(buckets.last().unwrap().le_secs.is_infinite());
        assert!((p.p50_ms - 0.004).abs() < 1e-9, "{}", p.p50_ms);
        assert!(p.p99_ms >= 100.0 && p.p99_ms <= 131.073, "{}", p.p99_ms);
        assert!((p.max_ms - 100.0).abs() < 1e-9);
        assert!((p.mean_ms - 10.0027).abs() < 1e-3, "{}", p.mean_ms);
        assert_eq!(LoadHistogram::bucket(0), 0);
        assert_eq!(LoadHistogram::bucket(2), 1);
        assert_eq!(LoadHistogram::bucket(3), 2);
        assert_eq!(LoadHistogram::bucket(u64::MAX), LOAD_BUCKETS - 1);
    }

    #[test]
    fn namespaces_are_bounded() {
        let ns = Namespaces::new(2);
        assert_eq!(ns.resolve("a"), 0);
        assert_eq!(ns.resolve("b"), 1);
        assert_eq!(ns.resolve("a"), 0);
        assert_eq!(ns.resolve("c"), 2);
        assert_eq!(ns.resolve("d"), 2);
        assert_eq!(ns.overflowed(), 2);
        ns.slot(2);
        let names: Vec<String> = ns.list().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "<other>"]);
        assert!(ns.slot(NO_NAMESPACE).is_none());
        assert_eq!(hit_ratio(3, 1, 4), 0.5);
        assert_eq!(hit_ratio(0, 0, 0), 0.0);
    }
}
