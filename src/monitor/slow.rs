//! Slow requests: a bounded ring of the most recent ones and a rate-limited warning for each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::snapshot::SlowRequest;

/// A budget of warnings per minute; the warnings past it are counted instead of logged.
#[derive(Debug)]
pub(crate) struct WarnBudget {
    per_minute: u64,
    /// Minute (since the monitor started) of the current window, and warnings logged in it.
    window: Mutex<(u64, u64)>,
    suppressed: AtomicU64,
}

impl WarnBudget {
    pub(crate) fn new(per_minute: u32) -> Self {
        WarnBudget {
            per_minute: u64::from(per_minute),
            window: Mutex::new((0, 0)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a warning in `minute` may be logged; counts it as suppressed when not.
    pub(crate) fn allow(&self, minute: u64) -> bool {
        let allowed = {
            let mut window = self.window.lock();
            if window.0 != minute {
                *window = (minute, 0);
            }
            window.1 += 1;
            window.1 <= self.per_minute
        };
        if !allowed {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Warnings not logged.
    pub(crate) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// The most recent slow requests and the warning rate limit.
#[derive(Debug)]
pub(crate) struct SlowLog {
    capacity: usize,
    recent: Mutex<VecDeque<SlowRequest>>,
    budget: WarnBudget,
    total: AtomicU64,
}

impl SlowLog {
    pub(crate) fn new(capacity: usize, warnings_per_minute: u32) -> Self {
        SlowLog {
            capacity,
            recent: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            budget: WarnBudget::new(warnings_per_minute),
            total: AtomicU64::new(0),
        }
    }

    /// Records a slow request; logs a warning unless this minute's budget is spent.
    pub(crate) fn push(&self, request: SlowRequest, minute: u64) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if self.budget.allow(minute) {
            tracing::warn!(
                target: "perfscope::slow",
                request_id = %request.request_id,
                method = %request.method,
                route = %request.route,
                status = request.status,
                outcome = %request.outcome,
                duration_ms = request.duration_ms,
                "slow request"
            );
        }
        if self.capacity == 0 {
            return;
        }
        let mut recent = self.recent.lock();
        if recent.len() >= self.capacity {
            recent.pop_back();
        }
        recent.push_front(request);
    }

    /// Newest first.
    pub(crate) fn recent(&self) -> Vec<SlowRequest> {
        self.recent.lock().iter().cloned().collect()
    }

    pub(crate) fn suppressed(&self) -> u64 {
        self.budget.suppressed()
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(id: &str) -> SlowRequest {
        SlowRequest {
            request_id: id.to_owned(),
            method: "GET".to_owned(),
            route: "/r".to_owned(),
            status: Some(200),
            outcome: "ok".to_owned(),
            duration_ms: 1_500.0,
            phases: Vec::new(),
            user_id: None,
            finished_at_unix_ms: 0,
        }
    }

    #[test]
    fn ring_is_bounded_and_newest_first() {
        let log = SlowLog::new(3, 2);
        for i in 0..5 {
            log.push(slow(&i.to_string()), 0);
        }
        let ids: Vec<_> = log.recent().into_iter().map(|r| r.request_id).collect();
        assert_eq!(ids, ["4", "3", "2"]);
        assert_eq!(log.suppressed(), 3);
        log.push(slow("5"), 1);
        assert_eq!(log.suppressed(), 3, "a new minute has a new budget");
        assert_eq!(log.total(), 6);
    }
}
