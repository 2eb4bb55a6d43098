//! [`CacheBuilder`]: bounds, lifetimes, tags and the sweeper of a [`Cache`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::clock::CacheClock;
use super::entry::EntryWeighter;
use super::store::{Cache, Config};
use crate::BuildError;

/// The entry bound when neither `max_entries` nor `max_weight` is set.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Default cap of interned tag and key-prefix names.
pub const DEFAULT_MAX_TAGS: usize = 65_536;
/// Default cap of key namespaces with their own statistics.
pub const DEFAULT_MAX_NAMESPACES: usize = 32;
/// Default interval of the background sweeper.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// A weigher: the size in bytes of a value (heap included); the cache adds the key, metadata and overhead.
pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// Configures a [`Cache`]; from [`Cache::builder`].
///
/// ```
/// use perfscope::cache::Cache;
/// use std::time::Duration;
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .name("pages")
///     .max_weight(64 << 20) // 64 MiB
///     .weigher(|_key, value: &Vec<u8>| value.len() as u64)
///     .ttl(Duration::from_secs(60))
///     .ttl_jitter(0.1)
///     .stale_for(Duration::from_secs(30))
///     .fail_safe_max(Duration::from_secs(600))
///     .build()
///     .expect("valid configuration");
/// # drop(cache);
/// ```
#[must_use]
pub struct CacheBuilder<K, V> {
    name: String,
    max_entries: Option<u64>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    stale_for: Duration,
    fail_safe_max: Duration,
    jitter: f64,
    jitter_seed: u64,
    max_tags: usize,
    max_namespaces: usize,
    namespace: Option<fn(&K) -> &str>,
    sweep_interval: Duration,
    initial_capacity: usize,
    shards: Option<usize>,
    clock: CacheClock,
    #[cfg(feature = "redis")]
    l2: Option<super::l2::Attachment<V>>,
    marker: PhantomData<fn() -> (K, V)>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight)
            .field("weigher", &self.weigher.is_some())
            .field("ttl", &self.ttl)
            .field("stale_for", &self.stale_for)
            .field("fail_safe_max", &self.fail_safe_max)
            .field("ttl_jitter", &self.jitter)
            .field("max_tags", &self.max_tags)
            .field("max_namespaces", &self.max_namespaces)
            .field("sweep_interval", &self.sweep_interval)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        CacheBuilder {
            name: "default".to_owned(),
            max_entries: None,
            max_weight: None,
            weigher: None,
            ttl: None,
            stale_for: Duration::ZERO,
            fail_safe_max: Duration::ZERO,
            jitter: 0.0,
            jitter_seed: 0x5EED_CAFE_F00D_0001,
            max_tags: DEFAULT_MAX_TAGS,
            max_namespaces: DEFAULT_MAX_NAMESPACES,
            namespace: None,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            initial_capacity: 0,
            shards: None,
            clock: CacheClock::default(),
            #[cfg(feature = "redis")]
            l2: None,
            marker: PhantomData,
        }
    }
}

fn out_of_range(setting: &'static str, expected: &'static str, got: impl fmt::Debug) -> BuildError {
    BuildError::OutOfRange {
        setting,
        expected,
        got: format!("{got:?}"),
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The cache's name in statistics and exports (default `default`): 1 to 64 characters among `a-z`, `A-Z`,
    /// `0-9`, `_`, `-` and `.`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most this many entries (default 10,000 when no weight bound is set either).
    pub fn max_entries(mut self, max_entries: u64) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// At most this many bytes, as weighed: the weigher's size of the value plus the key, the entry's metadata
    /// and the table's overhead per entry. With `max_entries` too, each entry weighs at least
    /// `max_weight / max_entries`, so both bounds hold.
    pub fn max_weight(mut self, max_weight_bytes: u64) -> Self {
        self.max_weight = Some(max_weight_bytes);
        self
    }

    /// The size in bytes of a value, heap included (default: the value's inline size only). Must be cheap and
    /// must not change while the value is stored.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// How long a value is fresh unless its loader chose otherwise ([`Loaded::ttl`](super::Loaded::ttl));
    /// default: until evicted or invalidated.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long after its TTL a value may still be served by `get_or_compute` while one background refresh
    /// runs (stale-while-revalidate; default zero: off).
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = stale_for;
        self
    }

    /// How long after its stale window an expired value is kept to answer when its loader fails (fail-safe;
    /// default zero: off). Expired values are never returned otherwise.
    pub fn fail_safe_max(mut self, fail_safe_max: Duration) -> Self {
        self.fail_safe_max = fail_safe_max;
        self
    }

    /// Spreads each TTL uniformly within ± this fraction (in `[0, 1)`, default 0), so entries written together
    /// do not expire together.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Seed of the jitter's random sequence (deterministic for a given seed and order of inserts).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = seed;
        self
    }

    /// Cap of interned tag and key-prefix names (default 65,536; 8 bytes each are allocated up front). Past it,
    /// names share 1,024 overflow counters: invalidating one also invalidates the entries of the names that
    /// share its counter.
    pub fn max_tags(mut self, max_tags: usize) -> Self {
        self.max_tags = max_tags;
        self
    }

    /// Cap of key namespaces with their own statistics (default 32); later ones are counted as `<other>`.
    pub fn max_namespaces(mut self, max_namespaces: usize) -> Self {
        self.max_namespaces = max_namespaces;
        self
    }

    /// The statistics namespace of a key, for key types other than [`CacheKey`](super::CacheKey) and strings
    /// (whose namespace is their first `:`-separated part).
    ///
    /// ```
    /// # use perfscope::cache::Cache;
    /// let cache: Cache<(&'static str, u64), String> = Cache::builder()
    ///     .namespace(|key: &(&'static str, u64)| key.0)
    ///     .build()
    ///     .unwrap();
    /// # drop(cache);
    /// ```
    pub fn namespace(mut self, namespace: fn(&K) -> &str) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// How often the background sweeper frees expired and invalidated entries and unused tags (default five
    /// minutes; `Duration::ZERO` turns it off). It runs on the tokio runtime the cache is built or first used
    /// in, holds only a weak reference, and stops when the cache is dropped.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Reserves table room for this many entries up front (default none: the table grows as entries arrive;
    /// it never shrinks).
    pub fn initial_capacity(mut self, entries: usize) -> Self {
        self.initial_capacity = entries;
        self
    }

    /// Number of independently locked shards of the table (default: four per CPU, rounded to a power of two).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock TTLs, ages and load times are measured by (default: the system's fastest monotonic clock, or
    /// tokio's when the cache is built while tokio's clock is paused; see [`CacheClock`]).
    pub fn clock(mut self, clock: CacheClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the cache.
    pub fn build(self) -> Result<Cache<K, V>, BuildError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(BuildError::InvalidName {
                setting: "cache name",
                name: self.name,
            });
        }
        if self.max_entries == Some(0) {
            return Err(out_of_range("max_entries", "at least 1", 0));
        }
        if self.max_weight == Some(0) {
            return Err(out_of_range("max_weight", "at least 1 byte", 0));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(out_of_range(
                "ttl_jitter",
                "a fraction in [0, 1)",
                self.jitter,
            ));
        }
        if self.ttl == Some(Duration::ZERO) {
            return Err(out_of_range("ttl", "greater than zero", Duration::ZERO));
        }
        if !(1..=1 << 24).contains(&self.max_tags) {
            return Err(out_of_range("max_tags", "1 to 16,777,216", self.max_tags));
        }
        if self.max_namespaces > 1024 {
            return Err(out_of_range(
                "max_namespaces",
                "at most 1,024",
                self.max_namespaces,
            ));
        }
        #[cfg(feature = "redis")]
        if matches!(&self.l2, Some((_, Some(_)))) && !super::key::has_wire_key::<K>() {
            return Err(out_of_range(
                "second_level",
                "a cache keyed by CacheKey, String, Arc<str> or Box<str> (use invalidation_bus for other keys)",
                std::any::type_name::<K>(),
            ));
        }
        if self.shards == Some(0) {
            return Err(out_of_range("shards", "at least 1", 0));
        }
        let (weight_mode, capacity, estimated) = match (self.max_entries, self.max_weight) {
            (None, None) => (
                EntryWeighter::Count,
                DEFAULT_MAX_ENTRIES,
                DEFAULT_MAX_ENTRIES as usize,
            ),
            (Some(entries), None) => (EntryWeighter::Count, entries, entries as usize),
            (None, Some(weight)) => (
                EntryWeighter::Bytes { floor: 0 },
                weight,
                (weight / 1024).clamp(64, 1 << 24) as usize,
            ),
            (Some(entries), Some(weight)) => (
                EntryWeighter::Bytes {
                    floor: weight.div_ceil(entries),
                },
                weight,
                entries as usize,
            ),
        };
        let config = Config {
            name: Arc::from(self.name),
            max_entries: self.max_entries,
            max_weight: self.max_weight,
            weight_mode,
            capacity,
            estimated_entries: estimated.max(self.initial_capacity),
            initial_capacity: self.initial_capacity,
            shards: self.shards,
            weigher: self.weigher,
            ttl: self.ttl,
            stale_for: self.stale_for,
            fail_safe_max: self.fail_safe_max,
            jitter: self.jitter,
            jitter_seed: self.jitter_seed,
            max_tags: self.max_tags as u32,
            max_namespaces: self.max_namespaces,
            namespace: self.namespace,
            sweep_interval: (!self.sweep_interval.is_zero()).then_some(self.sweep_interval),
            clock: self.clock,
            #[cfg(feature = "redis")]
            l2: self.l2,
        };
        Ok(Cache::from_config(config))
    }
}

#[cfg(feature = "redis")]
impl<K, V> CacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Shares this cache's invalidations (`invalidate`, `invalidate_tag`, `invalidate_prefix`, `clear`) with
    /// the other nodes on `level`, and applies theirs, without storing values in the second level: for values
    /// that cannot be serialized, or should not leave the process.
    pub fn invalidation_bus(mut self, level: super::l2::SecondLevel) -> Self {
        self.l2 = Some((level, None));
        self
    }

    /// Like [`second_level`](CacheBuilder::second_level) with a codec of your own, for values serde does not
    /// describe or another format.
    pub fn second_level_with_codec(
        mut self,
        level: super::l2::SecondLevel,
        codec: impl super::l2::Codec<V>,
    ) -> Self {
        self.l2 = Some((level, Some(Arc::new(codec))));
        self
    }
}

#[cfg(feature = "redis")]
impl<K, V> CacheBuilder<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    /// Puts `level` (Redis, usually) behind this cache: an L1 miss of `get_or_compute` and its family reads
    /// L2 before it runs the loader, a loaded value is written to L2 in the background, and invalidations are
    /// shared with the other nodes (see [`invalidation_bus`](CacheBuilder::invalidation_bus)). Values are
    /// encoded with [`Postcard`](super::l2::Postcard); this method exists only for serde values, so a
    /// cache of other values is L1-only (or uses [`second_level_with_codec`](CacheBuilder::second_level_with_codec)).
    /// Keys must be text ([`CacheKey`](super::CacheKey), `String`, `Arc<str>`, `Box<str>`); `build` says so
    /// otherwise.
    ///
    /// ```no_run
    /// use perfscope::cache::{Cache, CacheKey, Loaded};
    /// use perfscope::cache::l2::RedisLevel;
    /// use std::time::Duration;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let level = RedisLevel::connect("redis://127.0.0.1:6379/").await?;
    /// let products: Cache<CacheKey, String> = Cache::builder()
    ///     .name("products")
    ///     .ttl(Duration::from_secs(60))
    ///     .second_level(level)
    ///     .build()?;
    /// let key = CacheKey::new("product").part(1);
    /// let name = products
    ///     .get_or_compute(&key, || async { Loaded::new("Widget".to_owned()).tag("products") })
    ///     .await?;
    /// products.invalidate_tag("products"); // every node drops it
    /// # drop(name);
    /// # Ok(())
    /// # }
    /// ```
    pub fn second_level(self, level: super::l2::SecondLevel) -> Self {
        self.second_level_with_codec(level, super::l2::Postcard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> CacheBuilder<u64, u64> {
        Cache::builder()
    }

    #[test]
    fn rejects_bad_settings_with_a_hint() {
        let err = builder().name("has space").build().unwrap_err();
        assert!(err.to_string().contains("has space"), "{err}");
        assert!(builder().name("").build().is_err());
        assert!(builder().name("x".repeat(65)).build().is_err());
        let err = builder().max_entries(0).build().unwrap_err();
        assert_eq!(err.to_string(), "max_entries must be at least 1, got 0");
        assert!(builder().max_weight(0).build().is_err());
        assert!(builder().ttl_jitter(1.0).build().is_err());
        assert!(builder().ttl_jitter(-0.1).build().is_err());
        assert!(builder().ttl(Duration::ZERO).build().is_err());
        assert!(builder().max_tags(0).build().is_err());
        assert!(builder().max_namespaces(5000).build().is_err());
        assert!(builder().shards(0).build().is_err());
        assert!(
            builder()
                .name("products.v2")
                .max_entries(10)
                .max_weight(1000)
                .build()
                .is_ok()
        );
        assert!(format!("{:?}", builder().name("x")).contains("\"x\""));
    }
}
