//! Timing work that several threads do at once, shared by the bench binaries.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Runs on each of `threads` threads, released together, the closure `make(thread)` builds, `iters` times with
/// the iteration number; returns the wall time of the slowest thread. Per-thread state lives in the closure.
pub(crate) fn concurrent<M, F>(threads: u64, iters: u64, make: M) -> Duration
where
    M: Fn(u64) -> F,
    F: FnMut(u64) + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let barrier = barrier.clone();
            let mut op = make(thread);
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters {
                    op(i);
                }
                start.elapsed()
            })
        })
        .collect();
    barrier.wait();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or_default()
}
