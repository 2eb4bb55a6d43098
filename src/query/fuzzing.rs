//! The steps the `analyze` fuzz target runs on one input, shared with the test that replays its seed corpus
//! on stable: normalize and enrich each line in every dialect (normalizing twice must not change the text),
//! then run the detector over the lines as one request's queries.

use std::collections::HashMap;
use std::time::Duration;

use super::detect::{DetectConfig, detect};
use super::memo::FingerprintMemo;
use super::model::{Dialect, FingerprintTotals, QueryRecord, RequestQueries};
use super::parse::enrich;
use crate::route::MethodLabel;

/// Most lines of one input treated as queries.
const MAX_LINES: usize = 256;

/// Runs every analysis step on `input`. Panics only when an invariant breaks (which is what a fuzzer looks
/// for): normalization must be idempotent.
#[doc(hidden)]
pub fn analyze_for_fuzzing(input: &str) {
    for dialect in [
        Dialect::Generic,
        Dialect::PostgreSql,
        Dialect::MySql,
        Dialect::Sqlite,
        Dialect::TSql,
    ] {
        let normalized = super::normalize(input, dialect);
        assert_eq!(
            super::normalize(&normalized.text, dialect).text,
            normalized.text,
            "normalization is idempotent"
        );
        let _ = enrich(&normalized.text, dialect);
        detect_lines(input, dialect);
    }
}

/// The input's lines as one request's queries, with durations and rows drawn from the text itself.
fn detect_lines(input: &str, dialect: Dialect) {
    let memo = FingerprintMemo::new(MAX_LINES, MAX_LINES);
    let mut records = Vec::new();
    let mut totals: Vec<FingerprintTotals> = Vec::new();
    let mut index_of = HashMap::new();
    for (index, line) in input.lines().take(MAX_LINES).enumerate() {
        let info = memo.fingerprint(line, dialect);
        info.enrichment
            .get_or_init(|| enrich(&info.text, info.dialect));
        let seed = line.len() as u64;
        let record = QueryRecord {
            fingerprint: info.id,
            start: Duration::from_micros(index as u64 * 50),
            duration: Duration::from_micros(seed.wrapping_mul(37) % 200_000),
            rows_returned: (!seed.is_multiple_of(3)).then_some(seed % 1500),
            rows_affected: None,
            params: seed.is_multiple_of(5).then_some(seed % 7),
            site: seed % 2,
        };
        let slot = *index_of.entry(info.id).or_insert_with(|| {
            totals.push(FingerprintTotals {
                fingerprint: info.id,
                count: 0,
                total: Duration::ZERO,
                max: Duration::ZERO,
                rows_returned: 0,
                first_index: index as u64,
                distinct_params: 0,
            });
            totals.len() - 1
        });
        if let Some(t) = totals.get_mut(slot) {
            t.count += 1;
            t.total += record.duration;
            t.max = t.max.max(record.duration);
            t.rows_returned += record.rows_returned.unwrap_or(0);
        }
        records.push(record);
    }
    let request = RequestQueries {
        method: MethodLabel::of(&http::Method::GET),
        route: "/fuzz".into(),
        request_id: String::new(),
        elapsed: Duration::from_secs(1),
        count: records.len() as u64,
        db_time: records.iter().map(|r| r.duration).sum(),
        records,
        records_dropped: 0,
        totals,
        untracked: 0,
        pool_waits: 0,
        pool_wait: Duration::ZERO,
    };
    let lookup = |id| memo.get(id);
    for config in [DetectConfig::development(), DetectConfig::default()] {
        let _ = detect(&request, &lookup, &config, None);
    }
}
