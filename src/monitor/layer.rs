//! [`MonitorLayer`] and the [`Monitor`] service it builds.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;
use crate::monitor::body::ResponseBody;
use crate::monitor::future::ResponseFuture;
use crate::monitor::request_body::RequestBody;
use crate::monitor::route_entry::RouteEntry;
use crate::monitor::state::MonitorState;
use crate::monitor::tracker::Tracker;
use crate::request_id::RequestId;
use crate::route::MethodLabel;

/// A tower layer that measures every request passing through it; built by
/// [`Perfscope::layer`](crate::Perfscope::layer).
///
/// Cloning is cheap (one `Arc`): `Router::layer` clones it once per route.
#[derive(Debug, Clone)]
pub struct MonitorLayer {
    state: Arc<MonitorState>,
}

impl MonitorLayer {
    pub(crate) fn new(state: Arc<MonitorState>) -> Self {
        MonitorLayer { state }
    }
}

impl<S> Layer<S> for MonitorLayer {
    type Service = Monitor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Monitor {
            inner,
            state: self.state.clone(),
            routes: Arc::default(),
        }
    }
}

/// The service of [`MonitorLayer`].
#[derive(Debug, Clone)]
pub struct Monitor<S> {
    inner: S,
    state: Arc<MonitorState>,
    /// The entries this service instance resolved, per method. `Router::layer` makes one instance per route, so
    /// after the first request each lookup is a string compare instead of a locked table lookup.
    routes: Arc<RouteCache>,
}

/// Per-method memo of the last route entry a [`Monitor`] instance resolved.
#[derive(Debug, Default)]
struct RouteCache {
    by_method: [OnceLock<Option<Arc<RouteEntry>>>; 10],
}

/// What this monitor knows of a request's route.
enum RouteLookup {
    /// No route template on the request (it matched none, or no router is inside).
    Unknown,
    /// The route is excluded from the statistics.
    Excluded,
    /// The route's entry, its in-flight count already raised.
    Started(Arc<RouteEntry>),
}

impl<S> Monitor<S> {
    /// Looks up the route of `request` and marks a request on it as started.
    fn start_route<B>(
        &self,
        request: &Request<B>,
        method: MethodLabel,
        now: Instant,
    ) -> RouteLookup {
        let Some(template) = crate::route::matched_path(request) else {
            return RouteLookup::Unknown;
        };
        let registry = &self.state.registry;
        let memo = &self.routes.by_method[method.index()];
        // An instance around several routes (a nested router) sees other templates: ask the table.
        let resolved = match memo.get() {
            Some(Some(entry)) if &*entry.route == template => Some(entry.clone()),
            Some(None) if registry.is_excluded(template) => None,
            Some(_) => registry.route(method, template, self.state.slot(now)),
            None => {
                let resolved = registry.route(method, template, self.state.slot(now));
                let _ = memo.set(resolved.clone());
                resolved
            }
        };
        match resolved {
            Some(entry) => {
                entry.started();
                RouteLookup::Started(entry)
            }
            None => RouteLookup::Excluded,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Monitor<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // An outer perfscope layer already made the context: only fill in the route if we see it.
        if let Some(context) = RequestContext::of_request(&request) {
            if context.route_entry().is_none() {
                match self.start_route(&request, context.method(), Instant::now()) {
                    RouteLookup::Started(entry) => {
                        if !context.set_route_entry(entry.clone()) {
                            entry.forget();
                        }
                    }
                    RouteLookup::Excluded => context.exclude_from_stats(),
                    RouteLookup::Unknown => {}
                }
            }
            let request = request.map(|body| RequestBody::new(body, context.clone()));
            let inner = context.enter(|| self.inner.call(request));
            return ResponseFuture::new(context.run(inner, None), None);
        }

        let start = Instant::now();
        let state = &self.state;
        let config = &state.config;
        let method = MethodLabel::of(request.method());
        let unix_ms = state.unix_ms(start);
        let inbound = if config.trust_request_id {
            RequestId::from_headers(request.headers(), &config.request_id_header)
        } else {
            None
        };
        if inbound.is_none() && request.headers().contains_key(&config.request_id_header) {
            state
                .request_ids_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let request_id = inbound.unwrap_or_else(|| RequestId::generate(unix_ms));
        let (route_entry, excluded) = match self.start_route(&request, method, start) {
            RouteLookup::Started(entry) => (Some(entry), false),
            RouteLookup::Excluded => (None, true),
            RouteLookup::Unknown => (None, false),
        };
        let context =
            RequestContext::build(request_id, method, start, unix_ms, route_entry, excluded);

        let mut timing_headers = config.header_policy.allows_without_head();
        let request = if config.header_policy.needs_head() || config.user_id.is_some() {
            let (parts, body) = request.into_parts();
            if config.header_policy.needs_head() {
                timing_headers = config.header_policy.allows(&parts);
            }
            if let Some(user_id) = config.user_id.as_ref().and_then(|hook| hook(&parts)) {
                context.set_user_id(user_id);
            }
            Request::from_parts(parts, body)
        } else {
            request
        };
        let request = request.map(|body| RequestBody::new(body, context.clone()));
        let tracker = Tracker::new(state.clone(), context.clone(), timing_headers);
        let span = context.enabled_request_span();
        #[cfg(feature = "alloc")]
        let mark = tracker.allocation_mark();
        // Inner layers find the context as the task-local one, in their `call` as in their futures.
        let inner = context.enter(|| self.inner.call(request));
        #[cfg(feature = "alloc")]
        if let Some(mark) = mark {
            tracker.charge_allocations_since(mark);
        }
        let future = context.run(inner, span);
        #[cfg(feature = "alloc")]
        let future = future.count_allocations(tracker.allocation_target());
        ResponseFuture::new(future, Some(tracker))
    }
}
