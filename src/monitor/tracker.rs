//! The drop guard that follows a request from `call` to the end of its body and records it exactly once.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::time::Instant;

use crate::context::RequestContext;
use crate::monitor::live::LiveToken;
use crate::monitor::route_entry::{Completion, Outcome};
use crate::monitor::state::MonitorState;
use crate::timing_header::{self as headers, SERVER_TIMING, ValueBuf};

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
}

impl Tracker {
    pub(crate) fn new(
        state: Arc<MonitorState>,
        context: RequestContext,
        timing_headers: bool,
    ) -> Self {
        let token = state.request_started(&context);
        Tracker {
            state,
            context,
            token,
            timing_headers,
            to_headers: None,
            status: None,
            stream: false,
            done: false,
        }
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
        let config = &self.state.config;
        if !headers.contains_key(&config.request_id_header)
            && let Some(value) = self.context.request_id().to_header_value()
        {
            headers.insert(config.request_id_header.clone(), value);
        }
        if self.timing_headers {
            if let Some(value) = headers::response_time(elapsed) {
                headers.insert(config.response_time_header.clone(), value);
            }
            if let Some(value) = self.server_timing(elapsed) {
                headers.append(SERVER_TIMING.clone(), value);
            }
        }
    }

    /// `total` (call to headers), `app` (total less the named phases), each phase, then `db` and `cache` when the
    /// request ran queries or cache loads.
    fn server_timing(&self, total: Duration) -> Option<HeaderValue> {
        let mut in_phases = Duration::ZERO;
        self.context
            .for_each_phase(|_, duration| in_phases += duration);
        let mut buf = ValueBuf::<768>::new();
        buf.push_timing("total", total);
        buf.push_timing("app", total.saturating_sub(in_phases));
        self.context.for_each_phase(|name, duration| {
            buf.push_timing(name, duration);
        });
        let counters = self.context.counters();
        if counters.queries > 0 {
            buf.push_timing("db", counters.query_time);
        }
        if counters.cache_hits + counters.cache_misses > 0 {
            buf.push_timing("cache", counters.cache_time);
        }
        buf.to_header_value()
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
        let outcome = if self.context.panicked() {
            Outcome::Panic
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
