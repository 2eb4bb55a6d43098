//! Cost of the query analyzer, each figure beside its baseline in the same run.
//!
//! - `fingerprint/*`, over a fixed mix of seven ERP statements (joins, a multi-row insert, an update, a
//!   20-element `IN`, a CTE, a primary-key select), per statement:
//!   - `normalize`: the tokenizer normalizer, the work of a memo miss (first sight of a statement);
//!   - `memo_hit`: `FingerprintMemo::fingerprint` on a warm memo (xxh3 of the text, a sharded map read, an
//!     `Arc` clone), the cost every later execution pays;
//!   - `sqlparser_parse_format`: the baseline, `Parser::parse_sql` then `to_string()` of the same statements
//!     (what an AST-based normalizer pays at least).
//!
//! - `capture/*`: one `SELECT name FROM items WHERE id = ?` through sqlx on an in-memory SQLite database (one
//!   connection), awaited from a tokio runtime:
//!   - `sqlite_query_bare`: no `tracing` subscriber at all (sqlx skips its event);
//!   - `sqlite_query_captured`: inside a request span, with perfscope's capture layer as the global subscriber:
//!     sqlx builds and emits its event, the layer finds the request through the span, fingerprints the
//!     statement (a memo hit) and appends it to the request's log.
//!   - `sqlx_event_bare` / `sqlx_event_captured`: the same two set-ups around just the event sqlx emits for that
//!     query (same target, level and fields), which isolates the capture layer's own cost from the database
//!     round trip (a worker-thread hand-off, most of the query's time here).
//!
//!   - `sqlx_event_sites/{off,on}/{0,3}_spans`: the captured event again, each variant under a subscriber of
//!     its own (a scoped default, so all four run in one process): call sites off
//!     (`call_site_level(LevelFilter::OFF)`, what every query paid before call sites) or on (the default),
//!     with the event directly in the request span or under three `INFO` application spans (an
//!     `#[instrument]`ed handler, service and repository function). The difference is the call-site walk's
//!     cost per query.
//!
//! The bare figures are measured first: the subscriber, once global, stays for the rest of the process.
//!
//! Run: `CARGO_TARGET_DIR=/root/.cache/perfscope/target cargo bench --bench query`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perfscope::query::{Dialect, FingerprintMemo, normalize};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The statement mix: what an ERP back end sends most.
const ERP_MIX: &[&str] = &[
    "SELECT o.id, o.number, o.total, c.name, c.email FROM orders o JOIN customers c ON c.id = o.customer_id \
     JOIN order_lines l ON l.order_id = o.id WHERE o.status = 'open' AND o.created_at > $1 ORDER BY o.created_at DESC LIMIT 50",
    "INSERT INTO stock_movements (product_id, warehouse_id, quantity, reason) VALUES ($1, $2, $3, $4), ($5, $6, $7, $8), \
     ($9, $10, $11, $12), ($13, $14, $15, $16)",
    "UPDATE invoices SET status = 'paid', paid_at = now(), paid_amount = 1250.00 WHERE id = 48213 AND status <> 'void'",
    "SELECT id, sku, name, price FROM products WHERE id IN (101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, \
     112, 113, 114, 115, 116, 117, 118, 119, 120)",
    "WITH recent AS (SELECT customer_id, sum(total) AS spent FROM orders WHERE created_at > now() - interval '30 days' \
     GROUP BY customer_id) SELECT c.id, c.name, r.spent FROM customers c JOIN recent r ON r.customer_id = c.id ORDER BY r.spent DESC LIMIT 10",
    "SELECT id, name, email, role, created_at, updated_at FROM users WHERE id = $1",
    "SELECT p.id, p.name, s.quantity FROM products p LEFT JOIN stock s ON s.product_id = p.id AND s.warehouse_id = 3 \
     WHERE p.category_id = 17 AND p.active = true",
];

fn bench_fingerprint(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint");
    group.throughput(Throughput::Elements(ERP_MIX.len() as u64));

    group.bench_function("normalize", |b| {
        b.iter(|| {
            for sql in ERP_MIX {
                black_box(normalize(black_box(sql), Dialect::PostgreSql));
            }
        })
    });

    let memo = FingerprintMemo::default();
    for sql in ERP_MIX {
        memo.fingerprint(sql, Dialect::PostgreSql);
    }
    group.bench_function("memo_hit", |b| {
        b.iter(|| {
            for sql in ERP_MIX {
                black_box(memo.fingerprint(black_box(sql), Dialect::PostgreSql));
            }
        })
    });

    group.bench_function("sqlparser_parse_format", |b| {
        b.iter(|| {
            for sql in ERP_MIX {
                let statements = Parser::parse_sql(&PostgreSqlDialect {}, black_box(sql)).unwrap();
                black_box(
                    statements
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                );
            }
        })
    });
    group.finish();
}

fn bench_capture(c: &mut Criterion) {
    use tracing::Instrument;
    use tracing_subscriber::prelude::*;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = runtime.block_on(async {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO items SELECT i, 'item ' || i FROM n",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool
    });
    let query = |pool: &sqlx::SqlitePool| {
        let pool = pool.clone();
        async move {
            let name: String = sqlx::query_scalar("SELECT name FROM items WHERE id = ?")
                .bind(42_i64)
                .fetch_one(&pool)
                .await
                .unwrap();
            name
        }
    };

    let event = || {
        tracing::event!(
            target: "sqlx::query",
            tracing::Level::DEBUG,
            summary = "SELECT name FROM …",
            db.statement = "\n\nSELECT name FROM items WHERE id = ?\n",
            rows_affected = 0_u64,
            rows_returned = 1_u64,
            elapsed = ?Duration::from_micros(80),
            elapsed_secs = 0.000_08_f64,
        );
    };

    let mut group = c.benchmark_group("capture");
    group.bench_function("sqlite_query_bare", |b| {
        b.iter(|| black_box(runtime.block_on(query(&pool))))
    });
    group.bench_function("sqlx_event_bare", |b| b.iter(event));

    let perf = perfscope::Perfscope::builder().build().unwrap();
    tracing_subscriber::registry()
        .with(perf.query_capture_layer())
        .try_init()
        .unwrap();
    let context = perfscope::RequestContext::new(
        perfscope::RequestId::generate(0),
        perfscope::MethodLabel::of(&http::Method::GET),
        tokio::time::Instant::now(),
        0,
    );
    let span = context.request_span();
    group.bench_function("sqlite_query_captured", |b| {
        b.iter(|| black_box(runtime.block_on(query(&pool).instrument(span.clone()))))
    });
    group.bench_function("sqlx_event_captured", |b| b.iter(|| span.in_scope(event)));

    for (variant, level) in [
        ("off", tracing_subscriber::filter::LevelFilter::OFF),
        ("on", tracing_subscriber::filter::LevelFilter::INFO),
    ] {
        let subscriber = tracing_subscriber::registry().with(
            perfscope::query::QueryCaptureLayer::from(&perf)
                .call_site_level(level)
                .filtered(),
        );
        tracing::subscriber::with_default(subscriber, || {
            let request = context.request_span();
            let _request = request.enter();
            group.bench_function(format!("sqlx_event_sites/{variant}/0_spans"), |b| {
                b.iter(event)
            });
            let handler = tracing::info_span!("handler");
            let _handler = handler.enter();
            let service = tracing::info_span!("service");
            let _service = service.enter();
            let repository = tracing::info_span!("repository");
            let _repository = repository.enter();
            group.bench_function(format!("sqlx_event_sites/{variant}/3_spans"), |b| {
                b.iter(event)
            });
        });
    }
    group.finish();
    assert!(
        context.counters().queries > 1000,
        "the captured queries were attributed to the request"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_fingerprint, bench_capture
}
criterion_main!(benches);
