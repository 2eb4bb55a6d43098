//! R3 (MN+1): a sequence of different statements repeated in a loop (`A B A B A B …`).
//!
//! Sentry's cyclic-pattern search over the recorded queries in finish order, with exempt statements
//! (`BEGIN`, `SET`, health checks) left out so they neither form nor break a pattern. Two positions are the
//! same when both statement and call site match. At each position the longest-covering pattern of 2 to 5
//! statements wins (the shortest on a tie, so `A B` is preferred to `A B A B`), and the scan jumps past it:
//! linear in the records.

use std::collections::BTreeSet;
use std::time::Duration;

use super::context::Context;
use super::n_plus_one::{SourceQuery, find_source};
use super::recommend;
use super::{Confidence, FindingKind, Findings, PatternMember, Severity, millis};
use crate::query::model::FingerprintId;

/// Statements in a pattern, at most.
const MAX_PATTERN: usize = 5;

/// Distinct patterns kept per request; more are not reported (the findings are capped anyway).
const MAX_PATTERNS: usize = 64;

/// One position of the sequence: (statement, call site, index into the records).
type Position = (FingerprintId, u64, usize);

/// One pattern, over all the runs where it occurred.
#[derive(Debug)]
struct Pattern {
    members: Vec<(FingerprintId, u64)>,
    occurrences: u64,
    total: Duration,
    max: Duration,
    /// Per member, the slowest execution: one batched query per member costs about that.
    member_max: Vec<Duration>,
    first_record: usize,
}

/// Reports MN+1 patterns not explained by N+1 findings, and shows the pattern on the N+1 findings of its
/// members.
pub(crate) fn detect(ctx: &Context<'_>, covered: &BTreeSet<FingerprintId>, out: &mut Findings<'_>) {
    let sequence: Vec<Position> = ctx
        .request
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| ctx.statement(r.fingerprint).is_some_and(|s| !s.exempt))
        .map(|(i, r)| (r.fingerprint, r.site, i))
        .collect();
    let min = ctx.config.mn_plus_one_min_occurrences;
    let mut patterns: Vec<Pattern> = Vec::new();
    let mut at = 0;
    while at < sequence.len() {
        match best_pattern(&sequence, at, min) {
            Some((len, reps)) => {
                let run = sequence.get(at..at + len * reps).unwrap_or_default();
                add_run(ctx, &mut patterns, run, len, reps);
                at += len * reps;
            }
            None => at += 1,
        }
    }
    for pattern in &patterns {
        report(ctx, covered, pattern, out);
    }
}

/// The pattern starting at `at` that covers the most positions: (length, repetitions).
fn best_pattern(sequence: &[Position], at: usize, min_reps: u64) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for len in 2..=MAX_PATTERN {
        let Some(chunk) = sequence.get(at..at + len) else {
            break;
        };
        let first = chunk.first().map(|p| p.0);
        if chunk.iter().all(|p| Some(p.0) == first) {
            continue; // one statement repeated: the N+1 rule's business
        }
        let mut reps = 1;
        while let Some(next) = sequence.get(at + reps * len..at + (reps + 1) * len) {
            if !same_keys(chunk, next) {
                break;
            }
            reps += 1;
        }
        let covers = len * reps;
        if reps as u64 >= min_reps && best.is_none_or(|(l, r)| covers > l * r) {
            best = Some((len, reps));
        }
    }
    best
}

fn same_keys(a: &[Position], b: &[Position]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1 == y.1)
}

/// Adds one run of a pattern (merged with earlier runs of the same pattern).
fn add_run(
    ctx: &Context<'_>,
    patterns: &mut Vec<Pattern>,
    run: &[Position],
    len: usize,
    reps: usize,
) {
    let members: Vec<(FingerprintId, u64)> = run.iter().take(len).map(|p| (p.0, p.1)).collect();
    let index = match patterns.iter().position(|p| p.members == members) {
        Some(index) => index,
        None if patterns.len() < MAX_PATTERNS => {
            patterns.push(Pattern {
                members,
                occurrences: 0,
                total: Duration::ZERO,
                max: Duration::ZERO,
                member_max: vec![Duration::ZERO; len],
                first_record: run.first().map_or(0, |p| p.2),
            });
            patterns.len() - 1
        }
        None => return,
    };
    let Some(pattern) = patterns.get_mut(index) else {
        return;
    };
    pattern.occurrences = pattern.occurrences.saturating_add(reps as u64);
    for (offset, position) in run.iter().enumerate() {
        let Some(record) = ctx.request.records.get(position.2) else {
            continue;
        };
        pattern.total = pattern.total.saturating_add(record.duration);
        pattern.max = pattern.max.max(record.duration);
        if let Some(slot) = pattern.member_max.get_mut(offset % len) {
            *slot = (*slot).max(record.duration);
        }
    }
}

fn report(
    ctx: &Context<'_>,
    covered: &BTreeSet<FingerprintId>,
    pattern: &Pattern,
    out: &mut Findings<'_>,
) {
    let members: Vec<PatternMember> = pattern
        .members
        .iter()
        .map(|(id, _)| PatternMember {
            fingerprint: *id,
            sql: ctx
                .statement(*id)
                .map_or_else(String::new, |s| s.text().to_string()),
        })
        .collect();
    for (id, _) in &pattern.members {
        if covered.contains(id) {
            out.attach_pattern(*id, &members);
        }
    }
    let explained = pattern.members.iter().all(|(id, _)| covered.contains(id));
    if explained || !out.wants(FindingKind::MnPlusOne) {
        return;
    }
    let Some(&(first, site)) = pattern.members.first() else {
        return;
    };
    let ids: Vec<FingerprintId> = pattern.members.iter().map(|m| m.0).collect();
    let source = find_source(
        ctx,
        SourceQuery {
            fingerprints: &ids,
            site: Some(site),
            first_record: Some(pattern.first_record),
            first_index: pattern.first_record as u64,
            repeats: pattern.occurrences,
        },
    );
    let confidence = match source {
        Some(source) if source.is_strong(pattern.occurrences) => Confidence::High,
        _ => Confidence::Medium,
    };
    let statement = ctx.statement(first);
    // Below the time threshold the pattern is still there, only cheap today: listed, at the lowest severity.
    let severity = if pattern.total < ctx.config.n_plus_one_min_total {
        Severity::Info
    } else {
        Severity::Warning
    };
    let mut finding = ctx.finding(FindingKind::MnPlusOne, statement, confidence, severity);
    let batched: Duration = pattern.member_max.iter().sum();
    let saving = millis(pattern.total.saturating_sub(batched));
    finding.tables = tables(ctx, &ids);
    finding.count = pattern.occurrences;
    finding.total_time_ms = millis(pattern.total);
    finding.max_time_ms = millis(pattern.max);
    finding.first_index = pattern.first_record as u64;
    finding.threshold = Some(ctx.config.mn_plus_one_min_occurrences as f64);
    finding.source = source.map(|s| super::SourceEvidence {
        fingerprint: s.fingerprint,
        sql: ctx
            .statement(s.fingerprint)
            .map_or_else(String::new, |st| st.text().to_string()),
        rows_returned: s.rows,
    });
    finding.recommendation = recommend::mn_plus_one(&finding.tables, pattern.occurrences, saving);
    finding.pattern = members;
    out.push(finding);
}

/// The members' tables, deduplicated, in order.
fn tables(ctx: &Context<'_>, ids: &[FingerprintId]) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for id in ids {
        for table in ctx.statement(*id).map(|s| s.tables()).unwrap_or_default() {
            if !tables.contains(&table) && tables.len() < 16 {
                tables.push(table);
            }
        }
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::DetectConfig;
    use crate::query::detect::test_support::*;

    #[test]
    fn pattern_below_the_n_plus_one_threshold_is_an_mn_plus_one() {
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM invoices LIMIT ?");
        let customer = builder.stmt("SELECT name FROM customers WHERE id = ?");
        let audit = builder.stmt("INSERT INTO audit_log (invoice_id, action) VALUES (?, ?)");
        builder.run(list, 5, Some(3), None);
        for _ in 0..3 {
            builder.run(customer, 10, Some(1), None);
            builder.run(audit, 10, None, None);
        }
        let findings = builder.detect(&DetectConfig::default());
        assert!(of_kind(&findings, FindingKind::NPlusOne).is_empty());
        let mn = of_kind(&findings, FindingKind::MnPlusOne);
        assert_eq!(mn.len(), 1, "{findings:#?}");
        let mn = mn[0];
        assert_eq!(mn.count, 3);
        assert_eq!(mn.confidence, Confidence::High);
        assert_eq!(mn.fingerprint, customer);
        assert_eq!(
            mn.pattern.iter().map(|m| m.fingerprint).collect::<Vec<_>>(),
            vec![customer, audit]
        );
        assert_eq!(
            mn.tables,
            vec!["customers".to_string(), "audit_log".to_string()]
        );
        assert!((mn.total_time_ms - 60.0).abs() < 1e-6);
        assert!((mn.recommendation.estimated_saving_ms - 40.0).abs() < 1e-6);
    }

    #[test]
    fn transactions_neither_form_nor_break_a_pattern() {
        let mut builder = Builder::new();
        let begin = builder.stmt("BEGIN");
        let commit = builder.stmt("COMMIT");
        let a = builder.stmt("SELECT a FROM t WHERE id = ?");
        let b = builder.stmt("SELECT b FROM u WHERE id = ?");
        for _ in 0..4 {
            builder.run(begin, 10, None, None);
            builder.run(a, 10, Some(1), None);
            builder.run(b, 10, Some(1), None);
            builder.run(commit, 10, None, None);
        }
        let config = DetectConfig::default().n_plus_one_min_repeats(10);
        let findings = builder.detect(&config);
        let mn = of_kind(&findings, FindingKind::MnPlusOne);
        assert_eq!(mn.len(), 1);
        assert_eq!(mn[0].count, 4);
        assert_eq!(mn[0].pattern.len(), 2);
    }

    #[test]
    fn too_few_occurrences_or_one_statement() {
        let mut builder = Builder::new();
        let a = builder.stmt("SELECT a FROM t WHERE id = ?");
        let b = builder.stmt("SELECT b FROM u WHERE id = ?");
        for _ in 0..2 {
            builder.run(a, 50, Some(1), None).run(b, 50, Some(1), None);
        }
        assert!(builder.detect(&DetectConfig::default()).is_empty());
        assert_eq!(best_pattern(&[], 0, 3), None);
        let same: Vec<Position> = (0..10).map(|i| (a, 0, i)).collect();
        assert_eq!(best_pattern(&same, 0, 3), None);
    }

    #[test]
    fn shortest_pattern_wins_ties() {
        let a = FingerprintId(1);
        let b = FingerprintId(2);
        let c = FingerprintId(3);
        let seq: Vec<Position> = [a, b, a, b, a, b, a, b, c]
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, 0, i))
            .collect();
        assert_eq!(best_pattern(&seq, 0, 3), Some((2, 4)));
        assert_eq!(best_pattern(&seq, 0, 5), None);
    }
}
