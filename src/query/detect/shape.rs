//! R5 (`SELECT *`) and R8 (large result without `LIMIT`): what a statement's shape costs.
//!
//! Both read the parser's findings when it has run, and fall back to the normalized text (with a lower
//! confidence) when it has not.

use std::collections::BTreeSet;

use super::context::{Context, Statement, StatementTotals};
use super::recommend;
use super::{Confidence, FindingKind, Findings, Severity, millis};
use crate::query::model::FingerprintId;

/// Rows per execution from which a `SELECT *` is a warning rather than information.
const WIDE_ROWS: u64 = 100;

pub(crate) fn detect(ctx: &Context<'_>, covered: &BTreeSet<FingerprintId>, out: &mut Findings<'_>) {
    for totals in &ctx.statement_totals {
        let Some(statement) = ctx.statement(totals.fingerprint) else {
            continue;
        };
        if statement.exempt || !statement.is_read() || totals.count == 0 {
            continue;
        }
        if out.wants(FindingKind::SelectStar) {
            select_star(ctx, statement, totals, covered, out);
        }
        if out.wants(FindingKind::LargeResult) {
            large_result(ctx, statement, totals, out);
        }
    }
}

fn select_star(
    ctx: &Context<'_>,
    statement: &Statement,
    totals: &StatementTotals,
    covered: &BTreeSet<FingerprintId>,
    out: &mut Findings<'_>,
) {
    let confidence = match statement.enrichment() {
        Some(e) if e.parsed => {
            if !e.select_star {
                return;
            }
            Confidence::High
        }
        _ => {
            if !star_in_text(statement.text()) {
                return;
            }
            Confidence::Medium
        }
    };
    // Cheap once; costly when many rows or many executions carry the unused columns.
    let severity = if totals.rows_max >= WIDE_ROWS || covered.contains(&totals.fingerprint) {
        Severity::Warning
    } else {
        Severity::Info
    };
    let mut finding = ctx.finding(
        FindingKind::SelectStar,
        Some(statement),
        confidence,
        severity,
    );
    fill(&mut finding, totals);
    finding.recommendation = recommend::select_star(statement);
    out.push(finding);
}

/// `SELECT *` or `SELECT DISTINCT *` at the start of the text (not `COUNT(*)`, which has no space before `*`).
fn star_in_text(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or_default();
    if !first.eq_ignore_ascii_case("select") {
        return false;
    }
    match words.next() {
        Some("*") => true,
        Some(word) if word.eq_ignore_ascii_case("distinct") => words.next() == Some("*"),
        _ => false,
    }
}

fn large_result(
    ctx: &Context<'_>,
    statement: &Statement,
    totals: &StatementTotals,
    out: &mut Findings<'_>,
) {
    let rows = totals.rows_max;
    if rows < ctx.config.large_result_rows {
        return;
    }
    let confidence = match statement.enrichment() {
        Some(e) if e.parsed => {
            if e.has_limit {
                return;
            }
            Confidence::High
        }
        _ => {
            if limited_in_text(statement.text()) {
                return;
            }
            Confidence::Medium
        }
    };
    let mut finding = ctx.finding(
        FindingKind::LargeResult,
        Some(statement),
        confidence,
        Severity::Warning,
    );
    fill(&mut finding, totals);
    finding.threshold = Some(ctx.config.large_result_rows as f64);
    finding.recommendation = recommend::large_result(statement, rows);
    out.push(finding);
}

/// `LIMIT`, `FETCH` or `TOP` anywhere in the text (a subquery's limit also counts: fewer findings, never
/// more).
fn limited_in_text(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| {
            ["limit", "fetch", "top"]
                .iter()
                .any(|k| word.eq_ignore_ascii_case(k))
        })
}

fn fill(finding: &mut super::Finding, totals: &StatementTotals) {
    finding.count = totals.count;
    finding.total_time_ms = millis(totals.total);
    finding.max_time_ms = millis(totals.max);
    finding.first_index = totals.first_index;
    finding.rows_returned = totals.rows_known.then_some(totals.rows_sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;

    #[test]
    fn select_star_not_count_star() {
        let mut builder = Builder::new();
        let star = builder.stmt("SELECT * FROM customers WHERE id = ?");
        let count = builder.stmt("SELECT COUNT(*) FROM customers");
        let parsed = builder.parsed("SELECT c.* FROM customers c", &["customers"], |e| {
            e.select_star = true
        });
        let exists = builder.parsed(
            "SELECT id FROM orders WHERE EXISTS (SELECT * FROM lines WHERE lines.order_id = orders.id)",
            &["orders", "lines"],
            |_| {},
        );
        for id in [star, count, parsed, exists] {
            builder.run(id, 1, Some(1), None);
        }
        let findings = builder.detect(&DetectConfig::development());
        let stars = of_kind(&findings, FindingKind::SelectStar);
        assert_eq!(stars.len(), 2, "{findings:#?}");
        let by_id = |id| stars.iter().find(|f| f.fingerprint == id).unwrap();
        assert_eq!(by_id(parsed).confidence, Confidence::High);
        assert_eq!(by_id(star).confidence, Confidence::Medium);
        assert_eq!(by_id(star).severity, Severity::Info);
        assert!(
            by_id(parsed)
                .recommendation
                .diesel
                .contains("Customer::as_select()")
        );
        assert!(star_in_text("select distinct * from t"));
        assert!(!star_in_text("SELECT COUNT(*) FROM t"));
    }

    #[test]
    fn large_unbounded_result() {
        let mut builder = Builder::new();
        let all = builder.parsed("SELECT id, name FROM products", &["products"], |_| {});
        let limited = builder.parsed("SELECT id FROM logs LIMIT ?", &["logs"], |e| {
            e.has_limit = true
        });
        let text_only = builder.stmt("SELECT id FROM events ORDER BY id");
        builder.run(all, 30, Some(5000), None);
        builder.run(limited, 30, Some(5000), None);
        builder.run(text_only, 30, Some(1000), None);
        let findings = builder.detect(&DetectConfig::default());
        let large = of_kind(&findings, FindingKind::LargeResult);
        assert_eq!(large.len(), 2, "{findings:#?}");
        assert_eq!(large[0].fingerprint, all);
        assert_eq!(large[0].rows_returned, Some(5000));
        assert!(
            large[0]
                .recommendation
                .sea_orm
                .contains("product::Entity::find().paginate")
        );
        assert_eq!(large[1].fingerprint, text_only);
        assert_eq!(large[1].confidence, Confidence::Medium);

        let mut builder = Builder::new();
        let small = builder.stmt("SELECT id FROM products");
        builder.run(small, 1, Some(999), None);
        assert!(builder.detect(&DetectConfig::default()).is_empty());
    }
}
