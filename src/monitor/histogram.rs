//! Latency histograms that many threads record into without contention.
//!
//! The layout is HdrHistogram's log-linear bucketing (the same bins as `hdrhistogram::Histogram::new_with_bounds(1,
//! max, digits)`), but the counts live in [`ShardedCounters`]: one shard per recording thread, so nothing is locked,
//! no cache line is contended and nothing is allocated on the record path once a thread's shard exists.
//!
//! Reading merges the shards into an `hdrhistogram::Histogram`, whose quantile code then answers percentiles.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::monitor::counters::ShardedCounters;

/// Bin layout shared by every histogram of one [`Perfscope`](crate::Perfscope) handle.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// log2 of half the sub-bucket count.
    sub_bucket_half_count_magnitude: u32,
    /// `sub_bucket_count - 1`.
    sub_bucket_mask: u64,
    /// Highest value kept as is; larger values are clamped to it.
    highest: u64,
    /// Number of bins.
    len: usize,
    /// Significant digits, kept to build a matching `hdrhistogram::Histogram`.
    digits: u8,
}

impl Layout {
    /// The layout for values from 1 to `highest` (micros) with `digits` significant decimal digits (1 to 5).
    pub fn new(highest: u64, digits: u8) -> Self {
        let digits = digits.clamp(1, 5);
        let largest_single_unit = 2 * 10u64.pow(u32::from(digits));
        // Smallest power of two at or above 2 × 10^digits, as HdrHistogram does.
        let sub_bucket_count_magnitude = 64 - (largest_single_unit - 1).leading_zeros();
        let sub_bucket_half_count_magnitude = sub_bucket_count_magnitude.max(1) - 1;
        let sub_bucket_count = 1u64 << (sub_bucket_half_count_magnitude + 1);
        let highest = highest.max(2 * sub_bucket_count);
        let mut layout = Layout {
            sub_bucket_half_count_magnitude,
            sub_bucket_mask: sub_bucket_count - 1,
            highest,
            len: 0,
            digits,
        };
        layout.len = layout.index_of(highest) + 1;
        layout
    }

    /// Number of bins.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The largest value recorded as is.
    #[cfg(test)]
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// Bin index of `value`, after clamping it into `1..=highest`.
    #[inline]
    pub(crate) fn index_of(&self, value: u64) -> usize {
        let value = value.clamp(1, self.highest);
        let leading_zero_count_base = 64 - self.sub_bucket_half_count_magnitude - 1;
        let bucket_index = leading_zero_count_base - (value | self.sub_bucket_mask).leading_zeros();
        let sub_bucket_index = value >> bucket_index;
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        // Both terms are bounded by the layout, so the sum fits in usize.
        (((u64::from(bucket_index) + 1) << self.sub_bucket_half_count_magnitude) + sub_bucket_index
            - half) as usize
    }

    /// The lowest value that falls into bin `index`.
    pub(crate) fn value_of(&self, index: usize) -> u64 {
        let index = index as u64;
        let half = 1u64 << self.sub_bucket_half_count_magnitude;
        let mut bucket_index = (index >> self.sub_bucket_half_count_magnitude) as i64 - 1;
        let mut sub_bucket_index = (index & (half - 1)) + half;
        if bucket_index < 0 {
            sub_bucket_index -= half;
            bucket_index = 0;
        }
        sub_bucket_index << bucket_index
    }

    /// An empty `hdrhistogram::Histogram` with the same bins, for the read side.
    pub(crate) fn empty_histogram(&self) -> Histogram<u64> {
        Histogram::new_with_bounds(1, self.highest, self.digits)
            .or_else(|_| Histogram::new(self.digits))
            .unwrap_or_else(|_| {
                // PANIC: unreachable: 1..=5 significant digits is always a valid configuration.
                #[allow(clippy::expect_used)]
                Histogram::new(2).expect("2 significant digits is a valid histogram configuration")
            })
    }
}

/// A histogram of microsecond values, sharded per recording thread.
///
/// Counter layout: one counter per bin, then the sample count, the sum and the maximum.
#[derive(Debug)]
pub struct ShardedHistogram {
    layout: Layout,
    counters: ShardedCounters,
    /// Values above the layout's highest value, recorded clamped.
    clamped: AtomicU64,
}

impl ShardedHistogram {
    /// An empty histogram with `layout`.
    pub fn new(layout: Layout) -> Self {
        ShardedHistogram {
            layout,
            counters: ShardedCounters::new(layout.len + 3),
            clamped: AtomicU64::new(0),
        }
    }

    /// Records one value in microseconds; values above the layout's range are clamped and counted.
    #[inline]
    pub fn record(&self, micros: u64) {
        let index = self.layout.index_of(micros);
        if micros > self.layout.highest {
            self.clamped.fetch_add(1, Ordering::Relaxed);
        }
        let shard = self.counters.shard();
        shard.add(index, 1);
        shard.add(self.layout.len, 1);
        shard.add(self.layout.len + 1, micros);
        shard.max(self.layout.len + 2, micros);
    }

    /// Adds every shard's bins into `totals` (one slot per bin).
    pub(crate) fn sum_bins_into(&self, totals: &mut [u64]) {
        let len = self.layout.len.min(totals.len());
        self.counters.sum_into(0, &mut totals[..len]);
    }

    /// Count, sum (micros) and maximum (micros) over all shards.
    pub fn totals(&self) -> (u64, u64, u64) {
        let len = self.layout.len;
        (
            self.counters.sum(len),
            self.counters.sum(len + 1),
            self.counters.max(len + 2),
        )
    }

    /// Number of values that were above the layout's range.
    pub(crate) fn clamped(&self) -> u64 {
        self.clamped.load(Ordering::Relaxed)
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The merged distribution as an `hdrhistogram::Histogram`.
    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut bins = vec![0u64; self.layout.len];
        self.sum_bins_into(&mut bins);
        bins_to_histogram(&self.layout, bins.iter().copied().enumerate())
    }
}

/// Builds an `hdrhistogram::Histogram` from `(bin index, count)` pairs of `layout`.
pub(crate) fn bins_to_histogram(
    layout: &Layout,
    bins: impl Iterator<Item = (usize, u64)>,
) -> Histogram<u64> {
    let mut histogram = layout.empty_histogram();
    for (index, count) in bins {
        if count > 0 {
            // Same bin layout, so the bin's lowest value lands in the same bin; a saturating add cannot fail.
            histogram.saturating_record_n(layout.value_of(index), count);
        }
    }
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout() -> Layout {
        Layout::new(60_000_000, 2)
    }

    #[test]
    fn layout_is_a_prefix_of_hdrhistogram_bins() {
        // Ours stops at the bin of the highest value; HdrHistogram allocates whole buckets.
        let ours = layout();
        let theirs = Histogram::<u64>::new_with_bounds(1, ours.highest(), 2).unwrap();
        assert!(ours.len() <= theirs.distinct_values());
        assert!(theirs.distinct_values() - ours.len() < 128);
    }

    #[test]
    fn values_above_range_are_clamped_and_counted() {
        let histogram = ShardedHistogram::new(layout());
        histogram.record(u64::MAX);
        histogram.record(0);
        assert_eq!(histogram.clamped(), 1);
        let merged = histogram.to_histogram();
        assert_eq!(merged.len(), 2);
        assert!(merged.max() >= 60_000_000 * 99 / 100);
    }

    #[test]
    fn threads_beyond_owned_slots_are_counted() {
        let histogram = std::sync::Arc::new(ShardedHistogram::new(layout()));
        let threads: Vec<_> = (0..(crate::thread_slot::OWNED + 8))
            .map(|_| {
                let histogram = histogram.clone();
                std::thread::spawn(move || {
                    for value in 1..=100 {
                        histogram.record(value);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(
            histogram.totals().0,
            (crate::thread_slot::OWNED as u64 + 8) * 100
        );
    }

    proptest! {
        #[test]
        fn bins_agree_with_hdrhistogram(value in 1u64..60_000_000) {
            let ours = layout();
            let theirs = Histogram::<u64>::new_with_bounds(1, ours.highest(), 2).unwrap();
            let lowest = ours.value_of(ours.index_of(value));
            prop_assert_eq!(lowest, theirs.lowest_equivalent(value));
            prop_assert_eq!(ours.index_of(lowest), ours.index_of(value));
        }

        #[test]
        fn percentiles_match_sorted_reference(mut values in proptest::collection::vec(1u64..10_000_000, 1..2_000)) {
            let histogram = ShardedHistogram::new(layout());
            for &value in &values {
                histogram.record(value);
            }
            let merged = histogram.to_histogram();
            values.sort_unstable();
            for quantile in [0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let rank = ((quantile * values.len() as f64).ceil() as usize).clamp(1, values.len());
                let reference = values[rank - 1];
                let ours = merged.value_at_quantile(quantile);
                // Two significant digits: every value is within 1% of its bin's bounds.
                let tolerance = (reference as f64 * 0.01).max(1.0);
                prop_assert!(
                    (ours as f64 - reference as f64).abs() <= tolerance,
                    "q{}: {} vs reference {}", quantile, ours, reference
                );
            }
        }
    }
}
