//! Capture of sqlx's query events and attribution to requests, on SQLite and PostgreSQL, with the
//! application's own log filtered at INFO.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use futures_util::future::join_all;
use perfscope::{HeaderPolicy, Perfscope};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

use crate::support::{get_request, send};

/// The process-wide subscriber: the application's log at INFO (filtered for its own layer) and one capture
/// layer. Handles made by the tests attach their own analyzers through their query layers; the capture
/// layer's own handle only sees unattributed queries.
pub(crate) fn capture_handle() -> &'static Perfscope {
    static GLOBAL: OnceLock<Perfscope> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let perf = Perfscope::builder().build().unwrap();
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new("info")),
            )
            .with(perf.query_capture_layer())
            .try_init()
            .expect("the test binary installs the global subscriber once");
        perf
    })
}

pub(crate) fn handle() -> Perfscope {
    capture_handle();
    Perfscope::builder()
        .timing_headers(HeaderPolicy::Always)
        .build()
        .unwrap()
}

pub(crate) fn temp_db() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("perfscope-capture-{}-{n}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    format!("sqlite://{}?mode=rwc", path.display())
}

/// `PERFSCOPE_REQUIRE_SERVICES=1` (set by `scripts/test`) turns a missing `DATABASE_URL` into a failure.
pub(crate) fn postgres_url() -> Option<String> {
    crate::support::services::service_url(
        "DATABASE_URL",
        &["postgres:", "postgresql:"],
        "PostgreSQL",
    )
}

macro_rules! lookup_app {
    ($pool:ty, $lookup:literal, $bad:literal) => {{
        /// Runs `n` lookups one after the other, two at once, and one in a spawned task that keeps the span.
        async fn items(State(pool): State<$pool>, Path(n): Path<i64>) -> Result<String, String> {
            let mut names = Vec::new();
            for id in 1..=n {
                let name: String = sqlx::query_scalar($lookup)
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                names.push(name);
            }
            let both = join_all((1..=2_i64).map(|id| {
                sqlx::query_scalar::<_, String>($lookup)
                    .bind(id)
                    .fetch_one(&pool)
            }))
            .await;
            for name in both {
                names.push(name.map_err(|e| e.to_string())?);
            }
            let spawned_pool = pool.clone();
            let spawned = tokio::spawn(
                async move {
                    sqlx::query_scalar::<_, String>($lookup)
                        .bind(1_i64)
                        .fetch_one(&spawned_pool)
                        .await
                }
                .in_current_span(),
            );
            names.push(
                spawned
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?,
            );
            Ok(names.join(","))
        }
        /// Two good queries, then one the database refuses: its event may come after the handler returns.
        async fn failing(State(pool): State<$pool>) -> Result<String, (http::StatusCode, String)> {
            let error = |e: sqlx::Error| (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            for id in 1..=2_i64 {
                let _: String = sqlx::query_scalar($lookup)
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .map_err(error)?;
            }
            sqlx::query($bad)
                .execute(&pool)
                .await
                .map(|_| String::new())
                .map_err(error)
        }
        move |perf: &Perfscope, pool: $pool| -> Router {
            Router::new()
                .route("/items/{n}", get(items))
                .route("/failing", get(failing))
                .with_state(pool)
                .layer(perf.query_layer())
                .layer(perf.layer())
        }
    }};
}

/// Opens every connection of `pool` now: a connection opened during a request runs its set-up statements
/// (SQLite's `PRAGMA`s) in that request, and they would count there.
pub(crate) async fn open_all<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        held.push(pool.acquire().await.unwrap());
    }
}

/// Forty concurrent requests running 4 to 10 queries each: every request gets exactly its own.
async fn concurrent_requests_get_their_own_queries(perf: &Perfscope, app: Router) {
    let requests = (0..40_i64).map(|i| {
        let app = app.clone();
        async move {
            let n = i % 7 + 1;
            let (status, headers, _) = send(&app, get_request(&format!("/items/{n}"))).await;
            assert_eq!(status, 200);
            let id = headers["x-request-id"].to_str().unwrap().to_owned();
            let count: u64 = headers["x-query-count"].to_str().unwrap().parse().unwrap();
            (n as u64 + 3, count, id)
        }
    });
    for (expected, header_count, id) in join_all(requests).await {
        assert_eq!(header_count, expected, "X-Query-Count of {id}");
        let report = perf.request_queries(&id).await.expect("settled");
        assert_eq!(report.count, expected, "settled count of {id}");
        assert_eq!(report.route, "/items/{n}");
    }
    let snapshot = perf.snapshot();
    let route = snapshot
        .queries
        .routes
        .iter()
        .find(|r| r.route == "/items/{n}")
        .unwrap();
    assert_eq!(route.requests, 40);
    assert_eq!(route.queries, (0..40).map(|i| i % 7 + 4).sum::<u64>());
}

/// The failing query is counted even when its event arrives after the response.
async fn a_late_event_is_counted(perf: &Perfscope, app: Router) {
    for _ in 0..20 {
        let (status, headers, _) = send(&app, get_request("/failing")).await;
        assert_eq!(status, 500);
        let id = headers["x-request-id"].to_str().unwrap().to_owned();
        let report = perf.request_queries(&id).await.expect("settled");
        assert_eq!(report.count, 3, "{id}");
    }
}

pub(crate) async fn sqlite_pool() -> sqlx::SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect(&temp_db())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    for id in 1..=10 {
        sqlx::query("INSERT INTO items (id, name) VALUES (?, ?)")
            .bind(id)
            .bind(format!("item {id}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    open_all(&pool).await;
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queries_are_attributed_to_their_requests() {
    let perf = handle();
    let pool = sqlite_pool().await;
    let app = lookup_app!(
        sqlx::SqlitePool,
        "SELECT name FROM items WHERE id = ?",
        "SELECT nope FROM missing"
    )(&perf, pool);
    concurrent_requests_get_their_own_queries(&perf, app.clone()).await;
    a_late_event_is_counted(&perf, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queries_are_attributed_to_their_requests() {
    let Some(url) = postgres_url() else {
        return;
    };
    let perf = handle();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("DROP TABLE IF EXISTS capture_items")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE capture_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO capture_items SELECT g, 'item ' || g FROM generate_series(1, 10) g")
        .execute(&pool)
        .await
        .unwrap();
    open_all(&pool).await;
    let app = lookup_app!(
        sqlx::PgPool,
        "SELECT name FROM capture_items WHERE id = $1",
        "SELECT nope FROM missing_table"
    )(&perf, pool);
    concurrent_requests_get_their_own_queries(&perf, app.clone()).await;
    a_late_event_is_counted(&perf, app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_outside_requests_are_unattributed() {
    let global = capture_handle();
    let before = global.snapshot().queries.unattributed_queries;
    let pool = sqlite_pool().await;
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The setup ran 11 statements outside any request as well; other tests may add more meanwhile.
    let after = global.snapshot().queries.unattributed_queries;
    assert!(after >= before + 12, "{before} -> {after}");
}

#[tokio::test]
async fn the_query_layer_alone_makes_the_context_and_headers() {
    let perf = handle();
    let recorder = perf.query_recorder();
    let app: Router = Router::new()
        .route(
            "/q",
            get(move || {
                let recorder = recorder.clone();
                async move {
                    recorder.record("SELECT a FROM t", Duration::from_millis(2), Some(1));
                    "ok"
                }
            }),
        )
        .layer(perf.query_layer())
        .with_state(());
    let (_, headers, _) = send(&app, get_request("/q")).await;
    assert_eq!(headers["x-query-count"], "1");
    let timing = headers["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("db;dur=2.0"), "{timing}");
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(perf.request_queries(id).await.unwrap().route, "/q");
}

#[tokio::test]
async fn no_query_headers_under_the_never_policy() {
    capture_handle();
    let perf = Perfscope::builder()
        .timing_headers(HeaderPolicy::Never)
        .build()
        .unwrap();
    let app: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(perf.query_layer())
        .layer(perf.layer())
        .with_state(());
    let (_, headers, _) = send(&app, get_request("/")).await;
    assert!(!headers.contains_key("x-query-count"));
    assert!(headers.contains_key("x-request-id"));
}
