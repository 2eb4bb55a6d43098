//! The per-request context every perfscope part shares.
//!
//! The outermost perfscope layer creates one [`RequestContext`] per request. It is reachable three ways, because
//! code runs in three kinds of places:
//! - as an axum extractor (`async fn handler(context: RequestContext)`), which reads the task-local below;
//! - as a tokio task-local, from any code the handler calls in its task ([`RequestContext::current`], [`phase`]);
//! - from the request's `tracing` span, for code on other threads that only sees the span (sqlx's SQLite worker
//!   re-enters the caller's span), once [`ContextLayer`](crate::ContextLayer) is part of the tracing subscriber.
//!
//! It carries the request ID, method, route template, start time, named phase timings (which feed
//! `Server-Timing`), counters the cache and the query analyzer fill, and an optional user ID.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::request_id::RequestId;
use crate::route::MethodLabel;

/// Phases kept per request; later ones are added to the last slot's `other` total.
pub const MAX_PHASES: usize = 8;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Shared, cheap-to-clone state of one request.
#[derive(Clone)]
pub struct RequestContext {
    inner: Arc<Inner>,
}

struct Inner {
    request_id: RequestId,
    method: MethodLabel,
    start: Instant,
    start_unix_ms: u64,
    route: OnceLock<Arc<str>>,
    /// The monitor's route, when it was known as the context was made (the common case: no lock to set).
    #[cfg(feature = "monitor")]
    route_entry: Option<Arc<crate::monitor::route_entry::RouteEntry>>,
    /// The monitor's route, when an inner layer resolved it after an outer one made the context.
    #[cfg(feature = "monitor")]
    late_route_entry: OnceLock<Arc<crate::monitor::route_entry::RouteEntry>>,
    user_id: OnceLock<String>,
    excluded: AtomicBool,
    panicked: AtomicBool,
    /// Whether reading the request body failed because the client left.
    client_gone: AtomicBool,
    /// Whether any phase was recorded: most requests have none, and their readers skip the lock.
    phased: AtomicBool,
    phases: Mutex<Phases>,
    counters: Counters,
    /// The request's queries, from the first query (or the query layer) on; settled when the context drops.
    #[cfg(feature = "query")]
    queries: OnceLock<crate::query::log::QueryLog>,
}

#[cfg(feature = "query")]
impl Drop for Inner {
    fn drop(&mut self) {
        // Every holder is gone (the request span included, which sqlx's SQLite worker keeps alive until its
        // last event): the request's query log is complete.
        let Some(log) = self.queries.take() else {
            return;
        };
        // While a panic unwinds, a second one (however unlikely in the analysis) would abort the process:
        // this request's analysis is not worth that risk.
        if self.excluded.load(Ordering::Relaxed) || std::thread::panicking() {
            return;
        }
        let route = self.route();
        log.settle(crate::query::log::RequestFacts {
            method: self.method,
            route,
            request_id: &self.request_id,
            elapsed: self.start.elapsed(),
        });
    }
}

/// Phase totals; the vector is allocated only when a request records its first phase.
#[derive(Default)]
struct Phases {
    entries: Vec<(Cow<'static, str>, Duration)>,
    overflowed: Duration,
}

/// Counters that the cache and query parts add to while the request runs.
#[derive(Debug, Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_micros: AtomicU64,
    queries: AtomicU64,
    query_micros: AtomicU64,
    allocated: AtomicU64,
}

/// A copy of a request's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContextCounters {
    /// Cache lookups that found a value.
    pub cache_hits: u64,
    /// Cache lookups that did not.
    pub cache_misses: u64,
    /// Time spent loading cache misses.
    pub cache_time: Duration,
    /// Database queries run.
    pub queries: u64,
    /// Time spent in database queries.
    pub query_time: Duration,
    /// Bytes allocated by the request's task while the monitor polled it (feature `alloc`, with
    /// [`CountingAllocator`](crate::alloc) installed; 0 otherwise).
    pub allocated_bytes: u64,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl RequestContext {
    /// A context for a request that starts now. Layers call this; applications rarely need to.
    pub fn new(
        request_id: RequestId,
        method: MethodLabel,
        start: Instant,
        start_unix_ms: u64,
    ) -> Self {
        Self::build(
            request_id,
            method,
            start,
            start_unix_ms,
            #[cfg(feature = "monitor")]
            None,
            false,
        )
    }

    /// A context whose monitor route is already resolved (`None`: the request matched no route, or no monitor
    /// made it), excluded from the statistics when `excluded`.
    pub(crate) fn build(
        request_id: RequestId,
        method: MethodLabel,
        start: Instant,
        start_unix_ms: u64,
        #[cfg(feature = "monitor")] route_entry: Option<
            Arc<crate::monitor::route_entry::RouteEntry>,
        >,
        excluded: bool,
    ) -> Self {
        RequestContext {
            inner: Arc::new(Inner {
                request_id,
                method,
                start,
                start_unix_ms,
                route: OnceLock::new(),
                #[cfg(feature = "monitor")]
                route_entry,
                #[cfg(feature = "monitor")]
                late_route_entry: OnceLock::new(),
                user_id: OnceLock::new(),
                excluded: AtomicBool::new(excluded),
                panicked: AtomicBool::new(false),
                client_gone: AtomicBool::new(false),
                phased: AtomicBool::new(false),
                phases: Mutex::new(Phases::default()),
                counters: Counters::default(),
                #[cfg(feature = "query")]
                queries: OnceLock::new(),
            }),
        }
    }

    /// The context of the request this task is serving, or of the request span this thread is in.
    ///
    /// The span route needs [`ContextLayer`](crate::ContextLayer) in the tracing subscriber; the task-local route always works inside
    /// the request's task (and in tasks started with [`RequestContext::scope`]).
    pub fn current() -> Option<RequestContext> {
        Self::with_current(RequestContext::clone)
    }

    /// Calls `f` with the current context (see [`RequestContext::current`]) without cloning it; `None` outside a
    /// request. Cheaper than `current` on hot paths such as cache hits.
    pub fn with_current<R>(f: impl FnOnce(&RequestContext) -> R) -> Option<R> {
        let mut f = Some(f);
        if let Ok(result) = CURRENT.try_with(|context| f.take().map(|f| f(context))) {
            return result;
        }
        // The span route costs a subscriber lookup: only worth it once a ContextLayer exists in this process.
        if !crate::context_layer::layer_installed() {
            return None;
        }
        let context = crate::context_layer::from_current_span()?;
        f.take().map(|f| f(&context))
    }

    /// The context an outer layer gave `request`: one the application put in its extensions, else the
    /// task-local one (perfscope's layers call inner services inside it).
    #[cfg(any(feature = "monitor", feature = "query", feature = "cache"))]
    pub(crate) fn of_request<B>(request: &http::Request<B>) -> Option<RequestContext> {
        request
            .extensions()
            .get::<RequestContext>()
            .cloned()
            .or_else(Self::current_task)
    }

    /// The context of the task-local scope only (no span lookup).
    #[cfg_attr(
        not(any(feature = "monitor", feature = "query", feature = "cache")),
        allow(dead_code)
    )]
    pub(crate) fn current_task() -> Option<RequestContext> {
        CURRENT.try_with(RequestContext::clone).ok()
    }

    /// The request's query log, made on first use and tied to `analyzer`.
    #[cfg(feature = "query")]
    pub(crate) fn query_log(
        &self,
        analyzer: &Arc<crate::query::analyzer::Analyzer>,
    ) -> &crate::query::log::QueryLog {
        self.query_log_on(analyzer, || None)
    }

    /// [`RequestContext::query_log`], made with the route `route` gives if it is made now.
    #[cfg(feature = "query")]
    pub(crate) fn query_log_on(
        &self,
        analyzer: &Arc<crate::query::analyzer::Analyzer>,
        route: impl FnOnce() -> Option<crate::query::analyzer::RouteHandle>,
    ) -> &crate::query::log::QueryLog {
        self.inner
            .queries
            .get_or_init(|| crate::query::log::QueryLog::new(analyzer.clone(), route()))
    }

    /// A new request span (target [`REQUEST_SPAN_TARGET`](crate::REQUEST_SPAN_TARGET)) that carries this
    /// context, for work that runs outside perfscope's layers but should count as a request: a background
    /// job, a test, a benchmark. The layers make this span themselves.
    ///
    /// ```
    /// use tracing::Instrument;
    ///
    /// # async fn run_job() {}
    /// # async fn demo() {
    /// let context = perfscope::RequestContext::new(
    ///     perfscope::RequestId::generate(0),
    ///     perfscope::MethodLabel::of(&http::Method::POST),
    ///     tokio::time::Instant::now(),
    ///     0,
    /// );
    /// let span = context.request_span();
    /// context.scope(run_job()).instrument(span).await;
    /// # }
    /// ```
    ///
    /// The span is at `DEBUG`, so an application log at `INFO` neither allocates nor formats it per request;
    /// perfscope's capture layer (and [`ContextLayer`](crate::ContextLayer), which has no filter) enable it
    /// for themselves. When no subscriber wants it, this returns [`Span::none`](tracing::Span::none).
    pub fn request_span(&self) -> tracing::Span {
        self.enabled_request_span()
            .unwrap_or_else(tracing::Span::none)
    }

    /// The request span, or `None` when no subscriber wants it.
    pub(crate) fn enabled_request_span(&self) -> Option<tracing::Span> {
        // Nothing listens at DEBUG (one atomic load), or no subscriber was ever set: then a disabled span
        // that carries metadata would still go through the `log` crate's checks on creation, enter and exit.
        if !tracing::level_enabled!(tracing::Level::DEBUG) || !tracing::dispatcher::has_been_set() {
            return None;
        }
        let span = crate::context_layer::with_handoff(self, || {
            tracing::debug_span!(
                target: crate::context_layer::REQUEST_SPAN_TARGET,
                "request",
                request_id = %self.request_id(),
                method = self.method().as_str(),
            )
        });
        // A disabled span is not entered on every poll.
        (!span.is_disabled()).then_some(span)
    }

    /// Calls `f` with this context as the task-local current one: for a service's `call`, which runs before its
    /// future is first polled.
    #[cfg(any(feature = "monitor", feature = "query"))]
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    /// Runs `future` as this request: with this context as the task-local current one, and inside `span`
    /// when there is one.
    #[cfg(any(feature = "monitor", feature = "query"))]
    pub(crate) fn run<F: Future>(self, future: F, span: Option<tracing::Span>) -> InRequest<F> {
        InRequest {
            inner: CURRENT.scope(self, future),
            span,
            allocations: AllocationTarget::default(),
        }
    }

    /// Runs `future` with this context as the task-local current one; use it for work spawned from a handler.
    ///
    /// ```
    /// # async fn demo(ctx: perfscope::RequestContext) {
    /// let ctx2 = ctx.clone();
    /// tokio::spawn(ctx.scope(async move {
    ///     let _phase = perfscope::phase("report");
    ///     // ... timed as part of the request that spawned it
    /// }));
    /// # }
    /// ```
    pub fn scope<F: Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<RequestContext, F> {
        CURRENT.scope(self, future)
    }

    /// The request ID.
    pub fn request_id(&self) -> &RequestId {
        &self.inner.request_id
    }

    /// The method label.
    pub fn method(&self) -> MethodLabel {
        self.inner.method
    }

    /// The route template, once known (set by the monitor from axum's `MatchedPath`).
    pub fn route(&self) -> Option<&str> {
        self.inner.route()
    }

    /// Sets the route template if it is not set yet; returns whether this call set it.
    pub fn set_route(&self, route: Arc<str>) -> bool {
        self.route().is_none() && self.inner.route.set(route).is_ok()
    }

    #[cfg(feature = "monitor")]
    pub(crate) fn route_entry(&self) -> Option<&Arc<crate::monitor::route_entry::RouteEntry>> {
        self.inner.route_entry()
    }

    /// Sets the monitor's route of a context made before the route was known; returns whether this call set it.
    #[cfg(feature = "monitor")]
    pub(crate) fn set_route_entry(
        &self,
        entry: Arc<crate::monitor::route_entry::RouteEntry>,
    ) -> bool {
        self.route_entry().is_none() && self.inner.late_route_entry.set(entry).is_ok()
    }

    /// When the request started.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// When the request started, in milliseconds since the Unix epoch.
    pub fn start_unix_ms(&self) -> u64 {
        self.inner.start_unix_ms
    }

    /// Time since the request started.
    pub fn elapsed(&self) -> Duration {
        self.inner.start.elapsed()
    }

    /// The user ID, if the configured hook or the application set one.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.user_id.get().map(String::as_str)
    }

    /// Sets the user ID (for example after authentication in the handler); the first value set stays.
    pub fn set_user_id(&self, user_id: impl Into<String>) {
        let _ = self.inner.user_id.set(user_id.into());
    }

    /// Keeps this request out of the statistics (the admin router marks its own requests so).
    pub fn exclude_from_stats(&self) {
        self.inner.excluded.store(true, Ordering::Relaxed);
    }

    /// Whether [`RequestContext::exclude_from_stats`] was called.
    pub fn is_excluded(&self) -> bool {
        self.inner.excluded.load(Ordering::Relaxed)
    }

    /// Whether the request's handler panicked (seen by perfscope's panic hook, even when an inner
    /// `CatchPanicLayer` turned the panic into a 500 response).
    pub fn panicked(&self) -> bool {
        self.inner.panicked.load(Ordering::Relaxed)
    }

    /// Whether reading the request body failed because the client left (closed or reset the connection before
    /// the body's end), as the monitor's request-body wrapper saw it: the response, whatever its status, never
    /// reached anyone, and the monitor records the request as `cancelled`.
    pub fn client_gone(&self) -> bool {
        self.inner.client_gone.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    pub(crate) fn mark_client_gone(&self) {
        self.inner.client_gone.store(true, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    /// Marks the task-local current request as panicked; called from the panic hook, so it must not panic.
    pub(crate) fn mark_current_panicked() {
        let _ = CURRENT.try_with(|context| context.inner.panicked.store(true, Ordering::Relaxed));
    }

    /// Starts timing a named phase of this request; the time is added when the guard drops.
    pub fn phase(&self, name: impl Into<Cow<'static, str>>) -> PhaseGuard {
        PhaseGuard {
            context: Some(self.clone()),
            name: name.into(),
            start: Instant::now(),
        }
    }

    /// Adds `duration` to the phase `name` (phases with the same name add up).
    pub fn add_phase(&self, name: impl Into<Cow<'static, str>>, duration: Duration) {
        let name = name.into();
        let mut phases = self.inner.phases.lock();
        self.inner.phased.store(true, Ordering::Relaxed);
        let Phases {
            entries,
            overflowed,
        } = &mut *phases;
        if let Some((_, total)) = entries.iter_mut().find(|(existing, _)| *existing == name) {
            *total += duration;
        } else if entries.len() < MAX_PHASES {
            entries.push((name, duration));
        } else {
            *overflowed += duration;
        }
    }

    /// Whether the request recorded any phase so far.
    #[cfg(feature = "monitor")]
    pub(crate) fn has_phases(&self) -> bool {
        self.inner.phased.load(Ordering::Relaxed)
    }

    /// Calls `f` once with the phases in first-seen order and the time of the phases past
    /// [`MAX_PHASES`] (`other`), without taking the lock when there are none.
    #[cfg(feature = "monitor")]
    pub(crate) fn with_phases<R>(
        &self,
        f: impl FnOnce(&[(Cow<'static, str>, Duration)], Duration) -> R,
    ) -> R {
        if !self.has_phases() {
            return f(&[], Duration::ZERO);
        }
        let phases = self.inner.phases.lock();
        f(&phases.entries, phases.overflowed)
    }

    /// Calls `f` with each phase name and total, in first-seen order; then with `other` if phases overflowed.
    pub fn for_each_phase(&self, mut f: impl FnMut(&str, Duration)) {
        let phases = self.inner.phases.lock();
        for (name, total) in &phases.entries {
            f(name, *total);
        }
        if phases.overflowed > Duration::ZERO {
            f("other", phases.overflowed);
        }
    }

    /// Counts a cache hit.
    pub fn record_cache_hit(&self) {
        self.inner
            .counters
            .cache_hits
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a cache miss and the time spent loading the value.
    pub fn record_cache_miss(&self, load_time: Duration) {
        self.inner
            .counters
            .cache_misses
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .counters
            .cache_micros
            .fetch_add(micros(load_time), Ordering::Relaxed);
    }

    /// Counts a database query and its duration.
    pub fn record_query(&self, duration: Duration) {
        self.inner.counters.queries.fetch_add(1, Ordering::Relaxed);
        self.inner
            .counters
            .query_micros
            .fetch_add(micros(duration), Ordering::Relaxed);
    }

    /// The counters so far.
    pub fn counters(&self) -> ContextCounters {
        let counters = &self.inner.counters;
        ContextCounters {
            cache_hits: counters.cache_hits.load(Ordering::Relaxed),
            cache_misses: counters.cache_misses.load(Ordering::Relaxed),
            cache_time: Duration::from_micros(counters.cache_micros.load(Ordering::Relaxed)),
            queries: counters.queries.load(Ordering::Relaxed),
            query_time: Duration::from_micros(counters.query_micros.load(Ordering::Relaxed)),
            allocated_bytes: counters.allocated.load(Ordering::Relaxed),
        }
    }

    /// Charges `bytes` allocated on the request's behalf.
    #[cfg(all(feature = "alloc", any(feature = "monitor", feature = "query")))]
    #[inline]
    pub(crate) fn add_allocated(&self, bytes: u64) {
        if bytes > 0 {
            self.inner
                .counters
                .allocated
                .fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes charged so far (see [`ContextCounters::allocated_bytes`]).
    #[cfg(all(feature = "alloc", feature = "monitor"))]
    pub(crate) fn allocated(&self) -> u64 {
        self.inner.counters.allocated.load(Ordering::Relaxed)
    }

    /// Whether two handles point at the same request.
    pub fn ptr_eq(&self, other: &RequestContext) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Inner {
    /// The monitor's route: set as the context was made, or later by an inner monitor.
    #[cfg(feature = "monitor")]
    fn route_entry(&self) -> Option<&Arc<crate::monitor::route_entry::RouteEntry>> {
        self.route_entry
            .as_ref()
            .or_else(|| self.late_route_entry.get())
    }

    fn route(&self) -> Option<&str> {
        #[cfg(feature = "monitor")]
        if let Some(entry) = self.route_entry() {
            return Some(&entry.route);
        }
        self.route.get().map(|route| &**route)
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("request_id", &self.inner.request_id)
            .field("method", &self.inner.method)
            .field("route", &self.route())
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

#[cfg(any(feature = "monitor", feature = "query"))]
pin_project_lite::pin_project! {
    /// A request's future, run with its context as the task-local current one and inside its span when it has
    /// one (see [`RequestContext::run`]); with feature `alloc`, charges what each poll allocates to the context
    /// it was told to (`InRequest::count_allocations`, which only the monitor calls).
    pub(crate) struct InRequest<F> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<RequestContext, F>,
        span: Option<tracing::Span>,
        allocations: AllocationTarget,
    }
}

/// The context a request's polls charge their allocations to, if any.
#[cfg(all(feature = "alloc", any(feature = "monitor", feature = "query")))]
type AllocationTarget = Option<RequestContext>;
/// Nothing to charge without the `alloc` feature.
#[cfg(all(not(feature = "alloc"), any(feature = "monitor", feature = "query")))]
type AllocationTarget = ();

#[cfg(all(feature = "alloc", any(feature = "monitor", feature = "query")))]
impl<F> InRequest<F> {
    /// Charges the bytes allocated during each poll to `context` (`None`: to no one). Only the monitor that
    /// records the request sets it, so that nested perfscope layers do not count a poll twice.
    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    pub(crate) fn count_allocations(mut self, context: Option<RequestContext>) -> Self {
        self.allocations = context;
        self
    }
}

#[cfg(any(feature = "monitor", feature = "query"))]
impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        #[cfg(feature = "alloc")]
        if let Some(context) = this.allocations.as_ref() {
            // The counter is the thread's, and one thread runs one poll at a time: the difference is this
            // poll's, whatever runs concurrently on other threads.
            let before = crate::alloc::thread_allocated_bytes();
            let poll = this.inner.poll(cx);
            context.add_allocated(crate::alloc::thread_allocated_bytes().wrapping_sub(before));
            return poll;
        }
        this.inner.poll(cx)
    }
}

#[cfg(any(feature = "monitor", feature = "query"))]
impl<F> fmt::Debug for InRequest<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InRequest")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

/// Times a named phase of the current request; see [`phase`].
#[must_use = "the phase is timed until the guard is dropped"]
#[derive(Debug)]
pub struct PhaseGuard {
    context: Option<RequestContext>,
    name: Cow<'static, str>,
    start: Instant,
}

impl PhaseGuard {
    /// Ends the phase now (same as dropping the guard) and returns its duration.
    pub fn finish(mut self) -> Duration {
        self.record()
    }

    fn record(&mut self) -> Duration {
        let elapsed = self.start.elapsed();
        if let Some(context) = self.context.take() {
            context.add_phase(std::mem::take(&mut self.name), elapsed);
        }
        elapsed
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.record();
    }
}

/// Times a named phase of the current request until the guard drops; shows in `Server-Timing` and slow-request
/// records. Does nothing outside a request.
///
/// ```
/// fn price_quotation() -> u64 {
///     let _phase = perfscope::phase("pricing");
///     42 // ... the work being timed
/// }
/// # assert_eq!(price_quotation(), 42);
/// ```
pub fn phase(name: impl Into<Cow<'static, str>>) -> PhaseGuard {
    match RequestContext::current() {
        Some(context) => context.phase(name),
        None => PhaseGuard {
            context: None,
            name: Cow::Borrowed(""),
            start: Instant::now(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> RequestContext {
        RequestContext::new(RequestId::generate(0), MethodLabel::Get, Instant::now(), 0)
    }

    #[tokio::test(start_paused = true)]
    async fn phases_add_up_and_overflow_into_other() {
        let ctx = context();
        ctx.clone()
            .scope(async {
                for _ in 0..2 {
                    let _db = phase("db");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
        for i in 0..MAX_PHASES + 2 {
            ctx.add_phase(format!("p{i}"), Duration::from_millis(1));
        }
        let mut seen = Vec::new();
        ctx.for_each_phase(|name, total| seen.push((name.to_owned(), total)));
        assert_eq!(seen[0], ("db".to_owned(), Duration::from_millis(10)));
        assert_eq!(seen.len(), MAX_PHASES + 1);
        assert_eq!(
            seen.last().unwrap(),
            &("other".to_owned(), Duration::from_millis(3))
        );
    }

    #[test]
    fn phase_outside_a_request_is_inert() {
        let guard = phase("nothing");
        assert!(guard.context.is_none());
    }

    #[test]
    fn counters_accumulate() {
        let ctx = context();
        ctx.record_cache_hit();
        ctx.record_cache_miss(Duration::from_millis(2));
        ctx.record_query(Duration::from_millis(3));
        ctx.record_query(Duration::from_millis(4));
        let counters = ctx.counters();
        assert_eq!(
            (counters.cache_hits, counters.cache_misses, counters.queries),
            (1, 1, 2)
        );
        assert_eq!(counters.query_time, Duration::from_millis(7));
    }
}
