//! [`HeaderPolicy`]: when perfscope's layers add timing headers (`X-Response-Time`, `Server-Timing`,
//! `X-Query-Count`) to responses.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

/// When the `X-Response-Time` and `Server-Timing` headers are added to responses.
///
/// Timing headers help in development (the browser's network tab shows them) but leak timing to anyone in
/// production: a login that answers faster for unknown users enumerates them. So the default only sends them in
/// debug builds. `X-Request-Id` is not a timing header and is always sent.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum HeaderPolicy {
    /// Never add timing headers.
    Never,
    /// Add them when the crate is compiled with debug assertions (the default).
    #[default]
    DebugBuildsOnly,
    /// Always add them.
    Always,
    /// Add them when the predicate accepts the request (for example a trusted header or an internal network).
    When(Arc<dyn Fn(&Parts) -> bool + Send + Sync>),
}

impl HeaderPolicy {
    /// A policy that asks `predicate` with each request's head (method, URI, headers, extensions).
    pub fn when(predicate: impl Fn(&Parts) -> bool + Send + Sync + 'static) -> Self {
        HeaderPolicy::When(Arc::new(predicate))
    }
}

#[cfg_attr(not(any(feature = "monitor", feature = "query")), allow(dead_code))]
impl HeaderPolicy {
    /// Whether a request with this head gets timing headers.
    pub(crate) fn allows(&self, head: &Parts) -> bool {
        match self {
            HeaderPolicy::When(predicate) => predicate(head),
            _ => self.allows_without_head(),
        }
    }

    /// The decision for policies that do not look at the request (`When` answers `false` here).
    pub(crate) fn allows_without_head(&self) -> bool {
        match self {
            HeaderPolicy::Never | HeaderPolicy::When(_) => false,
            HeaderPolicy::DebugBuildsOnly => cfg!(debug_assertions),
            HeaderPolicy::Always => true,
        }
    }

    /// The policy as resolved in this build, for the snapshot: `on`, `off` or `per_request`.
    #[cfg(feature = "monitor")]
    pub(crate) fn resolved(&self) -> &'static str {
        match self {
            HeaderPolicy::When(_) => "per_request",
            _ if self.allows_without_head() => "on",
            _ => "off",
        }
    }

    /// Whether the policy needs to see each request.
    pub(crate) fn needs_head(&self) -> bool {
        matches!(self, HeaderPolicy::When(_))
    }
}

impl fmt::Debug for HeaderPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderPolicy::Never => f.write_str("Never"),
            HeaderPolicy::DebugBuildsOnly => f.write_str("DebugBuildsOnly"),
            HeaderPolicy::Always => f.write_str("Always"),
            HeaderPolicy::When(_) => f.write_str("When(..)"),
        }
    }
}
