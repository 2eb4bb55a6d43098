//! R7 (query budget and regression): more queries than the route's budget, or far more than it usually
//! runs.

use super::baseline::RouteBaseline;
use super::context::Context;
use super::recommend;
use super::{Confidence, FindingKind, Findings, Severity, millis};

pub(crate) fn detect(ctx: &Context<'_>, baseline: Option<&RouteBaseline>, out: &mut Findings<'_>) {
    let queries = ctx.request.count;
    let budget = ctx.config.budget_for(&ctx.request.route);
    if queries > budget && out.wants(FindingKind::QueryBudget) {
        let severity = if queries > budget.saturating_mul(4) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        push(ctx, FindingKind::QueryBudget, severity, budget as f64, out);
    }
    if let Some(limit) = regression_limit(ctx, baseline)
        && queries as f64 > limit
        && out.wants(FindingKind::QueryRegression)
    {
        push(
            ctx,
            FindingKind::QueryRegression,
            Severity::Warning,
            limit,
            out,
        );
    }
}

/// The count above which a request is a regression, once the route has enough history.
fn regression_limit(ctx: &Context<'_>, baseline: Option<&RouteBaseline>) -> Option<f64> {
    let baseline = baseline?;
    // The limit is at least `regression_min_increase` (a median is never negative): a request at or under it
    // cannot exceed the limit, and most requests are, so the median (a selection over the window) waits.
    if baseline.samples() < ctx.config.regression_min_samples
        || ctx.request.count <= ctx.config.regression_min_increase
    {
        return None;
    }
    let median = baseline.median()?;
    let limit = (median * ctx.config.regression_factor)
        .max(median + ctx.config.regression_min_increase as f64);
    // Exactly at the limit is not above it; a count must exceed it.
    Some(limit.max(0.0))
}

fn push(
    ctx: &Context<'_>,
    kind: FindingKind,
    severity: Severity,
    limit: f64,
    out: &mut Findings<'_>,
) {
    let top = ctx
        .statement_totals
        .iter()
        .filter(|t| ctx.statement(t.fingerprint).is_some())
        .max_by(|a, b| {
            a.count
                .cmp(&b.count)
                .then(b.first_index.cmp(&a.first_index))
        });
    let statement = top.and_then(|t| ctx.statement(t.fingerprint));
    let confidence = if kind == FindingKind::QueryBudget {
        Confidence::High
    } else {
        Confidence::Medium
    };
    let mut finding = ctx.finding(kind, statement, confidence, severity);
    finding.count = ctx.request.count;
    finding.total_time_ms = millis(ctx.request.db_time);
    finding.threshold = Some(limit);
    finding.recommendation = recommend::budget(
        ctx.request.count,
        limit,
        statement.zip(top.map(|t| t.count)),
        kind == FindingKind::QueryRegression,
    );
    out.push(finding);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;

    fn request_with(queries: usize) -> Builder {
        let mut builder = Builder::new();
        for i in 0..queries {
            let id = builder.stmt(&format!("SELECT a FROM t{} WHERE id = ?", i % 40));
            builder.run(id, 0, Some(1), None);
        }
        builder
    }

    #[test]
    fn over_budget() {
        let builder = request_with(51);
        let findings = builder.detect(&DetectConfig::default());
        let budget = of_kind(&findings, FindingKind::QueryBudget);
        assert_eq!(budget.len(), 1, "{findings:#?}");
        assert_eq!((budget[0].count, budget[0].threshold), (51, Some(50.0)));
        assert!(budget[0].sql.contains("FROM t0"));
        assert!(request_with(50).detect(&DetectConfig::default()).is_empty());
    }

    #[test]
    fn route_budget_override() {
        let builder = request_with(51);
        let config = DetectConfig::default().route_budget("/quot*", 100);
        assert!(of_kind(&builder.detect(&config), FindingKind::QueryBudget).is_empty());
        let config = DetectConfig::default().route_budget("/quotations", 10);
        assert_eq!(
            of_kind(&builder.detect(&config), FindingKind::QueryBudget).len(),
            1
        );
    }

    #[test]
    fn regression_needs_history() {
        let builder = request_with(25);
        let request = builder.request();
        let config = DetectConfig::default();
        let mut baseline = RouteBaseline::new();
        for _ in 0..99 {
            baseline.observe(10);
        }
        let found = builder.detect_with(&request, &config, Some(&baseline));
        assert!(
            of_kind(&found, FindingKind::QueryRegression).is_empty(),
            "99 samples"
        );
        baseline.observe(10);
        let found = builder.detect_with(&request, &config, Some(&baseline));
        let regression = of_kind(&found, FindingKind::QueryRegression);
        assert_eq!(regression.len(), 1);
        assert_eq!(regression[0].threshold, Some(20.0));
        assert!(builder.detect_with(&request, &config, None).is_empty());

        // 1 → 5 doubles but adds fewer than 5 queries.
        let small = request_with(5);
        let mut baseline = RouteBaseline::new();
        for _ in 0..100 {
            baseline.observe(1);
        }
        let found = small.detect_with(&small.request(), &config, Some(&baseline));
        assert!(of_kind(&found, FindingKind::QueryRegression).is_empty());
    }
}
