//! Sliding time windows over a lifetime histogram, by checkpoints.
//!
//! Recording touches only the lifetime counts. Once per slot (10 s) the window keeper diffs the lifetime counts
//! against the previous checkpoint and keeps the non-zero bins of that difference: 30 sparse slots cover five
//! minutes at a few hundred bytes each, where dense per-slot histograms would cost tens of KiB each. A window is
//! then the sum of the slots it spans plus what was recorded since the last checkpoint.
//!
//! Samples recorded since the last checkpoint all belong to one slot, because the first record in a new slot
//! checkpoints first; a sample racing that checkpoint from another thread may be counted one slot early.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::monitor::histogram::{ShardedHistogram, bins_to_histogram};

/// Width of one window slot, in seconds.
pub(crate) const SLOT_SECS: u64 = 10;
/// Slots kept: five minutes.
const SLOTS_KEPT: u64 = 30;

/// The diff of one slot: `(bin, count)` for each non-zero bin.
#[derive(Debug)]
struct SlotDelta {
    slot: u64,
    bins: Vec<(u32, u64)>,
}

#[derive(Debug)]
struct State {
    /// Lifetime bin totals at the last checkpoint (empty until the first one).
    checkpoint: Vec<u64>,
    /// Scratch space for the next totals, kept to avoid allocating on each checkpoint.
    scratch: Vec<u64>,
    /// Closed slots, oldest first.
    deltas: VecDeque<SlotDelta>,
}

/// Sliding windows over one [`ShardedHistogram`].
#[derive(Debug)]
pub(crate) struct Windows {
    /// The slot that samples since the last checkpoint belong to.
    open_slot: AtomicU64,
    state: Mutex<State>,
}

impl Windows {
    pub(crate) fn new(start_slot: u64) -> Self {
        Windows {
            open_slot: AtomicU64::new(start_slot),
            state: Mutex::new(State {
                checkpoint: Vec::new(),
                scratch: Vec::new(),
                deltas: VecDeque::new(),
            }),
        }
    }

    /// Call before recording a sample in `slot`: closes the open slot if time moved on. Cheap when it did not.
    #[inline]
    pub(crate) fn advance(&self, histogram: &ShardedHistogram, slot: u64) {
        if self.open_slot.load(Ordering::Relaxed) < slot {
            self.close_slot(histogram, slot);
        }
    }

    #[cold]
    fn close_slot(&self, histogram: &ShardedHistogram, slot: u64) {
        let mut state = self.state.lock();
        let open = self.open_slot.load(Ordering::Relaxed);
        if open >= slot {
            return; // another thread closed it while we waited
        }
        let len = histogram.layout().len();
        let State {
            checkpoint,
            scratch,
            deltas,
        } = &mut *state;
        checkpoint.resize(len, 0);
        scratch.clear();
        scratch.resize(len, 0);
        histogram.sum_bins_into(scratch);
        // Reuse the buffer of the slot that falls out of the window.
        let mut bins = match deltas.front() {
            Some(oldest) if oldest.slot + SLOTS_KEPT <= slot => {
                deltas.pop_front().map(|d| d.bins).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        bins.clear();
        for (index, (now, before)) in scratch.iter().zip(checkpoint.iter()).enumerate() {
            let added = now.wrapping_sub(*before);
            if added > 0 {
                bins.push((index as u32, added));
            }
        }
        std::mem::swap(checkpoint, scratch);
        if !bins.is_empty() {
            deltas.push_back(SlotDelta { slot: open, bins });
        }
        while deltas
            .front()
            .is_some_and(|oldest| oldest.slot + SLOTS_KEPT <= slot)
        {
            deltas.pop_front();
        }
        self.open_slot.store(slot, Ordering::Relaxed);
    }

    /// The distribution over the last `slots` slots, the current (partial) slot included.
    pub(crate) fn window(
        &self,
        histogram: &ShardedHistogram,
        now_slot: u64,
        slots: u64,
    ) -> Histogram<u64> {
        self.advance(histogram, now_slot);
        let layout = histogram.layout();
        let mut totals = vec![0u64; layout.len()];
        histogram.sum_bins_into(&mut totals);
        let state = self.state.lock();
        let open = self.open_slot.load(Ordering::Relaxed);
        let first = (now_slot + 1).saturating_sub(slots);
        let mut window = vec![0u64; layout.len()];
        if open >= first && !state.checkpoint.is_empty() {
            for (out, (now, before)) in window
                .iter_mut()
                .zip(totals.iter().zip(state.checkpoint.iter()))
            {
                *out = now.wrapping_sub(*before);
            }
        } else if open >= first {
            window.copy_from_slice(&totals);
        }
        for delta in state.deltas.iter().filter(|delta| delta.slot >= first) {
            for &(index, count) in &delta.bins {
                if let Some(out) = window.get_mut(index as usize) {
                    *out += count;
                }
            }
        }
        drop(state);
        bins_to_histogram(layout, window.into_iter().enumerate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::histogram::Layout;

    #[test]
    fn windows_keep_only_recent_slots() {
        let histogram = ShardedHistogram::new(Layout::new(60_000_000, 2));
        let windows = Windows::new(0);
        // 100 samples of 1 ms in slot 0, 10 of 5 ms in slot 3, 1 of 9 ms in slot 20.
        for (slot, value, n) in [(0, 1_000, 100), (3, 5_000, 10), (20, 9_000, 1)] {
            for _ in 0..n {
                windows.advance(&histogram, slot);
                histogram.record(value);
            }
        }
        // At slot 20: the last minute (slots 15..=20) holds only the 9 ms sample.
        let minute = windows.window(&histogram, 20, 6);
        assert_eq!(minute.len(), 1);
        assert_eq!(
            minute.lowest_equivalent(minute.max()),
            minute.lowest_equivalent(9_000)
        );
        // Five minutes hold everything.
        assert_eq!(windows.window(&histogram, 20, 30).len(), 111);
        // At slot 32, slot 0 and slot 3 fell out of the five-minute window... slot 3 is still in (32-29=3).
        assert_eq!(windows.window(&histogram, 32, 30).len(), 11);
        assert_eq!(windows.window(&histogram, 34, 30).len(), 1);
        assert_eq!(windows.window(&histogram, 60, 30).len(), 0);
        // The lifetime keeps all.
        assert_eq!(histogram.totals().0, 111);
    }

    #[test]
    fn an_idle_route_reports_an_empty_window() {
        let histogram = ShardedHistogram::new(Layout::new(60_000_000, 2));
        let windows = Windows::new(0);
        windows.advance(&histogram, 1);
        histogram.record(500);
        assert_eq!(windows.window(&histogram, 1, 6).len(), 1);
        assert_eq!(windows.window(&histogram, 100, 6).len(), 0);
    }
}
