//! A server whose statistics are full of markup, for checking that the dashboard shows it as text.
//!
//! Every string of the snapshot that an application or a client chooses carries [`MARKER`], an `<img>` tag whose
//! `onerror` would set `window.perfscopeXss` if a page ever parsed it as HTML: a route template (axum accepts
//! almost anything as a parameter name), phase names, a user ID (from a request header), SQL (a quoted
//! identifier, which normalization keeps) and a cache key namespace. At start the server sends itself requests
//! that produce a slow request, a hung one, an N+1 finding and cache statistics, then serves the admin router
//! (and its dashboard at `/admin/perf`) in loopback-only mode until stopped.
//!
//! `scripts/dashboard-check` runs it: `HOSTILE_ADDR=127.0.0.1:3001 cargo run --example hostile_names`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use perfscope::cache::{Cache, CacheKey};
use perfscope::query::{DetectConfig, QueryConfig};
use perfscope::{AdminAuth, Perfscope};
use tower::ServiceExt;

/// Markup that runs script when parsed as HTML; no `/`, `*`, `{`, `}` or `:`, so it fits everywhere below.
const MARKER: &str = "<img src=x onerror=window.perfscopeXss=1>";

/// Header the user ID hook reads.
const USER_HEADER: &str = "x-user";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let perf = Perfscope::builder()
        .slow_threshold(Duration::from_millis(1))
        .hung_threshold(Duration::from_millis(200))
        .user_id(|parts| {
            parts
                .headers
                .get(USER_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        })
        .query(QueryConfig::default().detect(DetectConfig::development()))
        .build()?;

    let cache: Cache<CacheKey, String> = Cache::builder().name("fixture").build()?;
    perf.register_cache(cache.handle());

    let recorder = perf.query_recorder();
    let slow_cache = cache.clone();
    let app: Router = Router::new()
        .route(
            &format!("/slow/{{{MARKER}}}"),
            get(move || {
                let recorder = recorder.clone();
                let cache = slow_cache.clone();
                async move {
                    let _phase = perfscope::phase(format!("phase {MARKER}"));
                    recorder.record(
                        "SELECT id FROM items ORDER BY id LIMIT 5",
                        Duration::from_micros(300),
                        Some(5),
                    );
                    let sql = format!("SELECT \"{MARKER}\" FROM items WHERE id = 1");
                    for id in 0..5 {
                        recorder.record_with_params(&sql, Duration::from_micros(200), Some(1), id);
                    }
                    let key = CacheKey::new(MARKER).part(1);
                    if cache.get(&key).is_none() {
                        cache.insert(key, MARKER.to_owned());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    "slow"
                }
            }),
        )
        .route(
            &format!("/hang/{{{MARKER}}}"),
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .layer(perf.layers())
        .nest("/admin/perf", perf.admin_router(AdminAuth::loopback_only()));

    // The statistics: three slow requests with a user ID, and one that never ends.
    for _ in 0..3 {
        let request = http::Request::get("/slow/1")
            .header(USER_HEADER, format!("user {MARKER}"))
            .body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    }
    let hung = http::Request::get("/hang/1").body(Body::empty())?;
    tokio::spawn(app.clone().oneshot(hung));

    let addr = std::env::var("HOSTILE_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "hostile names: dashboard at http://{}/admin/perf",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
