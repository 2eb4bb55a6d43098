//! Cost of the application cache, each figure beside its baselines in the same run.
//!
//! - `get_hit/*`: a hit on one of 10,000 `u64 -> u64` entries: raw `quick_cache::sync::Cache::get`, the same plus
//!   one `tokio::time::Instant::now()` (the least any exact-TTL cache on quick_cache pays; the clock perfscope
//!   reads) and with one `std::time::Instant::now()`, `moka::sync::Cache::get` (with a TTL), and perfscope's
//!   `Cache::get` without TTL, with a TTL, and with a TTL and two tags.
//! - `insert/*`: overwriting one of 10,000 entries: raw quick_cache, moka, perfscope (plain; TTL and two tags;
//!   the same with a ticket and `insert_since`).
//! - `mix_2_threads/*`: two threads, 90% hits / 10% inserts on 10,000 keys: raw quick_cache, perfscope.
//! - `invalidate_1pct/{10k,100k,1m}/*`: invalidating the 1% of the entries that carry a tag: perfscope's
//!   `invalidate_tag` (O(1)), raw quick_cache `retain` (a scan), moka `invalidate_entries_if` followed by
//!   `run_pending_tasks` (the invalidation is only done then).
//! - `response_cache/*`: an axum route serving a page of 20 products, uncached against a `ResponseCacheLayer` hit.
//!
//! Run: `CARGO_TARGET_DIR=/root/.cache/perfscope/target-bench cargo bench --bench cache` (a target directory of
//! its own, so release builds do not evict the test builds). Results and the machine: `docs/cache.md`.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/threads.rs"]
mod threads;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perfscope::cache::{Cache, Loaded};
use threads::concurrent;

const KEYS: u64 = 10_000;

/// A small deterministic sequence of keys.
struct Keys(u64);

impl Keys {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn raw_quick_cache() -> Arc<quick_cache::sync::Cache<u64, u64>> {
    let cache = quick_cache::sync::Cache::new(100_000);
    for k in 0..KEYS {
        cache.insert(k, k);
    }
    Arc::new(cache)
}

fn perfscope(ttl: bool, tags: bool) -> Cache<u64, u64> {
    let mut builder = Cache::builder()
        .max_entries(100_000)
        .sweep_interval(Duration::ZERO);
    if ttl {
        builder = builder.ttl(Duration::from_secs(3600));
    }
    let cache = builder.build().unwrap();
    for k in 0..KEYS {
        if tags {
            cache.insert_with_tags(k, k, [format!("group:{}", k % 100), "all".to_owned()]);
        } else {
            cache.insert(k, k);
        }
    }
    cache
}

fn bench_get(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_hit");
    group.throughput(Throughput::Elements(1));
    let raw = raw_quick_cache();
    let mut keys = Keys(0x9E37_79B9);
    group.bench_function("quick_cache", |b| {
        b.iter(|| black_box(raw.get(&(keys.next() % KEYS))))
    });
    group.bench_function("quick_cache_plus_instant_now", |b| {
        b.iter(|| {
            let value = raw.get(&(keys.next() % KEYS));
            black_box((value, tokio::time::Instant::now()))
        })
    });
    // tokio's clock reads std's unless tokio's `test-util` is on (it is in benches, through the dev-dependencies):
    // the difference is what checking for a paused test clock costs.
    group.bench_function("quick_cache_plus_std_instant_now", |b| {
        b.iter(|| {
            let value = raw.get(&(keys.next() % KEYS));
            black_box((value, Instant::now()))
        })
    });
    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(3600))
        .build();
    for k in 0..KEYS {
        moka.insert(k, k);
    }
    group.bench_function("moka_ttl", |b| {
        b.iter(|| black_box(moka.get(&(keys.next() % KEYS))))
    });
    for (name, ttl, tags) in [
        ("perfscope_no_ttl_0_tags", false, false),
        ("perfscope_ttl_0_tags", true, false),
        ("perfscope_ttl_2_tags", true, true),
    ] {
        let cache = perfscope(ttl, tags);
        group.bench_function(name, |b| {
            b.iter(|| black_box(cache.get(&(keys.next() % KEYS))))
        });
    }
    group.finish();
}

fn bench_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(1));
    let raw = raw_quick_cache();
    let mut keys = Keys(0x1234_5678);
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            let k = keys.next() % KEYS;
            raw.insert(k, k)
        })
    });
    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(Duration::from_secs(3600))
        .build();
    group.bench_function("moka_ttl", |b| {
        b.iter(|| {
            let k = keys.next() % KEYS;
            moka.insert(k, k)
        })
    });
    let plain = perfscope(false, false);
    group.bench_function("perfscope_no_ttl_0_tags", |b| {
        b.iter(|| {
            let k = keys.next() % KEYS;
            plain.insert(k, k)
        })
    });
    let tagged = perfscope(true, true);
    group.bench_function("perfscope_ttl_2_tags", |b| {
        b.iter(|| {
            let k = keys.next() % KEYS;
            tagged.insert_with_tags(k, k, ["group:7", "all"])
        })
    });
    group.bench_function("perfscope_insert_since_ttl_2_tags", |b| {
        b.iter(|| {
            let k = keys.next() % KEYS;
            let ticket = tagged.ticket();
            tagged.insert_since(ticket, k, Loaded::new(k).tags(["group:7", "all"]))
        })
    });
    group.finish();
}

/// 90% reads, 10% writes, keys spread over the 10,000 entries.
#[inline]
fn mix_key(t: u64, i: u64) -> (u64, bool) {
    let x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t.wrapping_mul(0xBF58_476D_1CE4_E5B9)) >> 17;
    (x % KEYS, x.is_multiple_of(10))
}

fn bench_mix(c: &mut Criterion) {
    let mut group = c.benchmark_group("mix_2_threads");
    group.throughput(Throughput::Elements(2));
    let raw = raw_quick_cache();
    group.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| {
            concurrent(2, iters, |t| {
                let raw = raw.clone();
                move |i| {
                    let (k, write) = mix_key(t, i);
                    if write {
                        raw.insert(k, i);
                    } else {
                        black_box(raw.get(&k));
                    }
                }
            })
        })
    });
    for (name, ttl, tags) in [
        ("perfscope_no_ttl_0_tags", false, false),
        ("perfscope_ttl_2_tags", true, true),
    ] {
        let cache = perfscope(ttl, tags);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                concurrent(2, iters, |t| {
                    let cache = cache.clone();
                    move |i| {
                        let (k, write) = mix_key(t, i);
                        if write {
                            if tags {
                                cache.insert_with_tags(k, i, ["group:7", "all"]);
                            } else {
                                cache.insert(k, i);
                            }
                        } else {
                            black_box(cache.get(&k));
                        }
                    }
                })
            })
        });
    }
    group.finish();
}

fn bench_invalidate(c: &mut Criterion) {
    for (label, n) in [("10k", 10_000_u64), ("100k", 100_000), ("1m", 1_000_000)] {
        let mut group = c.benchmark_group(format!("invalidate_1pct/{label}"));
        group.sample_size(10);
        let hot = |k: u64| k.is_multiple_of(100);

        let cache: Cache<u64, u64> = Cache::builder()
            .max_entries(n * 2)
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap();
        for k in 0..n {
            if hot(k) {
                cache.insert_with_tags(k, k, ["hot"]);
            } else {
                cache.insert_with_tags(k, k, ["cold"]);
            }
        }
        group.bench_function(BenchmarkId::new("perfscope_invalidate_tag", n), |b| {
            b.iter(|| cache.invalidate_tag(black_box("hot")))
        });
        drop(cache);

        let raw: quick_cache::sync::Cache<u64, (u64, bool)> =
            quick_cache::sync::Cache::new(n as usize * 2);
        for k in 0..n {
            raw.insert(k, (k, hot(k)));
        }
        group.bench_function(BenchmarkId::new("quick_cache_retain", n), |b| {
            b.iter(|| raw.retain(|_, v| !v.1))
        });
        drop(raw);

        let moka: moka::sync::Cache<u64, (u64, bool)> = moka::sync::Cache::builder()
            .max_capacity(n * 2)
            .support_invalidation_closures()
            .build();
        for k in 0..n {
            moka.insert(k, (k, hot(k)));
        }
        moka.run_pending_tasks();
        group.bench_function(
            BenchmarkId::new("moka_invalidate_entries_if_and_run_pending_tasks", n),
            |b| {
                b.iter(|| {
                    moka.invalidate_entries_if(|_, v| v.1).unwrap();
                    moka.run_pending_tasks();
                })
            },
        );
        group.finish();
    }
}

/// A response-cache hit against the same handler uncached: an axum route whose handler serializes a page of
/// 20 products (about 2 KiB of JSON), requests in-process with `oneshot`, body read to the end.
fn bench_response_cache(c: &mut Criterion) {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use perfscope::cache::http::ResponseCacheLayer;
    use tower::ServiceExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handler = || async {
        let items: Vec<_> = (0..20)
            .map(|id| serde_json::json!({"id": id, "name": format!("Paracetamol 500mg x{id}"), "price_cents": 399 + id}))
            .collect();
        axum::Json(serde_json::json!({"items": items, "page": 1, "per_page": 20}))
    };
    let uncached: Router = Router::new()
        .route("/api/products", get(handler))
        .with_state(());
    let layer = ResponseCacheLayer::builder()
        .default_ttl(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let cached: Router = Router::new()
        .route("/api/products", get(handler))
        .layer(layer)
        .with_state(());
    let mut group = c.benchmark_group("response_cache");
    group.throughput(Throughput::Elements(1));
    for (name, app) in [("uncached_handler", uncached), ("hit", cached)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = http::Request::get("/api/products?page=1")
                        .body(Body::empty())
                        .unwrap();
                    let response = app.clone().oneshot(request).await.unwrap();
                    black_box(
                        axum::body::to_bytes(response.into_body(), usize::MAX)
                            .await
                            .unwrap(),
                    );
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_get, bench_insert, bench_mix, bench_invalidate, bench_response_cache
}
criterion_main!(benches);
