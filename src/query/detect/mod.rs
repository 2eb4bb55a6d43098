//! The detector: rules R1–R10 over one settled request's queries, as pure code.
//!
//! [`detect`] reads a [`RequestQueries`] (the detailed records, capped, and the per-fingerprint totals, never
//! capped), looks fingerprints up once each, and returns at most [`DetectConfig::max_findings`] findings in a
//! fixed order. It does no I/O, never panics, and allocates in proportion to the detailed records and the
//! fingerprints, never to the number of queries the request ran.
//!
//! # Rules
//!
//! | Rule | Kind | Fires when (production defaults; "dev": [`DetectConfig::development`]) |
//! |---|---|---|
//! | R1 | `n_plus_one` | one read statement from one call site ran ≥ 5 (dev 3) times outside a loop of several statements, with different or unknown values, and not as a poll, pages of an export or scattered lookups (severity `info` below 20 ms in total; dev: any time) |
//! | R2 | `duplicate` | one `SELECT` ran ≥ 2 times with the same values (byte-identical without bind parameters, or the same bind values), not as a poll |
//! | R3 | `mn_plus_one` | one loop: a sequence of 2–5 different statements repeated ≥ 3 times in a row (with a pass of one statement repeated as often right before or after it), reported once with its steps; its statements are not reported again by R1, R2 or R9 (severity `info` below 20 ms in total) |
//! | R4 | `slow_query` | one execution took ≥ 500 ms (dev 100 ms) |
//! | R5 | `select_star` | the outermost projection is `*` or `t.*` (not `COUNT(*)`) |
//! | R6 | `parallelizable` | off by default: ≥ 2 back-to-back independent `SELECT`s, each > 30 ms, saving ≥ 100 ms and ≥ 10 % |
//! | R7 | `query_budget` / `query_regression` | more queries than the route's budget (50), or more than 2× the route's rolling median after 100 requests |
//! | R8 | `large_result` | ≥ 1000 rows returned by a statement without `LIMIT` |
//! | R9 | `batchable_writes` | one `INSERT`/`UPDATE`/`DELETE` statement ran ≥ 5 times outside a loop of several statements |
//! | R10 | `pool_wait` | the request waited ≥ 100 ms (dev 10 ms) for pool connections in total |
//!
//! # Confidence of a loop (R1, R3)
//!
//! - **low** when the loop took less than [`DetectConfig::negligible_time`] in all, whatever else is known;
//! - **high**: a different read statement that finished earlier in the request, at the same call site or
//!   directly in the request, returned `r` rows with `n ≤ r ≤ 2n` for `n` repeats (or exactly `n` rows at
//!   another call site): the loop ran over its rows;
//! - **low** when there is no such source and the read right before the loop returned no row;
//! - **medium**: a source at another call site; or every repeat returned at most one row through a single-key
//!   predicate (`id = ?`); or another query ran right before the repeats; or the values are known to differ;
//!   or, for R3, by default;
//! - **low** otherwise: a "repeated parameterized" statement. It is still reported as `n_plus_one`, so that one
//!   kind covers every repeated read; [`DetectConfig::min_confidence`] hides it.
//!
//! Known identical values make a repeat a `duplicate` instead.
//!
//! # Never flagged
//!
//! Transaction control (`BEGIN`, `COMMIT`, `SAVEPOINT`…), session statements (`SET`, `SHOW`), health checks
//! (a `SELECT` without `FROM`, such as `SELECT 1` or `SELECT version()`), advisory locks and migration
//! bookkeeping (`_sqlx_migrations` and friends) are never reported as N+1, duplicate, MN+1 or batchable, and
//! fingerprints the lookup does not know are skipped by every per-statement rule.

mod baseline;
mod batch;
mod budget;
mod config;
mod context;
mod mn_plus_one;
mod n_plus_one;
mod parallel;
mod pool;
mod recommend;
mod shape;
mod slow;

pub(crate) use slow::over_requests as slow_over_requests;
mod writes;

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::model::{FingerprintId, FingerprintInfo, RequestQueries};

pub use baseline::{DEFAULT_BASELINE_WINDOW, RouteBaseline};
pub use config::{DEFAULT_MAX_FINDINGS, DetectConfig, DetectProfile};

use context::Context;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// R1: one read statement ran once per row of an earlier result (or, with low confidence, just many times
    /// with different or unknown parameters).
    NPlusOne,
    /// R3: a sequence of different statements repeated in a loop.
    MnPlusOne,
    /// R2: one statement ran more than once with the same parameters.
    Duplicate,
    /// R9: one write statement ran many times where one multi-row statement would do.
    BatchableWrites,
    /// R4: one execution was slower than the threshold.
    SlowQuery,
    /// R8: many rows returned by a statement without `LIMIT`.
    LargeResult,
    /// R5: the projection is `*`.
    SelectStar,
    /// R6: independent reads ran one after the other.
    Parallelizable,
    /// R7: more queries than the route's budget.
    QueryBudget,
    /// R7: many more queries than the route usually runs.
    QueryRegression,
    /// R10: the request waited for pool connections.
    PoolWait,
}

impl FindingKind {
    /// Every kind, in report order.
    pub const ALL: [FindingKind; 11] = [
        FindingKind::NPlusOne,
        FindingKind::MnPlusOne,
        FindingKind::Duplicate,
        FindingKind::BatchableWrites,
        FindingKind::SlowQuery,
        FindingKind::LargeResult,
        FindingKind::SelectStar,
        FindingKind::Parallelizable,
        FindingKind::QueryBudget,
        FindingKind::QueryRegression,
        FindingKind::PoolWait,
    ];

    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NPlusOne => "n_plus_one",
            FindingKind::MnPlusOne => "mn_plus_one",
            FindingKind::Duplicate => "duplicate",
            FindingKind::BatchableWrites => "batchable_writes",
            FindingKind::SlowQuery => "slow_query",
            FindingKind::LargeResult => "large_result",
            FindingKind::SelectStar => "select_star",
            FindingKind::Parallelizable => "parallelizable",
            FindingKind::QueryBudget => "query_budget",
            FindingKind::QueryRegression => "query_regression",
            FindingKind::PoolWait => "pool_wait",
        }
    }

    /// A query loop: `n_plus_one` (one statement per item) or `mn_plus_one` (several).
    pub fn is_loop(self) -> bool {
        matches!(self, FindingKind::NPlusOne | FindingKind::MnPlusOne)
    }

    /// A bit of its own, for the config's set of disabled rules.
    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

// The config keeps the disabled rules in a `u32`.
const _: () = assert!(FindingKind::ALL.len() <= 32);

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sure the detector is that a finding is real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Confidence {
    /// The pattern is there, with no evidence of its cause.
    Low,
    /// Some evidence: single-key lookups, another query right before, or known distinct parameters.
    Medium,
    /// Strong evidence: the repeats match the row count of an earlier query, or the parameters are identical.
    High,
}

/// How much a finding is likely to matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Worth knowing; rarely urgent (`SELECT *`, small duplicates).
    Info,
    /// Costs time on every request of the route.
    Warning,
    /// Costs a lot: many repeats, or a saving in the range of the slow-query threshold.
    Critical,
}

/// The query an N+1 loops over.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SourceEvidence {
    /// Its fingerprint.
    pub fingerprint: FingerprintId,
    /// Its normalized text.
    pub sql: String,
    /// The rows it returned.
    pub rows_returned: u64,
}

/// One step of a loop (an MN+1): a statement the loop runs per item; or, for `parallelizable`, one of the
/// independent reads (kind `parallelizable`, count 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PatternMember {
    /// Its fingerprint.
    pub fingerprint: FingerprintId,
    /// Its normalized text.
    pub sql: String,
    /// What the step is on its own: `n_plus_one` (a read per item), `duplicate` (the same query, same values,
    /// each time) or `batchable_writes` (a write per item).
    pub kind: FindingKind,
    /// Its executions in the loop.
    pub count: u64,
    /// For a loop's step, its call site (as [`Finding::site`]).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_site"
    )]
    pub site: Option<u64>,
}

/// A call site as the exports show it: 16 lowercase hex digits, like a fingerprint (a JSON number would lose
/// precision past 2^53).
fn serialize_site<S: serde::Serializer>(
    site: &Option<u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match site {
        Some(site) => serializer.collect_str(&format_args!("{site:016x}")),
        None => serializer.serialize_none(),
    }
}

/// How to fix a finding, for each of the common Rust database libraries.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[non_exhaustive]
pub struct Recommendation {
    /// One or two sentences: what happened and what to do.
    pub summary: String,
    /// The fix with sqlx.
    pub sqlx: String,
    /// The fix with diesel.
    pub diesel: String,
    /// The fix with SeaORM.
    pub sea_orm: String,
    /// Query time the fix would likely save on this request, in milliseconds (0 when there is no estimate).
    pub estimated_saving_ms: f64,
}

/// One problem found in one request's queries, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// How sure the detector is.
    pub confidence: Confidence,
    /// How much it likely matters.
    pub severity: Severity,
    /// The request's method.
    pub method: String,
    /// The request's route template.
    pub route: String,
    /// The request ID.
    pub request_id: String,
    /// The statement concerned. For request-wide findings (`query_budget`, `query_regression`) the statement
    /// that ran most often; for `pool_wait`, 0.
    pub fingerprint: FingerprintId,
    /// The statement's normalized text (no literal survives normalization); empty for `pool_wait`.
    pub sql: String,
    /// Tables the statement reads or writes, when the parser has seen it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Executions concerned: repeats, duplicates, slow executions, pattern repetitions, queries in the request,
    /// or pool waits.
    pub count: u64,
    /// Their summed duration, in milliseconds.
    pub total_time_ms: f64,
    /// The slowest of them, in milliseconds.
    pub max_time_ms: f64,
    /// Position (in finish order) of the first execution concerned within the request.
    pub first_index: u64,
    /// The call site of the executions concerned (`n_plus_one`, `duplicate`; for `mn_plus_one`, its first
    /// step's): a hash of the application's spans around the query, `0` directly in the request (see
    /// [`QueryRecord::site`](crate::query::QueryRecord::site)). Serialized as 16 hex digits; absent when the
    /// finding is not about one call site.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_site"
    )]
    pub site: Option<u64>,
    /// Distinct parameter sets among the executions, when the driver reported parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_params: Option<u64>,
    /// Rows returned by the executions concerned, summed, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_returned: Option<u64>,
    /// The threshold crossed, in the unit of the rule (queries for counts, milliseconds for times, rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// For an N+1: the earlier query whose rows the loop went over, when one matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceEvidence>,
    /// For an MN+1, the loop's steps in order, each with its kind and count; for `parallelizable`, the reads.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pattern: Vec<PatternMember>,
    /// How to fix it.
    pub recommendation: Recommendation,
}

impl Finding {
    /// Report order: by kind, then most confident, then largest saving, then earliest; fully determined.
    fn report_order(&self, other: &Finding) -> Ordering {
        self.kind
            .cmp(&other.kind)
            .then_with(|| other.confidence.cmp(&self.confidence))
            .then_with(|| other.severity.cmp(&self.severity))
            .then_with(|| {
                other
                    .recommendation
                    .estimated_saving_ms
                    .total_cmp(&self.recommendation.estimated_saving_ms)
            })
            .then_with(|| self.first_index.cmp(&other.first_index))
            .then_with(|| self.fingerprint.cmp(&other.fingerprint))
            .then_with(|| other.count.cmp(&self.count))
    }
}

/// Finds N+1 queries and the other patterns of rules R1–R10 in one settled request.
///
/// `lookup` resolves fingerprints to their text and parser findings; it is called at most once per distinct
/// fingerprint. `baseline` is the route's rolling state for the regression rule; the caller updates it with
/// [`RouteBaseline::observe`] after this call, so the request is not compared with itself.
pub fn detect(
    request: &RequestQueries,
    lookup: &dyn Fn(FingerprintId) -> Option<Arc<FingerprintInfo>>,
    config: &DetectConfig,
    baseline: Option<&RouteBaseline>,
) -> Vec<Finding> {
    if config.route_allowed(&request.route) || config.max_findings == 0 {
        return Vec::new();
    }
    let ctx = Context::new(request, lookup, config);
    let mut out = Findings::new(config);
    let covered = n_plus_one::detect(&ctx, &mut out);
    mn_plus_one::detect(&ctx, &mut out);
    writes::detect(&ctx, &mut out);
    slow::detect(&ctx, &mut out);
    shape::detect(&ctx, &covered, &mut out);
    parallel::detect(&ctx, &mut out);
    budget::detect(&ctx, baseline, &mut out);
    pool::detect(&ctx, &mut out);
    out.finish()
}

/// The findings of one request: filters what the config hides and keeps memory bounded.
pub(crate) struct Findings<'a> {
    config: &'a DetectConfig,
    list: Vec<Finding>,
}

impl<'a> Findings<'a> {
    fn new(config: &'a DetectConfig) -> Self {
        Findings {
            config,
            list: Vec::new(),
        }
    }

    /// Whether a rule is on; rules check it before doing any work.
    pub(crate) fn wants(&self, kind: FindingKind) -> bool {
        self.config.rule_enabled(kind)
    }

    /// Adds a finding unless the config hides it.
    pub(crate) fn push(&mut self, finding: Finding) {
        if !self.config.rule_enabled(finding.kind)
            || finding.confidence < self.config.min_confidence
            || self.config.fingerprint_allowed(finding.fingerprint)
            || finding
                .pattern
                .iter()
                .any(|member| self.config.fingerprint_allowed(member.fingerprint))
        {
            return;
        }
        self.list.push(finding);
        // Trimming to the best `max_findings` early gives the same result as trimming once at the end (the
        // order is total), and keeps a request with thousands of slow statements from holding their texts.
        if self.list.len() >= self.config.max_findings.saturating_mul(2).max(64) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.list.sort_by(Finding::report_order);
        self.list.truncate(self.config.max_findings);
    }

    fn finish(mut self) -> Vec<Finding> {
        self.trim();
        self.list
    }
}

/// Milliseconds of a duration, as the findings show them.
pub(crate) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builds requests and fingerprints by hand for the rules' tests.

    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use super::*;
    use crate::query::model::{Dialect, Enrichment, FingerprintTotals, QueryRecord, StatementKind};
    use crate::route::MethodLabel;

    /// A set of fingerprints and one request being built.
    pub(crate) struct Builder {
        infos: HashMap<FingerprintId, Arc<FingerprintInfo>>,
        records: Vec<QueryRecord>,
        clock: Duration,
        pub(crate) route: &'static str,
        pub(crate) pool_waits: u64,
        pub(crate) pool_wait: Duration,
    }

    /// A statement's id from its text, so tests can name statements by text.
    pub(crate) fn id_of(text: &str) -> FingerprintId {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in text.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        FingerprintId(hash)
    }

    /// The first keyword's kind, as the fingerprinter would give it.
    fn kind_of(text: &str) -> StatementKind {
        let first = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match first.as_str() {
            "SELECT" | "VALUES" | "TABLE" => StatementKind::Select,
            "INSERT" | "REPLACE" => StatementKind::Insert,
            "UPDATE" => StatementKind::Update,
            "DELETE" => StatementKind::Delete,
            "WITH" => StatementKind::With,
            "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "END" | "START" => {
                StatementKind::Transaction
            }
            "SET" | "SHOW" | "RESET" => StatementKind::Session,
            _ => StatementKind::Other,
        }
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder {
                infos: HashMap::new(),
                records: Vec::new(),
                clock: Duration::ZERO,
                route: "/quotations",
                pool_waits: 0,
                pool_wait: Duration::ZERO,
            }
        }

        /// Registers a statement without parser findings (enrichment unset).
        pub(crate) fn stmt(&mut self, text: &str) -> FingerprintId {
            let id = id_of(text);
            self.infos.entry(id).or_insert_with(|| {
                Arc::new(FingerprintInfo {
                    id,
                    text: Arc::from(text),
                    kind: kind_of(text),
                    dialect: Dialect::PostgreSql,
                    tags: Vec::new(),
                    enrichment: OnceLock::new(),
                    exempt: OnceLock::new(),
                })
            });
            id
        }

        /// Registers a statement with parser findings.
        pub(crate) fn parsed(
            &mut self,
            text: &str,
            tables: &[&str],
            edit: impl FnOnce(&mut Enrichment),
        ) -> FingerprintId {
            let id = self.stmt(text);
            let mut enrichment = Enrichment {
                parsed: true,
                kind: Some(kind_of(text)),
                tables: tables.iter().map(|t| t.to_string()).collect(),
                ..Enrichment::default()
            };
            edit(&mut enrichment);
            if let Some(info) = self.infos.get(&id) {
                let _ = info.enrichment.set(enrichment);
            }
            id
        }

        /// Appends one execution that starts when the previous one ended.
        pub(crate) fn run(
            &mut self,
            id: FingerprintId,
            millis: u64,
            rows: Option<u64>,
            params: Option<u64>,
        ) -> &mut Self {
            self.run_at(id, millis, rows, params, 0)
        }

        /// Appends one execution at a call site.
        pub(crate) fn run_at(
            &mut self,
            id: FingerprintId,
            millis: u64,
            rows: Option<u64>,
            params: Option<u64>,
            site: u64,
        ) -> &mut Self {
            let duration = Duration::from_millis(millis);
            self.records.push(QueryRecord {
                fingerprint: id,
                start: self.clock,
                duration,
                rows_returned: rows,
                rows_affected: None,
                params,
                site,
            });
            self.clock += duration;
            self
        }

        /// The settled request, with totals computed from the records.
        pub(crate) fn request(&self) -> RequestQueries {
            let mut totals: Vec<FingerprintTotals> = Vec::new();
            let mut params: HashMap<FingerprintId, Vec<u64>> = HashMap::new();
            for (index, record) in self.records.iter().enumerate() {
                if let Some(p) = record.params {
                    params.entry(record.fingerprint).or_default().push(p);
                }
                match totals
                    .iter_mut()
                    .find(|t| t.fingerprint == record.fingerprint)
                {
                    Some(t) => {
                        t.count += 1;
                        t.total += record.duration;
                        t.max = t.max.max(record.duration);
                        t.rows_returned += record.rows_returned.unwrap_or(0);
                    }
                    None => totals.push(FingerprintTotals {
                        fingerprint: record.fingerprint,
                        count: 1,
                        total: record.duration,
                        max: record.duration,
                        rows_returned: record.rows_returned.unwrap_or(0),
                        first_index: index as u64,
                        distinct_params: 0,
                    }),
                }
            }
            for t in &mut totals {
                if let Some(list) = params.get_mut(&t.fingerprint) {
                    list.sort_unstable();
                    list.dedup();
                    t.distinct_params = list.len() as u32;
                }
            }
            let db_time = self.records.iter().map(|r| r.duration).sum();
            RequestQueries {
                method: MethodLabel::Get,
                route: Arc::from(self.route),
                request_id: "req-1".to_string(),
                elapsed: self.clock,
                records: self.records.clone(),
                records_dropped: 0,
                totals,
                untracked: 0,
                count: self.records.len() as u64,
                db_time,
                pool_waits: self.pool_waits,
                pool_wait: self.pool_wait,
            }
        }

        /// The lookup over the registered statements.
        pub(crate) fn lookup(&self) -> impl Fn(FingerprintId) -> Option<Arc<FingerprintInfo>> + '_ {
            move |id| self.infos.get(&id).cloned()
        }

        /// Runs the detector.
        pub(crate) fn detect(&self, config: &DetectConfig) -> Vec<Finding> {
            self.detect_with(&self.request(), config, None)
        }

        /// Runs the detector on a request built (or edited) by the test.
        pub(crate) fn detect_with(
            &self,
            request: &RequestQueries,
            config: &DetectConfig,
            baseline: Option<&RouteBaseline>,
        ) -> Vec<Finding> {
            let lookup = self.lookup();
            detect(request, &lookup, config, baseline)
        }
    }

    /// The findings of one kind.
    pub(crate) fn of_kind(findings: &[Finding], kind: FindingKind) -> Vec<&Finding> {
        findings.iter().filter(|f| f.kind == kind).collect()
    }

    /// The quotations list of the acceptance example: one list query, then per quotation its customer and
    /// its lines, interleaved.
    pub(crate) fn quotations(builder: &mut Builder, parsed: bool) -> [FingerprintId; 3] {
        let list_sql =
            "SELECT id, customer_id, total FROM quotations ORDER BY created_at DESC LIMIT ?";
        let customer_sql = "SELECT id, name FROM customers WHERE id = ?";
        let lines_sql = "SELECT id, product, quantity FROM quotation_lines WHERE quotation_id = ?";
        let ids = if parsed {
            [
                builder.parsed(list_sql, &["quotations"], |e| e.has_limit = true),
                builder.parsed(customer_sql, &["customers"], |e| {
                    e.single_key_predicate = true
                }),
                builder.parsed(lines_sql, &["quotation_lines"], |e| {
                    e.single_key_predicate = true
                }),
            ]
        } else {
            [
                builder.stmt(list_sql),
                builder.stmt(customer_sql),
                builder.stmt(lines_sql),
            ]
        };
        builder.run(ids[0], 3, Some(20), None);
        for _ in 0..20 {
            builder.run(ids[1], 2, Some(1), None);
            builder.run(ids[2], 2, Some(4), None);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::query::model::{FingerprintTotals, QueryRecord};
    use proptest::prelude::*;

    #[test]
    fn empty_request_has_no_findings() {
        let builder = Builder::new();
        assert!(builder.detect(&DetectConfig::development()).is_empty());
        assert!(builder.detect(&DetectConfig::default()).is_empty());
    }

    #[test]
    fn findings_serialize_snake_case_without_literals() {
        let mut builder = Builder::new();
        quotations(&mut builder, true);
        let findings = builder.detect(&DetectConfig::development());
        let json = serde_json::to_string(&findings).unwrap();
        assert!(json.contains("\"kind\":\"n_plus_one\""));
        assert!(json.contains("\"confidence\":\"high\""));
        assert!(json.contains("\"sea_orm\""));
    }

    #[test]
    fn order_is_deterministic_and_bounded() {
        let mut builder = Builder::new();
        for i in 0..100 {
            let id = builder.stmt(&format!("SELECT a FROM t{i} WHERE id = ?"));
            builder.run(id, 600, Some(1), None);
        }
        let config = DetectConfig::default().max_findings(7);
        let first = builder.detect(&config);
        assert_eq!(first.len(), 7);
        assert_eq!(first, builder.detect(&config));
    }

    #[test]
    fn route_allowlist_silences_everything() {
        let mut builder = Builder::new();
        quotations(&mut builder, true);
        let config = DetectConfig::development().allow_route("/quot*");
        assert!(builder.detect(&config).is_empty());
        let config = DetectConfig::development().allow_route("/other");
        assert!(!builder.detect(&config).is_empty());
    }

    #[test]
    fn missing_lookups_are_skipped() {
        let mut builder = Builder::new();
        quotations(&mut builder, true);
        let request = builder.request();
        let lookup = |_: FingerprintId| None;
        let findings = detect(&request, &lookup, &DetectConfig::development(), None);
        assert!(findings.is_empty());
    }

    fn arb_record() -> impl Strategy<Value = QueryRecord> {
        (
            0u64..6,
            any::<u32>(),
            prop::option::of(any::<u64>()),
            prop::option::of(0u64..4),
            0u64..3,
            0u64..2_000_000,
        )
            .prop_map(|(fp, micros, rows, params, site, start)| QueryRecord {
                fingerprint: FingerprintId(fp),
                start: Duration::from_micros(start),
                duration: Duration::from_micros(u64::from(micros)),
                rows_returned: rows,
                rows_affected: None,
                params,
                site,
            })
    }

    fn arb_totals() -> impl Strategy<Value = FingerprintTotals> {
        (
            0u64..8,
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(
                |(fp, count, total, max, rows, first, distinct)| FingerprintTotals {
                    fingerprint: FingerprintId(fp),
                    count,
                    total: Duration::from_micros(u64::from(total)),
                    max: Duration::from_micros(u64::from(max)),
                    rows_returned: rows,
                    first_index: first,
                    distinct_params: distinct,
                },
            )
    }

    proptest! {
        #[test]
        fn detect_never_panics(
            records in prop::collection::vec(arb_record(), 0..120),
            totals in prop::collection::vec(arb_totals(), 0..10),
            dropped in any::<u64>(),
            count in any::<u64>(),
            waits in any::<u64>(),
            wait in any::<u64>(),
            dev in any::<bool>(),
            samples in prop::collection::vec(any::<u64>(), 0..300),
        ) {
            let mut builder = Builder::new();
            let texts = [
                "SELECT a FROM t WHERE id = ?",
                "SELECT * FROM u",
                "INSERT INTO t (a) VALUES (?)",
                "BEGIN",
                "SELECT ?",
                "UPDATE t SET a = ? WHERE id = ?",
            ];
            let mut ids = Vec::new();
            for text in texts {
                ids.push(builder.stmt(text));
            }
            let records: Vec<QueryRecord> = records
                .into_iter()
                .map(|mut r| {
                    r.fingerprint = ids[(r.fingerprint.0 as usize) % ids.len()];
                    r
                })
                .collect();
            let totals: Vec<FingerprintTotals> = totals
                .into_iter()
                .map(|mut t| {
                    if let Some(id) = ids.get(t.fingerprint.0 as usize) {
                        t.fingerprint = *id;
                    }
                    t
                })
                .collect();
            let mut request = builder.request();
            request.records = records;
            request.totals = totals;
            request.records_dropped = dropped;
            request.count = count;
            request.pool_waits = waits;
            request.pool_wait = Duration::from_nanos(wait);
            let mut baseline = RouteBaseline::new();
            for s in samples {
                baseline.observe(s);
            }
            let config = if dev {
                DetectConfig::development().parallelizable(true)
            } else {
                DetectConfig::default()
            };
            let findings = builder.detect_with(&request, &config, Some(&baseline));
            prop_assert!(findings.len() <= 32);
            prop_assert_eq!(&findings, &builder.detect_with(&request, &config, Some(&baseline)));
        }
    }
}
