//! The second level and the invalidation bus: across two nodes on one store (in process, and on a real
//! redis-server), under faults of the server, and with corrupt entries.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "support/services.rs"]
mod services;

#[allow(dead_code, unreachable_pub)]
#[path = "support/promtool.rs"]
mod promtool;
use promtool::promtool_check;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perfscope::cache::http::{
    CacheTags, CachedResponse, ResponseCacheLayer, ResponseCodec, ResponseStore,
};
use perfscope::cache::l2::{
    BoxFuture, InvalidateOp, L2Backend, L2Error, MemoryLevel, ReadKeys, ReadReply, RedisLevel,
    SecondLevel, Subscription, WriteOp,
};
use perfscope::cache::{Cache, CacheStatus, Loaded};

const HARD: Duration = Duration::from_millis(100);

/// A level with the short settings of these tests: staleness bound 150 + 50 + 100 = 300 ms.
fn level(backend: impl L2Backend, prefix: &str) -> SecondLevel {
    SecondLevel::builder(backend)
        .prefix(prefix)
        .soft_timeout(Duration::from_millis(40))
        .hard_timeout(HARD)
        .circuit_breaker(3, Duration::from_millis(300))
        .heartbeat(Duration::from_millis(50), Duration::from_millis(150))
        .reverify_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn cache(level: &SecondLevel) -> Cache<String, u64> {
    Cache::builder()
        .name("items")
        .ttl(Duration::from_secs(30))
        .sweep_interval(Duration::ZERO)
        .second_level(level.clone())
        .build()
        .unwrap()
}

fn unique_prefix(test: &str) -> String {
    format!(
        "t{}-{}-{test}:",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

/// `REDIS_URL`, or `None` (the test skips) unless `PERFSCOPE_REQUIRE_SERVICES=1` (set by `scripts/test`).
fn redis_url() -> Option<String> {
    services::service_url("REDIS_URL", &["redis:", "rediss:", "unix:"], "Redis")
}

/// Waits until both nodes' buses are connected and their versions verified.
async fn both_verified(la: &SecondLevel, lb: &SecondLevel, limit: Duration) {
    wait_until("both buses", limit, || la.is_verified() && lb.is_verified()).await;
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_loaded_on_one_node_is_read_from_l2_on_another_and_invalidated_everywhere() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("memory");
    let (la, lb) = (level(store.clone(), &prefix), level(store.clone(), &prefix));
    both_verified(&la, &lb, Duration::from_secs(2)).await;
    let (a, b) = (cache(&la), cache(&lb));
    let loads = Arc::new(AtomicU64::new(0));
    let loader = |loads: Arc<AtomicU64>, value: u64| {
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Loaded::new(value).tag("item:1")
        }
    };
    let key = "item:1".to_owned();
    assert_eq!(
        a.get_or_compute(&key, loader(loads.clone(), 1))
            .await
            .unwrap(),
        1
    );
    wait_until("the write", Duration::from_secs(2), || {
        la.stats().writes == 1
    })
    .await;
    let fetched = b
        .try_get_or_compute_entry(&key, {
            let loads = loads.clone();
            move || async move { Ok::<_, ()>(loader(loads, 2)().await) }
        })
        .await
        .unwrap();
    assert_eq!(
        (fetched.value, fetched.status),
        (1, CacheStatus::SecondLevelHit)
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1, "B did not load");
    assert_eq!(b.get(&key), Some(1), "filled B's L1");
    a.invalidate_tag("item:1");
    wait_until("B's L1 to drop it", Duration::from_secs(1), || {
        b.get(&key).is_none()
    })
    .await;
    // L2 holds the old entry, but its tag version says it is stale: B loads.
    assert_eq!(
        b.get_or_compute(&key, loader(loads.clone(), 3))
            .await
            .unwrap(),
        3
    );
    let stats = b.stats().second_level.unwrap();
    assert_eq!((stats.hits, stats.rejected), (1, 1), "{stats:?}");
    assert!(stats.bus_received >= 1);
    assert!(b.stats().second_level.unwrap().stores_values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_truncated_foreign_and_old_entries_are_counted_misses() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("corrupt");
    let l = level(store.clone(), &prefix);
    let c = cache(&l);
    let good = {
        let key = "good:1".to_owned();
        c.get_or_compute(&key, || async { 5_u64 }).await.unwrap();
        wait_until("the write", Duration::from_secs(2), || {
            l.stats().writes == 1
        })
        .await;
        store.get_raw(&format!("{prefix}items:e:good:1")).unwrap()
    };
    let mut old = good.clone();
    old[2] = 0;
    let mut bad_payload = good.clone();
    bad_payload.truncate(good.len() - 1);
    bad_payload.extend_from_slice(&[0xff; 12]);
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{\"json\": true}".to_vec(),
        good[..10].to_vec(),
        old,
        bad_payload,
    ];
    for (i, bytes) in cases.into_iter().enumerate() {
        store.put_raw(&format!("{prefix}items:e:bad:{i}"), bytes);
        let value = c
            .get_or_compute(&format!("bad:{i}"), move || async move { 100 + i as u64 })
            .await;
        assert_eq!(value.unwrap(), 100 + i as u64);
    }
    let stats = c.stats().second_level.unwrap();
    assert_eq!(stats.corrupt, 5, "{stats:?}");
}

/// Lookups of a [`Counted`] store by kind: the entry with its versions, or the entry alone.
#[derive(Default)]
struct ReadCounts {
    full: AtomicU64,
    entry_alone: AtomicU64,
}

impl ReadCounts {
    fn get(&self) -> (u64, u64) {
        (
            self.full.load(Ordering::SeqCst),
            self.entry_alone.load(Ordering::SeqCst),
        )
    }
}

/// An [`L2Backend`] that counts the operations that reach the store it wraps: counted when the operation runs
/// (its future is first polled), not when it is built, so a call the breaker skips is not counted.
struct Counted<B> {
    inner: B,
    calls: Arc<AtomicU64>,
    reads: Arc<ReadCounts>,
}

impl<B: L2Backend> Counted<B> {
    fn new(inner: B) -> (Self, Arc<AtomicU64>) {
        let calls = Arc::new(AtomicU64::new(0));
        (
            Counted {
                inner,
                calls: calls.clone(),
                reads: Arc::default(),
            },
            calls,
        )
    }

    /// Its lookups by kind.
    fn reads(&self) -> Arc<ReadCounts> {
        self.reads.clone()
    }
}

impl<B: L2Backend> L2Backend for Counted<B> {
    fn read<'a>(&'a self, keys: &'a ReadKeys) -> BoxFuture<'a, Result<ReadReply, L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.reads.full.fetch_add(1, Ordering::SeqCst);
            self.inner.read(keys).await
        })
    }
    fn read_entry<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.reads.entry_alone.fetch_add(1, Ordering::SeqCst);
            self.inner.read_entry(entry).await
        })
    }
    fn versions<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<u64>, L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.versions(keys).await
        })
    }
    fn write<'a>(&'a self, op: &'a WriteOp) -> BoxFuture<'a, Result<bool, L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.write(op).await
        })
    }
    fn invalidate<'a>(&'a self, op: &'a InvalidateOp) -> BoxFuture<'a, Result<u64, L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.invalidate(op).await
        })
    }
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.publish(channel, message).await
        })
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription, L2Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner.subscribe(channel).await
        })
    }
}

/// An [`L2Backend`] whose invalidations reach the store late, as over a slow link.
struct SlowInvalidations<B> {
    inner: B,
    delay: Duration,
}

impl<B: L2Backend> L2Backend for SlowInvalidations<B> {
    fn read<'a>(&'a self, keys: &'a ReadKeys) -> BoxFuture<'a, Result<ReadReply, L2Error>> {
        self.inner.read(keys)
    }
    fn read_entry<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, L2Error>> {
        self.inner.read_entry(entry)
    }
    fn versions<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<u64>, L2Error>> {
        self.inner.versions(keys)
    }
    fn write<'a>(&'a self, op: &'a WriteOp) -> BoxFuture<'a, Result<bool, L2Error>> {
        self.inner.write(op)
    }
    fn invalidate<'a>(&'a self, op: &'a InvalidateOp) -> BoxFuture<'a, Result<u64, L2Error>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.invalidate(op).await
        })
    }
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), L2Error>> {
        self.inner.publish(channel, message)
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription, L2Error>> {
        self.inner.subscribe(channel)
    }
}

/// A node reads its own invalidations from L2 too: right after `invalidate_tag` (or `invalidate`) returns, and
/// before the store has the new version, the old entry in L2 is not served on the node that invalidated it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_never_reads_back_from_l2_what_it_just_invalidated() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("own");
    let slow = SlowInvalidations {
        inner: store.clone(),
        delay: Duration::from_millis(80),
    };
    let la = level(slow, &prefix);
    wait_until("the bus", Duration::from_secs(2), || la.is_verified()).await;
    let a = cache(&la);
    let key = "item:7".to_owned();
    for (round, invalidate_key) in [(1_u64, false), (2, true)] {
        let before = la.stats().writes;
        let value = a
            .get_or_compute(
                &key,
                move || async move { Loaded::new(round * 10).tag("items") },
            )
            .await
            .unwrap();
        assert_eq!(value, round * 10);
        wait_until("the write", Duration::from_secs(2), || {
            la.stats().writes > before
        })
        .await;
        if invalidate_key {
            a.invalidate(&key);
        } else {
            a.invalidate_tag("items");
        }
        // The invalidation is still on its way to the store: L2 holds the old entry under old versions.
        let fetched = a
            .try_get_or_compute_entry(&key, move || async move {
                Ok::<_, ()>(Loaded::new(round * 10 + 1).tag("items"))
            })
            .await
            .unwrap();
        assert_eq!(
            (fetched.value, fetched.status),
            (round * 10 + 1, CacheStatus::Miss),
            "round {round}"
        );
        // Once the store has it, nothing is pending, and the next value is loaded and written again.
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.invalidate(&key);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Loads `value` under `key` on `cache` with the tag `items` (or reads it from L2), and says how it came.
async fn load(cache: &Cache<String, u64>, key: &str, value: u64) -> (u64, CacheStatus) {
    let fetched = cache
        .try_get_or_compute_entry(&key.to_owned(), move || async move {
            Ok::<_, ()>(Loaded::new(value).tag("items"))
        })
        .await
        .unwrap();
    (fetched.value, fetched.status)
}

/// While its bus vouches for the versions, a node reads an L2 entry alone (one key instead of four), and
/// still never serves an entry that a key invalidation, a tag invalidation or a `clear` on another node made
/// stale: the key's invalidation deleted the entry in the store, and the tag and `clear` versions came over
/// the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_bus_vouches_for_versions_reads_the_entry_alone() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("alone");
    let (counted, _) = Counted::new(store.clone());
    let counts = counted.reads();
    let (la, lb) = (level(store.clone(), &prefix), level(counted, &prefix));
    both_verified(&la, &lb, Duration::from_secs(2)).await;
    let (a, b) = (cache(&la), cache(&lb));
    for (i, key) in ["item:1", "item:2", "item:3", "item:4"].iter().enumerate() {
        assert_eq!(
            load(&a, key, i as u64 + 1).await,
            (i as u64 + 1, CacheStatus::Miss)
        );
    }
    wait_until("the writes", Duration::from_secs(2), || {
        la.stats().writes == 4
    })
    .await;
    // The first lookup learns the cache's `clear` version with the entry; the next ones read the entry alone.
    assert_eq!(
        load(&b, "item:1", 0).await,
        (1, CacheStatus::SecondLevelHit)
    );
    assert_eq!(
        load(&b, "item:2", 0).await,
        (2, CacheStatus::SecondLevelHit)
    );
    assert_eq!(counts.get(), (1, 1));

    let received = |n| {
        let lb = lb.clone();
        move || lb.stats().bus_received >= n
    };
    // A key invalidated on A: its entry is gone from the store.
    a.invalidate(&"item:3".to_owned());
    wait_until(
        "the key's invalidation",
        Duration::from_secs(2),
        received(1),
    )
    .await;
    assert_eq!(load(&b, "item:3", 30).await, (30, CacheStatus::Miss));
    // A tag invalidated on A: the entry is in the store, but its tag's version came over the bus.
    a.invalidate_tag("items");
    wait_until(
        "the tag's invalidation",
        Duration::from_secs(2),
        received(2),
    )
    .await;
    assert_eq!(load(&b, "item:4", 40).await, (40, CacheStatus::Miss));
    // Written again after the invalidation: served (here to A, whose L1 the invalidation emptied).
    wait_until("B's write", Duration::from_secs(2), || {
        lb.stats().writes == 2
    })
    .await;
    assert_eq!(
        load(&a, "item:4", 0).await,
        (40, CacheStatus::SecondLevelHit)
    );
    // A `clear` on A leaves the entries in the store; its version came over the bus.
    a.clear();
    wait_until("the clear", Duration::from_secs(2), received(3)).await;
    assert_eq!(load(&b, "item:4", 41).await, (41, CacheStatus::Miss));
    let stats = b.stats().second_level.unwrap();
    assert_eq!(stats.rejected, 2, "{stats:?}");
    assert_eq!(
        counts.get(),
        (1, 4),
        "every lookup after the first read the entry alone"
    );
}

/// A store emptied under a live bus (`FLUSHALL`: the subscriptions stay, the generation starts again from 0)
/// is noticed by the first write it refuses, since lookups that read the entry alone do not see the
/// generation; the node then writes and reads L2 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_emptied_under_a_live_bus_is_noticed_and_used_again() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("flushed");
    let (la, lb) = (level(store.clone(), &prefix), level(store.clone(), &prefix));
    both_verified(&la, &lb, Duration::from_secs(2)).await;
    let (a, b) = (cache(&la), cache(&lb));
    for round in 0..5 {
        a.invalidate_tag(&format!("other:{round}"));
    }
    wait_until("the invalidations", Duration::from_secs(2), || {
        lb.stats().bus_received == 5
    })
    .await;
    // B learns the cache's versions (so its next lookups read the entry alone).
    assert_eq!(load(&b, "item:0", 1).await, (1, CacheStatus::Miss));
    wait_until("the write", Duration::from_secs(2), || {
        lb.stats().writes == 1
    })
    .await;

    store.flush();
    // Born under generation 5, which the emptied store has not reached: refused, and the reset noticed.
    assert_eq!(load(&b, "item:1", 10).await, (10, CacheStatus::Miss));
    wait_until("the refused write", Duration::from_secs(2), || {
        lb.stats().writes_refused == 1
    })
    .await;
    // Every entry written from now on is born under the store's new count.
    assert_eq!(load(&b, "item:2", 20).await, (20, CacheStatus::Miss));
    wait_until("the next write", Duration::from_secs(2), || {
        lb.stats().writes == 2
    })
    .await;
    assert_eq!(
        load(&a, "item:2", 0).await,
        (20, CacheStatus::SecondLevelHit)
    );
}

/// A level whose breaker stays open for `OPEN_FOR`, long enough to watch it make no call.
const OPEN_FOR: Duration = Duration::from_millis(1500);

fn level_with_long_open(backend: impl L2Backend, prefix: &str) -> SecondLevel {
    SecondLevel::builder(backend)
        .prefix(prefix)
        .soft_timeout(Duration::from_millis(40))
        .hard_timeout(HARD)
        .circuit_breaker(3, OPEN_FOR)
        .heartbeat(Duration::from_millis(50), Duration::from_millis(150))
        .reverify_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// Once the breaker is open: readers on new keys (each an L1 miss that would read L2), writes of what they
/// load, an invalidation, and the background tasks (heartbeat, resubscription) run for most of `OPEN_FOR`; the
/// store sees exactly 0 calls, and the breaker did not probe meanwhile.
async fn no_calls_while_open(level: &SecondLevel, cache: &Cache<String, u64>, calls: &AtomicU64) {
    wait_until("the breaker to open", Duration::from_secs(3), || {
        level.stats().breaker == "open"
    })
    .await;
    // Start at a fresh opening: the failed probe that reopens it once `open_for` has passed (the
    // resubscription retries probe every 50 ms), so the whole window below lies within one open period.
    let first = level.stats().breaker_opened;
    wait_until("the breaker to reopen", OPEN_FOR * 2, || {
        let stats = level.stats();
        stats.breaker_opened > first && stats.breaker == "open"
    })
    .await;
    let opened_at = Instant::now();
    let opened = level.stats().breaker_opened;
    // Calls that passed the breaker just before it opened end within the hard timeout.
    tokio::time::sleep(HARD + Duration::from_millis(20)).await;
    let before = calls.load(Ordering::SeqCst);
    let skipped_before = level.stats().skipped;
    let mut round = 0_u64;
    while opened_at.elapsed() < OPEN_FOR - Duration::from_millis(300) {
        let key = format!("open:{round}");
        assert_eq!(
            cache
                .get_or_compute(&key, move || async move { round })
                .await
                .unwrap(),
            round
        );
        if round.is_multiple_of(10) {
            cache.invalidate_tag("while-open");
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = level.stats();
    assert_eq!(
        (stats.breaker, stats.breaker_opened),
        ("open", opened),
        "no probe within open_for: {stats:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst) - before,
        0,
        "the store saw calls while the breaker was open ({round} reads): {stats:?}"
    );
    assert!(
        stats.skipped - skipped_before >= round,
        "every read skipped L2: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_fails_no_request_and_the_breaker_makes_no_calls_while_open() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("down");
    let (counted, calls) = Counted::new(store.clone());
    let l = level_with_long_open(counted, &prefix);
    wait_until("the bus", Duration::from_secs(2), || l.is_verified()).await;
    let c = cache(&l);
    store.set_down(true);
    let mut tasks = Vec::new();
    for reader in 0..50_u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4_u64 {
                let key = format!("k:{reader}:{round}");
                c.get_or_compute(&key, move || async move { reader })
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(l.stats().breaker_opened >= 1, "{:?}", l.stats());
    no_calls_while_open(&l, &c, &calls).await;
    // The store's own count agrees with the wrapper's.
    assert_eq!(store.calls(), calls.load(Ordering::SeqCst));
    store.set_down(false);
    wait_until("the breaker to close", Duration::from_secs(5), || {
        l.stats().breaker == "closed" && l.is_verified()
    })
    .await;
    // Nothing stale: the periodic clears ran while the bus was lost.
    assert!(l.stats().unverified_periods >= 1);
}

#[test]
fn bad_settings_are_refused_with_a_hint() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let store = MemoryLevel::new();
    let err = SecondLevel::builder(store.clone())
        .soft_timeout(Duration::from_secs(1))
        .hard_timeout(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("soft_timeout"), "{err}");
    assert!(
        SecondLevel::builder(store.clone())
            .heartbeat(Duration::from_secs(1), Duration::from_secs(1))
            .build()
            .is_err()
    );
    assert!(
        SecondLevel::builder(store.clone())
            .prefix("has space")
            .build()
            .is_err()
    );
    let level = SecondLevel::builder(store).build().unwrap();
    assert_eq!(
        level.staleness_bound(),
        Duration::from_millis(3000 + 1000 + 250)
    );
    let err = Cache::<(u8, u8), u64>::builder()
        .second_level(level)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("second_level"), "{err}");
}

/// Latency from an invalidation returning on A to B's L1 missing, over 1,000 trials of each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_the_other_node_within_50_ms_p99() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("fanout");
    let la = level(RedisLevel::open(&url).unwrap(), &prefix);
    let lb = level(RedisLevel::open(&url).unwrap(), &prefix);
    both_verified(&la, &lb, Duration::from_secs(3)).await;
    let (a, b) = (cache(&la), cache(&lb));
    let bound = lb.staleness_bound();
    let mut latencies = Vec::new();
    for trial in 0..1000_u64 {
        let key = format!("product:{trial}:details");
        b.insert_with(key.clone(), Loaded::new(trial).tag(format!("tag:{trial}")));
        assert_eq!(b.get(&key), Some(trial));
        let started = Instant::now();
        match trial % 3 {
            0 => a.invalidate_tag(&format!("tag:{trial}")),
            1 => drop(a.invalidate(&key)),
            _ => a.invalidate_prefix(&format!("product:{trial}")),
        }
        while b.get(&key).is_some() {
            assert!(
                started.elapsed() < bound,
                "trial {trial}: stale after the bound"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let max = latencies[latencies.len() - 1];
    eprintln!("fan-out over Redis: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
    assert!(max <= Duration::from_millis(250), "max {max:?}");
    assert!(lb.stats().bus_received >= 1000);
}

/// A redis-server of this test's own, on a free port, that the test can kill, freeze and restart.
struct Server {
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(port: Option<u16>) -> Server {
        let port = port.unwrap_or_else(|| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            port,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    fn kill(&mut self) {
        self.signal("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) {
        let status = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Freeze,
    KillPubSub,
    RestartEmpty,
}

/// 50 readers on B, a writer on A bumping the source of truth and invalidating, and a fault in the middle:
/// no request fails, every call is bounded, and no read returns a version older than the staleness bound.
async fn survive(fault: Fault) {
    if !redis_available() {
        return;
    }
    let mut server = Server::start(None);
    let prefix = unique_prefix("fault");
    let la = level(RedisLevel::open(&server.url()).unwrap(), &prefix);
    let lb = level(RedisLevel::open(&server.url()).unwrap(), &prefix);
    both_verified(&la, &lb, Duration::from_secs(3)).await;
    let (a, b) = (cache(&la), cache(&lb));
    let bound = lb.staleness_bound();
    let truth = Arc::new(AtomicU64::new(0));
    // When each version stopped being current.
    let replaced_at = Arc::new(parking_lot::Mutex::new(Vec::<Instant>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (truth, replaced_at, stop) = (truth.clone(), replaced_at.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                replaced_at.lock().push(Instant::now());
                truth.fetch_add(1, Ordering::SeqCst);
                a.invalidate_tag("truth");
            }
        })
    };
    let errors = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for reader in 0..50_u64 {
        let (b, truth, replaced_at, stop, errors, violations) = (
            b.clone(),
            truth.clone(),
            replaced_at.clone(),
            stop.clone(),
            errors.clone(),
            violations.clone(),
        );
        readers.push(tokio::spawn(async move {
            let key = format!("item:{}", reader % 5);
            while !stop.load(Ordering::SeqCst) {
                let truth = truth.clone();
                let read = b
                    .get_or_compute(&key, move || async move {
                        Loaded::new(truth.load(Ordering::SeqCst)).tag("truth")
                    })
                    .await;
                let now = Instant::now();
                match read {
                    Ok(version) => {
                        // Version v stopped being current at replaced_at[v]; reading it later than the bound
                        // after that is a stale read.
                        let replaced = replaced_at.lock().get(version as usize).copied();
                        if replaced.is_some_and(|at| now.saturating_duration_since(at) > bound) {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => drop(errors.fetch_add(1, Ordering::SeqCst)),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    match fault {
        Fault::Kill => {
            server.kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let stats = lb.stats();
            assert!(stats.breaker == "open" || stats.unverified, "{stats:?}");
            tokio::time::sleep(Duration::from_millis(400)).await;
            server = Server::start(Some(server.port));
        }
        Fault::Freeze => {
            server.signal("-STOP");
            tokio::time::sleep(Duration::from_millis(600)).await;
            let stats = lb.stats();
            assert!(stats.breaker_opened >= 1, "{stats:?}");
            server.signal("-CONT");
        }
        Fault::KillPubSub => {
            server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Fault::RestartEmpty => {
            server.kill();
            server = Server::start(Some(server.port));
        }
    }
    wait_until("recovery", Duration::from_secs(5), || {
        la.is_verified() && lb.is_verified() && lb.stats().breaker == "closed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
    let stats = lb.stats();
    eprintln!("{fault:?}: {stats:?}");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "request errors");
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "reads older than the bound"
    );
    assert!(
        stats.call_max_ms <= (HARD + Duration::from_millis(20)).as_secs_f64() * 1e3,
        "{stats:?}"
    );
    assert!(stats.unverified_periods >= 1, "{stats:?}");
    drop(server);
}

fn redis_available() -> bool {
    // The fault tests start servers of their own with the same binary as the shared one.
    redis_url().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_killed() {
    survive(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_frozen() {
    survive(Fault::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_the_pubsub_connection_killed() {
    survive(Fault::KillPubSub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_restarted_empty() {
    survive(Fault::RestartEmpty).await;
}

/// A server that accepts connections and never answers: no request fails, every call is bounded, and once the
/// breaker is open the server sees no call at all (counted at the backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_server_fails_no_request_and_every_call_is_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (counted, calls) =
        Counted::new(RedisLevel::open(&format!("redis://127.0.0.1:{port}/")).unwrap());
    let l = level_with_long_open(counted, "blackhole:");
    let c = cache(&l);
    let mut tasks = Vec::new();
    for reader in 0..50_u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..3_u64 {
                let key = format!("k:{reader}:{round}");
                assert_eq!(
                    c.get_or_compute(&key, move || async move { reader })
                        .await
                        .unwrap(),
                    reader
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = l.stats();
    assert!(stats.breaker_opened >= 1, "{stats:?}");
    assert!(
        stats.call_max_ms <= (HARD + Duration::from_millis(20)).as_secs_f64() * 1e3,
        "{stats:?}"
    );
    assert!(!l.is_verified());
    no_calls_while_open(&l, &c, &calls).await;
    hold.abort();
}

#[cfg(feature = "json")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_level_statistics_are_exported() {
    let store = MemoryLevel::new();
    let l = level(store, &unique_prefix("export"));
    let c = cache(&l);
    c.get_or_compute(&"a:1".to_owned(), || async { 1 })
        .await
        .unwrap();
    let perf = perfscope::Perfscope::builder().build().unwrap();
    perf.register_cache(c.handle());
    let text = perf.prometheus();
    assert!(
        text.contains("perfscope_cache_l2_lookups_total{cache=\"items\",result=\"miss\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("perfscope_cache_l2_breaker_state{cache=\"items\",state=\"closed\"} 1"),
        "{text}"
    );
    promtool_check(&text);
    let json = serde_json::to_value(c.stats()).unwrap();
    assert_eq!(json["second_level"]["misses"], 1);
    assert_eq!(json["second_level"]["breaker"], "closed");
}

/// Every seed of the `envelope` fuzz target goes through the target's step, so the seeds run on stable too;
/// each seed's name says what the decoder must answer.
#[test]
fn envelope_fuzz_seeds_decode_as_their_names_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&path).unwrap();
        let got = perfscope::cache::l2::fuzz_decode_envelope(&data);
        // Inputs a fuzzing run added (named by their SHA-1) only have to decode without a panic.
        if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let expected = if name.starts_with("valid") {
            got.map(|_| "ok")
        } else if name.starts_with("old_format") {
            Err("old format")
        } else if name.starts_with("foreign") {
            Err("foreign")
        } else {
            Err("corrupt")
        };
        assert_eq!(got.map(|_| "ok"), expected, "seed {name}");
        if let Ok(payload) = got {
            assert!(payload <= data.len(), "seed {name}");
        }
        seen += 1;
    }
    assert!(seen >= 10, "{seen} seeds in {}", dir.display());
}

/// One node's response cache: a route whose handler counts its calls and answers the current version of the
/// product, tagged `products`, and a route whose response varies on `Accept-Language`.
fn response_node(
    level: &SecondLevel,
    version: Arc<AtomicU64>,
) -> (axum::Router, ResponseCacheLayer, Arc<AtomicU64>) {
    use axum::routing::get;
    let layer = ResponseCacheLayer::builder()
        .second_level(level.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let (c1, c2) = (calls.clone(), calls.clone());
    let app = axum::Router::new()
        .route(
            "/api/products/{id}",
            get(move || {
                c1.fetch_add(1, Ordering::SeqCst);
                let body = format!("v{}", version.load(Ordering::SeqCst));
                async move {
                    (
                        [("cache-control", "public, max-age=60")],
                        axum::Extension(CacheTags::new(["products"])),
                        body,
                    )
                }
            }),
        )
        .route(
            "/api/greeting",
            get(move |headers: http::HeaderMap| {
                c2.fetch_add(1, Ordering::SeqCst);
                let language = headers
                    .get("accept-language")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("en")
                    .to_owned();
                async move {
                    (
                        [
                            ("cache-control", "public, max-age=60"),
                            ("vary", "accept-language"),
                        ],
                        format!("hello in {language}"),
                    )
                }
            }),
        )
        .layer(layer.clone());
    (app, layer, calls)
}

/// `X-Cache` and the body of a GET.
async fn fetch(app: &axum::Router, path: &str, language: Option<&str>) -> (String, String) {
    use http_body_util::BodyExt;
    let mut request = http::Request::get(path);
    if let Some(language) = language {
        request = request.header("accept-language", language);
    }
    let request = request.body(axum::body::Body::empty()).unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (x_cache, String::from_utf8(body.to_vec()).unwrap())
}

/// Two response caches (two nodes) on one second level: a response stored by A is served on B from L2 without
/// calling B's handler, a tag invalidation or `clear` on one node makes the other's next request a MISS, and a
/// response with `Vary` is found in L2 per variant.
async fn response_caches_share_the_second_level(la: SecondLevel, lb: SecondLevel) {
    both_verified(&la, &lb, Duration::from_secs(3)).await;
    let version = Arc::new(AtomicU64::new(0));
    let (a, layer_a, calls_a) = response_node(&la, version.clone());
    let (b, layer_b, calls_b) = response_node(&lb, version.clone());
    let path = "/api/products/1";

    assert_eq!(fetch(&a, path, None).await, ("MISS".into(), "v0".into()));
    wait_until("A's write", Duration::from_secs(2), || {
        la.stats().writes >= 1
    })
    .await;
    assert_eq!(fetch(&b, path, None).await, ("HIT-L2".into(), "v0".into()));
    assert_eq!(fetch(&b, path, None).await, ("HIT".into(), "v0".into()));
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        0,
        "B's handler was not called"
    );
    assert_eq!(layer_b.stats().hits, 2);

    // The product changes; A invalidates its tag: B's next request is a MISS with the new version.
    version.store(1, Ordering::SeqCst);
    let received = lb.stats().bus_received;
    layer_a.store().invalidate_tag("products");
    wait_until("the invalidation on B", Duration::from_secs(2), || {
        lb.stats().bus_received > received
    })
    .await;
    assert_eq!(fetch(&b, path, None).await, ("MISS".into(), "v1".into()));
    assert_eq!(calls_b.load(Ordering::SeqCst), 1);
    // A's own copy is gone too; it answers v1 (from its handler, or from what B wrote to L2).
    let (_, body) = fetch(&a, path, None).await;
    assert_eq!(body, "v1");

    // `clear` on B reaches A.
    version.store(2, Ordering::SeqCst);
    let received = la.stats().bus_received;
    let calls = calls_a.load(Ordering::SeqCst);
    layer_b.store().clear();
    wait_until("the clear on A", Duration::from_secs(2), || {
        la.stats().bus_received > received
    })
    .await;
    assert_eq!(fetch(&a, path, None).await, ("MISS".into(), "v2".into()));
    assert_eq!(calls_a.load(Ordering::SeqCst), calls + 1);

    // Vary: the base key holds the names, each language its own entry, in L2 as in L1.
    let writes = la.stats().writes;
    let fr = Some("fr");
    assert_eq!(
        fetch(&a, "/api/greeting", fr).await,
        ("MISS".into(), "hello in fr".into())
    );
    wait_until("A's writes", Duration::from_secs(2), || {
        la.stats().writes >= writes + 2
    })
    .await;
    assert_eq!(
        fetch(&b, "/api/greeting", fr).await,
        ("HIT-L2".into(), "hello in fr".into())
    );
    assert_eq!(
        fetch(&b, "/api/greeting", Some("de")).await,
        ("MISS".into(), "hello in de".into())
    );
    let stats = layer_b.store().stats().second_level.unwrap();
    assert!(stats.stores_values && stats.hits >= 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_caches_share_the_second_level_in_memory() {
    let store = MemoryLevel::new();
    let prefix = unique_prefix("http-memory");
    response_caches_share_the_second_level(level(store.clone(), &prefix), level(store, &prefix))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_caches_share_the_second_level_on_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("http-redis");
    response_caches_share_the_second_level(
        level(RedisLevel::open(&url).unwrap(), &prefix),
        level(RedisLevel::open(&url).unwrap(), &prefix),
    )
    .await;
}

#[test]
fn a_response_cache_refuses_a_store_of_its_own_and_a_second_level() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let level = SecondLevel::builder(MemoryLevel::new()).build().unwrap();
    let store: ResponseStore = Cache::builder()
        .max_weight(1 << 20)
        .weigher(CachedResponse::weigh)
        .build()
        .unwrap();
    let err = ResponseCacheLayer::builder()
        .store(store)
        .second_level(level.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("second_level"), "{err}");
    // The way for a shared store: the codec on the store's own builder.
    let shared: ResponseStore = Cache::builder()
        .max_weight(1 << 20)
        .weigher(CachedResponse::weigh)
        .second_level_with_codec(level, ResponseCodec)
        .build()
        .unwrap();
    assert!(shared.stats().second_level.unwrap().stores_values);
}
