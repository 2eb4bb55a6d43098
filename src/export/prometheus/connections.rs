//! The connection families (per listener, label `listener`) and the process's open files.

use std::fmt::{self, Write};

use super::{Float, escape, global, header, ms_to_secs};
use crate::snapshot::{ConnectionsSnapshot, ListenerConnections, ProcessStats};

const OPEN: &str = "perfscope_http_server_open_connections";
const PEAK_OPEN: &str = "perfscope_http_server_peak_open_connections";
const ACCEPTED: &str = "perfscope_http_server_connections_total";
const HEAD_PENDING: &str = "perfscope_http_server_connections_head_pending";
const HEAD_PENDING_OLDEST: &str = "perfscope_http_server_connections_head_pending_oldest_seconds";
const HEAD_READ: &str = "perfscope_http_server_connection_head_read_seconds";
const CLOSED: &str = "perfscope_http_server_connections_closed_total";
const WARNINGS_SUPPRESSED: &str = "perfscope_connection_warnings_suppressed_total";
/// The names Prometheus client libraries give the same figures, so existing dashboards find them.
const OPEN_FDS: &str = "process_open_fds";
const MAX_FDS: &str = "process_max_fds";

/// `process_open_fds` and `process_max_fds`, each where it is known (Linux).
pub(super) fn write_process_files(out: &mut String, process: &ProcessStats) -> fmt::Result {
    if let Some(open) = process.open_fds {
        global(
            out,
            OPEN_FDS,
            "gauge",
            "Number of open file descriptors.",
            open,
        )?;
    }
    if let Some(max) = process.max_fds {
        global(
            out,
            MAX_FDS,
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        )?;
    }
    Ok(())
}

/// Starts a sample of `listener`: `name{listener="…"`, label set left open.
fn listener_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    listener: &ListenerConnections,
) -> fmt::Result {
    out.write_str(name)?;
    out.write_str(suffix)?;
    out.write_str("{listener=\"")?;
    escape(out, &listener.listener, true)?;
    out.write_char('"')
}

/// One family with one sample per listener.
fn per_listener(
    out: &mut String,
    connections: &ConnectionsSnapshot,
    name: &str,
    kind: &str,
    help: &str,
    v: impl Fn(&ListenerConnections) -> String,
) -> fmt::Result {
    header(out, name, kind, help)?;
    for listener in &connections.listeners {
        listener_series(out, name, "", listener)?;
        writeln!(out, "}} {}", v(listener))?;
    }
    Ok(())
}

/// The connection families, written when at least one listener is counted.
pub(super) fn write_connections(
    out: &mut String,
    connections: &ConnectionsSnapshot,
) -> fmt::Result {
    per_listener(
        out,
        connections,
        OPEN,
        "gauge",
        "Connections open now.",
        |l| l.open.to_string(),
    )?;
    per_listener(
        out,
        connections,
        PEAK_OPEN,
        "gauge",
        "The most connections open at once.",
        |l| l.peak_open.to_string(),
    )?;
    per_listener(
        out,
        connections,
        ACCEPTED,
        "counter",
        "Connections accepted.",
        |l| l.accepted_total.to_string(),
    )?;
    per_listener(
        out,
        connections,
        HEAD_PENDING,
        "gauge",
        "Open connections whose first request head is not complete yet.",
        |l| l.head_pending.to_string(),
    )?;
    per_listener(
        out,
        connections,
        HEAD_PENDING_OLDEST,
        "gauge",
        "Age of the oldest connection still sending its first request head (0 when none).",
        |l| Float(ms_to_secs(l.head_pending_age.oldest_ms)).to_string(),
    )?;

    header(
        out,
        HEAD_READ,
        "summary",
        "Time from accept to the end of the first request head.",
    )?;
    for listener in &connections.listeners {
        let read = &listener.head_read;
        for (quantile, ms) in [("0.5", read.p50_ms), ("0.99", read.p99_ms)] {
            listener_series(out, HEAD_READ, "", listener)?;
            writeln!(out, ",quantile=\"{quantile}\"}} {}", Float(ms_to_secs(ms)))?;
        }
        listener_series(out, HEAD_READ, "_sum", listener)?;
        writeln!(out, "}} {}", Float(ms_to_secs(read.sum_ms)))?;
        listener_series(out, HEAD_READ, "_count", listener)?;
        writeln!(out, "}} {}", read.count)?;
    }

    header(
        out,
        CLOSED,
        "counter",
        "Connections ended, by reason: client_closed, server_closed, head_timeout, head_abandoned, refused \
         (answered by the HTTP server before a request reached the router), empty, shed (closed by the server at its \
         connection limit).",
    )?;
    for listener in &connections.listeners {
        let c = &listener.closed;
        for (reason, n) in [
            ("client_closed", c.client_closed),
            ("server_closed", c.server_closed),
            ("head_timeout", c.head_timeout),
            ("head_abandoned", c.head_abandoned),
            ("refused", c.refused),
            ("empty", c.empty),
            ("shed", c.shed),
        ] {
            listener_series(out, CLOSED, "", listener)?;
            writeln!(out, ",reason=\"{reason}\"}} {n}")?;
        }
    }
    global(
        out,
        WARNINGS_SUPPRESSED,
        "counter",
        "Connection warnings not logged because of the rate limit.",
        connections.warnings_suppressed,
    )
}
