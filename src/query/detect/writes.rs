//! R9 (batchable writes): one `INSERT`, `UPDATE` or `DELETE` statement run many times in one request.
//!
//! Counted over all call sites and from the totals, so writes past the record cap count; executions that are
//! steps of a loop (R3) are reported with the loop, not here. `DELETE` is included: one statement over all the
//! keys batches it as well as a multi-row insert batches an `INSERT`.

use super::context::Context;
use super::recommend;
use super::{Confidence, FindingKind, Findings, Severity, millis};

pub(crate) fn detect(ctx: &Context<'_>, out: &mut Findings<'_>) {
    if !out.wants(FindingKind::BatchableWrites) {
        return;
    }
    let min = ctx.config.batchable_min_repeats;
    for totals in &ctx.statement_totals {
        let Some(statement) = ctx.statement(totals.fingerprint) else {
            continue;
        };
        let (looped, looped_time) = ctx.looped(totals.fingerprint);
        let count = totals.count.saturating_sub(looped);
        if statement.exempt || !statement.is_write() || count < min {
            continue;
        }
        let total = totals.total.saturating_sub(looped_time);
        let severity = if count >= min.saturating_mul(10) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let saving = millis(total.saturating_sub(totals.max));
        let mut finding = ctx.finding(
            FindingKind::BatchableWrites,
            Some(statement),
            Confidence::High,
            severity,
        );
        finding.count = count;
        finding.total_time_ms = millis(total);
        finding.max_time_ms = millis(totals.max);
        finding.first_index = totals.first_index;
        finding.distinct_params = (totals.distinct_params > 0).then_some(totals.distinct_params);
        finding.threshold = Some(min as f64);
        finding.recommendation = recommend::batchable_writes(statement, count, saving);
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;

    #[test]
    fn repeated_inserts_are_batchable() {
        let mut builder = Builder::new();
        let insert =
            builder.stmt("INSERT INTO quotation_lines (quotation_id, product) VALUES (?, ?)");
        for p in 0..5 {
            builder.run(insert, 4, None, Some(p));
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let finding = &findings[0];
        assert_eq!(
            (finding.kind, finding.count),
            (FindingKind::BatchableWrites, 5)
        );
        assert!((finding.recommendation.estimated_saving_ms - 16.0).abs() < 1e-6);
        assert!(finding.recommendation.sqlx.contains("UNNEST"));
        assert!(finding.recommendation.sqlx.contains("push_values"));
        assert!(finding.recommendation.sqlx.contains("COPY quotation_lines"));
        assert!(
            finding
                .recommendation
                .diesel
                .contains("insert_into(quotation_lines::table)")
        );
        assert!(
            finding
                .recommendation
                .sea_orm
                .contains("quotation_line::Entity::insert_many")
        );
    }

    #[test]
    fn updates_and_deletes_too_but_not_below_threshold_or_migrations() {
        let mut builder = Builder::new();
        let update = builder.stmt("UPDATE stock SET quantity = quantity - ? WHERE product_id = ?");
        let delete = builder.stmt("DELETE FROM carts WHERE id = ?");
        let migration =
            builder.stmt("INSERT INTO _sqlx_migrations (version, description) VALUES (?, ?)");
        for _ in 0..5 {
            builder.run(update, 1, None, None);
            builder.run(migration, 1, None, None);
        }
        for _ in 0..4 {
            builder.run(delete, 1, None, None);
        }
        let findings = builder.detect(&DetectConfig::development());
        let batch = of_kind(&findings, FindingKind::BatchableWrites);
        assert_eq!(batch.len(), 1, "{findings:#?}");
        assert_eq!(batch[0].fingerprint, update);
        assert!(batch[0].recommendation.sqlx.contains("UNNEST"));
        assert!(of_kind(&findings, FindingKind::NPlusOne).is_empty());
        assert!(of_kind(&findings, FindingKind::MnPlusOne).is_empty());
    }
}
