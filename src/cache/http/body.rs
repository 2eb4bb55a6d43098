//! The response body of [`ResponseCache`](super::ResponseCache): stored bytes, the handler's body as it is, or
//! the part of it read ahead while trying to store it followed by the rest; and that read-ahead.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Response body of [`ResponseCache`](super::ResponseCache).
    ///
    /// A hit is one frame of stored bytes; a bypass or an unstorable miss is the handler's body untouched; a
    /// response that was read ahead to be stored but turned out too large replays what was read, then continues
    /// with the handler's body.
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Full { data: Option<Bytes> },
        Inner { #[pin] body: B },
        Replay {
            prefix: VecDeque<Bytes>,
            trailers: Option<HeaderMap>,
            error: Option<B::Error>,
            rest: Option<Pin<Box<B>>>,
        },
    }
}

impl<B: Body> ResponseBody<B> {
    /// Stored bytes (`None` for a header-only response).
    pub(crate) fn full(data: Option<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: data.filter(|data| !data.is_empty()),
            },
        }
    }

    /// The handler's body as it is.
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }
}

/// A handler's body being read ahead, up to a limit, to be stored.
pub(crate) struct ReadAhead<B> {
    body: Pin<Box<B>>,
    chunks: VecDeque<Bytes>,
    len: usize,
}

/// How a read-ahead ended.
pub(crate) enum ReadEnd<E> {
    /// The whole body is read.
    Complete,
    /// More than the limit was read.
    TooLarge,
    /// Trailers came (the body is then over, or should be).
    Trailers(Option<HeaderMap>),
    /// The body failed.
    Error(E),
}

impl<B: Body> ReadAhead<B> {
    pub(crate) fn new(body: B) -> Self {
        ReadAhead {
            body: Box::pin(body),
            chunks: VecDeque::new(),
            len: 0,
        }
    }

    /// Reads until the end, an error, trailers, or more than `limit` bytes.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Poll<ReadEnd<B::Error>> {
        loop {
            match ready!(self.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(ReadEnd::Complete),
                Some(Err(error)) => return Poll::Ready(ReadEnd::Error(error)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let len = data.remaining();
                        self.len = self.len.saturating_add(len);
                        self.chunks.push_back(data.copy_to_bytes(len));
                        if self.len > limit {
                            return Poll::Ready(ReadEnd::TooLarge);
                        }
                    }
                    Err(frame) => {
                        return Poll::Ready(ReadEnd::Trailers(frame.into_trailers().ok()));
                    }
                },
            }
        }
    }

    /// What was read, as one `Bytes` (no copy when it came in one frame).
    pub(crate) fn into_bytes(self) -> Bytes {
        let mut chunks = self.chunks.into_iter();
        let Some(first) = chunks.next() else {
            return Bytes::new();
        };
        let Some(second) = chunks.next() else {
            return first;
        };
        let mut all = Vec::with_capacity(self.len);
        for chunk in [first, second].into_iter().chain(chunks) {
            all.extend_from_slice(&chunk);
        }
        Bytes::from(all)
    }

    /// The body for the client when the read-ahead stopped short of storing: what was read, then what ended it.
    pub(crate) fn into_replay(self, end: ReadEnd<B::Error>) -> ResponseBody<B> {
        let ReadAhead { body, chunks, .. } = self;
        let (trailers, error, rest) = match end {
            ReadEnd::Complete | ReadEnd::TooLarge => (None, None, Some(body)),
            ReadEnd::Trailers(trailers) => (trailers, None, Some(body)),
            ReadEnd::Error(error) => (None, Some(error), None),
        };
        ResponseBody {
            kind: Kind::Replay {
                prefix: chunks,
                trailers,
                error,
                rest,
            },
        }
    }
}

impl<B: Body> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full { .. } => "full",
            Kind::Inner { .. } => "inner",
            Kind::Replay { .. } => "replay",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            KindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map(into_bytes))),
            KindProj::Replay {
                prefix,
                trailers,
                error,
                rest,
            } => {
                if let Some(data) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                if let Some(trailers) = trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                if let Some(error) = error.take() {
                    *rest = None;
                    return Poll::Ready(Some(Err(error)));
                }
                match rest {
                    Some(body) => body
                        .as_mut()
                        .poll_frame(cx)
                        .map(|frame| frame.map(|frame| frame.map(into_bytes))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Replay {
                prefix,
                trailers,
                error,
                rest,
            } => {
                prefix.is_empty()
                    && trailers.is_none()
                    && error.is_none()
                    && rest.as_ref().is_none_or(|body| body.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            Kind::Inner { body } => body.size_hint(),
            Kind::Replay { prefix, rest, .. } => {
                let read: u64 = prefix.iter().map(|data| data.len() as u64).sum();
                let rest = rest
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint());
                // Upper first: `SizeHint` panics when the lower bound would pass the upper one.
                let mut hint = SizeHint::new();
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(read));
                }
                hint.set_lower(rest.lower().saturating_add(read));
                hint
            }
        }
    }
}

/// A frame's data as `Bytes` (free when it already is `Bytes`, as axum's are).
fn into_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    type Inner = Full<Bytes>;
    type Chunks = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>,
    >;

    fn chunks(frames: Vec<Result<Frame<Bytes>, std::io::Error>>) -> Chunks {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn data(text: &'static str) -> Result<Frame<Bytes>, std::io::Error> {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    async fn read<B: Body>(reader: &mut ReadAhead<B>, limit: usize) -> ReadEnd<B::Error> {
        std::future::poll_fn(|cx| reader.poll_read(cx, limit)).await
    }

    #[tokio::test]
    async fn full_and_inner() {
        let full = ResponseBody::<Inner>::full(Some(Bytes::from_static(b"abc")));
        assert_eq!(full.size_hint().exact(), Some(3));
        assert_eq!(full.collect().await.unwrap().to_bytes(), "abc");
        let empty = ResponseBody::<Inner>::full(Some(Bytes::new()));
        assert!(empty.is_end_stream());
        let inner = ResponseBody::inner(Full::new(Bytes::from_static(b"xyz")));
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "xyz");
    }

    #[tokio::test]
    async fn read_ahead_complete_and_too_large() {
        let mut reader = ReadAhead::new(chunks(vec![data("ab"), data("cd"), data("ef")]));
        assert!(matches!(read(&mut reader, 6).await, ReadEnd::Complete));
        assert_eq!(reader.into_bytes(), "abcdef");

        let mut reader = ReadAhead::new(Full::new(Bytes::from_static(b"one frame")));
        assert!(matches!(read(&mut reader, 100).await, ReadEnd::Complete));
        assert_eq!(reader.into_bytes(), "one frame");

        // over the limit: the client still gets every byte, in order
        let mut reader = ReadAhead::new(chunks(vec![data("ab"), data("cd"), data("ef")]));
        let end = read(&mut reader, 3).await;
        assert!(matches!(end, ReadEnd::TooLarge));
        let replay = reader.into_replay(end);
        assert_eq!(replay.size_hint().lower(), 4);
        assert_eq!(replay.collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn replayed_errors_and_trailers_come_after_the_prefix() {
        let mut reader = ReadAhead::new(chunks(vec![
            data("ab"),
            Err(std::io::Error::other("broken")),
            data("never"),
        ]));
        let end = read(&mut reader, 100).await;
        assert!(matches!(end, ReadEnd::Error(_)));
        let mut body = std::pin::pin!(reader.into_replay(end));
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());

        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        let mut reader = ReadAhead::new(chunks(vec![data("ab"), Ok(Frame::trailers(trailers))]));
        let end = read(&mut reader, 100).await;
        assert!(matches!(end, ReadEnd::Trailers(Some(_))));
        let collected = reader.into_replay(end).collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-t"], "1");
        assert_eq!(collected.to_bytes(), "ab");
    }
}
