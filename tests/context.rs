//! The request context is reachable from the handler, from code it calls, and from the request span on
//! another thread. Its own binary: it installs a global tracing subscriber.
#![allow(clippy::unwrap_used)]

#[path = "support/mod.rs"]
mod support;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use perfscope::{Perfscope, RequestContext};
use support::{get_request, send};

#[tokio::test(flavor = "current_thread")]
async fn the_context_is_an_extractor_a_task_local_and_on_the_span() {
    use tracing_subscriber::prelude::*;
    // Global, as in an application: sqlx's SQLite worker thread sees only the global dispatcher.
    tracing_subscriber::registry()
        .with(perfscope::ContextLayer::new())
        .init();
    let perf = Perfscope::builder()
        .user_id(|head| {
            head.headers
                .get("x-user")
                .map(|v| v.to_str().unwrap_or("?").to_owned())
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/ctx/{id}",
            get(|context: RequestContext| async move {
                let current = RequestContext::current().unwrap();
                assert!(current.ptr_eq(&context));
                // From another thread that only has the span, as sqlx's SQLite worker.
                let span = tracing::Span::current();
                let from_span = std::thread::spawn(move || span.in_scope(RequestContext::current))
                    .join()
                    .unwrap()
                    .unwrap();
                assert!(from_span.ptr_eq(&context));
                format!(
                    "{}|{}|{}",
                    context.request_id(),
                    context.route().unwrap(),
                    context.user_id().unwrap()
                )
            }),
        )
        .layer(perf.layer());
    let mut request = get_request("/ctx/5");
    request
        .headers_mut()
        .insert("x-user", "u-42".parse().unwrap());
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    let body = String::from_utf8(body.to_vec()).unwrap();
    let id = headers.get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(body, format!("{id}|/ctx/{{id}}|u-42"));
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_perfscope_layer_the_extractor_explains_the_wiring() {
    let app = Router::new()
        .route(
            "/needs",
            get(|context: RequestContext| async move { context.request_id().to_string() }),
        )
        .route(
            "/optional",
            get(|context: Option<RequestContext>| async move { format!("{}", context.is_some()) }),
        );
    let (status, _, body) = send(&app, get_request("/needs")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&body).contains("perf.layer()"));
    let (status, _, body) = send(&app, get_request("/optional")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"false"[..]));

    // Inside the monitor, layers below it and the handler share the monitor's context.
    let perf = Perfscope::builder().build().unwrap();
    let app = app.layer(perf.query_layer()).layer(perf.layer());
    let (status, headers, body) = send(&app, get_request("/needs")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("x-request-id").unwrap().as_bytes(), &body[..]);
    let (_, _, body) = send(&app, get_request("/optional")).await;
    assert_eq!(&body[..], b"true");
}
