//! R4 (slow query): one execution at or above the threshold, reported once per statement per request.

use std::collections::BTreeMap;
use std::time::Duration;

use super::context::Context;
use super::recommend;
use super::{Confidence, FindingKind, Findings, Severity, millis};
use crate::query::model::{FingerprintId, StatementKind};

/// The slow executions of one statement.
#[derive(Debug, Default)]
struct Slow {
    count: u64,
    total: Duration,
    max: Duration,
    first_index: u64,
}

pub(crate) fn detect(ctx: &Context<'_>, out: &mut Findings<'_>) {
    if !out.wants(FindingKind::SlowQuery) {
        return;
    }
    let threshold = ctx.config.slow_query;
    let mut slow: BTreeMap<FingerprintId, Slow> = BTreeMap::new();
    for (index, record) in ctx.request.records.iter().enumerate() {
        if record.duration < threshold {
            continue;
        }
        let entry = slow.entry(record.fingerprint).or_insert_with(|| Slow {
            first_index: index as u64,
            ..Slow::default()
        });
        entry.count += 1;
        entry.total = entry.total.saturating_add(record.duration);
        entry.max = entry.max.max(record.duration);
    }
    // Past the record cap only the slowest execution of each statement is known.
    for totals in &ctx.statement_totals {
        if totals.max >= threshold && !slow.contains_key(&totals.fingerprint) {
            slow.insert(
                totals.fingerprint,
                Slow {
                    count: 1,
                    total: totals.max,
                    max: totals.max,
                    first_index: totals.first_index,
                },
            );
        }
    }
    for (id, slow) in &slow {
        let Some(statement) = ctx.statement(*id) else {
            continue;
        };
        if matches!(
            statement.kind,
            StatementKind::Transaction | StatementKind::Session
        ) {
            continue;
        }
        let severity = if slow.max >= threshold.saturating_mul(4) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut finding = ctx.finding(
            FindingKind::SlowQuery,
            Some(statement),
            Confidence::High,
            severity,
        );
        finding.count = slow.count;
        finding.total_time_ms = millis(slow.total);
        finding.max_time_ms = millis(slow.max);
        finding.first_index = slow.first_index;
        finding.threshold = Some(millis(threshold));
        finding.recommendation =
            recommend::slow_query(statement, millis(slow.max), millis(threshold));
        out.push(finding);
    }
}

/// R4 across requests: a statement whose 95th percentile on one route is at or above the threshold over
/// at least [`MIN_P95_SAMPLES`] executions (a steady slowness rather than one unlucky execution).
pub(crate) fn over_requests(
    info: std::sync::Arc<crate::query::model::FingerprintInfo>,
    route: (&str, &str),
    samples: u64,
    p95: Duration,
    total: Duration,
    max: Duration,
    threshold: Duration,
) -> Option<super::Finding> {
    if samples < MIN_P95_SAMPLES || p95 < threshold {
        return None;
    }
    let statement = super::context::Statement::new(info);
    if statement.exempt
        || matches!(
            statement.kind,
            StatementKind::Transaction | StatementKind::Session
        )
    {
        return None;
    }
    let (method, route) = route;
    Some(super::Finding {
        kind: FindingKind::SlowQuery,
        confidence: Confidence::High,
        severity: if p95 >= threshold.saturating_mul(4) {
            Severity::Critical
        } else {
            Severity::Warning
        },
        method: method.to_owned(),
        route: route.to_owned(),
        request_id: String::new(),
        fingerprint: statement.info.id,
        sql: statement.text().to_owned(),
        tables: statement.tables(),
        count: samples,
        total_time_ms: millis(total),
        max_time_ms: millis(max),
        first_index: 0,
        site: None,
        distinct_params: None,
        rows_returned: None,
        threshold: Some(millis(threshold)),
        source: None,
        pattern: Vec::new(),
        recommendation: recommend::slow_query(&statement, millis(p95), millis(threshold)),
    })
}

/// Executions of a statement on a route needed before its 95th percentile is judged.
pub(crate) const MIN_P95_SAMPLES: u64 = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;

    #[test]
    fn slow_dev_vs_prod() {
        let mut builder = Builder::new();
        let report = builder.stmt("SELECT sum(total) FROM invoices WHERE created_at > ?");
        builder.run(report, 250, Some(1), None);
        builder.run(report, 150, Some(1), None);
        let findings = builder.detect(&DetectConfig::development());
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!((finding.kind, finding.count), (FindingKind::SlowQuery, 2));
        assert!((finding.max_time_ms - 250.0).abs() < 1e-6);
        assert_eq!(finding.threshold, Some(100.0));
        assert!(
            finding
                .recommendation
                .summary
                .contains("EXPLAIN (ANALYZE, BUFFERS)")
        );
        assert!(builder.detect(&DetectConfig::default()).is_empty());

        builder.run(report, 2500, Some(1), None);
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(
            (findings[0].count, findings[0].severity),
            (1, Severity::Critical)
        );
    }

    #[test]
    fn slow_commit_is_not_a_slow_query() {
        let mut builder = Builder::new();
        let commit = builder.stmt("COMMIT");
        builder.run(commit, 900, None, None);
        assert!(builder.detect(&DetectConfig::default()).is_empty());
    }

    #[test]
    fn slow_past_the_cap_comes_from_the_totals() {
        let mut builder = Builder::new();
        let report = builder.stmt("SELECT sum(total) FROM invoices");
        builder.run(report, 700, Some(1), None);
        let mut request = builder.request();
        request.records.clear();
        request.records_dropped = 1;
        let findings = builder.detect_with(&request, &DetectConfig::default(), None);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::SlowQuery);
    }
}
