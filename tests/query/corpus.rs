//! The detector against a corpus of request traces (`corpus/traces.txt`): true loops, MN+1 cycles,
//! duplicates, batchable writes, and repeats that are not loops (polls, exports, call sites, scattered
//! lookups, transactions). Every trace must produce exactly the findings it expects among the loop,
//! duplicate and batchable kinds, with their confidence.

use std::sync::Arc;
use std::time::Duration;

use perfscope::MethodLabel;
use perfscope::query::{
    Confidence, DetectConfig, Dialect, FindingKind, FingerprintMemo, QueryRecord, RequestQueries,
    detect,
};

const CORPUS: &str = include_str!("corpus/traces.txt");

/// The kinds the corpus is about.
const CHECKED: [FindingKind; 4] = [
    FindingKind::NPlusOne,
    FindingKind::MnPlusOne,
    FindingKind::Duplicate,
    FindingKind::BatchableWrites,
];

/// One query line: start, duration, rows, site, statement.
#[derive(Debug, Clone)]
struct Line {
    start: Start,
    millis: f64,
    rows: Option<u64>,
    site: u64,
    sql: String,
}

#[derive(Debug, Clone, Copy)]
enum Start {
    /// Milliseconds after the previous query ended.
    After(f64),
    /// Milliseconds since the request began.
    At(f64),
}

#[derive(Debug)]
struct Trace {
    name: String,
    development: bool,
    dialect: Dialect,
    expected: Vec<(FindingKind, Confidence)>,
    lines: Vec<Line>,
}

fn kind(word: &str) -> FindingKind {
    CHECKED
        .into_iter()
        .find(|k| k.as_str() == word)
        .unwrap_or_else(|| panic!("unknown kind {word}"))
}

fn confidence(word: &str) -> Confidence {
    match word {
        "low" => Confidence::Low,
        "medium" => Confidence::Medium,
        "high" => Confidence::High,
        _ => panic!("unknown confidence {word}"),
    }
}

fn line(text: &str, iteration: Option<usize>) -> Line {
    let text = match iteration {
        Some(i) => text.replace("{i}", &i.to_string()),
        None => text.to_owned(),
    };
    let mut parts = text.splitn(5, ' ');
    let mut next = || parts.next().unwrap_or_else(|| panic!("short line: {text}"));
    let start = next();
    let start = match (start.strip_prefix('+'), start.strip_prefix('@')) {
        (Some(gap), _) => Start::After(gap.parse().unwrap()),
        (_, Some(at)) => Start::At(at.parse().unwrap()),
        _ => panic!("a start is +gap or @time: {text}"),
    };
    let millis = next().parse().unwrap();
    let rows = match next() {
        "-" => None,
        rows => Some(rows.parse().unwrap()),
    };
    let site = next().parse().unwrap();
    let sql = next().to_owned();
    Line {
        start,
        millis,
        rows,
        site,
        sql,
    }
}

fn parse(corpus: &str) -> Vec<Trace> {
    let mut traces: Vec<Trace> = Vec::new();
    let mut block: Option<(usize, Vec<String>)> = None;
    for raw in corpus.lines() {
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if let Some(name) = text.strip_prefix("== ") {
            traces.push(Trace {
                name: name.to_owned(),
                development: false,
                dialect: Dialect::PostgreSql,
                expected: Vec::new(),
                lines: Vec::new(),
            });
            continue;
        }
        let trace = traces.last_mut().expect("a line before the first trace");
        if let Some((count, lines)) = &mut block {
            if text == "end" {
                for i in 1..=*count {
                    for text in lines.iter() {
                        trace.lines.push(line(text, Some(i)));
                    }
                }
                block = None;
            } else {
                lines.push(text.to_owned());
            }
            continue;
        }
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "config" => trace.development = rest == "development",
            "dialect" => {
                trace.dialect = match rest {
                    "postgresql" => Dialect::PostgreSql,
                    "mysql" => Dialect::MySql,
                    "sqlite" => Dialect::Sqlite,
                    "generic" => Dialect::Generic,
                    other => panic!("unknown dialect {other}"),
                }
            }
            "expect" if rest == "none" => {}
            "expect" => {
                let (k, c) = rest.split_once(' ').expect("expect <kind> <confidence>");
                trace.expected.push((kind(k), confidence(c)));
            }
            "repeat" => block = Some((rest.parse().unwrap(), Vec::new())),
            _ => trace.lines.push(line(text, None)),
        }
    }
    traces
}

/// The trace as a settled request, fingerprinted and enriched as the analyzer does it.
fn run(trace: &Trace) -> Vec<(FindingKind, Confidence)> {
    let memo = FingerprintMemo::default();
    let mut records = Vec::new();
    let mut end = Duration::ZERO;
    let mut elapsed = Duration::ZERO;
    for line in &trace.lines {
        let (info, values) = memo.fingerprint_and_values(&line.sql, trace.dialect);
        info.enrichment();
        let duration = Duration::from_secs_f64(line.millis / 1000.0);
        let start = match line.start {
            Start::After(gap) => end + Duration::from_secs_f64(gap / 1000.0),
            Start::At(at) => Duration::from_secs_f64(at / 1000.0),
        };
        end = start + duration;
        elapsed = elapsed.max(end);
        records.push(QueryRecord {
            fingerprint: info.id,
            start,
            duration,
            rows_returned: line.rows,
            rows_affected: None,
            params: values,
            site: line.site,
        });
    }
    let request = RequestQueries {
        method: MethodLabel::of(&http::Method::GET),
        route: Arc::from("/corpus"),
        request_id: "corpus".to_owned(),
        elapsed,
        count: records.len() as u64,
        db_time: records.iter().map(|r| r.duration).sum(),
        records,
        records_dropped: 0,
        totals: Vec::new(),
        untracked: 0,
        pool_waits: 0,
        pool_wait: Duration::ZERO,
    };
    let config = if trace.development {
        DetectConfig::development()
    } else {
        DetectConfig::production()
    };
    let lookup = |id| memo.get(id);
    let mut found: Vec<(FindingKind, Confidence)> = detect(&request, &lookup, &config, None)
        .into_iter()
        .filter(|f| CHECKED.contains(&f.kind))
        .map(|f| (f.kind, f.confidence))
        .collect();
    found.sort();
    found
}

#[test]
fn every_trace_of_the_corpus_gets_its_findings() {
    let traces = parse(CORPUS);
    let negatives = traces.iter().filter(|t| t.expected.is_empty()).count();
    assert!(traces.len() >= 40, "{} traces", traces.len());
    assert!(negatives >= 15, "{negatives} traces without a finding");
    let mut wrong = Vec::new();
    for trace in &traces {
        let mut expected = trace.expected.clone();
        expected.sort();
        let found = run(trace);
        if found != expected {
            wrong.push(format!(
                "{}: expected {expected:?}, found {found:?}",
                trace.name
            ));
        }
    }
    println!(
        "{} traces ({negatives} without a finding), {} wrong",
        traces.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
