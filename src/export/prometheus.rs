//! Prometheus text exposition (format 0.0.4) of a [`Snapshot`].
//!
//! [`render`] turns a snapshot into the body of a `/metrics` response. Serve it with the content type
//! `text/plain; version=0.0.4; charset=utf-8`.
//!
//! # Names
//!
//! Metric and label names follow the OpenTelemetry HTTP semantic conventions, converted the Prometheus way
//! (dots become underscores, the unit becomes a suffix): `http.server.request.duration` in seconds is
//! `http_server_request_duration_seconds`, `http.request.method` is `http_request_method`, `http.route` is
//! `http_route`. Metrics that have no semantic convention carry the `perfscope_` prefix. `docs/schema.md`
//! lists every family with its type and labels.
//!
//! # Label values
//!
//! Per-route series carry `http_request_method` (one of the nine standard methods or `_OTHER`) and
//! `http_route` (the route template, `<unmatched>` or `<overflow>`; never the raw request path). Request
//! IDs, user IDs and phase names never appear in the output. Every label value is escaped as the format
//! requires (`\` as `\\`, `"` as `\"`, line feed as `\n`), so no route template, however odd, can end a
//! line, close a label or inject a series.
//!
//! # Shape
//!
//! Each family's `# HELP` and `# TYPE` lines appear exactly once, also when there are no routes, and all
//! samples of a family follow them without interruption. Samples carry no timestamps: Prometheus stamps them
//! at scrape time.

use std::fmt::{self, Write};

use crate::snapshot::{Percentiles, RouteStats, Snapshot};

mod connections;

const DURATION: &str = "http_server_request_duration_seconds";
const ACTIVE: &str = "http_server_active_requests";
const RESPONSES: &str = "perfscope_http_server_responses_total";
const OUTCOMES: &str = "perfscope_http_server_outcomes_total";
const TIME_TO_HEADERS: &str = "perfscope_http_server_time_to_headers_seconds";
const STREAM_DURATION: &str = "perfscope_http_server_stream_duration_seconds";
const IN_FLIGHT: &str = "perfscope_http_server_in_flight_requests";
const PEAK_IN_FLIGHT: &str = "perfscope_http_server_peak_in_flight_requests";
const REQUESTS: &str = "perfscope_http_server_requests_total";
const ROUTE_OVERFLOW: &str = "perfscope_route_overflow_requests_total";
const IDS_REJECTED: &str = "perfscope_request_ids_rejected_total";
const SLOW_SUPPRESSED: &str = "perfscope_slow_requests_suppressed_warnings_total";
const HUNG: &str = "perfscope_hung_requests";
const UPTIME: &str = "perfscope_uptime_seconds";
const ALLOCATED: &str = "perfscope_http_server_request_allocated_bytes";
const ALLOCATION_WARNINGS_SUPPRESSED: &str = "perfscope_allocation_warnings_suppressed_total";
/// The name Prometheus client libraries give the same figure, so existing dashboards find it.
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

/// Summary quantile label values with the matching figures of `p`, in seconds.
fn quantiles(p: &Percentiles) -> [(&'static str, f64); 5] {
    [
        ("0.5", ms_to_secs(p.p50_ms)),
        ("0.9", ms_to_secs(p.p90_ms)),
        ("0.95", ms_to_secs(p.p95_ms)),
        ("0.99", ms_to_secs(p.p99_ms)),
        ("0.999", ms_to_secs(p.p999_ms)),
    ]
}

/// Milliseconds to seconds, rounded to whole microseconds (the resolution perfscope records at), so that
/// 13.8 ms is written `0.0138` rather than `0.013800000000000002`.
fn ms_to_secs(ms: f64) -> f64 {
    (ms * 1_000.0).round() / 1_000_000.0
}

/// Renders `snapshot` in the Prometheus text exposition format, version 0.0.4.
///
/// The output lists, in this order: the request-duration histogram, the active-requests gauge, the response
/// and outcome counters, the time-to-headers and stream-duration summaries (only for routes that recorded
/// any), then the process-wide gauges and counters; when requests are charged their allocations (feature
/// `alloc`), the allocated-bytes summary; the process's resident memory where it is known (Linux); then the
/// cache and query families. `docs/schema.md` documents every family.
///
/// ```
/// # #[cfg(feature = "monitor")] {
/// let perf = perfscope::Perfscope::builder().build().unwrap();
/// let text = perfscope::export::prometheus(&perf.snapshot());
/// assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
/// # }
/// ```
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(estimated_len(snapshot));
    // `fmt::Write for String` never returns an error, so there is nothing to handle here.
    let _ = write_snapshot(&mut out, snapshot);
    out
}

/// A rough upper estimate of the output size, so the buffer grows at most a couple of times.
fn estimated_len(snapshot: &Snapshot) -> usize {
    let per_route: usize = snapshot
        .routes
        .iter()
        .map(|r| {
            let lines = r.buckets.len() + r.statuses.len() + 30;
            lines * (110 + r.method.len() + r.route.len())
        })
        .sum();
    4096 + per_route
}

fn write_snapshot(out: &mut String, snapshot: &Snapshot) -> fmt::Result {
    let routes = &snapshot.routes;

    header(
        out,
        DURATION,
        "histogram",
        "Duration of HTTP server requests, from the call to the end of the response body \
         (streamed responses excluded).",
    )?;
    for route in routes {
        write_histogram(out, route)?;
    }

    header(
        out,
        ACTIVE,
        "gauge",
        "Number of HTTP server requests in flight per route.",
    )?;
    for route in routes {
        series(out, ACTIVE, "", route)?;
        value(out, route.in_flight)?;
    }

    header(
        out,
        RESPONSES,
        "counter",
        "HTTP server responses per status code.",
    )?;
    for route in routes {
        for (status, count) in &route.statuses {
            series(out, RESPONSES, "", route)?;
            write!(out, ",http_response_status_code=\"{status}\"")?;
            value(out, *count)?;
        }
    }

    header(
        out,
        OUTCOMES,
        "counter",
        "Completed HTTP server requests per outcome \
         (ok, client_error, server_error, cancelled, aborted, panic, timeout).",
    )?;
    for route in routes {
        let o = &route.outcomes;
        for (outcome, count) in [
            ("ok", o.ok),
            ("client_error", o.client_error),
            ("server_error", o.server_error),
            ("cancelled", o.cancelled),
            ("aborted", o.aborted),
            ("panic", o.panic),
            ("timeout", o.timeout),
        ] {
            series(out, OUTCOMES, "", route)?;
            write!(out, ",outcome=\"{outcome}\"")?;
            value(out, count)?;
        }
    }

    header(
        out,
        TIME_TO_HEADERS,
        "summary",
        "Time from the call to the response headers; _sum is approximate (mean times count).",
    )?;
    for route in routes {
        write_summary(out, TIME_TO_HEADERS, route, &route.time_to_headers)?;
    }

    header(
        out,
        STREAM_DURATION,
        "summary",
        "Lifetime of streamed responses (event streams, upgrades); _sum is approximate (mean times count).",
    )?;
    for route in routes {
        write_summary(out, STREAM_DURATION, route, &route.streams)?;
    }

    global(
        out,
        IN_FLIGHT,
        "gauge",
        "HTTP server requests in flight across all routes.",
        snapshot.in_flight,
    )?;
    global(
        out,
        PEAK_IN_FLIGHT,
        "gauge",
        "Highest number of HTTP server requests in flight at once since start.",
        snapshot.peak_in_flight,
    )?;
    global(
        out,
        REQUESTS,
        "counter",
        "HTTP server requests seen, including excluded routes.",
        snapshot.requests_total,
    )?;
    global(
        out,
        ROUTE_OVERFLOW,
        "counter",
        "Requests counted under the <overflow> route because the route limit was reached.",
        snapshot.overflow.route_overflow_requests,
    )?;
    global(
        out,
        IDS_REJECTED,
        "counter",
        "Inbound request IDs rejected and replaced by a generated one.",
        snapshot.overflow.request_ids_rejected,
    )?;
    global(
        out,
        SLOW_SUPPRESSED,
        "counter",
        "Slow-request warnings not logged because of the rate limit.",
        snapshot.overflow.slow_warnings_suppressed,
    )?;
    global(
        out,
        HUNG,
        "gauge",
        "Requests in flight for longer than the hung threshold.",
        snapshot.hung_requests.len(),
    )?;
    global(
        out,
        UPTIME,
        "gauge",
        "Seconds since perfscope started.",
        Float(snapshot.uptime_secs),
    )?;
    if snapshot.settings.allocation_warning_bytes.is_some()
        || routes.iter().any(|route| route.allocated_bytes.is_some())
    {
        write_allocations(out, snapshot)?;
    }
    if let Some(bytes) = snapshot.process.resident_memory_bytes {
        global(
            out,
            RESIDENT_MEMORY,
            "gauge",
            "Resident memory size in bytes.",
            bytes,
        )?;
    }
    connections::write_process_files(out, &snapshot.process)?;
    if !snapshot.connections.listeners.is_empty() {
        connections::write_connections(out, &snapshot.connections)?;
    }
    #[cfg(feature = "cache")]
    if !snapshot.caches.is_empty() {
        write_caches(out, &snapshot.caches)?;
    }
    #[cfg(feature = "query")]
    if snapshot.queries.requests > 0 || snapshot.queries.unattributed_queries > 0 {
        write_queries(out, &snapshot.queries)?;
    }
    Ok(())
}

/// The query analyzer's families, written once it has seen a request or a query: per-route counters and the queries-per-request summary, then the
/// process-wide ones. Labels as the HTTP families (`http_request_method`, `http_route`); statements never
/// appear in the output.
#[cfg(feature = "query")]
fn write_queries(out: &mut String, queries: &crate::query::QueryStatsSnapshot) -> fmt::Result {
    use crate::query::RouteQueryStats;

    fn start(out: &mut String, name: &str, suffix: &str, route: &RouteQueryStats) -> fmt::Result {
        route_series(out, name, suffix, &route.method, &route.route)
    }
    type Read = fn(&RouteQueryStats) -> f64;
    let per_route: [(&str, &str, &str, Read); 5] = [
        (
            "perfscope_db_requests_total",
            "counter",
            "Requests whose queries were analysed.",
            |r| r.requests as f64,
        ),
        (
            "perfscope_db_queries_total",
            "counter",
            "Database queries run by requests.",
            |r| r.queries as f64,
        ),
        (
            "perfscope_db_query_duration_seconds_total",
            "counter",
            "Time spent in database queries, seconds.",
            |r| ms_to_secs(r.db_time_ms),
        ),
        (
            "perfscope_db_time_share",
            "gauge",
            "Query time over request time (0 to 1).",
            |r| r.db_time_share,
        ),
        (
            "perfscope_db_n_plus_one_requests_total",
            "counter",
            "Requests with at least one query loop (an N+1 or MN+1 finding).",
            |r| r.n_plus_one_requests as f64,
        ),
    ];
    for (name, kind, help, read) in per_route {
        header(out, name, kind, help)?;
        for route in &queries.routes {
            start(out, name, "", route)?;
            value(out, read(route))?;
        }
    }
    const PER_REQUEST: &str = "perfscope_db_queries_per_request";
    header(out, PER_REQUEST, "summary", "Queries per request.")?;
    for route in &queries.routes {
        let q = &route.queries_per_request;
        for (quantile, v) in [("0.5", q.p50), ("0.95", q.p95), ("1", q.max)] {
            start(out, PER_REQUEST, "", route)?;
            write!(out, ",quantile=\"{quantile}\"")?;
            value(out, v)?;
        }
        start(out, PER_REQUEST, "_sum", route)?;
        value(out, route.queries)?;
        start(out, PER_REQUEST, "_count", route)?;
        value(out, route.requests)?;
    }
    global(
        out,
        "perfscope_db_unattributed_queries_total",
        "counter",
        "Queries that ran outside any request.",
        queries.unattributed_queries,
    )?;
    global(
        out,
        "perfscope_db_fingerprints",
        "gauge",
        "Distinct statement fingerprints remembered.",
        queries.fingerprints,
    )?;
    global(
        out,
        "perfscope_db_fingerprint_evictions_total",
        "counter",
        "Fingerprints forgotten to stay within the bound.",
        queries.fingerprint_evictions,
    )?;
    global(
        out,
        "perfscope_db_findings",
        "gauge",
        "Distinct findings (N+1, duplicates, slow queries, ...) currently kept.",
        queries.findings.len(),
    )
}

/// The cache families, written only when at least one cache is registered. Labels: `cache` (the cache's
/// name), and for per-namespace series `namespace` (the first part of a structured key; bounded).
#[cfg(feature = "cache")]
fn write_caches(out: &mut String, caches: &[crate::cache::CacheStatsSnapshot]) -> fmt::Result {
    fn start(out: &mut String, name: &str, suffix: &str, cache: &str) -> fmt::Result {
        out.write_str(name)?;
        out.write_str(suffix)?;
        out.write_str("{cache=\"")?;
        escape(out, cache, true)?;
        out.write_char('"')
    }
    const LOOKUPS: &str = "perfscope_cache_lookups_total";
    header(
        out,
        LOOKUPS,
        "counter",
        "Cache lookups per result (hit, miss, stale_hit, fail_safe_hit).",
    )?;
    for c in caches {
        for (result, n) in [
            ("hit", c.hits),
            ("miss", c.misses),
            ("stale_hit", c.stale_hits),
            ("fail_safe_hit", c.fail_safe_hits),
        ] {
            start(out, LOOKUPS, "", &c.name)?;
            write!(out, ",result=\"{result}\"")?;
            value(out, n)?;
        }
    }
    const NAMESPACE_LOOKUPS: &str = "perfscope_cache_namespace_lookups_total";
    header(
        out,
        NAMESPACE_LOOKUPS,
        "counter",
        "Cache lookups per key namespace and result.",
    )?;
    for c in caches {
        for ns in &c.namespaces {
            for (result, n) in [
                ("hit", ns.hits),
                ("miss", ns.misses),
                ("stale_hit", ns.stale_hits),
            ] {
                start(out, NAMESPACE_LOOKUPS, "", &c.name)?;
                out.write_str(",namespace=\"")?;
                escape(out, &ns.namespace, true)?;
                write!(out, "\",result=\"{result}\"")?;
                value(out, n)?;
            }
        }
    }
    type Read = fn(&crate::cache::CacheStatsSnapshot) -> f64;
    let per_cache: [(&str, &str, &str, Read); 6] = [
        (
            "perfscope_cache_loads_total",
            "counter",
            "Loader runs (misses and background refreshes).",
            |c| c.loads as f64,
        ),
        (
            "perfscope_cache_load_failures_total",
            "counter",
            "Loader runs that failed or panicked.",
            |c| c.load_failures as f64,
        ),
        (
            "perfscope_cache_coalesced_total",
            "counter",
            "Callers that waited for another caller's load.",
            |c| c.coalesced as f64,
        ),
        (
            "perfscope_cache_entries",
            "gauge",
            "Entries in the cache.",
            |c| c.entries as f64,
        ),
        (
            "perfscope_cache_weighted_bytes",
            "gauge",
            "Weighted size of the cache's entries, bytes.",
            |c| c.weighted_bytes as f64,
        ),
        (
            "perfscope_cache_hit_ratio",
            "gauge",
            "Served lookups (hits and stale hits) over all lookups.",
            |c| c.hit_ratio,
        ),
    ];
    for (name, kind, help, read) in per_cache {
        header(out, name, kind, help)?;
        for c in caches {
            start(out, name, "", &c.name)?;
            value(out, Float(read(c)))?;
        }
    }
    const EVICTIONS: &str = "perfscope_cache_evictions_total";
    header(
        out,
        EVICTIONS,
        "counter",
        "Entries removed, by cause (size, expired, explicit, tag).",
    )?;
    for c in caches {
        let e = &c.evictions;
        for (cause, n) in [
            ("size", e.size),
            ("expired", e.expired),
            ("explicit", e.explicit),
            ("tag", e.tag),
        ] {
            start(out, EVICTIONS, "", &c.name)?;
            write!(out, ",cause=\"{cause}\"")?;
            value(out, n)?;
        }
    }
    const LOAD_DURATION: &str = "perfscope_cache_load_duration_seconds";
    header(
        out,
        LOAD_DURATION,
        "histogram",
        "Time spent in cache loaders.",
    )?;
    for c in caches {
        let mut last_le = f64::NEG_INFINITY;
        let mut cumulative = 0_u64;
        for bucket in &c.load_time_buckets {
            if !bucket.le_secs.is_finite() || bucket.le_secs <= last_le {
                continue;
            }
            last_le = bucket.le_secs;
            cumulative = cumulative.max(bucket.count);
            start(out, LOAD_DURATION, "_bucket", &c.name)?;
            write!(out, ",le=\"{}\"", Float(bucket.le_secs))?;
            value(out, cumulative)?;
        }
        let count = c.load_time.count.max(cumulative);
        start(out, LOAD_DURATION, "_bucket", &c.name)?;
        out.write_str(",le=\"+Inf\"")?;
        value(out, count)?;
        start(out, LOAD_DURATION, "_sum", &c.name)?;
        value(out, Float(c.load_time_sum_secs))?;
        start(out, LOAD_DURATION, "_count", &c.name)?;
        value(out, count)?;
    }
    write_second_levels(out, caches, start)
}

/// The second-level families, for the caches that have one (feature `redis`). The figures of the node's
/// level (calls, breaker, bus) repeat on each cache attached to it: aggregate them with `max by (instance)`.
#[cfg(feature = "cache")]
fn write_second_levels(
    out: &mut String,
    caches: &[crate::cache::CacheStatsSnapshot],
    start: fn(&mut String, &str, &str, &str) -> fmt::Result,
) -> fmt::Result {
    use crate::cache::SecondLevelStats;
    let with_l2: Vec<(&str, &SecondLevelStats)> = caches
        .iter()
        .filter_map(|c| c.second_level.as_ref().map(|l2| (c.name.as_str(), l2)))
        .collect();
    if with_l2.is_empty() {
        return Ok(());
    }
    type Labelled = fn(&SecondLevelStats) -> Vec<(&'static str, f64)>;
    let families: [(&str, &str, &str, &str, Labelled); 9] = [
        (
            "perfscope_cache_l2_lookups_total",
            "counter",
            "L1 misses looked up in the second level, by result (hit, miss).",
            "result",
            |l| vec![("hit", l.hits as f64), ("miss", l.misses as f64)],
        ),
        (
            "perfscope_cache_l2_discarded_total",
            "counter",
            "Second-level entries found but not used, by reason (rejected: invalidated or expired; corrupt: unreadable).",
            "reason",
            |l| {
                vec![
                    ("rejected", l.rejected as f64),
                    ("corrupt", l.corrupt as f64),
                ]
            },
        ),
        (
            "perfscope_cache_l2_calls_total",
            "counter",
            "Calls to the second-level store, by outcome (ok, error, timeout), and calls skipped while the breaker was open.",
            "outcome",
            |l| {
                vec![
                    ("ok", l.calls.saturating_sub(l.errors + l.timeouts) as f64),
                    ("error", l.errors as f64),
                    ("timeout", l.timeouts as f64),
                    ("skipped", l.skipped as f64),
                ]
            },
        ),
        (
            "perfscope_cache_l2_breaker_state",
            "gauge",
            "The second level's circuit breaker: 1 for the current state.",
            "state",
            |l| {
                ["closed", "open", "half_open"]
                    .into_iter()
                    .map(|s| (s, f64::from(u8::from(l.breaker == s))))
                    .collect()
            },
        ),
        (
            "perfscope_cache_l2_breaker_transitions_total",
            "counter",
            "Circuit breaker transitions, by new state.",
            "to",
            |l| {
                vec![
                    ("open", l.breaker_opened as f64),
                    ("closed", l.breaker_closed as f64),
                ]
            },
        ),
        (
            "perfscope_cache_l2_writes_total",
            "counter",
            "Background writes to the second level, by result (stored, refused, dropped).",
            "result",
            |l| {
                vec![
                    ("stored", l.writes as f64),
                    ("refused", l.writes_refused as f64),
                    ("dropped", l.writes_dropped as f64),
                ]
            },
        ),
        (
            "perfscope_cache_l2_bus_messages_total",
            "counter",
            "Invalidations on the bus, by direction (sent, received), and those that could not be sent (unsent).",
            "direction",
            |l| {
                vec![
                    ("sent", l.bus_sent as f64),
                    ("received", l.bus_received as f64),
                    ("unsent", l.invalidations_unpublished as f64),
                ]
            },
        ),
        (
            "perfscope_cache_l2_bus_lag_seconds",
            "gauge",
            "Delay of received invalidations, by percentile (p50, p99).",
            "percentile",
            |l| {
                vec![
                    ("p50", l.bus_lag.p50_ms / 1e3),
                    ("p99", l.bus_lag.p99_ms / 1e3),
                ]
            },
        ),
        (
            "perfscope_cache_l2_unverified",
            "gauge",
            "Whether versions are unverified now (value: 1), and the periods so far (value of the periods series).",
            "what",
            |l| {
                vec![
                    ("now", f64::from(u8::from(l.unverified))),
                    ("periods", l.unverified_periods as f64),
                ]
            },
        ),
    ];
    for (name, kind, help, label, read) in families {
        header(out, name, kind, help)?;
        for (cache, l2) in &with_l2 {
            for (label_value, n) in read(l2) {
                start(out, name, "", cache)?;
                write!(out, ",{label}=\"{label_value}\"")?;
                value(out, Float(n))?;
            }
        }
    }
    const GAPS: &str = "perfscope_cache_l2_bus_gaps_total";
    header(
        out,
        GAPS,
        "counter",
        "Times messages of another node were found missing on the bus.",
    )?;
    for (cache, l2) in &with_l2 {
        start(out, GAPS, "", cache)?;
        value(out, l2.bus_gaps)?;
    }
    Ok(())
}

/// Bytes allocated per request (feature `alloc`): a summary per route with the median, the 95th percentile and
/// the maximum (quantile 1), its exact `_sum` and `_count`; then the warnings the rate limit held back.
fn write_allocations(out: &mut String, snapshot: &Snapshot) -> fmt::Result {
    header(
        out,
        ALLOCATED,
        "summary",
        "Bytes allocated per HTTP server request by its own task, from the call to the end of the response body.",
    )?;
    for route in &snapshot.routes {
        let Some(allocated) = &route.allocated_bytes else {
            continue;
        };
        for (quantile, bytes) in [
            ("0.5", allocated.p50),
            ("0.95", allocated.p95),
            ("1", allocated.max),
        ] {
            series(out, ALLOCATED, "", route)?;
            write!(out, ",quantile=\"{quantile}\"")?;
            value(out, bytes)?;
        }
        series(out, ALLOCATED, "_sum", route)?;
        value(out, allocated.sum)?;
        series(out, ALLOCATED, "_count", route)?;
        value(out, allocated.count)?;
    }
    global(
        out,
        ALLOCATION_WARNINGS_SUPPRESSED,
        "counter",
        "Large-allocation warnings not logged because of the rate limit.",
        snapshot.overflow.allocation_warnings_suppressed,
    )
}

/// One histogram series: cumulative buckets, `+Inf`, `_sum` and `_count`.
fn write_histogram(out: &mut String, route: &RouteStats) -> fmt::Result {
    // Prometheus needs strictly increasing finite bounds and non-decreasing counts; a bound that breaks the
    // order (or a `+Inf` bound, which is written below) is skipped and counts are carried forward, so a
    // malformed snapshot yields a valid, if coarser, histogram instead of one `histogram_quantile` rejects.
    let mut last_le = f64::NEG_INFINITY;
    let mut cumulative = 0_u64;
    for bucket in &route.buckets {
        if !bucket.le_secs.is_finite() || bucket.le_secs <= last_le {
            continue;
        }
        last_le = bucket.le_secs;
        cumulative = cumulative.max(bucket.count);
        series(out, DURATION, "_bucket", route)?;
        write!(out, ",le=\"{}\"", Float(bucket.le_secs))?;
        value(out, cumulative)?;
    }
    // The histogram holds the latencies of the percentiles (streams excluded), so its count is theirs.
    let count = route.latency.lifetime.count.max(cumulative);
    series(out, DURATION, "_bucket", route)?;
    out.write_str(",le=\"+Inf\"")?;
    value(out, count)?;
    series(out, DURATION, "_sum", route)?;
    value(out, Float(route.sum_secs))?;
    series(out, DURATION, "_count", route)?;
    value(out, count)
}

/// One summary series in seconds, written only when the distribution has samples.
fn write_summary(out: &mut String, name: &str, route: &RouteStats, p: &Percentiles) -> fmt::Result {
    if p.count == 0 {
        return Ok(());
    }
    for (quantile, secs) in quantiles(p) {
        series(out, name, "", route)?;
        write!(out, ",quantile=\"{quantile}\"")?;
        value(out, Float(secs))?;
    }
    series(out, name, "_sum", route)?;
    // Approximate: the snapshot keeps the mean, not the exact sum.
    value(out, Float(ms_to_secs(p.mean_ms * p.count as f64)))?;
    series(out, name, "_count", route)?;
    value(out, p.count)
}

/// `# HELP` and `# TYPE` lines of one family.
fn header(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    write!(out, "# HELP {name} ")?;
    escape(out, help, false)?;
    writeln!(out, "\n# TYPE {name} {kind}")
}

/// A family with a single unlabelled sample.
fn global(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    v: impl fmt::Display,
) -> fmt::Result {
    header(out, name, kind, help)?;
    out.write_str(name)?;
    out.write_char(' ')?;
    write!(out, "{v}")?;
    out.write_char('\n')
}

/// Starts a per-route sample: `name{suffix}{http_request_method="…",http_route="…"`, label set left open.
fn series(out: &mut String, name: &str, suffix: &str, route: &RouteStats) -> fmt::Result {
    route_series(out, name, suffix, &route.method, &route.route)
}

/// [`series`] from the method and route labels themselves (also for the query analyzer's per-route series).
fn route_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    method: &str,
    route: &str,
) -> fmt::Result {
    out.write_str(name)?;
    out.write_str(suffix)?;
    out.write_str("{http_request_method=\"")?;
    escape(out, method, true)?;
    out.write_str("\",http_route=\"")?;
    escape(out, route, true)?;
    out.write_char('"')
}

/// Closes the label set and writes the value and the line end.
fn value(out: &mut String, v: impl fmt::Display) -> fmt::Result {
    writeln!(out, "}} {v}")
}

/// Writes `s` escaped for a label value (`\`, `"` and line feed) or for HELP text (`\` and line feed).
///
/// The special characters are ASCII, so the slices between them always fall on `char` boundaries.
fn escape(out: &mut String, s: &str, label: bool) -> fmt::Result {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'"' if label => "\\\"",
            _ => continue,
        };
        out.write_str(&s[start..i])?;
        out.write_str(escaped)?;
        start = i + 1;
    }
    out.write_str(&s[start..])
}

/// An `f64` as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, or the shortest decimal that round-trips.
struct Float(f64);

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            // Rust's `Display` for `f64` never uses exponent notation and round-trips exactly; Go's
            // `strconv.ParseFloat`, which Prometheus uses, accepts every string it produces.
            write!(f, "{v}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::snapshot::{Bucket, LatencyWindows, Outcomes, OverflowStats};

    const FAMILIES: usize = 14;
    const GLOBALS: usize = 8;

    fn percentiles(count: u64, base_ms: f64) -> Percentiles {
        Percentiles {
            count,
            p50_ms: base_ms,
            p90_ms: base_ms * 2.0,
            p95_ms: base_ms * 3.0,
            p99_ms: base_ms * 4.0,
            p999_ms: base_ms * 5.0,
            max_ms: base_ms * 6.0,
            mean_ms: base_ms * 1.5,
        }
    }

    fn route(method: &str, template: &str) -> RouteStats {
        let lifetime = percentiles(10, 12.5);
        RouteStats {
            method: method.to_owned(),
            route: template.to_owned(),
            count: 11,
            errors: 2,
            in_flight: 1,
            peak_in_flight: 3,
            p50_ms: lifetime.p50_ms,
            p90_ms: lifetime.p90_ms,
            p95_ms: lifetime.p95_ms,
            p99_ms: lifetime.p99_ms,
            p999_ms: lifetime.p999_ms,
            max_ms: lifetime.max_ms,
            mean_ms: lifetime.mean_ms,
            latency: LatencyWindows {
                lifetime,
                window_1m: percentiles(4, 10.0),
                window_5m: percentiles(9, 11.0),
            },
            time_to_headers: percentiles(11, 2.0),
            streams: percentiles(1, 60_000.0),
            statuses: BTreeMap::from([(200, 8), (404, 1), (500, 2)]),
            outcomes: Outcomes {
                ok: 8,
                client_error: 1,
                server_error: 1,
                panic: 1,
                ..Outcomes::default()
            },
            buckets: vec![
                Bucket {
                    le_secs: 0.005,
                    count: 0,
                },
                Bucket {
                    le_secs: 0.01,
                    count: 2,
                },
                Bucket {
                    le_secs: 0.025,
                    count: 9,
                },
                Bucket {
                    le_secs: 0.1,
                    count: 10,
                },
            ],
            distribution: Vec::new(),
            sum_secs: 0.1875,
            allocated_bytes: None,
        }
    }

    fn snapshot(routes: Vec<RouteStats>) -> Snapshot {
        Snapshot {
            taken_at_unix_ms: 1_700_000_000_000,
            uptime_secs: 12.5,
            settings: crate::SettingsSnapshot {
                build: "debug",
                timing_headers: "on",
                slow_threshold_ms: 1000.0,
                hung_threshold_ms: 10_000.0,
                allocation_warning_bytes: None,
            },
            in_flight: 1,
            peak_in_flight: 3,
            requests_total: 12,
            routes,
            slow_requests: Vec::new(),
            slow_requests_total: 0,
            hung_requests: Vec::new(),
            overflow: OverflowStats {
                route_overflow_requests: 4,
                request_ids_rejected: 5,
                slow_warnings_suppressed: 6,
                latency_clamped: 0,
                allocation_warnings_suppressed: 0,
            },
            process: crate::ProcessStats::default(),
            connections: Default::default(),
            #[cfg(feature = "cache")]
            caches: Vec::new(),
            #[cfg(feature = "query")]
            queries: Default::default(),
        }
    }

    /// Sample lines a route contributes, counted from the snapshot independently of the renderer.
    fn expected_route_lines(r: &RouteStats) -> usize {
        let summary = |p: &Percentiles| if p.count > 0 { 5 + 2 } else { 0 };
        (r.buckets.len() + 3)
            + 1
            + r.statuses.len()
            + 7
            + summary(&r.time_to_headers)
            + summary(&r.streams)
    }

    /// One parsed sample line.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    impl Sample {
        fn label(&self, name: &str) -> Option<&str> {
            self.labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn is_name_start(c: char) -> bool {
        c.is_ascii_alphabetic() || c == '_' || c == ':'
    }

    fn is_name_char(c: char) -> bool {
        is_name_start(c) || c.is_ascii_digit()
    }

    /// Reads a metric or label name from the front of `s`.
    fn take_name(s: &str, label: bool) -> Result<(&str, &str), String> {
        let end = s
            .find(|c: char| !is_name_char(c) || (label && c == ':'))
            .unwrap_or(s.len());
        let name = &s[..end];
        match name.chars().next() {
            Some(c) if is_name_start(c) && !(label && c == ':') => Ok((name, &s[end..])),
            _ => Err(format!("bad name at {s:?}")),
        }
    }

    /// Reads a quoted, escaped label value; returns it unescaped and the rest after the closing quote.
    fn take_value(s: &str) -> Result<(String, &str), String> {
        let body = s
            .strip_prefix('"')
            .ok_or_else(|| format!("expected '\"' at {s:?}"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((value, &body[i + 1..])),
                '\n' => return Err("raw line feed in label value".into()),
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                c => value.push(c),
            }
        }
        Err("unterminated label value".into())
    }

    /// Parses a Prometheus float as Go's `strconv.ParseFloat` would (for the forms we may emit).
    fn parse_value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ if s
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
                && !s.is_empty() =>
            {
                s.parse().map_err(|e| format!("bad value {s:?}: {e}"))
            }
            _ => Err(format!("bad value {s:?}")),
        }
    }

    /// Strict parser for one sample line: `name{label="value",...} value`, no timestamp, no spare spaces.
    fn parse_sample(line: &str) -> Result<Sample, String> {
        let (name, mut rest) = take_name(line, false)?;
        let mut labels: Vec<(String, String)> = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                let (key, r) = take_name(rest, true)?;
                let r = r
                    .strip_prefix('=')
                    .ok_or_else(|| format!("expected '=' at {r:?}"))?;
                let (val, r) = take_value(r)?;
                if labels.iter().any(|(k, _)| k == key) {
                    return Err(format!("duplicate label {key}"));
                }
                labels.push((key.to_owned(), val));
                if let Some(r) = r.strip_prefix(',') {
                    rest = r;
                } else if let Some(r) = r.strip_prefix('}') {
                    rest = r;
                    break;
                } else {
                    return Err(format!("expected ',' or '}}' at {r:?}"));
                }
            }
        }
        let v = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("expected ' ' at {rest:?}"))?;
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value: parse_value(v)?,
        })
    }

    /// Splits the exposition into lines (on `\n` only, as Prometheus does), checks comments and
    /// returns the comment count and the parsed samples.
    fn parse(text: &str) -> Result<(usize, Vec<Sample>), String> {
        let body = text
            .strip_suffix('\n')
            .ok_or("output must end with a line feed")?;
        let mut comments = 0;
        let mut samples = Vec::new();
        for line in body.split('\n') {
            if let Some(c) = line.strip_prefix("# ") {
                let ok = c.starts_with("HELP ") || c.starts_with("TYPE ");
                if !ok {
                    return Err(format!("unexpected comment {line:?}"));
                }
                comments += 1;
            } else {
                samples.push(parse_sample(line).map_err(|e| format!("{e} in line {line:?}"))?);
            }
        }
        Ok((comments, samples))
    }

    fn value_of(samples: &[Sample], name: &str, extra: Option<(&str, &str)>) -> f64 {
        let found: Vec<_> = samples
            .iter()
            .filter(|s| s.name == name && extra.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {extra:?}: {found:?}");
        found[0].value
    }

    #[test]
    fn empty_snapshot_has_every_family_once() {
        let text = render(&snapshot(Vec::new()));
        let (comments, samples) = parse(&text).unwrap();
        assert_eq!(comments, FAMILIES * 2);
        assert_eq!(samples.len(), GLOBALS);
        for name in [
            DURATION,
            ACTIVE,
            RESPONSES,
            OUTCOMES,
            TIME_TO_HEADERS,
            STREAM_DURATION,
            IN_FLIGHT,
            UPTIME,
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
            assert_eq!(
                text.matches(&format!("# HELP {name} ")).count(),
                1,
                "{name}"
            );
        }
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE perfscope_http_server_time_to_headers_seconds summary\n"));
        assert!(text.contains("# TYPE perfscope_http_server_requests_total counter\n"));
    }

    #[test]
    fn renders_exact_lines_for_one_route() {
        let text = render(&snapshot(vec![route("GET", "/api/products/{id}")]));
        let l = r#"http_request_method="GET",http_route="/api/products/{id}""#;
        for expected in [
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 0\n"),
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"0.01\"}} 2\n"),
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"0.1\"}} 10\n"),
            format!("http_server_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 10\n"),
            format!("http_server_request_duration_seconds_sum{{{l}}} 0.1875\n"),
            format!("http_server_request_duration_seconds_count{{{l}}} 10\n"),
            format!("http_server_active_requests{{{l}}} 1\n"),
            format!(
                "perfscope_http_server_responses_total{{{l},http_response_status_code=\"404\"}} 1\n"
            ),
            format!("perfscope_http_server_outcomes_total{{{l},outcome=\"panic\"}} 1\n"),
            format!("perfscope_http_server_outcomes_total{{{l},outcome=\"timeout\"}} 0\n"),
            format!(
                "perfscope_http_server_time_to_headers_seconds{{{l},quantile=\"0.5\"}} 0.002\n"
            ),
            format!(
                "perfscope_http_server_time_to_headers_seconds{{{l},quantile=\"0.999\"}} 0.01\n"
            ),
            format!("perfscope_http_server_time_to_headers_seconds_sum{{{l}}} 0.033\n"),
            format!("perfscope_http_server_time_to_headers_seconds_count{{{l}}} 11\n"),
            format!("perfscope_http_server_stream_duration_seconds{{{l},quantile=\"0.5\"}} 60\n"),
            format!("perfscope_http_server_stream_duration_seconds_count{{{l}}} 1\n"),
            "perfscope_http_server_in_flight_requests 1\n".to_owned(),
            "perfscope_http_server_peak_in_flight_requests 3\n".to_owned(),
            "perfscope_http_server_requests_total 12\n".to_owned(),
            "perfscope_route_overflow_requests_total 4\n".to_owned(),
            "perfscope_request_ids_rejected_total 5\n".to_owned(),
            "perfscope_slow_requests_suppressed_warnings_total 6\n".to_owned(),
            "perfscope_hung_requests 0\n".to_owned(),
            "perfscope_uptime_seconds 12.5\n".to_owned(),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
        }
        let (comments, samples) = parse(&text).unwrap();
        assert_eq!(comments, FAMILIES * 2);
        assert_eq!(
            samples.len(),
            GLOBALS + expected_route_lines(&route("GET", "/"))
        );
    }

    #[test]
    fn families_are_contiguous() {
        let text = render(&snapshot(vec![route("GET", "/a"), route("POST", "/b")]));
        let (_, samples) = parse(&text).unwrap();
        let family = |name: &str| {
            [DURATION, TIME_TO_HEADERS, STREAM_DURATION]
                .into_iter()
                .find(|f| name.starts_with(f))
                .unwrap_or(name)
                .to_owned()
        };
        let mut seen: Vec<String> = Vec::new();
        for s in &samples {
            let f = family(&s.name);
            if seen.last() != Some(&f) {
                assert!(!seen.contains(&f), "family {f} is split");
                seen.push(f);
            }
        }
    }

    #[test]
    fn allocation_and_memory_families_when_measured() {
        let mut measured = route("GET", "/big");
        measured.allocated_bytes = Some(crate::AllocatedBytes {
            count: 4,
            p50: 1 << 20,
            p95: 2 << 20,
            max: 3 << 20,
            sum: 7 << 20,
        });
        let quiet = route("GET", "/quiet");
        let mut s = snapshot(vec![measured, quiet]);
        s.settings.allocation_warning_bytes = Some(64 << 20);
        s.overflow.allocation_warnings_suppressed = 2;
        s.process.resident_memory_bytes = Some(123_456_789);
        let text = render(&s);
        let l = r#"http_request_method="GET",http_route="/big""#;
        for expected in [
            format!("# TYPE {ALLOCATED} summary\n"),
            format!("{ALLOCATED}{{{l},quantile=\"0.5\"}} 1048576\n"),
            format!("{ALLOCATED}{{{l},quantile=\"0.95\"}} 2097152\n"),
            format!("{ALLOCATED}{{{l},quantile=\"1\"}} 3145728\n"),
            format!("{ALLOCATED}_sum{{{l}}} 7340032\n"),
            format!("{ALLOCATED}_count{{{l}}} 4\n"),
            format!("{ALLOCATION_WARNINGS_SUPPRESSED} 2\n"),
            format!("# TYPE {RESIDENT_MEMORY} gauge\n{RESIDENT_MEMORY} 123456789\n"),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("http_route=\"/quiet\",quantile=\"1\""));
        let (comments, samples) = parse(&text).unwrap();
        assert_eq!(comments, (FAMILIES + 3) * 2);
        assert_eq!(
            samples.len(),
            GLOBALS + 2 + 2 * expected_route_lines(&route("GET", "/")) + 5
        );
        // Not measured: neither family, nor the memory gauge when it is unknown.
        let text = render(&snapshot(vec![route("GET", "/quiet")]));
        assert!(!text.contains(ALLOCATED) && !text.contains(RESIDENT_MEMORY));
    }

    #[test]
    fn summaries_only_for_routes_with_samples() {
        let mut quiet = route("GET", "/quiet");
        quiet.time_to_headers = Percentiles::default();
        quiet.streams = Percentiles::default();
        let text = render(&snapshot(vec![quiet.clone()]));
        assert!(!text.contains("perfscope_http_server_time_to_headers_seconds{"));
        assert!(!text.contains("perfscope_http_server_stream_duration_seconds_count{"));
        let (_, samples) = parse(&text).unwrap();
        assert_eq!(samples.len(), GLOBALS + expected_route_lines(&quiet));
    }

    #[test]
    fn histogram_stays_valid_on_malformed_buckets() {
        let mut r = route("GET", "/h");
        r.buckets = vec![
            Bucket {
                le_secs: 0.01,
                count: 5,
            },
            Bucket {
                le_secs: f64::NAN,
                count: 6,
            },
            Bucket {
                le_secs: 0.005,
                count: 1,
            },
            Bucket {
                le_secs: 0.02,
                count: 3,
            },
            Bucket {
                le_secs: f64::INFINITY,
                count: 7,
            },
        ];
        r.latency.lifetime.count = 4;
        let text = render(&snapshot(vec![r]));
        let (_, samples) = parse(&text).unwrap();
        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|s| s.name == "http_server_request_duration_seconds_bucket")
            .map(|s| (s.label("le").unwrap().to_owned(), s.value))
            .collect();
        let expected = [("0.01", 5.0), ("0.02", 5.0), ("+Inf", 5.0)];
        let expected: Vec<(String, f64)> = expected
            .iter()
            .map(|(l, v)| ((*l).to_owned(), *v))
            .collect();
        assert_eq!(buckets, expected);
        assert_eq!(
            value_of(&samples, "http_server_request_duration_seconds_count", None),
            5.0
        );
    }

    #[test]
    fn floats_parse_in_prometheus() {
        for (v, s) in [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.0, "0"),
            (1.0, "1"),
            (0.005, "0.005"),
            (1e-7, "0.0000001"),
            (2.5e20, "250000000000000000000"),
        ] {
            assert_eq!(Float(v).to_string(), s);
        }
        for v in [f64::MIN_POSITIVE, 5e-324, f64::MAX, 1.0 / 3.0, -0.25] {
            assert_eq!(parse_value(&Float(v).to_string()).unwrap(), v);
        }
        let mut s = snapshot(Vec::new());
        s.uptime_secs = f64::NAN;
        assert!(render(&s).contains("perfscope_uptime_seconds NaN\n"));
    }

    #[test]
    fn milliseconds_become_clean_seconds() {
        assert_eq!(Float(ms_to_secs(13.8)).to_string(), "0.0138");
        assert_eq!(Float(ms_to_secs(37.9)).to_string(), "0.0379");
        assert_eq!(Float(ms_to_secs(0.0004)).to_string(), "0");
        assert_eq!(Float(ms_to_secs(45_021.0)).to_string(), "45.021");
        assert_eq!(Float(ms_to_secs(f64::INFINITY)).to_string(), "+Inf");
        assert!(ms_to_secs(f64::NAN).is_nan());
    }

    #[test]
    fn hostile_label_values_are_escaped() {
        let text = render(&snapshot(vec![route("G\"E\\T", "/a\"b\\c\nd}\r#{x} 1")]));
        assert!(text.contains(r#"{http_request_method="G\"E\\T",http_route="/a\"b\\c\nd}"#));
        let (comments, samples) = parse(&text).unwrap();
        assert_eq!(comments, FAMILIES * 2);
        assert_eq!(
            samples.len(),
            GLOBALS + expected_route_lines(&route("", ""))
        );
        let s = samples.iter().find(|s| s.name == ACTIVE).unwrap();
        assert_eq!(s.label("http_route"), Some("/a\"b\\c\nd}\r#{x} 1"));
        assert_eq!(s.label("http_request_method"), Some("G\"E\\T"));
    }

    #[test]
    fn help_text_is_escaped() {
        let mut out = String::new();
        header(&mut out, "m", "gauge", "a\\b\nc \"q\"").unwrap();
        assert_eq!(out, "# HELP m a\\\\b\\nc \"q\"\n# TYPE m gauge\n");
    }

    #[test]
    fn counts_match_snapshot() {
        let text = render(&snapshot(vec![route("GET", "/x")]));
        let (_, samples) = parse(&text).unwrap();
        let total: f64 = samples
            .iter()
            .filter(|s| s.name == OUTCOMES)
            .map(|s| s.value)
            .sum();
        assert_eq!(total, 11.0);
        let responses: f64 = samples
            .iter()
            .filter(|s| s.name == RESPONSES)
            .map(|s| s.value)
            .sum();
        assert_eq!(responses, 11.0);
        assert_eq!(
            value_of(
                &samples,
                RESPONSES,
                Some(("http_response_status_code", "500"))
            ),
            2.0
        );
        assert_eq!(
            value_of(&samples, OUTCOMES, Some(("outcome", "client_error"))),
            1.0
        );
    }

    /// Strings built from the characters that break naive exporters, plus arbitrary Unicode.
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "[\"\\\\\n\r#{}=, a/😀\u{0}\u{7f}\u{2028}]{0,24}",
            any::<String>(),
            Just(String::new()),
            Just("\\".to_owned()),
            Just("\\n".to_owned()),
            Just("\"} 1\nevil_metric 1\n# ".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn arbitrary_labels_cannot_inject_lines(
            routes in prop::collection::vec((hostile(), hostile(), 0_u64..3, 0_u64..3), 0..4),
        ) {
            let routes: Vec<RouteStats> = routes
                .iter()
                .map(|(method, template, ttfh, streams)| {
                    let mut r = route(method, template);
                    r.time_to_headers.count = *ttfh;
                    r.streams.count = *streams;
                    r
                })
                .collect();
            let expected: usize = GLOBALS + routes.iter().map(expected_route_lines).sum::<usize>();
            let text = render(&snapshot(routes.clone()));

            let (comments, samples) = parse(&text).map_err(TestCaseError::fail)?;
            prop_assert_eq!(comments, FAMILIES * 2);
            prop_assert_eq!(samples.len(), expected);
            prop_assert_eq!(text.matches('\n').count(), FAMILIES * 2 + expected);

            // Every per-route sample gives back the original method and route, in snapshot order.
            let active: Vec<&Sample> = samples.iter().filter(|s| s.name == ACTIVE).collect();
            prop_assert_eq!(active.len(), routes.len());
            for (s, r) in active.iter().zip(&routes) {
                prop_assert_eq!(s.label("http_request_method"), Some(r.method.as_str()));
                prop_assert_eq!(s.label("http_route"), Some(r.route.as_str()));
            }
            for s in &samples {
                let Some(route) = s.label("http_route") else { continue };
                prop_assert!(routes.iter().any(|r| r.route == route), "unknown route {:?}", route);
            }
        }

        #[test]
        fn escape_round_trips(s in hostile()) {
            let mut out = String::from("\"");
            escape(&mut out, &s, true).unwrap();
            out.push('"');
            prop_assert!(!out.contains('\n'));
            let (back, rest) = take_value(&out).map_err(TestCaseError::fail)?;
            prop_assert_eq!(back, s);
            prop_assert_eq!(rest, "");
        }
    }
}
