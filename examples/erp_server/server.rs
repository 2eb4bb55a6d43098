//! The HTTP server: a small accept loop over hyper's HTTP/1 connection, with the limits a server open to the
//! internet needs and `axum::serve` does not set.
//!
//! - **Header-read timeout** ([`HEADER_READ_TIMEOUT`]): a connection whose request head has not arrived in full
//!   within it is closed. It runs from the moment hyper starts reading a head, so it also bounds how long an idle
//!   keep-alive connection is kept. Without it, a client that sends half a header and stalls holds a connection
//!   (a file descriptor, a task, a read buffer) for ever, and 20,000 of them exhaust the process's open files.
//! - **Head size** ([`MAX_HEAD_BYTES`], [`MAX_HEADERS`]): a larger head is answered 431 by hyper.
//! - **Connection age** ([`MAX_CONNECTION_AGE`]): a keep-alive connection is asked to close (after its current
//!   request) once it is this old, so one client cannot pin a connection for ever.
//! - **Concurrent connections** ([`Limits::max_connections`]): one permit of a semaphore per open connection. At
//!   the limit, a new connection is admitted by shedding the open connection that has waited longest for its
//!   first request head: clients that hold connections without ever finishing a head (slowloris) lose their
//!   oldest one to each newcomer, while a connection whose request has arrived is never shed, so `/health` and
//!   real clients keep being served when an attacker has taken every place. When every open connection has
//!   sent a request, the new one is closed at once (a reset the client can retry). perfscope counts both as
//!   `shed` (`TrackedIo::mark_shed`).
//! - **Listen backlog** ([`LISTEN_BACKLOG`]): 4,096 connections queued by the kernel for the accept loop.
//! - **Memory after a burst**: once the open connections have fallen back (to half their highest and by
//!   [`RELEASE_AFTER_CLOSED`] at least), the allocator's free pages go back to the system (module `memory`).
//! - **Graceful shutdown**: on the shutdown signal the loop stops accepting, asks every connection to finish its
//!   current request and close, and waits for them (at most [`SHUTDOWN_GRACE`]).
//!
//! Each request carries the peer address as `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info`
//! did: the admin routes' loopback check and the login limiter read it.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use perfscope::connections::{ConnectionTracker, TrackedIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::memory;

/// Longest time a client may take to send a request head (and longest idle time between two requests).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, bytes: hyper's read buffer, which also bounds the memory of one slow connection.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request.
pub(crate) const MAX_HEADERS: usize = 64;
/// Age after which a keep-alive connection is closed once its current request is answered.
pub(crate) const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// Connections open at once, unless the open-file limit allows fewer (see [`Limits::from_env`]).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// File descriptors kept for everything but client connections: the listener, the database, logs, Redis.
const RESERVED_FILES: u64 = 256;
/// How long shutdown waits for open connections to finish their requests.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// At most one warning per this period about shed connections or accept errors.
const WARNING_PERIOD: Duration = Duration::from_secs(10);
/// The fall in open connections (from their highest since the last release, and to half of it at most) after
/// which the allocator's free memory goes back to the system: about 1 MiB of hyper's buffers.
pub(crate) const RELEASE_AFTER_CLOSED: usize = 64;
/// Longest wait of the accept loop for the permit of a connection it shed (it closes as soon as its task runs).
const SHED_WAIT: Duration = Duration::from_millis(100);
/// Connections the kernel queues for the accept loop (capped by `net.core.somaxconn`, 4096 by default): the
/// 128 of `TcpListener::bind` overflow under a burst of connections, and a client whose handshake finds the
/// queue full waits a SYN retransmission (1 s) before it is even accepted.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;
/// How often the open connections are compared with their highest.
const RELEASE_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// The server's limits that depend on the machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; the open-file limit minus [`RESERVED_FILES`] at most.
    pub(crate) max_connections: usize,
    /// The soft open-file limit in force (after raising it), for the banner.
    pub(crate) open_files_limit: Option<u64>,
}

impl Limits {
    /// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard one, then sizes the connection limit:
    /// `ERP_MAX_CONNECTIONS` or [`DEFAULT_MAX_CONNECTIONS`], and never more than the open files allow.
    pub(crate) fn from_env() -> Result<Self, String> {
        let max_connections = match std::env::var("ERP_MAX_CONNECTIONS") {
            Ok(value) => value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("ERP_MAX_CONNECTIONS must be a positive integer, not `{value}`")
                })?,
            Err(_) => DEFAULT_MAX_CONNECTIONS,
        };
        let open_files_limit = raise_open_files_limit();
        let max_connections = match open_files_limit {
            Some(limit) => {
                let allowed =
                    usize::try_from(limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
                max_connections.min(allowed.max(1))
            }
            None => max_connections,
        };
        Ok(Self {
            max_connections,
            open_files_limit,
        })
    }
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit (Unix); `None` where there is no such limit.
fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(error) => {
                tracing::warn!(%error, "cannot raise the open-file limit");
                rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Binds the listener with a queue of [`LISTEN_BACKLOG`] connections; `addr` is `host:port`.
pub(crate) async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let Some(addr) = tokio::net::lookup_host(addr).await?.next() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address for {addr}"),
        ));
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted server binds again while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tracker: ConnectionTracker,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let http = Arc::new(http);

    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let waiting = Arc::new(Waiting::default());
    let highest = Arc::new(AtomicUsize::new(0));
    let release = tokio::spawn(release_memory_after_bursts(
        Arc::clone(&connections),
        limits.max_connections,
        Arc::clone(&highest),
    ));
    let (stop, stopping) = watch::channel(false);
    let mut shed = Throttled::new();
    let mut accept_errors = Throttled::new();
    let mut next_id: u64 = 0;
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if accept_errors.note() {
                        tracing::warn!(%error, errors = accept_errors.take(), "accept failed");
                    }
                    // Out of file descriptors (EMFILE) repeats at once: give connections time to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // perfscope counts the connection from here: open, still sending its head, and how it ends (a header
        // timeout, refused by hyper before the router, abandoned by the client, shed at the limit).
        let mut stream = tracker.track(stream);
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => permit,
            // At the limit: the connection that has waited longest for its first request closes, and this one
            // takes its permit. Its task runs at once; meanwhile the kernel queues new connections.
            Err(_) if waiting.shed_oldest() => {
                if shed.note() {
                    tracing::warn!(
                        shed = shed.take(),
                        max_connections = limits.max_connections,
                        "connection limit reached: closing the connections that have waited longest for a \
                         request head"
                    );
                }
                match tokio::time::timeout(SHED_WAIT, Arc::clone(&connections).acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    // Its request arrived just before it was told to close: it stays, this one goes.
                    _ => {
                        stream.mark_shed();
                        continue;
                    }
                }
            }
            Err(_) => {
                // Every open connection has sent a request: closing the new one costs least.
                stream.mark_shed();
                drop(stream);
                if shed.note() {
                    tracing::warn!(
                        shed = shed.take(),
                        max_connections = limits.max_connections,
                        "connection limit reached, every connection busy: closing new connections"
                    );
                }
                continue;
            }
        };
        let open = limits
            .max_connections
            .saturating_sub(connections.available_permits());
        highest.fetch_max(open, Ordering::Relaxed);
        if let Err(error) = stream.get_ref().set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        let pending = waiting.add(next_id);
        next_id += 1;
        tokio::spawn(serve_connection(
            Arc::clone(&http),
            stream,
            peer,
            app.clone(),
            stopping.clone(),
            permit,
            Arc::clone(&waiting),
            pending,
        ));
    }

    // Stop accepting (the kernel refuses new connections once the listener is closed), ask every connection to
    // close after its current request, and wait for all of them: each holds a permit until it ends.
    drop(listener);
    release.abort();
    stop.send_replace(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            open = limits.max_connections - connections.available_permits(),
            "connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"
        ),
    }
}

/// Serves one connection until the client closes it, a timeout or limit closes it, or shutdown drains it.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    http: Arc<http1::Builder>,
    stream: TrackedIo<TcpStream>,
    peer: SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
    waiting: Arc<Waiting>,
    pending: Arc<Pending>,
) {
    // Off the waiting list however the connection ends.
    let _listed = Listed {
        waiting: &waiting,
        id: pending.id,
    };
    let first_request = Arc::clone(&pending);
    let listed = Arc::clone(&waiting);
    let service = app.map_request(move |mut request: Request<Incoming>| {
        // The first request head has arrived: from now on this connection is never shed.
        if !first_request.requested.swap(true, Ordering::AcqRel) {
            listed.remove(first_request.id);
        }
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut connection =
        http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let too_old = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(too_old);
    let mut draining = false;
    loop {
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    // Header timeouts, heads too large, clients that reset: routine on a public server.
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
                break;
            }
            // Shutdown (or the sender gone, which means the same).
            _ = stopping.changed(), if !draining => {
                std::pin::Pin::new(&mut connection).graceful_shutdown();
                draining = true;
            }
            () = &mut too_old, if !draining => {
                std::pin::Pin::new(&mut connection).graceful_shutdown();
                draining = true;
            }
            // At the limit, a newcomer needs this connection's place: it has waited longest for its first head.
            () = pending.shed.notified(), if !pending.requested.load(Ordering::Acquire) => {
                if pending.requested.load(Ordering::Acquire) {
                    // Its request arrived meanwhile: it stays.
                    continue;
                }
                let mut parts = connection.into_parts();
                parts.io.inner_mut().mark_shed();
                return;
            }
        }
    }
}

/// The open connections still waiting for their first request head, oldest first: the ones shed at the limit.
#[derive(Default)]
struct Waiting {
    connections: Mutex<BTreeMap<u64, Arc<Pending>>>,
}

/// One connection on the [`Waiting`] list.
struct Pending {
    /// Accept order: the smallest is the oldest.
    id: u64,
    /// Set when the first request reaches the router; the connection is never shed after that.
    requested: AtomicBool,
    /// Woken to shed the connection.
    shed: Notify,
}

impl Waiting {
    fn add(&self, id: u64) -> Arc<Pending> {
        let pending = Arc::new(Pending {
            id,
            requested: AtomicBool::new(false),
            shed: Notify::new(),
        });
        self.lock().insert(id, Arc::clone(&pending));
        pending
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Tells the oldest connection still waiting for its first request to close; false when there is none.
    fn shed_oldest(&self) -> bool {
        let mut connections = self.lock();
        while let Some((_, pending)) = connections.pop_first() {
            if !pending.requested.load(Ordering::Acquire) {
                pending.shed.notify_one();
                return true;
            }
        }
        false
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Pending>>> {
        // The map stays consistent whatever panicked while holding it: each operation is one insert or remove.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes a connection off the [`Waiting`] list when it ends.
struct Listed<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.waiting.remove(self.id);
    }
}

/// Gives the allocator's free memory back (module `memory`) each time the open connections have fallen to half
/// their highest since the last time, and by [`RELEASE_AFTER_CLOSED`] at least. The accept loop raises
/// `highest`; this task looks every [`RELEASE_CHECK_PERIOD`].
async fn release_memory_after_bursts(
    connections: Arc<Semaphore>,
    max_connections: usize,
    highest: Arc<AtomicUsize>,
) {
    let mut period = tokio::time::interval(RELEASE_CHECK_PERIOD);
    period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        period.tick().await;
        let open = max_connections.saturating_sub(connections.available_permits());
        let high = highest.load(Ordering::Relaxed).max(open);
        if should_release(high, open) {
            highest.store(open, Ordering::Relaxed);
            let started = Instant::now();
            let released = tokio::task::spawn_blocking(memory::release_free_memory).await;
            tracing::debug!(
                from = high,
                open,
                released = released.unwrap_or(false),
                elapsed = ?started.elapsed(),
                "connections fell back: free memory given back"
            );
        }
    }
}

/// Whether open connections falling from `high` to `open` is a burst passed: to half at most, and by
/// [`RELEASE_AFTER_CLOSED`] at least.
fn should_release(high: usize, open: usize) -> bool {
    high.saturating_sub(open) >= RELEASE_AFTER_CLOSED && open <= high / 2
}

/// Counts events and says when a warning about them is due: at most once per [`WARNING_PERIOD`].
struct Throttled {
    count: u64,
    last: Option<Instant>,
}

impl Throttled {
    fn new() -> Self {
        Self {
            count: 0,
            last: None,
        }
    }

    /// Counts one event; true when a warning is due.
    fn note(&mut self) -> bool {
        self.count += 1;
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= WARNING_PERIOD);
        if due {
            self.last = Some(now);
        }
        due
    }

    /// The events since the last warning, and starts counting again.
    fn take(&mut self) -> u64 {
        std::mem::take(&mut self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn memory_goes_back_once_connections_have_fallen_by_half() {
        assert!(!should_release(0, 0));
        assert!(!should_release(50, 0), "a fall under RELEASE_AFTER_CLOSED");
        assert!(should_release(RELEASE_AFTER_CLOSED, 0));
        assert!(!should_release(20_000, 10_001), "not yet half");
        assert!(should_release(20_000, 10_000));
        assert!(!should_release(100, 120), "rising");
    }

    #[test]
    fn the_oldest_connection_still_waiting_is_shed_first() {
        let waiting = Waiting::default();
        assert!(!waiting.shed_oldest(), "none waiting");
        let first = waiting.add(0);
        let second = waiting.add(1);
        let third = waiting.add(2);
        // The first has sent its request: it is never shed; the second is the oldest still waiting.
        first.requested.store(true, Ordering::Release);
        assert!(waiting.shed_oldest());
        assert!(first.shed.notified().now_or_never().is_none());
        assert!(second.shed.notified().now_or_never().is_some());
        waiting.remove(third.id);
        assert!(!waiting.shed_oldest(), "the third has closed");
    }

    /// Waits for a trait method's future once, without a runtime.
    trait NowOrNever: Future + Sized {
        fn now_or_never(self) -> Option<Self::Output> {
            let mut future = std::pin::pin!(self);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match future.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            }
        }
    }
    impl<F: Future> NowOrNever for F {}

    /// Serves a one-route app with room for `max_connections`; returns its address and perfscope.
    async fn serve_with(max_connections: usize) -> (SocketAddr, perfscope::Perfscope) {
        let perf = perfscope::Perfscope::builder().build().expect("perfscope");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = Router::new().route("/health", get(|| async { "ok" }));
        let limits = Limits {
            max_connections,
            open_files_limit: None,
        };
        let tracker = perf.connections("public");
        tokio::spawn(serve(
            listener,
            app,
            limits,
            tracker,
            std::future::pending(),
        ));
        (addr, perf)
    }

    async fn get_health(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    async fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut buf = [0; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    fn public(perf: &perfscope::Perfscope) -> perfscope::ListenerConnections {
        perf.snapshot().connections.listeners.remove(0)
    }

    async fn until(
        perf: &perfscope::Perfscope,
        done: impl Fn(&perfscope::ListenerConnections) -> bool,
    ) {
        for _ in 0..500 {
            if done(&public(perf)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{:#?}", public(perf));
    }

    /// At the limit, stalled heads make room for a new client, oldest first; a connection whose request has
    /// arrived is never shed; when none is waiting, the newcomer is closed. All counted `shed` by perfscope.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_limit_the_oldest_stalled_head_makes_room() {
        let (addr, perf) = serve_with(3).await;
        let mut served = TcpStream::connect(addr).await.expect("connect");
        assert!(get_health(&mut served).await.starts_with("HTTP/1.1 200"));
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /health HTTP/1.1\r\nX-Stall: ")
                .await
                .expect("write");
            stalled.push(stream);
            until(&perf, |l| l.head_pending == stalled.len() as u64).await;
        }

        // Full: the newcomer is served, the oldest stalled connection is closed, the other stays.
        let mut newcomer = TcpStream::connect(addr).await.expect("connect");
        assert!(get_health(&mut newcomer).await.starts_with("HTTP/1.1 200"));
        assert!(closed_by_server(&mut stalled[0]).await);
        until(&perf, |l| l.closed.shed == 1 && l.open == 3).await;
        let mut buf = [0; 8];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), stalled[1].read(&mut buf))
                .await
                .is_err(),
            "the younger stalled connection is still open"
        );

        // Again: the other stalled connection goes. Then every connection has sent a request: the next
        // newcomer is the one closed, and the served ones keep working.
        let mut second = TcpStream::connect(addr).await.expect("connect");
        assert!(get_health(&mut second).await.starts_with("HTTP/1.1 200"));
        assert!(closed_by_server(&mut stalled[1]).await);
        let mut refused = TcpStream::connect(addr).await.expect("connect");
        assert!(closed_by_server(&mut refused).await);
        until(&perf, |l| l.closed.shed == 3).await;
        assert!(get_health(&mut served).await.starts_with("HTTP/1.1 200"));
        assert!(get_health(&mut newcomer).await.starts_with("HTTP/1.1 200"));
        let l = public(&perf);
        assert_eq!(
            (l.closed.head_timeout, l.closed.head_abandoned),
            (0, 0),
            "{l:?}"
        );
    }
}
