//! What the response cache stores: a response (status, allowlisted headers, body, freshness), or the `Vary`
//! names of a base key, and how a stored response becomes a response again.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_LOCATION, ETAG, EXPIRES, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use super::key::{ResponseKey, VarySpec};
use super::policy::Freshness;

/// The header telling whether a response came from the cache: `HIT`, `MISS`, `STALE` or `BYPASS`.
pub const X_CACHE: &str = "x-cache";

/// Bytes counted per entry on top of its key, body and headers (the entry itself, the store's bookkeeping).
const ENTRY_OVERHEAD: usize = 160;

/// Bytes counted per stored header on top of its name and value.
const HEADER_OVERHEAD: usize = 32;

/// The response headers stored by default (others are sent on the miss but not stored, so per-request values
/// such as rate-limit counters never reach another client).
pub(crate) const DEFAULT_STORED_HEADERS: [&str; 16] = [
    "access-control-allow-credentials",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-location",
    "content-security-policy",
    "content-type",
    "etag",
    "expires",
    "last-modified",
    "link",
    "vary",
    "x-content-type-options",
];

/// Where a response came from, as the `X-Cache` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum CacheStatus {
    /// Served from the cache while fresh (also a `304` answered from the cache).
    Hit,
    /// Served from the cache after its freshness ran out, within `stale-while-revalidate` or `stale-if-error`.
    Stale,
    /// Not in this node's store, but found fresh in the second level (`HIT-L2`, counted as a hit).
    SecondLevelHit,
    /// Looked up and not found (or the stored response was not usable): the handler answered.
    Miss,
    /// The request may not use the cache (method, credentials, upgrade, key too long): the handler answered.
    Bypass,
}

impl CacheStatus {
    /// The `X-Cache` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::SecondLevelHit => "HIT-L2",
            CacheStatus::Stale => "STALE",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// A value of the response cache: a stored response, or the `Vary` names of a base key. Cheap to clone.
///
/// The layer's store is a [`Cache<ResponseKey, CachedResponse>`](crate::cache::Cache), weighed with
/// [`CachedResponse::weigh`].
#[derive(Clone)]
pub struct CachedResponse(Arc<Entry>);

// Allocated once per entry behind an `Arc`: boxing `Stored` would add an allocation per stored response to save
// a few hundred bytes per (rare) `Vary` record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Entry {
    Response(Stored),
    Vary(VarySpec),
}

/// A stored response.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    /// The allowlisted headers, with `ETag` always present.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) etag: HeaderValue,
    pub(crate) stored_at: Instant,
    pub(crate) freshness: Freshness,
    pub(crate) vary: Option<VarySpec>,
    weight: usize,
}

impl std::fmt::Debug for CachedResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the payload.
        match &*self.0 {
            Entry::Response(stored) => f
                .debug_struct("CachedResponse")
                .field("status", &stored.status)
                .field("body_len", &stored.body.len())
                .field("weight", &stored.weight)
                .finish_non_exhaustive(),
            Entry::Vary(spec) => f
                .debug_tuple("CachedResponse::Vary")
                .field(&spec.names())
                .finish(),
        }
    }
}

/// How usable a stored response is at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usability {
    Fresh,
    /// Within `stale-while-revalidate`: serve, and refresh.
    Stale,
    /// Only as a replacement for an error (`stale-if-error`).
    IfError,
    Expired,
}

impl CachedResponse {
    pub(crate) fn response(stored: Stored) -> Self {
        CachedResponse(Arc::new(Entry::Response(stored)))
    }

    pub(crate) fn vary(spec: VarySpec) -> Self {
        CachedResponse(Arc::new(Entry::Vary(spec)))
    }

    pub(crate) fn entry(&self) -> &Entry {
        &self.0
    }

    /// Whether both are the same stored value (not merely equal).
    pub(crate) fn same(&self, other: &CachedResponse) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The weigher of a response cache's store: the key, the body, the headers and bookkeeping, in bytes.
    ///
    /// A store passed to [`ResponseCacheBuilder::store`](super::ResponseCacheBuilder::store) must be built
    /// with `.max_weight(bytes).weigher(CachedResponse::weigh)`, or its bound would not count bodies.
    pub fn weigh(key: &ResponseKey, value: &CachedResponse) -> u64 {
        (key.len() + value.weight()) as u64
    }

    /// The bytes this value holds (body, headers, bookkeeping), without its key.
    pub fn weight(&self) -> usize {
        match &*self.0 {
            Entry::Response(stored) => stored.weight,
            Entry::Vary(spec) => ENTRY_OVERHEAD + spec.weight(),
        }
    }
}

impl Stored {
    /// A stored response from a handler's parts: keeps the `allowed` headers and makes sure there is an ETag.
    pub(crate) fn new(
        status: StatusCode,
        headers: &HeaderMap,
        allowed: &[HeaderName],
        body: Bytes,
        stored_at: Instant,
        freshness: Freshness,
        vary: Option<VarySpec>,
    ) -> Self {
        let mut kept = HeaderMap::with_capacity(allowed.len().min(headers.len()) + 1);
        for name in allowed {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        let etag = match kept.get(ETAG) {
            Some(etag) => etag.clone(),
            None => {
                let etag = super::etag::body_etag(&body);
                kept.insert(ETAG, etag.clone());
                etag
            }
        };
        let header_bytes: usize = kept
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_OVERHEAD)
            .sum();
        let weight =
            ENTRY_OVERHEAD + body.len() + header_bytes + vary.as_ref().map_or(0, VarySpec::weight);
        Stored {
            status,
            headers: kept,
            body,
            etag,
            stored_at,
            freshness,
            vary,
            weight,
        }
    }

    pub(crate) fn usability(&self, now: Instant) -> Usability {
        let age = now.saturating_duration_since(self.stored_at);
        let f = &self.freshness;
        if age < f.fresh_for {
            return Usability::Fresh;
        }
        let stale = age - f.fresh_for;
        if stale < f.stale_while_revalidate {
            Usability::Stale
        } else if stale < f.stale_if_error {
            Usability::IfError
        } else {
            Usability::Expired
        }
    }

    /// The `Age` header value at `now` (RFC 9111 §4.2.3, with the response's own `Age` counted in).
    fn age(&self, now: Instant) -> HeaderValue {
        let age = self.freshness.initial_age + now.saturating_duration_since(self.stored_at);
        HeaderValue::from(age.as_secs())
    }

    /// The full response, or the header-only one for `HEAD`.
    pub(crate) fn to_response(
        &self,
        now: Instant,
        status: CacheStatus,
        head: bool,
    ) -> Response<Option<Bytes>> {
        let mut response = Response::new(if head { None } else { Some(self.body.clone()) });
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.reserve(self.headers.len() + 3);
        headers.extend(
            self.headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        if head && self.status != StatusCode::NO_CONTENT {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        headers.insert(http::header::AGE, self.age(now));
        headers.insert(X_CACHE, status.header_value());
        response
    }

    /// `304 Not Modified` with the headers RFC 9110 §15.4.5 asks for.
    pub(crate) fn not_modified(
        &self,
        now: Instant,
        status: CacheStatus,
    ) -> Response<Option<Bytes>> {
        let mut response = Response::new(None);
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let headers = response.headers_mut();
        for name in [CACHE_CONTROL, CONTENT_LOCATION, ETAG, EXPIRES, VARY] {
            for value in self.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(http::header::AGE, self.age(now));
        headers.insert(X_CACHE, status.header_value());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn freshness(fresh: u64, swr: u64, sie: u64) -> Freshness {
        Freshness {
            fresh_for: Duration::from_secs(fresh),
            stale_while_revalidate: Duration::from_secs(swr),
            stale_if_error: Duration::from_secs(sie),
            initial_age: Duration::from_secs(2),
        }
    }

    fn allowed() -> Vec<HeaderName> {
        DEFAULT_STORED_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect()
    }

    #[test]
    fn stores_only_allowlisted_headers_and_adds_an_etag() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("9"));
        headers.append("link", HeaderValue::from_static("<a>"));
        headers.append("link", HeaderValue::from_static("<b>"));
        let now = Instant::now();
        let stored = Stored::new(
            StatusCode::OK,
            &headers,
            &allowed(),
            Bytes::from_static(b"{}"),
            now,
            freshness(10, 0, 0),
            None,
        );
        assert!(!stored.headers.contains_key("x-ratelimit-remaining"));
        assert_eq!(stored.headers.get_all("link").iter().count(), 2);
        assert_eq!(stored.headers.get(ETAG), Some(&stored.etag));
        assert!(CachedResponse::response(stored).weight() > ENTRY_OVERHEAD + 2);

        headers.insert(ETAG, HeaderValue::from_static("W/\"mine\""));
        let stored = Stored::new(
            StatusCode::OK,
            &headers,
            &allowed(),
            Bytes::new(),
            now,
            freshness(10, 0, 0),
            None,
        );
        assert_eq!(stored.etag, "W/\"mine\"");
    }

    #[tokio::test(start_paused = true)]
    async fn usability_windows_and_age() {
        let start = Instant::now();
        let stored = Stored::new(
            StatusCode::OK,
            &HeaderMap::new(),
            &allowed(),
            Bytes::from_static(b"abc"),
            start,
            freshness(10, 5, 20),
            None,
        );
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(stored.usability(at(0)), Usability::Fresh);
        assert_eq!(stored.usability(at(9)), Usability::Fresh);
        assert_eq!(stored.usability(at(10)), Usability::Stale);
        assert_eq!(stored.usability(at(14)), Usability::Stale);
        assert_eq!(stored.usability(at(15)), Usability::IfError);
        assert_eq!(stored.usability(at(29)), Usability::IfError);
        assert_eq!(stored.usability(at(30)), Usability::Expired);
        let response = stored.to_response(at(7), CacheStatus::Hit, false);
        assert_eq!(response.headers()["age"], "9");
        assert_eq!(response.headers()[X_CACHE], "HIT");
        assert_eq!(response.body().as_deref(), Some(&b"abc"[..]));
        let head = stored.to_response(at(7), CacheStatus::Stale, true);
        assert_eq!(head.headers()["content-length"], "3");
        assert!(head.body().is_none());
        let not_modified = stored.not_modified(at(1), CacheStatus::Hit);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(not_modified.headers()[ETAG], stored.etag);
    }
}
