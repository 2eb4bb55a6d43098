//! Helpers shared by the integration test binaries.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

#[cfg(feature = "query")]
pub mod canary;
pub mod services;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt;

/// Sends `request` to `app` and reads the whole body (the request is recorded when its body ends).
pub async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, bytes)
}

/// A GET request for `uri`.
pub fn get_request(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// An app with `n` routes `/r{i}/{id}` answering a small JSON body.
pub fn app_with_routes(n: usize) -> Router {
    let mut router = Router::new();
    for i in 0..n {
        router = router.route(
            &format!("/r{i}/{{id}}"),
            get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
        );
    }
    router
}

/// A small deterministic generator for test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
