//! Bytes allocated per request (feature `alloc`), with perfscope's counting allocator as this binary's global
//! allocator: per route in the snapshot and Prometheus, in `Server-Timing`, the large-allocation warning, and
//! no cross-talk between requests running at once on several threads.
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "support/promtool.rs"]
mod promtool;
use promtool::promtool_check;

use std::convert::Infallible;
use std::hint::black_box;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use futures_util::StreamExt;
use http::{HeaderMap, Request};
use perfscope::alloc::CountingAllocator;
use perfscope::{HeaderPolicy, Perfscope, RouteStats};
use tower::ServiceExt;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::system();

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// What axum, the router and perfscope's own layers may allocate on top of a handler's known figure. Measured
/// at about 1 KiB per request in a debug build; the margin keeps the bound meaningful against 1 MiB.
const TOLERANCE: u64 = 32 * KIB;

/// Allocates `bytes` in `chunks` steps, yielding to the runtime between them, so that on a multi-thread runtime
/// the request is polled many times, possibly on different threads, interleaved with other requests.
async fn allocate(bytes: usize, chunks: usize) -> String {
    let mut kept = Vec::with_capacity(chunks);
    for _ in 0..chunks {
        kept.push(black_box(vec![1u8; bytes / chunks]));
        tokio::task::yield_now().await;
    }
    black_box(&kept);
    kept.iter().map(Vec::len).sum::<usize>().to_string()
}

fn app(perf: &Perfscope) -> Router {
    Router::new()
        .route("/one_mib", get(|| allocate(1 << 20, 1)))
        .route("/one_mib_in_steps", get(|| allocate(1 << 20, 16)))
        .route("/three_mib_in_steps", get(|| allocate(3 << 20, 24)))
        .route("/nothing", get(|| async { "ok" }))
        // The body allocates its 1 MiB frame by frame, after the headers were sent.
        .route(
            "/streamed",
            get(|| async {
                let frames = futures_util::stream::iter(0..4)
                    .map(|_| Ok::<_, Infallible>(Bytes::from(vec![1u8; 256 << 10])));
                Body::from_stream(frames)
            }),
        )
        .layer(perf.layer())
}

fn perf() -> Perfscope {
    Perfscope::builder()
        .timing_headers(HeaderPolicy::Always)
        .build()
        .unwrap()
}

async fn send(app: &Router, uri: &str) -> HeaderMap {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    black_box(axum::body::to_bytes(body, usize::MAX).await.unwrap());
    parts.headers
}

/// The bytes the `alloc` entry of `Server-Timing` shows (`alloc;desc="1.00 MiB"`), as shown.
fn server_timing_alloc(headers: &HeaderMap) -> Option<f64> {
    let value = headers.get("server-timing")?.to_str().ok()?;
    let entry = value
        .split(", ")
        .find_map(|entry| entry.strip_prefix("alloc;desc=\""))?;
    let (number, unit) = entry.strip_suffix('"')?.split_once(' ')?;
    let scale = match unit {
        "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => 1 << 30,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale as f64)
}

fn route<'a>(snapshot: &'a perfscope::Snapshot, template: &str) -> &'a RouteStats {
    snapshot
        .routes
        .iter()
        .find(|route| route.route == template)
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_allocating_one_mib_shows_it_for_its_route_and_in_server_timing() {
    let perf = perf();
    let app = app(&perf);
    for _ in 0..5 {
        let headers = send(&app, "/one_mib").await;
        let shown = server_timing_alloc(&headers).unwrap();
        // Shown with two decimals cut: 1 MiB and a few KiB read "1.00 MiB".
        assert!(shown >= MIB as f64, "{shown}: {headers:?}");
        assert!(shown < (MIB + TOLERANCE) as f64, "{shown}");
        let headers = send(&app, "/nothing").await;
        assert!(server_timing_alloc(&headers).unwrap() < TOLERANCE as f64);
    }

    let snapshot = perf.snapshot();
    assert!(snapshot.process.counting_allocator);
    assert_eq!(snapshot.settings.allocation_warning_bytes, Some(64 * MIB));
    let big = route(&snapshot, "/one_mib").allocated_bytes.unwrap();
    assert_eq!(big.count, 5);
    assert!(
        big.p50 >= MIB && big.p95 >= MIB && big.max >= MIB,
        "{big:?}"
    );
    assert!(big.max < MIB + TOLERANCE, "{big:?}");
    assert!(
        big.sum >= 5 * MIB && big.sum < 5 * (MIB + TOLERANCE),
        "{big:?}"
    );
    let nothing = route(&snapshot, "/nothing").allocated_bytes.unwrap();
    assert_eq!(nothing.count, 5);
    assert!(nothing.max < TOLERANCE, "{nothing:?}");
    let rss = snapshot.process.resident_memory_bytes;
    assert_eq!(rss.is_some(), cfg!(target_os = "linux"));

    let json: serde_json::Value = serde_json::from_str(&perf.json()).unwrap();
    let row = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["route"] == "/one_mib")
        .unwrap();
    assert!(row["allocated_bytes"]["p50"].as_u64().unwrap() >= MIB);
}

#[tokio::test(flavor = "current_thread")]
async fn the_body_frames_count_for_the_route_but_not_in_server_timing() {
    let perf = perf();
    let app = app(&perf);
    let headers = send(&app, "/streamed").await;
    // The headers left before the body allocated its frames.
    assert!(server_timing_alloc(&headers).unwrap() < TOLERANCE as f64);
    let streamed = route(&perf.snapshot(), "/streamed")
        .allocated_bytes
        .unwrap();
    assert!(
        streamed.max >= MIB && streamed.max < MIB + TOLERANCE,
        "{streamed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_several_threads_each_get_their_own_figure() {
    let perf = perf();
    let app = app(&perf);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        let (uri, expected) = if i % 2 == 0 {
            ("/one_mib_in_steps", MIB)
        } else {
            ("/three_mib_in_steps", 3 * MIB)
        };
        tasks.push(tokio::spawn(
            async move { (send(&app, uri).await, expected) },
        ));
    }
    for task in tasks {
        let (headers, expected) = task.await.unwrap();
        let shown = server_timing_alloc(&headers).unwrap();
        assert!(
            shown >= expected as f64 && shown < (expected + TOLERANCE) as f64,
            "expected {expected}, shown {shown}"
        );
    }
    let snapshot = perf.snapshot();
    for (template, expected) in [("/one_mib_in_steps", MIB), ("/three_mib_in_steps", 3 * MIB)] {
        let allocated = route(&snapshot, template).allocated_bytes.unwrap();
        assert_eq!(allocated.count, 20);
        assert!(allocated.p50 >= expected, "{template}: {allocated:?}");
        assert!(
            allocated.max < expected + TOLERANCE,
            "{template}: {allocated:?}"
        );
    }
}

/// Collects what a `tracing` fmt layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_above_the_threshold_is_logged_within_the_rate_limit() {
    let perf = Perfscope::builder()
        .allocation_warning_threshold(512 * KIB)
        .slow_warnings_per_minute(1)
        .build()
        .unwrap();
    let app = app(&perf);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    send(&app, "/nothing").await;
    for _ in 0..3 {
        send(&app, "/one_mib").await;
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("request allocated more than the threshold"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("route=/one_mib"), "{log}");
    assert!(warnings[0].contains("threshold_bytes=524288"), "{log}");
    let snapshot = perf.snapshot();
    assert_eq!(snapshot.overflow.allocation_warnings_suppressed, 2);
    assert!(
        perf.prometheus()
            .contains("\nperfscope_allocation_warnings_suppressed_total 2\n")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn turned_off_the_monitor_charges_nothing() {
    let perf = Perfscope::builder()
        .timing_headers(HeaderPolicy::Always)
        .count_allocations(false)
        .build()
        .unwrap();
    let app = app(&perf);
    let headers = send(&app, "/one_mib").await;
    assert_eq!(server_timing_alloc(&headers), None, "{headers:?}");
    let snapshot = perf.snapshot();
    assert_eq!(route(&snapshot, "/one_mib").allocated_bytes, None);
    assert_eq!(snapshot.settings.allocation_warning_bytes, None);
    assert!(snapshot.process.counting_allocator);
    assert!(!perf.prometheus().contains("allocated_bytes"));
}

#[test]
fn the_allocator_counts_this_threads_allocations_growth_and_frees() {
    assert!(perfscope::alloc::is_installed());
    let (mut buffer, bytes) = perfscope::alloc::measure(|| Vec::<u8>::with_capacity(1000));
    assert_eq!(bytes, 1000);
    // Growing by realloc counts the growth only.
    let ((), grown) = perfscope::alloc::measure(|| buffer.reserve_exact(3000));
    assert_eq!(grown, 2000);
    let freed_before = perfscope::alloc::thread_freed_bytes();
    drop(buffer);
    assert_eq!(perfscope::alloc::thread_freed_bytes() - freed_before, 3000);
    // Another thread's work is not this thread's.
    let before = perfscope::alloc::thread_allocated_bytes();
    std::thread::spawn(|| black_box(vec![0u8; 1 << 20]))
        .join()
        .unwrap();
    assert!(perfscope::alloc::thread_allocated_bytes() - before < MIB);
}

/// The exposition with the allocation families passes `promtool check metrics` (Debian's `prometheus`
/// package; `PROMTOOL` overrides the binary).
#[tokio::test(flavor = "current_thread")]
async fn allocation_families_pass_promtool() {
    let perf = perf();
    let app = app(&perf);
    send(&app, "/one_mib").await;
    send(&app, "/nothing").await;
    let text = perf.prometheus();
    assert!(text.contains(
        "perfscope_http_server_request_allocated_bytes_count{http_request_method=\"GET\",http_route=\"/one_mib\"} 1\n"
    ));
    assert_eq!(
        text.contains("\nprocess_resident_memory_bytes "),
        cfg!(target_os = "linux")
    );
    promtool_check(&text);
}
