//! The statistics of one (method, route template): what a finished request writes, and what a snapshot reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::monitor::counters::ShardedCounters;
use crate::monitor::histogram::{Layout, ShardedHistogram};
use crate::monitor::windows::{SLOT_SECS, Windows};
use crate::route::MethodLabel;
use crate::snapshot::{Bucket, LatencyWindows, Outcomes, Percentiles, RouteStats};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Response sent in full with a 1xx, 2xx or 3xx status.
    Ok,
    /// Response sent in full with a 4xx status (other than 408).
    ClientError,
    /// A 5xx status (other than 504), or an error from the inner service.
    ServerError,
    /// The response future was dropped before the response was ready.
    Cancelled,
    /// The response body was dropped or failed before its end.
    Aborted,
    /// The handler panicked.
    Panic,
    /// A 408 or 504 status, or a timeout error from the inner service.
    Timeout,
}

impl Outcome {
    /// The outcome label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Aborted => "aborted",
            Outcome::Panic => "panic",
            Outcome::Timeout => "timeout",
        }
    }

    /// The outcome of a response that was sent in full with `status`.
    pub fn of_status(status: u16) -> Self {
        match status {
            408 | 504 => Outcome::Timeout,
            500..=599 => Outcome::ServerError,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Ok,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether the outcome counts as an error of the service (not of the client).
    pub fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::ClientError)
    }
}

const OUTCOMES: usize = 7;
const STATUS_BASE: usize = OUTCOMES;
/// Statuses 100..=599 get a counter each; anything else shares the last one (reported as 0).
const STATUS_SLOTS: usize = 501;

fn status_index(status: u16) -> usize {
    match status {
        100..=599 => STATUS_BASE + usize::from(status - 100),
        _ => STATUS_BASE + STATUS_SLOTS - 1,
    }
}

/// Upper bounds of the exported latency buckets, seconds: OpenTelemetry's advisory boundaries for
/// `http.server.request.duration`, plus 30 s and 60 s for slow ERP pages.
pub(crate) const BUCKET_BOUNDS_SECS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];

/// Upper bounds of the finer latency distribution (`RouteStats::distribution`), seconds: a 1-2-5 scale from
/// 50 µs to 60 s, fine enough to show the shape of fast routes that the exported buckets put in one bar.
pub(crate) const DISTRIBUTION_BOUNDS_SECS: [f64; 20] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
    2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// What the monitor learned about a request when it ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    /// Call to end of body (or to the end of the attempt for cancelled and failed requests).
    pub(crate) total: Duration,
    /// Call to response headers, when a response was produced.
    pub(crate) to_headers: Option<Duration>,
    pub(crate) status: Option<u16>,
    pub(crate) outcome: Outcome,
    /// An event stream or upgrade: its lifetime goes to the stream series, not the latency percentiles.
    pub(crate) stream: bool,
    /// Window slot of the end time.
    pub(crate) slot: u64,
    /// Bytes the request allocated, when allocations are charged to requests.
    #[cfg(feature = "alloc")]
    pub(crate) allocated: Option<u64>,
}

/// One route's latency histograms, as read for a fleet publish.
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) struct RouteHistograms {
    pub(crate) method: MethodLabel,
    pub(crate) route: Arc<str>,
    /// Since the handle was built.
    pub(crate) lifetime: Histogram<u64>,
    /// Exact sum of the lifetime samples, micros.
    pub(crate) sum_us: u64,
    /// Exact largest lifetime sample, micros.
    pub(crate) max_us: u64,
    /// The last five minutes.
    pub(crate) window_5m: Histogram<u64>,
}

/// Whether a route is measured fully or only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteMode {
    /// Histograms, counters and in-flight.
    Full,
    /// Status and outcome counters only (health checks).
    CountOnly,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1_000.0
}

/// One (method, route template) and all that is measured for it.
#[derive(Debug)]
pub(crate) struct RouteEntry {
    pub(crate) method: MethodLabel,
    pub(crate) route: Arc<str>,
    pub(crate) mode: RouteMode,
    /// Per-route slow threshold, when it differs from the global one.
    pub(crate) slow_threshold: Duration,
    latency: ShardedHistogram,
    windows: Windows,
    to_headers: ShardedHistogram,
    streams: ShardedHistogram,
    /// Bytes allocated per request (its shards are allocated only once a thread records into it).
    #[cfg(feature = "alloc")]
    allocated: ShardedHistogram,
    counters: ShardedCounters,
    in_flight: AtomicI64,
    peak_in_flight: AtomicU64,
}

impl RouteEntry {
    pub(crate) fn new(
        method: MethodLabel,
        route: Arc<str>,
        mode: RouteMode,
        slow_threshold: Duration,
        layout: Layout,
        start_slot: u64,
    ) -> Self {
        RouteEntry {
            method,
            route,
            mode,
            slow_threshold,
            latency: ShardedHistogram::new(layout),
            windows: Windows::new(start_slot),
            to_headers: ShardedHistogram::new(layout),
            streams: ShardedHistogram::new(layout),
            #[cfg(feature = "alloc")]
            allocated: ShardedHistogram::new(crate::monitor::alloc::layout()),
            counters: ShardedCounters::new(STATUS_BASE + STATUS_SLOTS),
            in_flight: AtomicI64::new(0),
            peak_in_flight: AtomicU64::new(0),
        }
    }

    /// A request on this route started.
    #[inline]
    pub(crate) fn started(&self) {
        if self.mode == RouteMode::CountOnly {
            return;
        }
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(now).unwrap_or(0);
        if now > self.peak_in_flight.load(Ordering::Relaxed) {
            self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// A request on this route ended; pairs with [`RouteEntry::started`].
    #[inline]
    pub(crate) fn finished(&self, completion: &Completion) {
        if self.mode == RouteMode::Full {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            if completion.stream {
                self.streams.record(micros(completion.total));
            } else {
                self.windows.advance(&self.latency, completion.slot);
                self.latency.record(micros(completion.total));
            }
            if let Some(to_headers) = completion.to_headers {
                self.to_headers.record(micros(to_headers));
            }
            #[cfg(feature = "alloc")]
            if let Some(bytes) = completion.allocated {
                self.allocated.record(bytes);
            }
        }
        let shard = self.counters.shard();
        shard.add(completion.outcome.index(), 1);
        if let Some(status) = completion.status {
            shard.add(status_index(status), 1);
        }
    }

    /// A request that [`RouteEntry::started`] but is kept out of the statistics: releases its in-flight count.
    pub(crate) fn forget(&self) {
        if self.mode == RouteMode::Full {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Completed requests on this route.
    pub(crate) fn count(&self) -> u64 {
        (0..OUTCOMES).map(|index| self.counters.sum(index)).sum()
    }

    pub(crate) fn in_flight(&self) -> u64 {
        u64::try_from(self.in_flight.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Values recorded above the histogram range, over all series.
    pub(crate) fn clamped(&self) -> u64 {
        self.latency.clamped() + self.to_headers.clamped() + self.streams.clamped()
    }

    /// The latency (call to end of body) histograms a fleet publish carries: the lifetime one with its exact
    /// count, sum and maximum, and the last five minutes. `None` for count-only routes and routes without a
    /// latency sample.
    #[cfg(feature = "redis")]
    pub(crate) fn latency_histograms(&self, now_slot: u64) -> Option<RouteHistograms> {
        let (count, sum_us, max_us) = self.latency.totals();
        if self.mode == RouteMode::CountOnly || count == 0 {
            return None;
        }
        Some(RouteHistograms {
            method: self.method,
            route: self.route.clone(),
            lifetime: self.latency.to_histogram(),
            sum_us,
            max_us,
            window_5m: self
                .windows
                .window(&self.latency, now_slot, 5 * 60 / SLOT_SECS),
        })
    }

    pub(crate) fn snapshot(&self, now_slot: u64) -> RouteStats {
        let mut counters = vec![0u64; STATUS_BASE + STATUS_SLOTS];
        self.counters.sum_into(0, &mut counters);
        let outcomes = Outcomes {
            ok: counters[Outcome::Ok.index()],
            client_error: counters[Outcome::ClientError.index()],
            server_error: counters[Outcome::ServerError.index()],
            cancelled: counters[Outcome::Cancelled.index()],
            aborted: counters[Outcome::Aborted.index()],
            panic: counters[Outcome::Panic.index()],
            timeout: counters[Outcome::Timeout.index()],
        };
        let count: u64 = counters[..OUTCOMES].iter().sum();
        let errors = [
            Outcome::ServerError,
            Outcome::Cancelled,
            Outcome::Aborted,
            Outcome::Panic,
            Outcome::Timeout,
        ]
        .iter()
        .map(|outcome| counters[outcome.index()])
        .sum();
        let statuses = counters[STATUS_BASE..]
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(offset, count)| {
                let status = if offset == STATUS_SLOTS - 1 {
                    0
                } else {
                    offset as u16 + 100
                };
                (status, *count)
            })
            .collect();

        let lifetime_histogram = self.latency.to_histogram();
        let (_, sum_us, max_us) = self.latency.totals();
        let lifetime = percentiles(&lifetime_histogram, Some((sum_us, max_us)));
        let per_minute = 60 / SLOT_SECS;
        let latency = LatencyWindows {
            lifetime,
            window_1m: percentiles(
                &self.windows.window(&self.latency, now_slot, per_minute),
                None,
            ),
            window_5m: percentiles(
                &self.windows.window(&self.latency, now_slot, 5 * per_minute),
                None,
            ),
        };
        let cumulative = |bounds: &[f64]| {
            bounds
                .iter()
                .map(|&le_secs| {
                    let bound = (le_secs * 1_000_000.0).round() as u64;
                    Bucket {
                        le_secs,
                        count: count_at_or_below(&lifetime_histogram, bound),
                    }
                })
                .collect::<Vec<_>>()
        };
        let buckets = cumulative(&BUCKET_BOUNDS_SECS);
        let distribution = cumulative(&DISTRIBUTION_BOUNDS_SECS);
        let (_, header_sum, header_max) = self.to_headers.totals();
        let (_, stream_sum, stream_max) = self.streams.totals();
        RouteStats {
            method: self.method.as_str().to_owned(),
            route: self.route.to_string(),
            count,
            errors,
            in_flight: self.in_flight(),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            p50_ms: lifetime.p50_ms,
            p90_ms: lifetime.p90_ms,
            p95_ms: lifetime.p95_ms,
            p99_ms: lifetime.p99_ms,
            p999_ms: lifetime.p999_ms,
            max_ms: lifetime.max_ms,
            mean_ms: lifetime.mean_ms,
            latency,
            time_to_headers: percentiles(
                &self.to_headers.to_histogram(),
                Some((header_sum, header_max)),
            ),
            streams: percentiles(&self.streams.to_histogram(), Some((stream_sum, stream_max))),
            statuses,
            outcomes,
            buckets,
            distribution,
            sum_secs: sum_us as f64 / 1_000_000.0,
            #[cfg(feature = "alloc")]
            allocated_bytes: crate::monitor::alloc::allocated_bytes(&self.allocated),
            #[cfg(not(feature = "alloc"))]
            allocated_bytes: None,
        }
    }
}

/// Samples at or below `bound` micros. A bin that straddles the bound counts as below it when its lowest value is.
fn count_at_or_below(histogram: &Histogram<u64>, bound: u64) -> u64 {
    histogram
        .iter_recorded()
        .filter(|v| histogram.lowest_equivalent(v.value_iterated_to()) <= bound)
        .map(|v| v.count_at_value())
        .sum()
}

/// Percentiles of `histogram`; `exact` gives the exact sum and maximum (micros) when they were tracked.
pub(crate) fn percentiles(histogram: &Histogram<u64>, exact: Option<(u64, u64)>) -> Percentiles {
    let count = histogram.len();
    if count == 0 {
        return Percentiles::default();
    }
    let (mean_ms, max_ms) = match exact {
        Some((sum, max)) => (ms(sum) / count as f64, ms(max)),
        None => (histogram.mean() / 1_000.0, ms(histogram.max())),
    };
    // Quantiles report a bin's highest value; never above the exact maximum.
    let at = |quantile: f64| ms(histogram.value_at_quantile(quantile)).min(max_ms);
    Percentiles {
        count,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms,
        mean_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> RouteEntry {
        RouteEntry::new(
            MethodLabel::Get,
            Arc::from("/api/products/{id}"),
            RouteMode::Full,
            Duration::from_secs(1),
            Layout::new(60_000_000, 2),
            0,
        )
    }

    fn completion(total_ms: u64, status: u16) -> Completion {
        Completion {
            total: Duration::from_millis(total_ms),
            to_headers: Some(Duration::from_millis(total_ms / 2)),
            status: Some(status),
            outcome: Outcome::of_status(status),
            stream: false,
            slot: 0,
            #[cfg(feature = "alloc")]
            allocated: Some(total_ms << 10),
        }
    }

    #[test]
    fn counts_statuses_outcomes_and_percentiles() {
        let entry = entry();
        for total in 1..=100 {
            entry.started();
            entry.finished(&completion(total, if total % 10 == 0 { 500 } else { 200 }));
        }
        let stats = entry.snapshot(0);
        assert_eq!(stats.count, 100);
        assert_eq!(stats.errors, 10);
        assert_eq!(stats.in_flight, 0);
        assert_eq!(stats.peak_in_flight, 1);
        assert_eq!(stats.statuses.get(&200), Some(&90));
        assert_eq!(stats.statuses.get(&500), Some(&10));
        assert_eq!(stats.outcomes.server_error, 10);
        assert!((stats.p50_ms - 50.0).abs() <= 0.5, "{}", stats.p50_ms);
        assert!((stats.p99_ms - 99.0).abs() <= 1.0, "{}", stats.p99_ms);
        assert_eq!(stats.max_ms, 100.0);
        assert!((stats.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(stats.latency.window_1m.count, 100);
        assert_eq!(stats.buckets.last().map(|b| b.count), Some(100));
        assert_eq!(
            stats
                .buckets
                .iter()
                .find(|b| b.le_secs == 0.05)
                .map(|b| b.count),
            Some(50)
        );
    }

    #[test]
    fn distribution_is_cumulative_on_a_finer_scale() {
        let entry = entry();
        for total in [1, 1, 3, 15, 700] {
            entry.started();
            entry.finished(&completion(total, 200));
        }
        let stats = entry.snapshot(0);
        let at = |le_secs: f64| {
            stats
                .distribution
                .iter()
                .find(|b| b.le_secs == le_secs)
                .map(|b| b.count)
        };
        assert_eq!(stats.distribution.len(), DISTRIBUTION_BOUNDS_SECS.len());
        assert_eq!(
            (at(0.0005), at(0.001), at(0.005), at(0.02), at(1.0)),
            (Some(0), Some(2), Some(3), Some(4), Some(5))
        );
        assert!(
            stats
                .distribution
                .windows(2)
                .all(|w| w[0].le_secs < w[1].le_secs && w[0].count <= w[1].count)
        );
    }

    #[test]
    fn streams_stay_out_of_latency_percentiles() {
        let entry = entry();
        entry.started();
        entry.finished(&Completion {
            stream: true,
            ..completion(30_000, 200)
        });
        let stats = entry.snapshot(0);
        assert_eq!(stats.count, 1);
        assert_eq!(stats.latency.lifetime.count, 0);
        assert_eq!(stats.streams.count, 1);
        assert_eq!(stats.max_ms, 0.0);
    }

    #[test]
    fn odd_statuses_share_one_counter() {
        let entry = entry();
        entry.finished(&completion(1, 999));
        assert_eq!(entry.snapshot(0).statuses.get(&0), Some(&1));
        assert_eq!(status_index(99), status_index(600));
    }
}
