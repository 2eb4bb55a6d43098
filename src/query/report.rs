//! What the query analyzer reports: per-route statistics, findings, and settled requests. Every text in here
//! is a normalized statement (no literal survives normalization) or a route template.

use serde::Serialize;

use super::detect::Finding;
use super::histogram::QueriesPerRequest;
use super::model::{FingerprintId, FingerprintInfo, RequestQueries, StatementKind};

/// The query analyzer's part of a [`Snapshot`](crate::Snapshot).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct QueryStatsSnapshot {
    /// Requests settled (their queries analysed).
    pub requests: u64,
    /// Queries that ran outside any request (startup, background jobs, spawned tasks that lost the span).
    pub unattributed_queries: u64,
    /// Their summed time, milliseconds.
    pub unattributed_time_ms: f64,
    /// Distinct fingerprints remembered.
    pub fingerprints: u64,
    /// Fingerprints forgotten to stay within the bound.
    pub fingerprint_evictions: u64,
    /// Requests whose analysis failed (counted, never affecting the request).
    pub analysis_failures: u64,
    /// One entry per (method, route), sorted by method then route.
    pub routes: Vec<RouteQueryStats>,
    /// Distinct findings, most recently seen first.
    pub findings: Vec<FindingSummary>,
    /// The detection profile and the thresholds in force.
    pub detection: DetectionSettings,
}

/// The detector's profile and main thresholds, as configured ([`DetectConfig`](super::DetectConfig)).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DetectionSettings {
    /// The defaults the config started from: `development` or `production` (release builds use `production`
    /// unless the application chose otherwise).
    pub profile: super::DetectProfile,
    /// Repeats of one read from one call site that make an N+1.
    pub n_plus_one_min_repeats: u64,
    /// Summed time from which an N+1 or MN+1 is a warning, milliseconds; below it, it is listed as `info`.
    pub n_plus_one_warning_ms: f64,
    /// Duration from which one execution is a slow query, milliseconds.
    pub slow_query_ms: f64,
    /// Queries per request allowed before a `query_budget` finding.
    pub query_budget: u64,
    /// Findings below this confidence are not kept.
    pub min_confidence: super::Confidence,
}

/// The settings of [`QueryConfig::default`](super::QueryConfig::default) in this build.
impl Default for DetectionSettings {
    fn default() -> Self {
        DetectionSettings::of(&super::QueryConfig::default().detect)
    }
}

impl DetectionSettings {
    pub(crate) fn of(config: &super::DetectConfig) -> Self {
        DetectionSettings {
            profile: config.profile,
            n_plus_one_min_repeats: config.n_plus_one_min_repeats,
            n_plus_one_warning_ms: config.n_plus_one_min_total.as_secs_f64() * 1000.0,
            slow_query_ms: config.slow_query.as_secs_f64() * 1000.0,
            query_budget: config.query_budget,
            min_confidence: config.min_confidence,
        }
    }
}

/// Query statistics of one (method, route template).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RouteQueryStats {
    /// HTTP method label.
    pub method: String,
    /// Route template, `<unmatched>` or `<overflow>`.
    pub route: String,
    /// Requests settled.
    pub requests: u64,
    /// Queries they ran.
    pub queries: u64,
    /// Queries per request.
    pub queries_per_request: QueriesPerRequest,
    /// Summed query time, milliseconds.
    pub db_time_ms: f64,
    /// Query time over request time (0 to 1; concurrent queries can add up past the request's time, so it
    /// is capped at 1).
    pub db_time_share: f64,
    /// Requests with at least one query loop (an `n_plus_one` or `mn_plus_one` finding).
    pub n_plus_one_requests: u64,
    /// `n_plus_one_requests / requests`.
    pub n_plus_one_rate: f64,
    /// The fingerprints that took the most time on this route, slowest total first.
    pub top_fingerprints: Vec<FingerprintStats>,
}

/// One fingerprint's totals on one route.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FingerprintStats {
    /// The fingerprint id.
    pub fingerprint: FingerprintId,
    /// The normalized statement, when still remembered.
    pub sql: Option<String>,
    /// The statement kind, when still remembered.
    pub kind: Option<StatementKind>,
    /// Executions.
    pub count: u64,
    /// Summed time, milliseconds.
    pub total_ms: f64,
    /// Mean time, milliseconds.
    pub mean_ms: f64,
    /// Slowest execution, milliseconds.
    pub max_ms: f64,
    /// The 95th percentile is at least this, milliseconds (the bottom of its power-of-two bucket; from the
    /// detailed records).
    pub p95_ms_at_least: f64,
    /// Rows returned, summed.
    pub rows: u64,
}

/// A distinct finding (kind, method, route, fingerprint): the latest occurrence and how often it was seen.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FindingSummary {
    /// The latest occurrence, with its evidence and recommendation.
    #[serde(flatten)]
    pub finding: Finding,
    /// Requests it was found in.
    pub occurrences: u64,
    /// First seen, milliseconds since the Unix epoch.
    pub first_seen_unix_ms: u64,
    /// Last seen, milliseconds since the Unix epoch.
    pub last_seen_unix_ms: u64,
}

/// One settled request: what it ran and what was found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RequestReport {
    /// The request ID.
    pub request_id: String,
    /// HTTP method label.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Queries run.
    pub count: u64,
    /// Summed query time, milliseconds.
    pub db_time_ms: f64,
    /// Queries past the detailed-record cap.
    pub records_dropped: u64,
    /// Each fingerprint the request ran, in first-run order.
    pub fingerprints: Vec<RequestFingerprint>,
    /// The findings.
    pub findings: Vec<Finding>,
}

/// One fingerprint within one request.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RequestFingerprint {
    /// The fingerprint id.
    pub fingerprint: FingerprintId,
    /// The normalized statement, when still remembered.
    pub sql: Option<String>,
    /// Executions in the request.
    pub count: u64,
    /// Their summed time, milliseconds.
    pub total_ms: f64,
}

impl RequestReport {
    pub(crate) fn new(
        request: &RequestQueries,
        findings: Vec<Finding>,
        lookup: &dyn Fn(FingerprintId) -> Option<std::sync::Arc<FingerprintInfo>>,
    ) -> Self {
        RequestReport {
            request_id: request.request_id.clone(),
            method: request.method.as_str().to_owned(),
            route: request.route.to_string(),
            count: request.count,
            db_time_ms: request.db_time.as_secs_f64() * 1000.0,
            records_dropped: request.records_dropped,
            fingerprints: request
                .totals
                .iter()
                .map(|t| RequestFingerprint {
                    fingerprint: t.fingerprint,
                    sql: lookup(t.fingerprint).map(|info| info.text.to_string()),
                    count: t.count,
                    total_ms: t.total.as_secs_f64() * 1000.0,
                })
                .collect(),
            findings,
        }
    }

    /// The report of a request that ran no query.
    pub(crate) fn empty(request_id: &str, method: crate::route::MethodLabel, route: &str) -> Self {
        RequestReport {
            request_id: request_id.to_owned(),
            method: method.as_str().to_owned(),
            route: route.to_owned(),
            count: 0,
            db_time_ms: 0.0,
            records_dropped: 0,
            fingerprints: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// The queries run in a loop: the `n_plus_one` findings (one statement per item) and the `mn_plus_one`
    /// ones (several statements per item, reported once with their steps).
    pub fn n_plus_one(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_loop())
    }

    /// The normalized statements the request ran, sorted: a listing to snapshot and diff in tests.
    pub fn statements(&self) -> Vec<String> {
        let mut statements: Vec<String> = self
            .fingerprints
            .iter()
            .map(|f| f.sql.clone().unwrap_or_else(|| f.fingerprint.to_hex()))
            .collect();
        statements.sort();
        statements
    }
}
