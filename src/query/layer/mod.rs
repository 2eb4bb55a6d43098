//! [`QueryLayer`]: ties each request's queries to the request and adds `X-Query-Count` to the response.

mod future;

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, Request, Response};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub use future::ResponseFuture;

use super::analyzer::{Analyzer, RouteHandle};
use crate::context::RequestContext;
use crate::header_policy::HeaderPolicy;
use crate::request_id::RequestId;
use crate::route::MethodLabel;

/// Header with the number of queries the request ran before its response headers were sent.
pub static X_QUERY_COUNT: HeaderName = HeaderName::from_static("x-query-count");

/// A tower layer that attaches each request's query log (so a request that runs no query still counts in
/// the per-route statistics) and adds `X-Query-Count` under the timing-header policy. Built by
/// [`Perfscope::query_layer`](crate::Perfscope::query_layer); put it inside [`Perfscope::layer`]:
///
/// ```
/// use axum::{Router, routing::get};
///
/// let perf = perfscope::Perfscope::builder().build().unwrap();
/// let app: Router = Router::new()
///     .route("/api/quotations", get(|| async { "[]" }))
///     .layer(perf.query_layer())
///     .layer(perf.layer());
/// # drop(app);
/// ```
///
/// Alone (without the monitor) it makes the request's context and span itself, and also adds a `db` entry to
/// `Server-Timing`; with the monitor outside it, the monitor adds that entry.
///
/// [`Perfscope::layer`]: crate::Perfscope::layer
#[derive(Debug, Clone)]
pub struct QueryLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    analyzer: Arc<Analyzer>,
    policy: HeaderPolicy,
    started: Instant,
    started_unix_ms: u64,
}

impl QueryLayer {
    pub(crate) fn new(analyzer: Arc<Analyzer>, policy: HeaderPolicy) -> Self {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        QueryLayer {
            shared: Arc::new(Shared {
                analyzer,
                policy,
                started: Instant::now(),
                started_unix_ms,
            }),
        }
    }
}

impl<S> Layer<S> for QueryLayer {
    type Service = QueryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        QueryService {
            inner,
            shared: self.shared.clone(),
            routes: Arc::default(),
        }
    }
}

/// The service of [`QueryLayer`].
#[derive(Debug, Clone)]
pub struct QueryService<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The analyzer's route of the requests this instance sees, per method. `Router::layer` makes one instance
    /// per route, so settling a request needs no table lookup.
    routes: Arc<RouteMemo>,
}

/// Per-method memo of the last route a [`QueryService`] instance resolved.
#[derive(Debug, Default)]
struct RouteMemo {
    by_method: [OnceLock<RouteHandle>; 10],
}

impl RouteMemo {
    /// The handle of `template` on `method` (`None` without a template: resolved when the request settles).
    fn handle(
        &self,
        analyzer: &Analyzer,
        method: MethodLabel,
        template: Option<&str>,
    ) -> Option<RouteHandle> {
        let template = template?;
        let memo = &self.by_method[method.index()];
        Some(match memo.get() {
            Some(handle) if handle.label() == template => handle.clone(),
            // An instance around several routes (a nested router) sees other templates: ask the table.
            Some(_) => analyzer.route_handle(method, Some(template)),
            None => memo
                .get_or_init(|| analyzer.route_handle(method, Some(template)))
                .clone(),
        })
    }
}

impl Shared {
    /// A context for a request no outer perfscope layer has seen.
    fn new_context<B>(&self, request: &Request<B>) -> RequestContext {
        let start = Instant::now();
        let unix_ms = self.started_unix_ms.saturating_add(
            u64::try_from(start.saturating_duration_since(self.started).as_millis())
                .unwrap_or(u64::MAX),
        );
        let id = RequestId::from_headers(request.headers(), &crate::request_id::HEADER)
            .unwrap_or_else(|| RequestId::generate(unix_ms));
        let context = RequestContext::new(id, MethodLabel::of(request.method()), start, unix_ms);
        if let Some(route) = crate::route::matched_path(request) {
            context.set_route(Arc::from(route));
        }
        context
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for QueryService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let headers = if shared.policy.needs_head() {
            let (parts, body) = request.into_parts();
            let allowed = shared.policy.allows(&parts);
            request = Request::from_parts(parts, body);
            allowed
        } else {
            shared.policy.allows_without_head()
        };
        let existing = RequestContext::of_request(&request);
        let owned = existing.is_none();
        let context = existing.unwrap_or_else(|| shared.new_context(&request));
        let _ = context.query_log_on(&shared.analyzer, || {
            self.routes.handle(
                &shared.analyzer,
                context.method(),
                crate::route::matched_path(&request),
            )
        });
        let span = if owned {
            context.enabled_request_span()
        } else {
            None
        };
        let inner = context.enter(|| self.inner.call(request));
        let inner = context.clone().run(inner, span);
        ResponseFuture::new(inner, context, headers, owned)
    }
}
