//! Monitor settings, filled by [`PerfscopeBuilder`](crate::PerfscopeBuilder).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::request::Parts;

use crate::header_policy::HeaderPolicy;

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
    /// Whether requests are charged their allocations when the counting allocator is installed.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(crate) count_allocations: bool,
    /// Bytes one request may allocate before it is logged.
    pub(crate) allocation_warning_bytes: u64,
}

/// Default of [`MonitorConfig::allocation_warning_bytes`]: 64 MiB.
pub(crate) const DEFAULT_ALLOCATION_WARNING_BYTES: u64 = 64 << 20;

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
            request_id_header: crate::request_id::HEADER.clone(),
            trust_request_id: true,
            user_id: None,
            detect_panics: true,
            count_allocations: true,
            allocation_warning_bytes: DEFAULT_ALLOCATION_WARNING_BYTES,
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
