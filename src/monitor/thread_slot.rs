//! Gives each live recording thread a small slot number of its own, so it can own one shard of every histogram.
//!
//! This is process-wide bookkeeping of threads, not measured data: every [`Perfscope`](crate::Perfscope) handle
//! keeps its own histograms, and only the shard index comes from here. A slot is returned when its thread exits,
//! so a pool that starts and stops threads (tokio's blocking pool) reuses slots instead of running out.

use std::cell::Cell;

use parking_lot::Mutex;

/// Number of slots that own a shard; threads past this share one shard with atomic adds.
pub(crate) const OWNED_SLOTS: usize = 16;

/// Slots not held by a live thread, and the next never-used slot.
static FREE: Mutex<(Vec<usize>, usize)> = Mutex::new((Vec::new(), 0));

const UNASSIGNED: usize = usize::MAX;
const NONE_LEFT: usize = usize::MAX - 1;

/// Returns the thread's slot to the free list when the thread exits.
struct SlotGuard(Cell<usize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let slot = self.0.get();
        if slot < OWNED_SLOTS {
            FREE.lock().0.push(slot);
        }
    }
}

thread_local! {
    static SLOT: SlotGuard = const { SlotGuard(Cell::new(UNASSIGNED)) };
}

fn assign() -> usize {
    let mut free = FREE.lock();
    if let Some(slot) = free.0.pop() {
        return slot;
    }
    if free.1 < OWNED_SLOTS {
        free.1 += 1;
        return free.1 - 1;
    }
    NONE_LEFT
}

/// The current thread's owned slot, or `None` when every slot is held by another live thread.
#[inline]
pub(crate) fn current() -> Option<usize> {
    SLOT.try_with(|guard| {
        let mut slot = guard.0.get();
        if slot == UNASSIGNED {
            slot = assign();
            guard.0.set(slot);
        }
        slot
    })
    .ok()
    .filter(|&slot| slot < OWNED_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_slot_and_live_threads_never_share_one() {
        let mine = current();
        assert_eq!(mine, current());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let slot = current();
                    barrier.wait();
                    slot
                })
            })
            .collect();
        let slots: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let owned: Vec<_> = slots.iter().flatten().chain(mine.iter()).collect();
        let mut unique = owned.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            owned.len(),
            "two live threads shared a slot: {slots:?}"
        );
    }
}
