//! The admin router: authentication, formats, and admin traffic kept out of the statistics.
#![allow(clippy::unwrap_used)]

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use http::StatusCode;
use perfscope::{AdminAuth, Perfscope};
use support::{app_with_routes, get_request, send};

const TOKEN: &str = "test-token-0123456789abcdef";

fn app(perf: &Perfscope, auth: AdminAuth) -> Router {
    app_with_routes(2)
        .layer(perf.layer())
        .nest("/admin/perf", perf.admin_router(auth))
}

#[tokio::test]
async fn a_token_is_required_and_checked() {
    let perf = Perfscope::builder().build().unwrap();
    let app = app(&perf, AdminAuth::token(TOKEN).unwrap());
    send(&app, get_request("/r0/1")).await;
    for path in ["/admin/perf/stats", "/admin/perf/metrics"] {
        let (status, headers, _) = send(&app, get_request(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
        for wrong in [
            "Bearer test-token-0123456789abcdeX",
            "Bearer ",
            "Basic dGVzdA==",
            TOKEN,
        ] {
            let mut request = get_request(path);
            request
                .headers_mut()
                .insert("authorization", wrong.parse().unwrap());
            assert_eq!(
                send(&app, request).await.0,
                StatusCode::UNAUTHORIZED,
                "{path} with {wrong:?}"
            );
        }
        let mut request = get_request(path);
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        assert_eq!(send(&app, request).await.0, StatusCode::OK);
        let mut request = get_request(path);
        request
            .headers_mut()
            .insert("x-admin-key", TOKEN.parse().unwrap());
        let (status, headers, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        assert!(!body.is_empty());
    }
}

#[tokio::test]
async fn stats_list_routes_but_never_admin_requests() {
    let perf = Perfscope::builder().build().unwrap();
    let app = app(&perf, AdminAuth::token(TOKEN).unwrap());
    for _ in 0..3 {
        send(&app, get_request("/r1/9")).await;
    }
    let mut request = get_request("/admin/perf/stats");
    request
        .headers_mut()
        .insert("x-admin-key", TOKEN.parse().unwrap());
    send(&app, request).await;
    let mut request = get_request("/admin/perf/stats");
    request
        .headers_mut()
        .insert("x-admin-key", TOKEN.parse().unwrap());
    let (_, headers, body) = send(&app, request).await;
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let routes = stats["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["route"], "/r1/{id}");
    assert_eq!(routes[0]["method"], "GET");
    assert_eq!(routes[0]["count"], 3);
    for field in [
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "mean_ms",
        "errors",
        "in_flight",
        "statuses",
        "outcomes",
    ] {
        assert!(routes[0].get(field).is_some(), "missing {field}");
    }
    for field in ["in_flight", "slow_requests", "hung_requests"] {
        assert!(stats.get(field).is_some(), "missing {field}");
    }

    // Admin routes nested inside the measured router are excluded too.
    let inner = Perfscope::builder().build().unwrap();
    let app = app_with_routes(1)
        .nest(
            "/admin/perf",
            inner.admin_router(AdminAuth::token(TOKEN).unwrap()),
        )
        .layer(inner.layer());
    let mut request = get_request("/admin/perf/metrics");
    request
        .headers_mut()
        .insert("x-admin-key", TOKEN.parse().unwrap());
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    assert!(inner.snapshot().routes.is_empty());
}

#[tokio::test]
async fn loopback_mode_serves_only_loopback_peers() {
    let perf = Perfscope::builder().build().unwrap();
    let app = app(&perf, AdminAuth::loopback_only());
    for (peer, expected) in [
        ("127.0.0.1:5000", StatusCode::OK),
        ("[::1]:5000", StatusCode::OK),
        ("10.1.2.3:5000", StatusCode::FORBIDDEN),
    ] {
        let mut request = get_request("/admin/perf/metrics");
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        assert_eq!(send(&app, request).await.0, expected, "{peer}");
    }
    // Without the peer address it refuses and says why.
    let (status, _, body) = send(&app, get_request("/admin/perf/metrics")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("into_make_service_with_connect_info"));
}

#[cfg(feature = "cache")]
#[tokio::test]
async fn cache_statistics_and_invalidation_are_served() {
    use perfscope::cache::{Cache, CacheKey};

    let perf = Perfscope::builder().build().unwrap();
    let products: Cache<CacheKey, String> = Cache::builder().name("products").build().unwrap();
    perf.register_cache(products.handle());
    let app = app(&perf, AdminAuth::token(TOKEN).unwrap()).with_state(());
    products.insert_with_tags(
        CacheKey::new("product").part(1),
        "one".to_owned(),
        ["products"],
    );
    products.insert(CacheKey::new("product").part(2), "two".to_owned());
    assert!(products.get(&CacheKey::new("product").part(1)).is_some());
    assert!(products.get(&CacheKey::new("product").part(3)).is_none());

    let admin = |method: &str, uri: &str, body: &str| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("x-admin-key", TOKEN)
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        request
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        request
    };
    let (status, _, body) = send(&app, admin("GET", "/admin/perf/cache", "")).await;
    assert_eq!(status, StatusCode::OK);
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for field in [
        "hits",
        "misses",
        "coalesced",
        "hit_ratio",
        "entries",
        "weighted_bytes",
    ] {
        assert!(stats.get(field).is_some(), "missing {field}");
    }
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(stats["entries"].as_u64(), Some(2));

    // Unauthenticated invalidation is refused and changes nothing.
    let mut request = admin(
        "POST",
        "/admin/perf/cache/invalidate",
        r#"{"tag":"products"}"#,
    );
    request.headers_mut().remove("x-admin-key");
    assert_eq!(send(&app, request).await.0, StatusCode::UNAUTHORIZED);
    assert!(products.get(&CacheKey::new("product").part(1)).is_some());

    // A tag is a version bump: the answer says it is lazy instead of counting entries it did not visit.
    let (status, _, body) = send(
        &app,
        admin(
            "POST",
            "/admin/perf/cache/invalidate",
            r#"{"tag":"products"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(products.get(&CacheKey::new("product").part(1)).is_none());
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["kind"], "tag");
    assert_eq!(answer["lazy"], true);
    assert!(answer["entries_removed"].is_null(), "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("no longer served")
    );
    // A key is removed now, and counted.
    let (status, _, body) = send(
        &app,
        admin(
            "POST",
            "/admin/perf/cache/invalidate",
            r#"{"key":"product:2","cache":"products"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(products.get(&CacheKey::new("product").part(2)).is_none());
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (&answer["kind"], &answer["lazy"], &answer["entries_removed"]),
        (
            &serde_json::json!("key"),
            &serde_json::json!(false),
            &serde_json::json!(1)
        ),
        "{answer}"
    );
    for bad in [
        r#"{"tag":"a","key":"b"}"#,
        r#"{}"#,
        "not json",
        r#"{"tag":"a","evil":1}"#,
    ] {
        let (status, _, _) = send(&app, admin("POST", "/admin/perf/cache/invalidate", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, _) = send(
        &app,
        admin(
            "POST",
            "/admin/perf/cache/invalidate",
            r#"{"tag":"a","cache":"nope"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = perf.prometheus();
    assert!(
        metrics.contains("perfscope_cache_lookups_total{cache=\"products\",result=\"hit\"} 2"),
        "{metrics}"
    );
}

/// The headers every response of the dashboard's route carries, whatever its status.
#[cfg(feature = "json")]
fn assert_page_headers(headers: &http::HeaderMap, what: &str) {
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/html; charset=utf-8",
        "{what}"
    );
    let csp = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'none'; "), "{what}: {csp}");
    assert!(csp.contains("script-src 'sha256-"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(headers.get("referrer-policy").unwrap(), "no-referrer");
}

#[cfg(feature = "json")]
#[tokio::test]
async fn the_dashboard_is_a_static_page_behind_the_same_token() {
    let perf = Perfscope::builder().build().unwrap();
    let app = app(&perf, AdminAuth::token(TOKEN).unwrap());
    let page = |header: Option<(&'static str, String)>, uri: &str| {
        let mut request = get_request(uri);
        if let Some((name, value)) = header {
            request
                .headers_mut()
                .insert(name, value.parse::<http::HeaderValue>().unwrap());
        }
        request
    };

    let (status, headers, first) = send(
        &app,
        page(
            Some(("authorization", format!("Bearer {TOKEN}"))),
            "/admin/perf",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_page_headers(&headers, "the page");
    let first = String::from_utf8(first.to_vec()).unwrap();
    assert!(first.starts_with("<!DOCTYPE html>"));
    assert!(
        first.contains("fetch(base + \"stats\""),
        "reads the JSON snapshot"
    );

    // Static: traffic changes nothing in it, and no route, count or request ID is ever in it.
    for id in 0..3 {
        send(&app, get_request(&format!("/r1/{id}"))).await;
    }
    let (_, _, second) = send(
        &app,
        page(Some(("x-admin-key", TOKEN.to_owned())), "/admin/perf"),
    )
    .await;
    assert_eq!(first.as_bytes(), &second[..]);
    assert!(!first.contains("/r1/"));

    // A browser brings the token in the query, to this route only.
    let (status, headers, _) = send(&app, page(None, &format!("/admin/perf?token={TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_page_headers(&headers, "the page opened with ?token=");
    let (status, _, _) = send(
        &app,
        page(None, &format!("/admin/perf/stats?token={TOKEN}")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "only the page takes ?token="
    );

    // No token, a wrong one or a wrong scheme: 401 with the static token form, never the dashboard.
    for (header, uri) in [
        (None, "/admin/perf".to_owned()),
        (
            None,
            "/admin/perf?token=wrong-token-0123456789abcdef".to_owned(),
        ),
        (None, format!("/admin/perf?token={TOKEN}x")),
        (
            Some(("authorization", format!("Basic {TOKEN}"))),
            "/admin/perf".to_owned(),
        ),
        (
            Some(("x-admin-key", "wrong-token-0123456789abcdef".to_owned())),
            "/admin/perf".to_owned(),
        ),
    ] {
        let what = format!("{uri} with {:?}", header.as_ref().map(|h| h.0));
        let (status, headers, body) = send(&app, page(header, &uri)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer", "{what}");
        assert_page_headers(&headers, &what);
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("name=\"token\""), "{what}: a token form");
        assert!(!body.contains("stats"), "{what}: not the dashboard");
    }
    assert_eq!(perf.snapshot().routes.len(), 1, "the page is not measured");
}

#[cfg(feature = "json")]
#[tokio::test]
async fn the_dashboard_in_loopback_mode_and_its_address() {
    let perf = Perfscope::builder().build().unwrap();
    let app = app(&perf, AdminAuth::loopback_only());
    for (peer, expected) in [
        ("127.0.0.1:5000", StatusCode::OK),
        ("[::1]:5000", StatusCode::OK),
        ("10.1.2.3:5000", StatusCode::FORBIDDEN),
    ] {
        let mut request = get_request("/admin/perf");
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let (status, headers, _) = send(&app, request).await;
        assert_eq!(status, expected, "{peer}");
        if expected == StatusCode::OK {
            assert_page_headers(&headers, peer);
        }
    }
    // axum routes the nest's root without the slash only; `/admin/perf/` is the application's to route.
    let mut request = get_request("/admin/perf/");
    request
        .extensions_mut()
        .insert(ConnectInfo("127.0.0.1:5000".parse::<SocketAddr>().unwrap()));
    assert_eq!(send(&app, request).await.0, StatusCode::NOT_FOUND);
}
