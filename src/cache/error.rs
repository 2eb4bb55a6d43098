//! Errors of the cache module.

use std::convert::Infallible;
use std::fmt;

/// Why [`Cache::try_get_or_compute`](super::Cache::try_get_or_compute) (or `get_or_compute`) returned no value.
///
/// Only the caller whose loader failed sees its error: callers waiting on the same key run their own loader
/// next (one at a time), so one failure never fails a crowd. When fail-safe is configured and an expired
/// value within `fail_safe_max` exists, that value is returned instead of this error.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError<E = Infallible> {
    /// The loader returned an error.
    Failed(E),
    /// The loader panicked (while being called or polled); the panic's message, if it was a string.
    Panicked(String),
}

impl<E> LoadError<E> {
    /// Whether the loader panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, LoadError::Panicked(_))
    }

    /// The loader's own error, if it returned one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            LoadError::Failed(error) => Some(error),
            LoadError::Panicked(_) => None,
        }
    }

    /// A reference to the loader's own error, if it returned one.
    pub fn inner(&self) -> Option<&E> {
        match self {
            LoadError::Failed(error) => Some(error),
            LoadError::Panicked(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Failed(error) => write!(f, "cache loader failed: {error}"),
            LoadError::Panicked(message) => write!(f, "cache loader panicked: {message}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Failed(error) => Some(error),
            LoadError::Panicked(_) => None,
        }
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Why a string is not a [`CacheKey`](super::CacheKey).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cache key {text:?}: a '\\' must be followed by ':' or '\\' (write parts with CacheKey::part to escape them)"
)]
pub struct KeyParseError {
    pub(crate) text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_predicates() {
        let failed: LoadError<std::io::Error> = LoadError::Failed(std::io::Error::other("db down"));
        assert_eq!(failed.to_string(), "cache loader failed: db down");
        assert!(!failed.is_panic());
        assert!(std::error::Error::source(&failed).is_some());
        let panicked: LoadError = LoadError::Panicked("boom".into());
        assert!(panicked.is_panic());
        assert_eq!(panicked.to_string(), "cache loader panicked: boom");
        assert!(panicked.into_inner().is_none());
        assert_eq!(panic_message(&"x"), "x");
        assert_eq!(panic_message(&String::from("y")), "y");
        assert_eq!(panic_message(&5_u8), "non-string panic payload");
    }
}
