//! Why fleet publishing could not start or a fleet snapshot could not be read.

use std::fmt;

/// Why [`Perfscope::publish_fleet`](crate::Perfscope::publish_fleet) or
/// [`Perfscope::fleet_snapshot`](crate::Perfscope::fleet_snapshot) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A setting of [`FleetConfig`](crate::fleet::FleetConfig) is out of range.
    #[error("fleet {setting} {reason}")]
    InvalidConfig {
        /// The [`FleetConfig`](crate::fleet::FleetConfig) method.
        setting: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The Redis URL does not parse.
    #[error("invalid fleet Redis URL: {reason}; expected redis://[user:password@]host:port/[db]")]
    InvalidUrl {
        /// What the Redis client said (the URL itself is not repeated: it may hold a password).
        reason: String,
    },
    /// Publishing was started outside a Tokio runtime.
    #[error(
        "fleet publishing needs a Tokio runtime: call publish_fleet from async code or inside Runtime::enter"
    )]
    NoRuntime,
    /// No publisher is running on this handle: call `publish_fleet` first (and keep its handle alive).
    #[error(
        "fleet publishing is not configured: call Perfscope::publish_fleet and keep the returned FleetPublisher"
    )]
    NotConfigured,
    /// Redis failed, timed out or could not be reached.
    #[error("fleet Redis operation failed: {0}")]
    Store(StoreError),
}

/// A failed Redis operation: opaque, with predicates for what callers act on.
#[derive(Debug, Clone)]
pub struct StoreError {
    message: String,
    timeout: bool,
}

impl StoreError {
    pub(crate) fn timeout(operation: &'static str, after: std::time::Duration) -> Self {
        StoreError {
            message: format!("{operation} timed out after {after:?}"),
            timeout: true,
        }
    }

    pub(crate) fn redis(operation: &'static str, error: &redis::RedisError) -> Self {
        StoreError {
            message: format!("{operation}: {error}"),
            timeout: error.is_timeout(),
        }
    }

    /// Whether the operation ran out of time (the server is slow, frozen or unreachable).
    pub fn is_timeout(&self) -> bool {
        self.timeout
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for FleetError {
    fn from(error: StoreError) -> Self {
        FleetError::Store(error)
    }
}
