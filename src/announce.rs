//! The one line a handle logs when its first layer is made: which build defaults and thresholds are in force,
//! so a quiet production log is never mistaken for a clean application.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the handle has logged its settings.
#[derive(Debug, Default)]
pub(crate) struct Announcement {
    done: AtomicBool,
}

impl Announcement {
    /// Logs `line()` at INFO the first time it is called on this handle.
    pub(crate) fn once(&self, line: impl FnOnce() -> String) {
        if !self.done.swap(true, Ordering::Relaxed) {
            tracing::info!(target: "perfscope", "{}", line());
        }
    }
}

/// The line: build, timing headers and slow threshold, and the query detection profile.
pub(crate) fn settings_line(perf: &crate::Perfscope) -> String {
    let settings = perf.snapshot_settings();
    let line = format!("settings in force: {} build", settings.build);
    #[cfg(feature = "monitor")]
    let line = format!(
        "{line}, timing headers {}, slow requests from {} ms",
        settings.timing_headers, settings.slow_threshold_ms
    );
    #[cfg(feature = "query")]
    let line = {
        let detection = crate::query::DetectionSettings::of(perf.inner.query.detect_config());
        line + &format!(
            "; query detection profile {}: N+1 from {} repeats (a warning from {} ms in total, listed as info \
             below), slow queries from {} ms",
            detection.profile,
            detection.n_plus_one_min_repeats,
            detection.n_plus_one_warning_ms,
            detection.slow_query_ms
        )
    };
    line
}
