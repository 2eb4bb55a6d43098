//! Deep and huge statements: the normalizer and the parser stay within a 2 MiB stack and a time budget.

use std::time::{Duration, Instant};

use perfscope::query::{Dialect, RECURSION_LIMIT, enrich, normalize};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

/// The budget per call; asserted in optimized builds only (a debug build on a loaded CI machine is not a
/// benchmark), printed always.
const BUDGET: Duration = Duration::from_millis(50);

/// Runs normalize and enrich on `sql` in every dialect on a thread with a 2 MiB stack and returns the slowest
/// normalize + enrich time.
fn run_small_stack(name: &'static str, sql: String) -> Duration {
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let mut slowest = Duration::ZERO;
            for dialect in [Dialect::PostgreSql, Dialect::MySql, Dialect::Sqlite, Dialect::Generic] {
                let start = Instant::now();
                let n = normalize(&sql, dialect);
                let normalized = start.elapsed();
                let e = enrich(&n.text, dialect);
                let total = start.elapsed();
                println!(
                    "{name:>22} {dialect:>10?}: normalize {:>8.3} ms, + enrich {:>8.3} ms ({:?}, {} bytes, truncated {})",
                    normalized.as_secs_f64() * 1e3,
                    (total - normalized).as_secs_f64() * 1e3,
                    e.skipped,
                    n.text.len(),
                    n.truncated,
                );
                slowest = slowest.max(total);
            }
            slowest
        })
        .unwrap();
    let slowest = handle.join().unwrap();
    if cfg!(not(debug_assertions)) {
        assert!(slowest < BUDGET, "{name}: {slowest:?}");
    }
    slowest
}

#[test]
fn open_parens_100k() {
    run_small_stack("(×100000", "(".repeat(100_000));
}

#[test]
fn sum_chain_100k() {
    run_small_stack(
        "SELECT 1+×100000",
        format!("SELECT {}1", "1+".repeat(100_000)),
    );
}

#[test]
fn not_chain_100k() {
    run_small_stack(
        "NOT×100000",
        format!("SELECT * FROM t WHERE {}a", "NOT ".repeat(100_000)),
    );
}

#[test]
fn nested_subqueries_10k() {
    let sql = format!(
        "{}SELECT 1{}",
        "SELECT * FROM (".repeat(10_000),
        ") AS t".repeat(10_000)
    );
    run_small_stack("subqueries×10000", sql);
}

#[test]
fn balanced_parens_2k_with_tail() {
    let sql = format!(
        "SELECT {}1{} FROM t WHERE id = 1",
        "(".repeat(2_000),
        ")".repeat(2_000)
    );
    run_small_stack("balanced×2000", sql);
}

#[test]
fn statement_of_5_mib() {
    let columns = (0..400_000)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("SELECT {columns} FROM t WHERE a = '");
    sql.push_str(&"x".repeat(5 * 1024 * 1024 - sql.len()));
    sql.push('\'');
    assert!(sql.len() >= 5 * 1024 * 1024);
    run_small_stack("5 MiB", sql);
}

#[test]
fn enrich_of_a_long_flat_chain_is_refused_before_parsing() {
    // A flat chain parses without recursion into a tree as deep as it is long; its drop would recurse.
    let sql = format!("SELECT {}1", "1 + ".repeat(7_000));
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || enrich(&sql, Dialect::Generic).skipped)
        .unwrap();
    assert_eq!(handle.join().unwrap(), Some("too_large"));
}

#[test]
fn our_sqlparser_build_rejects_deep_nesting() {
    // Guards against a dependency change (e.g. `default-features = false`) that turns the counter off.
    const { assert!(RECURSION_LIMIT <= 64) };
    let deep = "(".repeat(1000);
    let result = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(&deep)
        .and_then(|mut parser| parser.parse_statements());
    assert_eq!(result.err(), Some(ParserError::RecursionLimitExceeded));
    assert_eq!(enrich(&deep, Dialect::PostgreSql).skipped, Some("too_deep"));
}
