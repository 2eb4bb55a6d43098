//! Time as the cache sees it: nanoseconds since the cache was built, read from one small clock per cache
//! ([`CacheClock`]: the calibrated TSC, tokio's clock, or a [`MockClock`]); and the deterministic TTL jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// "Never" as a deadline.
pub(crate) const NEVER: u64 = u64::MAX;

/// The clock a cache judges lifetimes by: TTLs, stale and fail-safe windows, ages and load times.
///
/// The default reads the system's fastest monotonic clock (the calibrated time-stamp counter where the
/// processor has an invariant one, through `quanta`, else the OS's monotonic clock), unless the cache is built
/// while tokio's clock is paused (`#[tokio::test(start_paused = true)]`, `tokio::time::pause()`): then it follows
/// tokio's clock, so a test pauses and advances the cache's time with `tokio::time::advance`.
///
/// ```
/// use perfscope::cache::{Cache, CacheClock, MockClock};
/// use std::time::Duration;
///
/// let time = MockClock::new();
/// let cache: Cache<String, u32> = Cache::builder()
///     .ttl(Duration::from_secs(10))
///     .clock(CacheClock::mock(&time))
///     .build()
///     .unwrap();
/// cache.insert("a".to_owned(), 1);
/// time.advance(Duration::from_secs(10) - Duration::from_nanos(1));
/// assert_eq!(cache.get_borrowed("a"), Some(1));
/// time.advance(Duration::from_nanos(1));
/// assert_eq!(cache.get_borrowed("a"), None); // expired exactly at its TTL
/// ```
#[derive(Debug, Clone, Default)]
pub struct CacheClock {
    kind: ClockKind,
}

#[derive(Debug, Clone, Default)]
enum ClockKind {
    /// [`ClockKind::Tokio`] when built while tokio's clock is paused, else [`ClockKind::System`].
    #[default]
    Auto,
    System,
    Tokio,
    Mock(MockClock),
}

impl CacheClock {
    /// The system's fastest monotonic clock, whatever tokio's clock does: the time-stamp counter calibrated
    /// against the OS's monotonic clock where the processor has an invariant one, else the OS's monotonic clock.
    /// The first such clock in a process calibrates the counter once (under a millisecond on the machine of
    /// `docs/benchmarks.md`; `quanta` stops at 200 ms).
    pub fn system() -> Self {
        CacheClock {
            kind: ClockKind::System,
        }
    }

    /// `tokio::time::Instant`: follows `tokio::time::pause` and `advance` in tests, wherever the cache was built.
    /// Outside tests it reads the same clock as `std::time::Instant`, at about twice the cost of
    /// [`system`](CacheClock::system) per read where the time-stamp counter is used.
    pub fn tokio() -> Self {
        CacheClock {
            kind: ClockKind::Tokio,
        }
    }

    /// A clock that moves only when `mock` is advanced (for deterministic tests).
    pub fn mock(mock: &MockClock) -> Self {
        CacheClock {
            kind: ClockKind::Mock(mock.clone()),
        }
    }
}

/// A clock that moves only when told to, for tests of lifetimes: pass it to caches with
/// [`CacheClock::mock`]. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock at zero.
    pub fn new() -> Self {
        MockClock::default()
    }

    /// Moves the time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = nanos(by);
        // The closure always returns `Some`, so `fetch_update` cannot fail.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// How far the clock was advanced so far.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// The cache's clock: deadlines are stored as nanoseconds since the clock was made, eight bytes each.
#[derive(Debug)]
pub(crate) struct Clock {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// `quanta`'s clock: raw readings (time-stamp counter ticks, or nanoseconds where it falls back to the OS's
    /// clock) since `base`, scaled to nanoseconds.
    System {
        clock: quanta::Clock,
        base: u64,
    },
    Tokio {
        base: tokio::time::Instant,
    },
    Mock {
        time: Arc<AtomicU64>,
        base: u64,
    },
}

impl Clock {
    pub(crate) fn new(choice: &CacheClock) -> Self {
        let source = match &choice.kind {
            ClockKind::Auto if tokio_paused() => Source::Tokio {
                base: tokio::time::Instant::now(),
            },
            ClockKind::Tokio => Source::Tokio {
                base: tokio::time::Instant::now(),
            },
            ClockKind::Auto | ClockKind::System => {
                let clock = quanta::Clock::new();
                let base = clock.raw();
                Source::System { clock, base }
            }
            ClockKind::Mock(mock) => Source::Mock {
                time: mock.nanos.clone(),
                base: mock.nanos.load(Ordering::SeqCst),
            },
        };
        Clock { source }
    }

    /// Nanoseconds since the clock was made.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match &self.source {
            Source::System { clock, base } => clock.delta_as_nanos(*base, clock.raw()),
            Source::Tokio { base } => {
                nanos(tokio::time::Instant::now().saturating_duration_since(*base))
            }
            Source::Mock { time, base } => time.load(Ordering::SeqCst).saturating_sub(*base),
        }
    }

    /// Time since `start` (a reading of [`Clock::now`]).
    #[inline]
    pub(crate) fn since(&self, start: u64) -> Duration {
        Duration::from_nanos(self.now().saturating_sub(start))
    }

    /// Whether this clock follows tokio's.
    #[cfg(test)]
    pub(crate) fn is_tokio(&self) -> bool {
        matches!(self.source, Source::Tokio { .. })
    }
}

/// Whether tokio's clock is paused in the current runtime. A paused clock does not move between two readings in
/// synchronous code (it only auto-advances while the runtime is idle); a running one moves with the system clock,
/// which this waits to see move (a few nanoseconds).
fn tokio_paused() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let before = tokio::time::Instant::now();
    let mark = std::time::Instant::now();
    let mut spins = 0_u32;
    while std::time::Instant::now() <= mark && spins < 1_000_000 {
        spins += 1;
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == before
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
    fn a_mock_clock_moves_only_when_advanced() {
        let mock = MockClock::new();
        mock.advance(Duration::from_secs(1));
        let clock = Clock::new(&CacheClock::mock(&mock));
        assert_eq!(clock.now(), 0);
        mock.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), 5_000_000);
        assert_eq!(clock.since(1_000_000), Duration::from_millis(4));
        assert_eq!(mock.elapsed(), Duration::from_millis(1005));
        mock.advance(Duration::MAX);
        assert_eq!(mock.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn the_system_clock_moves_forward() {
        let clock = Clock::new(&CacheClock::system());
        assert!(!clock.is_tokio());
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = clock.now();
        assert!(b >= a + 1_000_000, "{a} {b}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_follows_a_paused_tokio_clock() {
        let clock = Clock::new(&CacheClock::default());
        assert!(clock.is_tokio());
        let a = clock.now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(clock.now() - a, 3_000_000_000);
    }

    #[tokio::test]
    async fn the_default_in_a_running_runtime_is_the_system_clock() {
        assert!(!Clock::new(&CacheClock::default()).is_tokio());
        assert!(Clock::new(&CacheClock::tokio()).is_tokio());
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
