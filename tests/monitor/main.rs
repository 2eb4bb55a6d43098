//! The request-lifecycle monitor, driven through real axum routers.
#![allow(clippy::unwrap_used)]

mod alloc;
#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Request, StatusCode};
use perfscope::{HeaderPolicy, Perfscope};
use support::{Rng, app_with_routes, get_request, send};
use tower::ServiceExt;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn perf() -> Perfscope {
    builder().build().unwrap()
}

/// Every handle is built through here: the quiet hook must be installed before perfscope's hook (which chains
/// to it), so the 1,000 deliberate panics below do not flood the output while real failures still print.
fn builder() -> perfscope::PerfscopeBuilder {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("handler exploded"));
            if !deliberate {
                default(info);
            }
        }));
    });
    Perfscope::builder()
}

fn random_path(rng: &mut Rng) -> String {
    const PIECES: [&str; 8] = [
        "wp-admin",
        "%2e%2e",
        "caf%C3%A9",
        "ü",
        "..;",
        "%00x",
        "a.php",
        "日本",
    ];
    let segments = 1 + rng.below(8);
    let mut path = String::new();
    for _ in 0..segments {
        path.push('/');
        path.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
        path.push_str(&rng.next_u64().to_string());
    }
    path
}

#[tokio::test(flavor = "current_thread")]
async fn a_404_flood_of_unique_paths_keeps_labels_and_memory_bounded() {
    let perf = perf();
    let app = app_with_routes(20).layer(perf.layer());
    let mut rng = Rng(7);
    for i in 0..20 {
        send(&app, get_request(&format!("/r{i}/1"))).await;
    }
    let mut baseline = 0;
    for n in 0..100_000 {
        if n == 1_000 {
            baseline = alloc::live_bytes();
        }
        let uri = random_path(&mut rng);
        let Ok(request) = Request::get(uri.as_str()).body(Body::empty()) else {
            continue;
        };
        let (status, _, _) = send(&app, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let growth = alloc::live_bytes() - baseline;
    let snapshot = perf.snapshot();
    let labels: BTreeSet<_> = snapshot
        .routes
        .iter()
        .map(|route| route.route.clone())
        .collect();
    assert!(labels.len() <= 21, "{} labels: {labels:?}", labels.len());
    assert!(labels.contains("<unmatched>"));
    assert!(
        growth < 1 << 20,
        "heap grew by {growth} bytes between request 1,000 and 100,000"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn extension_methods_are_labelled_other() {
    let perf = perf();
    let app = Router::new()
        .route("/x", axum::routing::any(|| async { "ok" }))
        .layer(perf.layer());
    let mut rng = Rng(11);
    for _ in 0..10_000 {
        let len = 3 + rng.below(10) as usize;
        let name: String = (0..len)
            .map(|_| (b'A' + rng.below(26) as u8) as char)
            .collect();
        let request = Request::builder()
            .method(Method::from_bytes(name.as_bytes()).unwrap())
            .uri("/x");
        send(&app, request.body(Body::empty()).unwrap()).await;
    }
    let allowed = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
    ];
    let snapshot = perf.snapshot();
    let total: u64 = snapshot.routes.iter().map(|route| route.count).sum();
    assert_eq!(total, 10_000);
    for route in &snapshot.routes {
        assert!(
            allowed.contains(&route.method.as_str()),
            "method label {}",
            route.method
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn counts_are_conserved_when_max_routes_is_reached() {
    let perf = builder().max_routes(5).build().unwrap();
    let app = app_with_routes(12).layer(perf.layer());
    let mut sent = 0;
    for round in 0..10 {
        for i in 0..12 {
            send(&app, get_request(&format!("/r{i}/{round}"))).await;
            sent += 1;
        }
    }
    let snapshot = perf.snapshot();
    let total: u64 = snapshot.routes.iter().map(|route| route.count).sum();
    assert_eq!(total, sent);
    let overflow = snapshot
        .routes
        .iter()
        .find(|route| route.route == "<overflow>")
        .unwrap();
    assert_eq!(overflow.count, 7 * 10);
    assert_eq!(snapshot.overflow.route_overflow_requests, 70);
    assert_eq!(snapshot.routes.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_caught_inside_are_counted_and_leave_no_request_in_flight() {
    let perf = perf();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler exploded with secret 1234");
                }
                "unreachable"
            }),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(perf.layer());
    let mut tasks = Vec::new();
    for i in 0..11_000 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let uri = if i % 11 == 0 { "/boom" } else { "/ok" };
            let (status, _, body) = send(&app, get_request(uri)).await;
            (uri, status, body)
        }));
    }
    for task in tasks {
        let (uri, status, body) = task.await.unwrap();
        if uri == "/ok" {
            assert_eq!(status, StatusCode::OK);
        } else {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!String::from_utf8_lossy(&body).contains("1234"));
        }
    }
    let snapshot = perf.snapshot();
    assert_eq!(snapshot.in_flight, 0);
    let boom = snapshot
        .routes
        .iter()
        .find(|route| route.route == "/boom")
        .unwrap();
    assert_eq!(boom.outcomes.panic, 1_000);
    assert_eq!(boom.in_flight, 0);
    let ok = snapshot
        .routes
        .iter()
        .find(|route| route.route == "/ok")
        .unwrap();
    assert_eq!((ok.count, ok.outcomes.ok), (10_000, 10_000));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn requests_dropped_mid_handler_count_as_cancelled() {
    let perf = perf();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async { tokio::time::sleep(Duration::from_secs(60)).await }),
        )
        .layer(perf.layer());
    for _ in 0..10_000 {
        let future = app.clone().oneshot(get_request("/slow"));
        // Poll once (the handler starts and waits), then drop: what a client disconnect does.
        let result = tokio::time::timeout(Duration::from_millis(1), future).await;
        assert!(result.is_err());
    }
    let snapshot = perf.snapshot();
    assert_eq!(snapshot.in_flight, 0);
    let slow = &snapshot.routes[0];
    assert_eq!(
        (slow.outcomes.cancelled, slow.in_flight, slow.count),
        (10_000, 0, 10_000)
    );
    assert_eq!(slow.latency.lifetime.count, 10_000);
}

#[tokio::test(flavor = "current_thread")]
async fn a_streamed_body_dropped_early_counts_as_aborted() {
    let perf = perf();
    let app = Router::new()
        .route(
            "/export",
            get(|| async {
                let chunks =
                    futures_util::stream::repeat(Ok::<_, std::convert::Infallible>("row\n"));
                Body::from_stream(chunks)
            }),
        )
        .layer(perf.layer());
    let response = app.clone().oneshot(get_request("/export")).await.unwrap();
    let mut body = response.into_body();
    let first = http_body_util::BodyExt::frame(&mut body)
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_data());
    drop(body);
    let snapshot = perf.snapshot();
    let export = &snapshot.routes[0];
    assert_eq!((export.outcomes.aborted, export.in_flight), (1, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn event_streams_go_to_the_stream_series() {
    let perf = perf();
    let app = Router::new()
        .route(
            "/events",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "text/event-stream")],
                    "data: 1\n\n",
                )
            }),
        )
        .layer(perf.layer());
    send(&app, get_request("/events")).await;
    let snapshot = perf.snapshot();
    let events = &snapshot.routes[0];
    assert_eq!(
        (
            events.count,
            events.streams.count,
            events.latency.lifetime.count
        ),
        (1, 1, 0)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, ..Default::default() })]
    #[test]
    fn any_inbound_request_id_gives_a_valid_echo(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let perf = perf();
        let app = app_with_routes(1).layer(perf.layer());
        let mut request = get_request("/r0/1");
        let Ok(value) = http::HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        request.headers_mut().insert("x-request-id", value);
        let (_, headers, _) = runtime.block_on(send(&app, request));
        let echoed = headers.get("x-request-id").unwrap().as_bytes().to_vec();
        proptest::prop_assert!(perfscope::is_valid_request_id(&echoed), "{:?}", echoed);
        if perfscope::is_valid_request_id(&bytes) {
            proptest::prop_assert_eq!(echoed, bytes);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn of_two_request_id_headers_the_first_valid_one_is_used() {
    let perf = perf();
    let app = app_with_routes(1).layer(perf.layer());
    let mut request = get_request("/r0/1");
    request
        .headers_mut()
        .append("x-request-id", "not valid!".parse().unwrap());
    request
        .headers_mut()
        .append("x-request-id", "first-valid".parse().unwrap());
    request
        .headers_mut()
        .append("x-request-id", "second-valid".parse().unwrap());
    let (_, headers, _) = send(&app, request).await;
    assert_eq!(
        headers.get_all("x-request-id").iter().collect::<Vec<_>>(),
        ["first-valid"]
    );

    let untrusting = builder().trust_request_id(false).build().unwrap();
    let app = app_with_routes(1).layer(untrusting.layer());
    let mut request = get_request("/r0/1");
    request
        .headers_mut()
        .insert("x-request-id", "client-chosen".parse().unwrap());
    let (_, headers, _) = send(&app, request).await;
    let id = headers.get("x-request-id").unwrap();
    assert_ne!(id, "client-chosen");
    assert_eq!(id.len(), 26);
}

async fn allocations_per_request(app: Router, uri: &str) -> u64 {
    // Finalize the router as `axum::serve` does; an unfinalized `Router<()>` rebuilds each route's layers on
    // every call.
    let app = app.with_state(());
    // Warm up: route registration, thread slot, shards and live-table places.
    for _ in 0..100 {
        send(&app, get_request(uri)).await;
    }
    let before = alloc::allocations();
    for _ in 0..1_000 {
        send(&app, get_request(uri)).await;
    }
    (alloc::allocations() - before) / 1_000
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_allocates_its_context_its_header_values_and_its_body_wrapper_only() {
    let bare = allocations_per_request(app_with_routes(20), "/r3/1").await;
    // What axum itself adds for any layer (it boxes the layered route and its future on each call).
    let identity = allocations_per_request(
        app_with_routes(20).layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r)),
        "/r3/1",
    )
    .await;
    assert_eq!(
        identity - bare,
        2,
        "bare router {bare}, identity layer {identity}"
    );
    // Beyond that, with all three headers on, the monitor allocates four blocks: the RequestContext (the
    // request ID inline), one buffer that the X-Request-Id, X-Response-Time and Server-Timing values share,
    // the box axum puts the wrapped response body in, and the box axum puts the wrapped request body in (the
    // wrapper that tells a client that left mid-body from a bad request). Bookkeeping (route lookup, histograms, counters, the
    // in-flight table) allocates nothing, and the context is not put in the request's extensions.
    let perf = builder()
        .timing_headers(HeaderPolicy::Always)
        .build()
        .unwrap();
    let monitored = allocations_per_request(app_with_routes(20).layer(perf.layer()), "/r3/1").await;
    assert_eq!(
        monitored - identity,
        4,
        "identity layer {identity}, monitor {monitored} allocations per request"
    );
    // Without the timing headers (the release default), the request ID's value takes that buffer's place.
    let quiet = builder()
        .timing_headers(HeaderPolicy::Never)
        .build()
        .unwrap();
    let id_only = allocations_per_request(app_with_routes(20).layer(quiet.layer()), "/r3/1").await;
    assert_eq!(id_only, monitored);
    // With the query layer (release defaults, so no `X-Query-Count` value to allocate), one `Router::layer`
    // call for both allocates three blocks fewer per request than a call each (what axum's second layered
    // route costs); the query layer itself allocates nothing for a request that runs no query.
    let separate = allocations_per_request(
        app_with_routes(20)
            .layer(quiet.query_layer())
            .layer(quiet.layer()),
        "/r3/1",
    )
    .await;
    let paired = allocations_per_request(app_with_routes(20).layer(quiet.layers()), "/r3/1").await;
    assert_eq!((separate - id_only, paired), (3, id_only));
    // Nothing grows with the history: after 10,000 more requests on 20 routes, the same count.
    let app = app_with_routes(20).layer(perf.layer());
    for i in 0..10_000 {
        send(&app, get_request(&format!("/r{}/{i}", i % 20))).await;
    }
    assert_eq!(allocations_per_request(app, "/r7/1").await, monitored);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_and_hung_requests_are_reported() {
    let perf = builder()
        .slow_threshold(Duration::from_millis(100))
        .hung_threshold(Duration::from_secs(10))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/report/{id}",
            get(|| async {
                let _phase = perfscope::phase("render");
                tokio::time::sleep(Duration::from_millis(250)).await;
                "done"
            }),
        )
        .route(
            "/stuck",
            get(|| async { tokio::time::sleep(Duration::from_secs(3_600)).await }),
        )
        .route("/fast", get(|| async { "fast" }))
        .layer(perf.layer());
    send(&app, get_request("/report/1")).await;
    send(&app, get_request("/fast")).await;
    let stuck = tokio::spawn({
        let app = app.clone();
        async move { send(&app, get_request("/stuck")).await }
    });
    tokio::time::sleep(Duration::from_secs(11)).await;
    let snapshot = perf.snapshot();
    assert_eq!(snapshot.slow_requests.len(), 1);
    let slow = &snapshot.slow_requests[0];
    assert_eq!(
        (slow.route.as_str(), slow.status),
        ("/report/{id}", Some(200))
    );
    assert!(
        (slow.duration_ms - 250.0).abs() < 5.0,
        "{}",
        slow.duration_ms
    );
    assert_eq!(slow.phases[0].name, "render");
    assert_eq!(snapshot.hung_requests.len(), 1);
    assert_eq!(snapshot.hung_requests[0].route, "/stuck");
    assert!(snapshot.hung_requests[0].age_ms >= 11_000.0);
    assert_eq!(snapshot.in_flight, 1);
    stuck.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn latency_percentiles_follow_the_clock() {
    let perf = perf();
    let app = Router::new()
        .route(
            "/wait/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                },
            ),
        )
        .layer(perf.layer());
    for ms in 1..=100 {
        send(&app, get_request(&format!("/wait/{ms}"))).await;
    }
    let route = perf.snapshot().routes.remove(0);
    assert_eq!(route.count, 100);
    assert!((route.p50_ms - 50.0).abs() <= 1.0, "p50 {}", route.p50_ms);
    assert!((route.p99_ms - 99.0).abs() <= 1.5, "p99 {}", route.p99_ms);
    assert!((route.max_ms - 100.0).abs() <= 1.0, "max {}", route.max_ms);
    assert_eq!(route.latency.window_1m.count, 100);
    // Two minutes later the one-minute window is empty, the five-minute one is not.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let route = perf.snapshot().routes.remove(0);
    assert_eq!(
        (route.latency.window_1m.count, route.latency.window_5m.count),
        (0, 100)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn timing_headers_follow_the_policy() {
    for (policy, expected) in [
        (HeaderPolicy::Always, true),
        (HeaderPolicy::Never, false),
        (
            HeaderPolicy::when(|head| head.headers.contains_key("x-debug")),
            false,
        ),
    ] {
        let perf = builder().timing_headers(policy).build().unwrap();
        let app = Router::new()
            .route(
                "/p",
                get(|| async {
                    let _phase = perfscope::phase("pricing");
                    "priced"
                }),
            )
            .layer(perf.layer());
        let (_, headers, _) = send(&app, get_request("/p")).await;
        assert_eq!(headers.contains_key("x-response-time"), expected);
        assert_eq!(headers.contains_key("server-timing"), expected);
        assert!(headers.contains_key("x-request-id"));
        if expected {
            let value = headers.get("x-response-time").unwrap().to_str().unwrap();
            let number = value.strip_suffix("ms").unwrap();
            assert_eq!(number.split('.').nth(1).unwrap().len(), 3, "{value}");
            let timing = headers.get("server-timing").unwrap().to_str().unwrap();
            assert!(timing.starts_with("total;dur="), "{timing}");
            assert!(
                timing.contains(", app;dur=") && timing.contains(", pricing;dur="),
                "{timing}"
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn handles_never_share_data_and_exclusions_apply() {
    let a = builder()
        .count_only(["/health"])
        .exclude(["/r1/{id}"])
        .build()
        .unwrap();
    let b = perf();
    let app_a = app_with_routes(2)
        .route("/health", get(|| async { "ok" }))
        .layer(a.layer());
    let app_b = app_with_routes(2).layer(b.layer());
    send(&app_a, get_request("/r0/1")).await;
    send(&app_a, get_request("/r1/1")).await;
    send(&app_a, get_request("/health")).await;
    send(&app_b, get_request("/r0/1")).await;
    send(&app_b, get_request("/r0/2")).await;
    let (a, b) = (a.snapshot(), b.snapshot());
    let routes_a: Vec<_> = a
        .routes
        .iter()
        .map(|route| (route.route.as_str(), route.count))
        .collect();
    assert_eq!(routes_a, [("/health", 1), ("/r0/{id}", 1)]);
    let health = a
        .routes
        .iter()
        .find(|route| route.route == "/health")
        .unwrap();
    assert_eq!(
        health.latency.lifetime.count, 0,
        "count-only routes have no histogram"
    );
    assert_eq!(a.requests_total, 3);
    assert_eq!(b.routes.len(), 1);
    assert_eq!(b.routes[0].count, 2);
}

#[cfg(feature = "cache")]
#[tokio::test(flavor = "current_thread")]
async fn a_cache_loader_panic_caught_by_the_cache_is_not_a_request_panic() {
    use perfscope::cache::{Cache, CacheKey};
    let perf = perf();
    let cache: Cache<CacheKey, u64> = Cache::builder().build().unwrap();
    let app = Router::new()
        .route(
            "/load",
            get(move || {
                let cache = cache.clone();
                async move {
                    let key = CacheKey::new("boom").part(1);
                    let result = cache
                        .get_or_compute(&key, || async {
                            if std::hint::black_box(true) {
                                panic!("handler exploded in a loader");
                            }
                            1u64
                        })
                        .await;
                    if result.is_err() {
                        "fell back"
                    } else {
                        "loaded"
                    }
                }
            }),
        )
        .layer(perf.layer());
    let (status, _, body) = send(&app, get_request("/load")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"fell back"[..]));
    let route = perf.snapshot().routes.remove(0);
    assert_eq!((route.outcomes.ok, route.outcomes.panic), (1, 0));
}
