//! TTL (with and without jitter), stale-while-revalidate and fail-safe, on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use perfscope::cache::{Cache, CacheClock, CacheStatus, Loaded, MockClock};
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

/// With a mock clock and the system's clock left alone: every key, each with its own jittered deadline, is
/// returned by every read path up to the last nanosecond before its deadline and by none from that nanosecond on,
/// and the mock clock alone decides (the test never sleeps and no tokio clock is paused).
#[test]
fn with_a_mock_clock_no_expired_entry_is_ever_returned() {
    let time = MockClock::new();
    let ttl = Duration::from_secs(60);
    let cache: Cache<String, u32> = builder()
        .ttl(ttl)
        .ttl_jitter(0.1)
        .jitter_seed(3)
        .clock(CacheClock::mock(&time))
        .build()
        .unwrap();
    let keys = 200_u32;
    for i in 0..keys {
        cache.insert_with_tags(format!("k{i}"), i, ["t"]);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Walk the jitter window in 1 ms steps: once a key misses, no read path may return it again.
    let mut expired_at = vec![None; keys as usize];
    let step = Duration::from_millis(1);
    time.advance(ttl.mul_f64(0.9) - step);
    while time.elapsed() <= ttl.mul_f64(1.1) + step {
        for i in 0..keys {
            let key = format!("k{i}");
            let plain = cache.get_borrowed(key.as_str());
            let owned = cache.get(&key);
            let fetched = runtime
                .block_on(cache.try_get_or_compute_entry(&key, || async { Err::<u32, ()>(()) }));
            match expired_at[i as usize] {
                None if plain.is_some() => {
                    assert_eq!((plain, owned), (Some(i), Some(i)));
                    let fetched = fetched.unwrap();
                    assert_eq!(fetched.status, CacheStatus::Hit);
                    assert_eq!(fetched.age, time.elapsed());
                }
                None => {
                    assert!(owned.is_none() && fetched.is_err(), "key {i}");
                    expired_at[i as usize] = Some(time.elapsed());
                }
                Some(at) => assert!(
                    plain.is_none() && owned.is_none() && fetched.is_err(),
                    "key {i} expired at {at:?} and was returned at {:?}",
                    time.elapsed()
                ),
            }
        }
        time.advance(step);
    }
    let times: Vec<Duration> = expired_at.iter().map(|t| t.unwrap()).collect();
    assert!(
        times
            .iter()
            .all(|t| *t >= ttl.mul_f64(0.9) && *t <= ttl.mul_f64(1.1) + step)
    );
    assert_eq!(cache.stats().evictions.expired, u64::from(keys));

    // To the nanosecond: a value written now with a 1.5 s TTL (no jitter) is there 1 ns before and gone at it.
    let exact: Cache<&'static str, u32> = builder().clock(CacheClock::mock(&time)).build().unwrap();
    exact.insert_with("a", Loaded::new(1).ttl(Duration::from_millis(1500)));
    time.advance(Duration::from_millis(1500) - NS);
    assert_eq!(exact.get(&"a"), Some(1));
    time.advance(NS);
    assert_eq!(exact.get(&"a"), None);
}
