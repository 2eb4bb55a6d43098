//! A small lock-free log-linear histogram of durations in microseconds: four bins per power of two (at most
//! 25% wide), enough for the p50/p99 of how long connections take to send their request head.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bins per power of two, as a number of bits.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
/// Bins for every `u64`: the first `SUB` values exactly, then `SUB` bins for each higher power of two.
const BINS: usize = ((64 - SUB_BITS) * SUB as u32) as usize + SUB as usize;

/// Counts of durations, in microseconds, per log-linear bin.
#[derive(Debug)]
pub(crate) struct LogHistogram {
    bins: Box<[AtomicU64]>,
    count: AtomicU64,
    max_micros: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram {
            bins: (0..BINS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max_micros: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// The bin of `v`.
fn bin(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let sub = (v >> (msb - SUB_BITS)) & (SUB - 1);
    ((msb - SUB_BITS + 1) as usize) * SUB as usize + sub as usize
}

/// The largest value in bin `index`.
fn bin_top(index: usize) -> u64 {
    let sub_count = SUB as usize;
    if index < sub_count {
        return index as u64;
    }
    let msb = (index / sub_count) as u32 + SUB_BITS - 1;
    let sub = (index % sub_count) as u64;
    let width = 1u64 << (msb - SUB_BITS);
    ((SUB + sub) << (msb - SUB_BITS)).saturating_add(width - 1)
}

/// The summary of a [`LogHistogram`], in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    pub(crate) sum: u64,
}

impl LogHistogram {
    pub(crate) fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        if let Some(slot) = self.bins.get(bin(micros)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Median, 99th percentile (each the top of its bin, never above the maximum) and maximum.
    pub(crate) fn summary(&self) -> Summary {
        let counts: Vec<u64> = self
            .bins
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = self.max_micros.load(Ordering::Relaxed);
        if count == 0 {
            return Summary::default();
        }
        let at = |q: f64| {
            // The rank of the quantile, 1-based: at least the first sample, at most the last.
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (index, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bin_top(index).min(max);
                }
            }
            max
        };
        Summary {
            count,
            p50: at(0.5),
            p99: at(0.99),
            max,
            sum: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// The median and 99th percentile of `values` (sorted here), exactly; zeros when empty.
pub(crate) fn exact_p50_p99(values: &mut [u64]) -> (u64, u64) {
    if values.is_empty() {
        return (0, 0);
    }
    values.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values.get(rank - 1).copied().unwrap_or(0)
    };
    (at(0.5), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_ordered_and_hold_their_values() {
        let mut last = 0;
        for v in (0..10_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let index = bin(v);
            assert!(index < BINS, "{v}");
            assert!(index >= last, "{v}");
            last = index;
            assert!(
                bin_top(index) >= v,
                "{v} in bin {index} topped at {}",
                bin_top(index)
            );
            // At most 25% wide.
            assert!(bin_top(index) <= v.saturating_add(v / 4 + 1), "{v}");
        }
    }

    #[test]
    fn percentiles_within_a_bin() {
        let h = LogHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, 100_000);
        assert!((50_000..=62_500).contains(&s.p50), "{s:?}");
        assert!((99_000..=100_000).contains(&s.p99), "{s:?}");
        assert_eq!(LogHistogram::default().summary(), Summary::default());
    }

    #[test]
    fn exact_percentiles() {
        assert_eq!(exact_p50_p99(&mut []), (0, 0));
        assert_eq!(exact_p50_p99(&mut [7]), (7, 7));
        let mut values: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(exact_p50_p99(&mut values), (50, 99));
    }
}
