//! Time as the cache sees it: nanoseconds since the cache was built, read from `tokio::time::Instant` so tests
//! can pause and advance time; and the deterministic TTL jitter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// "Never" as a deadline.
pub(crate) const NEVER: u64 = u64::MAX;

/// The cache's clock: deadlines are stored as nanoseconds since `base`, eight bytes each.
#[derive(Debug)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the cache was built.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }
}

/// A duration in nanoseconds, saturating.
#[inline]
pub(crate) fn nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
}

/// Spreads TTLs by ± a fraction so entries written together do not expire together. Deterministic for a given
/// seed and order of inserts (a SplitMix64 sequence).
#[derive(Debug)]
pub(crate) struct Jitter {
    /// Fraction in `[0, 1)`; zero means off.
    fraction: f64,
    state: AtomicU64,
}

impl Jitter {
    pub(crate) fn new(fraction: f64, seed: u64) -> Self {
        Jitter {
            fraction,
            state: AtomicU64::new(seed),
        }
    }

    /// `ttl` (nanoseconds) moved by a random amount within ± the fraction; never zero for a non-zero `ttl`.
    #[inline]
    pub(crate) fn apply(&self, ttl: u64) -> u64 {
        if self.fraction <= 0.0 || ttl == 0 {
            return ttl;
        }
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // A uniform number in [-1, 1).
        let unit = (z >> 11) as f64 / (1_u64 << 53) as f64 * 2.0 - 1.0;
        let factor = 1.0 + self.fraction * unit;
        let jittered = ttl as f64 * factor;
        if jittered >= u64::MAX as f64 {
            u64::MAX
        } else {
            (jittered as u64).max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_fraction_and_is_deterministic() {
        let a = Jitter::new(0.2, 7);
        let b = Jitter::new(0.2, 7);
        let ttl = 1_000_000_000;
        let mut low = u64::MAX;
        let mut high = 0;
        for _ in 0..10_000 {
            let x = a.apply(ttl);
            assert_eq!(x, b.apply(ttl));
            assert!((800_000_000..=1_200_000_000).contains(&x), "{x}");
            low = low.min(x);
            high = high.max(x);
        }
        assert!(low < 820_000_000 && high > 1_180_000_000, "{low} {high}");
        assert_eq!(Jitter::new(0.0, 1).apply(ttl), ttl);
        assert!(Jitter::new(0.5, 1).apply(1) >= 1);
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
