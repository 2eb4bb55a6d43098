//! R6 (parallelizable sequence, off by default): independent reads that ran one after the other.
//!
//! Sentry's consecutive-DB rule. A run is a sequence of reads, each starting after the previous one ended. A
//! read after the first is independent when its text has no `WHERE` and no `?` (no parameter or literal): it
//! cannot depend on an earlier result. A transaction statement ends the run, since queries on one
//! connection cannot overlap.

use std::time::Duration;

use super::context::Context;
use super::recommend;
use super::{Confidence, FindingKind, Findings, PatternMember, Severity, millis};
use crate::query::model::QueryRecord;

/// Share of a run's time the rule must save.
const MIN_SAVING_RATIO: f64 = 0.1;

/// Statements listed in a finding's pattern, at most.
const MAX_LISTED: usize = 8;

pub(crate) fn detect(ctx: &Context<'_>, out: &mut Findings<'_>) {
    // GraphQL resolvers run queries in an order the handler does not choose.
    if !out.wants(FindingKind::Parallelizable) || ctx.request.route.contains("graphql") {
        return;
    }
    let records = &ctx.request.records;
    let mut start = 0;
    while start < records.len() {
        let end = run_end(ctx, records, start);
        if let Some(run) = records.get(start..end)
            && run.len() >= 2
        {
            report(ctx, run, start, out);
        }
        start = end.max(start + 1);
    }
}

/// End (exclusive) of the run of sequential reads starting at `start`.
fn run_end(ctx: &Context<'_>, records: &[QueryRecord], start: usize) -> usize {
    let mut previous_end: Option<Duration> = None;
    for (offset, record) in records.iter().enumerate().skip(start) {
        let is_read = ctx
            .statement(record.fingerprint)
            .is_some_and(|s| s.is_read() && !s.exempt);
        let sequential = previous_end.is_none_or(|end| record.start >= end);
        if !is_read || !sequential {
            return if offset == start { start + 1 } else { offset };
        }
        previous_end = Some(record.start.saturating_add(record.duration));
    }
    records.len()
}

fn independent(ctx: &Context<'_>, record: &QueryRecord) -> bool {
    ctx.statement(record.fingerprint).is_some_and(|s| {
        let text = s.text();
        !text.contains('?') && !text.to_ascii_uppercase().contains(" WHERE ")
    })
}

fn report(ctx: &Context<'_>, run: &[QueryRecord], start: usize, out: &mut Findings<'_>) {
    let config = ctx.config;
    let total: Duration = run.iter().map(|r| r.duration).sum();
    let (mut independent_max, mut dependent) = (Duration::ZERO, Duration::ZERO);
    let mut independents = 0;
    for (offset, record) in run.iter().enumerate() {
        if offset > 0 && independent(ctx, record) {
            if record.duration <= config.parallel_min_query {
                return;
            }
            independents += 1;
            independent_max = independent_max.max(record.duration);
        } else {
            dependent = dependent.saturating_add(record.duration);
        }
    }
    let saved = total.saturating_sub(independent_max.max(dependent));
    if independents == 0
        || saved < config.parallel_min_saving
        || saved.as_secs_f64() < total.as_secs_f64() * MIN_SAVING_RATIO
    {
        return;
    }
    let Some(first) = run.first() else {
        return;
    };
    let statement = ctx.statement(first.fingerprint);
    let mut finding = ctx.finding(
        FindingKind::Parallelizable,
        statement,
        Confidence::Medium,
        Severity::Info,
    );
    finding.count = run.len() as u64;
    finding.total_time_ms = millis(total);
    finding.max_time_ms = millis(run.iter().map(|r| r.duration).max().unwrap_or_default());
    finding.first_index = start as u64;
    finding.pattern = run
        .iter()
        .take(MAX_LISTED)
        .map(|r| PatternMember {
            fingerprint: r.fingerprint,
            sql: ctx
                .statement(r.fingerprint)
                .map_or_else(String::new, |s| s.text().to_string()),
            kind: FindingKind::Parallelizable,
            count: 1,
            site: None,
        })
        .collect();
    finding.recommendation = recommend::parallelizable(run.len() as u64, millis(saved));
    out.push(finding);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;

    fn dashboard() -> Builder {
        let mut builder = Builder::new();
        builder.route = "/dashboard";
        let user = builder.stmt("SELECT name FROM users WHERE id = ?");
        let stats = builder.stmt("SELECT count(id) FROM orders");
        let top = builder.stmt("SELECT name, sales FROM products ORDER BY sales DESC");
        builder.run(user, 10, Some(1), None);
        builder.run(stats, 120, Some(1), None);
        builder.run(top, 130, Some(10), None);
        builder
    }

    #[test]
    fn off_by_default() {
        assert!(dashboard().detect(&DetectConfig::default()).is_empty());
    }

    #[test]
    fn independent_reads_in_sequence() {
        let config = DetectConfig::default().parallelizable(true);
        let findings = dashboard().detect(&config);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let finding = &findings[0];
        assert_eq!(
            (finding.kind, finding.count),
            (FindingKind::Parallelizable, 3)
        );
        // 260 ms in sequence, 130 ms together.
        assert!((finding.recommendation.estimated_saving_ms - 130.0).abs() < 1e-6);
        assert!(finding.recommendation.sqlx.contains("try_join!"));
    }

    #[test]
    fn overlapping_or_dependent_reads_are_not_reported() {
        let config = DetectConfig::default().parallelizable(true);
        let builder = dashboard();
        let mut request = builder.request();
        request.records[2].start = request.records[1].start;
        assert!(builder.detect_with(&request, &config, None).is_empty());

        let mut builder = Builder::new();
        let a = builder.stmt("SELECT a FROM t WHERE id = ?");
        let b = builder.stmt("SELECT b FROM u WHERE t_id = ?");
        builder
            .run(a, 200, Some(1), None)
            .run(b, 200, Some(1), None);
        assert!(builder.detect(&config).is_empty());
    }
}
