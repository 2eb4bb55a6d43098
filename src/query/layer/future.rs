//! The response future of [`QueryService`](super::QueryService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::X_QUERY_COUNT;
use crate::context::{InRequest, RequestContext};
use crate::timing_header::{SERVER_TIMING, ValueBuf};

pin_project! {
    /// Response future of [`QueryService`](super::QueryService): runs the inner future inside the request's
    /// task-local context (and span, when this layer made the context) and adds the query headers.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: InRequest<F>,
        context: RequestContext,
        headers: bool,
        owned: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: InRequest<F>,
        context: RequestContext,
        headers: bool,
        owned: bool,
    ) -> Self {
        ResponseFuture {
            inner,
            context,
            headers,
            owned,
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = ready!(this.inner.poll(cx));
        if let Ok(response) = result.as_mut() {
            let counters = this.context.counters();
            let headers = response.headers_mut();
            if *this.owned
                && !headers.contains_key(&crate::request_id::HEADER)
                && let Some(value) = this.context.request_id().to_header_value()
            {
                headers.insert(crate::request_id::HEADER.clone(), value);
            }
            if *this.headers {
                headers.insert(X_QUERY_COUNT.clone(), HeaderValue::from(counters.queries));
                if *this.owned && counters.queries > 0 {
                    let mut value = ValueBuf::<32>::new();
                    if value.push_timing("db", counters.query_time)
                        && let Some(value) = value.to_header_value()
                    {
                        headers.append(SERVER_TIMING.clone(), value);
                    }
                }
            }
        }
        Poll::Ready(result)
    }
}
