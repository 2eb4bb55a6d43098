//! Memory bounds of the cache, measured by a counting global allocator.
//!
//! The allocator counts every thread, so this binary holds a single test that runs the checks one after the
//! other: nothing else allocates meanwhile, whatever `--test-threads` says.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use perfscope::cache::Cache;

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

#[allow(unsafe_code)]
// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged; the counting is
// one atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

const MIB: u64 = 1 << 20;

/// 1,000,000 inserts of 1 KiB values from 4 threads through a 64 MiB bound: the weight stays within the bound
/// and the cache's heap within 1.5× of it.
fn weight_bound_holds_the_heap() {
    let bound = 64 * MIB;
    let baseline = live();
    let cache: Cache<u64, Bytes> = Cache::builder()
        .max_weight(bound)
        .weigher(|_, value: &Bytes| value.len() as u64)
        .sweep_interval(Duration::ZERO)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4_u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for i in 0..250_000_u64 {
                    let key = t * 250_000 + i;
                    cache.insert(key, Bytes::from(vec![key as u8; 1024]));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    cache.run_pending_tasks();
    let stats = cache.stats();
    let heap = (live() - baseline) as f64;
    let factor = heap / bound as f64;
    println!(
        "weight bound: {} entries, weighted {:.1} MiB of {} MiB, heap {:.1} MiB = {factor:.3}x the bound, {} size evictions",
        stats.entries,
        stats.weighted_bytes as f64 / MIB as f64,
        bound / MIB,
        heap / MIB as f64,
        stats.evictions.size,
    );
    assert!(stats.weighted_bytes <= bound, "{}", stats.weighted_bytes);
    assert!(stats.entries > 40_000, "{}", stats.entries);
    assert!(factor <= 1.5, "heap is {factor:.3}x the bound");
    drop(cache);
}

/// 1,000,000 inserts across 100,000 tags with a 1 s TTL: after expiry and a sweep, the entries and the tag
/// table are gone and the heap is back within 10% of what it was with the empty cache.
fn tags_and_expired_entries_give_memory_back() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_entries(100_000)
            .initial_capacity(100_000)
            .ttl(Duration::from_secs(1))
            .sweep_interval(Duration::ZERO)
            .build()
            .unwrap();
        let baseline = live();
        for i in 0..1_000_000_u64 {
            cache.insert_with_tags(i, i, [format!("tag:{}", i % 100_000)]);
        }
        let peak = live();
        let stats = cache.stats();
        let peak_interned = stats.tags.interned;
        assert!(peak_interned <= stats.tags.max_tags);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.run_pending_tasks();
        let after = live();
        let stats = cache.stats();
        println!(
            "tags: baseline {:.1} MiB, after 1,000,000 inserts {:.1} MiB ({peak_interned} names interned, {} inserts overflowed), after expiry and a sweep {:.1} MiB ({:+.2}%), {} names freed",
            baseline as f64 / MIB as f64,
            peak as f64 / MIB as f64,
            stats.tags.overflowed,
            after as f64 / MIB as f64,
            (after - baseline) as f64 * 100.0 / baseline as f64,
            stats.tags.reclaimed,
        );
        assert_eq!(stats.entries, 0);
        assert_eq!(stats.tags.interned, 0);
        assert!(peak - baseline > 2 * MIB as i64, "the tag table should have grown");
        assert!(
            ((after - baseline).abs() as f64) < baseline as f64 * 0.10,
            "heap {after} vs baseline {baseline}"
        );
    });
}

/// 1,000,000 distinct tags invalidated by another node reach B over the bus (B's real subscription on an
/// in-process store; the messages are what A's invalidations publish): B's L1 tag table stays within its cap,
/// and B's heap stops growing once its bounded tables (the remembered tag versions, `version_cache`) are full.
#[cfg(feature = "redis")]
fn fleet_tag_invalidations_leave_memory_bounded() {
    use perfscope::cache::l2::{L2Backend, MemoryLevel, SecondLevel};

    const TAGS: u64 = 1_000_000;
    const MAX_TAGS: usize = 10_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = MemoryLevel::new();
        let prefix = "mem:";
        let lb = SecondLevel::builder(store.clone())
            .prefix(prefix)
            .build()
            .unwrap();
        while !lb.is_verified() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let b: Cache<String, u64> = Cache::builder()
            .name("items")
            .max_entries(50_000)
            .max_tags(MAX_TAGS)
            .sweep_interval(Duration::ZERO)
            .invalidation_bus(lb.clone())
            .build()
            .unwrap();
        // B serves entries under twice as many tags as its table holds: the table is full before any message.
        for i in 0..(2 * MAX_TAGS) as u64 {
            b.insert_with_tags(format!("item:{i}"), i, [format!("tag:{i}")]);
        }
        let channel = format!("{prefix}bus");
        let node = 0xa11ce_u64;
        let mut sent = 0_u64;
        let mut feed = async |upto: u64| {
            while sent < upto {
                sent += 1;
                // What node A's `invalidate_tag("tag:{n}")` publishes: `ps1|node|seq|kind|cache|sent|gen|name`.
                let message = format!("ps1|{node:x}|{sent}|t|items|0|{sent}|tag:{}", sent - 1);
                store.publish(&channel, message.as_bytes()).await.unwrap();
                if sent.is_multiple_of(2_000) {
                    // Keep within the subscription's queue: wait for B to take them.
                    while lb.stats().bus_received < sent {
                        tokio::task::yield_now().await;
                    }
                }
            }
            while lb.stats().bus_received < sent {
                tokio::task::yield_now().await;
            }
        };
        let baseline = live();
        feed(200_000).await;
        let warm = live();
        feed(TAGS).await;
        let end = live();
        let stats = b.stats();
        let level = lb.stats();
        println!(
            "fleet tags: {TAGS} tag invalidations received by B: heap {:+.2} MiB after 200,000, {:+.2} MiB after \
             1,000,000 ({:+.3} MiB over the last 800,000); B's tag table {} of {} names, {} gaps",
            (warm - baseline) as f64 / MIB as f64,
            (end - baseline) as f64 / MIB as f64,
            (end - warm) as f64 / MIB as f64,
            stats.tags.interned,
            stats.tags.max_tags,
            level.bus_gaps,
        );
        assert_eq!(level.bus_received, TAGS);
        assert_eq!(level.bus_gaps, 0, "{level:?}");
        assert!(stats.tags.interned <= MAX_TAGS as u64, "{:?}", stats.tags);
        // Every entry was invalidated (its tag was among the million).
        assert!((0..(2 * MAX_TAGS) as u64).all(|i| b.get(&format!("item:{i}")).is_none()));
        assert!(
            end - warm < 2 * MIB as i64,
            "B's heap grew by {} bytes over the last 800,000 tags",
            end - warm
        );
        assert!(
            end - baseline < 32 * MIB as i64,
            "B's heap grew by {} bytes",
            end - baseline
        );
    });
}

#[test]
fn memory_is_bounded_and_given_back() {
    weight_bound_holds_the_heap();
    tags_and_expired_entries_give_memory_back();
    #[cfg(feature = "redis")]
    fleet_tag_invalidations_leave_memory_bounded();
}
