//! [`Tracked`], the listener wrapper for `axum::serve`, and [`ConnectionTracker`] for accept loops of one's own.

use std::sync::Arc;

#[cfg(feature = "axum")]
use crate::Perfscope;
use crate::connections::io::TrackedIo;
use crate::connections::state::ListenerState;

/// Counts the connections of one listener: wraps each connection it is given in a [`TrackedIo`].
///
/// Made by [`Perfscope::connections`]. Cloning is cheap; clones count into the same listener.
///
/// For an application that runs its own accept loop with hyper-util (to set `header_read_timeout`, say):
///
/// ```no_run
/// # async fn run(app: axum::Router, perf: perfscope::Perfscope) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let connections = perf.connections("http");
/// loop {
///     let (stream, _peer) = listener.accept().await?;
///     let io = connections.track(stream); // the one perfscope line
///     # let _ = (io, &app);
///     // hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
///     //     .http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10))
///     //     .serve_connection(TokioIo::new(io), service) ...
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionTracker {
    listener: Arc<ListenerState>,
}

impl ConnectionTracker {
    pub(crate) fn new(listener: Arc<ListenerState>) -> Self {
        ConnectionTracker { listener }
    }

    /// The listener name the connections are counted under.
    pub fn name(&self) -> &str {
        &self.listener.name
    }

    /// Wraps a newly accepted connection: it is counted open (and its head pending) from now until the
    /// returned value is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let connections = perf.connections("test");
    /// let (client, server) = tokio::io::duplex(64);
    /// let io = connections.track(server);
    /// assert_eq!(perf.snapshot().connections.listeners[0].open, 1);
    /// drop((io, client));
    /// assert_eq!(perf.snapshot().connections.listeners[0].open, 0);
    /// # }
    /// ```
    pub fn track<T>(&self, io: T) -> TrackedIo<T> {
        TrackedIo::new(io, self.listener.clone())
    }
}

/// A listener whose connections perfscope counts: `axum::serve(perf.listener(tcp), app)`.
///
/// Implements axum's [`Listener`](axum::serve::Listener) over any listener, with the same address type; each
/// accepted connection is a [`TrackedIo`]. The connections are counted under the listener's local address
/// (`127.0.0.1:3000`), or a name given with [`Tracked::named`].
///
/// ```no_run
/// # async fn run(app: axum::Router, perf: perfscope::Perfscope) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(perf.listener(listener), app).await
/// # }
/// ```
///
/// axum's `ConnectInfo<SocketAddr>` is implemented for its own listeners only: an application that reads it
/// (`into_make_service_with_connect_info::<SocketAddr>()`) reads [`PeerAddr`] instead, or runs an accept loop
/// of its own with [`ConnectionTracker`].
#[cfg(feature = "axum")]
#[derive(Debug)]
pub struct Tracked<L> {
    inner: L,
    tracker: ConnectionTracker,
}

#[cfg(feature = "axum")]
impl<L: axum::serve::Listener> Tracked<L> {
    /// Wraps `listener`, counting its connections in `perf` under its local address.
    ///
    /// ```no_run
    /// # async fn run(perf: perfscope::Perfscope) -> std::io::Result<()> {
    /// let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let listener = perfscope::connections::Tracked::new(tcp, &perf);
    /// # Ok(()) }
    /// ```
    pub fn new(listener: L, perf: &Perfscope) -> Self
    where
        L::Addr: std::fmt::Debug,
    {
        let name = listener
            .local_addr()
            .map_or_else(|_| "listener".to_owned(), |addr| format!("{addr:?}"));
        Self::named(listener, perf, &name)
    }

    /// Wraps `listener`, counting its connections in `perf` under `name` (listeners given the same name count
    /// together).
    ///
    /// ```no_run
    /// # async fn run(perf: perfscope::Perfscope) -> std::io::Result<()> {
    /// let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let listener = perfscope::connections::Tracked::named(tcp, &perf, "public");
    /// # Ok(()) }
    /// ```
    pub fn named(listener: L, perf: &Perfscope, name: &str) -> Self {
        Tracked {
            inner: listener,
            tracker: perf.connections(name),
        }
    }

    /// The tracker the accepted connections are counted by.
    pub fn tracker(&self) -> &ConnectionTracker {
        &self.tracker
    }

    /// The wrapped listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }
}

#[cfg(feature = "axum")]
impl<L: axum::serve::Listener> axum::serve::Listener for Tracked<L> {
    type Io = TrackedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (self.tracker.track(io), addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The peer address of a connection accepted by a [`Tracked`] listener, for axum's `ConnectInfo`:
/// `app.into_make_service_with_connect_info::<PeerAddr<SocketAddr>>()`, then `ConnectInfo(PeerAddr(addr))`
/// in handlers (axum implements `ConnectInfo<SocketAddr>` for its own listeners only).
///
/// ```no_run
/// use std::net::SocketAddr;
/// use axum::{Router, extract::ConnectInfo, routing::get};
/// use perfscope::connections::PeerAddr;
///
/// # async fn run(perf: perfscope::Perfscope) -> std::io::Result<()> {
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr<SocketAddr>>| async move { peer.to_string() }),
/// );
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(
///     perf.listener(tcp),
///     app.into_make_service_with_connect_info::<PeerAddr<SocketAddr>>(),
/// )
/// .await
/// # }
/// ```
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr<A>(pub A);

#[cfg(feature = "axum")]
impl<L> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Tracked<L>>>
    for PeerAddr<L::Addr>
where
    L: axum::serve::Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Tracked<L>>) -> Self {
        PeerAddr(stream.remote_addr().clone())
    }
}
