//! Configuration errors.

/// Why a [`Perfscope`](crate::Perfscope) or an [`AdminAuth`](crate::AdminAuth) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A numeric setting is outside its range.
    #[error("{setting} must be {expected}, got {got}")]
    OutOfRange {
        /// The builder method.
        setting: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A header name is not a valid HTTP header name.
    #[error("invalid header name {name:?} for {setting}: use lowercase letters, digits and '-'")]
    InvalidHeaderName {
        /// The builder method.
        setting: &'static str,
        /// What was given.
        name: String,
    },
    /// The admin token is too short to resist guessing.
    #[error(
        "admin token must be at least {min} characters (got {got}); generate one with `openssl rand -hex 24`"
    )]
    WeakAdminToken {
        /// Minimum length.
        min: usize,
        /// Length given.
        got: usize,
    },
    /// A name (of a cache, for example) has characters or a length that exports cannot carry safely.
    #[error(
        "invalid {setting} {name:?}: use 1 to 64 characters among a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    InvalidName {
        /// What was being named.
        setting: &'static str,
        /// What was given.
        name: String,
    },
}
