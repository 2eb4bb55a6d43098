//! The drop guard that follows a request from `call` to the end of its body and records it exactly once.

use std::sync::Arc;
use std::time::Duration;

use http::header::Entry;
use http::{HeaderMap, StatusCode, header};
use tokio::time::Instant;

use crate::context::RequestContext;
use crate::monitor::live::LiveToken;
use crate::monitor::route_entry::{Completion, Outcome};
use crate::monitor::state::MonitorState;
use crate::timing_header::{SERVER_TIMING, ValueBuf};

/// Room for the three values when the request timed no phase: a request ID of up to 128 bytes, the response
/// time, `total`, `app`, `db` and `cache` timings, and `alloc`.
const SMALL_BUF: usize = 320;
/// Room for the three values with up to [`MAX_PHASES`](crate::context::MAX_PHASES) phases and `other`.
const PHASES_BUF: usize = 1_280;

/// Records its request when finished, or as cancelled, aborted or panicked when dropped first.
#[derive(Debug)]
pub(crate) struct Tracker {
    state: Arc<MonitorState>,
    context: RequestContext,
    token: LiveToken,
    timing_headers: bool,
    to_headers: Option<Duration>,
    status: Option<u16>,
    stream: bool,
    done: bool,
    /// Whether the request is charged its allocations.
    #[cfg(feature = "alloc")]
    count_allocations: bool,
}

impl Tracker {
    pub(crate) fn new(
        state: Arc<MonitorState>,
        context: RequestContext,
        timing_headers: bool,
    ) -> Self {
        let token = state.request_started(&context);
        #[cfg(feature = "alloc")]
        let count_allocations = state.attributes_allocations();
        Tracker {
            state,
            context,
            token,
            timing_headers,
            to_headers: None,
            status: None,
            stream: false,
            done: false,
            #[cfg(feature = "alloc")]
            count_allocations,
        }
    }

    /// The context the request's polls charge their allocations to, when they are charged.
    #[cfg(feature = "alloc")]
    pub(crate) fn allocation_target(&self) -> Option<RequestContext> {
        self.count_allocations.then(|| self.context.clone())
    }

    /// This thread's allocation counter, when the request is charged its allocations: pass it to
    /// [`Tracker::charge_allocations_since`] after the work to charge.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn allocation_mark(&self) -> Option<u64> {
        self.count_allocations
            .then(crate::alloc::thread_allocated_bytes)
    }

    /// Charges the request what this thread allocated since `mark`.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(crate) fn charge_allocations_since(&self, mark: u64) {
        self.context
            .add_allocated(crate::alloc::thread_allocated_bytes().wrapping_sub(mark));
    }

    /// The response headers are ready: note the time and status, and add perfscope's headers.
    pub(crate) fn on_headers(&mut self, status: StatusCode, headers: &mut HeaderMap) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.context.start());
        self.to_headers = Some(elapsed);
        self.status = Some(status.as_u16());
        self.stream = status == StatusCode::SWITCHING_PROTOCOLS
            || headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        if !self.timing_headers {
            if let Entry::Vacant(slot) = headers.entry(&self.state.config.request_id_header)
                && let Some(value) = self.context.request_id().to_header_value()
            {
                slot.insert(value);
            }
            return;
        }
        // Phases are rare: the small buffer serves every response without them.
        if self.context.has_phases() {
            self.add_timing_headers::<PHASES_BUF>(elapsed, headers);
        } else {
            self.add_timing_headers::<SMALL_BUF>(elapsed, headers);
        }
    }

    /// Adds `X-Request-Id` (unless the application set one), `X-Response-Time` and `Server-Timing`, all three
    /// values written into one buffer and shared from one allocation.
    fn add_timing_headers<const N: usize>(&self, elapsed: Duration, headers: &mut HeaderMap) {
        let config = &self.state.config;
        let mut buf = ValueBuf::<N>::new();
        buf.push_bytes(self.context.request_id().as_bytes());
        let id = 0..buf.len();
        let mark = buf.len();
        let response_time = if buf.push_response_time(elapsed) {
            mark..buf.len()
        } else {
            0..0
        };
        let start = buf.len();
        self.push_server_timing(&mut buf, start, elapsed);
        let server_timing = start..buf.len();
        let values = buf.into_shared();
        if let Entry::Vacant(slot) = headers.entry(&config.request_id_header)
            && let Some(value) = values.value(id)
        {
            slot.insert(value);
        }
        if let Some(value) = values.value(response_time) {
            headers.insert(config.response_time_header.clone(), value);
        }
        if let Some(value) = values.value(server_timing) {
            headers.append(SERVER_TIMING.clone(), value);
        }
    }

    /// `total` (call to headers), `app` (total less the named phases), each phase, then `db` and `cache` when the
    /// request ran queries or cache loads.
    fn push_server_timing<const N: usize>(
        &self,
        buf: &mut ValueBuf<N>,
        start: usize,
        total: Duration,
    ) {
        buf.push_timing_from(start, "total", total);
        self.context.with_phases(|phases, overflowed| {
            let in_phases = phases
                .iter()
                .fold(overflowed, |sum, (_, duration)| sum + *duration);
            buf.push_timing_from(start, "app", total.saturating_sub(in_phases));
            for (name, duration) in phases {
                buf.push_timing_from(start, name, *duration);
            }
            if overflowed > Duration::ZERO {
                buf.push_timing_from(start, "other", overflowed);
            }
        });
        let counters = self.context.counters();
        if counters.queries > 0 {
            buf.push_timing_from(start, "db", counters.query_time);
        }
        if counters.cache_hits + counters.cache_misses > 0 {
            buf.push_timing_from(start, "cache", counters.cache_time);
        }
        #[cfg(feature = "alloc")]
        if self.count_allocations {
            buf.push_allocated_from(start, "alloc", counters.allocated_bytes);
        }
    }

    pub(crate) fn headers_sent(&self) -> bool {
        self.to_headers.is_some()
    }

    /// Records the request with `outcome`; later calls and the drop do nothing.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        // A client that left mid-body never gets the response, whatever status the handler made of the
        // failed read.
        let outcome = if self.context.panicked() {
            Outcome::Panic
        } else if self.context.client_gone() {
            Outcome::Cancelled
        } else {
            outcome
        };
        let end = Instant::now();
        let completion = Completion {
            total: end.saturating_duration_since(self.context.start()),
            to_headers: self.to_headers,
            status: self.status,
            outcome,
            stream: self.stream,
            slot: self.state.slot(end),
            #[cfg(feature = "alloc")]
            allocated: self.count_allocations.then(|| self.context.allocated()),
        };
        self.state
            .request_finished(&self.context, self.token, completion);
    }

    /// Finished with the body complete: the outcome follows the status.
    pub(crate) fn finish_complete(&mut self) {
        let outcome = self.status.map_or(Outcome::ServerError, Outcome::of_status);
        self.finish(outcome);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Outcome::of_drop(self.headers_sent()));
        }
    }
}
