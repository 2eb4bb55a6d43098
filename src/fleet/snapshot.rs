//! What [`Perfscope::fleet_snapshot`](crate::Perfscope::fleet_snapshot) returns.

use serde::Serialize;

use crate::snapshot::Percentiles;

/// Latency percentiles over every live instance of the fleet, merged from their histograms.
///
/// Merging histograms gives the percentiles of the union of all instances' samples, to the histograms'
/// precision (1% with the default two significant digits); averaging per-instance percentiles would not.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FleetSnapshot {
    /// When this instance read the fleet, milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// This instance's id.
    pub instance_id: String,
    /// The instances whose publish was live (not expired), the most recent publish first.
    pub instances: Vec<FleetInstance>,
    /// One entry per (method, route template) seen on any instance, sorted by route then method.
    pub routes: Vec<FleetRoute>,
    /// Entries under the fleet's keys that could not be read in this snapshot (foreign, corrupt, or written by
    /// another format version), and left out.
    pub skipped_instances: u64,
    /// Routes left out of this snapshot because their histograms did not decode or merge.
    pub skipped_routes: u64,
    /// This instance's publishing and reading counters.
    pub stats: FleetStats,
}

/// One live instance of the fleet.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FleetInstance {
    /// The id it publishes under.
    pub id: String,
    /// Time since its last publish, milliseconds, measured by Redis's clock (no clock skew between hosts).
    pub age_ms: u64,
    /// When it last published, by its own clock, milliseconds since the Unix epoch.
    pub published_at_unix_ms: u64,
    /// When its perfscope handle was built, by its own clock, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Routes it published.
    pub routes: usize,
    /// Latency samples it published, over all routes (its lifetime).
    pub requests: u64,
    /// Whether it is the instance that took the snapshot.
    pub this_instance: bool,
}

/// The fleet-wide latency of one (method, route template).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FleetRoute {
    /// HTTP method label.
    pub method: String,
    /// Route template.
    pub route: String,
    /// How many instances contributed.
    pub instances: usize,
    /// Latency (call to end of body) since each instance started: exact count, maximum and mean; percentiles
    /// within the histograms' precision.
    pub lifetime: Percentiles,
    /// Latency over each instance's last five minutes, as of its last publish.
    pub window_5m: Percentiles,
}

/// Counters of one instance's fleet publishing and reading, since publishing started.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct FleetStats {
    /// Publishes that reached Redis.
    pub publishes: u64,
    /// Publishes that failed (Redis unreachable, erroring or too slow); requests are never affected.
    pub publish_failures: u64,
    /// Of the failures, those that timed out.
    pub publish_timeouts: u64,
    /// Routes left out of publishes because a histogram could not be serialized.
    pub routes_left_out: u64,
    /// Entries read from Redis that could not be decoded, over all fleet snapshots.
    pub skipped_entries: u64,
    /// The last publish error, if the last publish failed.
    pub last_error: Option<String>,
}
