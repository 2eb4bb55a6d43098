//! R3 (MN+1): one loop running several statements per item (`A B A B A B …`), reported once, with its steps.
//!
//! Sentry's cyclic-pattern search over the recorded queries in finish order, with exempt statements
//! (`BEGIN`, `SET`, health checks) left out so they neither form nor break a pattern. Two positions are the
//! same when both statement and call site match. At each position the longest-covering pattern of 2 to 5
//! statements wins (the shortest on a tie, so `A B` is preferred to `A B A B`), and the scan jumps past it:
//! linear in the records.
//!
//! A run of one statement repeated exactly as many times right before or after the cycle is a pass over
//! the same items (look the tags up and insert the missing ones, then link each to the article): it joins the
//! loop as a step. The loop's statements are not reported again on their own (as `n_plus_one`, `duplicate` or
//! `batchable_writes`); executions of them outside the loop still are. A cycle whose iterations are far apart
//! in time with nothing but waiting between them (a poll) is not a loop of queries.

use std::time::Duration;

use super::context::{Context, Statement};
use super::n_plus_one::{SourceQuery, find_source, parent_returned_nothing, waited};
use super::recommend::{self, LoopStep};
use super::{Confidence, FindingKind, Findings, PatternMember, Severity, millis};
use crate::query::model::{FingerprintId, QueryRecord};

/// Statements in a pattern, at most.
const MAX_PATTERN: usize = 5;

/// Distinct loops kept per request; more are not reported (the findings are capped anyway).
const MAX_LOOPS: usize = 64;

/// One position of the sequence: (statement, call site, index into the records).
type Position = (FingerprintId, u64, usize);

/// One step of a loop: a statement at a call site, with its executions in the loop.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) fingerprint: FingerprintId,
    pub(crate) site: u64,
    pub(crate) count: u64,
    /// The slowest execution: one batched statement costs about that.
    pub(crate) max: Duration,
    /// Value identities of its executions, when known (to tell a step repeating the same query).
    params: Vec<u64>,
    params_unknown: bool,
}

impl Step {
    /// Every execution ran with the same known values: the same query again.
    fn same_query_each_time(&self) -> bool {
        !self.params_unknown && self.count >= 2 && self.params.windows(2).all(|w| w[0] == w[1])
    }
}

/// One loop, over all the runs where it occurred.
#[derive(Debug, Clone)]
pub(crate) struct Loop {
    pub(crate) steps: Vec<Step>,
    pub(crate) iterations: u64,
    pub(crate) total: Duration,
    pub(crate) max: Duration,
    pub(crate) first_record: usize,
    /// The records it covers, in finish order.
    pub(crate) records: Vec<usize>,
}

/// Finds the loops among `records`; `candidate` says which statements may take part (known, not exempt).
pub(crate) fn find_loops(
    records: &[QueryRecord],
    candidate: &dyn Fn(FingerprintId) -> bool,
    min_reps: u64,
) -> Vec<Loop> {
    let sequence: Vec<Position> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| candidate(r.fingerprint))
        .map(|(i, r)| (r.fingerprint, r.site, i))
        .collect();
    let mut loops: Vec<Loop> = Vec::new();
    let mut at = 0;
    // Positions before this one belong to an earlier loop.
    let mut free_from = 0;
    while at < sequence.len() {
        let Some((len, reps)) = best_pattern(&sequence, at, min_reps) else {
            at += 1;
            continue;
        };
        let cycle = sequence.get(at..at + len * reps).unwrap_or_default();
        let members: Vec<(FingerprintId, u64)> =
            cycle.iter().take(len).map(|p| (p.0, p.1)).collect();
        let before = sequence.get(free_from..at).unwrap_or_default();
        let leading = pass_before(before, reps, &members);
        let after_start = at + len * reps;
        let trailing = pass_after(
            sequence.get(after_start..).unwrap_or_default(),
            reps,
            &members,
        );
        let mut positions: Vec<Position> = Vec::new();
        positions.extend_from_slice(
            before
                .get(before.len() - leading.len() * reps..)
                .unwrap_or_default(),
        );
        positions.extend_from_slice(cycle);
        let trailing_len = trailing.len() * reps;
        positions.extend_from_slice(
            sequence
                .get(after_start..after_start + trailing_len)
                .unwrap_or_default(),
        );
        let mut keys = leading;
        keys.extend(members);
        keys.extend(trailing);
        add_loop(records, &mut loops, keys, reps as u64, &positions);
        at = after_start + trailing_len;
        free_from = at;
    }
    loops
}

/// A run of one statement, exactly `reps` long, ending right where the cycle begins: a first pass over the
/// same items. Returns its key (at most one run).
fn pass_before(
    before: &[Position],
    reps: usize,
    members: &[(FingerprintId, u64)],
) -> Vec<(FingerprintId, u64)> {
    let Some(run) = before
        .len()
        .checked_sub(reps)
        .and_then(|start| before.get(start..))
    else {
        return Vec::new();
    };
    single_run(run, members)
        .filter(|key| {
            // Exactly `reps`: the position before the run is another statement.
            before
                .len()
                .checked_sub(reps + 1)
                .and_then(|i| before.get(i))
                .is_none_or(|p| (p.0, p.1) != *key)
        })
        .into_iter()
        .collect()
}

/// Runs of one statement each, exactly `reps` long, right after the cycle: later passes over the same items.
fn pass_after(
    after: &[Position],
    reps: usize,
    members: &[(FingerprintId, u64)],
) -> Vec<(FingerprintId, u64)> {
    let mut keys: Vec<(FingerprintId, u64)> = Vec::new();
    let mut at = 0;
    while keys.len() + members.len() < MAX_PATTERN * 2 {
        let Some(run) = after.get(at..at + reps) else {
            break;
        };
        let Some(key) = single_run(run, members).filter(|k| !keys.contains(k)) else {
            break;
        };
        if after.get(at + reps).is_some_and(|p| (p.0, p.1) == key) {
            break; // longer than the loop: a loop of its own
        }
        keys.push(key);
        at += reps;
    }
    keys
}

/// The key of a run made of one statement that is not a member of the cycle.
fn single_run(run: &[Position], members: &[(FingerprintId, u64)]) -> Option<(FingerprintId, u64)> {
    let first = run.first().map(|p| (p.0, p.1))?;
    (run.iter().all(|p| (p.0, p.1) == first) && !members.contains(&first)).then_some(first)
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

/// Adds one run of a loop (merged with earlier runs of the same steps).
fn add_loop(
    records: &[QueryRecord],
    loops: &mut Vec<Loop>,
    keys: Vec<(FingerprintId, u64)>,
    reps: u64,
    positions: &[Position],
) {
    let same = |l: &Loop| {
        l.steps.len() == keys.len()
            && l.steps
                .iter()
                .zip(&keys)
                .all(|(s, k)| (s.fingerprint, s.site) == *k)
    };
    let index = match loops.iter().position(same) {
        Some(index) => index,
        None if loops.len() < MAX_LOOPS => {
            loops.push(Loop {
                steps: keys
                    .iter()
                    .map(|&(fingerprint, site)| Step {
                        fingerprint,
                        site,
                        count: 0,
                        max: Duration::ZERO,
                        params: Vec::new(),
                        params_unknown: false,
                    })
                    .collect(),
                iterations: 0,
                total: Duration::ZERO,
                max: Duration::ZERO,
                first_record: positions.first().map_or(0, |p| p.2),
                records: Vec::new(),
            });
            loops.len() - 1
        }
        None => return,
    };
    let Some(found) = loops.get_mut(index) else {
        return;
    };
    found.iterations = found.iterations.saturating_add(reps);
    for position in positions {
        let Some(record) = records.get(position.2) else {
            continue;
        };
        found.total = found.total.saturating_add(record.duration);
        found.max = found.max.max(record.duration);
        found.records.push(position.2);
        if let Some(step) = found
            .steps
            .iter_mut()
            .find(|s| (s.fingerprint, s.site) == (position.0, position.1))
        {
            step.count += 1;
            step.max = step.max.max(record.duration);
            match record.params {
                Some(p) => step.params.push(p),
                None => step.params_unknown = true,
            }
        }
    }
    found.records.sort_unstable();
}

/// Whether the loop's iterations are far apart with nothing but waiting between them (a poll).
pub(crate) fn is_poll(records: &[QueryRecord], found: &Loop) -> bool {
    let Some(head) = found.steps.first() else {
        return false;
    };
    let starts: Vec<usize> = found
        .records
        .iter()
        .copied()
        .filter(|&i| {
            records
                .get(i)
                .is_some_and(|r| (r.fingerprint, r.site) == (head.fingerprint, head.site))
        })
        .collect();
    let per_iteration = found
        .total
        .checked_div(u32::try_from(found.iterations.max(1)).unwrap_or(u32::MAX));
    waited(records, &starts, per_iteration.unwrap_or_default())
}

/// Reports each loop once, with its steps and one combined fix.
pub(crate) fn detect(ctx: &Context<'_>, out: &mut Findings<'_>) {
    if !out.wants(FindingKind::MnPlusOne) {
        return;
    }
    for found in &ctx.loops {
        report(ctx, found, out);
    }
}

/// What a step is on its own: a repeated read, the same query again, or a repeated write.
fn step_kind(step: &Step, statement: Option<&Statement>) -> FindingKind {
    if step.same_query_each_time() {
        FindingKind::Duplicate
    } else if statement.is_some_and(Statement::is_write) {
        FindingKind::BatchableWrites
    } else {
        FindingKind::NPlusOne
    }
}

fn report(ctx: &Context<'_>, found: &Loop, out: &mut Findings<'_>) {
    let Some(head) = found.steps.first() else {
        return;
    };
    let members: Vec<PatternMember> = found
        .steps
        .iter()
        .map(|step| {
            let statement = ctx.statement(step.fingerprint);
            PatternMember {
                fingerprint: step.fingerprint,
                sql: statement.map_or_else(String::new, |s| s.text().to_string()),
                kind: step_kind(step, statement),
                count: step.count,
                site: Some(step.site),
            }
        })
        .collect();
    let ids: Vec<FingerprintId> = found.steps.iter().map(|s| s.fingerprint).collect();
    let source = find_source(
        ctx,
        SourceQuery {
            fingerprints: &ids,
            site: Some(head.site),
            first_record: Some(found.first_record),
            first_index: found.first_record as u64,
            repeats: found.iterations,
        },
    );
    let confidence = if found.total < ctx.config.negligible_time {
        Confidence::Low
    } else {
        match source {
            Some(source) if source.is_strong(found.iterations) => Confidence::High,
            Some(_) => Confidence::Medium,
            None if parent_returned_nothing(ctx, Some(found.first_record), &ids) => Confidence::Low,
            None => Confidence::Medium,
        }
    };
    let batched: Duration = found.steps.iter().map(|s| s.max).sum();
    let saving = millis(found.total.saturating_sub(batched));
    // Below the time threshold the loop is still there, only cheap today: listed, at the lowest severity.
    let severity = if found.total < ctx.config.n_plus_one_min_total {
        Severity::Info
    } else if found.iterations >= ctx.config.n_plus_one_min_repeats.saturating_mul(10)
        || saving >= millis(ctx.config.slow_query)
    {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let statement = ctx.statement(head.fingerprint);
    let mut finding = ctx.finding(FindingKind::MnPlusOne, statement, confidence, severity);
    finding.tables = tables(ctx, &ids);
    finding.count = found.iterations;
    finding.total_time_ms = millis(found.total);
    finding.max_time_ms = millis(found.max);
    finding.first_index = found.first_record as u64;
    finding.site = Some(head.site);
    finding.threshold = Some(ctx.config.mn_plus_one_min_occurrences as f64);
    let parent = source.as_ref().and_then(|s| ctx.statement(s.fingerprint));
    finding.source = source.map(|s| super::SourceEvidence {
        fingerprint: s.fingerprint,
        sql: parent.map_or_else(String::new, |st| st.text().to_string()),
        rows_returned: s.rows,
    });
    let steps: Vec<LoopStep<'_>> = found
        .steps
        .iter()
        .zip(&members)
        .filter_map(|(step, member)| {
            ctx.statement(step.fingerprint).map(|statement| LoopStep {
                statement,
                kind: member.kind,
                count: step.count,
            })
        })
        .collect();
    finding.recommendation = recommend::mn_plus_one(&steps, parent, found.iterations, saving);
    finding.pattern = members;
    out.push(finding);
}

/// The steps' tables, deduplicated, in order.
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
    fn a_loop_with_a_write_is_one_finding() {
        let mut builder = Builder::new();
        let list = builder.stmt("SELECT id FROM invoices LIMIT $1");
        let customer = builder.stmt("SELECT name FROM customers WHERE id = $1");
        let audit = builder.stmt("INSERT INTO audit_log(invoice_id, action) VALUES ($1, $2)");
        builder.run(list, 5, Some(3), None);
        for _ in 0..3 {
            builder.run(customer, 10, Some(1), None);
            builder.run(audit, 10, None, None);
        }
        let findings = builder.detect(&DetectConfig::default());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let mn = &findings[0];
        assert_eq!(mn.kind, FindingKind::MnPlusOne);
        assert_eq!(mn.count, 3);
        assert_eq!(mn.confidence, Confidence::High);
        assert_eq!(mn.fingerprint, customer);
        let steps: Vec<_> = mn
            .pattern
            .iter()
            .map(|m| (m.fingerprint, m.kind, m.count))
            .collect();
        assert_eq!(
            steps,
            vec![
                (customer, FindingKind::NPlusOne, 3),
                (audit, FindingKind::BatchableWrites, 3)
            ]
        );
        assert_eq!(
            mn.tables,
            vec!["customers".to_string(), "audit_log".to_string()]
        );
        assert!((mn.total_time_ms - 60.0).abs() < 1e-6);
        assert!((mn.recommendation.estimated_saving_ms - 40.0).abs() < 1e-6);
        let sqlx = &mn.recommendation.sqlx;
        assert!(
            sqlx.contains("SELECT name FROM customers WHERE id = ANY($1)"),
            "{sqlx}"
        );
        assert!(
            sqlx.contains("INSERT INTO audit_log(invoice_id, action) SELECT * FROM UNNEST($1, $2)"),
            "{sqlx}"
        );
    }

    #[test]
    fn a_pass_over_the_same_items_joins_the_loop() {
        let mut builder = Builder::new();
        let find = builder.stmt("SELECT id, name FROM tags WHERE name = $1");
        let insert = builder.stmt("INSERT INTO tags(name) VALUES ($1) RETURNING *");
        let link = builder.stmt(
            "INSERT INTO article_tags(article_id, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        );
        for _ in 0..6 {
            builder.run(find, 2, Some(0), None);
            builder.run(insert, 2, Some(1), None);
        }
        for _ in 0..6 {
            builder.run(link, 2, None, None);
        }
        let findings = builder.detect(&DetectConfig::development());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let steps: Vec<_> = findings[0]
            .pattern
            .iter()
            .map(|m| (m.fingerprint, m.count))
            .collect();
        assert_eq!(steps, vec![(find, 6), (insert, 6), (link, 6)]);

        // Seven links after six iterations: a loop of its own.
        builder.run(link, 2, None, None);
        let findings = builder.detect(&DetectConfig::development());
        assert_eq!(
            of_kind(&findings, FindingKind::MnPlusOne)[0].pattern.len(),
            2
        );
        assert_eq!(of_kind(&findings, FindingKind::BatchableWrites)[0].count, 7);
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
        let findings = builder.detect(&DetectConfig::default());
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
