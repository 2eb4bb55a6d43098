//! Which requests may use the cache and which responses may be stored, and for how long.
//!
//! The rules follow RFC 9111 for a shared cache, made stricter where a server-side cache in front of one
//! application should be (the same choices as `http-cache-semantics`, Varnish and nginx defaults):
//!
//! - only `GET` and `HEAD` look up; only `GET` responses are stored (`HEAD` is answered from a stored `GET`);
//! - requests with `Authorization` or `Cookie` bypass the cache unless the route keys on an identity;
//! - protocol upgrades and method-override headers bypass the cache;
//! - responses are stored only with status 200, 203 or 204, without `Set-Cookie`, without `private`,
//!   `no-store` or `no-cache` (nor `Pragma: no-cache` when there is no `Cache-Control`), without `Vary: *` or a
//!   `Vary` of more than four headers, and with a freshness lifetime: `s-maxage`, else `max-age`, else the
//!   layer's default TTL. `Expires` is not read: a response carrying it without `max-age` is not stored.

use std::time::Duration;

use http::header::{AGE, AUTHORIZATION, CONNECTION, COOKIE, EXPIRES, PRAGMA, SET_COOKIE, UPGRADE};
use http::{HeaderMap, Method, StatusCode};

use super::cache_control::{CacheControl, delta_seconds};

/// Request headers that turn a `GET` into another method in some frameworks: such requests are not cached.
const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Why a request did not use the cache, or a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The method is not `GET` or `HEAD`.
    Method,
    /// The request carries `Authorization` and the route does not key on an identity.
    Authorization,
    /// The request carries `Cookie` and the route does not key on an identity.
    Cookie,
    /// A protocol upgrade (`Upgrade` / `Connection: upgrade`).
    Upgrade,
    /// A method-override header (`X-HTTP-Method-Override` and kin).
    MethodOverride,
    /// The key would be longer than `max_key_bytes`.
    KeyTooLarge,
    /// The request said `Cache-Control: no-store`.
    RequestNoStore,
    /// The status is not 200, 203 or 204.
    Status,
    /// The response sets a cookie.
    SetCookie,
    /// `Cache-Control: private`.
    Private,
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: no-cache` or `Pragma: no-cache`.
    NoCache,
    /// `Vary: *`, or a `Vary` naming more than four headers or an invalid name.
    Vary,
    /// No `s-maxage`/`max-age` and no default TTL, only `Expires`, or a lifetime already used up by `Age`.
    NoFreshness,
    /// The body is longer than `max_body`, ended with trailers or an error, or is an event stream.
    Body,
    /// More tags than `max_tags`, or a tag that cannot be kept.
    Tags,
    /// An invalidation of the response's key, of one of its tags, or `clear`, landed while the handler ran:
    /// the response was sent but not stored, since it may predate the change.
    Invalidated,
}

impl SkipReason {
    /// Every reason, in index order.
    pub const ALL: [SkipReason; 17] = [
        SkipReason::Method,
        SkipReason::Authorization,
        SkipReason::Cookie,
        SkipReason::Upgrade,
        SkipReason::MethodOverride,
        SkipReason::KeyTooLarge,
        SkipReason::RequestNoStore,
        SkipReason::Status,
        SkipReason::SetCookie,
        SkipReason::Private,
        SkipReason::NoStore,
        SkipReason::NoCache,
        SkipReason::Vary,
        SkipReason::NoFreshness,
        SkipReason::Body,
        SkipReason::Tags,
        SkipReason::Invalidated,
    ];

    /// A short `snake_case` label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Method => "method",
            SkipReason::Authorization => "authorization",
            SkipReason::Cookie => "cookie",
            SkipReason::Upgrade => "upgrade",
            SkipReason::MethodOverride => "method_override",
            SkipReason::KeyTooLarge => "key_too_large",
            SkipReason::RequestNoStore => "request_no_store",
            SkipReason::Status => "status",
            SkipReason::SetCookie => "set_cookie",
            SkipReason::Private => "private",
            SkipReason::NoStore => "no_store",
            SkipReason::NoCache => "no_cache",
            SkipReason::Vary => "vary",
            SkipReason::NoFreshness => "no_freshness",
            SkipReason::Body => "body",
            SkipReason::Tags => "tags",
            SkipReason::Invalidated => "invalidated",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The freshness rules of one layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lifetimes {
    /// Lifetime of responses without `s-maxage`/`max-age`; `None`: such responses are not stored.
    pub(crate) default_ttl: Option<Duration>,
    /// Upper bound on any lifetime.
    pub(crate) max_ttl: Option<Duration>,
    /// `stale-while-revalidate` when the response gives none.
    pub(crate) stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` when the response gives none.
    pub(crate) stale_if_error: Option<Duration>,
}

/// How a request may use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestUse {
    /// Whether the response may be stored (`false` for `HEAD` and `no-store` requests).
    pub(crate) store: bool,
    /// Whether a stored response must not be used (`no-cache` / `max-age=0` when the layer honours them).
    pub(crate) skip_lookup: bool,
}

/// Decides whether a request may use the cache at all.
pub(crate) fn classify_request(
    method: &Method,
    headers: &HeaderMap,
    identity_keyed: bool,
    honor_request_directives: bool,
) -> Result<RequestUse, SkipReason> {
    if method != Method::GET && method != Method::HEAD {
        return Err(SkipReason::Method);
    }
    if !identity_keyed {
        if headers.contains_key(AUTHORIZATION) {
            return Err(SkipReason::Authorization);
        }
        if headers.contains_key(COOKIE) {
            return Err(SkipReason::Cookie);
        }
    }
    if headers.contains_key(UPGRADE) || has_token(headers, CONNECTION, b"upgrade") {
        return Err(SkipReason::Upgrade);
    }
    if METHOD_OVERRIDE_HEADERS
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        return Err(SkipReason::MethodOverride);
    }
    let directives = CacheControl::from_headers(headers);
    let skip_lookup = honor_request_directives
        && (directives.no_cache
            || directives.max_age == Some(0)
            || (!directives.present && pragma_no_cache(headers)));
    Ok(RequestUse {
        store: method == Method::GET && !directives.no_store,
        skip_lookup,
    })
}

fn pragma_no_cache(headers: &HeaderMap) -> bool {
    has_token(headers, PRAGMA, b"no-cache")
}

/// Whether a comma-separated header lists `token` (ASCII case-insensitive) on any of its lines.
fn has_token(headers: &HeaderMap, name: http::HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// How long a stored response may be used, relative to when it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Freshness {
    /// Served as `HIT` while younger than this.
    pub(crate) fresh_for: Duration,
    /// After `fresh_for`, served as `STALE` (and refreshed) for this long.
    pub(crate) stale_while_revalidate: Duration,
    /// After `fresh_for`, served as `STALE` instead of a 5xx or an error for this long.
    pub(crate) stale_if_error: Duration,
    /// The `Age` the response already had when stored.
    pub(crate) initial_age: Duration,
}

impl Freshness {
    /// How long the entry is worth keeping.
    pub(crate) fn keep_for(&self) -> Duration {
        self.fresh_for
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }
}

/// Whether a response to a cacheable request may be stored, and its freshness if so.
pub(crate) fn storable(
    status: StatusCode,
    headers: &HeaderMap,
    lifetimes: &Lifetimes,
) -> Result<Freshness, SkipReason> {
    if !matches!(status.as_u16(), 200 | 203 | 204) {
        return Err(SkipReason::Status);
    }
    if headers.contains_key(SET_COOKIE) {
        return Err(SkipReason::SetCookie);
    }
    let directives = CacheControl::from_headers(headers);
    if directives.no_store {
        return Err(SkipReason::NoStore);
    }
    if directives.private {
        return Err(SkipReason::Private);
    }
    if directives.no_cache || (!directives.present && pragma_no_cache(headers)) {
        return Err(SkipReason::NoCache);
    }
    let lifetime = match directives.s_maxage.or(directives.max_age) {
        Some(seconds) => Duration::from_secs(seconds),
        None if headers.contains_key(EXPIRES) => return Err(SkipReason::NoFreshness),
        None => lifetimes.default_ttl.ok_or(SkipReason::NoFreshness)?,
    };
    let lifetime = lifetimes.max_ttl.map_or(lifetime, |max| lifetime.min(max));
    let initial_age = headers.get(AGE).map_or(Duration::ZERO, |age| {
        Duration::from_secs(delta_seconds(age.as_bytes().trim_ascii()))
    });
    let fresh_for = lifetime.saturating_sub(initial_age);
    if fresh_for.is_zero() {
        return Err(SkipReason::NoFreshness);
    }
    let stale = |given: Option<u64>, default: Option<Duration>| {
        if directives.must_revalidate {
            Duration::ZERO
        } else {
            given
                .map(Duration::from_secs)
                .or(default)
                .unwrap_or_default()
        }
    };
    Ok(Freshness {
        fresh_for,
        stale_while_revalidate: stale(
            directives.stale_while_revalidate,
            lifetimes.stale_while_revalidate,
        ),
        stale_if_error: stale(directives.stale_if_error, lifetimes.stale_if_error),
        initial_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn with_ttl(ttl: u64) -> Lifetimes {
        Lifetimes {
            default_ttl: Some(Duration::from_secs(ttl)),
            ..Lifetimes::default()
        }
    }

    #[test]
    fn requests() {
        let ok = RequestUse {
            store: true,
            skip_lookup: false,
        };
        let classify = |method: Method, pairs: &[(&'static str, &'static str)]| {
            classify_request(&method, &headers(pairs), false, false)
        };
        assert_eq!(classify(Method::GET, &[]), Ok(ok));
        assert_eq!(
            classify(Method::HEAD, &[]),
            Ok(RequestUse {
                store: false,
                skip_lookup: false
            })
        );
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert_eq!(classify(method, &[]), Err(SkipReason::Method));
        }
        assert_eq!(
            classify(Method::GET, &[("authorization", "Bearer x")]),
            Err(SkipReason::Authorization)
        );
        assert_eq!(
            classify(Method::GET, &[("cookie", "sid=1")]),
            Err(SkipReason::Cookie)
        );
        assert_eq!(
            classify(Method::GET, &[("upgrade", "websocket")]),
            Err(SkipReason::Upgrade)
        );
        assert_eq!(
            classify(Method::GET, &[("connection", "keep-alive, Upgrade")]),
            Err(SkipReason::Upgrade)
        );
        assert_eq!(
            classify(Method::GET, &[("x-http-method-override", "DELETE")]),
            Err(SkipReason::MethodOverride)
        );
        assert_eq!(
            classify(Method::GET, &[("cache-control", "no-store")]),
            Ok(RequestUse {
                store: false,
                skip_lookup: false
            })
        );
        // request no-cache is ignored unless the layer honours request directives
        assert_eq!(
            classify(Method::GET, &[("cache-control", "no-cache")]),
            Ok(ok)
        );
        let honoured = |pairs| {
            classify_request(&Method::GET, &headers(pairs), false, true).map(|u| u.skip_lookup)
        };
        assert_eq!(honoured(&[("cache-control", "no-cache")]), Ok(true));
        assert_eq!(honoured(&[("cache-control", "max-age=0")]), Ok(true));
        assert_eq!(honoured(&[("pragma", "no-cache")]), Ok(true));
        assert_eq!(
            honoured(&[("cache-control", "max-age=5"), ("pragma", "no-cache")]),
            Ok(false)
        );
        // identity-keyed routes accept credentials
        let keyed = classify_request(
            &Method::GET,
            &headers(&[("authorization", "x"), ("cookie", "y")]),
            true,
            false,
        );
        assert_eq!(keyed, Ok(ok));
    }

    #[test]
    fn refusals() {
        let l = with_ttl(60);
        let refuse = |status: u16, pairs: &[(&'static str, &'static str)]| {
            storable(StatusCode::from_u16(status).unwrap(), &headers(pairs), &l).err()
        };
        for status in [201, 206, 301, 302, 304, 400, 404, 500, 503] {
            assert_eq!(refuse(status, &[]), Some(SkipReason::Status), "{status}");
        }
        for status in [200, 203, 204] {
            assert_eq!(refuse(status, &[]), None, "{status}");
        }
        assert_eq!(
            refuse(
                200,
                &[
                    ("set-cookie", "a=b"),
                    ("cache-control", "public, max-age=9")
                ]
            ),
            Some(SkipReason::SetCookie)
        );
        assert_eq!(
            refuse(200, &[("cache-control", "private, max-age=9")]),
            Some(SkipReason::Private)
        );
        assert_eq!(
            refuse(200, &[("cache-control", "no-store")]),
            Some(SkipReason::NoStore)
        );
        assert_eq!(
            refuse(200, &[("cache-control", "no-cache, max-age=9")]),
            Some(SkipReason::NoCache)
        );
        assert_eq!(
            refuse(200, &[("pragma", "no-cache")]),
            Some(SkipReason::NoCache)
        );
        assert_eq!(
            refuse(
                200,
                &[("pragma", "no-cache"), ("cache-control", "max-age=9")]
            ),
            None
        );
        assert_eq!(
            refuse(200, &[("cache-control", "max-age=0")]),
            Some(SkipReason::NoFreshness)
        );
        assert_eq!(
            refuse(200, &[("cache-control", "max-age=9"), ("age", "9")]),
            Some(SkipReason::NoFreshness)
        );
        assert_eq!(
            refuse(200, &[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")]),
            Some(SkipReason::NoFreshness)
        );
    }

    #[test]
    fn no_explicit_freshness_needs_a_default_ttl() {
        let none = Lifetimes::default();
        assert_eq!(
            storable(StatusCode::OK, &HeaderMap::new(), &none),
            Err(SkipReason::NoFreshness)
        );
        assert_eq!(
            storable(
                StatusCode::OK,
                &headers(&[("cache-control", "public")]),
                &none
            ),
            Err(SkipReason::NoFreshness)
        );
        let f = storable(StatusCode::OK, &HeaderMap::new(), &with_ttl(30)).unwrap();
        assert_eq!(f.fresh_for, Duration::from_secs(30));
    }

    #[test]
    fn lifetimes() {
        let mut l = with_ttl(30);
        l.max_ttl = Some(Duration::from_secs(100));
        l.stale_while_revalidate = Some(Duration::from_secs(7));
        let fresh = |pairs: &[(&'static str, &'static str)]| {
            storable(StatusCode::OK, &headers(pairs), &l).unwrap()
        };
        let f = fresh(&[
            (
                "cache-control",
                "max-age=10, s-maxage=20, stale-if-error=50",
            ),
            ("age", "5"),
        ]);
        assert_eq!(f.fresh_for, Duration::from_secs(15));
        assert_eq!(f.initial_age, Duration::from_secs(5));
        assert_eq!(f.stale_while_revalidate, Duration::from_secs(7));
        assert_eq!(f.stale_if_error, Duration::from_secs(50));
        assert_eq!(f.keep_for(), Duration::from_secs(65));
        assert_eq!(
            fresh(&[("cache-control", "max-age=100000")]).fresh_for,
            Duration::from_secs(100)
        );
        let revalidate = fresh(&[(
            "cache-control",
            "max-age=10, must-revalidate, stale-while-revalidate=9",
        )]);
        assert_eq!(
            (revalidate.stale_while_revalidate, revalidate.stale_if_error),
            (Duration::ZERO, Duration::ZERO)
        );
        let huge = fresh(&[(
            "cache-control",
            "max-age=99999999999999999999, stale-while-revalidate=99999999999999",
        )]);
        assert_eq!(huge.fresh_for, Duration::from_secs(100));
        assert!(huge.keep_for() > Duration::from_secs(1 << 30));
    }
}
