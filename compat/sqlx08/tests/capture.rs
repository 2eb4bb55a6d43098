//! perfscope's capture layer hears sqlx 0.8's query events on SQLite (worker threads included): each request
//! gets exactly its own queries, and the N+1 page is found.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use perfscope::Perfscope;
use perfscope::query::{DetectConfig, Dialect, FindingKind, QueryConfig};
use tower::ServiceExt;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// One list query, then one lookup per row: the N+1 shape.
async fn names(State(pool): State<sqlx::SqlitePool>) -> String {
    let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM items ORDER BY id LIMIT 8")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut names = Vec::new();
    for (id,) in ids {
        let (name,): (String,) = sqlx::query_as("SELECT name FROM items WHERE id = ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        names.push(name);
    }
    names.join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_0_8_queries_are_captured_and_attributed() {
    let perf = Perfscope::builder()
        .query(
            QueryConfig::default()
                .dialect(Dialect::Sqlite)
                .detect(DetectConfig::development()),
        )
        .build()
        .unwrap();
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new("info")),
        )
        .with(perf.query_capture_layer())
        .init();
    // An in-memory database lives in its connection: one connection, opened before any request (its set-up
    // statements would otherwise count in the first request).
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    for id in 1..=8 {
        sqlx::query("INSERT INTO items (id, name) VALUES (?, ?)")
            .bind(id)
            .bind(format!("item {id}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let app = Router::new()
        .route("/names", get(names))
        .with_state(pool)
        .layer(perf.layers());

    for _ in 0..3 {
        let request = axum::http::Request::get("/names")
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.starts_with(b"item 1,"));
        let report = perf.request_queries(&id).await.expect("settled");
        assert_eq!(report.count, 9, "the list and 8 lookups");
        let loops: Vec<_> = report.n_plus_one().collect();
        assert_eq!(loops.len(), 1, "{:#?}", report.findings);
        assert_eq!(loops[0].count, 8);
    }
    let snapshot = perf.snapshot();
    assert!(
        snapshot
            .queries
            .findings
            .iter()
            .any(|f| f.finding.kind == FindingKind::NPlusOne)
    );
}
