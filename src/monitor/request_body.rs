//! The request body of [`Monitor`](super::Monitor): notices a client that leaves mid-body.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::context::RequestContext;

/// The error type of [`RequestBody`]: the inner body's error, boxed.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

pin_project! {
    /// Request body as [`Monitor`](super::Monitor) hands it to the inner service: the body it received,
    /// unchanged but for its error type (boxed, as axum's own `Body` does), watched for a read that fails
    /// because the client left.
    ///
    /// When a read fails with an I/O error of kind `UnexpectedEof` (hyper's "end of file before message
    /// length reached": the connection closed before the `Content-Length` or the last chunk),
    /// `ConnectionReset`, `ConnectionAborted` or `BrokenPipe`, anywhere in the error's source chain, the
    /// request is recorded as `cancelled` whatever status the handler then returns (axum's extractors answer
    /// 400 to a failed read, and no one receives it). Other body errors (a malformed chunk, a limit) leave the
    /// outcome to the status.
    ///
    /// axum's `Router` accepts any such body, so `Router::layer(perf.layer())` is unchanged:
    ///
    /// ```
    /// use axum::{Router, routing::post};
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let app: Router = Router::new()
    ///     .route("/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
    ///     .layer(perf.layer());
    /// # drop(app);
    /// ```
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        context: Option<RequestContext>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, context: RequestContext) -> Self {
        RequestBody {
            inner,
            context: Some(context),
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

/// Whether `error` or one of its sources is an I/O error that means the peer is gone.
fn client_left(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    // Bounded: a source chain is finite, but a cycle in a faulty one must not hang a request.
    for _ in 0..16 {
        let Some(error) = next else {
            return false;
        };
        if let Some(io) = error.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        next = error.source();
    }
    false
}

impl<B> Body for RequestBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Err(error)) => {
                let error: BoxError = error.into();
                if client_left(&*error)
                    && let Some(context) = this.context.take()
                {
                    context.mark_client_gone();
                }
                Poll::Ready(Some(Err(error)))
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            None => Poll::Ready(None),
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
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error reading a body from connection")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_gone_peer_is_found_in_the_source_chain() {
        let eof = Wrapper(io::Error::new(io::ErrorKind::UnexpectedEof, "end of file"));
        assert!(client_left(&eof));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(client_left(&reset));
        let malformed = Wrapper(io::Error::new(io::ErrorKind::InvalidData, "chunk size"));
        assert!(!client_left(&malformed));
        assert!(!client_left(&std::fmt::Error));
    }
}
