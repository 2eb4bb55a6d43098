//! R1 (N+1) and R2 (duplicates): one statement repeated at one call site.
//!
//! A group is one statement at one call site. Known parameters decide between the two rules: all identical is
//! a duplicate, some different is an N+1. Unknown parameters (sqlx reports none) leave the shape of the
//! request to decide how sure an N+1 is: the cardinality match with an earlier query, single-key lookups, or
//! a query right before the repeats.
//!
//! An N+1 whose keys partly repeat (10 lookups of 6 keys) is reported once, as the N+1: batching the
//! distinct keys fixes both. Below the N+1 threshold, the repeated keys are reported as a duplicate.

use std::collections::BTreeSet;
use std::time::Duration;

use super::context::{Context, Group, Statement};
use super::recommend::{self, NPlusOne};
use super::{Confidence, FindingKind, Findings, Severity, SourceEvidence, millis};
use crate::query::model::{FingerprintId, QueryRecord};

/// Records looked at before a group's first one when searching for its source: enough for any handler that
/// lists and then loops, bounded so that many groups stay linear.
const SOURCE_LOOKBACK: usize = 256;

/// Reports N+1s and duplicates among the queries outside the loops; returns the statements that run in a
/// loop (an N+1 or a step of an MN+1), for the rules that weigh them.
pub(crate) fn detect(ctx: &Context<'_>, out: &mut Findings<'_>) -> BTreeSet<FingerprintId> {
    let mut covered: BTreeSet<FingerprintId> = ctx
        .loops
        .iter()
        .flat_map(|l| l.steps.iter().map(|s| s.fingerprint))
        .collect();
    for group in &ctx.groups {
        let Some(statement) = ctx.statement(group.fingerprint) else {
            continue;
        };
        if statement.exempt {
            continue;
        }
        if all_params_identical(group) {
            if polled(ctx, group) {
                continue; // the same status asked again after waiting: a poll, its answer may change
            }
            let count = if group.params_known == group.recorded {
                group.count
            } else {
                group.params_known
            };
            let saving = group.total.saturating_sub(group.first_duration);
            duplicate(ctx, group, statement, count, millis(saving), out);
        } else if is_n_plus_one(ctx, group, statement) && !false_loop(ctx, group, statement) {
            covered.insert(group.fingerprint);
            if out.wants(FindingKind::NPlusOne) {
                n_plus_one(ctx, group, statement, out);
            }
        } else if group.duplicated > 0 {
            // Not enough repeats for an N+1, but some of them had the same parameters.
            let saving = millis(group.duplicate_time);
            duplicate(ctx, group, statement, group.duplicated, saving, out);
        }
    }
    covered
}

/// At least two executions with known parameters, all the same.
fn all_params_identical(group: &Group) -> bool {
    group.params_known >= 2 && group.distinct_params == 1
}

/// A read repeated from one call site at least the configured number of times. How long the repeats took sets
/// the severity, not whether the loop is reported: a loop that is fast on today's data is still a loop.
fn is_n_plus_one(ctx: &Context<'_>, group: &Group, statement: &Statement) -> bool {
    statement.is_read() && group.count >= ctx.config.n_plus_one_min_repeats
}

fn n_plus_one(ctx: &Context<'_>, group: &Group, statement: &Statement, out: &mut Findings<'_>) {
    let source = find_source(ctx, SourceQuery::of(group));
    let confidence = confidence(ctx, group, statement, source.as_ref());
    let saving = millis(group.total.saturating_sub(group.max));
    let severity = if group.total < ctx.config.n_plus_one_min_total {
        Severity::Info
    } else if group.count >= ctx.config.n_plus_one_min_repeats.saturating_mul(10)
        || saving >= millis(ctx.config.slow_query)
    {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let source_statement = source.as_ref().and_then(|s| ctx.statement(s.fingerprint));
    let mut finding = ctx.finding(FindingKind::NPlusOne, Some(statement), confidence, severity);
    fill_counts(&mut finding, group);
    finding.threshold = Some(ctx.config.n_plus_one_min_repeats as f64);
    finding.recommendation = recommend::n_plus_one(&NPlusOne {
        statement,
        source: source_statement,
        count: group.count,
        saving_ms: saving,
    });
    finding.source = source.map(|s| SourceEvidence {
        fingerprint: s.fingerprint,
        sql: source_statement.map_or_else(String::new, |st| st.text().to_string()),
        rows_returned: s.rows,
    });
    out.push(finding);
}

fn duplicate(
    ctx: &Context<'_>,
    group: &Group,
    statement: &Statement,
    count: u64,
    saving_ms: f64,
    out: &mut Findings<'_>,
) {
    let config = ctx.config;
    let eligible = statement.is_read() || (!config.duplicates_select_only && statement.is_write());
    if !eligible || count < config.duplicate_min_repeats || !out.wants(FindingKind::Duplicate) {
        return;
    }
    let severity = if count >= config.n_plus_one_min_repeats {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut finding = ctx.finding(
        FindingKind::Duplicate,
        Some(statement),
        Confidence::High,
        severity,
    );
    fill_counts(&mut finding, group);
    finding.count = count;
    finding.threshold = Some(config.duplicate_min_repeats as f64);
    finding.recommendation = recommend::duplicate(statement, count, saving_ms);
    out.push(finding);
}

/// The counts, times and evidence of a group.
fn fill_counts(finding: &mut super::Finding, group: &Group) {
    finding.count = group.count;
    finding.site = group.site;
    finding.total_time_ms = millis(group.total);
    finding.max_time_ms = millis(group.max);
    finding.first_index = group.first_index;
    finding.distinct_params = (group.params_known > 0).then_some(group.distinct_params);
    finding.rows_returned = (group.rows_known > 0 || group.rows_sum > 0).then_some(group.rows_sum);
}

/// An earlier query whose rows the loop went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) fingerprint: FingerprintId,
    pub(crate) rows: u64,
    /// At the group's call site, or directly in the request (which encloses every site).
    pub(crate) same_site: bool,
}

impl Source {
    /// Strong evidence: at the same or enclosing site, or one repeat per row exactly. Span-path hashes cannot
    /// tell that one site encloses another (only the request itself, site 0, is known to), so an exact row
    /// match stands in for it.
    pub(crate) fn is_strong(&self, repeats: u64) -> bool {
        self.same_site || self.rows == repeats
    }
}

/// `rows` rows explain `repeats` repeats: `repeats ≤ rows ≤ 2 · repeats` (some rows may share a key, or be
/// skipped by a filter in the loop).
fn cardinality_matches(rows: u64, repeats: u64) -> bool {
    repeats > 0 && rows >= repeats && repeats.saturating_mul(2) >= rows
}

/// Where to look for the source of a run of repeats.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceQuery<'a> {
    /// The repeated statements (a source is none of them).
    pub(crate) fingerprints: &'a [FingerprintId],
    /// Their call site, when known.
    pub(crate) site: Option<u64>,
    /// Index into the records of the first repeat, when recorded.
    pub(crate) first_record: Option<usize>,
    /// Index (finish order) of the first repeat.
    pub(crate) first_index: u64,
    /// Repeats to explain.
    pub(crate) repeats: u64,
}

impl SourceQuery<'_> {
    fn of(group: &Group) -> SourceQuery<'_> {
        SourceQuery {
            fingerprints: std::slice::from_ref(&group.fingerprint),
            site: group.site,
            first_record: group.first_record,
            first_index: group.first_index,
            repeats: group.count,
        }
    }
}

/// A different read that finished before the first repeat and returned a matching number of rows: the
/// nearest one at the same or enclosing site, else the nearest exact match anywhere, else the nearest.
pub(crate) fn find_source(ctx: &Context<'_>, query: SourceQuery<'_>) -> Option<Source> {
    let mut elsewhere = None;
    if let Some(first) = query.first_record {
        let before = ctx.request.records.get(..first).unwrap_or_default();
        for record in before.iter().rev().take(SOURCE_LOOKBACK) {
            let Some(rows) = record.rows_returned else {
                continue;
            };
            if query.fingerprints.contains(&record.fingerprint)
                || !cardinality_matches(rows, query.repeats)
                || !is_source_statement(ctx, record.fingerprint)
            {
                continue;
            }
            let same_site = Some(record.site) == query.site || record.site == 0;
            let source = Source {
                fingerprint: record.fingerprint,
                rows,
                same_site,
            };
            if same_site {
                return Some(source);
            }
            let better =
                elsewhere.is_none_or(|e: Source| e.rows != query.repeats && rows == query.repeats);
            if better {
                elsewhere = Some(source);
            }
        }
    }
    elsewhere.or_else(|| source_from_totals(ctx, query))
}

/// Past the record cap, a statement that ran once before the repeats is a source when its rows match; its
/// call site is unknown.
fn source_from_totals(ctx: &Context<'_>, query: SourceQuery<'_>) -> Option<Source> {
    ctx.request
        .totals
        .iter()
        .filter(|t| {
            t.count == 1
                && !query.fingerprints.contains(&t.fingerprint)
                && t.first_index < query.first_index
                && cardinality_matches(t.rows_returned, query.repeats)
                && is_source_statement(ctx, t.fingerprint)
        })
        .max_by_key(|t| t.first_index)
        .map(|t| Source {
            fingerprint: t.fingerprint,
            rows: t.rows_returned,
            same_site: false,
        })
}

fn is_source_statement(ctx: &Context<'_>, id: FingerprintId) -> bool {
    ctx.statement(id).is_some_and(|s| s.is_read() && !s.exempt)
}

/// How sure an N+1 is (see the module docs of `detect`).
fn confidence(
    ctx: &Context<'_>,
    group: &Group,
    statement: &Statement,
    source: Option<&Source>,
) -> Confidence {
    if group.total < ctx.config.negligible_time {
        return Confidence::Low;
    }
    match source {
        Some(source) if source.is_strong(group.count) => return Confidence::High,
        Some(_) => return Confidence::Medium,
        None => {}
    }
    if parent_returned_nothing(ctx, group.first_record, &[group.fingerprint]) {
        return Confidence::Low;
    }
    if group.distinct_params >= 2 || single_key_lookups(group, statement) || preceded(ctx, group) {
        Confidence::Medium
    } else {
        Confidence::Low
    }
}

/// The read that ran last before the repeats returned no row: the loop cannot be going over its rows.
pub(crate) fn parent_returned_nothing(
    ctx: &Context<'_>,
    first_record: Option<usize>,
    repeated: &[FingerprintId],
) -> bool {
    let Some(first) = first_record else {
        return false;
    };
    let before = ctx.request.records.get(..first).unwrap_or_default();
    before
        .iter()
        .rev()
        .take(SOURCE_LOOKBACK)
        .find(|r| {
            !repeated.contains(&r.fingerprint)
                && ctx
                    .statement(r.fingerprint)
                    .is_some_and(|s| !s.exempt && s.is_read())
        })
        .is_some_and(|r| r.rows_returned == Some(0))
}

/// Repeats that are not a loop over rows: a poll (waits between the repeats), pages of an export, or the same
/// lookup scattered over the request between unrelated queries.
fn false_loop(ctx: &Context<'_>, group: &Group, statement: &Statement) -> bool {
    polled(ctx, group) || pages(ctx, group, statement) || scattered(ctx, group)
}

/// The repeats waited between each other (see [`waited`]).
fn polled(ctx: &Context<'_>, group: &Group) -> bool {
    let per_repeat = group
        .total
        .checked_div(u32::try_from(group.count.max(1)).unwrap_or(u32::MAX))
        .unwrap_or_default();
    waited(&ctx.request.records, &group.records, per_repeat)
}

/// The shortest wait between two repeats that makes them a poll, not a loop: whatever a loop does between
/// two lookups takes less (an HTTP call per item is a loop of its own kind, with its own cost).
const POLL_MIN_WAIT: Duration = Duration::from_millis(10);

/// How many times longer than one repeat's queries the waits between repeats are in a poll.
const POLL_RATIO: u32 = 10;

/// The repeats at `indices` (into `records`, finish order) waited between each other: the typical time
/// between one repeat's end and the next one's start, less the queries that ran in between, is at least
/// [`POLL_MIN_WAIT`] and [`POLL_RATIO`] times the queries of one repeat.
pub(crate) fn waited(records: &[QueryRecord], indices: &[usize], per_repeat: Duration) -> bool {
    let mut idle: Vec<Duration> = indices
        .windows(2)
        .filter_map(|pair| {
            let (&a, &b) = (pair.first()?, pair.get(1)?);
            let (first, next) = (records.get(a)?, records.get(b)?);
            let gap = next
                .start
                .saturating_sub(first.start.saturating_add(first.duration));
            let busy: Duration = records.get(a + 1..b)?.iter().map(|r| r.duration).sum();
            Some(gap.saturating_sub(busy))
        })
        .collect();
    if idle.is_empty() {
        return false;
    }
    idle.sort_unstable();
    let median = idle.get(idle.len() / 2).copied().unwrap_or_default();
    median >= POLL_MIN_WAIT && median >= per_repeat.saturating_mul(POLL_RATIO)
}

/// Pages of one query (`LIMIT` with `OFFSET` or a keyset condition `> ?`): every page but the last returned
/// the same number of rows, at least two, and the last no more. Each page needs the previous one's last key;
/// they cannot be batched, and each returns many rows.
fn pages(ctx: &Context<'_>, group: &Group, statement: &Statement) -> bool {
    if !paginated_text(statement.text()) || group.records.len() < 2 {
        return false;
    }
    let rows: Option<Vec<u64>> = group
        .records
        .iter()
        .map(|&i| ctx.request.records.get(i).and_then(|r| r.rows_returned))
        .collect();
    let Some(rows) = rows else {
        return false;
    };
    let Some((last, full)) = rows.split_last() else {
        return false;
    };
    let page = full.first().copied().unwrap_or(0);
    page >= 2 && full.iter().all(|&r| r == page) && *last <= page
}

/// A `LIMIT`/`FETCH` with an `OFFSET` or a range condition on a placeholder (`id > $1`, `(a, b) > (?, ?)`).
fn paginated_text(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let has = |k: &str| words.iter().any(|w| w.eq_ignore_ascii_case(k));
    let limited = has("LIMIT") || has("FETCH");
    let range = words.windows(2).any(|w| match w {
        [op, value] => {
            matches!(*op, ">" | ">=" | "<" | "<=")
                && value.trim_start_matches('(').starts_with(['$', '?'])
        }
        _ => false,
    });
    limited && (has("OFFSET") || range)
}

/// Most of the intervals between consecutive repeats hold a query that does not recur with them: the same
/// lookup done here and there (a permission check before each step of a request), not a loop.
fn scattered(ctx: &Context<'_>, group: &Group) -> bool {
    let (Some(&first), Some(&last)) = (group.records.first(), group.records.last()) else {
        return false;
    };
    let gaps = group.records.len().saturating_sub(1);
    if gaps == 0 {
        return false;
    }
    let span = ctx.request.records.get(first..=last).unwrap_or_default();
    let relevant = |r: &&QueryRecord| {
        r.fingerprint != group.fingerprint
            && ctx.statement(r.fingerprint).is_some_and(|s| !s.exempt)
    };
    // A statement that recurs in (nearly) every interval is part of the loop's body.
    let recurring =
        |id: FingerprintId| span.iter().filter(|r| r.fingerprint == id).count() + 1 >= gaps;
    let unrelated = group
        .records
        .windows(2)
        .filter(|pair| {
            let (Some(&a), Some(&b)) = (pair.first(), pair.get(1)) else {
                return false;
            };
            ctx.request
                .records
                .get(a + 1..b)
                .unwrap_or_default()
                .iter()
                .filter(relevant)
                .any(|r| !recurring(r.fingerprint))
        })
        .count();
    unrelated * 2 > gaps
}

/// Every repeat returned at most one row, through a `key = ?` predicate.
fn single_key_lookups(group: &Group, statement: &Statement) -> bool {
    let at_most_one_row = if group.rows_known > 0 {
        group.rows_max <= 1
    } else {
        group.first_record.is_none() && group.rows_sum <= group.count
    };
    let single_key = match statement.enrichment() {
        Some(e) if e.parsed => e.single_key_predicate,
        _ => recommend::single_key_in_text(statement.text()),
    };
    at_most_one_row && single_key
}

/// Another (not exempt) query ran before the repeats: the structure Sentry's detector requires. Exempt
/// statements in between (a `BEGIN`) are looked through.
fn preceded(ctx: &Context<'_>, group: &Group) -> bool {
    match group.first_record {
        Some(first) => {
            let before = ctx.request.records.get(..first).unwrap_or_default();
            before
                .iter()
                .rev()
                .take(SOURCE_LOOKBACK)
                .any(|r| ctx.statement(r.fingerprint).is_some_and(|s| !s.exempt))
        }
        None => ctx.request.totals.iter().any(|t| {
            t.first_index < group.first_index
                && t.fingerprint != group.fingerprint
                && ctx.statement(t.fingerprint).is_some_and(|s| !s.exempt)
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;
    use crate::query::model::{FingerprintTotals, QueryRecord};

    #[test]
    fn quotations_is_one_high_confidence_loop() {
        for parsed in [true, false] {
            let mut builder = Builder::new();
            let [list, customers, lines] = quotations(&mut builder, parsed);
            for config in [DetectConfig::development(), DetectConfig::default()] {
                let findings = builder.detect(&config);
                // Two reads per quotation: one loop, reported once with its two steps.
                assert_eq!(findings.len(), 1, "{findings:#?}");
                let finding = &findings[0];
                assert_eq!(finding.kind, FindingKind::MnPlusOne);
                assert_eq!(finding.confidence, Confidence::High);
                assert_eq!(finding.count, 20);
                assert_eq!(finding.route, "/quotations");
                assert_eq!(finding.method, "GET");
                let source = finding.source.as_ref().unwrap();
                assert_eq!((source.fingerprint, source.rows_returned), (list, 20));
                assert!(source.sql.contains("FROM quotations"));
                let steps: Vec<_> = finding
                    .pattern
                    .iter()
                    .map(|m| (m.fingerprint, m.kind, m.count))
                    .collect();
                assert_eq!(
                    steps,
                    vec![
                        (customers, FindingKind::NPlusOne, 20),
                        (lines, FindingKind::NPlusOne, 20)
                    ]
                );
                assert!((finding.recommendation.estimated_saving_ms - 76.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn quotations_recommendation_is_concrete() {
        let mut builder = Builder::new();
        quotations(&mut builder, true);
        let findings = builder.detect(&DetectConfig::development());
        let fix = &findings[0].recommendation;
        assert!(
            fix.sqlx
                .contains("SELECT id, name FROM customers WHERE id = ANY($1)"),
            "{}",
            fix.sqlx
        );
        assert!(
            fix.sqlx
                .contains("quotation_lines WHERE quotation_id = ANY($1)")
        );
        assert!(
            fix.sqlx.contains("JOIN `customers`, `quotation_lines`"),
            "{}",
            fix.sqlx
        );
        assert!(fix.diesel.contains("customers::id.eq_any"));
        assert!(fix.sea_orm.contains("quotations.load_one(customer::Entity"));
        assert!(fix.summary.contains("`quotations`"));
        assert!(
            fix.diesel
                .contains("QuotationLine::belonging_to(&quotations)")
        );
        assert!(fix.diesel.contains("grouped_by"));
        assert!(fix.sea_orm.contains("load_many(quotation_line::Entity"));
        assert!(fix.sea_orm.contains("find_with_related"));
    }

    #[test]
    fn one_statement_loop_recommendation_fits_the_statement() {
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id, customer_id FROM quotations LIMIT $1");
        let customer = builder.parsed(
            "SELECT id, name FROM customers WHERE id = $1",
            &["customers"],
            |e| e.single_key_predicate = true,
        );
        builder.run(list, 3, Some(20), None);
        for _ in 0..20 {
            builder.run(customer, 2, Some(1), None);
        }
        let findings = builder.detect(&DetectConfig::development());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let fix = &findings[0].recommendation;
        assert!(
            fix.sqlx.contains("customers WHERE id = ANY($1)"),
            "{}",
            fix.sqlx
        );
        assert!(fix.sqlx.contains("JOIN `customers`"));
        assert!(
            fix.sqlx.contains("`Vec<_>` of the type of `customers.id`"),
            "{}",
            fix.sqlx
        );
        assert!(!fix.sqlx.contains("i64"));
    }

    #[test]
    fn fixed_quotations_has_no_n_plus_one() {
        let mut builder = Builder::new();
        let list = builder.parsed(
            "SELECT id, customer_id, total FROM quotations ORDER BY created_at DESC LIMIT ?",
            &["quotations"],
            |e| e.has_limit = true,
        );
        let customers = builder.parsed(
            "SELECT id, name FROM customers WHERE id = ANY(?)",
            &["customers"],
            |_| {},
        );
        let lines = builder.parsed(
            "SELECT id, quotation_id, product FROM quotation_lines WHERE quotation_id IN (?+)",
            &["quotation_lines"],
            |_| {},
        );
        builder.run(list, 3, Some(20), None);
        builder.run(customers, 2, Some(12), None);
        builder.run(lines, 2, Some(80), None);
        for config in [DetectConfig::development(), DetectConfig::default()] {
            assert!(builder.detect(&config).is_empty());
        }
    }

    #[test]
    fn cardinality_mismatch_lowers_confidence() {
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM orders WHERE status = ?");
        let item = builder.stmt("SELECT sku, qty FROM order_items WHERE order_id = ?");
        builder.run(list, 2, Some(100), None);
        for _ in 0..6 {
            builder.run(item, 5, Some(3), None);
        }
        let findings = builder.detect(&DetectConfig::default());
        let n1 = of_kind(&findings, FindingKind::NPlusOne);
        assert_eq!(n1.len(), 1);
        assert_eq!(
            n1[0].confidence,
            Confidence::Medium,
            "a query ran right before"
        );
        assert!(n1[0].source.is_none());

        // Nothing before the repeats, several rows each, no params: a low-confidence repeat.
        let mut builder = Builder::new();
        let item = builder.stmt("SELECT sku, qty FROM order_items WHERE order_id = ?");
        for _ in 0..6 {
            builder.run(item, 5, Some(3), None);
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings[0].kind, FindingKind::NPlusOne);
        assert_eq!(findings[0].confidence, Confidence::Low);
    }

    #[test]
    fn single_key_lookups_are_medium_and_source_elsewhere_is_medium() {
        let mut builder = Builder::new();
        let user = builder.stmt("SELECT name FROM users WHERE id = ?");
        for _ in 0..5 {
            builder.run(user, 5, Some(1), None);
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings[0].confidence, Confidence::Medium);

        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM posts");
        let author = builder.stmt("SELECT name FROM users WHERE id = ?");
        builder.run_at(list, 5, Some(6), None, 7);
        for _ in 0..5 {
            builder.run_at(author, 5, Some(1), None, 9);
        }
        let findings = builder.detect(&DetectConfig::default());
        let n1 = of_kind(&findings, FindingKind::NPlusOne);
        assert_eq!(n1[0].confidence, Confidence::Medium);
        assert_eq!(n1[0].source.as_ref().unwrap().fingerprint, list);

        // One repeat per row exactly: strong evidence even from another call site.
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM posts");
        let author = builder.stmt("SELECT name FROM users WHERE id = ?");
        builder.run_at(list, 5, Some(5), None, 7);
        for _ in 0..5 {
            builder.run_at(author, 5, Some(1), None, 9);
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings[0].confidence, Confidence::High);
    }

    #[test]
    fn distinct_params_are_an_n_plus_one_identical_a_duplicate() {
        let mut builder = Builder::new();
        let user = builder.stmt("SELECT name FROM users WHERE email LIKE ?");
        for p in 0..5 {
            builder.run(user, 5, Some(2), Some(p));
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::NPlusOne);
        assert_eq!(findings[0].confidence, Confidence::Medium);
        assert_eq!(findings[0].distinct_params, Some(5));

        let mut builder = Builder::new();
        let settings = builder.stmt("SELECT value FROM settings WHERE key = ?");
        for _ in 0..4 {
            builder.run(settings, 3, Some(1), Some(42));
        }
        let findings = builder.detect(&DetectConfig::development());
        assert_eq!(findings.len(), 1);
        let dup = &findings[0];
        assert_eq!(
            (dup.kind, dup.confidence, dup.count),
            (FindingKind::Duplicate, Confidence::High, 4)
        );
        assert!((dup.recommendation.estimated_saving_ms - 9.0).abs() < 1e-6);
        assert!(dup.recommendation.summary.contains("`settings`"));
    }

    #[test]
    fn some_identical_params_below_threshold_are_duplicates() {
        let mut builder = Builder::new();
        let user = builder.stmt("SELECT name FROM users WHERE id = ?");
        for p in [1, 2, 1] {
            builder.run(user, 2, Some(1), Some(p));
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (findings[0].kind, findings[0].count),
            (FindingKind::Duplicate, 2)
        );
        assert!((findings[0].recommendation.estimated_saving_ms - 2.0).abs() < 1e-6);
    }

    #[test]
    fn duplicate_writes_only_when_asked() {
        let mut builder = Builder::new();
        let touch = builder.stmt("UPDATE sessions SET seen_at = now() WHERE id = ?");
        builder
            .run(touch, 1, None, Some(3))
            .run(touch, 1, None, Some(3));
        assert!(builder.detect(&DetectConfig::development()).is_empty());
        let config = DetectConfig::development().duplicates_select_only(false);
        assert_eq!(builder.detect(&config)[0].kind, FindingKind::Duplicate);
    }

    #[test]
    fn never_flagged() {
        let mut builder = Builder::new();
        let begin = builder.stmt("BEGIN");
        let commit = builder.stmt("COMMIT");
        let ping = builder.stmt("SELECT ?");
        let one = builder.stmt("SELECT 1");
        let version = builder.stmt("SELECT version()");
        let set = builder.stmt("SET LOCAL statement_timeout = ?");
        let migration =
            builder.stmt("SELECT version, checksum FROM _sqlx_migrations ORDER BY version");
        let lock = builder.stmt("SELECT pg_advisory_lock(?)");
        for _ in 0..6 {
            for id in [begin, ping, one, version, set, migration, lock, commit] {
                builder.run(id, 10, Some(1), None);
            }
        }
        for config in [DetectConfig::development(), DetectConfig::default()] {
            let findings = builder.detect(&config);
            assert!(findings.is_empty(), "{findings:#?}");
        }
    }

    #[test]
    fn few_repeats_and_different_statements_are_not_flagged() {
        let mut builder = Builder::new();
        let user = builder.stmt("SELECT name FROM users WHERE id = ?");
        builder
            .run(user, 20, Some(1), None)
            .run(user, 20, Some(1), None);
        assert!(builder.detect(&DetectConfig::development()).is_empty());

        // Four repeats: an N+1 in development (3), not in production (5).
        let mut builder = Builder::new();
        let user = builder.stmt("SELECT name FROM users WHERE id = ?");
        for _ in 0..4 {
            builder.run(user, 20, Some(1), None);
        }
        assert!(builder.detect(&DetectConfig::default()).is_empty());
        assert_eq!(builder.detect(&DetectConfig::development()).len(), 1);

        // Repeats too fast for production's 20 ms: still listed, as information, with their count.
        let mut builder = Builder::new();
        let user = builder.stmt("SELECT name FROM users WHERE id = ?");
        for _ in 0..10 {
            builder.run(user, 1, Some(1), None);
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::NPlusOne);
        assert_eq!(findings[0].severity, Severity::Info);
        assert_eq!(findings[0].count, 10);
        assert_eq!(
            builder.detect(&DetectConfig::development())[0].severity,
            Severity::Warning
        );

        // Ten different statements once each.
        let mut builder = Builder::new();
        for i in 0..10 {
            let id = builder.stmt(&format!("SELECT a{i} FROM t WHERE id = ?"));
            builder.run(id, 10, Some(1), None);
        }
        assert!(builder.detect(&DetectConfig::development()).is_empty());
    }

    #[test]
    fn overlapping_repeats_count() {
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM posts LIMIT ?");
        let author = builder.stmt("SELECT name FROM users WHERE id = ?");
        builder.run(list, 5, Some(5), None);
        for _ in 0..5 {
            builder.run(author, 10, Some(1), None);
        }
        let mut request = builder.request();
        // Fan-out: all five started together, right after the list.
        for record in request.records.iter_mut().skip(1) {
            record.start = Duration::from_millis(5);
        }
        let findings = builder.detect_with(&request, &DetectConfig::default(), None);
        assert_eq!(findings[0].kind, FindingKind::NPlusOne);
        assert_eq!(findings[0].confidence, Confidence::High);
    }

    #[test]
    fn a_million_queries_are_reported_from_the_totals() {
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM events");
        let detail = builder.stmt("SELECT payload FROM event_details WHERE event_id = ?");
        let total: u64 = 1_000_000;
        let cap = 1000;
        let mut request = builder.request();
        let record = |fingerprint, index: u64, rows| QueryRecord {
            fingerprint,
            start: Duration::from_micros(index * 100),
            duration: Duration::from_micros(100),
            rows_returned: Some(rows),
            rows_affected: None,
            params: None,
            site: 0,
        };
        request.records = std::iter::once(record(list, 0, total - 1))
            .chain((1..cap).map(|i| record(detail, i, 1)))
            .collect();
        request.records_dropped = total - cap;
        request.count = total;
        request.totals = vec![
            FingerprintTotals {
                fingerprint: list,
                count: 1,
                total: Duration::from_micros(100),
                max: Duration::from_micros(100),
                rows_returned: total - 1,
                first_index: 0,
                distinct_params: 0,
            },
            FingerprintTotals {
                fingerprint: detail,
                count: total - 1,
                total: Duration::from_micros(100 * (total - 1)),
                max: Duration::from_micros(900),
                rows_returned: total - 1,
                first_index: 1,
                distinct_params: 0,
            },
        ];
        let findings = builder.detect_with(&request, &DetectConfig::default(), None);
        let n1 = of_kind(&findings, FindingKind::NPlusOne);
        assert_eq!(n1.len(), 1);
        assert_eq!(n1[0].count, total - 1);
        assert_eq!(n1[0].confidence, Confidence::High);
        assert_eq!(n1[0].severity, Severity::Critical);
        assert!((n1[0].total_time_ms - 99_999.9).abs() < 1e-3);
        assert!(!of_kind(&findings, FindingKind::QueryBudget).is_empty());

        // Only totals: the statement fell entirely past the cap; the source's site is unknown, so only an
        // exact row match is strong.
        request.records.truncate(1);
        let findings = builder.detect_with(&request, &DetectConfig::default(), None);
        let n1 = of_kind(&findings, FindingKind::NPlusOne);
        assert_eq!(n1[0].count, total - 1);
        assert_eq!(n1[0].confidence, Confidence::High);
        request.totals[0].rows_returned = total + 10;
        let findings = builder.detect_with(&request, &DetectConfig::default(), None);
        let n1 = of_kind(&findings, FindingKind::NPlusOne);
        assert_eq!(n1[0].confidence, Confidence::Medium);
        assert_eq!(n1[0].source.as_ref().unwrap().rows_returned, total + 10);
    }
}
