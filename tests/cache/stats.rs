//! Statistics: counters, namespaces, and the request context's cache counters.

use std::time::Duration;

use perfscope::cache::{Cache, CacheKey};
use perfscope::{MethodLabel, RequestContext, RequestId};
use tokio::time::Instant;

use crate::builder;

fn request() -> RequestContext {
    RequestContext::new(RequestId::generate(0), MethodLabel::Get, Instant::now(), 0)
}

#[tokio::test(start_paused = true)]
async fn hits_and_misses_reach_the_current_request() {
    let cache: Cache<CacheKey, u32> = builder().build().unwrap();
    let ctx = request();
    ctx.clone()
        .scope(async {
            let key = CacheKey::new("product").part(1);
            assert_eq!(cache.get(&key), None);
            let v = cache
                .get_or_compute(&key, || async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    5
                })
                .await
                .unwrap();
            assert_eq!(v, 5);
            assert_eq!(cache.get(&key), Some(5));
            assert_eq!(cache.get_or_compute(&key, || async { 6 }).await.unwrap(), 5);
        })
        .await;
    let counters = ctx.counters();
    assert_eq!((counters.cache_hits, counters.cache_misses), (2, 2));
    assert_eq!(counters.cache_time, Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_counts_everything_per_namespace() {
    let cache: Cache<CacheKey, u32> = builder().name("catalog").max_namespaces(2).build().unwrap();
    let product = |id: u32| CacheKey::new("product").part(id);
    for id in 0..10 {
        cache
            .get_or_compute(&product(id), move || async move {
                tokio::time::sleep(Duration::from_millis(u64::from(id) + 1)).await;
                id
            })
            .await
            .unwrap();
    }
    for id in 0..10 {
        assert_eq!(cache.get(&product(id)), Some(id));
    }
    cache.insert(CacheKey::new("order").part(1), 1);
    cache.insert(CacheKey::new("customer").part(1), 1);
    cache.insert(CacheKey::new("invoice").part(1), 1);
    assert_eq!(cache.get(&CacheKey::new("order").part(2)), None);
    cache.invalidate(&product(0));
    cache.run_pending_tasks();

    let stats = cache.stats();
    assert_eq!(stats.name, "catalog");
    assert_eq!((stats.hits, stats.misses, stats.loads), (10, 11, 10));
    assert!((stats.hit_ratio - 10.0 / 21.0).abs() < 1e-9);
    assert_eq!(stats.entries, 12);
    assert_eq!(stats.evictions.explicit, 1);
    assert_eq!(stats.load_time.count, 10);
    assert!(
        (stats.load_time_sum_secs - 0.055).abs() < 1e-6,
        "{}",
        stats.load_time_sum_secs
    );
    assert!(stats.load_time.max_ms >= 10.0);
    assert_eq!(stats.load_time_buckets.last().unwrap().count, 10);
    assert_eq!(stats.invalidations.keys, 1);
    assert_eq!(stats.sweeps, 1);
    assert!(stats.weighted_bytes > 0);
    assert_eq!(stats.tags.interned, 4, "one prefix tag per namespace");
    let names: Vec<&str> = stats
        .namespaces
        .iter()
        .map(|n| n.namespace.as_str())
        .collect();
    assert_eq!(names, ["product", "order", "<other>"]);
    let products = &stats.namespaces[0];
    assert_eq!(
        (products.hits, products.misses, products.loads),
        (10, 10, 10)
    );
    assert_eq!((products.entries, products.evictions.explicit), (9, 1));
    assert!(products.weighted_bytes > 0);
    assert_eq!(stats.namespaces[1].misses, 1);
    assert_eq!(stats.namespaces[2].entries, 2);
    assert!(stats.namespace_overflow >= 2);
    // The snapshot serializes (for the JSON export).
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["name"], "catalog");
    assert_eq!(json["namespaces"][0]["namespace"], "product");
}

#[test]
fn weighted_bytes_follow_the_weigher() {
    let cache: Cache<u32, Vec<u8>> = builder()
        .max_weight(1 << 20)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .build()
        .unwrap();
    cache.insert(1, vec![0; 1000]);
    let one = cache.stats().weighted_bytes;
    assert!((1000..1300).contains(&one), "{one}");
    cache.insert(2, vec![0; 3000]);
    let two = cache.stats().weighted_bytes;
    assert!((4000..4600).contains(&two), "{two}");
    assert_eq!(cache.stats().max_weight_bytes, Some(1 << 20));
}

/// Without a weigher an entry still weighs its key, its value's inline size and the cache's bookkeeping, and the
/// namespaces' entries add up to the total, with no sweep run.
#[test]
fn a_cache_without_a_weigher_reports_its_weight_and_namespace_entries_now() {
    let cache: Cache<CacheKey, u64> = builder().build().unwrap();
    for id in 0..30_u64 {
        let namespace = ["product", "customer", "quotation"][id as usize % 3];
        cache.insert(CacheKey::new(namespace).part(id), id);
    }
    let stats = cache.stats();
    assert_eq!(stats.sweeps, 0);
    assert_eq!(stats.entries, 30);
    let per_entry = stats.weighted_bytes / 30;
    // The docs: the key, the entry's metadata (about 100 bytes) and the table's overhead.
    assert!(
        (100..400).contains(&per_entry),
        "{per_entry} bytes per entry"
    );
    let entries: u64 = stats.namespaces.iter().map(|n| n.entries).sum();
    assert_eq!(entries, stats.entries, "{:?}", stats.namespaces);
    let bytes: u64 = stats.namespaces.iter().map(|n| n.weighted_bytes).sum();
    assert_eq!(bytes, stats.weighted_bytes);
    cache.invalidate(&CacheKey::new("product").part(0_u64));
    let stats = cache.stats();
    assert_eq!(stats.namespaces[0].entries, 9);
    assert_eq!(stats.entries, 29);
}

#[test]
fn a_namespace_function_for_other_keys() {
    let cache: Cache<(&'static str, u32), u32> = builder()
        .namespace(|key: &(&'static str, u32)| key.0)
        .build()
        .unwrap();
    cache.insert(("users", 1), 1);
    assert_eq!(cache.get(&("users", 1)), Some(1));
    assert_eq!(cache.get(&("roles", 1)), None);
    let stats = cache.stats();
    let names: Vec<(&str, u64, u64)> = stats
        .namespaces
        .iter()
        .map(|n| (n.namespace.as_str(), n.hits, n.misses))
        .collect();
    assert_eq!(names, [("users", 1, 0), ("roles", 0, 1)]);
}
