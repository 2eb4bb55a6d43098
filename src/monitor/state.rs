//! The state one monitor shares between its layer clones and its read side.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::context::RequestContext;
use crate::monitor::config::MonitorConfig;
use crate::monitor::live::{LiveRequests, LiveToken};
use crate::monitor::registry::Registry;
use crate::monitor::route_entry::{Completion, Outcome, RouteEntry};
use crate::monitor::slow::SlowLog;
use crate::monitor::windows::SLOT_SECS;
use crate::snapshot::{HungRequest, OverflowStats, PhaseTiming, RouteStats, SlowRequest};

/// Everything one monitor records into.
#[derive(Debug)]
pub(crate) struct MonitorState {
    pub(crate) config: Arc<MonitorConfig>,
    pub(crate) registry: Registry,
    pub(crate) live: LiveRequests,
    pub(crate) slow: SlowLog,
    epoch: Instant,
    epoch_unix_ms: u64,
    in_flight: AtomicI64,
    peak_in_flight: AtomicU64,
    requests_total: AtomicU64,
    pub(crate) request_ids_rejected: AtomicU64,
    #[cfg(feature = "alloc")]
    large_allocations: crate::monitor::alloc::LargeAllocations,
}

/// The monitor's part of a snapshot.
#[derive(Debug)]
pub(crate) struct MonitorView {
    pub(crate) in_flight: u64,
    pub(crate) peak_in_flight: u64,
    pub(crate) requests_total: u64,
    pub(crate) routes: Vec<RouteStats>,
    pub(crate) slow_requests: Vec<SlowRequest>,
    pub(crate) slow_requests_total: u64,
    pub(crate) hung_requests: Vec<HungRequest>,
    pub(crate) overflow: OverflowStats,
    pub(crate) uptime: Duration,
    pub(crate) now_unix_ms: u64,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

impl MonitorState {
    pub(crate) fn new(config: MonitorConfig) -> Self {
        let config = Arc::new(config);
        let epoch_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        MonitorState {
            registry: Registry::new(config.clone()),
            live: LiveRequests::default(),
            slow: SlowLog::new(config.slow_log_capacity, config.slow_warnings_per_minute),
            #[cfg(feature = "alloc")]
            large_allocations: crate::monitor::alloc::LargeAllocations::new(
                config.slow_warnings_per_minute,
            ),
            config,
            epoch: Instant::now(),
            epoch_unix_ms,
            in_flight: AtomicI64::new(0),
            peak_in_flight: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            request_ids_rejected: AtomicU64::new(0),
        }
    }

    /// Milliseconds since the Unix epoch at `at`, derived from the monotonic clock (no system call).
    pub(crate) fn unix_ms(&self, at: Instant) -> u64 {
        self.epoch_unix_ms
            + u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(0)
    }

    /// Whether requests are charged their allocations: feature `alloc`, the setting on, and the counting
    /// allocator installed.
    #[inline]
    pub(crate) fn attributes_allocations(&self) -> bool {
        #[cfg(feature = "alloc")]
        {
            self.config.count_allocations && crate::alloc::is_installed()
        }
        #[cfg(not(feature = "alloc"))]
        {
            false
        }
    }

    /// Window slot of `at`.
    pub(crate) fn slot(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs() / SLOT_SECS
    }

    /// A request started: global gauges and the live table.
    pub(crate) fn request_started(&self, context: &RequestContext) -> LiveToken {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.in_flight.fetch_add(1, Ordering::Relaxed) + 1).unwrap_or(0);
        if now > self.peak_in_flight.load(Ordering::Relaxed) {
            self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        }
        self.live.insert(context.clone())
    }

    /// A request ended: records it on its route, checks the slow threshold, releases the gauges.
    pub(crate) fn request_finished(
        &self,
        context: &RequestContext,
        token: LiveToken,
        completion: Completion,
    ) {
        self.live.remove(token);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let entry: Arc<RouteEntry> = match context.route_entry() {
            Some(entry) => entry.clone(),
            None => {
                // No layer resolved a route: the request matched none. Its route in-flight starts now.
                let entry = self.registry.unmatched(context.method());
                entry.started();
                entry
            }
        };
        if context.is_excluded() {
            entry.forget();
            return;
        }
        entry.finished(&completion);
        #[cfg(feature = "alloc")]
        if let Some(bytes) = completion.allocated
            && bytes > self.config.allocation_warning_bytes
        {
            let finished = context.start() + completion.total;
            let minute = finished.saturating_duration_since(self.epoch).as_secs() / 60;
            self.large_allocations.warn(
                context,
                &entry,
                bytes,
                self.config.allocation_warning_bytes,
                minute,
            );
        }
        if !completion.stream && completion.total >= entry.slow_threshold {
            self.record_slow(context, &entry, &completion);
        }
    }

    #[cold]
    fn record_slow(&self, context: &RequestContext, entry: &RouteEntry, completion: &Completion) {
        let mut phases = Vec::new();
        context.for_each_phase(|name, total| {
            phases.push(PhaseTiming {
                name: name.to_owned(),
                duration_ms: millis(total),
            })
        });
        let finished = context.start() + completion.total;
        let request = SlowRequest {
            request_id: context.request_id().as_str().to_owned(),
            method: entry.method.as_str().to_owned(),
            route: entry.route.to_string(),
            status: completion.status,
            outcome: completion.outcome.as_str().to_owned(),
            duration_ms: millis(completion.total),
            phases,
            user_id: context.user_id().map(str::to_owned),
            finished_at_unix_ms: self.unix_ms(finished),
        };
        let minute = finished.saturating_duration_since(self.epoch).as_secs() / 60;
        self.slow.push(request, minute);
    }

    /// Milliseconds since the Unix epoch when the monitor was built.
    #[cfg(feature = "redis")]
    pub(crate) fn started_unix_ms(&self) -> u64 {
        self.epoch_unix_ms
    }

    /// Latency histograms of every measured route at `now`, for a fleet publish.
    #[cfg(feature = "redis")]
    pub(crate) fn latency_histograms(
        &self,
        now: Instant,
    ) -> Vec<crate::monitor::route_entry::RouteHistograms> {
        let slot = self.slot(now);
        self.registry
            .entries()
            .iter()
            .filter_map(|entry| entry.latency_histograms(slot))
            .collect()
    }

    /// Records one finished request of `latency` on `method` `route` as the layer would, without a request:
    /// lets tests and benches feed known distributions.
    pub(crate) fn record_sample(
        &self,
        method: crate::route::MethodLabel,
        route: &str,
        latency: Duration,
        status: u16,
    ) {
        let now = Instant::now();
        let Some(entry) = self.registry.route(method, route, self.slot(now)) else {
            return;
        };
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        entry.started();
        entry.finished(&Completion {
            total: latency,
            to_headers: Some(latency),
            status: Some(status),
            outcome: Outcome::of_status(status),
            stream: false,
            slot: self.slot(now),
            #[cfg(feature = "alloc")]
            allocated: None,
        });
    }

    /// Reads everything at `now`.
    pub(crate) fn view(&self, now: Instant) -> MonitorView {
        let slot = self.slot(now);
        let mut routes: Vec<RouteStats> = self
            .registry
            .entries()
            .iter()
            .filter(|entry| entry.count() > 0 || entry.in_flight() > 0)
            .map(|entry| entry.snapshot(slot))
            .collect();
        routes.sort_by(|a, b| (&a.route, &a.method).cmp(&(&b.route, &b.method)));
        let mut hung_requests = Vec::new();
        self.live.for_each(|context| {
            let age = now.saturating_duration_since(context.start());
            if age >= self.config.hung_threshold && !context.is_excluded() {
                hung_requests.push(HungRequest {
                    request_id: context.request_id().as_str().to_owned(),
                    method: context.method().as_str().to_owned(),
                    route: context
                        .route()
                        .unwrap_or(crate::route::UNMATCHED_ROUTE)
                        .to_owned(),
                    age_ms: millis(age),
                });
            }
        });
        hung_requests.sort_by(|a, b| b.age_ms.total_cmp(&a.age_ms));
        MonitorView {
            in_flight: u64::try_from(self.in_flight.load(Ordering::Relaxed)).unwrap_or(0),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            requests_total: self.requests_total.load(Ordering::Relaxed),
            routes,
            slow_requests: self.slow.recent(),
            slow_requests_total: self.slow.total(),
            hung_requests,
            overflow: OverflowStats {
                route_overflow_requests: self.registry.overflow_requests(),
                request_ids_rejected: self.request_ids_rejected.load(Ordering::Relaxed),
                slow_warnings_suppressed: self.slow.suppressed(),
                latency_clamped: self
                    .registry
                    .entries()
                    .iter()
                    .map(|entry| entry.clamped())
                    .sum(),
                #[cfg(feature = "alloc")]
                allocation_warnings_suppressed: self.large_allocations.suppressed(),
                #[cfg(not(feature = "alloc"))]
                allocation_warnings_suppressed: 0,
            },
            uptime: now.saturating_duration_since(self.epoch),
            now_unix_ms: self.unix_ms(now),
        }
    }
}

impl Outcome {
    /// The outcome of a tracker dropped before it finished: panicking, after headers, or before.
    pub(crate) fn of_drop(headers_sent: bool) -> Self {
        if std::thread::panicking() {
            Outcome::Panic
        } else if headers_sent {
            Outcome::Aborted
        } else {
            Outcome::Cancelled
        }
    }
}
