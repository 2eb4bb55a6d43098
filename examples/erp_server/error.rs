//! The one error type of every handler, so each failure maps to a status code and a JSON body in one place.
//!
//! Bodies are always `{"error": "..."}`. Internal errors are logged with their cause and answered with a generic
//! message: SQL text and driver details stay in the process. No body repeats more than [`MAX_ECHO_BYTES`] of what
//! the client sent: extractor rejections (whose messages quote the input: a path segment, a JSON value, an
//! unknown field) are answered with a fixed summary and at most that much of the detail.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The most bytes of a rejected input an error body may quote.
pub(crate) const MAX_ECHO_BYTES: usize = 64;

/// What can go wrong while handling a request.
#[derive(Debug)]
pub(crate) enum AppError {
    /// The request was malformed: a query parameter out of range (400).
    BadRequest(String),
    /// The body parsed but a value is out of range or not allowed (422).
    Invalid(String),
    /// An extractor refused the request, with the status it chose: 400, 408 (the body was too slow), 413, 415,
    /// 422. The message never quotes more than [`MAX_ECHO_BYTES`] of the input.
    Rejected {
        /// The status code.
        status: StatusCode,
        /// The message.
        message: String,
    },
    /// Too many attempts: 429 with `Retry-After`.
    TooManyRequests {
        /// What was limited.
        message: String,
        /// Seconds until an attempt can succeed.
        retry_after_secs: u64,
    },
    /// The server is busy: 503 with `Retry-After`.
    Unavailable {
        /// What is busy.
        message: &'static str,
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
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
        let mut retry_after = None;
        let (status, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            Self::Invalid(message) => (StatusCode::UNPROCESSABLE_ENTITY, message),
            Self::Rejected { status, message } => (status, message),
            Self::TooManyRequests {
                message,
                retry_after_secs,
            } => {
                retry_after = Some(retry_after_secs);
                (StatusCode::TOO_MANY_REQUESTS, message)
            }
            Self::Unavailable {
                message,
                retry_after_secs,
            } => {
                retry_after = Some(retry_after_secs);
                (StatusCode::SERVICE_UNAVAILABLE, message.to_owned())
            }
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
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
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

// axum's extractor rejections answer in plain text, with the status that fits (413, 415, 422, ...) and a message
// that quotes the input. These conversions keep the status, answer in JSON, and quote at most `MAX_ECHO_BYTES`.
// Handlers take `Result<Query<T>, QueryRejection>` (and so on) and apply `?`.

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        Self::rejected(rejection.status(), "invalid query string", &rejection)
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        Self::rejected(rejection.status(), "invalid path parameter", &rejection)
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        if crate::request_limits::deadline_elapsed(&rejection) {
            return Self::Rejected {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!(
                    "the request body did not arrive within {} s",
                    crate::request_limits::BODY_DEADLINE.as_secs()
                ),
            };
        }
        let summary = match &rejection {
            JsonRejection::JsonDataError(_) => {
                "the JSON body has a missing, unknown or mistyped field"
            }
            JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
            JsonRejection::MissingJsonContentType(_) => "expected Content-Type: application/json",
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                return Self::Rejected {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!(
                        "the request body must be at most {} bytes",
                        crate::request_limits::MAX_BODY_BYTES
                    ),
                };
            }
            _ => "the request body could not be read",
        };
        Self::rejected(rejection.status(), summary, &rejection)
    }
}

impl AppError {
    /// A rejection with `status`: `summary`, then the detail of the cause, clipped to [`MAX_ECHO_BYTES`].
    fn rejected(status: StatusCode, summary: &str, rejection: &dyn std::error::Error) -> Self {
        // The rejection's own text repeats its summary; the innermost cause is the useful part (serde's message,
        // "cannot parse ... to a `i64`").
        let mut cause = rejection;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let detail = cause.to_string();
        let message = if detail.is_empty() || std::ptr::addr_eq(cause, rejection) {
            summary.to_owned()
        } else {
            format!("{summary}: {}", clip(&detail, MAX_ECHO_BYTES))
        };
        Self::Rejected { status, message }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_on_a_character_boundary() {
        assert_eq!(clip("abc", 64), "abc");
        assert_eq!(clip("ééé", 3), "é…");
        assert_eq!(
            clip(&"x".repeat(8192), MAX_ECHO_BYTES).len(),
            MAX_ECHO_BYTES + '…'.len_utf8()
        );
    }
}
