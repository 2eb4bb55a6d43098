//! TTL (with and without jitter), stale-while-revalidate and fail-safe, on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use perfscope::cache::{Cache, CacheStatus, Loaded};
use tokio::time::advance;

use crate::builder;

const NS: Duration = Duration::from_nanos(1);

#[tokio::test(start_paused = true)]
async fn an_entry_expires_exactly_at_its_ttl() {
    let cache: Cache<u32, u32> = builder().ttl(Duration::from_secs(10)).build().unwrap();
    cache.insert(1, 1);
    cache.insert_with(2, Loaded::new(2).ttl(Duration::from_millis(1500)));
    advance(Duration::from_millis(1500) - NS).await;
    assert_eq!(cache.get(&2), Some(2));
    advance(NS).await;
    assert_eq!(cache.get(&2), None);
    advance(Duration::from_millis(8500) - NS).await;
    assert_eq!(cache.get(&1), Some(1));
    advance(NS).await;
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.stats().evictions.expired, 2);
}

#[tokio::test(start_paused = true)]
async fn with_jitter_no_entry_is_returned_after_its_own_expiry() {
    let ttl = Duration::from_secs(10);
    let cache: Cache<u32, u32> = builder()
        .ttl(ttl)
        .ttl_jitter(0.2)
        .jitter_seed(42)
        .build()
        .unwrap();
    let keys = 500_u32;
    for i in 0..keys {
        cache.insert(i, i);
    }
    // Step through the jitter window [8 s, 12 s] in 10 ms steps; once a key misses it must never hit again,
    // no key may expire before 8 s or live past 12 s, and the expiries must spread over the window.
    let mut expired_at = vec![None; keys as usize];
    let mut now = Duration::ZERO;
    let step = Duration::from_millis(10);
    advance(Duration::from_secs(8) - step).await;
    now += Duration::from_secs(8) - step;
    while now <= Duration::from_secs(12) {
        for i in 0..keys {
            let hit = cache
                .try_get_or_compute_entry(&i, || async { Err::<u32, ()>(()) })
                .await;
            match (hit, expired_at[i as usize]) {
                (Ok(fetched), None) => {
                    assert_eq!(fetched.status, CacheStatus::Hit);
                    assert!(fetched.age <= ttl.mul_f64(1.2), "{:?}", fetched.age);
                }
                (Ok(_), Some(at)) => {
                    panic!("key {i} expired at {at:?} but was returned at {now:?}")
                }
                (Err(_), None) => expired_at[i as usize] = Some(now),
                (Err(_), Some(_)) => {}
            }
        }
        advance(step).await;
        now += step;
    }
    let times: Vec<Duration> = expired_at.iter().map(|t| t.unwrap()).collect();
    assert!(
        times
            .iter()
            .all(|t| *t >= Duration::from_secs(8) && *t <= Duration::from_secs(12))
    );
    let early = times
        .iter()
        .filter(|t| **t < Duration::from_secs(9))
        .count();
    let late = times
        .iter()
        .filter(|t| **t > Duration::from_secs(11))
        .count();
    assert!(early > 50 && late > 50, "{early} {late}");
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let cache: Cache<u32, u32> = builder()
        .ttl(Duration::from_secs(10))
        .stale_for(Duration::from_secs(5))
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let loader = |loads: Arc<AtomicUsize>| {
        move || async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            loads.fetch_add(1, Ordering::SeqCst) as u32 + 1
        }
    };
    let first = cache
        .try_get_or_compute_entry(&7, {
            let f = loader(loads.clone());
            move || async move { Ok::<_, ()>(f().await) }
        })
        .await
        .unwrap();
    assert_eq!((first.value, first.status), (1, CacheStatus::Miss));
    advance(Duration::from_secs(11)).await;
    // Fresh reads see nothing, get_or_compute sees the stale value and starts one refresh.
    assert_eq!(cache.get(&7), None);
    for _ in 0..10 {
        let fetched = cache
            .try_get_or_compute_entry(&7, {
                let f = loader(loads.clone());
                move || async move { Ok::<_, ()>(f().await) }
            })
            .await
            .unwrap();
        assert_eq!((fetched.value, fetched.status), (1, CacheStatus::Stale));
        assert!(fetched.age >= Duration::from_secs(11));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get(&7), Some(2));
    let stats = cache.stats();
    assert_eq!((stats.stale_hits, stats.refreshes, stats.loads), (10, 1, 2));
    // Past the stale window the value is expired: a plain load.
    advance(Duration::from_secs(16)).await;
    let fetched = cache
        .try_get_or_compute_entry(&7, {
            let f = loader(loads.clone());
            move || async move { Ok::<_, ()>(f().await) }
        })
        .await
        .unwrap();
    assert_eq!((fetched.value, fetched.status), (3, CacheStatus::Miss));
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_fails_keeps_the_stale_value() {
    let cache: Cache<u32, u32> = builder()
        .ttl(Duration::from_secs(1))
        .stale_for(Duration::from_secs(10))
        .build()
        .unwrap();
    cache.insert(1, 10);
    advance(Duration::from_secs(2)).await;
    let fetched = cache
        .try_get_or_compute_entry(&1, || async { Err::<u32, &str>("down") })
        .await
        .unwrap();
    assert_eq!(fetched.status, CacheStatus::Stale);
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    let stats = cache.stats();
    assert_eq!((stats.refreshes, stats.load_failures), (1, 1));
    let again = cache.get_or_compute(&1, || async { 11 }).await.unwrap();
    assert_eq!(again, 10);
}

#[tokio::test(start_paused = true)]
async fn fail_safe_answers_with_an_expired_value_within_its_window_only() {
    crate::quiet_deliberate_panics();
    let cache: Cache<u32, u32> = builder()
        .ttl(Duration::from_secs(1))
        .fail_safe_max(Duration::from_secs(10))
        .build()
        .unwrap();
    cache.insert(1, 10);
    advance(Duration::from_secs(2)).await;
    assert_eq!(
        cache.get(&1),
        None,
        "expired values are not returned by get"
    );
    let fetched = cache
        .try_get_or_compute_entry(&1, || async { Err::<u32, &str>("database down") })
        .await
        .unwrap();
    assert_eq!((fetched.value, fetched.status), (10, CacheStatus::FailSafe));
    // A panicking loader gets the same treatment, and the value is still kept for the next caller.
    let fetched = cache
        .try_get_or_compute_entry(&1, || async {
            if true {
                panic!("deliberate loader panic");
            }
            Ok::<u32, &str>(0)
        })
        .await
        .unwrap();
    assert_eq!(fetched.status, CacheStatus::FailSafe);
    // An invalidated value is never a fallback.
    cache.invalidate(&1);
    cache.insert(2, 20);
    advance(Duration::from_secs(2)).await;
    cache.clear();
    let err = cache
        .try_get_or_compute(&2, || async { Err::<u32, &str>("down") })
        .await
        .unwrap_err();
    assert_eq!(err.inner(), Some(&"down"));
    // Past the fail-safe window: the error.
    cache.insert(3, 30);
    advance(Duration::from_secs(12)).await;
    assert!(
        cache
            .try_get_or_compute(&3, || async { Err::<u32, &str>("down") })
            .await
            .is_err()
    );
    // A successful load replaces the kept value.
    cache.insert(4, 40);
    advance(Duration::from_secs(2)).await;
    assert_eq!(cache.get_or_compute(&4, || async { 41 }).await.unwrap(), 41);
    assert_eq!(cache.get(&4), Some(41));
    assert_eq!(cache.stats().fail_safe_hits, 2);
}

#[tokio::test(start_paused = true)]
async fn per_entry_ttl_and_stale_window_override_the_defaults() {
    let cache: Cache<u32, u32> = builder().ttl(Duration::from_secs(100)).build().unwrap();
    let v = cache
        .get_or_compute(&1, || async {
            Loaded::new(1)
                .ttl(Duration::from_secs(1))
                .stale_for(Duration::from_secs(1))
        })
        .await
        .unwrap();
    assert_eq!(v, 1);
    advance(Duration::from_millis(1500)).await;
    let fetched = cache
        .try_get_or_compute_entry(&1, || async { Ok::<_, ()>(2) })
        .await
        .unwrap();
    assert_eq!(fetched.status, CacheStatus::Stale);
    // The background refresh stores its value with the cache's default TTL (its loader chose none).
    tokio::task::yield_now().await;
    assert_eq!(cache.get(&1), Some(2));
    advance(Duration::from_secs(100) - NS).await;
    assert_eq!(cache.get(&1), Some(2));
    advance(NS).await;
    let fetched = cache
        .try_get_or_compute_entry(&1, || async { Ok::<_, ()>(3) })
        .await
        .unwrap();
    assert_eq!((fetched.value, fetched.status), (3, CacheStatus::Miss));
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_frees_expired_entries_and_stops_with_the_cache() {
    let runtime = tokio::runtime::Handle::current();
    let tasks_before = runtime.metrics().num_alive_tasks();
    let cache: Cache<u32, u32> = perfscope::cache::Cache::builder()
        .ttl(Duration::from_secs(1))
        .sweep_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..100 {
        cache.insert(i, i);
    }
    assert_eq!(runtime.metrics().num_alive_tasks(), tasks_before + 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // The sweep runs on the blocking pool; give it a moment of real time.
    for _ in 0..100 {
        if cache.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cache.len(), 0);
    assert!(cache.stats().sweeps >= 1);
    drop(cache);
    tokio::task::yield_now().await;
    for _ in 0..100 {
        if runtime.metrics().num_alive_tasks() == tasks_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runtime.metrics().num_alive_tasks(), tasks_before);
}
