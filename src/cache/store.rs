//! [`Cache`]: the table, lookups, single-flight loads, stale-while-revalidate, fail-safe and invalidation.

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use quick_cache::sync::{EntryAction, EntryResult};

use super::builder::{CacheBuilder, Weigher};
use super::clock::{CacheClock, Clock, Jitter, NEVER, nanos};
use super::entry::{EntryLifecycle, EntryWeighter, Meta, Stored, TagIds};
use super::error::{LoadError, panic_message};
use super::key::{
    CacheKey, is_text_key, key_from_text, key_text, prefix_tag, strip_wildcard, text_namespace,
    text_prefixes,
};
use super::loaded::{CacheStatus, Fetched, Loaded, run_loader};
use super::pattern::{Patterns, glob_match};
use super::stats::{Counter, NO_NAMESPACE, Stats};
use super::tags::{Seq, TagKind, TagTable};
use super::ticket::{KeyStamps, Ticket};
use crate::context::RequestContext;
use crate::thread_slot as slot;

/// Bytes the table spends per entry beyond the key and the stored value (slab links, hash slot, ghost share).
const TABLE_OVERHEAD: u64 = 32;

/// Times `insert_since` takes the slot of a load in flight before it gives up (only loads that keep starting
/// for the same key make it give up).
const PLACEHOLDER_ATTEMPTS: usize = 8;

pub(crate) type Table<K, V> = quick_cache::sync::Cache<
    K,
    Stored<V>,
    EntryWeighter,
    quick_cache::DefaultHashBuilder,
    EntryLifecycle<K, V>,
>;

/// Checked settings from the builder.
pub(crate) struct Config<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) max_weight: Option<u64>,
    pub(crate) weight_mode: EntryWeighter,
    pub(crate) capacity: u64,
    pub(crate) estimated_entries: usize,
    pub(crate) initial_capacity: usize,
    pub(crate) shards: Option<usize>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale_for: Duration,
    pub(crate) fail_safe_max: Duration,
    pub(crate) jitter: f64,
    pub(crate) jitter_seed: u64,
    pub(crate) max_tags: u32,
    pub(crate) max_namespaces: usize,
    pub(crate) namespace: Option<fn(&K) -> &str>,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) clock: CacheClock,
    /// The second level and its codec (`None`: invalidations only).
    #[cfg(feature = "redis")]
    pub(crate) l2: Option<super::l2::Attachment<V>>,
}

/// How a stored value may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Fresh,
    Stale,
    Expired { fail_safe: bool },
    Dead(DeadBy),
}

/// What made an entry unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadBy {
    /// `clear()` after it was computed.
    Clear,
    /// An invalidation of one of its tags or key prefixes after it was computed.
    Tag,
}

pub(crate) struct Inner<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) table: Table<K, V>,
    pub(crate) clock: Clock,
    pub(crate) seq: Seq,
    /// The clock value of the last `clear()`.
    pub(crate) cleared: AtomicU64,
    /// When keys were last invalidated, for [`Cache::insert_since`].
    keys: KeyStamps,
    pub(crate) tags: TagTable,
    pub(crate) stats: Arc<Stats>,
    pub(crate) patterns: Patterns,
    ttl: Option<u64>,
    stale_for: u64,
    pub(crate) fail_safe_max: u64,
    jitter: Jitter,
    weigher: Option<Weigher<K, V>>,
    pub(crate) weight_mode: EntryWeighter,
    namespace: Option<fn(&K) -> &str>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) max_weight: Option<u64>,
    /// Ids of stored values being refreshed in the background.
    refreshing: Mutex<HashSet<u32>>,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) sweeper_started: AtomicBool,
    pub(crate) sweeper: Mutex<Option<tokio::task::AbortHandle>>,
    /// The counters of the response-cache layers that use this cache as their store.
    pub(crate) responses: Mutex<Vec<Weak<super::http::LayerStats>>>,
    /// The second level and invalidation bus, if attached.
    #[cfg(feature = "redis")]
    pub(crate) l2: Option<super::l2::CacheL2<V>>,
}

impl<K, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        if let Some(task) = self.sweeper.get_mut().take() {
            task.abort();
        }
    }
}

/// An in-process cache with TTLs, tags, single-flight loads and statistics; cheap to clone (an `Arc` inside).
///
/// See the [module documentation](super) for the concepts and the race guarantee.
pub struct Cache<K, V> {
    pub(crate) inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &&*self.inner.name)
            .finish_non_exhaustive()
    }
}

#[inline]
fn request_hit() {
    RequestContext::with_current(RequestContext::record_cache_hit);
}

#[cold]
fn request_miss(load_time: Duration) {
    RequestContext::with_current(|context| context.record_cache_miss(load_time));
}

/// Removes a refreshing id when the refresh ends, however it ends.
struct RefreshDone<K, V> {
    inner: Arc<Inner<K, V>>,
    id: u32,
}

impl<K, V> Drop for RefreshDone<K, V> {
    fn drop(&mut self) {
        self.inner.refreshing.lock().remove(&self.id);
    }
}

/// What a locked lookup found.
enum Found<V> {
    Fresh(Stored<V>, u64),
    Stale(Stored<V>, u64),
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Why `stored` may not be read any more, if it was invalidated.
    #[inline]
    pub(crate) fn dead_by(&self, stored: &Stored<V>) -> Option<DeadBy> {
        let born = stored.meta.born;
        if self.cleared.load(Ordering::SeqCst) > born {
            Some(DeadBy::Clear)
        } else if !self.tags.all_live(stored.meta.tags(), born) {
            Some(DeadBy::Tag)
        } else {
            None
        }
    }

    /// The time to judge `stored` by: the clock only when the entry can expire.
    #[inline]
    pub(crate) fn now_for(&self, stored: &Stored<V>) -> u64 {
        if stored.meta.fresh_until == NEVER {
            0
        } else {
            self.clock.now()
        }
    }

    pub(crate) fn keep_until(&self, stored: &Stored<V>) -> u64 {
        stored.meta.stale_until.saturating_add(self.fail_safe_max)
    }

    #[inline]
    pub(crate) fn classify(&self, stored: &Stored<V>, now: u64) -> State {
        match self.dead_by(stored) {
            Some(by) => State::Dead(by),
            None => self.by_time(stored, now),
        }
    }

    /// [`classify`](Inner::classify) for a read: the invalidation counters are loaded before the clock is read.
    /// On processors where reading the time-stamp counter waits for earlier loads, this keeps the counters'
    /// loads from waiting for the clock in turn.
    #[inline]
    pub(crate) fn classify_now(&self, stored: &Stored<V>) -> (State, u64) {
        if let Some(by) = self.dead_by(stored) {
            return (State::Dead(by), 0);
        }
        let now = self.now_for(stored);
        (self.by_time(stored, now), now)
    }

    /// The state of a live `stored` at `now`.
    #[inline]
    fn by_time(&self, stored: &Stored<V>, now: u64) -> State {
        if now < stored.meta.fresh_until {
            State::Fresh
        } else if now < stored.meta.stale_until {
            State::Stale
        } else {
            State::Expired {
                fail_safe: now < self.keep_until(stored),
            }
        }
    }

    /// Time since `stored` was written, judged at `now` (0: read the clock); zero unless `with_age`.
    fn age(&self, stored: &Stored<V>, now: u64, with_age: bool) -> Duration {
        if !with_age {
            return Duration::ZERO;
        }
        let now = if now == 0 { self.clock.now() } else { now };
        Duration::from_nanos(now.saturating_sub(stored.meta.created))
    }

    /// The statistics namespace of `key`.
    pub(crate) fn namespace_of(&self, key: &K) -> u16 {
        let name = match self.namespace {
            Some(namespace) => Some(namespace(key)),
            None => key_text(key).and_then(|(text, always)| text_namespace(text, always)),
        };
        name.map_or(NO_NAMESPACE, |name| self.stats.namespaces.resolve(name))
    }

    /// Counts the removal of `stored` for `reason`.
    pub(crate) fn count_removal(&self, stored: &Stored<V>, state: State) {
        let counter = match state {
            State::Dead(DeadBy::Tag) => Counter::EvictTag,
            State::Dead(DeadBy::Clear) => Counter::EvictExplicit,
            _ => Counter::EvictExpired,
        };
        self.stats.add(slot::current(), stored.meta.ns, counter, 1);
    }

    /// Builds the stored form of `loaded`, interning its tags and its key's prefix tags.
    fn make_stored(&self, key: &K, loaded: Loaded<V>, born: u64, ns: u16) -> Stored<V> {
        let Loaded {
            value,
            tags,
            ttl,
            stale_for,
            ..
        } = loaded;
        let ids = self.user_tag_ids(&tags);
        self.make_stored_with(key, value, ids, ttl, stale_for, born, ns)
    }

    /// The interned ids of user tags.
    fn user_tag_ids<T: AsRef<str>>(&self, tags: impl IntoIterator<Item = T>) -> TagIds {
        let mut ids = TagIds::default();
        for tag in tags {
            ids.push(self.tags.intern(TagKind::User, tag.as_ref()));
        }
        ids
    }

    /// Builds a stored value from its parts: `ids` holds its user tags; its key's prefix tags are added here.
    #[allow(clippy::too_many_arguments)]
    fn make_stored_with(
        &self,
        key: &K,
        value: V,
        mut ids: TagIds,
        ttl: Option<Duration>,
        stale_for: Option<Duration>,
        born: u64,
        ns: u16,
    ) -> Stored<V> {
        let mut key_bytes = 0;
        if let Some((text, _)) = key_text(key) {
            key_bytes = 16 + text.len() as u64;
            if let Some(key) = (key as &dyn std::any::Any).downcast_ref::<CacheKey>() {
                for prefix in key.prefixes() {
                    ids.push(self.tags.intern(TagKind::Prefix, prefix));
                }
            } else if text.contains(':') {
                for prefix in text_prefixes(text) {
                    ids.push(self.tags.intern(TagKind::Prefix, prefix));
                }
            }
        }
        let now = self.clock.now();
        let mut meta = Meta::new(born, now, ns, ids.as_slice());
        let fresh_for = ttl.map(nanos).or(self.ttl);
        meta.fresh_until =
            fresh_for.map_or(NEVER, |ttl| now.saturating_add(self.jitter.apply(ttl)));
        meta.stale_until = if meta.fresh_until == NEVER {
            NEVER
        } else {
            meta.fresh_until
                .saturating_add(stale_for.map_or(self.stale_for, nanos))
        };
        let value_bytes = self.weigher.as_ref().map_or(0, |weigh| weigh(key, &value));
        let bytes = TABLE_OVERHEAD
            + std::mem::size_of::<K>() as u64
            + std::mem::size_of::<Stored<V>>() as u64
            + key_bytes
            + meta.tags_heap_bytes()
            + value_bytes;
        meta.bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        Stored { value, meta }
    }

    /// Whether `stored` for `key` may be written now; `Err` when an invalidation already made it unreadable.
    /// The returned gate must be held until the write is done.
    fn admit<'a>(
        &'a self,
        key: &K,
        stored: &Stored<V>,
    ) -> Result<Option<parking_lot::RwLockReadGuard<'a, ()>>, ()> {
        if self.dead_by(stored).is_some() {
            return Err(());
        }
        if !is_text_key::<K>() {
            return Ok(None);
        }
        let gate = self.patterns.enter(slot::current());
        match key_text(key) {
            Some((text, _)) if self.patterns.refuses(stored.meta.born, text) => Err(()),
            _ => Ok(gate),
        }
    }

    /// Writes `stored` under `key` unless an invalidation already made it unreadable.
    #[inline]
    fn store(&self, key: K, stored: Stored<V>) {
        if let Ok(_gate) = self.admit(&key, &stored) {
            self.table.insert(key, stored);
        }
    }

    /// The slow end of `get`: removes what can never be read again, counts the miss.
    #[cold]
    #[inline(never)]
    fn missed<Q>(&self, key: &Q, found: Option<(Stored<V>, State)>)
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned,
        Q::Owned: Into<K>,
    {
        let ns = match found {
            Some((stored, state)) => self.discard(key, stored, state),
            None => self.namespace_of_borrowed(key),
        };
        self.stats.add(slot::current(), ns, Counter::Misses, 1);
        request_miss(Duration::ZERO);
    }

    /// The statistics namespace of a key given in a borrowed form: the key is built only when the cache can
    /// have namespaces (string-like keys, or a namespace function).
    fn namespace_of_borrowed<Q>(&self, key: &Q) -> u16
    where
        Q: ?Sized + ToOwned,
        Q::Owned: Into<K>,
    {
        if self.namespace.is_none() && !is_text_key::<K>() {
            return NO_NAMESPACE;
        }
        let key: K = key.to_owned().into();
        self.namespace_of(&key)
    }

    /// Removes `stored` (found under `key` in `state`) if it can never be read again; returns its namespace.
    fn discard<Q>(&self, key: &Q, stored: Stored<V>, state: State) -> u16
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq,
    {
        if matches!(state, State::Dead(_) | State::Expired { fail_safe: false }) {
            let id = stored.meta.id;
            if self.table.remove_if(key, |s| s.meta.id == id).is_some() {
                self.count_removal(&stored, state);
            }
        }
        stored.meta.ns
    }

    /// Whether `new` weighs no more than `current`: only then may it replace `current` in place (the table
    /// evicts nothing for a value that grows in place).
    fn no_heavier(&self, new: &Stored<V>, current: &Stored<V>) -> bool {
        self.weight_mode.weigh(new.meta.bytes) <= self.weight_mode.weigh(current.meta.bytes)
    }

    /// Installs a background refresh's result over the value it refreshed (and nothing else: a value removed
    /// or replaced meanwhile stays removed or replaced).
    fn install_refresh(&self, key: &K, refreshed: u32, stored: Stored<V>) {
        let Ok(_gate) = self.admit(key, &stored) else {
            return;
        };
        let mut stored = Some(stored);
        let result = self.table.entry(key, Some(Duration::ZERO), |_, current| {
            if current.meta.id != refreshed {
                return EntryAction::Retain(None);
            }
            match stored.take() {
                Some(new) if self.no_heavier(&new, current) => {
                    EntryAction::Retain(Some(std::mem::replace(current, new)))
                }
                // Heavier: through a placeholder, so the table makes room for it.
                Some(new) => {
                    stored = Some(new);
                    EntryAction::ReplaceWithGuard
                }
                None => EntryAction::Retain(None),
            }
        });
        match result {
            EntryResult::Replaced(guard, _) => {
                if let Some(stored) = stored {
                    // Err: the key was invalidated meanwhile.
                    let _ = guard.insert(stored);
                }
            }
            // Vacant: the key was invalidated or evicted meanwhile; dropping the guard leaves it absent.
            // Retained: the replaced value (if any) is dropped here, outside the lock.
            _ => drop(result),
        }
    }

    /// Removes `key` for an invalidation: its stamp first, so an `insert_since` with an older ticket that
    /// races the removal is refused (see `ticket.rs`).
    pub(crate) fn invalidate_key(&self, key: &K) -> bool {
        self.keys.invalidate(key, self.seq.next());
        self.remove_key(key)
    }

    /// Sends an invalidation to the other nodes through the second level, if attached.
    #[cfg(feature = "redis")]
    fn announce(&self, kind: super::l2::MessageKind, name: &str) {
        if let Some(l2) = &self.l2 {
            l2.publish(kind, name);
        }
    }

    /// The tags to write to L2 with a loaded value, when this cache stores values there.
    #[cfg(feature = "redis")]
    fn l2_tags(&self, loaded: &Loaded<V>) -> Option<Vec<Cow<'static, str>>> {
        self.l2
            .as_ref()
            .filter(|l2| l2.stores_values())
            .map(|_| loaded.tags.clone())
    }

    /// Queues the write of `stored` (computed after the L2 generation `born` was read) to L2.
    #[cfg(feature = "redis")]
    fn write_back(
        &self,
        key: &K,
        stored: &Stored<V>,
        tags: &[Cow<'static, str>],
        born: Option<u64>,
    ) {
        let (Some(l2), Some(text)) = (&self.l2, super::key::wire_key(key)) else {
            return;
        };
        let meta = &stored.meta;
        let since = |t: u64| Duration::from_nanos(t.saturating_sub(meta.created));
        let (fresh_for, keep_for) = if meta.fresh_until == NEVER {
            (None, None)
        } else {
            (
                Some(since(meta.fresh_until)),
                Some(since(self.keep_until(stored))),
            )
        };
        let stale_for = Duration::from_nanos(meta.stale_until.saturating_sub(meta.fresh_until));
        l2.write_back(
            &text,
            &stored.value,
            tags,
            fresh_for,
            stale_for,
            keep_for,
            born,
        );
    }

    /// The stored form of a value found in L2, with the lifetimes it has left there.
    #[cfg(feature = "redis")]
    fn stored_from_l2(&self, key: &K, found: super::l2::Found<V>, born: u64, ns: u16) -> Stored<V> {
        let ids = self.user_tag_ids(&found.tags);
        let mut stored = self.make_stored_with(key, found.value, ids, None, None, born, ns);
        let meta = &mut stored.meta;
        if found.fresh_for == Duration::MAX {
            meta.fresh_until = NEVER;
            meta.stale_until = NEVER;
        } else {
            meta.fresh_until = meta.created.saturating_add(nanos(found.fresh_for));
            meta.stale_until = meta.fresh_until.saturating_add(nanos(found.stale_for));
        }
        stored
    }

    pub(crate) fn remove_key(&self, key: &K) -> bool {
        match self.table.remove(key) {
            Some((_, stored)) => {
                self.stats
                    .add(slot::current(), stored.meta.ns, Counter::EvictExplicit, 1);
                true
            }
            None => false,
        }
    }
}

/// The second level for the response cache, which reads and stores by hand (`peek` and `insert_since`).
#[cfg(feature = "redis")]
impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Whether this cache stores values in a second level.
    pub(crate) fn stores_in_l2(&self) -> bool {
        self.inner.l2.as_ref().is_some_and(|l2| l2.stores_values())
    }

    /// Looks `key` up in the second level only. A value found there is also put into L1, unless an
    /// invalidation since `ticket` concerns it (as [`insert_since`](Cache::insert_since) does). When nothing
    /// usable is found: `Err` with the generation a value computed from now on is born under, if the store
    /// answered.
    pub(crate) async fn second_level_get(&self, key: &K, ticket: Ticket) -> Result<V, Option<u64>> {
        let (Some(l2), Some(text)) = (
            self.inner.l2.as_ref().filter(|l2| l2.stores_values()),
            super::key::wire_key(key),
        ) else {
            return Err(None);
        };
        match l2.lookup(&text).await {
            super::l2::Lookup::Hit(found) => {
                let mut loaded = Loaded::new(found.value.clone()).tags(found.tags);
                if found.fresh_for != Duration::MAX {
                    loaded = loaded.ttl(found.fresh_for).stale_for(found.stale_for);
                }
                self.insert_since(ticket, key.clone(), loaded);
                Ok(found.value)
            }
            super::l2::Lookup::Miss(generation) => Err(generation),
        }
    }

    /// Queues the write of `value`, kept for `ttl`, to the second level (in the background), for a value stored
    /// in L1 by hand; `born` is the generation read before it was computed (`None`: the latest this node saw).
    pub(crate) fn second_level_put(
        &self,
        key: &K,
        value: &V,
        tags: &[Cow<'static, str>],
        ttl: Duration,
        born: Option<u64>,
    ) {
        if let (Some(l2), Some(text)) = (self.inner.l2.as_ref(), super::key::wire_key(key)) {
            l2.write_back(
                &text,
                value,
                tags,
                Some(ttl),
                Duration::ZERO,
                Some(ttl),
                born,
            );
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with the default settings (10,000 entries, no TTL, sweeper every five minutes).
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::default()
    }

    pub(crate) fn from_config(config: Config<K, V>) -> Self {
        let stats = Arc::new(Stats::new(config.max_namespaces));
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .estimated_items_capacity(config.estimated_entries)
            .weight_capacity(config.capacity);
        if let Some(shards) = config.shards {
            options.shards(shards);
        }
        let table = match options.build() {
            Ok(options) => Table::with_options(
                options,
                config.weight_mode,
                quick_cache::DefaultHashBuilder::default(),
                EntryLifecycle::new(stats.clone()),
            ),
            // The builder checked every setting; fall back to the plain constructor all the same.
            Err(_) => Table::with(
                config.estimated_entries,
                config.capacity,
                config.weight_mode,
                quick_cache::DefaultHashBuilder::default(),
                EntryLifecycle::new(stats.clone()),
            ),
        };
        if config.initial_capacity > 0 {
            table.reserve(config.initial_capacity);
        }
        #[cfg(feature = "redis")]
        let l2 = config.l2;
        #[cfg(feature = "redis")]
        let name = config.name.clone();
        let cache = Cache {
            inner: Arc::new(Inner {
                name: config.name,
                table,
                clock: Clock::new(&config.clock),
                seq: Seq::new(),
                cleared: AtomicU64::new(0),
                keys: KeyStamps::new(),
                tags: TagTable::new(config.max_tags),
                stats,
                patterns: Patterns::new(),
                ttl: config.ttl.map(nanos),
                stale_for: nanos(config.stale_for),
                fail_safe_max: nanos(config.fail_safe_max),
                jitter: Jitter::new(config.jitter, config.jitter_seed),
                weigher: config.weigher,
                weight_mode: config.weight_mode,
                namespace: config.namespace,
                max_entries: config.max_entries,
                max_weight: config.max_weight,
                refreshing: Mutex::new(HashSet::new()),
                sweep_interval: config.sweep_interval,
                sweeper_started: AtomicBool::new(false),
                sweeper: Mutex::new(None),
                responses: Mutex::new(Vec::new()),
                #[cfg(feature = "redis")]
                l2: l2.map(|(level, codec)| super::l2::CacheL2::new(level, name.clone(), codec)),
            }),
        };
        #[cfg(feature = "redis")]
        if let Some(l2) = &cache.inner.l2 {
            let target: Weak<dyn super::l2::BusTargetDyn> = Arc::downgrade(&cache.inner) as _;
            l2.level.shared.register(target);
        }
        super::sweeper::start(&cache.inner);
        cache
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Entries in the table (expired or invalidated entries count until a read or the sweeper removes them).
    pub fn len(&self) -> usize {
        self.inner.table.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.table.is_empty()
    }

    /// The fresh value of `key`, if any. Counts a hit or a miss, also on the current request.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_borrowed(key)
    }

    /// [`get`](Cache::get) by any borrowed form of the key type, as with `HashMap::get`: a `Cache<String, V>` is
    /// looked up by `&str` without building a `String` (a miss of a key that is not stored builds one to find
    /// its statistics namespace, for string-like keys and caches with a namespace function).
    ///
    /// ```
    /// use perfscope::cache::Cache;
    ///
    /// let cache: Cache<String, u32> = Cache::builder().build().unwrap();
    /// cache.insert("user-42".to_owned(), 7);
    /// assert_eq!(cache.get_borrowed("user-42"), Some(7));
    /// assert_eq!(cache.get(&"user-42".to_owned()), Some(7));
    /// ```
    #[inline]
    pub fn get_borrowed<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned,
        Q::Owned: Into<K>,
    {
        let inner = &*self.inner;
        let stored = inner.table.get(key);
        if let Some(stored) = stored {
            let (state, _) = inner.classify_now(&stored);
            if state == State::Fresh {
                inner
                    .stats
                    .add(slot::current(), stored.meta.ns, Counter::Hits, 1);
                request_hit();
                return Some(stored.value);
            }
            inner.missed(key, Some((stored, state)));
        } else {
            inner.missed(key, None);
        }
        None
    }

    /// Stores `value` under `key` with the default TTL and no tags.
    pub fn insert(&self, key: K, value: V) {
        self.insert_with(key, Loaded::new(value));
    }

    /// Stores `value` under `key` with `tags`.
    pub fn insert_with_tags<T: Into<Cow<'static, str>>>(
        &self,
        key: K,
        value: V,
        tags: impl IntoIterator<Item = T>,
    ) {
        let inner = &*self.inner;
        let born = inner.seq.now();
        let ns = inner.namespace_of(&key);
        let ids = inner.user_tag_ids(tags.into_iter().map(Into::<Cow<'static, str>>::into));
        let stored = inner.make_stored_with(&key, value, ids, None, None, born, ns);
        inner.store(key, stored);
    }

    /// Stores a value with its tags and lifetimes ([`Loaded`]). An insert that overlaps an invalidation of
    /// one of its tags may be dropped (it is then ordered before the invalidation).
    pub fn insert_with(&self, key: K, loaded: Loaded<V>) {
        let inner = &*self.inner;
        let born = inner.seq.now();
        if !loaded.store {
            return;
        }
        let ns = inner.namespace_of(&key);
        let stored = inner.make_stored(&key, loaded, born, ns);
        inner.store(key, stored);
    }

    /// The current point of this cache's invalidation clock. Take it *before* reading what a value is computed
    /// from, and store the value with [`insert_since`](Cache::insert_since): an invalidation that lands while
    /// the value is computed then keeps it from being served.
    ///
    /// ```
    /// use perfscope::cache::{Cache, Loaded};
    ///
    /// let prices: Cache<String, u64> = Cache::builder().build().unwrap();
    /// let key = "price:7".to_owned();
    /// let ticket = prices.ticket(); // before the read
    /// let price = 120; // ... read from the database
    /// prices.invalidate_tag("prices"); // a write commits meanwhile and invalidates
    /// assert!(!prices.insert_since(ticket, key.clone(), Loaded::new(price).tag("prices")));
    /// assert_eq!(prices.get(&key), None);
    /// ```
    #[inline]
    pub fn ticket(&self) -> Ticket {
        Ticket {
            seq: self.inner.seq.now(),
            cache: self.id(),
        }
    }

    /// Stores a value computed from state read after `ticket` was taken, unless an invalidation that concerns
    /// it came after the ticket: [`invalidate`](Cache::invalidate) of `key` (or of a key sharing its stamp, one
    /// of 1,024), [`invalidate_tag`](Cache::invalidate_tag) of one of its tags,
    /// [`invalidate_prefix`](Cache::invalidate_prefix) of one of its key prefixes,
    /// [`invalidate_matching`](Cache::invalidate_matching) matching its key, or [`clear`](Cache::clear).
    /// Returns whether it was stored. An invalidation that overlaps this call may also let it store a value
    /// that is then never served. A load of `key` in flight does not store its result afterwards, as with
    /// [`insert_with`](Cache::insert_with); a ticket of another cache is refused.
    ///
    /// This is the race guarantee of [`get_or_compute`](Cache::get_or_compute) for code that reads and
    /// stores by hand (see the [module documentation](super)).
    pub fn insert_since(&self, ticket: Ticket, key: K, loaded: Loaded<V>) -> bool {
        let inner = &*self.inner;
        let born = ticket.seq;
        if !loaded.store || ticket.cache != self.id() || inner.keys.invalidated_since(&key, born) {
            return false;
        }
        let ns = inner.namespace_of(&key);
        let stored = inner.make_stored(&key, loaded, born, ns);
        let Ok(_gate) = inner.admit(&key, &stored) else {
            return false;
        };
        // `invalidate(&key)` raises the key's stamp before it removes the key. So the stamp is read once the key's
        // slot is ours: under the shard lock when the key holds a value (the removal comes after the write, or
        // the read sees the stamp), or after putting a placeholder there (the removal takes the placeholder, and
        // the insert fails, or the read sees the stamp).
        let mut stored = Some(stored);
        for _ in 0..PLACEHOLDER_ATTEMPTS {
            let result = inner.table.entry(&key, Some(Duration::ZERO), |_, current| {
                if inner.keys.invalidated_since(&key, born) {
                    return EntryAction::Retain(Err(()));
                }
                match stored.take() {
                    // In place when it weighs no more (the table evicts nothing for a value that grows in place);
                    // the replaced value is dropped outside the lock.
                    Some(new) if inner.no_heavier(&new, current) => {
                        EntryAction::Retain(Ok(Some(std::mem::replace(current, new))))
                    }
                    Some(new) => {
                        stored = Some(new);
                        EntryAction::ReplaceWithGuard
                    }
                    None => EntryAction::Retain(Ok(None)),
                }
            });
            match result {
                EntryResult::Retained(Ok(replaced)) => return replaced.is_some(),
                EntryResult::Retained(Err(())) => return false,
                EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
                    if inner.keys.invalidated_since(&key, born) {
                        // Dropping the guard leaves the key absent.
                        return false;
                    }
                    return stored
                        .take()
                        .is_some_and(|stored| guard.insert(stored).is_ok());
                }
                // A load of the key is in flight: take its slot, as `insert_with` does (its result is then
                // not stored).
                EntryResult::Timeout => drop(inner.table.remove(&key)),
                EntryResult::Removed(..) => return false,
            }
        }
        false
    }

    /// Identifies this cache for its tickets.
    #[inline]
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner).cast::<()>() as usize
    }

    /// The fresh value of `key`, like [`get`](Cache::get) but counting nothing (the response cache counts its
    /// lookups itself, as it judges them).
    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        let inner = &*self.inner;
        let stored = inner.table.get(key)?;
        let (state, _) = inner.classify_now(&stored);
        if state == State::Fresh {
            return Some(stored.value);
        }
        inner.discard(key, stored, state);
        None
    }

    /// Counts one lookup of `key` judged by the caller: a hit, stale hit, miss or coalesced waiter.
    pub(crate) fn count_lookup(&self, key: &K, counter: Counter) {
        let inner = &*self.inner;
        let ns = inner.namespace_of(key);
        inner.stats.add(slot::current(), ns, counter, 1);
    }

    /// The value of `key`, loading it with `loader` on a miss: one load per key at a time however many
    /// callers ask (single flight), a stale value while one background refresh runs, an expired value when the
    /// loader fails within `fail_safe_max`. A panicking loader is an error for its caller only.
    ///
    /// The loader may return `V` or [`Loaded<V>`] (to choose tags and TTL). It is `'static` and `Send` because
    /// a stale read hands it to a background task (`tokio::spawn`; without a runtime the refresh runs before
    /// this call returns).
    pub async fn get_or_compute<F, Fut, R>(&self, key: &K, loader: F) -> Result<V, LoadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Into<Loaded<V>> + Send + 'static,
    {
        self.try_get_or_compute(key, move || async move {
            Ok::<R, std::convert::Infallible>(loader().await)
        })
        .await
    }

    /// Like [`get_or_compute`](Cache::get_or_compute) with a fallible loader: its error goes to this caller
    /// only (and is not cached); callers waiting on the same key run their own loader next.
    pub async fn try_get_or_compute<F, Fut, R, E>(
        &self,
        key: &K,
        loader: F,
    ) -> Result<V, LoadError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Loaded<V>> + Send + 'static,
        E: Send + 'static,
    {
        self.fetch(key, loader, false)
            .await
            .map(|fetched| fetched.value)
    }

    /// Like [`try_get_or_compute`](Cache::try_get_or_compute), also telling how the value was obtained and its
    /// age (for `x-cache` and `Age` headers).
    pub async fn try_get_or_compute_entry<F, Fut, R, E>(
        &self,
        key: &K,
        loader: F,
    ) -> Result<Fetched<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Loaded<V>> + Send + 'static,
        E: Send + 'static,
    {
        self.fetch(key, loader, true).await
    }

    /// The lookup behind the `get_or_compute` family; `age` is computed only when `with_age` (it may cost a
    /// clock read).
    async fn fetch<F, Fut, R, E>(
        &self,
        key: &K,
        loader: F,
        with_age: bool,
    ) -> Result<Fetched<V>, LoadError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Loaded<V>> + Send + 'static,
        E: Send + 'static,
    {
        let inner = &*self.inner;
        // Fast path: a shared lock, no allocation.
        if let Some(stored) = inner.table.get(key) {
            let (state, now) = inner.classify_now(&stored);
            match state {
                State::Fresh => {
                    inner
                        .stats
                        .add(slot::current(), stored.meta.ns, Counter::Hits, 1);
                    request_hit();
                    let age = inner.age(&stored, now, with_age);
                    return Ok(Fetched {
                        value: stored.value,
                        status: CacheStatus::Hit,
                        age,
                    });
                }
                State::Stale => {
                    return Ok(self.serve_stale(key, stored, now, loader, with_age).await);
                }
                _ => {}
            }
        }
        super::sweeper::ensure_started(&self.inner);
        let started = inner.clock.now();
        let found = inner
            .table
            .entry_async(key, |_, stored| {
                let now = inner.clock.now();
                match inner.classify(stored, now) {
                    State::Fresh => EntryAction::Retain(Found::Fresh(stored.clone(), now)),
                    State::Stale => EntryAction::Retain(Found::Stale(stored.clone(), now)),
                    State::Dead(_) | State::Expired { .. } => EntryAction::ReplaceWithGuard,
                }
            })
            .await;
        let (guard, fallback) = match found {
            EntryResult::Retained(Found::Fresh(stored, now)) => {
                // It waited for another caller's load: neither a hit nor a miss (it ran no loader).
                inner
                    .stats
                    .add(slot::current(), stored.meta.ns, Counter::Coalesced, 1);
                request_miss(inner.clock.since(started));
                let age = inner.age(&stored, now, with_age);
                return Ok(Fetched {
                    value: stored.value,
                    status: CacheStatus::Coalesced,
                    age,
                });
            }
            EntryResult::Retained(Found::Stale(stored, now)) => {
                return Ok(self.serve_stale(key, stored, now, loader, with_age).await);
            }
            EntryResult::Replaced(guard, old) => {
                let state = inner.classify(&old, inner.clock.now());
                inner.count_removal(&old, state);
                let fallback = (state == State::Expired { fail_safe: true }).then_some(old);
                (Some(guard), fallback)
            }
            EntryResult::Vacant(guard) => (Some(guard), None),
            // Not produced by `entry_async` with these actions; load without storing.
            EntryResult::Removed(..) | EntryResult::Timeout => (None, None),
        };
        let ns = inner.namespace_of(key);
        inner.stats.add(slot::current(), ns, Counter::Misses, 1);
        let born = inner.seq.now();
        // The second level, under this key's slot (callers of the same key wait for it as for a load).
        #[cfg(feature = "redis")]
        let mut l2_born = None;
        #[cfg(feature = "redis")]
        if let (Some(l2), Some(text)) = (
            inner.l2.as_ref().filter(|l2| l2.stores_values()),
            super::key::wire_key(key),
        ) {
            match l2.lookup(&text).await {
                super::l2::Lookup::Hit(found) => {
                    let stored = inner.stored_from_l2(key, found, born, ns);
                    let value = stored.value.clone();
                    if let (Some(guard), Ok(_gate)) = (guard, inner.admit(key, &stored)) {
                        let _ = guard.insert(stored);
                    }
                    request_miss(inner.clock.since(started));
                    return Ok(Fetched {
                        value,
                        status: CacheStatus::SecondLevelHit,
                        age: Duration::ZERO,
                    });
                }
                super::l2::Lookup::Miss(generation) => l2_born = generation,
            }
        }
        let load_started = inner.clock.now();
        let result = run_loader(loader).await;
        let load_time = inner.clock.since(load_started);
        let error = match result {
            Ok(Ok(output)) => {
                inner.stats.load(slot::current(), ns, load_time, false);
                let loaded: Loaded<V> = output.into();
                let value = if loaded.store {
                    #[cfg(feature = "redis")]
                    let l2_tags = inner.l2_tags(&loaded);
                    let stored = inner.make_stored(key, loaded, born, ns);
                    let value = stored.value.clone();
                    let admitted = inner.admit(key, &stored);
                    #[cfg(feature = "redis")]
                    if admitted.is_ok()
                        && let Some(tags) = l2_tags
                    {
                        inner.write_back(key, &stored, &tags, l2_born);
                    }
                    if let (Some(guard), Ok(_gate)) = (guard, admitted) {
                        // Err: the key was invalidated while loading; the value is this caller's only.
                        let _ = guard.insert(stored);
                    }
                    value
                } else {
                    loaded.value
                };
                request_miss(inner.clock.since(started));
                return Ok(Fetched {
                    value,
                    status: CacheStatus::Miss,
                    age: Duration::ZERO,
                });
            }
            Ok(Err(error)) => LoadError::Failed(error),
            Err(payload) => LoadError::Panicked(panic_message(&*payload)),
        };
        inner.stats.load(slot::current(), ns, load_time, true);
        request_miss(inner.clock.since(started));
        if let Some(old) = fallback {
            let now = inner.clock.now();
            if inner.dead_by(&old).is_none() && now < inner.keep_until(&old) {
                inner
                    .stats
                    .add(slot::current(), old.meta.ns, Counter::FailSafeHits, 1);
                let fetched = Fetched {
                    value: old.value.clone(),
                    status: CacheStatus::FailSafe,
                    age: inner.age(&old, now, with_age),
                };
                // Put it back for the next caller (unless the key was invalidated meanwhile).
                if let (Some(guard), Ok(_gate)) = (guard, inner.admit(key, &old)) {
                    let _ = guard.insert(old);
                }
                return Ok(fetched);
            }
        }
        Err(error)
    }

    /// Answers with a stale value and starts one background refresh of it.
    async fn serve_stale<F, Fut, R, E>(
        &self,
        key: &K,
        stored: Stored<V>,
        now: u64,
        loader: F,
        with_age: bool,
    ) -> Fetched<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Loaded<V>> + Send + 'static,
        E: Send + 'static,
    {
        let inner = &*self.inner;
        inner
            .stats
            .add(slot::current(), stored.meta.ns, Counter::StaleHits, 1);
        request_hit();
        let age = inner.age(&stored, now, with_age);
        let id = stored.meta.id;
        if inner.refreshing.lock().insert(id) {
            inner
                .stats
                .add(slot::current(), stored.meta.ns, Counter::Refreshes, 1);
            let done = RefreshDone {
                inner: self.inner.clone(),
                id,
            };
            let key = key.clone();
            let ns = stored.meta.ns;
            let refresh = async move {
                let inner = &*done.inner;
                let born = inner.seq.now();
                // The L2 generation before the loader runs: an invalidation during the load refuses the write.
                #[cfg(feature = "redis")]
                let l2_born = inner.l2.as_ref().map(|l2| l2.known_generation());
                let started = inner.clock.now();
                let result = run_loader(loader).await;
                let elapsed = inner.clock.since(started);
                match result {
                    Ok(Ok(output)) => {
                        inner.stats.load(slot::current(), ns, elapsed, false);
                        let loaded: Loaded<V> = output.into();
                        if loaded.store {
                            #[cfg(feature = "redis")]
                            let l2_tags = inner.l2_tags(&loaded);
                            let stored = inner.make_stored(&key, loaded, born, ns);
                            #[cfg(feature = "redis")]
                            if let Some(tags) = l2_tags
                                && inner.dead_by(&stored).is_none()
                            {
                                inner.write_back(&key, &stored, &tags, l2_born);
                            }
                            inner.install_refresh(&key, id, stored);
                        }
                    }
                    Ok(Err(_)) | Err(_) => inner.stats.load(slot::current(), ns, elapsed, true),
                }
                drop(done);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(refresh)),
                Err(_) => refresh.await,
            }
        }
        Fetched {
            value: stored.value,
            status: CacheStatus::Stale,
            age,
        }
    }

    /// Removes `key`; a load of it in flight will not be stored. Returns whether a value was stored.
    pub fn invalidate(&self, key: &K) -> bool {
        self.inner
            .stats
            .key_invalidations
            .fetch_add(1, Ordering::Relaxed);
        let removed = self.inner.invalidate_key(key);
        #[cfg(feature = "redis")]
        if let Some(text) = super::key::wire_key(key) {
            self.inner.announce(super::l2::MessageKind::Key, &text);
        }
        removed
    }

    /// Makes every entry tagged `tag` unreadable, in O(1): entries are checked on read and freed by the
    /// sweeper. A load in flight that started before this call and ends up tagged `tag` is not served.
    pub fn invalidate_tag(&self, tag: &str) {
        self.inner
            .stats
            .tag_invalidations
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .tags
            .invalidate(TagKind::User, tag, &self.inner.seq);
        #[cfg(feature = "redis")]
        self.inner.announce(super::l2::MessageKind::Tag, tag);
    }

    /// [`invalidate_tag`](Cache::invalidate_tag) for each tag.
    pub fn invalidate_tags<T: AsRef<str>>(&self, tags: impl IntoIterator<Item = T>) {
        for tag in tags {
            self.invalidate_tag(tag.as_ref());
        }
    }

    /// Makes the key `prefix` and every key under it (`product:42` covers `product:42` and
    /// `product:42:details`, not `product:420`) unreadable, in O(1), for [`CacheKey`] and string keys. A
    /// trailing `:*` is ignored. A prefix of more than [`PREFIX_DEPTH`](super::PREFIX_DEPTH) parts invalidates
    /// everything under its first `PREFIX_DEPTH` parts.
    pub fn invalidate_prefix(&self, prefix: &str) {
        let inner = &*self.inner;
        inner
            .stats
            .prefix_invalidations
            .fetch_add(1, Ordering::Relaxed);
        inner
            .tags
            .invalidate(TagKind::Prefix, prefix_tag(prefix), &inner.seq);
        let exact = strip_wildcard(prefix);
        if let Some(key) = key_from_text::<K>(exact) {
            inner.invalidate_key(&key);
        }
        #[cfg(feature = "redis")]
        inner.announce(super::l2::MessageKind::Prefix, prefix);
    }

    /// Removes every entry whose key (its text, for [`CacheKey`] and string keys) matches the glob `pattern`
    /// (`*` any run of characters, `?` one), and refuses the results of loads in flight that started before
    /// this call and match. This scans the whole table (O(entries)) and holds inserts of this cache while it
    /// does; prefer tags and [`invalidate_prefix`](Cache::invalidate_prefix). Returns the entries removed; 0
    /// for other key types.
    pub fn invalidate_matching(&self, pattern: &str) -> u64 {
        let inner = &*self.inner;
        if !is_text_key::<K>() {
            return 0;
        }
        inner
            .stats
            .pattern_invalidations
            .fetch_add(1, Ordering::Relaxed);
        let gates = inner.patterns.register(pattern, &inner.seq);
        let removed = AtomicU64::new(0);
        let stripe = slot::current();
        inner.table.retain(|key, stored| {
            let matched = key_text(key).is_some_and(|(text, _)| glob_match(pattern, text));
            if matched {
                removed.fetch_add(1, Ordering::Relaxed);
                inner
                    .stats
                    .add(stripe, stored.meta.ns, Counter::EvictExplicit, 1);
            }
            !matched
        });
        drop(gates);
        removed.into_inner()
    }

    /// Makes every entry unreadable in O(1) (a new epoch); the sweeper frees them.
    pub fn clear(&self) {
        let inner = &*self.inner;
        inner.stats.clears.fetch_add(1, Ordering::Relaxed);
        let s = inner.seq.next();
        inner.cleared.fetch_max(s, Ordering::SeqCst);
        #[cfg(feature = "redis")]
        inner.announce(super::l2::MessageKind::Clear, "");
    }

    /// Frees expired and invalidated entries and the tags no live entry carries now, and counts the entries
    /// and bytes per namespace. The background sweeper calls this every `sweep_interval`; it scans the table
    /// (O(entries)), one shard at a time.
    pub fn run_pending_tasks(&self) {
        self.inner.sweep();
    }

    /// The statistics so far.
    pub fn stats(&self) -> super::CacheStatsSnapshot {
        self.inner.snapshot()
    }

    /// A type-erased handle for exports and admin endpoints.
    pub fn handle(&self) -> super::CacheHandle {
        super::CacheHandle::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache<CacheKey, u64> {
        Cache::builder()
            .ttl(Duration::from_secs(10))
            .stale_for(Duration::from_secs(5))
            .fail_safe_max(Duration::from_secs(5))
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap()
    }

    #[test]
    fn classify_walks_through_the_windows() {
        let cache = cache();
        let inner = &*cache.inner;
        let key = CacheKey::new("a").part(1).part(2);
        let stored = inner.make_stored(&key, Loaded::new(1), inner.seq.now(), NO_NAMESPACE);
        let t = stored.meta.created;
        let s = nanos(Duration::from_secs(1));
        assert_eq!(inner.classify(&stored, t), State::Fresh);
        assert_eq!(inner.classify(&stored, t + 10 * s - 1), State::Fresh);
        assert_eq!(inner.classify(&stored, t + 10 * s), State::Stale);
        assert_eq!(
            inner.classify(&stored, t + 15 * s),
            State::Expired { fail_safe: true }
        );
        assert_eq!(
            inner.classify(&stored, t + 20 * s),
            State::Expired { fail_safe: false }
        );
        // Its key prefixes are tags: `a` and `a:1`.
        assert_eq!(stored.meta.tags().len(), 2);
        cache.invalidate_prefix("a:1");
        assert_eq!(inner.classify(&stored, t), State::Dead(DeadBy::Tag));
        let fresh = inner.make_stored(&key, Loaded::new(1), inner.seq.now(), NO_NAMESPACE);
        cache.clear();
        assert_eq!(inner.classify(&fresh, t), State::Dead(DeadBy::Clear));
    }

    #[test]
    fn stored_values_know_their_size() {
        let cache: Cache<String, Vec<u8>> = Cache::builder()
            .max_weight(1 << 20)
            .weigher(|_, v: &Vec<u8>| v.len() as u64)
            .build()
            .unwrap();
        let inner = &*cache.inner;
        let stored = inner.make_stored(
            &"k:1".to_owned(),
            Loaded::new(vec![0; 100]),
            1,
            NO_NAMESPACE,
        );
        let expected = TABLE_OVERHEAD
            + std::mem::size_of::<String>() as u64
            + std::mem::size_of::<Stored<Vec<u8>>>() as u64
            + 16
            + 3
            + 100;
        assert_eq!(u64::from(stored.meta.bytes), expected);
        assert_eq!(stored.meta.fresh_until, NEVER);
        assert_eq!(stored.meta.stale_until, NEVER);
    }

    #[test]
    fn a_dead_value_is_not_admitted() {
        let cache = cache();
        let inner = &*cache.inner;
        let key = CacheKey::new("a");
        let born = inner.seq.now();
        let stored = inner.make_stored(&key, Loaded::new(1).tag("t"), born, NO_NAMESPACE);
        assert!(inner.admit(&key, &stored).is_ok());
        cache.invalidate_tag("t");
        assert!(inner.admit(&key, &stored).is_err());
    }
}
