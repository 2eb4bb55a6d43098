//! [`ResponseCache`], the service of [`ResponseCacheLayer`](super::ResponseCacheLayer).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

use super::body::{ReadAhead, ReadEnd};
use super::entry::{CacheStatus, CachedResponse, Entry, Stored, Usability};
use super::extensions::{CACHE_TAG_HEADER, CacheIdentity, CacheTags};
use super::flight::{FlightGuard, Joined};
use super::future::{Miss, ResponseFuture};
use super::key::{KeyInput, ResponseKey, base_key};
use super::layer::{Shared, Stats};
use super::policy::{SkipReason, classify_request};
use crate::cache::Ticket;
use crate::context::RequestContext;

/// The service of [`ResponseCacheLayer`](super::ResponseCacheLayer): answers from the store, or calls the inner
/// service and stores what it may. Keeps the inner service's error type.
#[derive(Debug, Clone)]
pub struct ResponseCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ResponseCache<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        ResponseCache { inner, shared }
    }
}

/// The stored response inside a looked-up value.
pub(crate) fn stored(value: &CachedResponse) -> Option<&Stored> {
    match value.entry() {
        Entry::Response(stored) => Some(stored),
        Entry::Vary(_) => None,
    }
}

/// A stored response as the answer to `request_headers`: `304` when `If-None-Match` matches, else the full
/// response (header-only for `HEAD`). Counts it and records a hit on the request's context.
pub(crate) fn answer<B: Body>(
    shared: &Shared,
    base: &ResponseKey,
    stored: &Stored,
    request_headers: &HeaderMap,
    head: bool,
    status: CacheStatus,
    context: Option<&RequestContext>,
) -> Response<super::ResponseBody<B>> {
    let now = Instant::now();
    let stats = &shared.stats;
    shared.count(base, status);
    if let Some(context) = context {
        context.record_cache_hit();
    }
    let response = if super::etag::none_match(request_headers, &stored.etag) {
        Stats::add(&stats.not_modified);
        stored.not_modified(now, status)
    } else {
        stored.to_response(now, status, head)
    };
    response.map(super::ResponseBody::full)
}

/// Removes the headers that would make the handler answer with something other than the full response.
pub(crate) fn strip_conditionals(headers: &mut HeaderMap) {
    for name in [IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_RANGE, RANGE] {
        headers.remove(name);
    }
}

/// Removes the tag header from a response that is not stored.
pub(crate) fn strip_tags(headers: &mut HeaderMap) {
    headers.remove(CACHE_TAG_HEADER);
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Response = Response<super::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let config = &shared.config;
        let context = RequestContext::of_request(&request).or_else(RequestContext::current);
        let identity = request.extensions().get::<CacheIdentity>();
        let usage = match classify_request(
            request.method(),
            request.headers(),
            config.key_by_identity && identity.is_some(),
            config.honor_request_directives,
        ) {
            Ok(usage) => usage,
            Err(reason) => return self.bypass(request, reason),
        };
        let input = KeyInput {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            route: crate::route::matched_path(&request),
            // A present identity is always keyed: never less specific than without it.
            identity: identity.map(CacheIdentity::as_bytes),
        };
        let Some(base) = base_key(input, &config.key) else {
            return self.bypass(request, SkipReason::KeyTooLarge);
        };
        let head = request.method() == Method::HEAD;
        if !usage.store && !head {
            shared.stats.skip(SkipReason::RequestNoStore);
        }

        let mut fallback = None;
        if !usage.skip_lookup
            && let Some(found) = shared.lookup(&base, request.headers())
            && let Some(entry) = stored(&found)
        {
            match entry.usability(Instant::now()) {
                Usability::Fresh => {
                    let response = answer(
                        shared,
                        &base,
                        entry,
                        request.headers(),
                        head,
                        CacheStatus::Hit,
                        context.as_ref(),
                    );
                    return ResponseFuture::ready(response);
                }
                Usability::Stale => {
                    let response = answer(
                        shared,
                        &base,
                        entry,
                        request.headers(),
                        head,
                        CacheStatus::Stale,
                        context.as_ref(),
                    );
                    if usage.store {
                        self.refresh(request, &base);
                    }
                    return ResponseFuture::ready(response);
                }
                Usability::IfError => fallback = Some(found),
                Usability::Expired => {}
            }
        }

        #[cfg(feature = "redis")]
        let found_stale = fallback.is_some();
        let mut miss = Miss {
            shared: shared.clone(),
            // Before the handler reads anything: a response it computes is stored only if nothing it may
            // depend on was invalidated since.
            ticket: shared.store.ticket(),
            cache_time_before: nested_cache_time(context.as_ref()),
            base,
            // Kept to answer `If-None-Match` with a stale response instead of an error.
            request_headers: fallback.is_some().then(|| request.headers().clone()),
            guard: None,
            deferred: None,
            context,
            head,
            store: usage.store,
            fallback,
            started: Instant::now(),
            l2_born: None,
        };
        if !usage.store {
            return ResponseFuture::calling(self.inner.call(request), miss);
        }
        match shared.flights.join(&miss.base) {
            Joined::Leader(guard) => {
                miss.guard = Some(guard);
                miss.request_headers = Some(request.headers().clone());
                // Nothing here: the second level may have it (read before the handler is called, while the
                // requests for the same key wait for this one).
                #[cfg(feature = "redis")]
                if !found_stale && !usage.skip_lookup && shared.store.stores_in_l2() {
                    let lookup = second_level_lookup(
                        shared.clone(),
                        miss.base.clone(),
                        request.headers().clone(),
                        miss.ticket,
                    );
                    miss.deferred = Some((self.inner.clone(), request));
                    return ResponseFuture::second_level(lookup, miss);
                }
                strip_conditionals(request.headers_mut());
                ResponseFuture::calling(self.inner.call(request), miss)
            }
            Joined::Waiter(receiver) => {
                shared.count_coalesced(&miss.base);
                miss.deferred = Some((self.inner.clone(), request));
                ResponseFuture::waiting(receiver, miss)
            }
        }
    }
}

impl<S> ResponseCache<S> {
    fn bypass<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
        reason: SkipReason,
    ) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Body,
    {
        let stats = &self.shared.stats;
        Stats::add(&stats.bypassed);
        stats.skip(reason);
        ResponseFuture::bypass(self.inner.call(request))
    }

    /// Refreshes a stale entry in the background, once per key: the request is answered from the store already,
    /// so it is sent to a clone of the inner service on a task of its own. Without a tokio runtime there is no
    /// refresh, and the entry is loaded again once it expires.
    fn refresh<ReqBody, ResBody>(&mut self, mut request: Request<ReqBody>, base: &ResponseKey)
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        ReqBody: Send + 'static,
        ResBody: Body + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(guard) = self.shared.flights.try_lead(base) else {
            return;
        };
        let shared = self.shared.clone();
        let service = self.inner.clone();
        let base = base.clone();
        let request_headers = request.headers().clone();
        strip_conditionals(request.headers_mut());
        // Before the refresh reads anything, as for a miss.
        let ticket = shared.store.ticket();
        runtime.spawn(refresh(
            shared,
            service,
            request,
            request_headers,
            base,
            guard,
            ticket,
        ));
    }
}

/// Reads `base` from the second level, and the variant key of the request when the base holds `Vary` names;
/// what is found is put into the store (unless an invalidation since `ticket` concerns it).
#[cfg(feature = "redis")]
fn second_level_lookup(
    shared: Arc<Shared>,
    base: ResponseKey,
    request_headers: HeaderMap,
    ticket: Ticket,
) -> super::future::SecondLevelLookup {
    Box::pin(async move {
        let found = shared.store.second_level_get(&base, ticket).await?;
        match found.entry() {
            Entry::Response(_) => Ok((base, found)),
            Entry::Vary(spec) => {
                let variant = spec
                    .variant_key(&base, &request_headers, shared.config.key.max_key_bytes)
                    .ok_or(None)?;
                let found = shared.store.second_level_get(&variant, ticket).await?;
                match found.entry() {
                    Entry::Response(stored) if stored.vary.as_ref() == Some(spec) => {
                        Ok((variant, found))
                    }
                    _ => Err(None),
                }
            }
        }
    })
}

/// The time the request's nested cache loads have recorded so far.
pub(crate) fn nested_cache_time(context: Option<&RequestContext>) -> Duration {
    context.map_or(Duration::ZERO, |context| context.counters().cache_time)
}

async fn refresh<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    mut service: S,
    request: Request<ReqBody>,
    request_headers: HeaderMap,
    base: ResponseKey,
    guard: FlightGuard,
    ticket: Ticket,
) where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    if std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .is_err()
    {
        return;
    }
    let Ok(response) = service.call(request).await else {
        return;
    };
    let (mut parts, body) = response.into_parts();
    let tags = parts.extensions.remove::<CacheTags>();
    let Ok(pending) = shared.prepare(
        &base,
        &request_headers,
        parts.status,
        &mut parts.headers,
        tags,
        body.size_hint().lower(),
    ) else {
        return;
    };
    let mut reader = ReadAhead::new(body);
    let limit = shared.config.max_body;
    let ReadEnd::Complete = std::future::poll_fn(|cx| reader.poll_read(cx, limit)).await else {
        shared.stats.skip(SkipReason::Body);
        return;
    };
    let body = reader.into_bytes();
    let (stored_under, value, stored) = shared.store(
        &base,
        pending,
        parts.status,
        &parts.headers,
        body,
        ticket,
        None,
    );
    if stored {
        Stats::add(&shared.stats.refreshes);
        guard.complete(&stored_under, &value);
    }
}
