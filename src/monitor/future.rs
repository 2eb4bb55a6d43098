//! The response future of [`Monitor`](super::Monitor).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use crate::context::InRequest;
use crate::monitor::body::ResponseBody;
use crate::monitor::route_entry::Outcome;
use crate::monitor::tracker::Tracker;
use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`Monitor`](super::Monitor): runs the inner future inside the request's span and
    /// task-local context, and hands the request's tracker to the response body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: InRequest<F>,
        tracker: Option<Tracker>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: InRequest<F>, tracker: Option<Tracker>) -> Self {
        ResponseFuture { inner, tracker }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut tracker = this.tracker.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(tracker) = tracker.as_mut() {
                    tracker.on_headers(parts.status, &mut parts.headers);
                    // An empty body may never be polled: it is complete now.
                    if body.is_end_stream() {
                        tracker.finish_complete();
                    }
                }
                Ok(Response::from_parts(
                    parts,
                    ResponseBody::new(body, tracker),
                ))
            }
            Err(error) => {
                if let Some(tracker) = tracker.as_mut() {
                    tracker.finish(Outcome::ServerError);
                }
                Err(error)
            }
        })
    }
}
