//! The circuit breaker in front of the second level: after `failures` failures in a row it opens, and no call
//! is made for `open_for`; then one call at a time probes (half-open) until one succeeds.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// The breaker's state, as the statistics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A lock-free breaker: the request path reads one atomic when it is closed.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    threshold: u32,
    open_for: Duration,
    /// Nanoseconds since `base` when the breaker last opened.
    opened_at: AtomicU64,
    base: Instant,
    /// Times it went from closed (or half-open) to open.
    pub(crate) opened: AtomicU64,
    /// Times it went back to closed.
    pub(crate) closed: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            threshold: threshold.max(1),
            open_for,
            opened_at: AtomicU64::new(0),
            base: Instant::now(),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a call may be made now. When open and `open_for` has passed, one caller wins the probe.
    pub(crate) fn allow(&self) -> bool {
        match self.state.load(Ordering::Acquire) {
            CLOSED => true,
            OPEN => {
                let since = self
                    .now()
                    .saturating_sub(self.opened_at.load(Ordering::Acquire));
                since >= self.open_for.as_nanos() as u64
                    && self
                        .state
                        .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            }
            // A probe is in flight: others wait for its outcome.
            _ => false,
        }
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let state = self.state.load(Ordering::Acquire);
        if state == HALF_OPEN || (state == CLOSED && failures >= self.threshold) {
            self.opened_at.store(self.now(), Ordering::Release);
            if self.state.swap(OPEN, Ordering::AcqRel) != OPEN {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let breaker = Breaker::new(3, Duration::from_millis(20));
        assert!(breaker.allow());
        breaker.failure();
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(breaker.allow(), "one probe");
        assert!(!breaker.allow(), "only one");
        breaker.failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.opened.load(Ordering::Relaxed), 2);
        std::thread::sleep(Duration::from_millis(25));
        assert!(breaker.allow());
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.closed.load(Ordering::Relaxed), 1);
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }
}
