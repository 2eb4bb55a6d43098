//! R10 (pool wait): the request waited for connections, which is shown apart from query time.

use super::context::Context;
use super::recommend;
use super::{Confidence, FindingKind, Findings, Severity, millis};

pub(crate) fn detect(ctx: &Context<'_>, out: &mut Findings<'_>) {
    let request = ctx.request;
    if !out.wants(FindingKind::PoolWait)
        || request.pool_waits == 0
        || request.pool_wait < ctx.config.pool_wait
    {
        return;
    }
    let severity = if request.pool_wait >= ctx.config.slow_query {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let wait_ms = millis(request.pool_wait);
    let mut finding = ctx.finding(FindingKind::PoolWait, None, Confidence::High, severity);
    finding.count = request.pool_waits;
    finding.total_time_ms = wait_ms;
    finding.max_time_ms = wait_ms;
    finding.threshold = Some(millis(ctx.config.pool_wait));
    finding.recommendation = recommend::pool_wait(request.pool_waits, wait_ms);
    out.push(finding);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;
    use crate::query::model::FingerprintId;

    #[test]
    fn pool_wait_dev_and_prod() {
        let mut builder = Builder::new();
        builder.pool_waits = 3;
        builder.pool_wait = Duration::from_millis(40);
        let findings = builder.detect(&DetectConfig::development());
        assert_eq!(findings.len(), 1);
        let finding = &findings[0];
        assert_eq!((finding.kind, finding.count), (FindingKind::PoolWait, 3));
        assert_eq!(finding.fingerprint, FingerprintId(0));
        assert!(finding.sql.is_empty());
        assert!((finding.total_time_ms - 40.0).abs() < 1e-6);
        assert!(finding.recommendation.sqlx.contains("max_connections"));
        assert!(builder.detect(&DetectConfig::default()).is_empty());
        builder.pool_wait = Duration::from_millis(600);
        assert_eq!(
            builder.detect(&DetectConfig::default())[0].severity,
            Severity::Critical
        );
        builder.pool_waits = 0;
        assert!(builder.detect(&DetectConfig::default()).is_empty());
    }
}
