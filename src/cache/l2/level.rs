//! [`SecondLevel`]: one node's connection to the shared store: the backend behind timeouts and a circuit
//! breaker, the background write queue, the bus (publisher, heartbeat, subscriber), the bus's health, and the
//! cache of tag versions read from the store.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::backend::{InvalidateOp, L2Backend, WriteOp};
use super::breaker::{Breaker, BreakerState};
use super::bus::{self, MessageKind, NodeSeqs};
use super::error::L2Error;
use crate::cache::stats::{LoadHistogram, SecondLevelStats};
use crate::error::BuildError;

/// Default prefix of every key and channel this crate writes.
pub const DEFAULT_PREFIX: &str = "perfscope:";
/// Default time a lookup that has a loader waits for the store before the loader runs.
pub const DEFAULT_SOFT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default limit of every store operation.
pub const DEFAULT_HARD_TIMEOUT: Duration = Duration::from_millis(250);
/// Default failures in a row that open the circuit breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// Default time the breaker stays open before one call probes the store.
pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);
/// Default interval of each node's heartbeat on the bus.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default time without any bus message after which the bus counts as lost.
pub const DEFAULT_SILENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// Default interval of the local L1 clears while versions are unverified.
pub const DEFAULT_REVERIFY_INTERVAL: Duration = Duration::from_secs(1);
/// Default capacity of the background write queue.
pub const DEFAULT_WRITE_QUEUE: usize = 1024;
/// Default longest lifetime of an entry in the store.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);
/// Default number of tag versions remembered.
pub const DEFAULT_VERSION_CACHE: usize = 65_536;

/// How long version keys outlive the longest entry, so a version never expires before an entry it judges.
pub(crate) const VERSION_MARGIN: Duration = Duration::from_secs(60);
/// Capacity of the publisher's queue.
const PUBLISH_QUEUE: usize = 16_384;

/// Something attached to the bus: a cache, which applies invalidations from other nodes to its L1.
pub(crate) trait BusTarget: Send + Sync {
    /// The cache's name, as messages carry it.
    fn bus_name(&self) -> &str;
    /// Applies another node's invalidation.
    fn apply(&self, kind: MessageKind, name: &str);
    /// Makes every L1 entry unreadable, locally (versions became unverified).
    fn clear_local(&self);
}

/// Checked settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) prefix: String,
    pub(crate) soft_timeout: Duration,
    pub(crate) hard_timeout: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) silence_timeout: Duration,
    pub(crate) reverify_interval: Duration,
    pub(crate) max_ttl: Duration,
}

/// What the publisher sends.
struct Publish {
    op: InvalidateOp,
    kind: MessageKind,
    cache: Arc<str>,
}

/// Counters of one level.
#[derive(Debug)]
pub(crate) struct LevelCounters {
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) call_max_nanos: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) writes_refused: AtomicU64,
    pub(crate) writes_dropped: AtomicU64,
    pub(crate) bus_sent: AtomicU64,
    pub(crate) bus_received: AtomicU64,
    pub(crate) bus_gaps: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) unverified_periods: AtomicU64,
    pub(crate) bus_lag: LoadHistogram,
    pub(crate) bus_lag_sum: AtomicU64,
}

pub(crate) struct LevelShared {
    pub(crate) backend: Arc<dyn L2Backend>,
    pub(crate) settings: Settings,
    pub(crate) breaker: Breaker,
    pub(crate) counters: LevelCounters,
    node: u64,
    /// The bus channel.
    channel: String,
    /// `{prefix}gen`: the generation counter all versions of this prefix come from.
    pub(crate) generation_key: String,
    /// Whether the bus is connected and no message was missed since versions were last verified.
    healthy: AtomicBool,
    /// Bumped whenever remembered versions stop being trusted.
    pub(crate) epoch: AtomicU64,
    /// Entries born before this generation are not read (set when the bus recovers from an outage, during which
    /// invalidations may have failed to reach the store).
    pub(crate) floor: AtomicU64,
    /// The highest generation seen.
    pub(crate) last_generation: AtomicU64,
    /// Tag versions read from the store or the bus: redis key → (version, epoch when learned).
    pub(crate) versions: quick_cache::sync::Cache<String, (u64, u64)>,
    /// Serializes updates of `versions` (a read of the old version, then the insert), so a version read from
    /// the store never overwrites a newer one the bus brought meanwhile.
    remembering: Mutex<()>,
    /// This node's own invalidations not yet recorded in the store: version key → how many are in flight. An
    /// L2 entry under one of these keys is not read until the store has the new version, so a node reads its
    /// own writes even from L2 (the bus brings them back later).
    pending: Mutex<HashMap<String, u32>>,
    /// Keys in `pending`, read without the lock on every L2 lookup.
    pending_count: AtomicUsize,
    targets: Mutex<Vec<Weak<dyn BusTarget>>>,
    publish: mpsc::Sender<Publish>,
    writes: mpsc::Sender<WriteOp>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for LevelShared {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

/// One node's second level: a shared store (Redis through [`RedisLevel`](super::RedisLevel), or any
/// [`L2Backend`]) as a second cache level behind each cache's L1, and its invalidation bus. Cheap to clone;
/// attach it to caches with [`CacheBuilder::second_level`](crate::cache::CacheBuilder::second_level) (values
/// stored in L2) or [`CacheBuilder::invalidation_bus`](crate::cache::CacheBuilder::invalidation_bus)
/// (invalidations only). Every cache of one node should share one `SecondLevel`: it holds one command
/// connection, one subscription and one heartbeat.
///
/// See the [module documentation](super) for the protocol and the staleness bound.
#[derive(Clone)]
pub struct SecondLevel {
    pub(crate) shared: Arc<LevelShared>,
}

impl fmt::Debug for SecondLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecondLevel")
            .field("node", &format_args!("{:x}", self.shared.node))
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SecondLevel`]; from [`SecondLevel::builder`]. Every setting has a default.
#[must_use]
pub struct SecondLevelBuilder {
    backend: Arc<dyn L2Backend>,
    settings: Settings,
    breaker_failures: u32,
    breaker_open_for: Duration,
    write_queue: usize,
    version_cache: usize,
}

impl fmt::Debug for SecondLevelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecondLevelBuilder")
            .field("settings", &self.settings)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_open_for", &self.breaker_open_for)
            .field("write_queue", &self.write_queue)
            .field("version_cache", &self.version_cache)
            .finish_non_exhaustive()
    }
}

fn out_of_range(setting: &'static str, expected: &'static str, got: impl fmt::Debug) -> BuildError {
    BuildError::OutOfRange {
        setting,
        expected,
        got: format!("{got:?}"),
    }
}

impl SecondLevelBuilder {
    /// Prefix of every key and of the bus channel (default `perfscope:`); applications sharing one server keep
    /// apart with different prefixes. Each cache's keys are under `{prefix}{cache name}:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// How long a lookup that has a loader waits for the store before it runs the loader (default 50 ms).
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.settings.soft_timeout = timeout;
        self
    }

    /// Limit of every store operation: writes, invalidations, version reads, subscriptions (default 250 ms).
    /// An operation past it is abandoned and counts as a failure for the breaker.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.settings.hard_timeout = timeout;
        self
    }

    /// Failures in a row (errors or timeouts) that open the circuit breaker (default 5), and how long it stays
    /// open, making no call at all, before one call probes the store (default 1 s).
    pub fn circuit_breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.breaker_failures = failures;
        self.breaker_open_for = open_for;
        self
    }

    /// Interval of this node's heartbeat on the bus (default 1 s), and how long without any message (its own
    /// heartbeats included) the bus counts as lost (default 3 s; at least twice the heartbeat).
    pub fn heartbeat(mut self, interval: Duration, silence_timeout: Duration) -> Self {
        self.settings.heartbeat = interval;
        self.settings.silence_timeout = silence_timeout;
        self
    }

    /// While versions are unverified (the bus is lost), every L1 of this node is cleared this often (default
    /// 1 s), so nothing read before a missed invalidation is served for longer.
    pub fn reverify_interval(mut self, interval: Duration) -> Self {
        self.settings.reverify_interval = interval;
        self
    }

    /// Capacity of the background write queue (default 1,024); writes past it are dropped and counted.
    pub fn write_queue(mut self, capacity: usize) -> Self {
        self.write_queue = capacity;
        self
    }

    /// Longest lifetime of an entry in the store (default one hour): entries without a TTL, or with a longer
    /// one, expire from the store after this. Version keys live this long plus a minute.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.settings.max_ttl = ttl;
        self
    }

    /// Tag versions remembered between bus messages (default 65,536); others are read from the store when an
    /// entry carrying them is read.
    pub fn version_cache(mut self, capacity: usize) -> Self {
        self.version_cache = capacity;
        self
    }

    /// Checks the settings and starts the background tasks (the writer, the publisher with the heartbeat, the
    /// subscriber) on the current tokio runtime.
    pub fn build(self) -> Result<SecondLevel, BuildError> {
        let s = &self.settings;
        let prefix_ok = s.prefix.len() <= 128 && !s.prefix.contains(['|', ' ', '\n', '\r']);
        if !prefix_ok {
            return Err(BuildError::InvalidName {
                setting: "second-level prefix",
                name: s.prefix.clone(),
            });
        }
        if s.soft_timeout.is_zero() || s.soft_timeout > s.hard_timeout {
            return Err(out_of_range(
                "soft_timeout",
                "above zero and at most hard_timeout",
                s.soft_timeout,
            ));
        }
        if s.heartbeat.is_zero() || s.silence_timeout < s.heartbeat * 2 {
            return Err(out_of_range(
                "heartbeat",
                "an interval above zero and a silence timeout of at least twice it",
                (s.heartbeat, s.silence_timeout),
            ));
        }
        if s.reverify_interval.is_zero() {
            return Err(out_of_range(
                "reverify_interval",
                "above zero",
                s.reverify_interval,
            ));
        }
        if s.max_ttl < Duration::from_secs(1) {
            return Err(out_of_range("max_ttl", "at least one second", s.max_ttl));
        }
        if self.write_queue == 0 || self.version_cache == 0 || self.breaker_failures == 0 {
            return Err(out_of_range(
                "write_queue, version_cache and circuit_breaker failures",
                "at least 1",
                (self.write_queue, self.version_cache, self.breaker_failures),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            out_of_range(
                "SecondLevel::build",
                "called inside a tokio runtime",
                "no runtime",
            )
        })?;
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (writes, writes_rx) = mpsc::channel(self.write_queue);
        let node = node_id();
        let shared = Arc::new(LevelShared {
            backend: self.backend,
            channel: format!("{}bus", self.settings.prefix),
            generation_key: format!("{}gen", self.settings.prefix),
            settings: self.settings,
            breaker: Breaker::new(self.breaker_failures, self.breaker_open_for),
            counters: LevelCounters {
                calls: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                timeouts: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                call_max_nanos: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                writes_refused: AtomicU64::new(0),
                writes_dropped: AtomicU64::new(0),
                bus_sent: AtomicU64::new(0),
                bus_received: AtomicU64::new(0),
                bus_gaps: AtomicU64::new(0),
                publish_failed: AtomicU64::new(0),
                unverified_periods: AtomicU64::new(0),
                bus_lag: LoadHistogram::new(),
                bus_lag_sum: AtomicU64::new(0),
            },
            node,
            healthy: AtomicBool::new(false),
            epoch: AtomicU64::new(1),
            floor: AtomicU64::new(0),
            last_generation: AtomicU64::new(0),
            versions: quick_cache::sync::Cache::new(self.version_cache),
            remembering: Mutex::new(()),
            pending: Mutex::new(HashMap::new()),
            pending_count: AtomicUsize::new(0),
            targets: Mutex::new(Vec::new()),
            publish,
            writes,
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&shared);
        let tasks = vec![
            runtime
                .spawn(writer(weak.clone(), writes_rx))
                .abort_handle(),
            runtime
                .spawn(publisher(weak.clone(), publish_rx))
                .abort_handle(),
            runtime.spawn(subscriber(weak.clone())).abort_handle(),
            runtime.spawn(reverifier(weak)).abort_handle(),
        ];
        *shared.tasks.lock() = tasks;
        Ok(SecondLevel { shared })
    }
}

/// A node id: random enough that two processes (or two levels in one process) never share one.
fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(unix_micros().into());
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Wall-clock time in microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Records a call's outcome for the breaker even when the caller's future is dropped mid-call (a dropped
/// probe must not leave the breaker half-open forever).
struct CallGuard<'a> {
    shared: &'a LevelShared,
    started: Instant,
    done: bool,
}

impl CallGuard<'_> {
    fn finish(&mut self, ok: bool, timeout: bool) {
        self.done = true;
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let c = &self.shared.counters;
        c.call_max_nanos.fetch_max(nanos, Ordering::Relaxed);
        if ok {
            self.shared.breaker.success();
        } else {
            if timeout {
                c.timeouts.fetch_add(1, Ordering::Relaxed);
            } else {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
            self.shared.breaker.failure();
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(false, true);
        }
    }
}

impl LevelShared {
    /// Runs one store operation within `limit`, behind the breaker.
    pub(crate) async fn call<T>(
        &self,
        limit: Duration,
        operation: impl Future<Output = Result<T, L2Error>>,
    ) -> Result<T, L2Error> {
        if !self.breaker.allow() {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(L2Error::breaker_open());
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut guard = CallGuard {
            shared: self,
            started: Instant::now(),
            done: false,
        };
        let result = match tokio::time::timeout(limit, operation).await {
            Ok(result) => result,
            Err(_) => Err(L2Error::timeout()),
        };
        match &result {
            Ok(_) => guard.finish(true, false),
            Err(e) => guard.finish(false, e.is_timeout()),
        }
        result
    }

    /// The epoch whose remembered versions may be trusted now, or `None` while the bus is unhealthy.
    pub(crate) fn trusted_epoch(&self) -> Option<u64> {
        self.healthy
            .load(Ordering::SeqCst)
            .then(|| self.epoch.load(Ordering::SeqCst))
    }

    /// The remembered version at `key` if it may be trusted now (`trusted` from [`Self::trusted_epoch`]).
    pub(crate) fn trusted_version(&self, key: &str, trusted: Option<u64>) -> Option<u64> {
        let trusted = trusted?;
        match self.versions.get(key) {
            Some((version, at)) if at == trusted => Some(version),
            _ => None,
        }
    }

    /// Remembers `version` at `key`, learned in `epoch` (read from the store, or from the bus). Within one
    /// epoch versions only rise: a read that started before an invalidation never hides it. A version of an
    /// older epoch is replaced, so one from before a reset of the store does not outlive it.
    pub(crate) fn remember_version(&self, key: &str, version: u64, epoch: u64) {
        let _serial = self.remembering.lock();
        let version = match self.versions.get(key) {
            Some((known, at)) if at == epoch => known.max(version),
            _ => version,
        };
        self.versions.insert(key.to_owned(), (version, epoch));
    }

    /// Reads the generation counter from the store, within `limit`.
    async fn read_generation(&self, limit: Duration) -> Option<u64> {
        let key = std::slice::from_ref(&self.generation_key);
        let versions = self.call(limit, self.backend.versions(key)).await.ok()?;
        versions.first().copied()
    }

    /// Notes a generation read from the store; a generation below the highest seen means the store was reset.
    pub(crate) fn observe_generation(&self, generation: u64) {
        let previous = self.last_generation.fetch_max(generation, Ordering::SeqCst);
        if generation < previous {
            // The store restarted empty: older versions and entries are gone. Start over from its count.
            self.last_generation.store(generation, Ordering::SeqCst);
            self.floor.store(generation, Ordering::SeqCst);
            self.unverified();
            self.reverified();
        }
    }

    /// Queues a background write; a full queue drops it (counted).
    pub(crate) fn enqueue_write(&self, op: WriteOp) {
        if self.writes.try_send(op).is_err() {
            self.counters.writes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an invalidation for the store and the bus.
    pub(crate) fn enqueue_invalidation(
        &self,
        cache: &Arc<str>,
        kind: MessageKind,
        op: InvalidateOp,
    ) {
        self.mark_pending(&op.set);
        let publish = Publish {
            op,
            kind,
            cache: cache.clone(),
        };
        if let Err(error) = self.publish.try_send(publish) {
            self.counters.publish_failed.fetch_add(1, Ordering::Relaxed);
            self.unmark_pending(&error.into_inner().op.set);
        }
    }

    fn mark_pending(&self, keys: &[String]) {
        let mut pending = self.pending.lock();
        for key in keys {
            *pending.entry(key.clone()).or_insert(0) += 1;
        }
        self.pending_count.store(pending.len(), Ordering::SeqCst);
    }

    fn unmark_pending(&self, keys: &[String]) {
        let mut pending = self.pending.lock();
        for key in keys {
            if let Some(count) = pending.get_mut(key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    pending.remove(key);
                }
            }
        }
        self.pending_count.store(pending.len(), Ordering::SeqCst);
    }

    /// Whether an invalidation of this node is on its way to the store (one atomic load).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending_count.load(Ordering::SeqCst) > 0
    }

    /// Whether one of `keys` has an invalidation of this node on its way to the store.
    pub(crate) fn any_pending<'a>(&self, mut keys: impl Iterator<Item = &'a str>) -> bool {
        if !self.has_pending() {
            return false;
        }
        let pending = self.pending.lock();
        keys.any(|key| pending.contains_key(key))
    }

    pub(crate) fn register(&self, target: Weak<dyn BusTarget>) {
        let mut targets = self.targets.lock();
        targets.retain(|t| t.strong_count() > 0);
        targets.push(target);
    }

    fn targets(&self) -> Vec<Arc<dyn BusTarget>> {
        self.targets
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Versions stop being trusted: every L1 is cleared, remembered versions are dropped from trust.
    fn unverified(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if self.healthy.swap(false, Ordering::SeqCst) {
            self.counters
                .unverified_periods
                .fetch_add(1, Ordering::Relaxed);
        }
        for target in self.targets() {
            target.clear_local();
        }
    }

    /// The bus is back and versions were re-read: trust resumes. Every L1 is cleared once more (entries filled
    /// while unverified may have missed an invalidation).
    fn reverified(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for target in self.targets() {
            target.clear_local();
        }
        self.healthy.store(true, Ordering::SeqCst);
    }

    /// Handles one bus message.
    fn receive(&self, bytes: &[u8], seqs: &mut NodeSeqs) {
        let Some(message) = bus::parse(bytes) else {
            return;
        };
        if seqs.gap(message.node, message.seq) {
            // Messages of that node were lost: what they announced is in the store; re-read it.
            self.counters.bus_gaps.fetch_add(1, Ordering::Relaxed);
            self.unverified();
            self.reverified();
        }
        if message.generation > 0 {
            self.last_generation
                .fetch_max(message.generation, Ordering::SeqCst);
        }
        if message.node == self.node || message.kind == MessageKind::Heartbeat {
            return;
        }
        self.counters.bus_received.fetch_add(1, Ordering::Relaxed);
        let lag = unix_micros().saturating_sub(message.sent_micros);
        self.counters.bus_lag.record(Duration::from_micros(lag));
        self.counters
            .bus_lag_sum
            .fetch_add(lag * 1000, Ordering::Relaxed);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (prefix, cache) = (&self.settings.prefix, message.cache);
        let version_key = match message.kind {
            MessageKind::Tag => Some(format!("{prefix}{cache}:t:{}", message.name)),
            MessageKind::Prefix => Some(format!(
                "{prefix}{cache}:p:{}",
                crate::cache::key::prefix_tag(message.name)
            )),
            MessageKind::Clear => Some(format!("{prefix}{cache}:clear")),
            MessageKind::Key | MessageKind::Heartbeat => None,
        };
        if let Some(key) = version_key {
            self.remember_version(&key, message.generation, epoch);
        }
        for target in self.targets() {
            if target.bus_name() == message.cache {
                target.apply(message.kind, message.name);
            }
        }
    }

    /// The statistics of this level (shared by the caches attached to it).
    pub(crate) fn stats(&self) -> SecondLevelStats {
        let c = &self.counters;
        let (_, lag) = c.bus_lag.read(c.bus_lag_sum.load(Ordering::Relaxed));
        SecondLevelStats {
            calls: c.calls.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            call_max_ms: c.call_max_nanos.load(Ordering::Relaxed) as f64 / 1e6,
            breaker: self.breaker.state().as_str(),
            breaker_opened: self.breaker.opened.load(Ordering::Relaxed),
            breaker_closed: self.breaker.closed.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            writes_refused: c.writes_refused.load(Ordering::Relaxed),
            writes_dropped: c.writes_dropped.load(Ordering::Relaxed),
            bus_sent: c.bus_sent.load(Ordering::Relaxed),
            bus_received: c.bus_received.load(Ordering::Relaxed),
            bus_gaps: c.bus_gaps.load(Ordering::Relaxed),
            invalidations_unpublished: c.publish_failed.load(Ordering::Relaxed),
            bus_lag: lag,
            unverified: !self.healthy.load(Ordering::SeqCst),
            unverified_periods: c.unverified_periods.load(Ordering::Relaxed),
            ..SecondLevelStats::default()
        }
    }
}

impl SecondLevel {
    /// A builder over `backend` with the default settings.
    pub fn builder(backend: impl L2Backend) -> SecondLevelBuilder {
        SecondLevelBuilder {
            backend: Arc::new(backend),
            settings: Settings {
                prefix: DEFAULT_PREFIX.to_owned(),
                soft_timeout: DEFAULT_SOFT_TIMEOUT,
                hard_timeout: DEFAULT_HARD_TIMEOUT,
                heartbeat: DEFAULT_HEARTBEAT,
                silence_timeout: DEFAULT_SILENCE_TIMEOUT,
                reverify_interval: DEFAULT_REVERIFY_INTERVAL,
                max_ttl: DEFAULT_MAX_TTL,
            },
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_open_for: DEFAULT_BREAKER_OPEN_FOR,
            write_queue: DEFAULT_WRITE_QUEUE,
            version_cache: DEFAULT_VERSION_CACHE,
        }
    }

    /// The longest time an entry may be served after an invalidation of it returned on another node, under any
    /// failure of the bus: `silence_timeout + reverify_interval + hard_timeout` (see the module docs). While
    /// the bus works, invalidations arrive within its delivery time (about a millisecond on a LAN).
    pub fn staleness_bound(&self) -> Duration {
        let s = &self.shared.settings;
        s.silence_timeout + s.reverify_interval + s.hard_timeout
    }

    /// Whether the bus is connected and versions are verified now.
    pub fn is_verified(&self) -> bool {
        self.shared.trusted_epoch().is_some()
    }

    /// This level's statistics (also in each attached cache's statistics).
    pub fn stats(&self) -> SecondLevelStats {
        self.shared.stats()
    }
}

/// Drains the write queue, one conditional write at a time.
async fn writer(level: Weak<LevelShared>, mut queue: mpsc::Receiver<WriteOp>) {
    while let Some(op) = queue.recv().await {
        let Some(level) = level.upgrade() else {
            return;
        };
        let limit = level.settings.hard_timeout;
        match level.call(limit, level.backend.write(&op)).await {
            Ok(true) => drop(level.counters.writes.fetch_add(1, Ordering::Relaxed)),
            Ok(false) => {
                level
                    .counters
                    .writes_refused
                    .fetch_add(1, Ordering::Relaxed);
                // Refused: an invalidation came after `born`, or the store was reset below it (its
                // generation went back). Lookups that read the entry alone do not see the generation, so a
                // reset shows here first.
                if let Some(generation) = level.read_generation(limit).await {
                    level.observe_generation(generation);
                }
            }
            Err(_) => drop(
                level
                    .counters
                    .writes_dropped
                    .fetch_add(1, Ordering::Relaxed),
            ),
        }
    }
}

/// Sends invalidations (in order) and the heartbeat.
async fn publisher(level: Weak<LevelShared>, mut queue: mpsc::Receiver<Publish>) {
    let Some(heartbeat) = level.upgrade().map(|l| l.settings.heartbeat) else {
        return;
    };
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0_u64;
    loop {
        let next = tokio::select! {
            next = queue.recv() => match next {
                Some(publish) => Some(publish),
                None => return,
            },
            _ = ticker.tick() => None,
        };
        let Some(level) = level.upgrade() else {
            return;
        };
        let limit = level.settings.hard_timeout;
        match next {
            Some(mut publish) => {
                // The sequence number is used even if the call fails or is skipped: the gap tells the other
                // nodes that they missed something and must re-read versions.
                seq += 1;
                publish.op.message_head =
                    bus::head(level.node, seq, publish.kind, &publish.cache, unix_micros());
                match level
                    .call(limit, level.backend.invalidate(&publish.op))
                    .await
                {
                    Ok(generation) => {
                        level
                            .last_generation
                            .fetch_max(generation, Ordering::SeqCst);
                        level.counters.bus_sent.fetch_add(1, Ordering::Relaxed);
                        // Remember the new tag, prefix and clear versions now, before the bus brings them
                        // back, so this node's L2 reads see its own invalidation as soon as it is no longer
                        // pending. (Key versions are not remembered: the invalidation deleted the entry.)
                        let ns = format!("{}{}:", level.settings.prefix, publish.cache);
                        let epoch = level.epoch.load(Ordering::SeqCst);
                        for key in &publish.op.set {
                            let remembered = key.strip_prefix(&ns).is_some_and(|rest| {
                                rest.starts_with("t:") || rest.starts_with("p:") || rest == "clear"
                            });
                            if remembered {
                                level.remember_version(key, generation, epoch);
                            }
                        }
                    }
                    Err(_) => drop(
                        level
                            .counters
                            .publish_failed
                            .fetch_add(1, Ordering::Relaxed),
                    ),
                }
                level.unmark_pending(&publish.op.set);
            }
            None => {
                // No heartbeat while the breaker is open: the silence then tells this node its bus is lost.
                if level.breaker.state() == BreakerState::Open {
                    continue;
                }
                seq += 1;
                let message = format!(
                    "{}0|",
                    bus::head(level.node, seq, MessageKind::Heartbeat, "", unix_micros())
                );
                let _ = level
                    .call(
                        limit,
                        level.backend.publish(&level.channel, message.as_bytes()),
                    )
                    .await;
            }
        }
    }
}

/// Keeps a subscription to the bus, watches its health, and re-verifies after an outage.
async fn subscriber(level: Weak<LevelShared>) {
    let mut seqs = NodeSeqs::default();
    let mut connected_before = false;
    loop {
        let Some(shared) = level.upgrade() else {
            return;
        };
        let (hard, silence, retry) = (
            shared.settings.hard_timeout,
            shared.settings.silence_timeout,
            shared.settings.heartbeat.min(Duration::from_millis(500)),
        );
        // Through the breaker like every other call: while it is open the store sees no call at all, and once
        // `open_for` has passed this retry is the probe that tells whether the store is back.
        let subscription = shared
            .call(hard, shared.backend.subscribe(&shared.channel))
            .await
            .ok();
        // After an outage, invalidations may have failed to reach the store: read nothing older than now.
        let recovered = match subscription {
            Some(_) if connected_before => shared
                .read_generation(hard)
                .await
                .map(|generation| {
                    shared.floor.store(generation, Ordering::SeqCst);
                    shared.last_generation.store(generation, Ordering::SeqCst);
                })
                .is_some(),
            Some(_) => true,
            None => false,
        };
        let Some(mut subscription) = subscription.filter(|_| recovered) else {
            shared.unverified();
            drop(shared);
            tokio::time::sleep(retry).await;
            continue;
        };
        connected_before = true;
        seqs.reset();
        shared.reverified();
        drop(shared);
        loop {
            let next = tokio::time::timeout(silence, subscription.next()).await;
            let Some(shared) = level.upgrade() else {
                return;
            };
            match next {
                Ok(Some(message)) => shared.receive(&message, &mut seqs),
                // Disconnected, or silent for too long (not even our own heartbeat came back).
                Ok(None) | Err(_) => {
                    shared.unverified();
                    break;
                }
            }
        }
    }
}

/// While versions are unverified, clears every L1 each `reverify_interval`.
async fn reverifier(level: Weak<LevelShared>) {
    let Some(interval) = level.upgrade().map(|l| l.settings.reverify_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let Some(level) = level.upgrade() else {
            return;
        };
        if !level.healthy.load(Ordering::SeqCst) {
            level.epoch.fetch_add(1, Ordering::SeqCst);
            for target in level.targets() {
                target.clear_local();
            }
        }
    }
}
