//! The admin router: an HTML dashboard, statistics as JSON and Prometheus text, behind a token.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let perf = perfscope::Perfscope::builder().build()?;
//! let auth = match std::env::var("PERFSCOPE_ADMIN_TOKEN") {
//!     Ok(token) => perfscope::AdminAuth::token(token)?,
//!     Err(_) => perfscope::AdminAuth::loopback_only(),
//! };
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(perf.layer())
//!     .nest("/admin/perf", perf.admin_router(auth));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The peer address is needed by the loopback-only mode.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! # Endpoints (relative to where the router is nested)
//! - `GET /` (so `GET /admin/perf` when nested at `/admin/perf`): the HTML dashboard (feature `json`), one
//!   static page that reads `/stats` and shows per-route percentiles with their latency distribution, outcomes,
//!   in-flight, slow and hung requests, cache statistics and query findings with their fixes, refreshing itself.
//!   In token mode a browser opens it as `/admin/perf?token=…` (see [Authentication](#authentication)).
//! - `GET /stats`: the [`Snapshot`](crate::Snapshot) as JSON (feature `json`). `GET /stats?scope=fleet`: the
//!   fleet's merged latency, [`FleetSnapshot`](crate::fleet::FleetSnapshot), as JSON (features `redis` and
//!   `json`; [`Perfscope::publish_fleet`] must be running); `503` with a JSON `{"error": …}` when it is not, or
//!   when Redis cannot be reached.
//! - `GET /metrics`: Prometheus text exposition.
//! - `GET /cache`: totals over the registered caches (`hits`, `misses`, `stale_hits`, `coalesced`, `hit_ratio`,
//!   `entries`, `weighted_bytes`) and each cache's statistics (features `cache` and `json`).
//! - `POST /cache/invalidate`: a JSON body with one of `key`, `tag`, `prefix` or `pattern` (a glob, which scans),
//!   and optionally `cache` (a registered cache's name; all caches when absent). Answers with what it did:
//!   `{"caches": [..], "kind": "key", "lazy": false, "entries_removed": 1}` for a key or a pattern (entries
//!   removed now); for a tag or a prefix, an O(1) version bump, `"lazy": true`, `"entries_removed": null` and a
//!   `message`: the entries it covers are never served again and the sweep frees them.
//! - `GET /queries`: the query analyzer's statistics and findings as JSON, the `queries` section of `/stats`
//!   (features `query` and `json`).
//!
//! # Authentication
//! [`AdminAuth::token`]: the request must carry `Authorization: Bearer <token>` or `X-Admin-Key: <token>`;
//! the comparison takes the same time wherever the first differing byte is. Anything else gets 401.
//! [`AdminAuth::loopback_only`]: no token, but only clients on 127.0.0.0/8 or ::1 are served (403 otherwise);
//! it needs the peer address, so serve with `into_make_service_with_connect_info::<SocketAddr>()`.
//! Admin requests never appear in the statistics.
//!
//! The dashboard page alone also takes the token as a `token` query parameter, since a browser cannot add a
//! header to a navigation: open `/admin/perf?token=…`. The page then drops the token from the address bar,
//! keeps it in the tab's `sessionStorage` and sends it as `Authorization: Bearer` with each request for data;
//! without a valid token the page route answers 401 with a token form. A URL with a token can end up in a proxy's
//! or the application's access log: where that matters, use loopback-only mode through an SSH tunnel, or a
//! proxy that adds the header. The page is sent with a strict `Content-Security-Policy`, `X-Content-Type-Options:
//! nosniff`, `Cache-Control: no-store` and `Referrer-Policy: no-referrer`.
//!
//! `nest("/admin/perf", …)` serves the dashboard at `/admin/perf`; axum routes `/admin/perf/` to no nested
//! route, so add `.route("/admin/perf/", get(|| async { Redirect::permanent("/admin/perf") }))` where the
//! slash should work too. The page finds the other endpoints from its own address either way.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Perfscope;
use crate::context::RequestContext;
use crate::error::BuildError;

/// Shortest accepted admin token.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// How the admin router authenticates its callers.
#[derive(Clone)]
pub struct AdminAuth {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Token(Arc<[u8]>),
    LoopbackOnly,
}

impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            // Never print the token.
            Mode::Token(_) => f.write_str("AdminAuth::Token(..)"),
            Mode::LoopbackOnly => f.write_str("AdminAuth::LoopbackOnly"),
        }
    }
}

impl AdminAuth {
    /// Callers must present `token` (at least 16 characters; surrounding whitespace is trimmed).
    pub fn token(token: impl Into<String>) -> Result<Self, BuildError> {
        let token = token.into();
        let token = token.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(BuildError::WeakAdminToken {
                min: MIN_TOKEN_LEN,
                got: token.len(),
            });
        }
        Ok(AdminAuth {
            mode: Mode::Token(Arc::from(token.as_bytes())),
        })
    }

    /// Development mode: no token, loopback clients only.
    pub fn loopback_only() -> Self {
        AdminAuth {
            mode: Mode::LoopbackOnly,
        }
    }

    /// The response refusing `request`, or `None` when it may use the admin endpoints.
    fn denial(&self, request: &Request) -> Option<Response> {
        self.denial_with(request, None)
    }

    /// As [`AdminAuth::denial`], also accepting `extra` as a presented token (the dashboard's `?token=`).
    fn denial_with(&self, request: &Request, extra: Option<&[u8]>) -> Option<Response> {
        match &self.mode {
            Mode::Token(expected) => {
                let presented = presented_tokens(request.headers()).chain(extra);
                // Check every presented token, so timing does not tell which header matched.
                let accepted =
                    presented.fold(false, |ok, token| constant_time_eq(token, expected) | ok);
                if accepted {
                    return None;
                }
                let mut response =
                    (StatusCode::UNAUTHORIZED, "missing or wrong admin token\n").into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                Some(response)
            }
            Mode::LoopbackOnly => {
                let extensions = request.extensions();
                // axum's own listeners give `SocketAddr`; perfscope's `Tracked` listener gives `PeerAddr`.
                let peer = extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(peer)| *peer)
                    .or_else(|| {
                        extensions
                            .get::<ConnectInfo<crate::connections::PeerAddr<SocketAddr>>>()
                            .map(|ConnectInfo(peer)| peer.0)
                    });
                let message = match peer {
                    Some(peer) if peer.ip().is_loopback() => return None,
                    Some(_) => "admin endpoints serve loopback clients only\n",
                    None => {
                        "loopback-only admin mode needs the peer address: serve with \
                         into_make_service_with_connect_info::<SocketAddr>() (with perf.listener(..): \
                         ::<perfscope::connections::PeerAddr<SocketAddr>>())\n"
                    }
                };
                Some((StatusCode::FORBIDDEN, message).into_response())
            }
        }
    }
}

/// Tokens from `Authorization: Bearer …` and `X-Admin-Key: …`.
fn presented_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .into_iter()
        .filter_map(|value| {
            let value = value.as_bytes();
            let scheme = value.get(..7)?;
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then(|| value[7..].trim_ascii())
        });
    let key = headers
        .get_all("x-admin-key")
        .into_iter()
        .map(|value| value.as_bytes().trim_ascii());
    bearer.chain(key)
}

/// Compares in time that depends only on the expected token's length.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(presented.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ presented.get(index).copied().unwrap_or(0);
    }
    std::hint::black_box(difference) == 0
}

/// Which statistics `GET /stats` returns.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// This instance's snapshot.
    Local,
    /// The fleet's merged latency.
    Fleet,
}

/// The `scope` query parameter (`local` when absent); other parameters are ignored.
#[cfg(feature = "json")]
fn scope(query: Option<&str>) -> Result<Scope, String> {
    let value = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .next_back();
    match value {
        None | Some("local") => Ok(Scope::Local),
        Some("fleet") => Ok(Scope::Fleet),
        Some(other) => Err(format!(
            "unknown scope {:?}: use scope=local (default) or scope=fleet",
            other.chars().take(32).collect::<String>()
        )),
    }
}

/// A JSON `{"error": message}` response.
#[cfg(feature = "json")]
fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    no_store((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /stats?scope=fleet`.
#[cfg(all(feature = "json", feature = "redis", feature = "monitor"))]
async fn fleet_stats(perf: &Perfscope) -> Response {
    match perf.fleet_snapshot().await {
        Ok(fleet) => {
            let body = serde_json::to_string(&fleet).unwrap_or_else(|error| {
                serde_json::json!({ "error": format!("fleet snapshot serialization failed: {error}") })
                    .to_string()
            });
            no_store(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Err(error) => json_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

/// `GET /stats?scope=fleet` in a build without fleet support.
#[cfg(all(feature = "json", not(all(feature = "redis", feature = "monitor"))))]
async fn fleet_stats(_perf: &Perfscope) -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "fleet statistics need perfscope's `redis` and `monitor` features",
    )
}

/// Marks an admin response as never to be stored, and never to be sniffed as another type.
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /`: the dashboard, behind the same authentication, plus the `token` query parameter.
#[cfg(feature = "json")]
fn dashboard_route<S>(router: Router<S>, auth: AdminAuth) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route(
        "/",
        get(move |request: Request| async move {
            RequestContext::with_current(RequestContext::exclude_from_stats);
            let token = crate::dashboard::query_token(request.uri().query());
            match auth.denial_with(&request, token.as_deref()) {
                None => crate::dashboard::page(),
                Some(_) if matches!(auth.mode, Mode::Token(_)) => crate::dashboard::token_form(),
                Some(denied) => denied,
            }
        }),
    )
}

impl Perfscope {
    /// The admin router, to nest where the application wants it (usually `/admin/perf`).
    pub fn admin_router<S>(&self, auth: AdminAuth) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        #[cfg(feature = "json")]
        let page_auth = auth.clone();
        let guard = move |request: &Request| {
            // Admin traffic stays out of the statistics, whatever the layer order.
            RequestContext::with_current(RequestContext::exclude_from_stats);
            auth.denial(request)
        };
        let stats_guard = guard.clone();
        #[cfg(all(feature = "cache", feature = "json"))]
        let guard_cache = guard.clone();
        #[cfg(all(feature = "query", feature = "json"))]
        let guard_queries = guard.clone();
        let stats_perf = self.clone();
        let metrics_perf = self.clone();
        let router = Router::new().route(
            "/metrics",
            get(move |request: Request| async move {
                if let Some(denied) = guard(&request) {
                    return denied;
                }
                let body = crate::export::prometheus(&metrics_perf.snapshot());
                no_store(
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response(),
                )
            }),
        );
        #[cfg(feature = "json")]
        let router = router.route(
            "/stats",
            get(move |request: Request| async move {
                if let Some(denied) = stats_guard(&request) {
                    return denied;
                }
                match scope(request.uri().query()) {
                    Ok(Scope::Local) => {
                        let body = crate::export::json(&stats_perf.snapshot());
                        no_store(
                            ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
                        )
                    }
                    Ok(Scope::Fleet) => fleet_stats(&stats_perf).await,
                    Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
                }
            }),
        );
        #[cfg(feature = "json")]
        let router = dashboard_route(router, page_auth);
        #[cfg(not(feature = "json"))]
        let _ = (stats_guard, stats_perf);
        #[cfg(all(feature = "cache", feature = "json"))]
        let router = cache_routes(router, self.clone(), guard_cache);
        #[cfg(all(feature = "query", feature = "json"))]
        let router = {
            let perf = self.clone();
            router.route(
                "/queries",
                get(move |request: Request| async move {
                    if let Some(denied) = guard_queries(&request) {
                        return denied;
                    }
                    let body = serde_json::to_string(&perf.inner.query.snapshot())
                        .unwrap_or_else(|_| "{}".to_owned());
                    no_store(([(header::CONTENT_TYPE, "application/json")], body).into_response())
                }),
            )
        };
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"abcdefghijklmnop", b"abcdefghijklmnop"));
        assert!(!constant_time_eq(b"abcdefghijklmnoq", b"abcdefghijklmnop"));
        assert!(!constant_time_eq(b"abcdefghijklmno", b"abcdefghijklmnop"));
        assert!(!constant_time_eq(
            b"abcdefghijklmnop\0",
            b"abcdefghijklmnop"
        ));
        assert!(!constant_time_eq(b"", b"abcdefghijklmnop"));
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(matches!(
            AdminAuth::token("short"),
            Err(BuildError::WeakAdminToken { min: 16, got: 5 })
        ));
        assert!(AdminAuth::token("  0123456789abcdef  ").is_ok());
        assert_eq!(
            format!("{:?}", AdminAuth::token("0123456789abcdef").unwrap()),
            "AdminAuth::Token(..)"
        );
    }

    #[cfg(feature = "json")]
    #[test]
    fn scope_is_read_from_the_query() {
        assert_eq!(scope(None), Ok(Scope::Local));
        assert_eq!(scope(Some("pretty=1")), Ok(Scope::Local));
        assert_eq!(scope(Some("scope=local")), Ok(Scope::Local));
        assert_eq!(scope(Some("x=1&scope=fleet")), Ok(Scope::Fleet));
        assert!(
            scope(Some("scope=galaxy"))
                .unwrap_err()
                .contains("scope=fleet")
        );
    }

    #[test]
    fn bearer_and_key_headers_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  tok "),
        );
        headers.insert("x-admin-key", HeaderValue::from_static("key"));
        let tokens: Vec<_> = presented_tokens(&headers).collect();
        assert_eq!(tokens, [&b"tok"[..], &b"key"[..]]);
    }
}

/// Largest `POST /cache/invalidate` body read.
#[cfg(all(feature = "cache", feature = "json"))]
const MAX_INVALIDATE_BODY: usize = 16 * 1024;

/// What `POST /cache/invalidate` accepts.
#[cfg(all(feature = "cache", feature = "json"))]
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    cache: Option<String>,
    key: Option<String>,
    tag: Option<String>,
    prefix: Option<String>,
    pattern: Option<String>,
}

#[cfg(all(feature = "cache", feature = "json"))]
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    no_store(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
    )
}

#[cfg(all(feature = "cache", feature = "json"))]
fn cache_routes<S, G>(router: Router<S>, perf: Perfscope, guard: G) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    G: Fn(&Request) -> Option<Response> + Clone + Send + Sync + 'static,
{
    use axum::routing::post;
    use serde_json::json;

    let stats_perf = perf.clone();
    let stats_guard = guard.clone();
    router
        .route(
            "/cache",
            get(move |request: Request| async move {
                if let Some(denied) = stats_guard(&request) {
                    return denied;
                }
                let caches = stats_perf.snapshot().caches;
                let sum = |read: fn(&crate::cache::CacheStatsSnapshot) -> u64| caches.iter().map(read).sum::<u64>();
                let (hits, misses, stale_hits) = (sum(|c| c.hits), sum(|c| c.misses), sum(|c| c.stale_hits));
                let body = json!({
                    "hits": hits,
                    "misses": misses,
                    "stale_hits": stale_hits,
                    "coalesced": sum(|c| c.coalesced),
                    "hit_ratio": crate::cache::hit_ratio(hits, stale_hits, misses),
                    "entries": sum(|c| c.entries),
                    "weighted_bytes": sum(|c| c.weighted_bytes),
                    "caches": caches,
                });
                json_response(StatusCode::OK, &body)
            }),
        )
        .route(
            "/cache/invalidate",
            post(move |request: Request| async move {
                if let Some(denied) = guard(&request) {
                    return denied;
                }
                let bad = |message: String| json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }));
                let bytes = match axum::body::to_bytes(request.into_body(), MAX_INVALIDATE_BODY).await {
                    Ok(bytes) => bytes,
                    Err(_) => return bad(format!("body missing or over {MAX_INVALIDATE_BODY} bytes")),
                };
                let order: InvalidateRequest = match serde_json::from_slice(&bytes) {
                    Ok(order) => order,
                    Err(error) => {
                        return bad(format!(
                            "expected JSON like {{\"tag\": \"products\"}} with one of key, tag, prefix, pattern \
                             and an optional cache: {error}"
                        ));
                    }
                };
                let targets = [&order.key, &order.tag, &order.prefix, &order.pattern];
                if targets.iter().filter(|target| target.is_some()).count() != 1 {
                    return bad("give exactly one of key, tag, prefix, pattern".to_owned());
                }
                let caches: Vec<_> = perf
                    .caches()
                    .into_iter()
                    .filter(|cache| order.cache.as_deref().is_none_or(|name| cache.name() == name))
                    .collect();
                if let (Some(name), true) = (&order.cache, caches.is_empty()) {
                    return json_response(StatusCode::NOT_FOUND, &json!({ "error": format!("no cache named {name:?}") }));
                }
                // What happened, by kind: a key or a pattern removes entries now (counted); a tag or a prefix
                // is an O(1) version bump, so the entries it covers are not counted: they are never served
                // again, and the sweep frees them.
                let mut removed = 0u64;
                let kind = if let Some(key) = &order.key {
                    for cache in &caches {
                        removed += u64::from(cache.invalidate_key_str(key));
                    }
                    "key"
                } else if let Some(tag) = &order.tag {
                    caches.iter().for_each(|cache| cache.invalidate_tag(tag));
                    "tag"
                } else if let Some(prefix) = &order.prefix {
                    caches.iter().for_each(|cache| cache.invalidate_prefix(prefix));
                    "prefix"
                } else if let Some(pattern) = &order.pattern {
                    for cache in &caches {
                        removed += cache.invalidate_matching(pattern);
                    }
                    "pattern"
                } else {
                    return bad("give exactly one of key, tag, prefix, pattern".to_owned());
                };
                let lazy = matches!(kind, "tag" | "prefix");
                let names: Vec<&str> = caches.iter().map(|cache| cache.name()).collect();
                let answer = if lazy {
                    json!({
                        "caches": names,
                        "kind": kind,
                        "lazy": true,
                        "entries_removed": null,
                        "message": format!(
                            "every entry of these caches under this {kind} is no longer served; the sweep frees them"
                        ),
                    })
                } else {
                    json!({ "caches": names, "kind": kind, "lazy": false, "entries_removed": removed })
                };
                json_response(StatusCode::OK, &answer)
            }),
        )
}
