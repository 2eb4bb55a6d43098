//! A small fixed histogram of queries per request: exact up to 127, then one bucket per power of two.

use serde::Serialize;

const EXACT: usize = 128;
/// Powers of two from 2^7 to 2^63.
const BUCKETS: usize = EXACT + 57;

/// Counts of requests by the number of queries they ran.
#[derive(Debug, Clone)]
pub(crate) struct CountHistogram {
    buckets: [u64; BUCKETS],
    total: u64,
    sum: u128,
    max: u64,
}

impl Default for CountHistogram {
    fn default() -> Self {
        CountHistogram {
            buckets: [0; BUCKETS],
            total: 0,
            sum: 0,
            max: 0,
        }
    }
}

/// Percentiles of queries per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueriesPerRequest {
    /// Median (exact below 128, else the lower bound of its power-of-two bucket).
    pub p50: u64,
    /// 95th percentile, same precision.
    pub p95: u64,
    /// The most any request ran (exact).
    pub max: u64,
    /// Mean (exact).
    pub mean: f64,
}

fn bucket_of(value: u64) -> usize {
    if value < EXACT as u64 {
        value as usize
    } else {
        // 128..255 → EXACT, 256..511 → EXACT + 1, ...
        let log = 63 - value.leading_zeros() as usize;
        (EXACT + log - 7).min(BUCKETS - 1)
    }
}

fn lower_bound(bucket: usize) -> u64 {
    if bucket < EXACT {
        bucket as u64
    } else {
        1_u64 << (bucket - EXACT + 7)
    }
}

impl CountHistogram {
    pub(crate) fn record(&mut self, value: u64) {
        if let Some(bucket) = self.buckets.get_mut(bucket_of(value)) {
            *bucket += 1;
        }
        self.total += 1;
        self.sum += u128::from(value);
        self.max = self.max.max(value);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return lower_bound(index).min(self.max);
            }
        }
        self.max
    }

    pub(crate) fn summary(&self) -> QueriesPerRequest {
        QueriesPerRequest {
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
            max: self.max,
            mean: if self.total == 0 {
                0.0
            } else {
                self.sum as f64 / self.total as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_counts_are_exact() {
        let mut h = CountHistogram::default();
        for v in [0, 1, 1, 3, 41, 41, 41] {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!((s.p50, s.p95, s.max), (3, 41, 41));
        assert!((s.mean - 128.0 / 7.0).abs() < 1e-9);
        h.record(1000);
        assert_eq!(h.summary().max, 1000);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(
            CountHistogram::default().summary(),
            QueriesPerRequest::default()
        );
    }

    proptest! {
        #[test]
        fn quantiles_are_within_a_factor_of_two_and_never_above_max(values in proptest::collection::vec(any::<u64>(), 1..200)) {
            let mut h = CountHistogram::default();
            for &v in &values { h.record(v); }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let s = h.summary();
            let exact = sorted[(sorted.len() as f64 * 0.5).ceil() as usize - 1];
            prop_assert!(s.p50 <= exact && (exact < 128 && s.p50 == exact || s.p50 > exact / 2));
            prop_assert_eq!(s.max, *sorted.last().unwrap());
            prop_assert!(s.p95 <= s.max);
        }
    }
}
