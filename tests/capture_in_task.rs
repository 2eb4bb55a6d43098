//! The capture for drivers that query on the request's own task (`Perfscope::query_capture_layer_in_task`),
//! on PostgreSQL. Its own binary: the global subscriber is the one the docs show for that driver.
#![cfg(all(feature = "query", feature = "axum"))]
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use futures_util::future::join_all;
use perfscope::Perfscope;
use tracing_subscriber::prelude::*;

use support::services::service_url;
use support::{get_request, send};

/// PostgreSQL queries run on the request's task: the capture without the request span attributes every
/// one of them (sequential, concurrent, and spawned inside the context's scope), and no span is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_capture_in_task_attributes_queries_without_a_request_span() {
    let Some(url) = service_url("DATABASE_URL", &["postgres"], "PostgreSQL") else {
        return;
    };
    let perf = Perfscope::builder().build().unwrap();
    // The application's subscriber, as the docs show it for PostgreSQL.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(tracing_subscriber::EnvFilter::new("info")),
        )
        .with(perf.query_capture_layer_in_task())
        .try_init()
        .expect("the only subscriber of this test binary");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE IF EXISTS capture_in_task_items")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE capture_in_task_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO capture_in_task_items SELECT g, 'item ' || g FROM generate_series(1, 10) g",
    )
    .execute(&pool)
    .await
    .unwrap();

    const LOOKUP: &str = "SELECT name FROM capture_in_task_items WHERE id = $1";
    async fn items(
        State(pool): State<sqlx::PgPool>,
        Path(n): Path<i64>,
        context: perfscope::RequestContext,
    ) -> Result<String, String> {
        let span = tracing::Span::current()
            .metadata()
            .map_or("none", |m| m.name());
        for id in 1..=n {
            let _: String = sqlx::query_scalar(LOOKUP)
                .bind(id)
                .fetch_one(&pool)
                .await
                .map_err(|e| e.to_string())?;
        }
        for name in join_all((1..=2_i64).map(|id| {
            sqlx::query_scalar::<_, String>(LOOKUP)
                .bind(id)
                .fetch_one(&pool)
        }))
        .await
        {
            name.map_err(|e| e.to_string())?;
        }
        let spawned_pool = pool.clone();
        let spawned = tokio::spawn(context.scope(async move {
            sqlx::query_scalar::<_, String>(LOOKUP)
                .bind(1_i64)
                .fetch_one(&spawned_pool)
                .await
        }));
        spawned
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(span.to_owned())
    }
    let app = Router::new()
        .route("/items/{n}", get(items))
        .with_state(pool)
        .layer(perf.layers());
    // The set-up above ran outside any request.
    let unattributed = perf.snapshot().queries.unattributed_queries;
    for n in 1..=5_u64 {
        let (status, headers, body) = send(&app, get_request(&format!("/items/{n}"))).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(&body[..], b"none", "the handler runs in no span");
        let id = headers["x-request-id"].to_str().unwrap().to_owned();
        let report = perf.request_queries(&id).await.expect("settled");
        assert_eq!(report.count, n + 3, "{id}");
    }
    assert_eq!(perf.snapshot().queries.unattributed_queries, unattributed);
}
