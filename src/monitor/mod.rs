//! The request-lifecycle monitor: per-route latency histograms, status and outcome counts, in-flight gauges,
//! slow and hung requests, request IDs and timing headers.
//!
//! Built through [`Perfscope`](crate::Perfscope); [`MonitorLayer`] is what `perf.layer()` returns.
//!
//! # What is measured
//! For each request: the time to the response headers, and the time to the end of the response body (the
//! latency the percentiles describe). Event streams (`text/event-stream`) and protocol upgrades (101) go to a
//! separate stream series, so a five-minute stream does not turn a route's p99 into five minutes. Each request
//! ends with one outcome: `ok | client_error | server_error | cancelled | aborted | panic | timeout`; a drop
//! guard records requests whose future or body was dropped early, so gauges stay balanced. A request whose
//! body could not be read to its end because the client left (end of file before the announced length, a
//! reset) is `cancelled`, whatever status the handler made of the failed read: see [`RequestBody`].
//!
//! # Route labels
//! The route label is axum's `MatchedPath` template (`/api/products/{id}`), never the raw path. Requests that
//! matched no route share `<unmatched>`; once `max_routes` templates exist, new ones share `<overflow>` (and are
//! counted). Methods outside the nine standard ones are labelled `_OTHER`.
//!
//! # Ordering with other layers
//! Add `perf.layer()` with `Router::layer` after the routes, and after any `CatchPanicLayer` or timeout layer,
//! so that it is outermost: it then sees the route template, the final status of panics (500 from
//! `CatchPanicLayer`) and timeouts, and sets `X-Request-Id` on every response. A perfscope layer wrapped around
//! the whole router (outside routing) still works: the route is then filled in by a perfscope layer inside the
//! router, if there is one, or counted as `<unmatched>`.

#[cfg(feature = "alloc")]
mod alloc;
mod body;
pub(crate) mod config;
pub(crate) mod counters;
mod future;
pub(crate) mod histogram;
mod layer;
mod live;
pub(crate) mod registry;
mod request_body;
pub(crate) mod route_entry;
mod slow;
pub(crate) mod state;
mod tracker;
pub(crate) mod windows;

pub use crate::header_policy::HeaderPolicy;
pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::{Monitor, MonitorLayer};
pub use request_body::RequestBody;
pub use route_entry::Outcome;

#[doc(hidden)]
pub mod bench_support {
    //! Internals exposed for the criterion benches only; not part of the API.
    pub use super::histogram::{Layout, ShardedHistogram};

    /// Records one finished request of `latency` with `status` on `method` `route` of `perf`, through the same
    /// route table and histograms as a request through the layer: known distributions for tests and benches.
    pub fn record(
        perf: &crate::Perfscope,
        method: crate::MethodLabel,
        route: &str,
        latency: std::time::Duration,
        status: u16,
    ) {
        perf.inner
            .monitor
            .record_sample(method, route, latency, status);
    }
}
