//! A counting global allocator: how many bytes each request allocates (feature `alloc`).
//!
//! [`CountingAllocator`] wraps another allocator ([`System`] by default) and adds every allocation's size to a
//! counter of the allocating thread. The application installs it once, with `#[global_allocator]`; the monitor
//! then reads the counter before and after each poll of a request's future (and of its response body) and
//! charges the difference to that request. Per route, the snapshot gets the distribution of bytes allocated per
//! request ([`RouteStats::allocated_bytes`](crate::RouteStats::allocated_bytes)), `Server-Timing` gets an `alloc`
//! entry when timing headers are on, and a request above
//! [`allocation_warning_threshold`](crate::PerfscopeBuilder::allocation_warning_threshold) (default 64 MiB) is
//! logged, rate-limited.
//!
//! ```standalone_crate
//! use perfscope::alloc::CountingAllocator;
//!
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator::system();
//!
//! // Any code can measure itself too:
//! let (buffer, bytes) = perfscope::alloc::measure(|| vec![0u8; 4096]);
//! assert!(bytes >= 4096);
//! # drop(buffer);
//! ```
//!
//! Another allocator is wrapped the same way: `CountingAllocator::new(mimalloc::MiMalloc)`.
//!
//! # What is counted
//! Bytes *allocated*: each `alloc` counts its size, a `realloc` that grows counts the growth (a vector that
//! doubles up to 1 MiB counts about 1 MiB, not the sum of its steps). Frees are counted apart
//! ([`thread_freed_bytes`]) and never subtracted, so a request that allocates and frees 1 MiB ten times shows
//! 10 MiB: the figure measures allocator traffic, the cost the request puts on the allocator and the caches, not
//! its peak.
//!
//! A request is charged what its own task allocates while the monitor polls it: the handler and the layers
//! inside the monitor, up to the end of the response body. Work on other threads is not charged to it: tasks it
//! spawns, `spawn_blocking`, sqlx's SQLite worker thread. `Server-Timing` is written with the response headers,
//! so its `alloc` entry leaves out what the body allocates while it streams; the route's statistics include it.
//!
//! # Cost
//! Per allocation: one relaxed load of a static flag and one add to a `const`-initialized thread-local, on
//! top of the wrapped allocator: 11 instructions per allocation and free together, about 3% of a small request
//! through the monitor (`docs/benchmarks.md`). Per request: two thread-local reads per poll and one atomic add
//! when the poll allocated, about 130 instructions. Without the feature, none of this code is compiled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    // `const`-initialized `Cell<u64>`s have no destructor: access is a plain thread-local load and store, never
    // allocates, and works during thread teardown.
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static FREED: Cell<u64> = const { Cell::new(0) };
}

/// Set by the first allocation through any [`CountingAllocator`].
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A [`GlobalAlloc`] that forwards to `A` and counts, per thread, the bytes allocated and freed.
///
/// Install it with `#[global_allocator]` (see the [module docs](self)). It never allocates itself and never
/// panics.
pub struct CountingAllocator<A = System> {
    inner: A,
}

impl CountingAllocator<System> {
    /// Counts the allocations of the system allocator.
    pub const fn system() -> Self {
        CountingAllocator { inner: System }
    }
}

impl<A> CountingAllocator<A> {
    /// Counts the allocations of `inner`.
    pub const fn new(inner: A) -> Self {
        CountingAllocator { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

impl Default for CountingAllocator<System> {
    fn default() -> Self {
        Self::system()
    }
}

impl<A> fmt::Debug for CountingAllocator<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingAllocator").finish_non_exhaustive()
    }
}

#[inline(always)]
fn allocated(bytes: usize) {
    if !INSTALLED.load(Ordering::Relaxed) {
        INSTALLED.store(true, Ordering::Relaxed);
    }
    // `try_with` fails only after the thread-local is destroyed, which a destructor-less cell never is; the
    // count of a thread that is going away would not matter anyway.
    let _ = ALLOCATED.try_with(|count| count.set(count.get().wrapping_add(bytes as u64)));
}

#[inline(always)]
fn freed(bytes: usize) {
    let _ = FREED.try_with(|count| count.set(count.get().wrapping_add(bytes as u64)));
}

// The crate denies `unsafe_code`; implementing `GlobalAlloc` needs it, and this impl is the only exception.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `inner` with the caller's arguments unchanged and returns its result, so
// `inner`'s guarantees (alignment, size, ownership of blocks) are the caller's; the counting touches only
// destructor-less thread-locals and an atomic flag, which neither allocate nor unwind.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract (non-zero size), which is `inner`'s.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            allocated(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`; forwarding keeps `inner`'s zeroing (calloc) instead of the default's memset.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            allocated(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator, hence by `inner`, with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        freed(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator (so by `inner`) with `layout`, and
        // that `new_size` is valid for `layout`'s alignment.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let old = layout.size();
            if new_size >= old {
                allocated(new_size - old);
            } else {
                freed(old - new_size);
            }
        }
        new
    }
}

/// Whether a [`CountingAllocator`] has allocated in this process, that is, whether it is the global allocator
/// (nothing else calls it). The monitor charges allocations to requests only then.
#[inline]
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Bytes the current thread has allocated through the [`CountingAllocator`] since it started (a wrapping
/// counter: subtract two readings with `wrapping_sub`). Always 0 when the allocator is not installed.
#[inline]
pub fn thread_allocated_bytes() -> u64 {
    ALLOCATED.try_with(Cell::get).unwrap_or(0)
}

/// Bytes the current thread has freed through the [`CountingAllocator`] since it started, including blocks
/// other threads allocated (a wrapping counter). Always 0 when the allocator is not installed.
#[inline]
pub fn thread_freed_bytes() -> u64 {
    FREED.try_with(Cell::get).unwrap_or(0)
}

/// Runs `f` and returns its result with the bytes it allocated on this thread (0 when the allocator is not
/// installed).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = thread_allocated_bytes();
    let result = f();
    (result, thread_allocated_bytes().wrapping_sub(before))
}
