//! Rate-limited warnings: a Redis outage fails a publish every few seconds, and the log should say so once a
//! minute with a count, not once per attempt.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Minimum time between two warnings of one kind.
const EVERY: Duration = Duration::from_secs(60);

/// Lets one warning through per minute and counts the rest.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        let (next, suppressed) = &mut *state;
        if next.is_some_and(|next| now < next) {
            *suppressed += 1;
            return None;
        }
        *next = Some(now + EVERY);
        Some(std::mem::take(suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_minute_with_the_count_of_the_rest() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        assert_eq!(limiter.allow_at(start), Some(0));
        assert_eq!(limiter.allow_at(start + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow_at(start + Duration::from_secs(59)), None);
        assert_eq!(limiter.allow_at(start + Duration::from_secs(60)), Some(2));
    }
}
