//! Connections: what happens before a request exists. Open connections and their peak, connections still
//! sending their first request head and for how long, how connections end (closed by a header timeout,
//! refused by the HTTP server before any request reached the router, abandoned by the client), and the
//! process's open files against their limit.
//!
//! The request monitor cannot see a client that opens thousands of connections and never finishes a request
//! head: no request exists, `in_flight` stays at 0 while the server runs out of file descriptors. These
//! wrappers count at the connection level, one line in the application:
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> std::io::Result<()> {
//! let perf = perfscope::Perfscope::builder().build().unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(perf.listener(listener), app).await
//! # }
//! ```
//!
//! An application with its own hyper-util accept loop wraps each accepted stream with
//! [`ConnectionTracker::track`] (from [`Perfscope::connections`](crate::Perfscope::connections)) before handing
//! it to hyper.
//!
//! # What is measured
//! Per listener (its local address, or the name given):
//! - `open`, `peak_open`, `accepted_total`: connections open now, the most at once, accepted in total.
//! - `head_pending`: open connections whose **first** request head is not complete yet, with the ages of
//!   those connections (oldest, p50, p99), and, for heads that did complete, the time from accept to the end
//!   of the head (`head_read`: p50, p99, max).
//! - `closed`: connections ended, by reason (below).
//!
//! The end of a head is found in the bytes the server reads: the first blank line (`\r\n\r\n`, or `\n\n` as
//! hyper also accepts) after a non-blank byte. This costs a scan of the first head's bytes, nothing after it.
//!
//! # How connections end
//! The wrapper knows three facts when a connection is dropped: whether its first head was complete, whether
//! the client closed it (a read returned end of file or an error), and whether the server wrote anything; and
//! a fourth when the server tells it: that it closed the connection to stay within its connection limit.
//!
//! | reason | first head | who ended it | typical cause |
//! |---|---|---|---|
//! | `client_closed` | complete | client | the client was done, or left mid-request |
//! | `server_closed` | complete | server | keep-alive idle timeout, `Connection: close`, shutdown |
//! | `head_timeout` | incomplete, bytes or none | server, nothing written | hyper's `header_read_timeout`, shutdown |
//! | `head_abandoned` | incomplete, some bytes | client | a client that gave up mid-head, a slowloris leaving |
//! | `refused` | incomplete | server, after writing | hyper's automatic 431 (head too large), 414, 400 |
//! | `empty` | no byte | client | port probes, preconnects never used |
//! | `shed` | any | server, at its limit | an accept loop making room ([`TrackedIo::mark_shed`]) |
//!
//! `refused` counts the connections that hyper answered and closed before a request reached the router:
//! no route, no request ID, no monitor record. Its limits: a head that is complete (has its blank line) but
//! that hyper rejects (more than 100 headers, an invalid byte in a header) is counted `server_closed`, as is
//! a malformed head on a later request of a keep-alive connection; the wrapper only reads the first head.
//!
//! The wrapper sees the bytes below TLS as ciphertext: wrap the stream that comes out of the TLS handshake,
//! not the TCP stream under it.
//!
//! # Open files
//! [`ProcessStats::open_fds`](crate::ProcessStats::open_fds) (the entries of `/proc/self/fd`) and
//! [`ProcessStats::max_fds`](crate::ProcessStats::max_fds) (the soft `Max open files` of `/proc/self/limits`,
//! that is `RLIMIT_NOFILE`) are read when a snapshot is taken, on Linux.
//!
//! # Warnings
//! At each accept, a warning is logged (target `perfscope::connections`, at most once a minute each) when
//! the listener has [`head_pending_warning`](crate::PerfscopeBuilder::head_pending_warning) connections or
//! more still sending their head, or when the connections open on all listeners (each a file descriptor)
//! reach [`open_files_warning_ratio`](crate::PerfscopeBuilder::open_files_warning_ratio) of the open-file
//! limit (read at most once a second). The accept path never lists `/proc/self/fd`: at 20,000 descriptors
//! that takes tens of milliseconds, during which no connection is accepted.
//!
//! # Cardinality
//! At most [`MAX_LISTENERS`] listener names; later ones share [`OVERFLOW_LISTENER`].

mod histogram;
mod io;
mod listener;
pub(crate) mod state;

pub use io::TrackedIo;
pub use listener::ConnectionTracker;
#[cfg(feature = "axum")]
pub use listener::{PeerAddr, Tracked};
pub use state::{MAX_LISTENERS, OVERFLOW_LISTENER};
