//! The request context is reachable from the handler, from code it calls, and from the request span on
//! another thread. Its own binary: it installs a global tracing subscriber.
#![allow(clippy::unwrap_used)]

#[path = "support/mod.rs"]
mod support;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use http::StatusCode;
use perfscope::{Perfscope, RequestContext};
use support::{get_request, send};

#[tokio::test(flavor = "current_thread")]
async fn the_context_is_an_extension_a_task_local_and_on_the_span() {
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
            get(|Extension(context): Extension<RequestContext>| async move {
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
