//! The analyzer behind one [`Perfscope`](crate::Perfscope) handle: fingerprints statements as they are
//! captured, and, once a request is settled, enriches new fingerprints, runs the detector and folds the
//! request into per-route statistics, the finding store and the recent-requests ring.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use super::config::{Limits, QueryConfig};
use super::detect::{self, Finding, FindingKind, RouteBaseline};
use super::histogram::CountHistogram;
use super::memo::FingerprintMemo;
use super::model::{Dialect, FingerprintId, FingerprintInfo, RequestQueries};
use super::parse;
use super::report::{
    FindingSummary, FingerprintStats, QueryStatsSnapshot, RequestReport, RouteQueryStats,
};
use crate::request_id::RequestId;
use crate::route::MethodLabel;

use crate::route::{OVERFLOW_ROUTE as OVERFLOW, UNMATCHED_ROUTE as UNMATCHED};

/// Everything the query analyzer of one handle knows.
pub(crate) struct Analyzer {
    config: QueryConfig,
    memo: FingerprintMemo,
    routes: RwLock<HashMap<RouteKey, SharedRoute>>,
    findings: Mutex<FindingStore>,
    recent: Mutex<VecDeque<Recent>>,
    settled: AtomicU64,
    unattributed: AtomicU64,
    unattributed_micros: AtomicU64,
    settle_failures: AtomicU64,
}

type RouteKey = (MethodLabel, Arc<str>);
type SharedRoute = Arc<Mutex<RouteState>>;

/// One route's statistics and its label, resolved once by a [`QueryLayer`](super::QueryLayer) instance and
/// carried by each request's log, so settling needs no table lookup.
#[derive(Clone)]
pub(crate) struct RouteHandle {
    label: Arc<str>,
    state: SharedRoute,
}

impl std::fmt::Debug for RouteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RouteHandle").field(&self.label).finish()
    }
}

impl RouteHandle {
    /// The route template.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The route template, shared.
    pub(crate) fn shared_label(&self) -> Arc<str> {
        self.label.clone()
    }
}

/// An entry of the recent-requests ring: what a report is made of, made into one only if someone asks. A
/// request that ran no query is kept as the few facts it has, so settling it allocates nothing.
enum Recent {
    /// The settled request without its detailed records, and its findings.
    Settled(Box<(RequestQueries, Vec<Finding>)>),
    Empty {
        request_id: RequestId,
        method: MethodLabel,
        route: Arc<str>,
    },
}

impl Recent {
    fn is_request(&self, id: &str) -> bool {
        match self {
            Recent::Settled(settled) => settled.0.request_id == id,
            Recent::Empty { request_id, .. } => request_id.as_str() == id,
        }
    }

    fn is_on(&self, method: &str, route: &str) -> bool {
        match self {
            Recent::Settled(settled) => {
                settled.0.method.as_str() == method && &*settled.0.route == route
            }
            Recent::Empty {
                method: m,
                route: r,
                ..
            } => m.as_str() == method && &**r == route,
        }
    }

    fn report(&self, analyzer: &Analyzer) -> Arc<RequestReport> {
        match self {
            Recent::Settled(settled) => {
                let (request, findings) = &**settled;
                Arc::new(RequestReport::new(request, findings.clone(), &|id| {
                    analyzer.lookup(id)
                }))
            }
            Recent::Empty {
                request_id,
                method,
                route,
            } => Arc::new(RequestReport::empty(request_id.as_str(), *method, route)),
        }
    }
}

/// Query statistics of one (method, route).
#[derive(Default)]
struct RouteState {
    requests: u64,
    queries: u64,
    db_time: Duration,
    request_time: Duration,
    n_plus_one_requests: u64,
    per_request: CountHistogram,
    baseline: RouteBaseline,
    /// Top fingerprints by total time (space-saving: when full, a new fingerprint takes the smallest slot).
    fingerprints: Vec<FingerprintAggregate>,
    /// Every fingerprint seen on the route, up to [`MAX_ROUTE_STATEMENTS`], for statement listings.
    seen: Vec<FingerprintId>,
}

/// Most fingerprints listed per route by [`Analyzer::route_statements`].
const MAX_ROUTE_STATEMENTS: usize = 128;

#[derive(Debug, Clone, Copy)]
struct FingerprintAggregate {
    id: FingerprintId,
    count: u64,
    total: Duration,
    max: Duration,
    rows: u64,
    /// Durations of the detailed records, by power of two of microseconds.
    durations: DurationBuckets,
}

/// Power-of-two buckets of microseconds: bucket `i` holds `[2^i, 2^(i+1))` µs (bucket 0 also holds 0),
/// the last one everything from about 8.4 s up.
#[derive(Debug, Clone, Copy, Default)]
struct DurationBuckets {
    counts: [u32; 24],
    samples: u64,
}

impl DurationBuckets {
    fn record(&mut self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let bucket = (63 - micros.leading_zeros() as usize).min(self.counts.len() - 1);
        if let Some(count) = self.counts.get_mut(bucket) {
            *count = count.saturating_add(1);
        }
        self.samples += 1;
    }

    /// The 95th percentile's lower bound (the bottom of its bucket): a value the percentile is at least.
    fn p95_at_least(&self) -> Duration {
        if self.samples == 0 {
            return Duration::ZERO;
        }
        let rank = (self.samples * 95).div_ceil(100);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Duration::from_micros(if bucket == 0 { 0 } else { 1 << bucket });
            }
        }
        Duration::ZERO
    }
}

type FindingKey = (FindingKind, String, String, FingerprintId);

/// Distinct findings, each with how often and when it was seen.
#[derive(Default)]
struct FindingStore {
    entries: HashMap<FindingKey, FindingSummary>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Analyzer {
    /// The detector's settings.
    pub(crate) fn detect_config(&self) -> &super::detect::DetectConfig {
        &self.config.detect
    }

    pub(crate) fn new(config: QueryConfig) -> Self {
        let limits = config.limits;
        Analyzer {
            memo: FingerprintMemo::new(limits.raw_statements, limits.fingerprints)
                .with_tag_keys(&config.tag_keys),
            config,
            routes: RwLock::new(HashMap::new()),
            findings: Mutex::new(FindingStore::default()),
            recent: Mutex::new(VecDeque::new()),
            settled: AtomicU64::new(0),
            unattributed: AtomicU64::new(0),
            unattributed_micros: AtomicU64::new(0),
            settle_failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// The fingerprint of `sql` (memoized by the raw text) and, when its text shows all its values, their identity (see
    /// [`FingerprintMemo::fingerprint_and_values`]).
    #[inline]
    pub(crate) fn fingerprint_and_values(&self, sql: &str) -> (Arc<FingerprintInfo>, Option<u64>) {
        self.memo.fingerprint_and_values(sql, self.config.dialect)
    }

    /// [`fingerprint_and_values`](Self::fingerprint_and_values) in another dialect than the configured one.
    pub(crate) fn fingerprint_and_values_in(
        &self,
        sql: &str,
        dialect: Dialect,
    ) -> (Arc<FingerprintInfo>, Option<u64>) {
        self.memo.fingerprint_and_values(sql, dialect)
    }

    /// What is known about `id`, if it is still remembered.
    pub(crate) fn lookup(&self, id: FingerprintId) -> Option<Arc<FingerprintInfo>> {
        self.memo.get(id)
    }

    /// Counts a query that ran outside any request.
    pub(crate) fn unattributed(&self, duration: Duration) {
        self.unattributed.fetch_add(1, Ordering::Relaxed);
        self.unattributed_micros.fetch_add(
            u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The route label of a settled request.
    pub(crate) fn route_label(&self, route: Option<&str>) -> Arc<str> {
        Arc::from(route.unwrap_or(UNMATCHED))
    }

    /// Folds a finished request in. Runs after the response was sent; a failure here loses this request's
    /// analysis and nothing else.
    pub(crate) fn settle(&self, request: RequestQueries, route: Option<RouteHandle>) {
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.settle_request(request, route)));
        if outcome.is_err() {
            self.settle_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Folds in a request that ran no query: it counts in its route's requests and time, and nothing else
    /// can be found in it.
    pub(crate) fn settle_empty(
        &self,
        method: MethodLabel,
        route: RouteHandle,
        request_id: &RequestId,
        elapsed: Duration,
    ) {
        self.settled.fetch_add(1, Ordering::Relaxed);
        route.state.lock().observe_empty(elapsed);
        self.remember(Recent::Empty {
            request_id: *request_id,
            method,
            route: route.label,
        });
    }

    /// The route handle of `method` `route` (`None`: unmatched), from the table.
    pub(crate) fn route_handle(&self, method: MethodLabel, route: Option<&str>) -> RouteHandle {
        let label = self.route_label(route);
        RouteHandle {
            state: self.route_state(method, &label),
            label,
        }
    }

    fn remember(&self, entry: Recent) {
        if self.config.limits.recent_requests > 0 {
            let mut recent = self.recent.lock();
            while recent.len() >= self.config.limits.recent_requests {
                recent.pop_front();
            }
            recent.push_back(entry);
        }
    }

    fn settle_request(&self, request: RequestQueries, route: Option<RouteHandle>) {
        self.settled.fetch_add(1, Ordering::Relaxed);
        for totals in &request.totals {
            if let Some(info) = self.memo.get(totals.fingerprint) {
                info.enrichment
                    .get_or_init(|| parse::enrich(&info.text, info.dialect));
            }
        }
        let route = match route {
            Some(handle) => handle.state,
            None => self.route_state(request.method, &request.route),
        };
        let lookup = |id: FingerprintId| self.memo.get(id);
        let findings = {
            let mut route = route.lock();
            let findings = if request.count == 0 {
                Vec::new()
            } else {
                detect::detect(
                    &request,
                    &lookup,
                    &self.config.detect,
                    Some(&route.baseline),
                )
            };
            route.observe(
                &request,
                &findings,
                self.config.limits.fingerprints_per_route,
            );
            route.observe_durations(&request);
            let slow = route.slow_statements(request.method, &request.route, &request, self);
            (findings, slow)
        };
        let (findings, slow) = findings;
        if !slow.is_empty() {
            self.findings
                .lock()
                .record(&slow, self.config.limits.findings);
        }
        if !findings.is_empty() {
            self.findings
                .lock()
                .record(&findings, self.config.limits.findings);
        }
        if self.config.limits.recent_requests > 0 {
            // The report needs the totals, not the detailed records.
            let mut request = request;
            request.records = Vec::new();
            self.remember(Recent::Settled(Box::new((request, findings))));
        }
    }

    fn route_state(&self, method: MethodLabel, route: &Arc<str>) -> SharedRoute {
        let key = (method, route.clone());
        if let Some(state) = self.routes.read().get(&key) {
            return state.clone();
        }
        let mut routes = self.routes.write();
        let key = if routes.len() >= self.config.limits.routes && !routes.contains_key(&key) {
            (method, Arc::from(OVERFLOW))
        } else {
            key
        };
        routes.entry(key).or_default().clone()
    }

    /// A settled request by its ID, while it is among the most recent ones.
    pub(crate) fn request(&self, request_id: &str) -> Option<Arc<RequestReport>> {
        self.recent
            .lock()
            .iter()
            .rev()
            .find(|r| r.is_request(request_id))
            .map(|r| r.report(self))
    }

    /// The most recently settled request on `method` `route`.
    pub(crate) fn last_request(&self, method: &str, route: &str) -> Option<Arc<RequestReport>> {
        self.recent
            .lock()
            .iter()
            .rev()
            .find(|r| r.is_on(method, route))
            .map(|r| r.report(self))
    }

    /// The normalized statements seen on `method` `route`, sorted.
    pub(crate) fn route_statements(&self, method: &str, route: &str) -> Vec<String> {
        let state = self
            .routes
            .read()
            .iter()
            .find(|((m, r), _)| m.as_str() == method && &**r == route)
            .map(|(_, state)| state.clone());
        let Some(state) = state else {
            return Vec::new();
        };
        let seen = state.lock().seen.clone();
        let mut statements: Vec<String> = seen
            .iter()
            .map(|id| {
                self.lookup(*id)
                    .map_or_else(|| id.to_hex(), |info| info.text.to_string())
            })
            .collect();
        statements.sort();
        statements
    }

    /// Everything, for snapshots and exports.
    pub(crate) fn snapshot(&self) -> QueryStatsSnapshot {
        let routes: Vec<(RouteKey, SharedRoute)> = self
            .routes
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut route_stats: Vec<RouteQueryStats> = routes
            .iter()
            .map(|((method, route), state)| state.lock().snapshot(*method, route, self))
            .collect();
        route_stats.sort_by(|a, b| (&a.method, &a.route).cmp(&(&b.method, &b.route)));
        let mut findings: Vec<FindingSummary> =
            self.findings.lock().entries.values().cloned().collect();
        findings.sort_by(|a, b| {
            b.last_seen_unix_ms
                .cmp(&a.last_seen_unix_ms)
                .then_with(|| a.finding.route.cmp(&b.finding.route))
                .then_with(|| a.finding.fingerprint.cmp(&b.finding.fingerprint))
        });
        QueryStatsSnapshot {
            requests: self.settled.load(Ordering::Relaxed),
            unattributed_queries: self.unattributed.load(Ordering::Relaxed),
            unattributed_time_ms: self.unattributed_micros.load(Ordering::Relaxed) as f64 / 1000.0,
            fingerprints: self.memo.len() as u64,
            fingerprint_evictions: self.memo.evictions(),
            analysis_failures: self.settle_failures.load(Ordering::Relaxed),
            routes: route_stats,
            findings,
            detection: super::report::DetectionSettings::of(&self.config.detect),
        }
    }
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("settled", &self.settled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RouteState {
    /// [`RouteState::observe`] for a request that ran no query.
    fn observe_empty(&mut self, elapsed: Duration) {
        self.requests += 1;
        self.request_time = self.request_time.saturating_add(elapsed);
        self.per_request.record(0);
        self.baseline.observe(0);
    }

    fn observe(&mut self, request: &RequestQueries, findings: &[Finding], cap: usize) {
        self.requests += 1;
        self.queries += request.count;
        self.db_time = self.db_time.saturating_add(request.db_time);
        self.request_time = self.request_time.saturating_add(request.elapsed);
        if findings.iter().any(|f| f.kind.is_loop()) {
            self.n_plus_one_requests += 1;
        }
        self.per_request.record(request.count);
        self.baseline.observe(request.count);
        for totals in &request.totals {
            if self.seen.len() < MAX_ROUTE_STATEMENTS && !self.seen.contains(&totals.fingerprint) {
                self.seen.push(totals.fingerprint);
            }
            let aggregate = match self
                .fingerprints
                .iter_mut()
                .position(|f| f.id == totals.fingerprint)
            {
                Some(index) => self.fingerprints.get_mut(index),
                None if self.fingerprints.len() < cap => {
                    self.fingerprints.push(FingerprintAggregate {
                        id: totals.fingerprint,
                        count: 0,
                        total: Duration::ZERO,
                        max: Duration::ZERO,
                        rows: 0,
                        durations: DurationBuckets::default(),
                    });
                    self.fingerprints.last_mut()
                }
                None => {
                    // Space-saving: the new fingerprint inherits the smallest slot's figures, an upper bound.
                    let smallest = self
                        .fingerprints
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, f)| f.total)
                        .map(|(index, _)| index);
                    let slot = smallest.and_then(|index| self.fingerprints.get_mut(index));
                    if let Some(slot) = slot {
                        slot.id = totals.fingerprint;
                        slot.durations = DurationBuckets::default();
                    }
                    smallest.and_then(|index| self.fingerprints.get_mut(index))
                }
            };
            if let Some(aggregate) = aggregate {
                aggregate.count += totals.count;
                aggregate.total = aggregate.total.saturating_add(totals.total);
                aggregate.max = aggregate.max.max(totals.max);
                aggregate.rows = aggregate.rows.saturating_add(totals.rows_returned);
            }
        }
    }

    /// Adds the request's detailed durations to its statements' distributions.
    fn observe_durations(&mut self, request: &RequestQueries) {
        for record in &request.records {
            if let Some(aggregate) = self
                .fingerprints
                .iter_mut()
                .find(|f| f.id == record.fingerprint)
            {
                aggregate.durations.record(record.duration);
            }
        }
    }

    /// R4 across requests: the statements of this route whose 95th percentile is over the slow threshold.
    fn slow_statements(
        &self,
        method: MethodLabel,
        route: &str,
        request: &RequestQueries,
        analyzer: &Analyzer,
    ) -> Vec<Finding> {
        let threshold = analyzer.config.detect.slow_query;
        self.fingerprints
            .iter()
            .filter(|f| request.totals.iter().any(|t| t.fingerprint == f.id))
            .filter_map(|f| {
                detect::slow_over_requests(
                    analyzer.lookup(f.id)?,
                    (method.as_str(), route),
                    f.durations.samples,
                    f.durations.p95_at_least(),
                    f.total,
                    f.max,
                    threshold,
                )
            })
            .collect()
    }

    fn snapshot(&self, method: MethodLabel, route: &str, analyzer: &Analyzer) -> RouteQueryStats {
        let mut top = self.fingerprints.clone();
        top.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.id.cmp(&b.id)));
        let request_ms = millis(self.request_time);
        RouteQueryStats {
            method: method.as_str().to_owned(),
            route: route.to_owned(),
            requests: self.requests,
            queries: self.queries,
            queries_per_request: self.per_request.summary(),
            db_time_ms: millis(self.db_time),
            db_time_share: if request_ms > 0.0 {
                (millis(self.db_time) / request_ms).min(1.0)
            } else {
                0.0
            },
            n_plus_one_requests: self.n_plus_one_requests,
            n_plus_one_rate: if self.requests == 0 {
                0.0
            } else {
                self.n_plus_one_requests as f64 / self.requests as f64
            },
            top_fingerprints: top
                .iter()
                .map(|f| {
                    let info = analyzer.lookup(f.id);
                    FingerprintStats {
                        fingerprint: f.id,
                        sql: info.as_ref().map(|i| i.text.to_string()),
                        kind: info.as_ref().map(|i| i.kind),
                        count: f.count,
                        total_ms: millis(f.total),
                        mean_ms: if f.count == 0 {
                            0.0
                        } else {
                            millis(f.total) / f.count as f64
                        },
                        max_ms: millis(f.max),
                        p95_ms_at_least: millis(f.durations.p95_at_least()),
                        rows: f.rows,
                    }
                })
                .collect(),
        }
    }
}

impl FindingStore {
    fn record(&mut self, findings: &[Finding], cap: usize) {
        let now = unix_ms();
        for finding in findings {
            let key: FindingKey = (
                finding.kind,
                finding.method.clone(),
                finding.route.clone(),
                finding.fingerprint,
            );
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.occurrences += 1;
                entry.last_seen_unix_ms = now;
                entry.finding = finding.clone();
                continue;
            }
            if self.entries.len() >= cap {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_seen_unix_ms)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
            self.entries.insert(
                key,
                FindingSummary {
                    finding: finding.clone(),
                    occurrences: 1,
                    first_seen_unix_ms: now,
                    last_seen_unix_ms: now,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_a_lower_bound_of_the_true_percentile() {
        let mut buckets = DurationBuckets::default();
        assert_eq!(buckets.p95_at_least(), Duration::ZERO);
        for micros in 1..=100_u64 {
            buckets.record(Duration::from_micros(micros * 1000));
        }
        // The true p95 is 95 ms; its bucket starts at 2^16 µs.
        let p95 = buckets.p95_at_least();
        assert!(p95 <= Duration::from_millis(95), "{p95:?}");
        assert!(p95 > Duration::from_millis(95) / 2, "{p95:?}");
        buckets.record(Duration::MAX);
        assert!(buckets.p95_at_least() <= Duration::from_millis(95));
    }
}
