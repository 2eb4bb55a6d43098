//! The typed, serializable picture of everything perfscope has measured.
//!
//! [`Perfscope::snapshot`](crate::Perfscope::snapshot) builds a [`Snapshot`] at read time: percentiles are computed
//! then, never on the request path. The JSON export is this struct serialized with serde; the Prometheus export
//! renders the same struct. `docs/schema.md` documents every field.

use std::collections::BTreeMap;

use serde::Serialize;

/// Everything perfscope knows at one instant.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Wall-clock time the snapshot was taken, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// The build and the settings in force, which the rest is read against (the detection profile and
    /// thresholds are in `queries.detection`).
    pub settings: SettingsSnapshot,
    /// Seconds since the [`Perfscope`](crate::Perfscope) handle was built.
    pub uptime_secs: f64,
    /// Requests in flight across all routes when the snapshot was taken.
    pub in_flight: u64,
    /// The highest number of requests in flight at once since the handle was built.
    pub peak_in_flight: u64,
    /// Requests seen in total, including excluded routes.
    pub requests_total: u64,
    /// One entry per (method, route template), sorted by method then route.
    pub routes: Vec<RouteStats>,
    /// Slow requests seen in total (the ring below keeps only the most recent).
    pub slow_requests_total: u64,
    /// The most recent slow requests, newest first (bounded ring buffer).
    pub slow_requests: Vec<SlowRequest>,
    /// Requests in flight for longer than the hung threshold, oldest first.
    pub hung_requests: Vec<HungRequest>,
    /// What the cardinality guards turned away.
    pub overflow: OverflowStats,
    /// The process: resident memory, open files and their limit, and whether the counting allocator is
    /// installed.
    pub process: ProcessStats,
    /// Connections of the listeners wrapped by [`Perfscope::listener`](crate::Perfscope::listener) or counted
    /// by a [`ConnectionTracker`](crate::connections::ConnectionTracker); empty when there are none.
    pub connections: ConnectionsSnapshot,
    /// Statistics of each cache registered with [`Perfscope::register_cache`](crate::Perfscope::register_cache).
    #[cfg(feature = "cache")]
    pub caches: Vec<crate::cache::CacheStatsSnapshot>,
    /// What the query analyzer found: per-route query statistics and findings.
    #[cfg(feature = "query")]
    pub queries: crate::query::QueryStatsSnapshot,
}

/// The build and the monitor's settings in force.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SettingsSnapshot {
    /// `debug` or `release`: perfscope's defaults follow it (timing headers on in debug builds only; the
    /// query detection profile `development` in debug builds, `production` in release builds).
    pub build: &'static str,
    /// Whether the monitor adds `X-Response-Time` and `Server-Timing`: `on`, `off`, or `per_request` (a
    /// predicate decides), as resolved in this build. `X-Request-Id` is always sent.
    pub timing_headers: &'static str,
    /// Duration from which a request is slow, milliseconds (the default; routes may have their own).
    pub slow_threshold_ms: f64,
    /// Duration in flight from which a request is listed as hung, milliseconds.
    pub hung_threshold_ms: f64,
    /// Bytes one request may allocate before it is logged (feature `alloc`, with the counting allocator
    /// installed); `None` when allocations are not attributed to requests.
    pub allocation_warning_bytes: Option<u64>,
}

impl SettingsSnapshot {
    pub(crate) const BUILD: &'static str = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
}

/// Latency, status and outcome statistics of one (method, route template).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteStats {
    /// HTTP method label: one of the nine standard methods or `_OTHER`.
    pub method: String,
    /// Route template such as `/api/products/{id}`, or `<unmatched>` / `<overflow>`.
    pub route: String,
    /// Completed requests (every outcome, streams included).
    pub count: u64,
    /// Completed requests whose outcome was not `ok` or `client_error`.
    pub errors: u64,
    /// Requests on this route in flight now.
    pub in_flight: u64,
    /// The highest number in flight at once on this route.
    pub peak_in_flight: u64,
    /// Lifetime median latency (call to end of body), milliseconds.
    pub p50_ms: f64,
    /// Lifetime 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// Lifetime 95th percentile latency, milliseconds.
    pub p95_ms: f64,
    /// Lifetime 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Lifetime 99.9th percentile latency, milliseconds.
    pub p999_ms: f64,
    /// Lifetime maximum latency, milliseconds.
    pub max_ms: f64,
    /// Lifetime mean latency, milliseconds.
    pub mean_ms: f64,
    /// Latency (call to end of body) over the lifetime and the sliding windows.
    pub latency: LatencyWindows,
    /// Time from the call to the response headers, over the lifetime.
    pub time_to_headers: Percentiles,
    /// Lifetime of streamed responses (event streams, upgrades), kept out of the latency percentiles.
    pub streams: Percentiles,
    /// Count of responses per status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Count of completed requests per outcome.
    pub outcomes: Outcomes,
    /// Cumulative latency buckets for histogram exports (upper bound in seconds, count at or below it).
    pub buckets: Vec<Bucket>,
    /// Cumulative latency buckets on a finer 1-2-5 scale (50 µs to 60 s), for drawing the distribution (the
    /// dashboard does); same samples and form as `buckets`.
    pub distribution: Vec<Bucket>,
    /// Sum of all recorded latencies, seconds.
    pub sum_secs: f64,
    /// Bytes allocated per request (feature `alloc`, with [`CountingAllocator`](crate::alloc) installed);
    /// `None` when allocations are not attributed, or no request on the route was measured.
    pub allocated_bytes: Option<AllocatedBytes>,
}

/// The distribution of bytes allocated per request on one route (see [`crate::alloc`] for what is counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AllocatedBytes {
    /// Requests measured.
    pub count: u64,
    /// Median, bytes (the top of its histogram bin: at most 1% above the true value, never above `max`).
    pub p50: u64,
    /// 95th percentile, bytes (same precision).
    pub p95: u64,
    /// Largest, bytes (exact).
    pub max: u64,
    /// Sum over the measured requests, bytes (exact).
    pub sum: u64,
}

/// Facts about the whole process, read when the snapshot is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProcessStats {
    /// Resident set size, bytes (Linux: `VmRSS` of `/proc/self/status`); `None` on other systems.
    pub resident_memory_bytes: Option<u64>,
    /// Whether [`CountingAllocator`](crate::alloc) is the global allocator (feature `alloc`), so that
    /// [`RouteStats::allocated_bytes`] is measured.
    pub counting_allocator: bool,
    /// Open file descriptors (Linux: the entries of `/proc/self/fd`, sockets included); `None` elsewhere.
    pub open_fds: Option<u64>,
    /// The limit on open file descriptors (Linux: the soft `Max open files` of `/proc/self/limits`, that is
    /// `RLIMIT_NOFILE`); `None` elsewhere or when unlimited.
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// The process now.
    pub(crate) fn read() -> Self {
        ProcessStats {
            resident_memory_bytes: crate::process::resident_memory_bytes(),
            open_fds: crate::process::open_fds(),
            max_fds: crate::process::max_fds(),
            #[cfg(feature = "alloc")]
            counting_allocator: crate::alloc::is_installed(),
            #[cfg(not(feature = "alloc"))]
            counting_allocator: false,
        }
    }
}

/// Latency percentiles for the lifetime and the sliding windows.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct LatencyWindows {
    /// Since the handle was built.
    pub lifetime: Percentiles,
    /// The last minute (10-second resolution).
    pub window_1m: Percentiles,
    /// The last five minutes (one-minute resolution).
    pub window_5m: Percentiles,
}

/// Summary of one latency distribution. All figures in milliseconds; zero when `count` is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// One cumulative histogram bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Bucket {
    /// Upper bound, seconds.
    pub le_secs: f64,
    /// Samples at or below the bound.
    pub count: u64,
}

/// Completed requests per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Outcomes {
    /// Response sent in full with a 1xx, 2xx or 3xx status.
    pub ok: u64,
    /// Response sent in full with a 4xx status (other than 408).
    pub client_error: u64,
    /// Response with a 5xx status (other than 504), or an error from the inner service.
    pub server_error: u64,
    /// The response future was dropped before the response was ready (client went away, outer timeout).
    pub cancelled: u64,
    /// The response body was dropped or failed before its end.
    pub aborted: u64,
    /// The handler panicked (caught by an inner `CatchPanicLayer`, or seen unwinding through the monitor).
    pub panic: u64,
    /// A 408 or 504 response, or a timeout error from the inner service.
    pub timeout: u64,
}

/// A request that took longer than its route's slow threshold.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SlowRequest {
    /// The request ID.
    pub request_id: String,
    /// HTTP method label.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Response status, when a response was produced.
    pub status: Option<u16>,
    /// How the request ended.
    pub outcome: String,
    /// Duration, milliseconds.
    pub duration_ms: f64,
    /// Named phases (from [`phase`](crate::phase)) with their durations in milliseconds.
    pub phases: Vec<PhaseTiming>,
    /// The user ID from the configured hook, if any.
    pub user_id: Option<String>,
    /// When it finished, milliseconds since the Unix epoch.
    pub finished_at_unix_ms: u64,
}

/// A named phase of a request and the time spent in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PhaseTiming {
    /// Phase name.
    pub name: String,
    /// Total time in the phase, milliseconds.
    pub duration_ms: f64,
}

/// A request still in flight after the hung threshold.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HungRequest {
    /// The request ID.
    pub request_id: String,
    /// HTTP method label.
    pub method: String,
    /// Route template (`<unmatched>` when not yet known).
    pub route: String,
    /// How long it has been running, milliseconds.
    pub age_ms: f64,
}

/// Counters of what the cardinality guards turned away.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[non_exhaustive]
pub struct OverflowStats {
    /// Requests counted under the `<overflow>` route because `max_routes` was reached.
    pub route_overflow_requests: u64,
    /// Inbound request IDs that were rejected and replaced by a generated one.
    pub request_ids_rejected: u64,
    /// Slow-request warnings not logged because of the rate limit.
    pub slow_warnings_suppressed: u64,
    /// Latency samples above the histogram range (`histogram_max`), recorded as the range's top.
    pub latency_clamped: u64,
    /// Large-allocation warnings (feature `alloc`) not logged because of the rate limit.
    pub allocation_warnings_suppressed: u64,
}

/// The connections perfscope counts (see [`crate::connections`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ConnectionsSnapshot {
    /// One entry per listener name, sorted by name.
    pub listeners: Vec<ListenerConnections>,
    /// Connection warnings (head-pending pile-up, open files near their limit) not logged because of the
    /// rate limit.
    pub warnings_suppressed: u64,
}

/// The connections of one listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ListenerConnections {
    /// The listener's name: its local address (`127.0.0.1:3000`) unless one was given.
    pub listener: String,
    /// Connections open now.
    pub open: u64,
    /// The most connections open at once.
    pub peak_open: u64,
    /// Connections accepted in total.
    pub accepted_total: u64,
    /// Open connections whose first request head is not complete yet.
    pub head_pending: u64,
    /// How long the `head_pending` connections have been open.
    pub head_pending_age: HeadPendingAges,
    /// Time from accept to the end of the first request head, for the heads that completed.
    pub head_read: HeadReadTimes,
    /// Connections ended, by reason.
    pub closed: ClosedConnections,
}

/// The ages of the connections still sending their first request head, milliseconds; zero when none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HeadPendingAges {
    /// The oldest.
    pub oldest_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// Time from accept to a complete first request head, milliseconds (percentiles: the top of a bin at most
/// 25% wide, never above `max_ms`); zero when `count` is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HeadReadTimes {
    /// Heads completed.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Sum of all, for a mean.
    pub sum_ms: f64,
}

/// Connections ended, by reason (see [`crate::connections`] for how each is told apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClosedConnections {
    /// After a complete first head, closed by the client.
    pub client_closed: u64,
    /// After a complete first head, closed by the server (keep-alive idle timeout, `Connection: close`,
    /// shutdown).
    pub server_closed: u64,
    /// Closed by the server, without answering, while the first head was incomplete: a header read timeout.
    pub head_timeout: u64,
    /// Closed by the client after part of a first head.
    pub head_abandoned: u64,
    /// Answered by the HTTP server (431, 414, 400) and closed before the first head was complete: refused
    /// before any request reached the router.
    pub refused: u64,
    /// Closed by the client without sending a byte.
    pub empty: u64,
    /// Closed by the server to stay within its connection limit: an accept loop at its limit closing the oldest
    /// connection still sending its first head to admit a new one, or the new one when none is (marked with
    /// [`TrackedIo::mark_shed`](crate::connections::TrackedIo::mark_shed)).
    pub shed: u64,
}
