//! Bytes allocated per request (feature `alloc`): the per-route histogram's layout and reading, and the
//! warning for a request that allocated too much.

use crate::context::RequestContext;
use crate::monitor::histogram::{Layout, ShardedHistogram};
use crate::monitor::route_entry::RouteEntry;
use crate::monitor::slow::WarnBudget;
use crate::snapshot::AllocatedBytes;

/// Largest figure kept exactly in the histogram: 64 GiB. A larger one is recorded as this and counted among
/// the clamped values; the exact maximum and sum are kept apart.
const HIGHEST: u64 = 1 << 36;

/// The bins of an allocation histogram: two significant digits (within 1%), 1 byte to [`HIGHEST`].
pub(crate) fn layout() -> Layout {
    Layout::new(HIGHEST, 2)
}

/// The distribution `histogram` holds; `None` before its first sample.
pub(crate) fn allocated_bytes(histogram: &ShardedHistogram) -> Option<AllocatedBytes> {
    let (count, sum, max) = histogram.totals();
    if count == 0 {
        return None;
    }
    let merged = histogram.to_histogram();
    // A bin reports its highest value: at most 1% above the sample, and never above the exact maximum.
    let at = |quantile: f64| merged.value_at_quantile(quantile).min(max);
    Some(AllocatedBytes {
        count,
        p50: at(0.5),
        p95: at(0.95),
        max,
        sum,
    })
}

/// Logs requests that allocated more than the threshold, within a per-minute budget.
#[derive(Debug)]
pub(crate) struct LargeAllocations {
    budget: WarnBudget,
}

impl LargeAllocations {
    pub(crate) fn new(warnings_per_minute: u32) -> Self {
        LargeAllocations {
            budget: WarnBudget::new(warnings_per_minute),
        }
    }

    /// A request on `entry` allocated `bytes`, more than `threshold`, in `minute` since the monitor started.
    #[cold]
    pub(crate) fn warn(
        &self,
        context: &RequestContext,
        entry: &RouteEntry,
        bytes: u64,
        threshold: u64,
        minute: u64,
    ) {
        if self.budget.allow(minute) {
            tracing::warn!(
                target: "perfscope::alloc",
                request_id = %context.request_id(),
                method = entry.method.as_str(),
                route = %entry.route,
                allocated_bytes = bytes,
                threshold_bytes = threshold,
                "request allocated more than the threshold"
            );
        }
    }

    /// Warnings not logged because of the budget.
    pub(crate) fn suppressed(&self) -> u64 {
        self.budget.suppressed()
    }
}
