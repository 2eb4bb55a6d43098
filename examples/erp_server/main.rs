//! A small ERP/CRM back end for a pharmacy, instrumented with perfscope.
//!
//! Run it with `cargo run --example erp_server`, then open the URLs it prints. The server seeds a fresh database
//! (an embedded SQLite file, or PostgreSQL when `DATABASE_URL` is set) with a deterministic catalogue (products,
//! customers, quotations), so every run shows the same data and the same performance problems:
//! `/api/quotations` is deliberately written in the N+1 shape a naive ERP has (`/api/v2/quotations` is the same
//! page in three queries), and `/api/auth/login` spends most of its time hashing the password (visible as the
//! `password_hash` phase in the `Server-Timing` header).
//!
//! The product, customer and dashboard reads are cached (module `caches`): their responses carry `X-Cache`
//! (`MISS`, then `HIT` for 30 s), `PUT /api/products/{id}` invalidates what it changes, and
//! `/admin/perf/cache` shows the hit ratio of every cache.
//!
//! Environment:
//! - `ERP_ADDR`: listen address (default `127.0.0.1:3000`).
//! - `DATABASE_URL` (build with `--features perfscope-demo/postgres`): a `postgres://` URL to run on PostgreSQL
//!   instead of SQLite. The demo's tables there (`products`, `customers`, `quotations`, `quotation_lines`,
//!   `users`) are dropped and recreated at start, so use a database of its own.
//! - `ERP_DATABASE`: SQLite file to use without `DATABASE_URL` (default `perfscope-erp-<pid>.db` in the temp
//!   directory). The file is deleted and recreated at start, so never point it at data you want to keep.
//! - `PERFSCOPE_ADMIN_TOKEN`: protects `/admin/perf/*` with a token. Without it the admin routes answer loopback
//!   clients only (development mode).
//! - `PERFSCOPE_MODE`: how much of perfscope measures the server (module `mode`): `full` (the default: the
//!   monitor, the query layer and the query capture layer), `monitor` (`perf.layer()` only) or `off` (none of
//!   them). The log, tower-http's `TraceLayer`, the caches and the admin router are the same in every mode, so
//!   `scripts/loadtest` can compare the three on the same application. Any other value stops the server at start.
//! - `REDIS_URL` (build with `--features perfscope-demo/redis`): Redis shared by several instances (module `fleet`): product
//!   rows kept there, invalidations sent to every instance, fleet-wide latency percentiles.
//! - `ERP_JOIN_DATABASE=1`: join the database (`ERP_DATABASE` or `DATABASE_URL`) a first instance created and
//!   seeded, without resetting it or deleting it at shutdown: for a second instance of the fleet.
//! - `RUST_LOG`: log filter (default `info`).

mod caches;
mod catalog;
mod db;
mod error;
mod fleet;
mod login_limit;
mod memory;
mod mode;
mod pagination;
mod password;
mod request_limits;
mod routes;
mod server;
mod session;
mod time;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use perfscope::query::{Dialect, QueryConfig};
use sqlx::AnyPool;
use tower_http::trace::TraceLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::mode::PerfscopeMode;

/// The default listen address; `ERP_ADDR` overrides it.
const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// Shared state of every handler: cheap to clone (a pool handle and an `Arc`).
#[derive(Clone)]
pub(crate) struct AppState {
    /// The connection pool, SQLite or PostgreSQL (see [`db`]).
    pub(crate) db: AnyPool,
    /// Issues the opaque tokens returned by `/api/auth/login`.
    pub(crate) sessions: Arc<session::SessionIssuer>,
    /// The data caches, and the response store for invalidation.
    pub(crate) caches: caches::Caches,
    /// Login attempts per address and per account, and the password-hashing pool.
    pub(crate) login_limits: Arc<login_limit::LoginLimits>,
}

/// How the admin routes are protected, remembered so the startup banner can say how to call them.
enum AdminMode {
    /// `PERFSCOPE_ADMIN_TOKEN` is set: callers send it as a bearer token.
    Token,
    /// No token: only clients on 127.0.0.1 / ::1 are let in.
    LoopbackOnly,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The allocator set up to give memory back after a burst of connections (module `memory`).
    memory::configure();

    // Which of perfscope's layers to use; read first, so a wrong value stops the server before any work.
    let mode = PerfscopeMode::from_env()?;

    // Database: fresh tables, seeded deterministically so every run serves the same data.
    let location = db::Location::from_env()?;

    // perfscope: one handle; its layers measure the application routes and their queries, its admin router
    // serves the results. Detection uses the build's profile: `development` in a debug build, `production` in a
    // release build, where a loop that is fast on today's data is still listed (as `info`); the first layer
    // logs which profile and thresholds are in force, and the snapshot says so too.
    let dialect = match location {
        db::Location::Postgres(_) => Dialect::PostgreSql,
        _ => Dialect::Sqlite,
    };
    let perf = perfscope::Perfscope::builder()
        .slow_threshold(Duration::from_millis(200)) // ERP target: every page under 200 ms
        .query(QueryConfig::default().dialect(dialect))
        .build()?;

    // The log at INFO (or RUST_LOG) on its own layer; perfscope's capture layer brings its own filter, which
    // lets sqlx's DEBUG query events through to perfscope only. PostgreSQL queries run on the handler's task,
    // so its capture needs no request span; SQLite's worker threads do. `None` (mode `off` or `monitor`) adds
    // no layer.
    let capture = mode.analyzes_queries().then(|| match location {
        db::Location::Postgres(_) => perf.query_capture_layer_in_task(),
        _ => perf.query_capture_layer(),
    });
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        ))
        .with(capture)
        .init();

    // The first instance resets and seeds the database; the others of a fleet join it as it is.
    let joins = db::joins_existing()?;
    let pool = if joins {
        let pool = db::open_existing(&location).await?;
        println!("joined the demo database in {location}");
        pool
    } else {
        let pool = db::open_fresh(&location).await?;
        let report = db::seed(&pool).await?;
        println!(
            "seeded {} products, {} customers, {} quotations ({} lines) into {} in {:.2?}",
            report.products,
            report.customers,
            report.quotations,
            report.lines,
            location,
            report.elapsed,
        );
        pool
    };

    let (auth, admin_mode) = match std::env::var("PERFSCOPE_ADMIN_TOKEN") {
        Ok(token) => (perfscope::AdminAuth::token(token)?, AdminMode::Token),
        Err(_) => (
            perfscope::AdminAuth::loopback_only(),
            AdminMode::LoopbackOnly,
        ),
    };

    // Several instances: with REDIS_URL, the caches share Redis and this instance joins the fleet's latency.
    let fleet = fleet::Fleet::from_env(&perf)?;

    // Caches: registered with perfscope, so `/admin/perf/cache` reports (and can invalidate) them.
    let (caches, responses) = caches::Caches::new(&fleet)?;
    caches.register(&perf);

    let state = AppState {
        db: pool.clone(),
        sessions: Arc::new(session::SessionIssuer::new()),
        caches,
        login_limits: login_limit::LoginLimits::new(),
    };
    let app = routes::router(responses)
        .with_state(state)
        // The application's own request tracing, at tower-http's default levels (DEBUG spans and events, ERROR on
        // failures), as a real server has it whether perfscope is there or not.
        .layer(TraceLayer::new_for_http());
    // Body size and deadline, in-flight requests (module `request_limits`): inside perfscope, which sees their
    // 413, 408 and 503 answers.
    let mut app = request_limits::apply(app);
    // Outermost, so the monitor sees every response, `X-Cache` included, and times hits too; in mode `full`
    // the query layer inside it ties each request's queries to it and adds `X-Query-Count`. One `Router::layer`
    // call for both: axum boxes each call's service and future.
    if mode.analyzes_queries() {
        app = app.layer(perf.layers());
    } else if mode.monitors_requests() {
        app = app.layer(perf.layer());
    }
    // Nested after `.layer(..)` so the admin routes are not measured as application traffic. Kept in every mode:
    // it also serves and invalidates the caches, which the application uses whatever perfscope measures (in mode
    // `off` its request statistics are simply empty).
    // The dashboard is `GET /admin/perf`; a nested router never sees the form with a trailing slash, which
    // people type, so send it there.
    let app = app.nest("/admin/perf", perf.admin_router(auth)).route(
        "/admin/perf/",
        axum::routing::get(|| async { axum::response::Redirect::permanent("/admin/perf") }),
    );

    let addr = std::env::var("ERP_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    let limits = server::Limits::from_env()?;
    let listener = server::bind(&addr).await?;
    let local = listener.local_addr()?;
    print_banner(local, &admin_mode, mode);
    if let Some(line) = fleet.describe() {
        println!("fleet: {line}");
    }
    println!(
        "limits: {} connections (open files: {}), header read timeout {:?}, body {} KiB within {:?}, {} requests in flight",
        limits.max_connections,
        limits
            .open_files_limit
            .map_or_else(|| "no limit".to_owned(), |n| n.to_string()),
        server::HEADER_READ_TIMEOUT,
        request_limits::MAX_BODY_BYTES / 1024,
        request_limits::BODY_DEADLINE,
        request_limits::MAX_IN_FLIGHT,
    );

    // Our own accept loop (module `server`): hyper's connection with a header-read timeout and a connection limit,
    // which `axum::serve` does not set. It gives each request its peer address, which the loopback-only admin
    // mode and the login limiter need.
    // perfscope's view of the connections (snapshot `connections`, the dashboard, Prometheus): it sees an attack
    // of half-sent heads that never becomes a request.
    let tracker = perf.connections("public");
    server::serve(listener, app, limits, tracker, shutdown_signal()).await;

    tracing::info!("shutting down");
    fleet.shutdown().await;
    pool.close().await;
    // The database belongs to the instance that created it.
    if !joins {
        location.remove_files();
    }
    Ok(())
}

/// Prints the URLs worth trying, so the first minute with the demo needs no documentation.
fn print_banner(addr: SocketAddr, admin_mode: &AdminMode, mode: PerfscopeMode) {
    let base = format!("http://{addr}");
    println!();
    println!("ERP demo listening on {base}");
    println!(
        "perfscope mode: {mode} (set {}=off, monitor or full to choose its layers)",
        mode::VARIABLE
    );
    println!();
    println!("Try:");
    println!("  curl -i {base}/api/products/1");
    println!("  curl -i {base}/api/products/1/stock  # never cached: 1 query per request");
    println!("  curl -i '{base}/api/products?q=paracetamol&page=1&per_page=5'");
    println!("  curl -i {base}/api/customers/1");
    println!("  curl -i {base}/api/quotations        # N+1 on purpose: 41 queries per page");
    println!("  curl -i {base}/api/v2/quotations     # the same page in 3 queries");
    println!("  curl -i {base}/api/quotations/1");
    println!("  curl -i {base}/api/dashboard");
    println!(
        "  curl -i -X PUT {base}/api/products/1 -H 'Content-Type: application/json' -d '{{\"price_cents\": 499}}'"
    );
    println!(
        "  curl -i {base}/api/auth/login -H 'Content-Type: application/json' \
         -d '{{\"email\": \"admin@pharmacy.test\", \"password\": \"pharmacy\"}}'"
    );
    println!();
    let ttl = caches::RESPONSE_TTL.as_secs();
    println!(
        "Caching (product list and detail, customer detail, dashboard; responses kept {ttl} s):"
    );
    println!(
        "  curl -si {base}/api/products/1 | grep -i x-cache   # MISS, then HIT when run again"
    );
    println!(
        "  (a PUT of the product invalidates its entries: the next GET is a MISS with the new data)"
    );
    println!();
    // The admin commands differ only by how they authenticate.
    let auth = match admin_mode {
        AdminMode::Token => {
            println!("perfscope admin (token from PERFSCOPE_ADMIN_TOKEN):");
            "-H \"Authorization: Bearer $PERFSCOPE_ADMIN_TOKEN\" "
        }
        AdminMode::LoopbackOnly => {
            println!(
                "perfscope admin (loopback-only development mode; set PERFSCOPE_ADMIN_TOKEN to require a token):"
            );
            ""
        }
    };
    match admin_mode {
        AdminMode::Token => println!(
            "  dashboard: open {base}/admin/perf?token=$PERFSCOPE_ADMIN_TOKEN in a browser"
        ),
        AdminMode::LoopbackOnly => println!("  dashboard: open {base}/admin/perf in a browser"),
    }
    println!("  curl {auth}{base}/admin/perf/stats");
    println!(
        "  curl {auth}{base}/admin/perf/queries      # N+1 and other findings, with their fixes"
    );
    println!("  curl {auth}{base}/admin/perf/metrics");
    println!("  curl {auth}{base}/admin/perf/cache        # hits, misses, hit ratio, per cache");
    println!(
        "  curl {auth}-X POST {base}/admin/perf/cache/invalidate -d '{{\"tag\": \"products\"}}'"
    );
    println!();
    println!("Press Ctrl-C to stop.");
}

/// Resolves on Ctrl-C (or SIGTERM on Unix) so the server can finish in-flight requests before exiting.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
