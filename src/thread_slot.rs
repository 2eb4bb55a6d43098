//! Gives each live thread that records a small stripe number of its own, so histograms and counters (of the
//! monitor and of caches) are written without contention: the stripe's owner is its only writer.
//!
//! This is process-wide bookkeeping of threads, not measured data: every monitor and every cache keeps its own
//! counters, and only the stripe index comes from here. A stripe is returned when its thread exits,
//! so a pool that starts and stops threads (tokio's blocking pool) reuses stripes instead of running out. Threads
//! past [`OWNED`] share one stripe, written with atomic adds.

use std::cell::Cell;

use parking_lot::Mutex;

/// Number of stripes owned by one thread each; the stripe at index `OWNED` is shared by the others.
pub(crate) const OWNED: usize = 16;

/// Stripes not held by a live thread, and the next never-used stripe.
static FREE: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

const UNASSIGNED: usize = usize::MAX;

/// Returns the thread's stripe to the free list when the thread exits.
struct Guard(Cell<usize>);

impl Drop for Guard {
    fn drop(&mut self) {
        let stripe = self.0.get();
        if stripe < OWNED {
            FREE.lock().0.push(stripe);
        }
    }
}

thread_local! {
    /// Read on every statistics write: no destructor, so access is a plain thread-local load.
    static STRIPE: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Touched once per thread, to return the stripe at thread exit.
    static GUARD: Guard = const { Guard(Cell::new(UNASSIGNED)) };
}

fn assign() -> usize {
    let mut free = FREE.lock();
    if let Some(stripe) = free.0.pop() {
        return stripe;
    }
    if free.1 < OWNED {
        free.1 += 1;
        return free.1 - 1;
    }
    OWNED
}

/// The current thread's stripe: below [`OWNED`] when this thread is its only writer, `OWNED` when shared.
#[inline]
pub(crate) fn current() -> usize {
    let stripe = STRIPE.get();
    if stripe == UNASSIGNED {
        first_use()
    } else {
        stripe
    }
}

#[cold]
fn first_use() -> usize {
    // A thread being torn down cannot register a guard: it shares.
    let Ok(stripe) = GUARD.try_with(|guard| {
        let stripe = assign();
        guard.0.set(stripe);
        stripe
    }) else {
        return OWNED;
    };
    STRIPE.set(stripe);
    stripe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_never_share_an_owned_stripe() {
        let mine = current();
        assert_eq!(mine, current());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let stripe = current();
                    barrier.wait();
                    stripe
                })
            })
            .collect();
        let mut owned: Vec<usize> = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .chain([mine])
            .filter(|&s| s < OWNED)
            .collect();
        let before = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(owned.len(), before);
    }
}
