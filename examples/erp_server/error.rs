//! The one error type of every handler, so each failure maps to a status code and a JSON body in one place.
//!
//! Bodies are always `{"error": "..."}`. Internal errors are logged with their cause and answered with a generic
//! message: SQL text and driver details stay in the process.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What can go wrong while handling a request.
#[derive(Debug)]
pub(crate) enum AppError {
    /// The request was malformed or failed validation (400).
    BadRequest(String),
    /// The credentials were wrong (401).
    Unauthorized(&'static str),
    /// The row or route does not exist (404).
    NotFound(String),
    /// Anything else: a database failure, a panicked blocking task (500).
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    /// A 404 for a missing row of `kind` (`"product"`, `"customer"`, ...).
    pub(crate) fn not_found(kind: &str, id: i64) -> Self {
        Self::NotFound(format!("{kind} {id} not found"))
    }

    /// A 500 wrapping any error; the cause is logged, not sent.
    pub(crate) fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            Self::Unauthorized(message) => (StatusCode::UNAUTHORIZED, message.to_owned()),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, message),
            Self::Internal(error) => {
                tracing::error!(%error, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error".to_owned(),
                )
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // Handlers use `fetch_optional` and say which row is missing; this is the fallback for `fetch_one`.
            sqlx::Error::RowNotFound => Self::NotFound("not found".to_owned()),
            other => Self::internal(other),
        }
    }
}

// axum's extractor rejections answer in plain text; these conversions keep every error body JSON. Handlers take
// `Result<Query<T>, QueryRejection>` (and so on) and apply `?`.

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}
