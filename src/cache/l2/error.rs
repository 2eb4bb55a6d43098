//! [`L2Error`]: why a second-level operation gave no answer. Opaque, with predicates, so no client type leaks
//! into the public API.

use std::fmt;

/// What kind of failure an [`L2Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The operation did not finish within its timeout.
    Timeout,
    /// The circuit breaker is open: the operation was not attempted.
    BreakerOpen,
    /// The server could not be reached or the connection broke.
    Connection,
    /// The server answered with an error, or with something this crate does not understand.
    Server,
    /// The configuration (a URL, for example) is not usable.
    Config,
}

/// Why an operation on the second level failed. An application rarely sees one: cache lookups turn every L2
/// failure into a miss (the loader answers), and the failures are counted in the cache's statistics.
#[derive(Debug, Clone)]
pub struct L2Error {
    kind: Kind,
    message: String,
}

impl L2Error {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        L2Error {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn timeout() -> Self {
        L2Error::new(Kind::Timeout, "timed out")
    }

    pub(crate) fn breaker_open() -> Self {
        L2Error::new(Kind::BreakerOpen, "circuit breaker open")
    }

    /// A connection failure (for implementations of [`L2Backend`](super::L2Backend)).
    pub fn connection(message: impl Into<String>) -> Self {
        L2Error::new(Kind::Connection, message)
    }

    /// The server answered with an error or an unexpected reply (for implementations of
    /// [`L2Backend`](super::L2Backend)).
    pub fn server(message: impl Into<String>) -> Self {
        L2Error::new(Kind::Server, message)
    }

    /// Whether the operation ran out of time.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// Whether the circuit breaker was open, so the operation was not attempted.
    pub fn is_breaker_open(&self) -> bool {
        self.kind == Kind::BreakerOpen
    }

    /// Whether the server could not be reached or the connection broke.
    pub fn is_connection(&self) -> bool {
        self.kind == Kind::Connection
    }

    /// Whether the configuration (the URL, for example) is not usable.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
}

impl fmt::Display for L2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Timeout => "second level timed out",
            Kind::BreakerOpen => "second level skipped",
            Kind::Connection => "second level unreachable",
            Kind::Server => "second level error",
            Kind::Config => "second level misconfigured",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for L2Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_and_messages() {
        assert!(L2Error::timeout().is_timeout());
        assert!(L2Error::breaker_open().is_breaker_open());
        let e = L2Error::connection("refused");
        assert!(e.is_connection() && !e.is_timeout());
        assert_eq!(e.to_string(), "second level unreachable: refused");
        assert!(L2Error::new(Kind::Config, "bad url").is_config());
        assert!(!L2Error::server("x").is_connection());
    }
}
