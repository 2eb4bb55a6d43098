//! Cost of the counting allocator (feature `alloc`), each figure beside its baseline in the same run.
//!
//! - `alloc/system/<size>` and `alloc/counting/<size>`: one allocation and its free, of 16 B, 256 B, 4 KiB and
//!   1 MiB, straight through `std::alloc::System` and through a `CountingAllocator<System>`.
//! - `request/*`: one in-process request through an axum router with perfscope's `MonitorLayer` (release
//!   defaults), as `benches/monitor.rs` sends it, with this binary's global allocator the counting one:
//!   `not_charged` (`count_allocations(false)`: the allocator counts, the monitor reads nothing) and `charged`
//!   (the default: every poll of the request and of its body is charged, the route records the figure).
//!   The same request under the system allocator is `layer/perfscope_request_id_only` of `benches/monitor.rs`.
//!
//! Run: `cargo bench --features alloc --bench alloc`. Results and the machine: `docs/benchmarks.md`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use perfscope::Perfscope;
use perfscope::alloc::CountingAllocator;
use tower::ServiceExt;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator::system();

/// The allocator the `alloc/counting` figures go through (the global one is the same type).
static COUNTING: CountingAllocator = CountingAllocator::system();

/// One allocation of `layout` and its free through `allocator`. A symbol of its own per allocator, so that
/// callgrind can count the instructions of each (`valgrind --tool=callgrind <bench binary> --bench
/// 'alloc/counting/16$' --profile-time 1`).
#[inline(never)]
#[allow(unsafe_code)]
fn alloc_free(allocator: &impl GlobalAlloc, layout: Layout) {
    // SAFETY: `layout` has a non-zero size; the block is freed once, with the layout it was allocated with,
    // by the allocator that allocated it, and only when the allocation succeeded.
    unsafe {
        let ptr = allocator.alloc(layout);
        if !ptr.is_null() {
            black_box(ptr);
            allocator.dealloc(ptr, layout);
        }
    }
}

fn bench_alloc(c: &mut Criterion) {
    let mut group = c.benchmark_group("alloc");
    group.throughput(Throughput::Elements(1));
    for size in [16usize, 256, 4096, 1 << 20] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        group.bench_function(format!("system/{size}"), |b| {
            b.iter(|| alloc_free(&System, black_box(layout)))
        });
        group.bench_function(format!("counting/{size}"), |b| {
            b.iter(|| alloc_free(&COUNTING, black_box(layout)))
        });
    }
    group.finish();
}

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

#[inline(never)] // a symbol of its own: callgrind counts requests by its calls
fn request() -> Request<Body> {
    Request::get("/api/products/42")
        .body(Body::empty())
        .unwrap()
}

fn bench_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let not_charged = Perfscope::builder()
        .count_allocations(false)
        .build()
        .unwrap();
    let charged = Perfscope::builder().build().unwrap();
    let apps = [
        (
            "not_charged",
            app().layer(not_charged.layer()).with_state(()),
        ),
        ("charged", app().layer(charged.layer()).with_state(())),
    ];
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    for (name, app) in apps {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let response = app.clone().oneshot(request()).await.unwrap();
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    black_box(body);
                })
            })
        });
    }
    group.finish();
    let route = &charged.snapshot().routes[0];
    assert!(route.allocated_bytes.is_some_and(|a| a.count > 0));
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_alloc, bench_request
}
criterion_main!(benches);
