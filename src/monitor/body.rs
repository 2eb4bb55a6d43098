//! The response body of [`Monitor`](super::Monitor): notices the end of the stream.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::Frame;
use http_body::{Body, SizeHint};
use pin_project_lite::pin_project;

use crate::monitor::route_entry::Outcome;
use crate::monitor::tracker::Tracker;

pin_project! {
    /// Response body of [`Monitor`](super::Monitor). The request is recorded when the last frame is read, when
    /// the body reports its end after a frame (a body with an exact length may never be polled again), or when it
    /// is dropped before its end (`aborted`).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        tracker: Option<Tracker>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut tracker) = this.tracker.take() {
                tracker.finish(Outcome::of_drop(true));
            }
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, tracker: Option<Tracker>) -> Self {
        ResponseBody { inner, tracker }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        #[cfg(feature = "alloc")]
        let mark = this.tracker.as_ref().and_then(Tracker::allocation_mark);
        let poll = this.inner.as_mut().poll_frame(cx);
        #[cfg(feature = "alloc")]
        if let (Some(mark), Some(tracker)) = (mark, this.tracker.as_ref()) {
            tracker.charge_allocations_since(mark);
        }
        let frame = ready!(poll);
        let finished = match &frame {
            None => Some(None),
            Some(Err(_)) => Some(Some(Outcome::Aborted)),
            Some(Ok(_)) if this.inner.is_end_stream() => Some(None),
            Some(Ok(_)) => None,
        };
        if let Some(outcome) = finished
            && let Some(mut tracker) = this.tracker.take()
        {
            match outcome {
                Some(outcome) => tracker.finish(outcome),
                None => tracker.finish_complete(),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
