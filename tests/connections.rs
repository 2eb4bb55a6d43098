//! Connections counted by perfscope's listener wrapper (`axum::serve`) and tracker (a hyper accept loop of
//! one's own), over real sockets on loopback.
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "support/promtool.rs"]
mod promtool;
use promtool::promtool_check;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use perfscope::{ListenerConnections, Perfscope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The tests of this binary run one at a time: the open-files figures are the whole process's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HALF_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";

fn app(perf: &Perfscope) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .layer(perf.layer())
}

/// Serves `app` through `perf.listener(..)`; returns the address.
async fn serve(perf: &Perfscope) -> std::net::SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = perf.listener(tcp);
    let app = app(perf);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn listener(perf: &Perfscope) -> ListenerConnections {
    perf.snapshot().connections.listeners.remove(0)
}

/// Polls until `done` holds of the listener's figures, for at most five seconds.
async fn until(perf: &Perfscope, what: &str, done: impl Fn(&ListenerConnections) -> bool) {
    for _ in 0..500 {
        if done(&listener(perf)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: {:#?}", listener(perf));
}

fn open_fds(perf: &Perfscope) -> u64 {
    perf.snapshot().process.open_fds.unwrap_or(0)
}

/// Half-header connections through `axum::serve`: open and head-pending with a growing age while they stall,
/// counted `head_abandoned` when the clients leave; the open files rise and fall with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_heads_are_seen_open_pending_and_abandoned() {
    let _serial = SERIAL.lock().await;
    const N: usize = 50;
    let perf = Perfscope::builder().build().unwrap();
    let addr = serve(&perf).await;
    let fds_before = open_fds(&perf);

    let mut clients = Vec::new();
    for _ in 0..N {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(HALF_HEAD).await.unwrap();
        clients.push(stream);
    }
    until(&perf, "all open and pending", |l| {
        l.open == N as u64 && l.head_pending == N as u64
    })
    .await;
    let first = listener(&perf);
    assert_eq!(first.accepted_total, N as u64);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = listener(&perf);
    assert_eq!(later.head_pending, N as u64);
    assert!(
        later.head_pending_age.oldest_ms >= first.head_pending_age.oldest_ms + 150.0,
        "{first:?}\n{later:?}"
    );
    assert!(later.head_pending_age.p50_ms >= 150.0, "{later:?}");
    assert_eq!(perf.snapshot().in_flight, 0, "no request exists yet");
    // Client and server ends of each connection are both in this process. The count before may still hold a
    // few sockets of the previous test that the runtime closes meanwhile, so ask for the server ends at least.
    let fds_during = open_fds(&perf);
    if cfg!(target_os = "linux") {
        assert!(
            fds_during >= fds_before + N as u64,
            "{fds_before} -> {fds_during}"
        );
    }
    let text = perf.prometheus();
    assert!(text.contains(&format!(
        "perfscope_http_server_connections_head_pending{{listener=\"{addr}\"}} {N}\n"
    )));
    promtool_check(&text);

    drop(clients);
    until(&perf, "all closed", |l| l.open == 0).await;
    let closed = listener(&perf);
    assert_eq!(closed.head_pending, 0);
    assert_eq!(closed.peak_open, N as u64);
    assert_eq!(closed.closed.head_abandoned, N as u64, "{closed:?}");
    assert_eq!(closed.head_read.count, 0);
    if cfg!(target_os = "linux") {
        let fds_after = open_fds(&perf);
        assert!(
            fds_after <= fds_before + 2,
            "{fds_before} -> {fds_during} -> {fds_after}"
        );
    }
    promtool_check(&perf.prometheus());
}

/// A complete request: its head is timed, and the connection is counted closed by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_request_times_its_head() {
    let _serial = SERIAL.lock().await;
    let perf = Perfscope::builder().build().unwrap();
    let addr = serve(&perf).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The head is timed from the accept: wait for it, or a late accept would shorten the 50 ms stall below.
    until(&perf, "accepted", |l| l.open == 1).await;
    stream.write_all(HALF_HEAD).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"1\r\n\r\n").await.unwrap();
    let mut response = vec![0; 1024];
    let n = stream.read(&mut response).await.unwrap();
    assert!(
        response[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&response[..n])
    );
    drop(stream);
    until(&perf, "closed by the client", |l| {
        l.closed.client_closed == 1
    })
    .await;
    let l = listener(&perf);
    assert_eq!((l.open, l.head_pending, l.head_read.count), (0, 0, 1));
    assert!(
        l.head_read.p50_ms >= 50.0 && l.head_read.max_ms >= 50.0,
        "{l:?}"
    );
    let snapshot = perf.snapshot();
    assert_eq!(snapshot.requests_total, 1);
}

/// Heads hyper refuses before the router (431 for a head larger than its buffer, 400 for a byte it cannot
/// parse) are counted `refused`, and no route records them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_refused_by_hyper_are_counted_refused_and_never_as_a_route() {
    let _serial = SERIAL.lock().await;
    let perf = Perfscope::builder().build().unwrap();
    let addr = serve(&perf).await;

    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"G\x01T / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    bad.read_to_end(&mut response).await.unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );

    let mut large = TcpStream::connect(addr).await.unwrap();
    large
        .write_all(b"GET /health HTTP/1.1\r\nX-Big: ")
        .await
        .unwrap();
    let filler = vec![b'a'; 64 * 1024];
    let mut response = Vec::new();
    // hyper answers once its buffer is full; writes after that may fail.
    for _ in 0..16 {
        if large.write_all(&filler).await.is_err() {
            break;
        }
    }
    let _ = large.read_to_end(&mut response).await;
    assert!(
        response.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );

    until(&perf, "two refused", |l| {
        l.closed.refused == 2 && l.open == 0
    })
    .await;
    let snapshot = perf.snapshot();
    assert_eq!(snapshot.requests_total, 0);
    assert!(snapshot.routes.is_empty());
}

/// A hyper accept loop of one's own with `header_read_timeout`: the stalled connections are closed by the
/// server and counted `head_timeout`; an idle connection that never sent a byte too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_read_timeout_is_counted_head_timeout() {
    let _serial = SERIAL.lock().await;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let perf = Perfscope::builder().build().unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let connections = perf.connections("public");
    let service = TowerToHyperService::new(app(&perf));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                continue;
            };
            let io = TokioIo::new(connections.track(stream));
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_millis(300))
                    .serve_connection(io, service)
                    .await;
            });
        }
    });

    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(HALF_HEAD).await.unwrap();
        clients.push(stream);
    }
    until(&perf, "pending", |l| l.head_pending == 10).await;
    until(&perf, "timed out", |l| {
        l.closed.head_timeout == 10 && l.open == 0
    })
    .await;
    let l = listener(&perf);
    assert_eq!(l.listener, "public");
    assert_eq!(l.closed.head_abandoned, 0);
    // The clients see the server's close.
    for mut client in clients {
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    }
    promtool_check(&perf.prometheus());
}

/// An accept loop at its connection limit closes a stalled connection to admit a new one, and marks it: it is
/// counted `shed`, not `head_timeout`, and exported with `reason="shed"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_marked_shed_is_counted_shed_whatever_its_head() {
    let _serial = SERIAL.lock().await;
    let perf = Perfscope::builder().build().unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let connections = perf.connections("public");

    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(HALF_HEAD).await.unwrap();
    let (stream, _) = tcp.accept().await.unwrap();
    let mut io = connections.track(stream);
    let mut buf = [0; 256];
    let n = io.read(&mut buf).await.unwrap();
    assert!(n > 0 && io.head_pending(), "{n} bytes");
    assert_eq!(listener(&perf).head_pending, 1);
    io.mark_shed();
    drop(io);

    // The client sees the server's close; the connection is counted once, as shed.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    assert!(rest.is_empty());
    let l = listener(&perf);
    assert_eq!((l.open, l.head_pending, l.accepted_total), (0, 0, 1));
    assert_eq!(l.closed.shed, 1, "{l:?}");
    assert_eq!(l.closed.head_timeout + l.closed.head_abandoned, 0, "{l:?}");
    let text = perf.prometheus();
    assert!(
        text.contains(
            "perfscope_http_server_connections_closed_total{listener=\"public\",reason=\"shed\"} 1\n"
        ),
        "{text}"
    );
    promtool_check(&text);
}

/// A client that announces `Content-Length: 1000`, sends 10 bytes and leaves: the handler's read fails and
/// axum answers 400, but no one receives it: the outcome is `cancelled`, not `client_error`. A body that
/// arrives whole and is refused stays `client_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_body_is_cancelled_whatever_the_status() {
    let _serial = SERIAL.lock().await;
    use axum::body::Bytes;
    use axum::routing::post;

    let perf = Perfscope::builder().build().unwrap();
    let app = Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { format!("{} bytes", body.len()) }),
        )
        .route(
            "/manual",
            post(|body: axum::body::Body| async move {
                match axum::body::to_bytes(body, usize::MAX).await {
                    Ok(bytes) if bytes.starts_with(b"{") => (http::StatusCode::OK, "ok"),
                    Ok(_) => (http::StatusCode::UNPROCESSABLE_ENTITY, "not json"),
                    Err(_) => (http::StatusCode::BAD_REQUEST, "read failed"),
                }
            }),
        )
        .layer(perf.layer());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let tracked = perf.listener(tcp);
    tokio::spawn(async move { axum::serve(tracked, app).await });

    for path in ["/upload", "/manual"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
    }
    let mut whole = TcpStream::connect(addr).await.unwrap();
    whole
        .write_all(b"POST /manual HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
        .await
        .unwrap();
    let mut response = Vec::new();
    whole.read_to_end(&mut response).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 422"));

    let routes = |perf: &Perfscope| perf.snapshot().routes;
    for _ in 0..500 {
        if routes(&perf).iter().map(|r| r.count).sum::<u64>() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let routes = routes(&perf);
    let upload = routes.iter().find(|r| r.route == "/upload").unwrap();
    assert_eq!(upload.count, 1, "{upload:?}");
    assert_eq!(upload.outcomes.cancelled, 1, "{:?}", upload.outcomes);
    assert_eq!(upload.outcomes.client_error, 0);
    let manual = routes.iter().find(|r| r.route == "/manual").unwrap();
    assert_eq!(manual.count, 2, "{manual:?}");
    assert_eq!(manual.outcomes.cancelled, 1, "{:?}", manual.outcomes);
    assert_eq!(manual.outcomes.client_error, 1, "{:?}", manual.outcomes);
    assert_eq!(perf.snapshot().in_flight, 0);
    // The connections: the two that left mid-body were closed by their clients after a complete head.
    until(&perf, "closed", |l| l.open == 0).await;
    assert_eq!(listener(&perf).closed.client_closed, 2);
}
