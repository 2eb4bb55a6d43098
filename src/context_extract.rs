//! [`RequestContext`] as an axum extractor: `async fn handler(context: RequestContext)`.
//!
//! The context is the request's task-local one (perfscope's layers run the request's future inside it), or a
//! `RequestContext` the application put in the request's extensions itself. It is not stored in the
//! extensions by perfscope: that would cost every request a boxed value and, in axum, the growth of the
//! extension map.

use std::fmt;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::context::RequestContext;

/// The rejection of the [`RequestContext`] extractor: the request did not pass through a perfscope layer.
/// Answers `500 Internal Server Error`: it is a wiring mistake of the application, not of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingRequestContext;

impl fmt::Display for MissingRequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no perfscope request context: add `.layer(perf.layer())` (or `perf.query_layer()`) after the \
             routes that extract it, or take `Option<RequestContext>`",
        )
    }
}

impl std::error::Error for MissingRequestContext {}

impl IntoResponse for MissingRequestContext {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

fn find(parts: &Parts) -> Option<RequestContext> {
    parts
        .extensions
        .get::<RequestContext>()
        .cloned()
        .or_else(RequestContext::current)
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = MissingRequestContext;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        find(parts).ok_or(MissingRequestContext)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(find(parts))
    }
}
