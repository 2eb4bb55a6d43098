//! The race guarantee under real concurrency: a value computed from state older than an invalidation is never
//! read after that invalidation returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use perfscope::cache::{Cache, CacheKey, Loaded, Ticket};
use tokio::sync::oneshot;

use crate::builder;

/// A loader over a shared "database" version: reads it first, tells `read` it did, then yields a few times (a
/// slow query) before answering with what it read.
fn loader(
    db: Arc<AtomicU64>,
    yields: u64,
    tag: impl Into<String>,
    read: Option<oneshot::Sender<()>>,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Loaded<u64>> + Send>> + Send + 'static {
    let tag = tag.into();
    move || {
        Box::pin(async move {
            let version = db.load(Ordering::SeqCst);
            if let Some(read) = read {
                let _ = read.send(());
            }
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            Loaded::new(version).tag(tag)
        })
    }
}

/// `iterations` rounds of: start a slow load, bump the database, invalidate (how: by `invalidate`), then read
/// and check that nothing older than the bump is returned. Every other round waits until the slow load has read
/// the database before bumping it, so at least half the rounds race a load in flight; the others interleave
/// as the scheduler pleases.
/// Returns the stale reads (must be 0) and how many slow loads straddled the invalidation (read the database
/// before the bump): the races the run actually exercised.
async fn race(
    iterations: u64,
    invalidate: impl Fn(&Cache<CacheKey, u64>, &CacheKey),
) -> (u64, u64) {
    let cache: Cache<CacheKey, u64> = builder().build().unwrap();
    let db = Arc::new(AtomicU64::new(0));
    let mut stale_reads = 0;
    let mut straddled = 0;
    for i in 0..iterations {
        let key = CacheKey::new("item").part(i % 16);
        let forced = i.is_multiple_of(2);
        let (read_tx, read_rx) = oneshot::channel();
        if forced {
            cache.invalidate(&key); // cold, so the slow call runs its loader
        }
        let slow = {
            let (cache, key, db) = (cache.clone(), key.clone(), db.clone());
            let read = forced.then_some(read_tx);
            tokio::spawn(async move {
                cache
                    .get_or_compute(&key, loader(db, i % 5, "items", read))
                    .await
            })
        };
        if forced {
            tokio::time::timeout(std::time::Duration::from_secs(10), read_rx)
                .await
                .unwrap()
                .unwrap();
        }
        for _ in 0..i % 3 {
            tokio::task::yield_now().await;
        }
        let version = db.fetch_add(1, Ordering::SeqCst) + 1;
        invalidate(&cache, &key);
        // The invalidation has returned: every read from now on must see `version` or later.
        if cache.get(&key).is_some_and(|v| v < version) {
            stale_reads += 1;
        }
        let read = cache
            .get_or_compute(&key, loader(db.clone(), i % 2, "items", None))
            .await
            .unwrap();
        if read < version {
            stale_reads += 1;
        }
        // The slow load's own caller may get its old value (its call overlapped the invalidation)...
        if slow.await.unwrap().unwrap() < version {
            straddled += 1;
        }
        // ...but it is never stored for anyone else.
        if cache.get(&key).is_some_and(|v| v < version) {
            stale_reads += 1;
        }
    }
    (stale_reads, straddled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loads_racing_tag_invalidation_never_serve_stale() {
    let (stale, straddled) = race(10_000, |cache, _| cache.invalidate_tag("items")).await;
    assert_eq!(stale, 0);
    assert!(
        straddled > 1_000,
        "only {straddled} loads raced the invalidation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loads_racing_key_invalidation_never_serve_stale() {
    let (stale, straddled) = race(10_000, |cache, key| {
        cache.invalidate(key);
    })
    .await;
    assert_eq!(stale, 0);
    assert!(
        straddled > 1_000,
        "only {straddled} loads raced the invalidation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loads_racing_prefix_pattern_and_clear_never_serve_stale() {
    let (stale, straddled) = race(2_000, |cache, _| cache.invalidate_prefix("item")).await;
    assert_eq!(stale, 0);
    assert!(straddled >= 1_000, "{straddled}");
    let (stale, straddled) = race(2_000, |cache, key| {
        cache.invalidate_matching(&format!("{}*", key.as_str()));
    })
    .await;
    assert_eq!(stale, 0);
    assert!(straddled >= 1_000, "{straddled}");
    let (stale, straddled) = race(2_000, |cache, _| cache.clear()).await;
    assert_eq!(stale, 0);
    assert!(straddled >= 1_000, "{straddled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_refreshes_racing_invalidation_never_serve_stale() {
    use std::time::Duration;
    // Every entry is stale at once (1 ns TTL, long stale window): each read starts a background refresh that
    // races the invalidation.
    let cache: Cache<u64, u64> = builder()
        .ttl(Duration::from_nanos(1))
        .stale_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    let db = Arc::new(AtomicU64::new(0));
    let mut stale_reads = 0;
    for i in 0..5_000_u64 {
        let key = i % 8;
        let tag = format!("item:{key}");
        let _ = cache
            .get_or_compute(&key, loader(db.clone(), i % 4, tag.clone(), None))
            .await
            .unwrap();
        for _ in 0..i % 3 {
            tokio::task::yield_now().await;
        }
        let version = db.fetch_add(1, Ordering::SeqCst) + 1;
        if i.is_multiple_of(2) {
            cache.invalidate_tag(&tag);
        } else {
            cache.invalidate(&key);
        }
        // A stale-window read may serve a value, but never one older than the invalidation.
        let read = cache
            .get_or_compute(&key, loader(db.clone(), 0, tag, None))
            .await
            .unwrap();
        if read < version {
            stale_reads += 1;
        }
    }
    assert_eq!(stale_reads, 0);
    let refreshes = cache.stats().refreshes;
    assert!(refreshes > 1_000, "{refreshes}");
}

/// How a by-hand reader stores what it read.
type Store = fn(&Cache<CacheKey, u64>, Ticket, CacheKey, Loaded<u64>);

/// `iterations` rounds of an application's own read-then-store (`ticket`, read the database, `store`) racing a
/// writer that bumps the database and invalidates (how: by `invalidate`). In a quarter of the rounds the store
/// lands strictly after the invalidation returned, in another quarter the writer waits until the reader has
/// read and both race; the rest interleave as the scheduler pleases. Returns the stale reads and the reads that
/// straddled the invalidation.
async fn race_by_hand(
    iterations: u64,
    store: Store,
    invalidate: impl Fn(&Cache<CacheKey, u64>, &CacheKey),
) -> (u64, u64) {
    let cache: Cache<CacheKey, u64> = builder().build().unwrap();
    let db = Arc::new(AtomicU64::new(0));
    let mut stale_reads = 0;
    let mut straddled = 0;
    for i in 0..iterations {
        let key = CacheKey::new("item").part(i % 16);
        let (read_tx, read_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (wait_read, store_after) = (i % 4 == 2 || i % 4 == 0, i % 4 == 0);
        let reader = {
            let (cache, key, db) = (cache.clone(), key.clone(), db.clone());
            tokio::spawn(async move {
                let ticket = cache.ticket();
                let version = db.load(Ordering::SeqCst);
                let _ = read_tx.send(());
                if store_after {
                    let _ = go_rx.await;
                }
                for _ in 0..i % 5 {
                    tokio::task::yield_now().await;
                }
                store(&cache, ticket, key, Loaded::new(version).tag("items"));
                version
            })
        };
        if wait_read {
            read_rx.await.unwrap();
        }
        for _ in 0..i % 3 {
            tokio::task::yield_now().await;
        }
        let version = db.fetch_add(1, Ordering::SeqCst) + 1;
        invalidate(&cache, &key);
        let _ = go_tx.send(());
        if cache.get(&key).is_some_and(|v| v < version) {
            stale_reads += 1;
        }
        if reader.await.unwrap() < version {
            straddled += 1;
        }
        if cache.get(&key).is_some_and(|v| v < version) {
            stale_reads += 1;
        }
    }
    (stale_reads, straddled)
}

fn insert_since(cache: &Cache<CacheKey, u64>, ticket: Ticket, key: CacheKey, loaded: Loaded<u64>) {
    cache.insert_since(ticket, key, loaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_since_racing_tag_invalidation_never_serves_stale() {
    let (stale, straddled) = race_by_hand(10_000, insert_since, |cache, _| {
        cache.invalidate_tag("items")
    })
    .await;
    assert_eq!(stale, 0);
    assert!(straddled >= 5_000, "{straddled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_since_racing_key_invalidation_never_serves_stale() {
    let (stale, straddled) = race_by_hand(10_000, insert_since, |cache, key| {
        cache.invalidate(key);
    })
    .await;
    assert_eq!(stale, 0);
    assert!(straddled >= 5_000, "{straddled}");
}

/// The same race with a plain `insert_with` (what the response cache did): stale reads, so the races above
/// do exercise the hole `insert_since` closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_insert_after_a_read_is_the_race() {
    fn insert_with(cache: &Cache<CacheKey, u64>, _: Ticket, key: CacheKey, loaded: Loaded<u64>) {
        cache.insert_with(key, loaded);
    }
    let (stale, _) = race_by_hand(400, insert_with, |cache, _| cache.invalidate_tag("items")).await;
    assert!(stale >= 100, "{stale}");
    let (stale, _) = race_by_hand(400, insert_with, |cache, key| {
        cache.invalidate(key);
    })
    .await;
    assert!(stale >= 100, "{stale}");
}
