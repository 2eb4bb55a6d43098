//! Overhead of the monitor, each figure beside its baseline in the same run.
//!
//! - `layer/*`: one in-process request through an axum router (`oneshot`, small JSON handler, body read to the
//!   end): bare, with a hand-written floor layer (takes `Instant::now()` and inserts one header), with
//!   perfscope's `MonitorLayer` (release defaults: request ID only; and with both timing headers), the monitor
//!   with the query layer (no query run) in two `Router::layer` calls and in one (`perf.layers()`, as the
//!   README wires them), the same with the handler recording one query, and under the subscriber the README
//!   shows (a fmt layer at INFO with its own filter, plus the query capture layer), with tower-http's
//!   `TraceLayer` + `SetRequestIdLayer` (UUIDs), and with axum-prometheus.
//! - `record/*`: recording one latency sample: a bare `hdrhistogram::Histogram::record`, a
//!   `Mutex<Histogram>`, and perfscope's sharded histogram, at one and two threads.
//!
//! Run: `cargo bench --bench monitor`. Results and the machine: `docs/benchmarks.md`.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "support/threads.rs"]
mod threads;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use perfscope::monitor::bench_support::{Layout, ShardedHistogram};
use perfscope::{HeaderPolicy, Perfscope};
use threads::concurrent;
use tower::{Layer, Service, ServiceExt};
use tracing_subscriber::prelude::*;

fn app() -> Router {
    Router::new().route(
        "/api/products/{id}",
        get(|| async {
            axum::Json(
                serde_json::json!({"id": 1, "name": "Paracetamol 500mg", "price_cents": 399}),
            )
        }),
    )
}

/// The same handler, recording one query through the manual API: the request's log, its settling and the
/// detector run for it.
fn one_query_app(perf: &Perfscope) -> Router {
    let recorder = perf.query_recorder();
    Router::new().route(
        "/api/products/{id}",
        get(move || {
            recorder.record(
                "SELECT id, name, price_cents FROM products WHERE id = $1",
                Duration::from_micros(50),
                Some(1),
            );
            async {
                axum::Json(
                    serde_json::json!({"id": 1, "name": "Paracetamol 500mg", "price_cents": 399}),
                )
            }
        }),
    )
}

/// The floor: what any timing layer must do at least.
#[derive(Clone)]
struct FloorLayer;

#[derive(Clone)]
struct Floor<S>(S);

impl<S> Layer<S> for FloorLayer {
    type Service = Floor<S>;
    fn layer(&self, inner: S) -> Floor<S> {
        Floor(inner)
    }
}

impl<S, B> Service<Request<B>> for Floor<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, request: Request<B>) -> Self::Future {
        FloorFuture {
            inner: self.0.call(request),
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    struct FloorFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
    }
}

impl<F, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        let micros = this.start.elapsed().as_micros() as u64;
        response
            .headers_mut()
            .insert("x-response-time", HeaderValue::from(micros));
        Poll::Ready(Ok(response))
    }
}

#[inline(never)] // a symbol of its own: scripts/bench-instructions counts requests by its calls
fn request() -> Request<Body> {
    Request::get("/api/products/42")
        .body(Body::empty())
        .unwrap()
}

fn bench_layers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let perf = Perfscope::builder()
        .timing_headers(HeaderPolicy::Always)
        .build()
        .unwrap();
    // Release defaults: in an optimized build the timing headers are off, the request ID is on.
    let quiet = Perfscope::builder().build().unwrap();
    let queries = Perfscope::builder().build().unwrap();
    // axum-prometheus spawns its upkeep task at construction: it needs the runtime entered.
    let _entered = runtime.enter();
    let (prometheus_layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
    let apps: Vec<(&str, Router)> = vec![
        ("bare", app()),
        // What axum adds for any layer at all: the layered route and its future are boxed on each call.
        (
            "identity",
            app().layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r)),
        ),
        ("floor", app().layer(FloorLayer)),
        ("perfscope", app().layer(perf.layer())),
        ("perfscope_request_id_only", app().layer(quiet.layer())),
        (
            "perfscope_query_layer",
            app().layer(queries.query_layer()).layer(queries.layer()),
        ),
        ("perfscope_query_subscriber", app().layer(queries.layers())),
        (
            "perfscope_query_subscriber_in_task",
            app().layer(queries.layers()),
        ),
        // Both layers in one `Router::layer` call: axum boxes the pair once instead of each layer.
        (
            "perfscope_query_layer_stacked",
            app().layer(queries.layers()),
        ),
        (
            "perfscope_one_query",
            one_query_app(&queries).layer(queries.layers()),
        ),
        (
            "tower_http_trace_request_id",
            app()
                .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
                .layer(tower_http::trace::TraceLayer::new_for_http())
                .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                    tower_http::request_id::MakeRequestUuid,
                )),
        ),
        ("axum_prometheus", app().layer(prometheus_layer)),
    ];
    // Finalized as `axum::serve` does (an unfinalized router rebuilds each route's layers on every call).
    let apps: Vec<(&str, Router)> = apps
        .into_iter()
        .map(|(name, app)| (name, app.with_state(())))
        .collect();
    let mut group = c.benchmark_group("layer");
    group.throughput(Throughput::Elements(1));
    for (name, app) in apps {
        let run = |b: &mut criterion::Bencher<'_>| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = app.clone().oneshot(request()).await.unwrap();
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    black_box(body);
                })
            })
        };
        if name == "perfscope_query_subscriber" {
            // The README's subscriber: the application's log at INFO on its own layer, and the capture layer.
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::sink)
                        .with_filter(tracing_subscriber::EnvFilter::new("info")),
                )
                .with(queries.query_capture_layer());
            tracing::subscriber::with_default(subscriber, || group.bench_function(name, run));
        } else if name == "perfscope_query_subscriber_in_task" {
            // The same for a driver that queries on the request's task (PostgreSQL): no request span.
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::sink)
                        .with_filter(tracing_subscriber::EnvFilter::new("info")),
                )
                .with(queries.query_capture_layer_in_task());
            tracing::subscriber::with_default(subscriber, || group.bench_function(name, run));
        } else {
            group.bench_function(name, run);
        }
    }
    group.finish();
}

/// The latency sample thread `t` records at iteration `i`: spread over the common bins.
fn sample(t: u64, i: u64) -> u64 {
    black_box(100 + (i * 7 + t) % 5_000)
}

fn bench_record(c: &mut Criterion) {
    let layout = Layout::new(60_000_000, 2);
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    let mut bare = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
    let mut value = 0u64;
    group.bench_function("hdrhistogram_1_thread", |b| {
        b.iter(|| {
            value = (value + 7) % 5_000;
            bare.record(black_box(100 + value)).unwrap();
        })
    });
    let sharded = ShardedHistogram::new(layout);
    group.bench_function("perfscope_1_thread", |b| {
        b.iter(|| {
            value = (value + 7) % 5_000;
            sharded.record(black_box(100 + value));
        })
    });
    // Two threads recording into one route: total samples per unit of wall time.
    group.throughput(Throughput::Elements(2));
    let mutex = Arc::new(Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap(),
    ));
    group.bench_function("mutex_hdrhistogram_2_threads", |b| {
        b.iter_custom(|iters| {
            concurrent(2, iters, |t| {
                let mutex = mutex.clone();
                move |i| mutex.lock().unwrap().record(sample(t, i)).unwrap()
            })
        })
    });
    // The ceiling of this machine: two threads with nothing shared at all, each its own histogram.
    group.bench_function("hdrhistogram_per_thread_2_threads", |b| {
        b.iter_custom(|iters| {
            concurrent(2, iters, |t| {
                let mut own =
                    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).unwrap();
                move |i| {
                    own.record(sample(t, i)).unwrap();
                    black_box(&mut own);
                }
            })
        })
    });
    let shared = Arc::new(ShardedHistogram::new(layout));
    group.bench_function("perfscope_2_threads", |b| {
        b.iter_custom(|iters| {
            concurrent(2, iters, |t| {
                let shared = shared.clone();
                move |i| shared.record(sample(t, i))
            })
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("perfscope_1_thread_spawned", |b| {
        b.iter_custom(|iters| {
            concurrent(1, iters, |t| {
                let shared = shared.clone();
                move |i| shared.record(sample(t, i))
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_layers, bench_record
}
criterion_main!(benches);
