//! The HTTP response cache, driven through real axum routers: refusals, Vary, poisoning, key floods, ETag/304,
//! Age, stale-while-revalidate, stale-if-error, tags, single flight, identity keys.
#![allow(clippy::unwrap_used)]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request as AxumRequest;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use perfscope::cache::http::{
    CacheIdentity, CacheTags, ResponseCacheBuilder, ResponseCacheLayer, SkipReason,
};
use proptest::prelude::*;
use support::{Rng, get_request, send};

/// Counts handler calls.
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn layer() -> ResponseCacheLayer {
    ResponseCacheLayer::builder().build().unwrap()
}

/// One route at `/r` answering with `make(call number, request headers)`, behind `layer`.
fn app<F>(layer: &ResponseCacheLayer, calls: &Calls, make: F) -> Router
where
    F: Fn(usize, &HeaderMap) -> Response + Clone + Send + Sync + 'static,
{
    let calls = calls.clone();
    let handler = move |request: AxumRequest| {
        let calls = calls.clone();
        let make = make.clone();
        async move { make(calls.bump(), request.headers()) }
    };
    Router::new()
        .route("/r", get(handler.clone()).post(handler))
        .layer(layer.clone())
        .with_state(())
}

/// A cacheable text response.
fn cacheable(body: impl Into<String>) -> Response {
    ([("cache-control", "max-age=60")], body.into()).into_response()
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = get_request(uri);
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

fn x_cache(headers: &HeaderMap) -> &str {
    headers.get("x-cache").unwrap().to_str().unwrap()
}

#[tokio::test]
async fn a_plain_get_is_stored_and_served() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |n, _| cacheable(format!("call {n}")));
    let (status, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!(
        (status, x_cache(&headers), &body[..]),
        (StatusCode::OK, "MISS", &b"call 1"[..])
    );
    assert!(
        headers.contains_key("etag"),
        "the miss already carries the ETag"
    );
    for _ in 0..3 {
        let (status, headers, body) = send(&app, get_request("/r")).await;
        assert_eq!(
            (status, x_cache(&headers), &body[..]),
            (StatusCode::OK, "HIT", &b"call 1"[..])
        );
        assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
        assert_eq!(headers["cache-control"], "max-age=60");
        assert_eq!(headers["age"], "0");
    }
    assert_eq!(calls.get(), 1);
    let stats = layer.stats();
    assert_eq!(
        (stats.stores, stats.hits, stats.misses, stats.bypassed),
        (1, 3, 1, 0)
    );
    assert_eq!(stats.entries, 1);

    // HEAD is answered from the stored GET, without a body
    let (status, headers, body) = send(&app, request_with_method("HEAD", "/r")).await;
    assert_eq!((status, x_cache(&headers)), (StatusCode::OK, "HIT"));
    assert_eq!(headers["content-length"], "6");
    assert!(body.is_empty());
    assert_eq!(calls.get(), 1);
}

fn request_with_method(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap()
}

/// Each case: what the handler answers, what the request adds, the X-Cache expected, the reason counted.
#[tokio::test]
async fn refusals_store_nothing() {
    type Make = fn(usize, &HeaderMap) -> Response;
    /// Name, handler, extra request headers, method, `X-Cache`, reason counted.
    type Case = (
        &'static str,
        Make,
        Vec<(&'static str, &'static str)>,
        &'static str,
        &'static str,
        SkipReason,
    );
    let cases: Vec<Case> = vec![
        (
            "authorization",
            |_, _| cacheable("x"),
            vec![("authorization", "Bearer a")],
            "GET",
            "BYPASS",
            SkipReason::Authorization,
        ),
        (
            "cookie",
            |_, _| cacheable("x"),
            vec![("cookie", "sid=1")],
            "GET",
            "BYPASS",
            SkipReason::Cookie,
        ),
        (
            "post",
            |_, _| cacheable("x"),
            vec![],
            "POST",
            "BYPASS",
            SkipReason::Method,
        ),
        (
            "upgrade",
            |_, _| cacheable("x"),
            vec![("upgrade", "websocket"), ("connection", "upgrade")],
            "GET",
            "BYPASS",
            SkipReason::Upgrade,
        ),
        (
            "method override",
            |_, _| cacheable("x"),
            vec![("x-http-method-override", "DELETE")],
            "GET",
            "BYPASS",
            SkipReason::MethodOverride,
        ),
        (
            "set-cookie",
            |_, _| {
                (
                    [
                        ("cache-control", "public, max-age=60"),
                        ("set-cookie", "sid=2"),
                    ],
                    "x",
                )
                    .into_response()
            },
            vec![],
            "GET",
            "MISS",
            SkipReason::SetCookie,
        ),
        (
            "private",
            |_, _| ([("cache-control", "private, max-age=60")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::Private,
        ),
        (
            "no-store",
            |_, _| ([("cache-control", "max-age=60, no-store")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::NoStore,
        ),
        (
            "no-cache",
            |_, _| ([("cache-control", "no-cache, max-age=60")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::NoCache,
        ),
        (
            "vary star",
            |_, _| ([("cache-control", "max-age=60"), ("vary", "*")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::Vary,
        ),
        (
            "vary too wide",
            |_, _| {
                (
                    [("cache-control", "max-age=60"), ("vary", "a, b, c, d, e")],
                    "x",
                )
                    .into_response()
            },
            vec![],
            "GET",
            "MISS",
            SkipReason::Vary,
        ),
        (
            "404",
            |_, _| {
                (
                    StatusCode::NOT_FOUND,
                    [("cache-control", "max-age=60")],
                    "x",
                )
                    .into_response()
            },
            vec![],
            "GET",
            "MISS",
            SkipReason::Status,
        ),
        (
            "500",
            |_, _| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("cache-control", "max-age=60")],
                    "x",
                )
                    .into_response()
            },
            vec![],
            "GET",
            "MISS",
            SkipReason::Status,
        ),
        (
            "201",
            |_, _| (StatusCode::CREATED, [("cache-control", "max-age=60")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::Status,
        ),
        (
            "no freshness",
            |_, _| "x".into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::NoFreshness,
        ),
        (
            "max-age=0",
            |_, _| ([("cache-control", "max-age=0")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::NoFreshness,
        ),
        (
            "expires only",
            |_, _| ([("expires", "Thu, 01 Jan 2099 00:00:00 GMT")], "x").into_response(),
            vec![],
            "GET",
            "MISS",
            SkipReason::NoFreshness,
        ),
        (
            "request no-store",
            |_, _| cacheable("x"),
            vec![("cache-control", "no-store")],
            "GET",
            "MISS",
            SkipReason::RequestNoStore,
        ),
    ];
    for (name, make, extra, method, expected, reason) in cases {
        let (layer, calls) = (layer(), Calls::default());
        let app = app(&layer, &calls, make);
        for round in 1..=3 {
            let mut request = request("/r", &extra);
            *request.method_mut() = method.parse().unwrap();
            let (_, headers, body) = send(&app, request).await;
            assert_eq!(x_cache(&headers), expected, "{name}");
            assert_eq!(&body[..], b"x", "{name}");
            assert_eq!(calls.get(), round, "{name}: the handler answers every time");
        }
        let stats = layer.stats();
        assert_eq!(
            (stats.stores, stats.entries, stats.hits),
            (0, 0, 0),
            "{name}"
        );
        assert_eq!(stats.skipped(reason), 3, "{name}: {reason:?}");
    }
}

/// A body sent in chunks, longer than `max_body`: streamed to the client whole, never stored.
#[tokio::test]
async fn bodies_over_max_body_stream_through_unstored() {
    let layer = ResponseCacheLayer::builder()
        .max_body(10_000)
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = app(&layer, &calls, |_, _| {
        let chunks = (0..40)
            .map(|i| Ok::<_, std::io::Error>(Bytes::from(vec![b'a' + (i % 26) as u8; 1000])));
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        ([("cache-control", "max-age=60")], body).into_response()
    });
    for round in 1..=2 {
        let (status, headers, body) = send(&app, get_request("/r")).await;
        assert_eq!((status, x_cache(&headers)), (StatusCode::OK, "MISS"));
        assert_eq!(body.len(), 40_000);
        assert!(
            body.chunks(1000)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b == b'a' + (i % 26) as u8))
        );
        assert_eq!(calls.get(), round);
    }
    let stats = layer.stats();
    assert_eq!((stats.stores, stats.entries), (0, 0));
    assert_eq!(stats.skipped(SkipReason::Body), 2);

    // an exact-length body over the limit is refused before reading
    let app = self::app(&layer, &calls, |_, _| cacheable("y".repeat(20_000)));
    let (_, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!((x_cache(&headers), body.len()), ("MISS", 20_000));
    assert_eq!(layer.stats().stores, 0);
}

#[tokio::test]
async fn vary_is_enforced() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |_, headers| {
        let greeting = match headers.get("accept-language").map(|v| v.as_bytes()) {
            Some(b"de") => "hallo",
            Some(b"en") => "hello",
            _ => "hi",
        };
        (
            [("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            greeting,
        )
            .into_response()
    });
    let get = |lang: Option<&'static str>| {
        let app = app.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                lang.map(|l| ("accept-language", l)).into_iter().collect();
            let (_, response_headers, body) = send(&app, request("/r", &headers)).await;
            (
                x_cache(&response_headers).to_owned(),
                String::from_utf8(body.to_vec()).unwrap(),
            )
        }
    };
    assert_eq!(get(Some("en")).await, ("MISS".into(), "hello".into()));
    assert_eq!(
        get(Some("de")).await,
        ("MISS".into(), "hallo".into()),
        "en is never served to de"
    );
    assert_eq!(get(None).await, ("MISS".into(), "hi".into()));
    for _ in 0..2 {
        assert_eq!(get(Some("en")).await, ("HIT".into(), "hello".into()));
        assert_eq!(get(Some("de")).await, ("HIT".into(), "hallo".into()));
        assert_eq!(get(None).await, ("HIT".into(), "hi".into()));
    }
    assert_eq!(calls.get(), 3);
    // one Vary record and three variants
    assert_eq!(layer.stats().entries, 4);
}

/// A handler that trusts forwarding headers, as many do: it reflects them into a cacheable page.
#[tokio::test]
async fn unkeyed_inputs_cannot_poison_a_clean_request() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |_, headers| {
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get("host"))
            .map_or("none", |v| v.to_str().unwrap());
        let proto = headers
            .get("x-forwarded-proto")
            .map_or("http", |v| v.to_str().unwrap());
        let method = headers
            .get("x-http-method-override")
            .map_or("GET", |v| v.to_str().unwrap());
        cacheable(format!("<script src=\"{proto}://{host}/app.js\"> {method}"))
    });
    let clean = [("host", "shop.example")];
    let attacks: [&[(&str, &str)]; 5] = [
        &[("host", "shop.example"), ("x-forwarded-host", "evil")],
        &[
            ("host", "shop.example"),
            ("x-forwarded-proto", "javascript"),
        ],
        &[
            ("host", "shop.example"),
            ("x-http-method-override", "DELETE"),
        ],
        &[("host", "shop.example"), ("forwarded", "host=evil")],
        &[("host", "evil")],
    ];
    for attack in attacks {
        // the attacker goes first, twice (the second would be a hit on a poisoned entry)
        for _ in 0..2 {
            send(&app, request("/r", attack)).await;
        }
        let (_, _, body) = send(&app, request("/r", &clean)).await;
        assert_eq!(
            &body[..],
            b"<script src=\"http://shop.example/app.js\"> GET",
            "{attack:?}"
        );
    }
    // the clean entry was stored once and served from then on
    let (_, headers, _) = send(&app, request("/r", &clean)).await;
    assert_eq!(x_cache(&headers), "HIT");
}

#[tokio::test]
async fn random_cache_busters_stay_within_the_bound() {
    const MAX_BYTES: u64 = 256 << 10;
    let layer = ResponseCacheLayer::builder()
        .max_bytes(MAX_BYTES)
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = app(&layer, &calls, |n, _| {
        cacheable(format!("page {n} {}", "x".repeat(200)))
    });
    let mut rng = Rng(7);
    let mut peak_bytes = 0;
    let mut peak_entries = 0;
    for i in 0..100_000 {
        let uri = format!("/r?cb={:x}", rng.next_u64());
        let (status, _, _) = send(&app, get_request(&uri)).await;
        assert_eq!(status, StatusCode::OK);
        if i % 1000 == 0 {
            let stats = layer.stats();
            peak_bytes = peak_bytes.max(stats.weighted_bytes);
            peak_entries = peak_entries.max(stats.entries);
        }
    }
    let stats = layer.stats();
    assert_eq!(stats.max_bytes, Some(MAX_BYTES));
    assert!(
        stats.weighted_bytes.max(peak_bytes) <= MAX_BYTES,
        "{stats:?}"
    );
    // each entry weighs more than its 200-byte body, so the bound also caps the count
    assert!(
        stats.entries.max(peak_entries) <= MAX_BYTES / 200,
        "{stats:?}"
    );
    assert_eq!(calls.get(), 100_000);

    // an allowlist collapses the busters onto one entry
    let layer = ResponseCacheLayer::builder()
        .query_allowlist(["page"])
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = self::app(&layer, &calls, |n, _| cacheable(format!("page {n}")));
    for _ in 0..1000 {
        send(
            &app,
            get_request(&format!("/r?cb={:x}&page=2", rng.next_u64())),
        )
        .await;
    }
    assert_eq!((calls.get(), layer.stats().entries), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn etag_304_and_age() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |_, _| cacheable("body"));
    let (_, headers, _) = send(&app, get_request("/r")).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "strong: {etag}");

    tokio::time::advance(Duration::from_secs(5)).await;
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let (status, headers, body) = send(&app, request("/r", &[("if-none-match", &inm)])).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(body.is_empty());
        assert_eq!(headers["etag"], etag.as_str());
        assert_eq!(headers["age"], "5");
        assert_eq!(headers["cache-control"], "max-age=60");
        assert_eq!(x_cache(&headers), "HIT");
        assert!(!headers.contains_key("content-type"));
    }
    let (status, headers, body) =
        send(&app, request("/r", &[("if-none-match", "\"other\"")])).await;
    assert_eq!(
        (status, &body[..], headers["age"].to_str().unwrap()),
        (StatusCode::OK, &b"body"[..], "5")
    );
    assert_eq!(layer.stats().not_modified, 4);
    assert_eq!(calls.get(), 1);

    // a response's own ETag is kept, and a conditional miss is answered from what was just stored
    let (layer, calls) = (self::layer(), Calls::default());
    let app = self::app(&layer, &calls, |_, headers| {
        assert!(
            !headers.contains_key("if-none-match"),
            "the handler always sees an unconditional request"
        );
        (
            [("cache-control", "max-age=60"), ("etag", "W/\"v7\"")],
            "body",
        )
            .into_response()
    });
    let (status, headers, _) = send(&app, request("/r", &[("if-none-match", "\"v7\"")])).await;
    assert_eq!(
        (status, x_cache(&headers)),
        (StatusCode::NOT_MODIFIED, "MISS")
    );
    assert_eq!(headers["etag"], "W/\"v7\"");

    // the response's Age counts in, and a lifetime used up by it is not stored
    let (layer, calls) = (self::layer(), Calls::default());
    let app = self::app(&layer, &calls, |_, _| {
        ([("cache-control", "max-age=60"), ("age", "20")], "aged").into_response()
    });
    send(&app, get_request("/r")).await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let (_, headers, _) = send(&app, get_request("/r")).await;
    assert_eq!(headers["age"], "23");
    tokio::time::advance(Duration::from_secs(40)).await;
    let (_, headers, _) = send(&app, get_request("/r")).await;
    assert_eq!(
        x_cache(&headers),
        "MISS",
        "60 - 20 seconds of freshness are over"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |n, _| {
        (
            [("cache-control", "max-age=10, stale-while-revalidate=30")],
            format!("v{n}"),
        )
            .into_response()
    });
    send(&app, get_request("/r")).await;
    tokio::time::advance(Duration::from_secs(15)).await;
    // within the window: stale bodies now, one refresh in the background
    for _ in 0..5 {
        let (_, headers, body) = send(&app, get_request("/r")).await;
        assert_eq!((x_cache(&headers), &body[..]), ("STALE", &b"v1"[..]));
        assert_eq!(headers["age"], "15");
    }
    // let the refresh task run
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.get(), 2, "one refresh for five stale hits");
    let (_, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!(
        (
            x_cache(&headers),
            &body[..],
            headers["age"].to_str().unwrap()
        ),
        ("HIT", &b"v2"[..], "0")
    );
    let stats = layer.stats();
    assert_eq!((stats.stale, stats.refreshes), (5, 1));

    // past the window: a plain miss
    tokio::time::advance(Duration::from_secs(41)).await;
    let (_, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!((x_cache(&headers), &body[..]), ("MISS", &b"v3"[..]));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_replaces_server_errors() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |n, _| {
        if n == 1 {
            ([("cache-control", "max-age=10, stale-if-error=60")], "good").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
        }
    });
    send(&app, get_request("/r")).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let (status, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!(
        (status, x_cache(&headers), &body[..]),
        (StatusCode::OK, "STALE", &b"good"[..])
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    let (status, headers, _) = send(&app, get_request("/r")).await;
    assert_eq!(
        (status, x_cache(&headers)),
        (StatusCode::SERVICE_UNAVAILABLE, "MISS")
    );
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn tag_header_is_stripped_and_tags_are_kept() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |_, _| {
        (
            [
                ("cache-control", "max-age=60"),
                ("cache-tag", "products, product:7"),
            ],
            axum::Extension(CacheTags::new(["catalog"])),
            "p7",
        )
            .into_response()
    });
    for expected in ["MISS", "HIT"] {
        let (_, headers, _) = send(&app, get_request("/r")).await;
        assert_eq!(x_cache(&headers), expected);
        assert!(
            !headers.contains_key("cache-tag"),
            "{expected}: the tag header never leaves"
        );
    }
    assert_eq!(calls.get(), 1);
    // each tag, from the header or the extension, drops the entry; others do not
    let get = || async { x_cache(&send(&app, get_request("/r")).await.1).to_owned() };
    layer.store().invalidate_tag("unrelated");
    assert_eq!(get().await, "HIT");
    for (round, tag) in ["products", "product:7", "catalog"].into_iter().enumerate() {
        layer.store().invalidate_tag(tag);
        assert_eq!(get().await, "MISS", "{tag}");
        assert_eq!(get().await, "HIT", "{tag}");
        assert_eq!(calls.get(), round + 2);
    }

    // too many tags: not stored (it could not be invalidated by all of them), header still stripped
    let layer = ResponseCacheLayer::builder().max_tags(2).build().unwrap();
    let app = self::app(&layer, &calls, |_, _| {
        (
            [("cache-control", "max-age=60"), ("cache-tag", "a b c")],
            "x",
        )
            .into_response()
    });
    let (_, headers, _) = send(&app, get_request("/r")).await;
    assert!(!headers.contains_key("cache-tag"));
    assert_eq!(layer.stats().skipped(SkipReason::Tags), 1);
    assert_eq!(layer.stats().stores, 0);

    // and on responses that bypass the cache
    let app = self::app(&layer, &calls, |_, _| {
        ([("cache-tag", "a")], "x").into_response()
    });
    let (_, headers, _) = send(&app, request_with_method("POST", "/r")).await;
    assert!(!headers.contains_key("cache-tag"));
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_call_the_handler_once() {
    let layer = layer();
    let calls = Calls::default();
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/slow",
            get(move || {
                let calls = counter.clone();
                async move {
                    let n = calls.bump();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    cacheable(format!("slow {n}"))
                }
            }),
        )
        .layer(layer.clone())
        .with_state(());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, get_request("/slow")).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let (status, headers, body) = task.await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"slow 1"[..]));
        statuses.push(x_cache(&headers).to_owned());
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "MISS").count(), 1);
    assert_eq!(statuses.iter().filter(|s| *s == "HIT").count(), 99);
    assert_eq!(layer.stats().coalesced, 99);
}

#[tokio::test(start_paused = true)]
async fn waiters_call_the_handler_themselves_when_the_response_is_not_stored() {
    let layer = layer();
    let calls = Calls::default();
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/private",
            get(move || {
                let calls = counter.clone();
                async move {
                    let n = calls.bump();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    (
                        [("cache-control", "private, max-age=60")],
                        format!("mine {n}"),
                    )
                        .into_response()
                }
            }),
        )
        .layer(layer.clone())
        .with_state(());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, get_request("/private")).await })
        })
        .collect();
    let mut bodies = std::collections::BTreeSet::new();
    for task in tasks {
        let (_, headers, body) = task.await.unwrap();
        assert_eq!(x_cache(&headers), "MISS");
        bodies.insert(body);
    }
    assert_eq!(
        (calls.get(), bodies.len()),
        (10, 10),
        "each caller got its own response"
    );
    assert_eq!(layer.stats().stores, 0);
}

/// Authentication middleware that turns a bearer token into an identity (a stand-in for a real one).
async fn authenticate(mut request: AxumRequest, next: axum::middleware::Next) -> Response {
    if let Some(user) = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let identity = CacheIdentity::new(format!("user={user}"));
        request.extensions_mut().insert(identity);
    }
    next.run(request).await
}

#[tokio::test]
async fn identity_keyed_routes_cache_per_user() {
    let layer = ResponseCacheLayer::builder()
        .key_by_identity()
        .build()
        .unwrap();
    let calls = Calls::default();
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/me",
            get(move |headers: HeaderMap| {
                let calls = counter.clone();
                async move {
                    calls.bump();
                    let who = headers
                        .get("authorization")
                        .map_or("anonymous", |v| v.to_str().unwrap())
                        .to_owned();
                    cacheable(who)
                }
            }),
        )
        .layer(layer.clone())
        .layer(axum::middleware::from_fn(authenticate))
        .with_state(());
    for _ in 0..2 {
        for user in ["alice", "bob"] {
            let (_, _, body) = send(
                &app,
                request("/me", &[("authorization", &format!("Bearer {user}"))]),
            )
            .await;
            assert_eq!(body, format!("Bearer {user}"));
        }
    }
    assert_eq!(calls.get(), 2);
    // credentials without an identity still bypass
    let (_, headers, _) = send(&app, request("/me", &[("authorization", "Basic eA==")])).await;
    assert_eq!(x_cache(&headers), "BYPASS");
}

#[tokio::test]
async fn hits_and_misses_reach_the_request_context() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |_, _| cacheable("x"));
    let mut contexts = Vec::new();
    for _ in 0..3 {
        let context = perfscope::RequestContext::new(
            perfscope::RequestId::generate(0),
            perfscope::MethodLabel::Get,
            tokio::time::Instant::now(),
            0,
        );
        let mut request = get_request("/r");
        request.extensions_mut().insert(context.clone());
        send(&app, request).await;
        contexts.push(context.counters());
    }
    let seen: Vec<(u64, u64)> = contexts
        .iter()
        .map(|c| (c.cache_hits, c.cache_misses))
        .collect();
    assert_eq!(seen, [(0, 1), (1, 0), (1, 0)]);
}

#[tokio::test]
async fn behind_the_monitor() {
    let perf = perfscope::Perfscope::builder().build().unwrap();
    let (layer, calls) = (layer(), Calls::default());
    let app = Router::new()
        .route(
            "/r",
            get(move || {
                let calls = calls.clone();
                async move {
                    calls.bump();
                    cacheable("x")
                }
            }),
        )
        .layer(layer.clone())
        .layer(perf.layer())
        .with_state(());
    for expected in ["MISS", "HIT"] {
        let (_, headers, _) = send(&app, get_request("/r")).await;
        assert_eq!(x_cache(&headers), expected);
        assert!(headers.contains_key("x-request-id"));
    }
}

#[test]
fn builder_checks_its_settings() {
    let cases: [(&str, ResponseCacheBuilder); 6] = [
        ("max_body", ResponseCacheLayer::builder().max_body(0)),
        ("max_bytes", ResponseCacheLayer::builder().max_bytes(10)),
        (
            "max_key_bytes",
            ResponseCacheLayer::builder().max_key_bytes(10),
        ),
        (
            "default_ttl",
            ResponseCacheLayer::builder().default_ttl(Duration::ZERO),
        ),
        (
            "key_header",
            ResponseCacheLayer::builder().key_header("bad header"),
        ),
        (
            "store_header",
            ResponseCacheLayer::builder().store_header(""),
        ),
    ];
    for (setting, builder) in cases {
        let error = builder.build().unwrap_err().to_string();
        assert!(error.contains(setting), "{setting}: {error}");
    }
}

#[tokio::test]
async fn default_ttl_and_per_route_layers() {
    // a route without Cache-Control is stored only by a layer with a default TTL
    let with_ttl = ResponseCacheLayer::builder()
        .default_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = app(&with_ttl, &calls, |n, _| {
        format!("plain {n}").into_response()
    });
    send(&app, get_request("/r")).await;
    let (_, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!((x_cache(&headers), &body[..]), ("HIT", &b"plain 1"[..]));

    // a tenant header keyed on one route
    let layer = ResponseCacheLayer::builder()
        .key_header("x-tenant")
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = self::app(&layer, &calls, |_, headers| {
        cacheable(
            headers
                .get("x-tenant")
                .map_or("none", |v| v.to_str().unwrap())
                .to_owned(),
        )
    });
    for tenant in ["a", "b", "a", "b"] {
        let (_, _, body) = send(&app, request("/r", &[("x-tenant", tenant)])).await;
        assert_eq!(&body[..], tenant.as_bytes());
    }
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn post_routes_are_untouched() {
    let (layer, calls) = (layer(), Calls::default());
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/w",
            post(move || {
                let c = counter.clone();
                async move {
                    c.bump();
                    cacheable("w")
                }
            }),
        )
        .layer(layer.clone())
        .with_state(());
    for _ in 0..2 {
        let (_, headers, _) = send(&app, request_with_method("POST", "/w")).await;
        assert_eq!(x_cache(&headers), "BYPASS");
    }
    assert_eq!(calls.get(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Query order never matters for distinct names, and any other change to the query gets its own entry.
    #[test]
    fn keys_follow_the_query(
        pairs in proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9]{0,4}", 1..6),
        seed in any::<u64>(),
        changed in "[a-z0-9]{1,4}",
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (layer, calls) = (layer(), Calls::default());
            let app = app(&layer, &calls, |n, _| cacheable(n.to_string()));
            let mut list: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            send(&app, get_request(&format!("/r?{}", list.join("&")))).await;
            let mut rng = Rng(seed);
            for i in (1..list.len()).rev() {
                list.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let (_, headers, body) = send(&app, get_request(&format!("/r?{}", list.join("&")))).await;
            prop_assert_eq!(x_cache(&headers), "HIT");
            prop_assert_eq!(&body[..], b"1");
            // change one value
            let (name, value) = pairs.iter().next().unwrap();
            prop_assume!(value != &changed);
            list.retain(|p| !p.starts_with(&format!("{name}=")));
            list.push(format!("{name}={changed}"));
            let (_, headers, body) = send(&app, get_request(&format!("/r?{}", list.join("&")))).await;
            prop_assert_eq!(x_cache(&headers), "MISS");
            prop_assert_eq!(&body[..], b"2");
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn event_streams_are_not_read_ahead() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |_, _| {
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"data: 1\n\n",
        ))]);
        let body = Body::from_stream(futures_util::StreamExt::chain(
            first,
            futures_util::stream::pending(),
        ));
        (
            [
                ("cache-control", "max-age=60"),
                ("content-type", "text/event-stream"),
            ],
            body,
        )
            .into_response()
    });
    let response = tower::ServiceExt::oneshot(app, get_request("/r"))
        .await
        .unwrap();
    assert_eq!(x_cache(response.headers()), "MISS");
    let mut body = response.into_body();
    let frame = tokio::time::timeout(
        Duration::from_secs(5),
        http_body_util::BodyExt::frame(&mut body),
    )
    .await
    .expect("the first event arrives while the stream stays open")
    .unwrap()
    .unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: 1\n\n");
    assert_eq!(layer.stats().skipped(SkipReason::Body), 1);
}

#[tokio::test]
async fn head_misses_and_request_directives() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |n, _| cacheable(format!("v{n}")));
    // a HEAD miss goes to the handler and stores nothing (it has no body to store)
    let (_, headers, _) = send(&app, request_with_method("HEAD", "/r")).await;
    assert_eq!(
        (x_cache(&headers), calls.get(), layer.stats().stores),
        ("MISS", 1, 0)
    );
    send(&app, get_request("/r")).await;
    // a client's no-cache does not reach the handler by default
    let (_, headers, body) = send(&app, request("/r", &[("cache-control", "no-cache")])).await;
    assert_eq!((x_cache(&headers), &body[..]), ("HIT", &b"v2"[..]));

    let layer = ResponseCacheLayer::builder()
        .honor_request_directives(true)
        .build()
        .unwrap();
    let calls = Calls::default();
    let app = self::app(&layer, &calls, |n, _| cacheable(format!("v{n}")));
    send(&app, get_request("/r")).await;
    for directive in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
    ] {
        let (_, headers, _) = send(&app, request("/r", &[directive])).await;
        assert_eq!(x_cache(&headers), "MISS", "{directive:?}");
    }
    // the last refresh replaced the entry
    let (_, headers, body) = send(&app, get_request("/r")).await;
    assert_eq!((x_cache(&headers), &body[..]), ("HIT", &b"v4"[..]));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_releases_its_waiters() {
    let layer = layer();
    let calls = Calls::default();
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/r",
            get(move || {
                let calls = counter.clone();
                async move {
                    if calls.bump() == 1 {
                        // the leader's handler: its client goes away long before this ends
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    cacheable("late")
                }
            }),
        )
        .layer(layer.clone())
        .with_state(());
    let leader = {
        let app = app.clone();
        tokio::spawn(async move { send(&app, get_request("/r")).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, get_request("/r")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    for waiter in waiters {
        let (status, headers, body) = tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .expect("released when the leader is cancelled")
            .unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"late"[..]));
        assert_eq!(x_cache(&headers), "MISS");
    }
    assert_eq!(calls.get(), 6, "each waiter called the handler once");
    assert_eq!(layer.stats().coalesced, 5);
}

#[tokio::test(start_paused = true)]
async fn coalesced_waiters_never_get_another_variant() {
    let layer = layer();
    let calls = Calls::default();
    let counter = calls.clone();
    let app: Router = Router::new()
        .route(
            "/r",
            get(move |headers: HeaderMap| {
                let calls = counter.clone();
                async move {
                    calls.bump();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let lang = headers["accept-language"].to_str().unwrap().to_owned();
                    (
                        [("cache-control", "max-age=60"), ("vary", "accept-language")],
                        lang,
                    )
                        .into_response()
                }
            }),
        )
        .layer(layer.clone())
        .with_state(());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let app = app.clone();
            let lang = if i % 2 == 0 { "en" } else { "de" };
            tokio::spawn(async move {
                (
                    lang,
                    send(&app, request("/r", &[("accept-language", lang)])).await,
                )
            })
        })
        .collect();
    for task in tasks {
        let (lang, (_, _, body)) = task.await.unwrap();
        assert_eq!(&body[..], lang.as_bytes());
    }
    // one leader; the waiters of the other language called the handler themselves
    assert!(calls.get() < 20, "{}", calls.get());
    for lang in ["en", "de"] {
        let (_, headers, body) = send(&app, request("/r", &[("accept-language", lang)])).await;
        assert_eq!((x_cache(&headers), &body[..]), ("HIT", lang.as_bytes()));
    }
}

/// A handler over a shared "database" version that, on the call numbered `pause_on`, tells `read` once it has
/// read the version and waits for `release` before answering with it (a slow handler racing a write).
#[derive(Clone)]
struct Racing {
    db: Arc<std::sync::atomic::AtomicU64>,
    calls: Calls,
    pause_on: usize,
    read: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Racing {
    fn new(pause_on: usize) -> Self {
        Racing {
            db: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            calls: Calls::default(),
            pause_on,
            read: Arc::default(),
            release: Arc::default(),
        }
    }

    /// `/p`, tagged `products`, behind `layer`; `cache_control` says how long it may be stored.
    fn app(&self, layer: &ResponseCacheLayer, cache_control: &'static str) -> Router {
        let racing = self.clone();
        let handler = move || {
            let racing = racing.clone();
            async move {
                let call = racing.calls.bump();
                let value = racing.db.load(Ordering::SeqCst);
                if call == racing.pause_on {
                    racing.read.notify_one();
                    racing.release.notified().await;
                }
                (
                    [("cache-control", cache_control)],
                    axum::Extension(CacheTags::new(["products"])),
                    format!("v{value}"),
                )
            }
        };
        Router::new()
            .route("/p", get(handler))
            .layer(layer.clone())
            .with_state(())
    }

    /// The write: a new version, then the invalidation of what depends on it.
    fn write(&self, layer: &ResponseCacheLayer) {
        self.db.fetch_add(1, Ordering::SeqCst);
        layer.store().invalidate_tag("products");
    }
}

async fn x_cache_and_body(app: &Router) -> (String, String) {
    let (_, headers, body) = send(app, get_request("/p")).await;
    (
        x_cache(&headers).to_owned(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn a_response_computed_before_an_invalidation_is_not_stored() {
    let layer = ResponseCacheLayer::builder()
        .default_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let racing = Racing::new(1);
    let app = racing.app(&layer, "max-age=30");
    let first = tokio::spawn({
        let app = app.clone();
        async move { x_cache_and_body(&app).await }
    });
    racing.read.notified().await; // A read v1
    racing.write(&layer); // v2 commits and invalidates while A runs
    racing.release.notify_one(); // A answers with v1
    // A's own client gets what A computed (its request overlapped the write)...
    assert_eq!(first.await.unwrap(), ("MISS".to_owned(), "v1".to_owned()));
    // ...but nobody after the invalidation does.
    assert_eq!(
        x_cache_and_body(&app).await,
        ("MISS".to_owned(), "v2".to_owned())
    );
    assert_eq!(
        x_cache_and_body(&app).await,
        ("HIT".to_owned(), "v2".to_owned())
    );
    let stats = layer.stats();
    assert_eq!(
        (stats.stores, stats.skipped(SkipReason::Invalidated)),
        (1, 1)
    );
}

#[tokio::test]
async fn a_waiter_that_came_after_an_invalidation_does_not_get_the_older_response() {
    let layer = ResponseCacheLayer::builder().build().unwrap();
    let racing = Racing::new(1);
    let app = racing.app(&layer, "max-age=30");
    let first = tokio::spawn({
        let app = app.clone();
        async move { x_cache_and_body(&app).await }
    });
    racing.read.notified().await;
    racing.write(&layer);
    // B starts after the invalidation returned and waits for A's load of the same key.
    let second = tokio::spawn({
        let app = app.clone();
        async move { x_cache_and_body(&app).await }
    });
    while layer.stats().coalesced == 0 {
        tokio::task::yield_now().await;
    }
    racing.release.notify_one();
    assert_eq!(first.await.unwrap().1, "v1");
    assert_eq!(second.await.unwrap(), ("MISS".to_owned(), "v2".to_owned()));
    assert_eq!(racing.calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_background_refresh_racing_an_invalidation_is_not_stored() {
    let layer = layer();
    // Call 2 is the background refresh.
    let racing = Racing::new(2);
    let app = racing.app(&layer, "max-age=10, stale-while-revalidate=60");
    assert_eq!(
        x_cache_and_body(&app).await,
        ("MISS".to_owned(), "v1".to_owned())
    );
    tokio::time::advance(Duration::from_secs(15)).await;
    // Stale: answered at once, and the refresh starts; it reads v1 and pauses.
    assert_eq!(
        x_cache_and_body(&app).await,
        ("STALE".to_owned(), "v1".to_owned())
    );
    racing.read.notified().await;
    racing.write(&layer);
    racing.release.notify_one();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(racing.calls.get(), 2, "the refresh ran");
    assert_eq!(
        x_cache_and_body(&app).await,
        ("MISS".to_owned(), "v2".to_owned()),
        "the refresh computed before the invalidation must not be served after it"
    );
    let stats = layer.stats();
    assert_eq!(
        (stats.refreshes, stats.skipped(SkipReason::Invalidated)),
        (0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn the_store_counts_stale_answers_as_stale_hits_and_carries_the_layer_counters() {
    let (layer, calls) = (layer(), Calls::default());
    let app = app(&layer, &calls, |n, _| {
        (
            [("cache-control", "max-age=10, stale-while-revalidate=30")],
            format!("v{n}"),
        )
            .into_response()
    });
    send(&app, get_request("/r")).await; // MISS
    send(&app, get_request("/r")).await; // HIT
    tokio::time::advance(Duration::from_secs(15)).await;
    for _ in 0..2 {
        let (_, headers, _) = send(&app, get_request("/r")).await;
        assert_eq!(x_cache(&headers), "STALE");
    }
    for _ in 0..10 {
        tokio::task::yield_now().await; // the background refresh stores v2
    }
    let (_, headers, _) = send(&app, request_with_method("POST", "/r")).await;
    assert_eq!(x_cache(&headers), "BYPASS");
    let store = layer.store().stats();
    assert_eq!(
        (store.hits, store.stale_hits, store.misses),
        (1, 2, 1),
        "the store counts each request once, as its X-Cache says"
    );
    let responses = store
        .responses
        .expect("a response store carries its layers' counters");
    assert_eq!(
        (
            responses.hits,
            responses.stale,
            responses.misses,
            responses.bypassed,
            responses.stores,
            responses.refreshes
        ),
        (1, 2, 1, 1, 2, 1)
    );
    assert_eq!(responses.skipped.get("method"), Some(&1));
    assert_eq!(responses.skipped.len(), 1);
    let json = serde_json::to_value(layer.store().stats()).unwrap();
    assert_eq!(json["responses"]["skipped"]["method"], 1);
    // Other caches carry no such section.
    let plain: perfscope::cache::Cache<String, u64> =
        perfscope::cache::Cache::builder().build().unwrap();
    assert!(plain.stats().responses.is_none());
    assert!(
        serde_json::to_value(plain.stats())
            .unwrap()
            .get("responses")
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn the_miss_time_leaves_out_nested_cache_loads() {
    let layer = layer();
    let products: perfscope::cache::Cache<u64, u64> =
        perfscope::cache::Cache::builder().build().unwrap();
    let handler = move |request: AxumRequest| {
        let products = products.clone();
        async move {
            let context = request
                .extensions()
                .get::<perfscope::RequestContext>()
                .cloned()
                .unwrap();
            context
                .scope(async move {
                    // A data-cache miss whose load takes 50 ms, then 10 ms of the handler's own work.
                    products
                        .get_or_compute(&7, || async {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            7
                        })
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                })
                .await;
            cacheable("x")
        }
    };
    let app = Router::new()
        .route("/r", get(handler))
        .layer(layer.clone())
        .with_state(());
    let context = perfscope::RequestContext::new(
        perfscope::RequestId::generate(0),
        perfscope::MethodLabel::Get,
        tokio::time::Instant::now(),
        0,
    );
    let mut request = get_request("/r");
    request.extensions_mut().insert(context.clone());
    let (_, headers, _) = send(&app, request).await;
    assert_eq!(x_cache(&headers), "MISS");
    let counters = context.counters();
    assert_eq!(counters.cache_misses, 2, "the data cache's and the layer's");
    assert_eq!(
        counters.cache_time,
        Duration::from_millis(60),
        "the request spent 60 ms in caches, not 50 + 60"
    );
}
