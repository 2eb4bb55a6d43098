//! The connection wrapper's cost per connection: accept, one request, close, over loopback, through
//! `axum::serve` with the bare `TcpListener` and with `perf.listener(..)` in the same group.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Connects, sends one request, reads the response to the server's close.
async fn one_connection(addr: SocketAddr, buf: &mut Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("connect to {addr}");
    };
    stream.write_all(REQUEST).await.expect("write the request");
    buf.clear();
    stream.read_to_end(buf).await.expect("read the response");
    assert!(buf.starts_with(b"HTTP/1.1 200"));
}

fn app() -> Router {
    Router::new().route("/health", get(|| async { "ok" }))
}

fn connections(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let perf = perfscope::Perfscope::builder().build().expect("perfscope");
    let (bare, tracked) = rt.block_on(async {
        let bare = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tracked = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addrs = (
            bare.local_addr().expect("address"),
            tracked.local_addr().expect("address"),
        );
        tokio::spawn(async move { axum::serve(bare, app()).await });
        let listener = perf.listener(tracked);
        tokio::spawn(async move { axum::serve(listener, app()).await });
        addrs
    });

    let mut group = c.benchmark_group("connection");
    let mut buf = Vec::with_capacity(1024);
    group.bench_function("bare_listener", |b| {
        b.iter(|| rt.block_on(one_connection(bare, &mut buf)));
    });
    group.bench_function("perf_listener", |b| {
        b.iter(|| rt.block_on(one_connection(tracked, &mut buf)));
    });
    group.finish();
    // Every connection the wrapper saw had its head timed (none when a filter left `perf_listener` out).
    let snapshot = perf.snapshot();
    let listener = &snapshot.connections.listeners[0];
    assert_eq!(listener.head_pending, 0);
    assert_eq!(listener.head_read.count, listener.accepted_total);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    targets = connections
}
criterion_main!(benches);
