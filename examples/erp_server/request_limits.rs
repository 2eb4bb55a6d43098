//! Limits on each request, from the ecosystem's layers: how big its body may be, how long it may take to arrive,
//! and how many requests run at once.
//!
//! - **Body size** ([`MAX_BODY_BYTES`]): tower-http's `RequestBodyLimitLayer` answers 413 from `Content-Length`
//!   before a byte of the body is read, and stops a chunked body at the limit (the JSON extractor then answers
//!   413 too). axum's own `DefaultBodyLimit` is turned off so there is one limit, not two.
//! - **Body deadline** ([`BODY_DEADLINE`]): the whole body must arrive within it, counted from when the request
//!   reaches the application; a body sent at one byte a second gets 408 at the deadline (see [`DeadlineBody`]).
//! - **In-flight requests** ([`MAX_IN_FLIGHT`]): tower's `GlobalConcurrencyLimitLayer` behind `LoadShedLayer`:
//!   a request beyond the limit is answered 503 with `Retry-After` at once instead of queueing, so an overload
//!   shows as fast refusals, not as every request getting slower.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::error::AppError;

/// Largest request body, bytes. The demo's bodies are small JSON objects.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time for the whole request body to arrive.
pub(crate) const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Requests handled at once; more are refused with 503.
pub(crate) const MAX_IN_FLIGHT: usize = 512;
/// `Retry-After` of a 503 from the in-flight limit, seconds.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// Wraps the application routes in the request limits. Call it on the router with every application route
/// added (the layers apply to the routes already there) and before perfscope's layers, so the monitor sees the
/// 413s, 408s and 503s.
pub(crate) fn apply<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(axum::middleware::map_request(with_body_deadline))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT)),
        )
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        // Outside the body limit, whose 413 it rewrites.
        .layer(axum::middleware::map_response(json_payload_too_large))
        .layer(DefaultBodyLimit::disable())
}

/// Gives the request's body [`BODY_DEADLINE`] to arrive.
async fn with_body_deadline(request: Request) -> Request {
    request.map(|body| Body::new(DeadlineBody::new(body, BODY_DEADLINE)))
}

/// The in-flight limit's refusal (and any other error of the limit layers, which have none today).
async fn overloaded(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        let mut response = AppError::Unavailable {
            message: "the server is busy",
            retry_after_secs: OVERLOADED_RETRY_AFTER_SECS,
        }
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        AppError::internal(error).into_response()
    }
}

/// tower-http answers 413 in plain text; every error of the demo is JSON.
async fn json_payload_too_large(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        AppError::Rejected {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the request body must be at most {MAX_BODY_BYTES} bytes"),
        }
        .into_response()
    } else {
        response
    }
}

/// The error of a body that did not arrive within its deadline; the handlers' error type answers it with 408.
#[derive(Debug)]
pub(crate) struct BodyDeadlineElapsed;

impl std::fmt::Display for BodyDeadlineElapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyDeadlineElapsed {}

/// Whether `error` or one of its sources is a [`BodyDeadlineElapsed`].
pub(crate) fn deadline_elapsed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyDeadlineElapsed>() {
            return true;
        }
        current = error.source();
    }
    false
}

pin_project! {
    /// A request body that fails with [`BodyDeadlineElapsed`] once its deadline has passed. Unlike tower-http's
    /// `RequestBodyTimeoutLayer`, which restarts its timer at every frame (so a body trickling one byte at a time
    /// never times out), the deadline is fixed when the request arrives.
    pub(crate) struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: tokio::time::Sleep,
    }
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must end within `within` from now.
    pub(crate) fn new(inner: B, within: Duration) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep(within),
        }
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        // What has arrived is passed on; the deadline matters only while waiting for more.
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::poll_fn;

    use http_body::Body as _;
    use tokio::time::Instant;

    use super::*;

    /// Sends one byte, then nothing.
    struct Stalls(bool);

    impl http_body::Body for Stalls {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_at_the_deadline_not_before() {
        let mut body = std::pin::pin!(DeadlineBody::new(Stalls(false), Duration::from_secs(10)));
        let started = Instant::now();
        let first = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(matches!(first, Some(Ok(_))));
        let second = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(second.is_some_and(|frame| frame.is_err_and(|error| deadline_elapsed(&*error))));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
