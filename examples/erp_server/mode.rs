//! Which of perfscope's layers wrap the application, chosen at start-up with `PERFSCOPE_MODE`.
//!
//! The modes exist so the cost of perfscope can be measured on the same server (`scripts/loadtest` runs one
//! server per mode side by side). Only perfscope's instrumentation varies: the application's log (its fmt layer
//! with its filter), tower-http's `TraceLayer`, its caches (the response cache included: it is part of how the
//! application answers, not a measurement) and the admin router are the same in every mode.

use std::fmt;

/// The environment variable that chooses the mode.
pub(crate) const VARIABLE: &str = "PERFSCOPE_MODE";

/// How much of perfscope measures the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PerfscopeMode {
    /// No perfscope layer and no capture layer: the application as it would run without perfscope.
    Off,
    /// The request monitor only (`perf.layer()`): latency, status, request IDs, timing headers.
    Monitor,
    /// The monitor, the query layer and the query capture layer in the subscriber (the default).
    Full,
}

impl PerfscopeMode {
    /// The mode named by `PERFSCOPE_MODE`: `off`, `monitor` or `full`; unset or empty means `full`. Any other
    /// value is an error, so a typo in a benchmark's setup cannot silently measure the wrong thing.
    pub(crate) fn from_env() -> Result<Self, String> {
        match std::env::var(VARIABLE) {
            Err(std::env::VarError::NotPresent) => Ok(Self::Full),
            Err(std::env::VarError::NotUnicode(value)) => Err(format!(
                "{VARIABLE} must be off, monitor or full, not {value:?}"
            )),
            Ok(value) => Self::parse(value.trim())
                .ok_or_else(|| format!("{VARIABLE} must be off, monitor or full, not `{value}`")),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "" | "full" => Some(Self::Full),
            "monitor" => Some(Self::Monitor),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    /// Whether `perf.layer()` wraps the application routes.
    pub(crate) fn monitors_requests(self) -> bool {
        matches!(self, Self::Monitor | Self::Full)
    }

    /// Whether the query layer wraps the routes (with the monitor, `perf.layers()`) and
    /// `perf.query_capture_layer()` is in the subscriber.
    pub(crate) fn analyzes_queries(self) -> bool {
        matches!(self, Self::Full)
    }
}

impl fmt::Display for PerfscopeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Monitor => "monitor",
            Self::Full => "full",
        })
    }
}
