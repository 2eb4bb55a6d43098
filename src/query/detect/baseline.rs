//! A route's rolling queries-per-request median, for the regression rule (R7).

use std::fmt;

/// Requests a [`RouteBaseline`] remembers by default.
pub const DEFAULT_BASELINE_WINDOW: usize = 256;

/// Largest window a [`RouteBaseline`] accepts, so one route costs at most 32 KiB.
const MAX_WINDOW: usize = 4096;

/// The queries-per-request of a route's most recent requests, in a fixed-size ring.
///
/// The analyzer keeps one per route and calls [`observe`](RouteBaseline::observe) after
/// [`detect`](super::detect), so a request is compared with the ones before it. Memory is fixed when it is
/// created: one `u32` per remembered request.
#[derive(Clone)]
pub struct RouteBaseline {
    ring: Box<[u32]>,
    next: usize,
    filled: usize,
    samples: u64,
}

impl RouteBaseline {
    /// A baseline over the last [`DEFAULT_BASELINE_WINDOW`] requests.
    pub fn new() -> Self {
        RouteBaseline::with_window(DEFAULT_BASELINE_WINDOW)
    }

    /// A baseline over the last `window` requests (clamped to 1..=4096).
    pub fn with_window(window: usize) -> Self {
        RouteBaseline {
            ring: vec![0; window.clamp(1, MAX_WINDOW)].into_boxed_slice(),
            next: 0,
            filled: 0,
            samples: 0,
        }
    }

    /// Records one request's query count (counts beyond `u32::MAX` are kept as `u32::MAX`).
    pub fn observe(&mut self, queries: u64) {
        let value = u32::try_from(queries).unwrap_or(u32::MAX);
        if let Some(slot) = self.ring.get_mut(self.next) {
            *slot = value;
        }
        self.next = (self.next + 1) % self.ring.len().max(1);
        self.filled = (self.filled + 1).min(self.ring.len());
        self.samples = self.samples.saturating_add(1);
    }

    /// The median query count over the window (the mean of the two middle values for an even count), or
    /// `None` before the first request.
    pub fn median(&self) -> Option<f64> {
        let window = self.ring.get(..self.filled)?;
        if window.is_empty() {
            return None;
        }
        // Selection on a copy: O(window), and the window is small and fixed.
        let mut sorted = window.to_vec();
        let middle = sorted.len() / 2;
        let (lower, upper, _) = sorted.select_nth_unstable(middle);
        let upper = f64::from(*upper);
        if window.len() % 2 == 1 {
            return Some(upper);
        }
        let below = lower.iter().copied().max().map_or(upper, f64::from);
        Some((below + upper) / 2.0)
    }

    /// Requests observed since the baseline was created (not capped by the window).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Requests the median is computed over.
    pub fn window(&self) -> usize {
        self.ring.len()
    }
}

impl Default for RouteBaseline {
    fn default() -> Self {
        RouteBaseline::new()
    }
}

impl fmt::Debug for RouteBaseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteBaseline")
            .field("window", &self.ring.len())
            .field("samples", &self.samples)
            .field("median", &self.median())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_median() {
        let baseline = RouteBaseline::new();
        assert_eq!(baseline.median(), None);
        assert_eq!(baseline.samples(), 0);
    }

    #[test]
    fn median_odd_and_even() {
        let mut baseline = RouteBaseline::new();
        for q in [5, 1, 3] {
            baseline.observe(q);
        }
        assert_eq!(baseline.median(), Some(3.0));
        baseline.observe(10);
        assert_eq!(baseline.median(), Some(4.0));
        assert_eq!(baseline.samples(), 4);
    }

    #[test]
    fn window_forgets_old_requests() {
        let mut baseline = RouteBaseline::with_window(4);
        for _ in 0..10 {
            baseline.observe(100);
        }
        for _ in 0..4 {
            baseline.observe(7);
        }
        assert_eq!(baseline.median(), Some(7.0));
        assert_eq!(baseline.samples(), 14);
        assert_eq!(baseline.window(), 4);
    }

    #[test]
    fn window_is_clamped_and_huge_counts_saturate() {
        let mut baseline = RouteBaseline::with_window(0);
        assert_eq!(baseline.window(), 1);
        baseline.observe(u64::MAX);
        assert_eq!(baseline.median(), Some(f64::from(u32::MAX)));
        assert_eq!(RouteBaseline::with_window(usize::MAX).window(), MAX_WINDOW);
    }
}
