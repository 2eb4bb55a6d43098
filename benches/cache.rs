//! Cost of the application cache, each figure beside its baselines in the same run. Keys are `String`s
//! (`product-42`: no `:`, so no implicit prefix tag and no namespace), looked up by `&str`; values are `u64`.
//!
//! - `get_hit/*`: a hit on one of 10,000 entries: raw `quick_cache::sync::Cache::get`, the same plus one read
//!   of each candidate clock (`std::time::Instant`, `tokio::time::Instant`, `quanta::Clock`), `moka::sync::Cache::get`
//!   (with a TTL), and perfscope's `Cache::get` without TTL, with a TTL, with a TTL and two tags, and with a
//!   TTL, two tags and a namespaced key (`product:42`: one more implicit tag and per-namespace counters).
//! - `insert/*`: overwriting one of 10,000 entries (the key `String` is cloned for every insert, by every
//!   cache): raw quick_cache, moka (TTL), perfscope (plain; TTL and two tags; the same with a ticket and
//!   `insert_since`).
//! - `mix_2_threads/*`: two threads, 90% hits / 10% inserts on 10,000 keys: raw quick_cache, moka (TTL),
//!   perfscope (plain; TTL and two tags).
//! - `invalidate_1pct/{10k,100k,1m}/*`: invalidating the 1% of the entries that carry a tag: perfscope's
//!   `invalidate_tag` (O(1)), raw quick_cache `retain` (a scan), moka `invalidate_entries_if` followed by
//!   `run_pending_tasks` (the invalidation is only done then).
//! - `response_cache/*`: an axum route serving a page of 20 products, uncached against a `ResponseCacheLayer` hit.
//!
//! Nothing here pauses tokio's clock, so every cache reads the real clock. Run:
//! `CARGO_TARGET_DIR=~/.cache/perfscope/target cargo bench --bench cache`. Results and the machine:
//! `docs/cache.md` ("Performance") and `docs/benchmarks.md`.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/threads.rs"]
mod threads;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perfscope::cache::{Cache, Loaded};
use threads::concurrent;

const KEYS: usize = 10_000;
const TTL: Duration = Duration::from_secs(3600);

/// The keys, built once: every lookup borrows one as `&str`.
fn keys(prefix: &str) -> Arc<Vec<String>> {
    Arc::new((0..KEYS).map(|k| format!("{prefix}{k}")).collect())
}

/// A small deterministic sequence of key indexes.
struct Seq(u64);

impl Seq {
    #[inline]
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % KEYS as u64) as usize
    }
}

fn raw_quick_cache(keys: &[String]) -> Arc<quick_cache::sync::Cache<String, u64>> {
    let cache = quick_cache::sync::Cache::new(100_000);
    for (i, k) in keys.iter().enumerate() {
        cache.insert(k.clone(), i as u64);
    }
    Arc::new(cache)
}

fn moka(keys: &[String]) -> moka::sync::Cache<String, u64> {
    let cache = moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(TTL)
        .build();
    for (i, k) in keys.iter().enumerate() {
        cache.insert(k.clone(), i as u64);
    }
    cache.run_pending_tasks();
    cache
}

fn tags_of(i: usize) -> [String; 2] {
    [format!("group:{}", i % 100), "all".to_owned()]
}

fn perfscope(keys: &[String], ttl: bool, tags: bool) -> Cache<String, u64> {
    let mut builder = Cache::builder()
        .max_entries(100_000)
        .sweep_interval(Duration::ZERO);
    if ttl {
        builder = builder.ttl(TTL);
    }
    let cache = builder.build().unwrap();
    for (i, k) in keys.iter().enumerate() {
        if tags {
            cache.insert_with_tags(k.clone(), i as u64, tags_of(i));
        } else {
            cache.insert(k.clone(), i as u64);
        }
    }
    cache
}

fn bench_get(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_hit");
    group.throughput(Throughput::Elements(1));
    let keys = keys("product-");
    let raw = raw_quick_cache(&keys);
    let mut seq = Seq(0x9E37_79B9);
    group.bench_function("quick_cache", |b| {
        b.iter(|| black_box(raw.get(keys[seq.next()].as_str())))
    });
    group.bench_function("quick_cache_plus_std_instant", |b| {
        b.iter(|| {
            let value = raw.get(keys[seq.next()].as_str());
            black_box((value, Instant::now()))
        })
    });
    // With tokio's `test-util` on (it is, through the dev-dependencies) this checks whether a clock was ever
    // paused in the process before it reads std's clock.
    group.bench_function("quick_cache_plus_tokio_instant", |b| {
        b.iter(|| {
            let value = raw.get(keys[seq.next()].as_str());
            black_box((value, tokio::time::Instant::now()))
        })
    });
    let quanta = quanta::Clock::new();
    group.bench_function("quick_cache_plus_quanta", |b| {
        b.iter(|| {
            let value = raw.get(keys[seq.next()].as_str());
            black_box((value, quanta.now()))
        })
    });
    let moka = moka(&keys);
    group.bench_function("moka_ttl", |b| {
        b.iter(|| black_box(moka.get(keys[seq.next()].as_str())))
    });
    for (name, ttl, tags) in [
        ("perfscope_no_ttl_0_tags", false, false),
        ("perfscope_ttl_0_tags", true, false),
        ("perfscope_ttl_2_tags", true, true),
    ] {
        let cache = perfscope(&keys, ttl, tags);
        group.bench_function(name, |b| {
            b.iter(|| black_box(cache.get_borrowed(keys[seq.next()].as_str())))
        });
    }
    let namespaced = keys_with_namespace();
    let cache = perfscope(&namespaced, true, true);
    group.bench_function("perfscope_ttl_2_tags_namespaced_key", |b| {
        b.iter(|| black_box(cache.get_borrowed(namespaced[seq.next()].as_str())))
    });
    group.finish();
}

fn keys_with_namespace() -> Arc<Vec<String>> {
    keys("product:")
}

fn bench_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(1));
    let keys = keys("product-");
    let raw = raw_quick_cache(&keys);
    let mut seq = Seq(0x1234_5678);
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            let i = seq.next();
            raw.insert(keys[i].clone(), i as u64)
        })
    });
    let moka = moka(&keys);
    group.bench_function("moka_ttl", |b| {
        b.iter(|| {
            let i = seq.next();
            moka.insert(keys[i].clone(), i as u64)
        })
    });
    let plain = perfscope(&keys, false, false);
    group.bench_function("perfscope_no_ttl_0_tags", |b| {
        b.iter(|| {
            let i = seq.next();
            plain.insert(keys[i].clone(), i as u64)
        })
    });
    let tagged = perfscope(&keys, true, true);
    group.bench_function("perfscope_ttl_2_tags", |b| {
        b.iter(|| {
            let i = seq.next();
            tagged.insert_with_tags(keys[i].clone(), i as u64, ["group:7", "all"])
        })
    });
    group.bench_function("perfscope_insert_since_ttl_2_tags", |b| {
        b.iter(|| {
            let i = seq.next();
            let ticket = tagged.ticket();
            tagged.insert_since(
                ticket,
                keys[i].clone(),
                Loaded::new(i as u64).tags(["group:7", "all"]),
            )
        })
    });
    group.finish();
}

/// 90% reads, 10% writes, keys spread over the 10,000 entries.
#[inline]
fn mix_key(t: u64, i: u64) -> (usize, bool) {
    let x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t.wrapping_mul(0xBF58_476D_1CE4_E5B9)) >> 17;
    ((x % KEYS as u64) as usize, x.is_multiple_of(10))
}

fn bench_mix(c: &mut Criterion) {
    let mut group = c.benchmark_group("mix_2_threads");
    group.throughput(Throughput::Elements(2));
    let keys = keys("product-");
    let raw = raw_quick_cache(&keys);
    group.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| {
            concurrent(2, iters, |t| {
                let (raw, keys) = (raw.clone(), keys.clone());
                move |i| {
                    let (k, write) = mix_key(t, i);
                    if write {
                        raw.insert(keys[k].clone(), i);
                    } else {
                        black_box(raw.get(keys[k].as_str()));
                    }
                }
            })
        })
    });
    let moka = moka(&keys);
    group.bench_function("moka_ttl", |b| {
        b.iter_custom(|iters| {
            concurrent(2, iters, |t| {
                let (moka, keys) = (moka.clone(), keys.clone());
                move |i| {
                    let (k, write) = mix_key(t, i);
                    if write {
                        moka.insert(keys[k].clone(), i);
                    } else {
                        black_box(moka.get(keys[k].as_str()));
                    }
                }
            })
        })
    });
    for (name, ttl, tags) in [
        ("perfscope_no_ttl_0_tags", false, false),
        ("perfscope_ttl_2_tags", true, true),
    ] {
        let cache = perfscope(&keys, ttl, tags);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                concurrent(2, iters, |t| {
                    let (cache, keys) = (cache.clone(), keys.clone());
                    move |i| {
                        let (k, write) = mix_key(t, i);
                        if write {
                            if tags {
                                cache.insert_with_tags(keys[k].clone(), i, ["group:7", "all"]);
                            } else {
                                cache.insert(keys[k].clone(), i);
                            }
                        } else {
                            black_box(cache.get_borrowed(keys[k].as_str()));
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
        let key = |k: u64| format!("product-{k}");

        let cache: Cache<String, u64> = Cache::builder()
            .max_entries(n * 2)
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap();
        for k in 0..n {
            cache.insert_with_tags(key(k), k, [if hot(k) { "hot" } else { "cold" }]);
        }
        group.bench_function(BenchmarkId::new("perfscope_invalidate_tag", n), |b| {
            b.iter(|| cache.invalidate_tag(black_box("hot")))
        });
        drop(cache);

        let raw: quick_cache::sync::Cache<String, (u64, bool)> =
            quick_cache::sync::Cache::new(n as usize * 2);
        for k in 0..n {
            raw.insert(key(k), (k, hot(k)));
        }
        group.bench_function(BenchmarkId::new("quick_cache_retain", n), |b| {
            b.iter(|| raw.retain(|_, v| !v.1))
        });
        drop(raw);

        let moka: moka::sync::Cache<String, (u64, bool)> = moka::sync::Cache::builder()
            .max_capacity(n * 2)
            .support_invalidation_closures()
            .build();
        for k in 0..n {
            moka.insert(key(k), (k, hot(k)));
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
