//! Monitor settings, filled by [`PerfscopeBuilder`](crate::PerfscopeBuilder).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
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

/// Extracts a user ID from a request's head (method, URI, headers, extensions).
pub(crate) type UserIdHook = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Everything the monitor is configured with.
#[derive(Clone)]
pub(crate) struct MonitorConfig {
    pub(crate) max_routes: usize,
    pub(crate) slow_threshold: Duration,
    pub(crate) route_slow_thresholds: Vec<(Box<str>, Duration)>,
    pub(crate) hung_threshold: Duration,
    pub(crate) slow_log_capacity: usize,
    pub(crate) slow_warnings_per_minute: u32,
    pub(crate) excluded: Vec<Box<str>>,
    pub(crate) count_only: Vec<Box<str>>,
    pub(crate) histogram_max: Duration,
    pub(crate) significant_digits: u8,
    pub(crate) header_policy: HeaderPolicy,
    pub(crate) response_time_header: HeaderName,
    pub(crate) request_id_header: HeaderName,
    pub(crate) trust_request_id: bool,
    pub(crate) user_id: Option<UserIdHook>,
    pub(crate) detect_panics: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            max_routes: 512,
            slow_threshold: Duration::from_secs(1),
            route_slow_thresholds: Vec::new(),
            hung_threshold: Duration::from_secs(10),
            slow_log_capacity: 256,
            slow_warnings_per_minute: 60,
            excluded: Vec::new(),
            count_only: Vec::new(),
            histogram_max: Duration::from_secs(60),
            significant_digits: 2,
            header_policy: HeaderPolicy::default(),
            response_time_header: HeaderName::from_static("x-response-time"),
            request_id_header: HeaderName::from_static("x-request-id"),
            trust_request_id: true,
            user_id: None,
            detect_panics: true,
        }
    }
}

impl fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("max_routes", &self.max_routes)
            .field("slow_threshold", &self.slow_threshold)
            .field("hung_threshold", &self.hung_threshold)
            .field("header_policy", &self.header_policy)
            .field("trust_request_id", &self.trust_request_id)
            .finish_non_exhaustive()
    }
}
