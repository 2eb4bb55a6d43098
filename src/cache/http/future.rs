//! The response future of [`ResponseCache`](super::ResponseCache).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::ETAG;
use http::response::Parts;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower_service::Service;

use super::body::{ReadAhead, ReadEnd, ResponseBody};
use super::entry::{CacheStatus, CachedResponse, Usability, X_CACHE};
use super::extensions::CacheTags;
use super::flight::{Delivery, FlightGuard};
use super::key::ResponseKey;
use super::layer::{Pending, Shared, Stats};
use super::policy::SkipReason;
use super::service::{answer, nested_cache_time, stored, strip_conditionals, strip_tags};
use crate::cache::Ticket;
use crate::context::RequestContext;

pin_project! {
    /// Response future of [`ResponseCache`](super::ResponseCache): a stored response, or the inner service's
    /// response (after waiting for another request's load of the same key, and after reading the body ahead
    /// when it may be stored).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S::Future, ResBody>,
        miss: Option<Miss<S, ReqBody>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B>
    where
        B: Body,
    {
        Ready { response: Option<Response<ResponseBody<B>>> },
        Waiting { receiver: oneshot::Receiver<Delivery> },
        SecondLevel { lookup: SecondLevelLookup },
        PollReady,
        Calling { #[pin] future: F },
        Collecting { collect: Option<Collect<B>> },
        Done,
    }
}

/// A lookup in the second level (boxed: it runs only after a miss of this node's store): the key and value
/// found and put into the store, or the generation a response computed now is born under.
pub(crate) type SecondLevelLookup =
    Pin<Box<dyn Future<Output = Result<(ResponseKey, CachedResponse), Option<u64>>> + Send>>;

/// What a request that looked up and missed carries until its response is sent.
pub(crate) struct Miss<S, ReqBody> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) base: ResponseKey,
    /// The request's headers as the client sent them (the handler gets them without conditionals), kept when
    /// the response may be stored or replaced by a stale one.
    pub(crate) request_headers: Option<HeaderMap>,
    /// Held by the request that loads the key for the others.
    pub(crate) guard: Option<FlightGuard>,
    /// The inner service and the request, when the call waits for another request's load first.
    pub(crate) deferred: Option<(S, Request<ReqBody>)>,
    pub(crate) context: Option<RequestContext>,
    /// Taken before the handler is called: what it computes is stored only if nothing was invalidated since.
    pub(crate) ticket: Ticket,
    /// The request's cache time before the handler was called: loads of caches inside the handler record
    /// their own time, which the miss does not count again.
    pub(crate) cache_time_before: Duration,
    pub(crate) head: bool,
    /// Whether the response may be stored.
    pub(crate) store: bool,
    /// A stored response usable instead of an error (`stale-if-error`).
    pub(crate) fallback: Option<CachedResponse>,
    pub(crate) started: Instant,
    /// The generation the second level answered a lookup with, for the write of what the handler computes.
    pub(crate) l2_born: Option<u64>,
}

/// A response whose body is being read ahead to be stored.
struct Collect<B> {
    parts: Parts,
    reader: ReadAhead<B>,
    pending: Pending,
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    pub(crate) fn ready(response: Response<ResponseBody<ResBody>>) -> Self {
        ResponseFuture {
            state: State::Ready {
                response: Some(response),
            },
            miss: None,
        }
    }

    pub(crate) fn bypass(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            miss: None,
        }
    }

    pub(crate) fn calling(future: S::Future, miss: Miss<S, ReqBody>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            miss: Some(miss),
        }
    }

    /// The leader of a key reads the second level before it calls the handler (`miss.deferred`).
    #[cfg(feature = "redis")]
    pub(crate) fn second_level(lookup: SecondLevelLookup, miss: Miss<S, ReqBody>) -> Self {
        ResponseFuture {
            state: State::SecondLevel { lookup },
            miss: Some(miss),
        }
    }

    pub(crate) fn waiting(receiver: oneshot::Receiver<Delivery>, miss: Miss<S, ReqBody>) -> Self {
        ResponseFuture {
            state: State::Waiting { receiver },
            miss: Some(miss),
        }
    }
}

impl<S, ReqBody> Miss<S, ReqBody> {
    /// The `X-Cache: MISS` response around the handler's parts; records the miss.
    fn respond<B: Body>(
        &self,
        mut parts: Parts,
        body: ResponseBody<B>,
    ) -> Response<ResponseBody<B>> {
        parts
            .headers
            .insert(X_CACHE, CacheStatus::Miss.header_value());
        self.shared.count(&self.base, CacheStatus::Miss);
        if let Some(context) = &self.context {
            // The handler's time less what nested cache loads already recorded in it.
            let nested = context
                .counters()
                .cache_time
                .saturating_sub(self.cache_time_before);
            context.record_cache_miss(self.started.elapsed().saturating_sub(nested));
        }
        Response::from_parts(parts, body)
    }

    /// The handler is about to be called: starts the miss's clock and takes its ticket.
    fn start(&mut self) {
        self.ticket = self.shared.store.ticket();
        self.cache_time_before = nested_cache_time(self.context.as_ref());
        self.started = Instant::now();
    }

    /// The stored response to send instead of an error, if there is one.
    fn stale_instead<B: Body>(&mut self) -> Option<Response<ResponseBody<B>>> {
        let fallback = self.fallback.take()?;
        let entry = stored(&fallback)?;
        let empty = HeaderMap::new();
        let headers = self.request_headers.as_ref().unwrap_or(&empty);
        Some(answer(
            &self.shared,
            &self.base,
            entry,
            headers,
            self.head,
            CacheStatus::Stale,
            self.context.as_ref(),
        ))
    }

    /// After another request's load: its stored response, if it answers this request (the same variant when
    /// it has a `Vary`) and is still usable.
    fn after_wait<B: Body>(&mut self, delivery: Delivery) -> Option<Response<ResponseBody<B>>> {
        let (_, request) = self.deferred.as_ref()?;
        let (stored_under, value) = delivery;
        let entry = stored(&value)?;
        // The leader stored it, but an invalidation may have landed since (this request may have started after
        // it): take it only if the store still holds it.
        if !self.shared.still_stored(&stored_under, &value) {
            return None;
        }
        let ours = match &entry.vary {
            None => stored_under == self.base,
            Some(spec) => spec
                .variant_key(
                    &self.base,
                    request.headers(),
                    self.shared.config.key.max_key_bytes,
                )
                .is_some_and(|variant| variant == stored_under),
        };
        let status = match entry.usability(Instant::now()) {
            Usability::Fresh if ours => CacheStatus::Hit,
            Usability::Stale if ours => CacheStatus::Stale,
            _ => return None,
        };
        Some(answer(
            &self.shared,
            &self.base,
            entry,
            request.headers(),
            self.head,
            status,
            self.context.as_ref(),
        ))
    }

    /// The second level had the response (now in this node's store too): answer with it if it is fresh and
    /// release the requests waiting for this key; else `None`, and the handler is called.
    fn answer_from_second_level<B: Body>(
        &mut self,
        stored_under: ResponseKey,
        value: CachedResponse,
    ) -> Option<Response<ResponseBody<B>>> {
        let (_, request) = self.deferred.as_ref()?;
        let entry = stored(&value)?;
        if entry.usability(Instant::now()) != Usability::Fresh {
            return None;
        }
        let response = answer(
            &self.shared,
            &self.base,
            entry,
            request.headers(),
            self.head,
            CacheStatus::SecondLevelHit,
            self.context.as_ref(),
        );
        if let Some(guard) = self.guard.take() {
            guard.complete(&stored_under, &value);
        }
        self.deferred = None;
        Some(response)
    }

    /// The handler answered: send it on, or start reading its body to store it.
    fn on_response<F, B: Body>(&mut self, response: Response<B>) -> State<F, B> {
        let (mut parts, body) = response.into_parts();
        if matches!(parts.status.as_u16(), 500 | 502 | 503 | 504)
            && let Some(stale) = self.stale_instead()
        {
            self.guard = None;
            return State::Ready {
                response: Some(stale),
            };
        }
        let prepared = match (&self.request_headers, self.store) {
            (Some(request_headers), true) => {
                let tags = parts.extensions.remove::<CacheTags>();
                let lower = body.size_hint().lower();
                self.shared
                    .prepare(
                        &self.base,
                        request_headers,
                        parts.status,
                        &mut parts.headers,
                        tags,
                        lower,
                    )
                    .ok()
            }
            _ => {
                strip_tags(&mut parts.headers);
                None
            }
        };
        match prepared {
            Some(pending) => State::Collecting {
                collect: Some(Collect {
                    parts,
                    reader: ReadAhead::new(body),
                    pending,
                }),
            },
            None => {
                // Release the waiters now: they call the handler themselves.
                self.guard = None;
                State::Ready {
                    response: Some(self.respond(parts, ResponseBody::inner(body))),
                }
            }
        }
    }

    /// The body was read in full: store it and answer.
    fn complete<B: Body>(&mut self, collect: Collect<B>) -> Response<ResponseBody<B>> {
        let Collect {
            mut parts,
            reader,
            pending,
        } = collect;
        let body = reader.into_bytes();
        let (stored_under, value, stored_now) = self.shared.store(
            &self.base,
            pending,
            parts.status,
            &parts.headers,
            body.clone(),
            self.ticket,
            self.l2_born,
        );
        match self.guard.take() {
            Some(guard) if stored_now => guard.complete(&stored_under, &value),
            // Not stored (an invalidation landed while the handler ran): the waiters, which may have come after
            // the invalidation, call the handler themselves.
            guard => drop(guard),
        }
        if let (Some(entry), Some(request_headers)) = (stored(&value), &self.request_headers) {
            if super::etag::none_match(request_headers, &entry.etag) {
                Stats::add(&self.shared.stats.not_modified);
                let (not_modified, _) = entry
                    .not_modified(Instant::now(), CacheStatus::Miss)
                    .into_parts();
                return self.respond(not_modified, ResponseBody::full(None));
            }
            if !parts.headers.contains_key(ETAG) {
                parts.headers.insert(ETAG, entry.etag.clone());
            }
        }
        self.respond(parts, ResponseBody::full(Some(body)))
    }

    /// The body could not be stored: answer with what was read and the rest.
    fn give_up<B: Body>(
        &mut self,
        collect: Collect<B>,
        end: ReadEnd<B::Error>,
    ) -> Response<ResponseBody<B>> {
        self.shared.stats.skip(SkipReason::Body);
        self.guard = None;
        let Collect { parts, reader, .. } = collect;
        self.respond(parts, reader.into_replay(end))
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Ready { response } => {
                    let response = response.take();
                    this.state.set(State::Done);
                    if let Some(response) = response {
                        return Poll::Ready(Ok(response));
                    }
                    continue;
                }
                StateProj::Waiting { receiver } => {
                    // An error when the leader stored nothing: then this request calls the handler itself.
                    let delivery = ready!(Pin::new(receiver).poll(cx)).ok();
                    let response = delivery
                        .zip(this.miss.as_mut())
                        .and_then(|(delivery, miss)| miss.after_wait(delivery));
                    match response {
                        Some(response) => State::Ready {
                            response: Some(response),
                        },
                        None => State::PollReady,
                    }
                }
                StateProj::SecondLevel { lookup } => {
                    let found = ready!(lookup.as_mut().poll(cx));
                    let Some(miss) = this.miss.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let response = match found {
                        Ok((stored_under, value)) => {
                            miss.answer_from_second_level(stored_under, value)
                        }
                        Err(born) => {
                            miss.l2_born = born;
                            None
                        }
                    };
                    match response {
                        Some(response) => State::Ready {
                            response: Some(response),
                        },
                        None => State::PollReady,
                    }
                }
                StateProj::PollReady => {
                    let Some(miss) = this.miss.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let Some((service, _)) = miss.deferred.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(error));
                    }
                    let Some((mut service, mut request)) = miss.deferred.take() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    if miss.store || miss.fallback.is_some() {
                        miss.request_headers = Some(request.headers().clone());
                    }
                    if miss.store {
                        strip_conditionals(request.headers_mut());
                    }
                    miss.start();
                    State::Calling {
                        future: service.call(request),
                    }
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    match (result, this.miss.as_mut()) {
                        (Ok(response), Some(miss)) => miss.on_response(response),
                        (Ok(response), None) => {
                            let (mut parts, body) = response.into_parts();
                            strip_tags(&mut parts.headers);
                            parts
                                .headers
                                .insert(X_CACHE, CacheStatus::Bypass.header_value());
                            let response = Response::from_parts(parts, ResponseBody::inner(body));
                            State::Ready {
                                response: Some(response),
                            }
                        }
                        (Err(error), miss) => match miss.and_then(|miss| {
                            // Nothing will be stored: release the waiters now.
                            miss.guard = None;
                            miss.stale_instead()
                        }) {
                            Some(stale) => State::Ready {
                                response: Some(stale),
                            },
                            None => {
                                this.state.set(State::Done);
                                return Poll::Ready(Err(error));
                            }
                        },
                    }
                }
                StateProj::Collecting { collect } => {
                    let limit = this
                        .miss
                        .as_ref()
                        .map_or(0, |miss| miss.shared.config.max_body);
                    let Some(reading) = collect.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let end = ready!(reading.reader.poll_read(cx, limit));
                    let (Some(collect), Some(miss)) = (collect.take(), this.miss.as_mut()) else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let response = match end {
                        ReadEnd::Complete => miss.complete(collect),
                        end => miss.give_up(collect, end),
                    };
                    State::Ready {
                        response: Some(response),
                    }
                }
                // PANIC: polling a future after it returned `Ready` breaks the `Future` contract.
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            this.state.set(next);
        }
    }
}

impl<S, ReqBody, ResBody> std::fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Ready { .. } => "ready",
            State::Waiting { .. } => "waiting",
            State::SecondLevel { .. } => "second_level",
            State::PollReady => "poll_ready",
            State::Calling { .. } => "calling",
            State::Collecting { .. } => "collecting",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("miss", &self.miss.is_some())
            .finish_non_exhaustive()
    }
}
