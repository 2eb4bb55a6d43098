//! JSON export of a [`Snapshot`].
//!
//! The document is the snapshot serialized with serde, field for field; `docs/schema.md` documents every
//! field with its type and unit. Numbers that are not finite (which a well-formed snapshot does not hold)
//! are written as `null`, as `serde_json` does.

use crate::snapshot::Snapshot;

/// Renders `snapshot` as compact JSON, the body of a `/stats` style response.
///
/// ```
/// # #[cfg(feature = "monitor")] {
/// let perf = perfscope::Perfscope::builder().build().unwrap();
/// let json = perfscope::export::json(&perf.snapshot());
/// assert!(json.starts_with('{'));
/// # }
/// ```
pub fn render(snapshot: &Snapshot) -> String {
    match serde_json::to_string(snapshot) {
        Ok(json) => json,
        Err(error) => error_document(&error),
    }
}

/// Renders `snapshot` as indented JSON, for people reading it.
pub fn render_pretty(snapshot: &Snapshot) -> String {
    match serde_json::to_string_pretty(snapshot) {
        Ok(json) => json,
        Err(error) => error_document(&error),
    }
}

/// The document returned if serialization fails.
///
/// It cannot fail for these types: every field is a string, a number, a bool, an option, a sequence, a
/// struct, or a map with integer keys (written as strings), and `serde_json` writes non-finite floats as
/// `null` instead of failing. The fallback is still valid JSON so a dashboard polling the endpoint shows an
/// error instead of choking on a half-written body.
fn error_document(error: &serde_json::Error) -> String {
    serde_json::json!({
        "error": "perfscope snapshot serialization failed",
        "detail": error.to_string(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::snapshot::{
        Bucket, HungRequest, LatencyWindows, Outcomes, OverflowStats, Percentiles, PhaseTiming,
        RouteStats, SlowRequest,
    };

    fn snapshot() -> Snapshot {
        let p = Percentiles {
            count: 2,
            p50_ms: 1.5,
            max_ms: 3.0,
            mean_ms: 2.0,
            ..Percentiles::default()
        };
        Snapshot {
            taken_at_unix_ms: 1_700_000_000_000,
            uptime_secs: 1.25,
            settings: crate::SettingsSnapshot {
                build: "debug",
                timing_headers: "on",
                slow_threshold_ms: 1000.0,
                hung_threshold_ms: 10_000.0,
                allocation_warning_bytes: Some(64 << 20),
            },
            in_flight: 0,
            peak_in_flight: 2,
            requests_total: 3,
            routes: vec![RouteStats {
                method: "GET".into(),
                route: "/q\"uote/{id}".into(),
                count: 2,
                errors: 0,
                in_flight: 0,
                peak_in_flight: 1,
                p50_ms: 1.5,
                p90_ms: f64::NAN,
                p95_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 3.0,
                mean_ms: 2.0,
                latency: LatencyWindows {
                    lifetime: p,
                    ..LatencyWindows::default()
                },
                time_to_headers: p,
                streams: Percentiles::default(),
                statuses: BTreeMap::from([(200, 2)]),
                outcomes: Outcomes {
                    ok: 2,
                    ..Outcomes::default()
                },
                buckets: vec![Bucket {
                    le_secs: 0.005,
                    count: 2,
                }],
                distribution: Vec::new(),
                sum_secs: 0.004,
                allocated_bytes: Some(crate::AllocatedBytes {
                    count: 2,
                    p50: 1 << 20,
                    p95: 3 << 20,
                    max: 3 << 20,
                    sum: 4 << 20,
                }),
            }],
            slow_requests_total: 1,
            slow_requests: vec![SlowRequest {
                request_id: "abc".into(),
                method: "GET".into(),
                route: "/q\"uote/{id}".into(),
                status: None,
                outcome: "cancelled".into(),
                duration_ms: 3.0,
                phases: vec![PhaseTiming {
                    name: "db".into(),
                    duration_ms: 1.0,
                }],
                user_id: None,
                finished_at_unix_ms: 1_700_000_000_001,
            }],
            hung_requests: vec![HungRequest {
                request_id: "def".into(),
                method: "POST".into(),
                route: "<unmatched>".into(),
                age_ms: 31_000.0,
            }],
            overflow: OverflowStats::default(),
            process: crate::ProcessStats {
                resident_memory_bytes: Some(50 << 20),
                counting_allocator: true,
                open_fds: Some(12),
                max_fds: Some(1024),
            },
            connections: Default::default(),
            #[cfg(feature = "cache")]
            caches: Vec::new(),
            #[cfg(feature = "query")]
            queries: Default::default(),
        }
    }

    #[test]
    fn compact_and_pretty_hold_the_same_document() {
        let s = snapshot();
        let compact: Value = serde_json::from_str(&render(&s)).unwrap();
        let pretty: Value = serde_json::from_str(&render_pretty(&s)).unwrap();
        assert_eq!(compact, pretty);
        assert!(!render(&s).contains('\n'));
        assert!(render_pretty(&s).contains('\n'));
    }

    #[test]
    fn fields_have_the_documented_shape() {
        let v: Value = serde_json::from_str(&render(&snapshot())).unwrap();
        assert_eq!(v["uptime_secs"], 1.25);
        let route = &v["routes"][0];
        assert_eq!(route["route"], "/q\"uote/{id}");
        assert_eq!(route["statuses"]["200"], 2);
        assert_eq!(route["outcomes"]["ok"], 2);
        assert_eq!(route["latency"]["lifetime"]["count"], 2);
        assert_eq!(route["buckets"][0]["le_secs"], 0.005);
        assert_eq!(
            route["p90_ms"],
            Value::Null,
            "non-finite numbers become null"
        );
        assert_eq!(v["slow_requests"][0]["status"], Value::Null);
        assert_eq!(v["slow_requests"][0]["phases"][0]["name"], "db");
        assert_eq!(v["hung_requests"][0]["age_ms"], 31_000.0);
        assert_eq!(v["overflow"]["route_overflow_requests"], 0);
        assert_eq!(v["overflow"]["allocation_warnings_suppressed"], 0);
        assert_eq!(route["allocated_bytes"]["p95"], 3 << 20);
        assert_eq!(route["allocated_bytes"]["sum"], 4 << 20);
        assert_eq!(v["process"]["resident_memory_bytes"], 50 << 20);
        assert_eq!(v["process"]["counting_allocator"], true);
        assert_eq!(v["settings"]["allocation_warning_bytes"], 64 << 20);
    }

    #[test]
    fn error_document_is_json() {
        let error = serde_json::from_str::<Value>("{").unwrap_err();
        let v: Value = serde_json::from_str(&error_document(&error)).unwrap();
        assert_eq!(v["error"], "perfscope snapshot serialization failed");
        assert!(v["detail"].is_string());
    }
}
