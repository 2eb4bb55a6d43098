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
//! - **Concurrent connections** ([`Limits::max_connections`]): one permit of a semaphore per open connection; a
//!   connection accepted beyond the limit is closed at once, which a client sees as a reset it can retry.
//! - **Graceful shutdown**: on the shutdown signal the loop stops accepting, asks every connection to finish its
//!   current request and close, and waits for them (at most [`SHUTDOWN_GRACE`]).
//!
//! Each request carries the peer address as `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info`
//! did: the admin routes' loopback check and the login limiter read it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

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
/// At most one warning per this period about refused connections or accept errors.
const WARNING_PERIOD: Duration = Duration::from_secs(10);

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

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tracker: perfscope::connections::ConnectionTracker,
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
    let (stop, stopping) = watch::channel(false);
    let mut refused = Throttled::new();
    let mut accept_errors = Throttled::new();
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
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Over the limit: closing at once costs less than keeping a connection nobody will serve.
            drop(stream);
            if refused.note() {
                tracing::warn!(
                    refused = refused.take(),
                    max_connections = limits.max_connections,
                    "connection limit reached, closing new connections"
                );
            }
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        // perfscope counts the connection from here: open, still sending its head, and how it ends (a header
        // timeout, refused by hyper before the router, abandoned by the client).
        let stream = tracker.track(stream);
        tokio::spawn(serve_connection(
            Arc::clone(&http),
            stream,
            peer,
            app.clone(),
            stopping.clone(),
            permit,
        ));
    }

    // Stop accepting (the kernel refuses new connections once the listener is closed), ask every connection to
    // close after its current request, and wait for all of them: each holds a permit until it ends.
    drop(listener);
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
async fn serve_connection(
    http: Arc<http1::Builder>,
    stream: perfscope::connections::TrackedIo<TcpStream>,
    peer: SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let service = app.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    let too_old = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(too_old);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Header timeouts, heads too large, clients that reset: routine on a public server.
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
                break;
            }
            // Shutdown (or the sender gone, which means the same).
            _ = stopping.changed(), if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            () = &mut too_old, if !draining => {
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
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
