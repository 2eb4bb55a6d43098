//! Call sites (issue 12, item 3): the same statement run from two code paths of one request (an auth
//! middleware's lookup in its own `#[instrument]`ed function, then the handler's own) is not a loop, while the
//! same repeats from one site still are, and each finding says where it came from.

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use perfscope::Perfscope;
use perfscope::query::{FindingKind, RequestReport};
use sqlx::SqlitePool;

use super::capture::{handle, sqlite_pool};
use crate::support::{get_request, send};

const LOOKUP: &str = "SELECT name FROM items WHERE id = ?";

async fn lookup(pool: &SqlitePool, id: i64) -> String {
    sqlx::query_scalar(LOOKUP)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Who is calling: the middleware's session lookup.
#[tracing::instrument(skip_all)]
async fn authenticate(pool: &SqlitePool) -> String {
    lookup(pool, 1).await
}

/// What they may do: a second lookup of the same statement, in a function of its own.
#[tracing::instrument(skip_all)]
async fn authorize(pool: &SqlitePool) -> String {
    lookup(pool, 2).await
}

async fn auth(State(pool): State<SqlitePool>, request: Request, next: Next) -> Response {
    authenticate(&pool).await;
    authorize(&pool).await;
    next.run(request).await
}

/// The handler's own lookup, right after the middleware's.
async fn profile(State(pool): State<SqlitePool>) -> String {
    lookup(&pool, 3).await
}

/// Three lookups in one loop, directly in the handler.
async fn looped(State(pool): State<SqlitePool>) -> String {
    let mut names = String::new();
    for id in 1..=3 {
        names.push_str(&lookup(&pool, id).await);
    }
    names
}

/// The same loop inside an `#[instrument]`ed function.
#[tracing::instrument(skip_all)]
async fn load_names(pool: &SqlitePool) -> String {
    let mut names = String::new();
    for id in 1..=3 {
        names.push_str(&lookup(pool, id).await);
    }
    names
}

async fn looped_in_fn(State(pool): State<SqlitePool>) -> String {
    load_names(&pool).await
}

fn app(perf: &Perfscope, pool: SqlitePool) -> Router {
    Router::new()
        .route(
            "/profile",
            get(profile).layer(middleware::from_fn_with_state(pool.clone(), auth)),
        )
        .route("/looped", get(looped))
        .route("/looped-in-fn", get(looped_in_fn))
        .with_state(pool)
        .layer(perf.query_layer())
        .layer(perf.layer())
}

async fn report(perf: &Perfscope, app: &Router, uri: &str) -> RequestReport {
    let (status, headers, _) = send(app, get_request(uri)).await;
    assert!(status.is_success(), "{uri}: {status}");
    let id = headers["x-request-id"].to_str().unwrap();
    perf.request_queries(id).await.expect("settled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_and_the_handler_are_two_call_sites_not_a_loop() {
    let perf = handle();
    let pool = sqlite_pool().await;
    let app = app(&perf, pool);

    // The middleware's two lookups and the handler's own: three sites, one execution each, no loop.
    let profile = report(&perf, &app, "/profile").await;
    assert_eq!(profile.count, 3, "{profile:?}");
    assert!(
        profile.findings.iter().all(|f| !f.kind.is_loop()),
        "{:?}",
        profile.findings
    );

    // The control: three lookups from one site are a loop (development thresholds: 3 repeats).
    let looped = report(&perf, &app, "/looped").await;
    assert_eq!(looped.count, 3);
    let finding = looped
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NPlusOne)
        .unwrap_or_else(|| panic!("the loop is found: {:?}", looped.findings));
    assert_eq!(finding.site, Some(0), "directly in the request");
    let json = serde_json::to_value(finding).unwrap();
    assert_eq!(json["site"], "0000000000000000");

    // The same loop in an `#[instrument]`ed function: found, with that function's site.
    let in_fn = report(&perf, &app, "/looped-in-fn").await;
    let finding = in_fn
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NPlusOne)
        .unwrap_or_else(|| panic!("the loop is found: {:?}", in_fn.findings));
    let site = finding.site.expect("a site");
    assert_ne!(site, 0, "the function's span makes the site");
    // The site is stable: the same function gives the same site on the next request.
    let again = report(&perf, &app, "/looped-in-fn").await;
    assert!(again.findings.iter().any(|f| f.site == Some(site)));
}
