//! [`PerfscopeBuilder`]: every setting, checked once at build time.

#[cfg(feature = "monitor")]
use std::sync::Arc;
#[cfg(feature = "monitor")]
use std::time::Duration;

#[cfg(feature = "monitor")]
use http::HeaderName;

use crate::Perfscope;
use crate::error::BuildError;
use crate::header_policy::HeaderPolicy;
#[cfg(feature = "monitor")]
use crate::monitor::config::MonitorConfig;

/// Builds a [`Perfscope`] handle. Every setter takes and returns the builder by value.
///
/// ```
/// use std::time::Duration;
///
/// let perf = perfscope::Perfscope::builder()
///     .slow_threshold(Duration::from_millis(200))
///     .route_slow_threshold("/api/reports/{id}", Duration::from_secs(2))
///     .count_only(["/health"])
///     .build()
///     .expect("valid configuration");
/// # drop(perf);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug, Default)]
pub struct PerfscopeBuilder {
    #[cfg(feature = "monitor")]
    monitor: MonitorConfig,
    response_time_header: Option<String>,
    request_id_header: Option<String>,
    header_policy: HeaderPolicy,
    #[cfg(feature = "query")]
    query: crate::query::QueryConfig,
    connections: crate::connections::state::ConnectionsConfig,
}

#[cfg(feature = "monitor")]
impl PerfscopeBuilder {
    /// Most route templates tracked (default 512); further templates share the `<overflow>` label.
    pub fn max_routes(mut self, max_routes: usize) -> Self {
        self.monitor.max_routes = max_routes;
        self
    }

    /// Requests at least this long are slow: logged (rate-limited) and kept in the slow ring (default 1 s).
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.monitor.slow_threshold = threshold;
        self
    }

    /// A different slow threshold for one route template.
    pub fn route_slow_threshold(mut self, route: impl Into<String>, threshold: Duration) -> Self {
        self.monitor
            .route_slow_thresholds
            .push((route.into().into_boxed_str(), threshold));
        self
    }

    /// Requests in flight longer than this are listed as hung in snapshots (default 10 s).
    pub fn hung_threshold(mut self, threshold: Duration) -> Self {
        self.monitor.hung_threshold = threshold;
        self
    }

    /// How many recent slow requests are kept (default 256).
    pub fn slow_log_capacity(mut self, capacity: usize) -> Self {
        self.monitor.slow_log_capacity = capacity;
        self
    }

    /// Most slow-request warnings logged per minute (default 60); the rest are counted.
    pub fn slow_warnings_per_minute(mut self, limit: u32) -> Self {
        self.monitor.slow_warnings_per_minute = limit;
        self
    }

    /// Route templates not measured at all.
    pub fn exclude<I, R>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.monitor.excluded.extend(
            routes
                .into_iter()
                .map(|route| route.into().into_boxed_str()),
        );
        self
    }

    /// Route templates only counted (statuses and outcomes, no latency histograms): health and readiness probes.
    pub fn count_only<I, R>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.monitor.count_only.extend(
            routes
                .into_iter()
                .map(|route| route.into().into_boxed_str()),
        );
        self
    }

    /// Largest latency kept exactly in histograms (default 60 s); longer ones are recorded as this value and
    /// counted. The exact maximum is tracked separately.
    pub fn histogram_max(mut self, max: Duration) -> Self {
        self.monitor.histogram_max = max;
        self
    }

    /// Significant decimal digits of the histograms, 1 to 5 (default 2: 1% resolution, 20 KiB per series
    /// and recording thread).
    pub fn significant_digits(mut self, digits: u8) -> Self {
        self.monitor.significant_digits = digits;
        self
    }

    /// Name of the response-time header (default `x-response-time`).
    pub fn response_time_header(mut self, name: impl Into<String>) -> Self {
        self.response_time_header = Some(name.into());
        self
    }

    /// Name of the request-ID header, read on requests and set on responses (default `x-request-id`).
    pub fn request_id_header(mut self, name: impl Into<String>) -> Self {
        self.request_id_header = Some(name.into());
        self
    }

    /// Whether a valid inbound request ID is kept (default `true`); when `false`, every request gets a new one.
    pub fn trust_request_id(mut self, trust: bool) -> Self {
        self.monitor.trust_request_id = trust;
        self
    }

    /// Whether to install perfscope's panic hook (default `true`), which lets the monitor count handler panics
    /// that an inner `CatchPanicLayer` turned into 500s as `panic`. The hook is process-wide, chains to the
    /// previous hook and stores nothing; turn it off if the application manages panic hooks itself.
    pub fn detect_panics(mut self, detect: bool) -> Self {
        self.monitor.detect_panics = detect;
        self
    }

    /// A hook that names the user of a request (from a header or an extension set by authentication); the ID
    /// shows in slow-request records.
    pub fn user_id(
        mut self,
        hook: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.monitor.user_id = Some(Arc::new(hook));
        self
    }
}

#[cfg(all(feature = "monitor", feature = "alloc"))]
impl PerfscopeBuilder {
    /// Whether each request is charged the bytes it allocates (default `true`), which takes effect only when
    /// [`CountingAllocator`](crate::alloc::CountingAllocator) is the global allocator. Turning it off keeps the
    /// allocator's counting but leaves requests, routes and `Server-Timing` without allocation figures.
    pub fn count_allocations(mut self, count: bool) -> Self {
        self.monitor.count_allocations = count;
        self
    }

    /// A request that allocates more than `bytes` is logged: a `tracing` warning (target `perfscope::alloc`)
    /// with its request ID, route and bytes, at most [`slow_warnings_per_minute`](Self::slow_warnings_per_minute)
    /// a minute, the rest counted. Default 64 MiB; `u64::MAX` turns the warning off.
    ///
    /// ```
    /// let perf = perfscope::Perfscope::builder()
    ///     .allocation_warning_threshold(16 << 20)
    ///     .build()
    ///     .expect("valid configuration");
    /// # drop(perf);
    /// ```
    pub fn allocation_warning_threshold(mut self, bytes: u64) -> Self {
        self.monitor.allocation_warning_bytes = bytes;
        self
    }
}

#[cfg(feature = "monitor")]
fn header_name(
    setting: &'static str,
    name: Option<String>,
    default: HeaderName,
) -> Result<HeaderName, BuildError> {
    match name {
        None => Ok(default),
        Some(name) => HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| BuildError::InvalidHeaderName { setting, name }),
    }
}

impl PerfscopeBuilder {
    /// When to add `X-Response-Time`, `Server-Timing` and `X-Query-Count` (default
    /// [`HeaderPolicy::DebugBuildsOnly`]).
    pub fn timing_headers(mut self, policy: HeaderPolicy) -> Self {
        self.header_policy = policy;
        self
    }

    /// The query analyzer's settings (default [`QueryConfig::default`](crate::query::QueryConfig::default)).
    #[cfg(feature = "query")]
    pub fn query(mut self, config: crate::query::QueryConfig) -> Self {
        self.query = config;
        self
    }

    /// Connections still sending their first request head on one listener from which a warning is logged
    /// (default 1,000; see [`crate::connections`]).
    ///
    /// ```
    /// let perf = perfscope::Perfscope::builder().head_pending_warning(500).build().unwrap();
    /// # drop(perf);
    /// ```
    pub fn head_pending_warning(mut self, connections: usize) -> Self {
        self.connections.head_pending_warning = connections;
        self
    }

    /// The share of the open-files limit (`RLIMIT_NOFILE`) that the open connections (each a file descriptor)
    /// reach when a warning is logged, between 0 and 1 (default 0.8; see [`crate::connections`]).
    ///
    /// ```
    /// let perf = perfscope::Perfscope::builder().open_files_warning_ratio(0.9).build().unwrap();
    /// # drop(perf);
    /// ```
    pub fn open_files_warning_ratio(mut self, ratio: f64) -> Self {
        self.connections.open_files_warning_ratio = ratio;
        self
    }

    /// Checks the settings and builds the handle.
    pub fn build(self) -> Result<Perfscope, BuildError> {
        let ratio = self.connections.open_files_warning_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(BuildError::OutOfRange {
                setting: "open_files_warning_ratio",
                expected: "above 0 and at most 1",
                got: ratio.to_string(),
            });
        }
        #[cfg(feature = "monitor")]
        let monitor = {
            let mut monitor = self.monitor;
            monitor.header_policy = self.header_policy.clone();
            if monitor.max_routes == 0 {
                return Err(BuildError::OutOfRange {
                    setting: "max_routes",
                    expected: "at least 1",
                    got: "0".into(),
                });
            }
            if !(1..=5).contains(&monitor.significant_digits) {
                return Err(BuildError::OutOfRange {
                    setting: "significant_digits",
                    expected: "between 1 and 5",
                    got: monitor.significant_digits.to_string(),
                });
            }
            if monitor.histogram_max < Duration::from_millis(1) {
                return Err(BuildError::OutOfRange {
                    setting: "histogram_max",
                    expected: "at least 1 ms",
                    got: format!("{:?}", monitor.histogram_max),
                });
            }
            monitor.response_time_header = header_name(
                "response_time_header",
                self.response_time_header,
                monitor.response_time_header,
            )?;
            monitor.request_id_header = header_name(
                "request_id_header",
                self.request_id_header,
                monitor.request_id_header,
            )?;
            monitor
        };
        #[cfg(not(feature = "monitor"))]
        let _ = (self.response_time_header, self.request_id_header);
        Ok(Perfscope::from_parts(
            self.connections,
            #[cfg(feature = "monitor")]
            monitor,
            #[cfg(feature = "query")]
            self.query,
            #[cfg(feature = "query")]
            self.header_policy,
        ))
    }
}

#[cfg(all(test, feature = "monitor"))]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_a_hint() {
        let error = Perfscope::builder().max_routes(0).build().unwrap_err();
        assert_eq!(error.to_string(), "max_routes must be at least 1, got 0");
        let error = Perfscope::builder()
            .significant_digits(9)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("between 1 and 5"));
        let error = Perfscope::builder()
            .request_id_header("bad header")
            .build()
            .unwrap_err();
        assert!(matches!(error, BuildError::InvalidHeaderName { .. }));
    }
}
