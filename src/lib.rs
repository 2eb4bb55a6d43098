//! perfscope shows where a web back end's time goes: per-route latency percentiles, status and outcome counts,
//! in-flight, slow and hung requests, request IDs and timing headers; a cache with tags and single-flight loads;
//! and a query analyzer that finds N+1 queries and says what to write instead; all as tower layers for axum.
//!
//! Everything hangs off one [`Perfscope`] handle: no global state, so two handles (two test cases, two servers
//! in one process) never see each other's data.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let perf = perfscope::Perfscope::builder()
//!     .timing_headers(perfscope::HeaderPolicy::Always)
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/api/products/{id}", get(|| async { "{}" }))
//!     .layer(perf.layer())
//!     .nest("/admin/perf", perf.admin_router(perfscope::AdminAuth::token("a-long-secret-token")?));
//!
//! let request = http::Request::get("/api/products/7").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert!(response.headers().contains_key("x-request-id"));
//! assert!(response.headers().contains_key("x-response-time"));
//! let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?; // the request ends with its body
//! # drop(body);
//!
//! let snapshot = perf.snapshot();
//! let route = &snapshot.routes[0];
//! assert_eq!((route.method.as_str(), route.route.as_str(), route.count), ("GET", "/api/products/{id}", 1));
//! println!("p95 {} ms", route.p95_ms);
//! # Ok(()) }
//! ```
//!
//! # Reading the request context
//! Each request gets a [`RequestContext`]: its ID, route, phases and counters. A handler takes it as an
//! extractor (`context: RequestContext`, or `Option<RequestContext>`); code the handler calls reaches it with
//! [`RequestContext::current`], and times work with [`phase`], which shows in `Server-Timing`.
//!
//! # Ordering with other layers
//! ```
//! use axum::{Router, routing::get};
//! use std::time::Duration;
//!
//! let perf = perfscope::Perfscope::builder().build().expect("valid configuration");
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     // inner layers first: panics become 500s that the monitor then sees and counts as `panic`
//!     .layer(tower_http::catch_panic::CatchPanicLayer::new())
//!     // perfscope last, so it is outermost and sets X-Request-Id on every response
//!     .layer(perf.layer())
//!     // admin routes after the layer: not measured
//!     .nest("/admin/perf", perf.admin_router(perfscope::AdminAuth::loopback_only()));
//! # drop(app);
//! ```
//!
//! # Features
//! | feature | default | what it adds |
//! |---|---|---|
//! | `monitor` | yes | the request-lifecycle monitor ([`MonitorLayer`]) |
//! | `cache` | yes | the application cache ([`cache::Cache`]) and the response-cache layer ([`cache::http::ResponseCacheLayer`]) |
//! | `query` | yes | the query analyzer ([`query`]): capture of sqlx's query events ([`query::QueryCaptureLayer`]), fingerprints, N+1 and other findings, [`query::QueryLayer`] |
//! | `axum` | yes | route templates from axum's `MatchedPath`, and [`Perfscope::admin_router`] |
//! | `json` | yes | JSON export ([`export::json`]), the admin `/stats` endpoint and the HTML dashboard |
//! | `redis` | no | Redis for the fleet: with `monitor`, fleet-wide latency percentiles ([`fleet`]) |
//! | `alloc` | no | a counting global allocator ([`alloc::CountingAllocator`]): bytes allocated per request and route |
//! | `full` | no | everything but the services (`redis`) |

// Denied, not forbidden: `alloc::CountingAllocator` implements `GlobalAlloc`, which needs `unsafe`; that impl is
// the crate's only exception.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

#[cfg(feature = "axum")]
mod admin;
#[cfg(feature = "alloc")]
pub mod alloc;
#[cfg(any(feature = "monitor", feature = "query"))]
mod announce;
mod builder;
#[cfg(feature = "cache")]
pub mod cache;
pub mod connections;
mod context;
#[cfg(feature = "axum")]
mod context_extract;
mod context_layer;
#[cfg(all(feature = "axum", feature = "json"))]
mod dashboard;
mod error;
pub mod export;
#[cfg(all(feature = "redis", feature = "monitor"))]
pub mod fleet;
#[cfg(any(feature = "cache", feature = "query"))]
mod glob;
mod header_policy;
#[cfg(feature = "monitor")]
pub mod monitor;
mod panic_hook;
mod process;
#[cfg(feature = "query")]
pub mod query;
mod request_id;
pub mod route;
mod snapshot;
#[cfg(any(feature = "monitor", feature = "cache"))]
mod thread_slot;
#[cfg(any(feature = "monitor", feature = "query"))]
mod timing_header;

#[cfg(feature = "axum")]
pub use admin::AdminAuth;
pub use builder::PerfscopeBuilder;
pub use context::{ContextCounters, MAX_PHASES, PhaseGuard, RequestContext, phase};
#[cfg(feature = "axum")]
pub use context_extract::MissingRequestContext;
pub use context_layer::{ContextLayer, REQUEST_SPAN_TARGET};
pub use error::BuildError;
pub use header_policy::HeaderPolicy;
#[cfg(feature = "monitor")]
pub use monitor::{MonitorLayer, Outcome};
pub use request_id::{MAX_REQUEST_ID_LEN, RequestId, is_valid_request_id};
pub use route::MethodLabel;
pub use snapshot::{
    AllocatedBytes, Bucket, ClosedConnections, ConnectionsSnapshot, HeadPendingAges, HeadReadTimes,
    HungRequest, LatencyWindows, ListenerConnections, OverflowStats, Percentiles, PhaseTiming,
    ProcessStats, RouteStats, SettingsSnapshot, SlowRequest, Snapshot,
};

/// The README's and the guide's code, compiled by `cargo test --all-features --doc` (the guide's fleet part needs
/// `redis`, its memory part `alloc`).
#[cfg(all(
    doctest,
    feature = "monitor",
    feature = "cache",
    feature = "query",
    feature = "axum",
    feature = "json",
    feature = "redis",
    feature = "alloc"
))]
#[doc = include_str!("../README.md")]
#[doc = include_str!("../docs/guide.md")]
pub struct ReadmeAndGuideDoctests;

/// The handle of one perfscope instance: cheap to clone, everything it measures lives inside it.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub struct Perfscope {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    #[cfg(feature = "monitor")]
    monitor: Arc<monitor::state::MonitorState>,
    #[cfg(feature = "cache")]
    caches: parking_lot::RwLock<Vec<cache::CacheHandle>>,
    #[cfg(feature = "query")]
    query: Arc<query::analyzer::Analyzer>,
    #[cfg(feature = "query")]
    header_policy: HeaderPolicy,
    connections: connections::state::Connections,
    /// The newest fleet publisher's state; weak, so dropping the publisher ends fleet reads too.
    #[cfg(all(feature = "redis", feature = "monitor"))]
    fleet: parking_lot::Mutex<std::sync::Weak<fleet::FleetShared>>,
    /// Whether the settings line was logged (at the first layer made).
    #[cfg(any(feature = "monitor", feature = "query"))]
    announced: announce::Announcement,
}

/// Most caches one handle reports on; registering more replaces nothing and is refused.
#[cfg(feature = "cache")]
pub const MAX_REGISTERED_CACHES: usize = 64;

impl Perfscope {
    /// A builder with the default settings.
    pub fn builder() -> PerfscopeBuilder {
        PerfscopeBuilder::default()
    }

    pub(crate) fn from_parts(
        connections: connections::state::ConnectionsConfig,
        #[cfg(feature = "monitor")] monitor: monitor::config::MonitorConfig,
        #[cfg(feature = "query")] query: query::QueryConfig,
        #[cfg(feature = "query")] header_policy: HeaderPolicy,
    ) -> Self {
        #[cfg(feature = "monitor")]
        if monitor.detect_panics {
            panic_hook::install();
        }
        Perfscope {
            inner: Arc::new(Shared {
                #[cfg(feature = "monitor")]
                monitor: Arc::new(monitor::state::MonitorState::new(monitor)),
                #[cfg(feature = "cache")]
                caches: parking_lot::RwLock::new(Vec::new()),
                #[cfg(feature = "query")]
                query: Arc::new(query::analyzer::Analyzer::new(query)),
                #[cfg(feature = "query")]
                header_policy,
                connections: connections::state::Connections::new(connections),
                #[cfg(all(feature = "redis", feature = "monitor"))]
                fleet: parking_lot::Mutex::new(std::sync::Weak::new()),
                #[cfg(any(feature = "monitor", feature = "query"))]
                announced: announce::Announcement::default(),
            }),
        }
    }

    /// The tower layer that measures requests; add it with `Router::layer` after the routes.
    #[cfg(feature = "monitor")]
    pub fn layer(&self) -> MonitorLayer {
        self.inner.announced.once(|| announce::settings_line(self));
        MonitorLayer::new(self.inner.monitor.clone())
    }

    /// Wraps `listener` so that perfscope counts its connections (see [`connections`]): open, still sending
    /// their request head, and how they end. Use it in place of the listener: `axum::serve(perf.listener(tcp),
    /// app)`. The connections are counted under the listener's local address.
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router) -> std::io::Result<()> {
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(perf.listener(tcp), app.layer(perf.layer())).await
    /// # }
    /// ```
    #[cfg(feature = "axum")]
    pub fn listener<L>(&self, listener: L) -> connections::Tracked<L>
    where
        L: axum::serve::Listener,
        L::Addr: std::fmt::Debug,
    {
        connections::Tracked::new(listener, self)
    }

    /// The tracker of the connections of listener `name`, for an accept loop of one's own: wrap each accepted
    /// stream with [`ConnectionTracker::track`](connections::ConnectionTracker::track) before serving it. Calls
    /// with the same name count together; at most [`connections::MAX_LISTENERS`] names.
    ///
    /// ```
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let connections = perf.connections("public");
    /// assert_eq!(connections.name(), "public");
    /// ```
    pub fn connections(&self, name: &str) -> connections::ConnectionTracker {
        connections::ConnectionTracker::new(self.inner.connections.listener(name))
    }

    /// The build and the monitor's settings in force (the `settings` of a snapshot).
    pub(crate) fn snapshot_settings(&self) -> SettingsSnapshot {
        #[cfg(feature = "monitor")]
        {
            let config = &self.inner.monitor.config;
            SettingsSnapshot {
                build: SettingsSnapshot::BUILD,
                timing_headers: config.header_policy.resolved(),
                slow_threshold_ms: config.slow_threshold.as_secs_f64() * 1000.0,
                hung_threshold_ms: config.hung_threshold.as_secs_f64() * 1000.0,
                allocation_warning_bytes: self
                    .inner
                    .monitor
                    .attributes_allocations()
                    .then_some(config.allocation_warning_bytes),
            }
        }
        #[cfg(not(feature = "monitor"))]
        {
            SettingsSnapshot {
                build: SettingsSnapshot::BUILD,
                timing_headers: "off",
                slow_threshold_ms: 0.0,
                hung_threshold_ms: 0.0,
                allocation_warning_bytes: None,
            }
        }
    }

    /// Everything measured so far. Percentiles are computed here, not on the request path.
    pub fn snapshot(&self) -> Snapshot {
        #[cfg(feature = "monitor")]
        {
            let view = self.inner.monitor.view(tokio::time::Instant::now());
            Snapshot {
                taken_at_unix_ms: view.now_unix_ms,
                settings: self.snapshot_settings(),
                uptime_secs: view.uptime.as_secs_f64(),
                in_flight: view.in_flight,
                peak_in_flight: view.peak_in_flight,
                requests_total: view.requests_total,
                routes: view.routes,
                slow_requests: view.slow_requests,
                slow_requests_total: view.slow_requests_total,
                hung_requests: view.hung_requests,
                overflow: view.overflow,
                process: ProcessStats::read(),
                connections: self.inner.connections.snapshot(),
                #[cfg(feature = "cache")]
                caches: self.cache_stats(),
                #[cfg(feature = "query")]
                queries: self.inner.query.snapshot(),
            }
        }
        #[cfg(not(feature = "monitor"))]
        {
            Snapshot {
                taken_at_unix_ms: 0,
                settings: self.snapshot_settings(),
                uptime_secs: 0.0,
                in_flight: 0,
                peak_in_flight: 0,
                requests_total: 0,
                routes: Vec::new(),
                slow_requests: Vec::new(),
                slow_requests_total: 0,
                hung_requests: Vec::new(),
                overflow: OverflowStats::default(),
                process: ProcessStats::read(),
                connections: self.inner.connections.snapshot(),
                #[cfg(feature = "cache")]
                caches: self.cache_stats(),
                #[cfg(feature = "query")]
                queries: self.inner.query.snapshot(),
            }
        }
    }

    /// Reports `cache` in snapshots, exports and the admin endpoints (`/cache`, `/cache/invalidate`). A cache
    /// registered under a name already taken replaces the earlier one. Returns `false` when
    /// [`MAX_REGISTERED_CACHES`] other caches are registered already.
    ///
    /// ```
    /// use perfscope::cache::{Cache, CacheKey};
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let products: Cache<CacheKey, String> = Cache::builder().name("products").build().unwrap();
    /// assert!(perf.register_cache(products.handle()));
    /// assert_eq!(perf.snapshot().caches[0].name, "products");
    /// ```
    #[cfg(feature = "cache")]
    pub fn register_cache(&self, cache: cache::CacheHandle) -> bool {
        let mut caches = self.inner.caches.write();
        if let Some(existing) = caches.iter_mut().find(|c| c.name() == cache.name()) {
            *existing = cache;
            return true;
        }
        if caches.len() >= MAX_REGISTERED_CACHES {
            return false;
        }
        caches.push(cache);
        true
    }

    /// The registered caches.
    #[cfg(feature = "cache")]
    pub fn caches(&self) -> Vec<cache::CacheHandle> {
        self.inner.caches.read().clone()
    }

    #[cfg(feature = "cache")]
    fn cache_stats(&self) -> Vec<cache::CacheStatsSnapshot> {
        self.caches()
            .iter()
            .map(cache::CacheHandle::stats)
            .collect()
    }

    /// The layer that ties queries to requests and adds `X-Query-Count`; add it with `Router::layer` before
    /// [`Perfscope::layer`] so that it runs inside the monitor.
    #[cfg(feature = "query")]
    pub fn query_layer(&self) -> query::QueryLayer {
        self.inner.announced.once(|| announce::settings_line(self));
        query::QueryLayer::new(self.inner.query.clone(), self.inner.header_policy.clone())
    }

    /// The monitor and the query layer as one layer, the monitor outside: add it with one `Router::layer`
    /// call after the routes. The same as `.layer(perf.query_layer()).layer(perf.layer())`, cheaper: axum
    /// boxes the service (and, on each request, its future) of every `Router::layer` call, so two calls cost
    /// three allocations and about 960 instructions per request that one call does not (see
    /// `docs/benchmarks.md`).
    ///
    /// ```
    /// use axum::{Router, routing::get};
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let app: Router = Router::new()
    ///     .route("/api/quotations", get(|| async { "[]" }))
    ///     .layer(perf.layers());
    /// # drop(app);
    /// ```
    #[cfg(all(feature = "monitor", feature = "query"))]
    pub fn layers(&self) -> (MonitorLayer, query::QueryLayer) {
        (self.layer(), self.query_layer())
    }

    /// The `tracing` layer that captures sqlx's query events, with the per-layer filter it needs; add it to
    /// the global subscriber (see [`query::QueryCaptureLayer`]).
    #[cfg(feature = "query")]
    pub fn query_capture_layer<S>(
        &self,
    ) -> tracing_subscriber::filter::Filtered<query::QueryCaptureLayer, query::CaptureFilter, S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        query::QueryCaptureLayer::new(self.query_recorder()).filtered()
    }

    /// [`query_capture_layer`](Self::query_capture_layer) for drivers that run each query on the request's own
    /// task (sqlx's PostgreSQL and MySQL): it leaves out the request span, which only SQLite's worker threads
    /// need, and with it the registry's work per request. Spawned work is then attributed only inside
    /// [`RequestContext::scope`]; see [`query::QueryCaptureLayer`].
    ///
    /// ```
    /// use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// tracing_subscriber::registry()
    ///     .with(fmt::layer().with_filter(EnvFilter::new("info")))
    ///     // the pool is PostgreSQL's
    ///     .with(perf.query_capture_layer_in_task())
    ///     .try_init()
    ///     .ok();
    /// ```
    #[cfg(feature = "query")]
    pub fn query_capture_layer_in_task<S>(
        &self,
    ) -> tracing_subscriber::filter::Filtered<query::QueryCaptureLayer, query::CaptureFilter, S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        query::QueryCaptureLayer::new(self.query_recorder())
            .without_request_span()
            .filtered()
    }

    /// The manual query API, for drivers that do not emit sqlx's events.
    #[cfg(feature = "query")]
    pub fn query_recorder(&self) -> query::QueryRecorder {
        query::QueryRecorder::new(self.inner.query.clone())
    }

    /// The queries of the request with ID `request_id`, once it is settled (see
    /// [`request_queries_now`](Self::request_queries_now) for when that is); waits up to a second for that,
    /// polling every 5 ms on the tokio runtime. `None` if it was not seen or is no longer among the most recent
    /// requests ([`query::QueryConfig::recent_requests`]).
    #[cfg(feature = "query")]
    pub async fn request_queries(&self, request_id: &str) -> Option<query::RequestReport> {
        for _ in 0..200 {
            if let Some(report) = self.inner.query.request(request_id) {
                return Some((*report).clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        None
    }

    /// The report of the request with ID `request_id` if it is settled now, without waiting and without a
    /// runtime; `None` if it is not settled yet, was never seen, or is no longer among the most recent requests
    /// ([`query::QueryConfig::recent_requests`]).
    ///
    /// A request settles, synchronously on the thread that lets go last, when the last clone of its
    /// [`RequestContext`] is dropped: the response body has ended (or was dropped), and every other holder has
    /// let go: the request span (so every span clone, including the one sqlx's SQLite worker holds until it has
    /// reported the query it runs), tasks spawned with [`RequestContext::scope`] or `.in_current_span()`, and
    /// contexts a caller kept (such as one passed to [`query::QueryRecordBuilder::record_in`]). Once the body
    /// is read to its end on PostgreSQL, or a context made by hand is dropped, the report is there; on SQLite
    /// after an error or an early-dropped stream, the worker may report a moment later (use
    /// [`request_queries`](Self::request_queries), which waits).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let context = perfscope::RequestContext::new(
    ///     perfscope::RequestId::generate(0),
    ///     perfscope::MethodLabel::of(&http::Method::GET),
    ///     tokio::time::Instant::now(),
    ///     0,
    /// );
    /// let id = context.request_id().as_str().to_owned();
    /// perf.query_recorder()
    ///     .query("SELECT name FROM users WHERE id = $1")
    ///     .duration(Duration::from_micros(300))
    ///     .rows_returned(1)
    ///     .record_in(&context);
    /// assert!(perf.request_queries_now(&id).is_none(), "not settled while the context lives");
    /// drop(context);
    /// assert_eq!(perf.request_queries_now(&id).expect("settled").count, 1);
    /// ```
    #[cfg(feature = "query")]
    pub fn request_queries_now(&self, request_id: &str) -> Option<query::RequestReport> {
        self.inner
            .query
            .request(request_id)
            .map(|report| (*report).clone())
    }

    /// The most recently settled request on `method` `route` (a route template such as
    /// `/api/quotations`).
    #[cfg(feature = "query")]
    pub fn last_request_queries(&self, method: &str, route: &str) -> Option<query::RequestReport> {
        self.inner
            .query
            .last_request(method, route)
            .map(|report| (*report).clone())
    }

    /// The normalized statements seen on `method` `route`, sorted: a listing to snapshot in a test and diff
    /// when a change adds queries.
    #[cfg(feature = "query")]
    pub fn route_statements(&self, method: &str, route: &str) -> Vec<String> {
        self.inner.query.route_statements(method, route)
    }

    /// The snapshot in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        export::prometheus(&self.snapshot())
    }

    /// The snapshot as JSON.
    #[cfg(feature = "json")]
    pub fn json(&self) -> String {
        export::json(&self.snapshot())
    }
}
