//! Cost of the second level (feature `redis`), each figure beside its baseline in the same run. The value is a
//! typical ERP record: a product with ten fields (strings, numbers, a flag, an option) and a `Vec` of 20 lines.
//!
//! - `l1_hit/*`: `get_or_compute` answered from L1, on one of 10,000 entries: the cache alone, the same cache
//!   with the second level on an in-process store, and (with `REDIS_URL`) on Redis. An L1 hit never touches
//!   L2, so the three should cost the same (target: on within 10% of off).
//! - `l2_hit/*` (needs `REDIS_URL`): an L1 miss answered from Redis (the entry read alone, as on a node whose
//!   bus vouches for the versions; the envelope checked, the value decoded and put into L1), against a raw
//!   redis-rs `GET` of the same bytes on a `ConnectionManager` of its own (target: within 1.3×), the same `GET`
//!   followed by the decode (a cache written by hand), and the four-key `MGET` a lookup makes while its bus is
//!   unverified. Values: the product itself, and the product behind an `Arc`.
//! - `codec/*`: the default codec (postcard) encoding and decoding the product; its size is printed. The
//!   comparison with bincode and rmp-serde was measured apart (see `docs/second-level.md`, "Codec").
//! - After the criterion groups (needs `REDIS_URL`): the invalidation fan-out on loopback, two nodes in one
//!   process, 2,000 trials: time from `invalidate_tag` returning on A to B's L1 missing, p50/p99/max.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379/ scripts/cpu-awake cargo bench --all-features --bench second_level`.
//! Results and the machine: `docs/benchmarks.md`. `PERFSCOPE_L2_COUNT=variant:n` (`get`, `get_and_decode`,
//! `l2_hit`, `l2_hit_arc`) runs `n` operations of one variant after the set-up, for callgrind
//! (`valgrind --tool=callgrind --toggle-collect='*counted_ops*'`: the total divided by `n`).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures_util::FutureExt;
use perfscope::cache::l2::{Codec, L2Backend, MemoryLevel, Postcard, RedisLevel, SecondLevel};
use perfscope::cache::{Cache, CacheStatus, Loaded};
use serde::{Deserialize, Serialize};

const KEYS: usize = 10_000;
/// Rounds and operations per round of the interleaved L2 measurement.
const ROUNDS: usize = 31;
const PER_ROUND: u32 = 2_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    sku: String,
    name: String,
    description: String,
    category: String,
    price_cents: i64,
    stock: u32,
    active: bool,
    supplier_id: Option<u64>,
    lines: Vec<Line>,
}

fn product(id: u64) -> Product {
    Product {
        id,
        sku: format!("SKU-{id:06}"),
        name: format!("Widget {id}"),
        description: "A sturdy widget for general use, zinc plated, sold per unit.".to_owned(),
        category: "hardware/fasteners".to_owned(),
        price_cents: 1299 + id as i64,
        stock: 420,
        active: true,
        supplier_id: Some(17),
        lines: (0..20)
            .map(|i| Line {
                sku: format!("PART-{i:04}"),
                quantity: 1 + i,
                unit_price_cents: 250 * i64::from(i + 1),
            })
            .collect(),
    }
}

fn key(i: usize) -> String {
    format!("product:{i}")
}

/// A level whose bus stays healthy while criterion pauses between groups (nothing drives the runtime then).
fn level(backend: impl L2Backend, prefix: &str) -> SecondLevel {
    SecondLevel::builder(backend)
        .prefix(prefix)
        .heartbeat(Duration::from_secs(5), Duration::from_secs(300))
        .build()
        .unwrap()
}

fn cache<V>(level: Option<&SecondLevel>, max_entries: u64, name: &str) -> Cache<String, V>
where
    V: Clone + Send + Sync + Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut builder = Cache::builder()
        .name(name)
        .max_entries(max_entries)
        .ttl(Duration::from_secs(3600))
        .sweep_interval(Duration::ZERO);
    if let Some(level) = level {
        builder = builder.second_level(level.clone());
    }
    builder.build().unwrap()
}

/// `get_or_compute` on keys that are all in L1: completes on its first poll.
fn bench_l1_hit(c: &mut Criterion, runtime: &tokio::runtime::Runtime, redis: Option<&str>) {
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("l1_hit");
    group.throughput(Throughput::Elements(1));
    let memory = level(MemoryLevel::new(), "bench-l1:");
    let on_redis = redis.map(|url| level(RedisLevel::open(url).unwrap(), "bench-l1:"));
    let mut variants = vec![
        ("l2_off", cache(None, 100_000, "products")),
        ("l2_on_memory", cache(Some(&memory), 100_000, "products")),
    ];
    if let Some(l) = &on_redis {
        variants.push(("l2_on_redis", cache(Some(l), 100_000, "products")));
    }
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    for (_, cache) in &variants {
        for (i, k) in keys.iter().enumerate() {
            cache.insert_with(k.clone(), Loaded::new(product(i as u64)).tag("products"));
        }
    }
    for (name, cache) in &variants {
        let mut i = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                let fetched = cache
                    .try_get_or_compute(&keys[i], || async { Err::<Product, ()>(()) })
                    .now_or_never();
                black_box(fetched)
            })
        });
    }
    // The same with `u64` values, where the hit path itself (not the clone of the product) is what is timed.
    let small: Vec<(&str, Cache<String, u64>)> = vec![
        ("u64_l2_off", small_cache(None)),
        ("u64_l2_on_memory", small_cache(Some(&memory))),
    ];
    for (name, cache) in &small {
        for (i, k) in keys.iter().enumerate() {
            cache.insert_with(k.clone(), Loaded::new(i as u64).tag("products"));
        }
        let mut i = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7919) % KEYS;
                let fetched = cache
                    .try_get_or_compute(&keys[i], || async { Err::<u64, ()>(()) })
                    .now_or_never();
                black_box(fetched)
            })
        });
    }
    group.finish();
}

fn small_cache(level: Option<&SecondLevel>) -> Cache<String, u64> {
    let mut builder = Cache::builder()
        .name("numbers")
        .max_entries(100_000)
        .ttl(Duration::from_secs(3600))
        .sweep_interval(Duration::ZERO);
    if let Some(level) = level {
        builder = builder.second_level(level.clone());
    }
    builder.build().unwrap()
}

/// A product shared behind an `Arc`, as values that are costly to clone are usually cached (the L1 copies a
/// value for each caller, and its single flight keeps one more copy for the callers that waited).
type SharedProduct = Arc<Product>;

/// Fills L2 with every key through `writer` (a cache named `name` on `writer_level`), then reads each once
/// through `reader`, so the versions of their tags are known (as on a node that has been serving).
fn fill_l2<V>(
    runtime: &tokio::runtime::Runtime,
    writer_level: &SecondLevel,
    writer: &Cache<String, V>,
    reader: &Cache<String, V>,
    value: fn(Product) -> V,
) where
    V: Clone + Send + Sync + 'static,
{
    runtime.block_on(async {
        let before = writer_level.stats().writes;
        for i in 0..KEYS {
            writer
                .get_or_compute(&key(i), move || async move {
                    Loaded::new(value(product(i as u64))).tag("products")
                })
                .await
                .unwrap();
        }
        while writer_level.stats().writes < before + KEYS as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for i in 0..KEYS {
            let fetched = reader
                .try_get_or_compute_entry(&key(i), || async { Err::<V, ()>(()) })
                .await
                .unwrap();
            assert_eq!(fetched.status, CacheStatus::SecondLevelHit);
        }
    });
}

/// An L1 miss served from Redis against a raw `GET` of the same entry (and the same `GET` followed by the
/// decode of the value, what a cache written by hand on redis-rs does).
///
/// With `count` (`PERFSCOPE_L2_COUNT=variant:n`), runs only `n` operations of one variant after the set-up, for
/// callgrind: the difference between two counts, divided by the difference of `n`, is the instructions of one.
fn bench_l2_hit(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    url: &str,
    count: Option<(&str, usize)>,
) {
    let prefix = format!("bench-l2-{}:", std::process::id());
    let (writer, reader) = runtime.block_on(async {
        let writer = level(RedisLevel::open(url).unwrap(), &prefix);
        let reader = level(RedisLevel::open(url).unwrap(), &prefix);
        while !(writer.is_verified() && reader.is_verified()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (writer, reader)
    });
    let _guard = runtime.enter();
    // A tiny L1 on the reading side: almost every read of 10,000 keys misses it.
    let (a, b) = (
        cache(Some(&writer), 100_000, "products"),
        cache(Some(&reader), 16, "products"),
    );
    fill_l2(runtime, &writer, &a, &b, |p| p);
    let (a_shared, b_shared) = (
        cache(Some(&writer), 100_000, "shared_products"),
        cache(Some(&reader), 16, "shared_products"),
    );
    fill_l2(runtime, &writer, &a_shared, &b_shared, Arc::new);
    let raw = runtime.block_on(async {
        let client = redis::Client::open(url).unwrap();
        redis::aio::ConnectionManager::new(client).await.unwrap()
    });
    let entry_keys: Vec<String> = (0..KEYS)
        .map(|i| format!("{prefix}products:e:{}", key(i)))
        .collect();
    let keys: Vec<String> = (0..KEYS).map(key).collect();
    let get = |i: usize| -> Vec<u8> {
        let mut connection = raw.clone();
        let key = &entry_keys[i];
        runtime.block_on(async move {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await
                .unwrap()
        })
    };
    let entry = get(0);
    let mut payload = Vec::new();
    Codec::<Product>::encode(&Postcard, &product(0), &mut payload).unwrap();
    let header = entry.len() - payload.len();
    println!(
        "l2_hit: the entry of one product is {} bytes (envelope {header}, postcard payload {})",
        entry.len(),
        entry.len() - header
    );
    let get_and_decode = |i: usize| -> Product {
        let bytes = get(i);
        Codec::<Product>::decode(&Postcard, &bytes[header..]).unwrap()
    };
    let l2_hit = |i: usize| -> Product {
        runtime
            .block_on(b.try_get_or_compute(&keys[i], || async { Err::<Product, ()>(()) }))
            .unwrap()
    };
    let l2_hit_shared = |i: usize| -> SharedProduct {
        runtime
            .block_on(
                b_shared.try_get_or_compute(&keys[i], || async { Err::<SharedProduct, ()>(()) }),
            )
            .unwrap()
    };

    let mut i = 0;
    let mut next = move || {
        i = (i + 7919) % KEYS;
        i
    };
    if let Some((variant, n)) = count {
        let mut op: Box<dyn FnMut(usize)> = match variant {
            "get" => Box::new(|i| drop(black_box(get(i)))),
            "get_and_decode" => Box::new(|i| drop(black_box(get_and_decode(i)))),
            "l2_hit" => Box::new(|i| drop(black_box(l2_hit(i)))),
            "l2_hit_arc" => Box::new(|i| drop(black_box(l2_hit_shared(i)))),
            other => panic!("PERFSCOPE_L2_COUNT: unknown variant {other:?}"),
        };
        counted_ops(n, &mut next, &mut *op);
        return;
    }
    let mut group = c.benchmark_group("l2_hit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("redis_rs_get", |bencher| {
        bencher.iter(|| black_box(get(next())))
    });
    group.bench_function("redis_rs_get_and_decode", |bencher| {
        bencher.iter(|| black_box(get_and_decode(next())))
    });
    // What a lookup reads when its node's bus is not vouching for the versions: the entry and three versions
    // in one round trip.
    let version_keys = [
        format!("{prefix}products:k:{}", key(0)),
        format!("{prefix}products:clear"),
        format!("{prefix}gen"),
    ];
    group.bench_function("redis_rs_mget_4", |bencher| {
        bencher.iter(|| {
            let mut connection = raw.clone();
            let key = &entry_keys[next()];
            let reply: Vec<Option<Vec<u8>>> = runtime.block_on(async {
                redis::cmd("MGET")
                    .arg(key)
                    .arg(&version_keys[..])
                    .query_async(&mut connection)
                    .await
                    .unwrap()
            });
            black_box(reply)
        })
    });
    let before = reader.stats();
    group.bench_function("perfscope_l2_hit", |bencher| {
        bencher.iter(|| black_box(l2_hit(next())))
    });
    group.bench_function("perfscope_l2_hit_arc", |bencher| {
        bencher.iter(|| black_box(l2_hit_shared(next())))
    });
    group.finish();
    // The VM's noise moves single criterion runs by tens of percent: also time the variants interleaved, round
    // by round, and take the median of each round's ratio to the raw `GET` of that round.
    let mut per_op = |op: &mut dyn FnMut(usize)| {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            op(next());
        }
        started.elapsed() / PER_ROUND
    };
    let mut rounds: [Vec<Duration>; 4] = Default::default();
    for _ in 0..ROUNDS {
        rounds[0].push(per_op(&mut |i| drop(black_box(get(i)))));
        rounds[1].push(per_op(&mut |i| drop(black_box(get_and_decode(i)))));
        rounds[2].push(per_op(&mut |i| drop(black_box(l2_hit(i)))));
        rounds[3].push(per_op(&mut |i| drop(black_box(l2_hit_shared(i)))));
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let micros = |d: &Vec<Duration>| median(d.iter().map(|d| d.as_secs_f64() * 1e6).collect());
    let ratio = |variant: usize| {
        median(
            rounds[variant]
                .iter()
                .zip(&rounds[0])
                .map(|(v, raw)| v.as_secs_f64() / raw.as_secs_f64())
                .collect(),
        )
    };
    println!(
        "l2_hit interleaved ({ROUNDS} rounds of {PER_ROUND} each, medians; ratios to the GET of the same round): \
         redis-rs GET {:.1} µs; GET + decode {:.1} µs ({:.2}x); perfscope L2 hit, Product {:.1} µs ({:.2}x); \
         perfscope L2 hit, Arc<Product> {:.1} µs ({:.2}x)",
        micros(&rounds[0]),
        micros(&rounds[1]),
        ratio(1),
        micros(&rounds[2]),
        ratio(2),
        micros(&rounds[3]),
        ratio(3),
    );
    let after = reader.stats();
    let (stats, shared) = (
        b.stats().second_level.unwrap(),
        b_shared.stats().second_level.unwrap(),
    );
    println!(
        "l2_hit: {} L2 hits, {} misses, {} store calls, {} errors, {} timeouts in the run (both caches)",
        stats.hits + shared.hits,
        stats.misses + shared.misses,
        after.calls - before.calls,
        after.errors - before.errors,
        after.timeouts - before.timeouts,
    );
}

/// The operations counted under `PERFSCOPE_L2_COUNT`: callgrind's `--toggle-collect=*counted_ops*` counts
/// this function alone, without the set-up.
#[inline(never)]
fn counted_ops(n: usize, next: &mut dyn FnMut() -> usize, op: &mut dyn FnMut(usize)) {
    for _ in 0..n {
        op(next());
    }
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let value = product(42);
    let mut bytes = Vec::new();
    Postcard.encode(&value, &mut bytes).unwrap();
    println!(
        "codec: postcard encodes the product in {} bytes",
        bytes.len()
    );
    let mut out = Vec::with_capacity(1024);
    group.bench_function("postcard_encode", |b| {
        b.iter(|| {
            out.clear();
            Postcard.encode(black_box(&value), &mut out).unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("postcard_decode", |b| {
        b.iter(|| {
            let back: Product = Postcard.decode(black_box(&bytes)).unwrap();
            black_box(back)
        })
    });
    group.finish();
}

/// Two nodes in one process on Redis: from `invalidate_tag` returning on A to B's L1 missing.
fn fanout(runtime: &tokio::runtime::Runtime, url: &str) {
    const TRIALS: u64 = 2_000;
    let prefix = format!("bench-fanout-{}:", std::process::id());
    let latencies = runtime.block_on(async {
        let la = level(RedisLevel::open(url).unwrap(), &prefix);
        let lb = level(RedisLevel::open(url).unwrap(), &prefix);
        while !(la.is_verified() && lb.is_verified()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let a: Cache<String, u64> = Cache::builder()
            .name("items")
            .invalidation_bus(la.clone())
            .build()
            .unwrap();
        let b: Cache<String, u64> = Cache::builder()
            .name("items")
            .invalidation_bus(lb.clone())
            .build()
            .unwrap();
        let mut latencies = Vec::with_capacity(TRIALS as usize);
        for trial in 0..TRIALS {
            let key = format!("item:{trial}");
            b.insert_with(key.clone(), Loaded::new(trial).tag(format!("tag:{trial}")));
            let started = Instant::now();
            a.invalidate_tag(&format!("tag:{trial}"));
            while b.get(&key).is_some() {
                assert!(started.elapsed() < Duration::from_secs(5), "never arrived");
                tokio::task::yield_now().await;
            }
            latencies.push(started.elapsed());
        }
        latencies
    });
    let mut sorted = latencies;
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    println!(
        "fanout: {TRIALS} invalidate_tag on A -> B's L1 misses, over Redis on loopback: p50 {:?}, p99 {:?}, max {:?}",
        at(0.50),
        at(0.99),
        sorted[sorted.len() - 1],
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let redis = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if redis.is_none() {
        println!(
            "second_level: REDIS_URL is not set: only the in-memory parts run (l1_hit without Redis, codec); \
             set it (e.g. `source scripts/private-redis; start_private_redis`) for l2_hit and the fan-out"
        );
    }
    // One thread drives the client and the caches, as a request task would; the server is the other core.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var("PERFSCOPE_L2_COUNT") {
        let url = redis
            .as_deref()
            .expect("PERFSCOPE_L2_COUNT needs REDIS_URL");
        let (variant, n) = spec
            .split_once(':')
            .and_then(|(variant, n)| Some((variant, n.parse().ok()?)))
            .expect("PERFSCOPE_L2_COUNT=variant:n");
        bench_l2_hit(&mut criterion, &current, url, Some((variant, n)));
        return;
    }
    bench_l1_hit(&mut criterion, &current, redis.as_deref());
    bench_codec(&mut criterion);
    if let Some(url) = redis.as_deref() {
        bench_l2_hit(&mut criterion, &current, url, None);
        // The fan-out needs the subscriber to run while the reader polls: two workers.
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        fanout(&multi, url);
    }
    criterion.final_summary();
}
