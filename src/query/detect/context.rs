//! What every rule reads: the request, its statements looked up once, and its queries grouped by statement
//! and call site, with the totals folded in for queries past the detailed-record cap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::config::DetectConfig;
use super::mn_plus_one::{Loop, find_loops, is_poll};
use super::{Confidence, Finding, FindingKind, Recommendation, Severity};
use crate::query::model::{
    Enrichment, FingerprintId, FingerprintInfo, QueryRecord, RequestQueries, StatementKind,
};

/// Tables whose statements are migration bookkeeping, never application queries.
const MIGRATION_TABLES: [&str; 4] = [
    "_sqlx_migrations",
    "__diesel_schema_migrations",
    "seaql_migrations",
    "refinery_schema_history",
];

/// A statement the lookup knows, with what the rules ask of it.
#[derive(Debug)]
pub(crate) struct Statement {
    pub(crate) info: Arc<FingerprintInfo>,
    /// The parsed kind when the parser ran (a `WITH … SELECT` is a `Select`), else the first keyword's.
    pub(crate) kind: StatementKind,
    /// Never an N+1, duplicate, MN+1 or batchable write (see the module docs).
    pub(crate) exempt: bool,
}

impl Statement {
    pub(crate) fn new(info: Arc<FingerprintInfo>) -> Self {
        let kind = info
            .enrichment
            .get()
            .and_then(|e| e.kind)
            .unwrap_or(info.kind);
        // The text scans are the detector's largest per-statement cost: once the enrichment (and so the kind)
        // is final, the answer is too.
        let exempt = if info.enrichment.get().is_some() {
            *info.exempt.get_or_init(|| is_exempt(&info, kind))
        } else {
            is_exempt(&info, kind)
        };
        Statement { info, kind, exempt }
    }

    /// The parser's findings, when it has run.
    pub(crate) fn enrichment(&self) -> Option<&Enrichment> {
        self.info.enrichment.get()
    }

    /// A read: `SELECT`, or a `WITH` whose main statement is unknown (most are reads).
    pub(crate) fn is_read(&self) -> bool {
        matches!(self.kind, StatementKind::Select | StatementKind::With)
    }

    /// An `INSERT`, `UPDATE` or `DELETE`.
    pub(crate) fn is_write(&self) -> bool {
        matches!(
            self.kind,
            StatementKind::Insert | StatementKind::Update | StatementKind::Delete
        )
    }

    /// The normalized text.
    pub(crate) fn text(&self) -> &str {
        &self.info.text
    }

    /// Tables from the parser, or the first table after `FROM`/`INTO`/`UPDATE` in the text.
    pub(crate) fn tables(&self) -> Vec<String> {
        match self.enrichment() {
            Some(e) if e.parsed && !e.tables.is_empty() => e.tables.clone(),
            _ => super::recommend::table_from_text(self.text())
                .into_iter()
                .collect(),
        }
    }
}

/// Never flagged as repeated: transaction control, session statements, health checks, advisory locks and
/// migration bookkeeping.
fn is_exempt(info: &FingerprintInfo, kind: StatementKind) -> bool {
    if matches!(
        info.kind,
        StatementKind::Transaction | StatementKind::Session
    ) || matches!(kind, StatementKind::Transaction | StatementKind::Session)
    {
        return true;
    }
    let lower = info.text.to_ascii_lowercase();
    if MIGRATION_TABLES.iter().any(|table| lower.contains(table))
        || lower.contains("pg_advisory")
        || lower.contains("get_lock(")
    {
        return true;
    }
    if let Some(e) = info.enrichment.get()
        && e.tables
            .iter()
            .any(|t| MIGRATION_TABLES.contains(&t.as_str()))
    {
        return true;
    }
    kind == StatementKind::Select && !reads_a_table(info, &lower)
}

/// A `SELECT` without `FROM` (`SELECT 1`, `SELECT version()`, `SELECT nextval(?)`) reads no table: a health
/// check or a function call, not a lookup.
fn reads_a_table(info: &FingerprintInfo, lower: &str) -> bool {
    match info.enrichment.get() {
        Some(e) if e.parsed => !e.tables.is_empty(),
        _ => lower
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == "from"),
    }
}

/// The queries of one statement at one call site.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) fingerprint: FingerprintId,
    /// The call site; `None` for a statement seen only in the totals (past the record cap).
    pub(crate) site: Option<u64>,
    /// Executions, including those past the record cap.
    pub(crate) count: u64,
    /// Executions among the detailed records.
    pub(crate) recorded: u64,
    pub(crate) total: Duration,
    pub(crate) max: Duration,
    /// Duration of the first recorded execution (0 when none is recorded).
    pub(crate) first_duration: Duration,
    /// Index (finish order) of the first execution.
    pub(crate) first_index: u64,
    /// Index into `records` of the first recorded execution.
    pub(crate) first_record: Option<usize>,
    /// Indices into `records` of its recorded executions, in finish order.
    pub(crate) records: Vec<usize>,
    /// Records with a known row count, the largest count, and their sum.
    pub(crate) rows_known: u64,
    pub(crate) rows_max: u64,
    pub(crate) rows_sum: u64,
    /// Records with known parameters, and how many distinct parameter hashes among them.
    pub(crate) params_known: u64,
    pub(crate) distinct_params: u64,
    /// Executions whose parameters repeat another's (all of each repeated set), and the time all but the
    /// first of each set took.
    pub(crate) duplicated: u64,
    pub(crate) duplicate_time: Duration,
}

/// One statement's executions over all call sites.
#[derive(Debug, Clone)]
pub(crate) struct StatementTotals {
    pub(crate) fingerprint: FingerprintId,
    pub(crate) count: u64,
    pub(crate) total: Duration,
    pub(crate) max: Duration,
    pub(crate) first_index: u64,
    pub(crate) rows_sum: u64,
    /// The most rows one execution returned (the average for executions seen only in the totals).
    pub(crate) rows_max: u64,
    /// Whether some execution's row count is known.
    pub(crate) rows_known: bool,
    pub(crate) distinct_params: u64,
}

/// The request as the rules read it.
pub(crate) struct Context<'a> {
    pub(crate) request: &'a RequestQueries,
    pub(crate) config: &'a DetectConfig,
    statements: BTreeMap<FingerprintId, Option<Statement>>,
    /// The loops of several statements (R3), found first: their records are in no group.
    pub(crate) loops: Vec<Loop>,
    /// The queries outside the loops, sorted by (fingerprint, site).
    pub(crate) groups: Vec<Group>,
    /// All the queries of each statement, loops included; sorted by fingerprint.
    pub(crate) statement_totals: Vec<StatementTotals>,
    /// Executions and time of each statement within the loops, sorted by fingerprint.
    looped: Vec<(FingerprintId, u64, Duration)>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        request: &'a RequestQueries,
        lookup: &dyn Fn(FingerprintId) -> Option<Arc<FingerprintInfo>>,
        config: &'a DetectConfig,
    ) -> Self {
        let mut statements = BTreeMap::new();
        let ids = request
            .records
            .iter()
            .map(|r| r.fingerprint)
            .chain(request.totals.iter().map(|t| t.fingerprint));
        for id in ids {
            statements
                .entry(id)
                .or_insert_with(|| lookup(id).map(Statement::new));
        }
        // An allowlisted statement takes no part in a loop: the rest of the loop is still reported.
        let candidate = |id: FingerprintId| {
            !config.fingerprint_allowed(id)
                && statements
                    .get(&id)
                    .and_then(Option::as_ref)
                    .is_some_and(|s: &Statement| !s.exempt)
        };
        let mut loops = find_loops(
            &request.records,
            &candidate,
            config.mn_plus_one_min_occurrences,
        );
        loops.retain(|found| !is_poll(&request.records, found));
        let mut in_loop = vec![false; request.records.len()];
        let mut looped: Vec<(FingerprintId, u64, Duration)> = Vec::new();
        for &i in loops.iter().flat_map(|l| &l.records) {
            if let (Some(flag), Some(record)) = (in_loop.get_mut(i), request.records.get(i)) {
                *flag = true;
                looped.push((record.fingerprint, 1, record.duration));
            }
        }
        looped.sort_unstable_by_key(|l| l.0);
        looped.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 += next.1;
                kept.2 = kept.2.saturating_add(next.2);
            }
            same
        });
        let mut all = group_records(&request.records, &[]);
        fold_totals(request, &mut all, &[]);
        let statement_totals = merge_sites(&all);
        let groups = if looped.is_empty() {
            all
        } else {
            let mut free = group_records(&request.records, &in_loop);
            fold_totals(request, &mut free, &looped);
            free
        };
        Context {
            request,
            config,
            statements,
            loops,
            groups,
            statement_totals,
            looped,
        }
    }

    /// Executions and summed time of a statement within the loops.
    pub(crate) fn looped(&self, id: FingerprintId) -> (u64, Duration) {
        match self.looped.binary_search_by_key(&id, |l| l.0) {
            Ok(i) => self
                .looped
                .get(i)
                .map_or((0, Duration::ZERO), |l| (l.1, l.2)),
            Err(_) => (0, Duration::ZERO),
        }
    }

    /// The statement of a fingerprint, when the lookup knew it.
    pub(crate) fn statement(&self, id: FingerprintId) -> Option<&Statement> {
        self.statements.get(&id).and_then(Option::as_ref)
    }

    /// A finding with the request's and the statement's fields filled in.
    pub(crate) fn finding(
        &self,
        kind: FindingKind,
        statement: Option<&Statement>,
        confidence: Confidence,
        severity: Severity,
    ) -> Finding {
        Finding {
            kind,
            confidence,
            severity,
            method: self.request.method.as_str().to_string(),
            route: self.request.route.to_string(),
            request_id: self.request.request_id.clone(),
            fingerprint: statement.map_or(FingerprintId::default(), |s| s.info.id),
            sql: statement.map_or_else(String::new, |s| s.text().to_string()),
            tables: statement.map_or_else(Vec::new, Statement::tables),
            count: 0,
            total_time_ms: 0.0,
            max_time_ms: 0.0,
            first_index: 0,
            site: None,
            distinct_params: None,
            rows_returned: None,
            threshold: None,
            source: None,
            pattern: Vec::new(),
            recommendation: Recommendation::default(),
        }
    }
}

/// Groups the records by (fingerprint, site), leaving out those `skip` marks: one sort of their indices,
/// then one pass.
fn group_records(records: &[QueryRecord], skip: &[bool]) -> Vec<Group> {
    let mut order: Vec<usize> = (0..records.len())
        .filter(|&i| !skip.get(i).copied().unwrap_or(false))
        .collect();
    order.sort_by_key(|&i| records.get(i).map(|r| (r.fingerprint, r.site, i)));
    let mut groups: Vec<Group> = Vec::new();
    let mut params: Vec<(u64, usize)> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let key = order
            .get(start)
            .and_then(|&i| records.get(i))
            .map(|r| (r.fingerprint, r.site));
        let end = order
            .iter()
            .skip(start)
            .position(|&i| records.get(i).map(|r| (r.fingerprint, r.site)) != key)
            .map_or(order.len(), |n| start + n);
        if let Some(run) = order.get(start..end) {
            groups.extend(group_of(records, run, &mut params));
        }
        start = end;
    }
    groups
}

/// The group of one run of record indices (same fingerprint and site, in finish order).
fn group_of(
    records: &[QueryRecord],
    run: &[usize],
    params: &mut Vec<(u64, usize)>,
) -> Option<Group> {
    let first_record = *run.first()?;
    let first = records.get(first_record)?;
    let mut group = Group {
        fingerprint: first.fingerprint,
        site: Some(first.site),
        count: 0,
        recorded: 0,
        total: Duration::ZERO,
        max: Duration::ZERO,
        first_duration: first.duration,
        first_index: first_record as u64,
        first_record: Some(first_record),
        records: run.to_vec(),
        rows_known: 0,
        rows_max: 0,
        rows_sum: 0,
        params_known: 0,
        distinct_params: 0,
        duplicated: 0,
        duplicate_time: Duration::ZERO,
    };
    params.clear();
    for &i in run {
        let Some(record) = records.get(i) else {
            continue;
        };
        group.recorded += 1;
        group.total = group.total.saturating_add(record.duration);
        group.max = group.max.max(record.duration);
        if let Some(rows) = record.rows_returned {
            group.rows_known += 1;
            group.rows_max = group.rows_max.max(rows);
            group.rows_sum = group.rows_sum.saturating_add(rows);
        }
        if let Some(p) = record.params {
            params.push((p, i));
        }
    }
    group.count = group.recorded;
    group.params_known = params.len() as u64;
    count_duplicates(records, params, &mut group);
    Some(group)
}

/// Distinct parameter sets, and the executions that repeat one (sorted by parameters, then finish order, so
/// the first of each set is the one a fix would keep).
fn count_duplicates(records: &[QueryRecord], params: &mut [(u64, usize)], group: &mut Group) {
    params.sort_unstable();
    for set in params.chunk_by(|a, b| a.0 == b.0) {
        group.distinct_params += 1;
        if set.len() < 2 {
            continue;
        }
        group.duplicated += set.len() as u64;
        for &(_, i) in set.iter().skip(1) {
            if let Some(record) = records.get(i) {
                group.duplicate_time = group.duplicate_time.saturating_add(record.duration);
            }
        }
    }
}

/// Adds the executions the records do not hold (past the cap) from the per-fingerprint totals: to the
/// statement's largest group, or to a group of their own when no record of the statement was kept.
/// `looped` lists the executions (and time) of each statement the groups leave out on purpose.
fn fold_totals(
    request: &RequestQueries,
    groups: &mut Vec<Group>,
    looped: &[(FingerprintId, u64, Duration)],
) {
    let mut added = Vec::new();
    for totals in &request.totals {
        let (mut count, mut total, mut rows) = looped
            .iter()
            .find(|l| l.0 == totals.fingerprint)
            .map_or((0u64, Duration::ZERO, 0u64), |l| (l.1, l.2, 0));
        let mut largest: Option<usize> = None;
        for (i, group) in groups.iter().enumerate() {
            if group.fingerprint != totals.fingerprint {
                continue;
            }
            count = count.saturating_add(group.count);
            total = total.saturating_add(group.total);
            rows = rows.saturating_add(group.rows_sum);
            let larger = largest
                .and_then(|l| groups.get(l))
                .is_none_or(|l| group.count > l.count);
            if larger {
                largest = Some(i);
            }
        }
        let extra = totals.count.saturating_sub(count);
        if extra == 0 {
            continue;
        }
        let extra_time = totals.total.saturating_sub(total);
        let extra_rows = totals.rows_returned.saturating_sub(rows);
        match largest.and_then(|l| groups.get_mut(l)) {
            Some(group) => {
                group.count = group.count.saturating_add(extra);
                group.total = group.total.saturating_add(extra_time);
                group.max = group.max.max(totals.max);
                group.rows_sum = group.rows_sum.saturating_add(extra_rows);
            }
            None => added.push(Group {
                fingerprint: totals.fingerprint,
                site: None,
                count: extra,
                recorded: 0,
                total: extra_time,
                max: totals.max,
                first_duration: Duration::ZERO,
                first_index: totals.first_index,
                first_record: None,
                records: Vec::new(),
                rows_known: 0,
                rows_max: 0,
                rows_sum: extra_rows,
                params_known: 0,
                distinct_params: 0,
                duplicated: 0,
                duplicate_time: Duration::ZERO,
            }),
        }
    }
    if !added.is_empty() {
        groups.extend(added);
        groups.sort_by_key(|g| (g.fingerprint, g.site, g.first_index));
    }
}

/// One entry per statement, over all its call sites.
fn merge_sites(groups: &[Group]) -> Vec<StatementTotals> {
    let mut merged: Vec<StatementTotals> = Vec::new();
    for group in groups {
        match merged.last_mut() {
            Some(last) if last.fingerprint == group.fingerprint => {
                last.count = last.count.saturating_add(group.count);
                last.total = last.total.saturating_add(group.total);
                last.max = last.max.max(group.max);
                last.first_index = last.first_index.min(group.first_index);
                last.rows_sum = last.rows_sum.saturating_add(group.rows_sum);
                last.rows_max = last.rows_max.max(group_rows_max(group));
                last.rows_known |= group.rows_known > 0 || group.rows_sum > 0;
                last.distinct_params = last.distinct_params.saturating_add(group.distinct_params);
            }
            _ => merged.push(StatementTotals {
                fingerprint: group.fingerprint,
                count: group.count,
                total: group.total,
                max: group.max,
                first_index: group.first_index,
                rows_sum: group.rows_sum,
                rows_max: group_rows_max(group),
                rows_known: group.rows_known > 0 || group.rows_sum > 0,
                distinct_params: group.distinct_params,
            }),
        }
    }
    merged
}

/// The most rows one execution of a group returned; the average when no execution was recorded.
fn group_rows_max(group: &Group) -> u64 {
    if group.rows_known > 0 {
        group.rows_max
    } else {
        group.rows_sum.checked_div(group.count).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::test_support::*;

    #[test]
    fn exemptions() {
        let mut builder = Builder::new();
        let ids = [
            builder.stmt("BEGIN"),
            builder.stmt("COMMIT"),
            builder.stmt("SET search_path = ?"),
            builder.stmt("SELECT ?"),
            builder.stmt("SELECT version()"),
            builder.stmt("SELECT pg_advisory_xact_lock(?)"),
            builder.stmt("SELECT version FROM _sqlx_migrations ORDER BY version"),
            builder.parsed("SELECT checksum FROM x", &["_sqlx_migrations"], |_| {}),
        ];
        let keep = builder.stmt("SELECT name FROM customers WHERE id = ?");
        let request = builder.request();
        let lookup = builder.lookup();
        let config = DetectConfig::default();
        let ctx = Context::new(&request, &lookup, &config);
        assert!(ctx.statement(keep).is_none(), "not in the request");
        for id in ids.iter().copied().chain([keep]) {
            let statement = Statement::new(lookup(id).unwrap());
            assert_eq!(statement.exempt, id != keep, "{}", statement.text());
        }
    }

    #[test]
    fn groups_by_site_and_counts_duplicates() {
        let mut builder = Builder::new();
        let id = builder.stmt("SELECT a FROM t WHERE id = ?");
        builder.run_at(id, 1, Some(1), Some(7), 1);
        builder.run_at(id, 2, Some(1), Some(7), 1);
        builder.run_at(id, 3, Some(0), Some(8), 1);
        builder.run_at(id, 4, None, None, 2);
        let request = builder.request();
        let groups = group_records(&request.records, &[]);
        assert_eq!(groups.len(), 2);
        let first = &groups[0];
        assert_eq!(
            (first.site, first.count, first.distinct_params),
            (Some(1), 3, 2)
        );
        assert_eq!(
            (first.duplicated, first.duplicate_time),
            (2, Duration::from_millis(2))
        );
        assert_eq!(
            (first.rows_known, first.rows_max, first.rows_sum),
            (3, 1, 2)
        );
        assert_eq!(groups[1].params_known, 0);
    }
}
