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

#[test]
fn memory_is_bounded_and_given_back() {
    weight_bound_holds_the_heap();
    tags_and_expired_entries_give_memory_back();
}
