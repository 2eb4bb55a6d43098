//! Single flight: one load per cold key, and loaders that fail, panic or are cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use perfscope::cache::{Cache, CacheStatus, LoadError, Loaded};
use tokio::time::timeout;

use crate::{builder, quiet_deliberate_panics};

const NO_HANG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_of_a_cold_key_run_the_loader_once() {
    let cache: Cache<String, u64> = builder().build().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, loads, start) = (cache.clone(), loads.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .try_get_or_compute_entry(&"cold".to_owned(), move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(42)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let fetched = timeout(NO_HANG, task).await.unwrap().unwrap();
        assert_eq!(fetched.value, 42);
        statuses.push(fetched.status);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(
        statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
        1
    );
    let stats = cache.stats();
    assert_eq!(stats.loads, 1);
    // One miss ran the loader; the others waited for it (coalesced) or came after it (hits).
    assert_eq!(stats.misses, 1, "{stats:?}");
    assert_eq!(stats.hits + stats.misses + stats.coalesced, 1000);
    assert!(stats.coalesced >= 1, "{stats:?}");
}

/// Twenty cold callers at once: one load, nineteen coalesced waiters, one miss, and a hit ratio that counts
/// neither the waiters nor the load as hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_wait_for_a_load_are_coalesced_not_misses() {
    let cache: Cache<String, u64> = builder().build().unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .get_or_compute(&"cold".to_owned(), || async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        7
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(timeout(NO_HANG, task).await.unwrap().unwrap(), 7);
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.loads, stats.misses, stats.coalesced, stats.hits),
        (1, 1, 19, 0),
        "{stats:?}"
    );
    assert_eq!(stats.hit_ratio, 0.0);
    let _ = cache.get(&"cold".to_owned());
    let _ = cache
        .get_or_compute(&"cold".to_owned(), || async { 8 })
        .await;
    let ratio = cache.stats().hit_ratio;
    assert!(
        (ratio - 2.0 / 3.0).abs() < 1e-9,
        "two hits against the one miss: {ratio}"
    );
}

#[tokio::test]
async fn a_panicking_loader_is_an_error_for_its_caller_and_the_next_call_loads() {
    quiet_deliberate_panics();
    let cache: Cache<u32, u32> = builder().build().unwrap();
    let err = cache
        .get_or_compute(&1, || async {
            if true {
                panic!("deliberate: loader exploded");
            }
            0
        })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert!(err.to_string().contains("loader exploded"), "{err}");
    // A panic in the call itself, before any future exists.
    let err = cache
        .get_or_compute(&1, || -> std::future::Ready<u32> {
            panic!("deliberate: in the call")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Panicked(ref m) if m.contains("in the call")));
    assert_eq!(cache.get_or_compute(&1, || async { 5 }).await.unwrap(), 5);
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_failures), (3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_a_panicking_loader_load_for_themselves() {
    quiet_deliberate_panics();
    let cache: Cache<u32, u32> = builder().build().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let first = {
        let (cache, loads) = (cache.clone(), loads.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(&1, move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if true {
                        panic!("deliberate: after a while");
                    }
                    0_u32
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute(&1, move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        7
                    })
                    .await
            })
        })
        .collect();
    assert!(timeout(NO_HANG, first).await.unwrap().unwrap().is_err());
    for waiter in waiters {
        assert_eq!(timeout(NO_HANG, waiter).await.unwrap().unwrap().unwrap(), 7);
    }
    // The panicking load, then one waiter's load; the others got its value.
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_cancelled_loader_lets_the_next_caller_load() {
    let cache: Cache<u32, u32> = builder().build().unwrap();
    // The caller gives up (its future is dropped) while the loader hangs.
    let gave_up = timeout(
        Duration::from_millis(20),
        cache.get_or_compute(&1, std::future::pending::<u32>),
    )
    .await;
    assert!(gave_up.is_err());
    let value = timeout(NO_HANG, cache.get_or_compute(&1, || async { 3 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_a_cancelled_loader_take_over() {
    let cache: Cache<u32, u32> = builder().build().unwrap();
    let hanging = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_compute(&1, std::future::pending::<u32>).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_compute(&1, || async { 9 }).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    hanging.abort();
    assert_eq!(timeout(NO_HANG, waiter).await.unwrap().unwrap().unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_loader_never_deadlocks_its_waiters() {
    let cache: Cache<u32, u32> = builder().build().unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .try_get_or_compute(&1, move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Err::<u32, String>("database down".into())
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let err = timeout(NO_HANG, task).await.unwrap().unwrap().unwrap_err();
        assert_eq!(err.inner().map(String::as_str), Some("database down"));
    }
    // Errors are not cached: every caller tried (one at a time).
    assert_eq!(loads.load(Ordering::SeqCst), 50);
    assert_eq!(cache.stats().load_failures, 50);
    assert_eq!(cache.get_or_compute(&1, || async { 1 }).await.unwrap(), 1);
}

#[tokio::test]
async fn no_store_answers_without_caching() {
    let cache: Cache<u32, u32> = builder().build().unwrap();
    let v = cache
        .get_or_compute(&1, || async { perfscope::cache::Loaded::new(5).no_store() })
        .await
        .unwrap();
    assert_eq!(v, 5);
    assert_eq!(cache.get(&1), None);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn size_bound_evicts() {
    let cache: Cache<u32, u32> = builder().max_entries(100).build().unwrap();
    for i in 0..1000 {
        cache.insert(i, i);
    }
    assert!(cache.len() <= 100, "{}", cache.len());
    let stats = cache.stats();
    assert!(stats.evictions.size >= 900, "{:?}", stats.evictions);
    assert_eq!(stats.max_entries, Some(100));
}

#[test]
fn overwriting_a_key_is_not_an_eviction() {
    let cache: Cache<u32, u32> = builder().max_entries(1000).build().unwrap();
    for round in 0..5 {
        for i in 0..100 {
            cache.insert(i, round);
        }
    }
    assert_eq!(cache.len(), 100);
    assert_eq!(cache.stats().evictions.size, 0);
}

#[test]
fn insert_since_over_a_lighter_value_keeps_the_weight_bound() {
    let bound = 64 << 10;
    let cache: Cache<u32, Vec<u8>> = builder()
        .max_weight(bound)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .build()
        .unwrap();
    for i in 0..200 {
        cache.insert(i, vec![0; 100]);
    }
    // Overwriting with values that fit: in place, no eviction.
    for i in 0..200 {
        assert!(cache.insert_since(cache.ticket(), i, Loaded::new(vec![1; 50])));
    }
    assert!(cache.stats().weighted_bytes <= bound);
    // Heavier values go through the table's admission, which evicts to make room...
    for i in 0..200 {
        cache.insert_since(cache.ticket(), i, Loaded::new(vec![2; 2000]));
    }
    let stats = cache.stats();
    assert!(stats.weighted_bytes <= bound, "{}", stats.weighted_bytes);
    assert!(stats.evictions.size > 0);
    // ...and refuses one heavier than the whole bound.
    cache.insert_since(cache.ticket(), 0, Loaded::new(vec![3; 2 * bound as usize]));
    assert!(cache.get(&0).is_none_or(|v| v.len() < bound as usize));
    assert!(cache.stats().weighted_bytes <= bound);
}
