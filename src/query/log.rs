//! One request's query log: filled while the request runs (from the driver's thread or the request's task),
//! settled once, when the request's context is dropped, so queries that report late still count.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::analyzer::{Analyzer, RouteHandle};
use super::model::{FingerprintId, FingerprintTotals, QueryRecord, RequestQueries};
use crate::request_id::RequestId;
use crate::route::MethodLabel;

/// The queries of one request so far.
pub(crate) struct QueryLog {
    analyzer: Arc<Analyzer>,
    /// The request's route in the analyzer, when the layer that made the log knew it.
    route: Option<RouteHandle>,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    records: Vec<QueryRecord>,
    records_dropped: u64,
    totals: Vec<FingerprintTotals>,
    untracked: u64,
    count: u64,
    db_time: Duration,
    pool_waits: u64,
    pool_wait: Duration,
}

/// What the context knows about its request when it settles the log.
pub(crate) struct RequestFacts<'a> {
    pub(crate) method: MethodLabel,
    pub(crate) route: Option<&'a str>,
    pub(crate) request_id: &'a RequestId,
    pub(crate) elapsed: Duration,
}

impl QueryLog {
    pub(crate) fn new(analyzer: Arc<Analyzer>, route: Option<RouteHandle>) -> Self {
        QueryLog {
            analyzer,
            route,
            state: Mutex::new(LogState::default()),
        }
    }

    /// The analyzer this log settles into.
    pub(crate) fn analyzer(&self) -> &Arc<Analyzer> {
        &self.analyzer
    }

    /// Adds one query. Past the caps only counters grow, so a request that runs a million queries keeps a
    /// bounded log.
    pub(crate) fn push(&self, record: QueryRecord) {
        let limits = self.analyzer.limits();
        let mut state = self.state.lock();
        let index = state.count;
        state.count += 1;
        state.db_time = state.db_time.saturating_add(record.duration);
        let rows = record.rows_returned.unwrap_or(0);
        let state = &mut *state;
        if let Some(totals) = state
            .totals
            .iter_mut()
            .find(|t| t.fingerprint == record.fingerprint)
        {
            totals.count += 1;
            totals.total = totals.total.saturating_add(record.duration);
            totals.max = totals.max.max(record.duration);
            totals.rows_returned = totals.rows_returned.saturating_add(rows);
        } else if state.totals.len() < limits.fingerprints_per_request {
            state.totals.push(FingerprintTotals {
                fingerprint: record.fingerprint,
                count: 1,
                total: record.duration,
                max: record.duration,
                rows_returned: rows,
                first_index: index,
                distinct_params: 0,
            });
        } else {
            state.untracked += 1;
        }
        if state.records.len() < limits.records_per_request {
            state.records.push(record);
        } else {
            state.records_dropped += 1;
        }
    }

    /// Adds a slow wait for a pooled connection.
    pub(crate) fn push_pool_wait(&self, wait: Duration) {
        let mut state = self.state.lock();
        state.pool_waits += 1;
        state.pool_wait = state.pool_wait.saturating_add(wait);
    }

    /// Queries so far.
    pub(crate) fn count(&self) -> u64 {
        self.state.lock().count
    }

    /// Hands the finished log to the analyzer.
    pub(crate) fn settle(self, facts: RequestFacts<'_>) {
        let QueryLog {
            analyzer,
            route,
            state,
        } = self;
        let mut state = state.into_inner();
        // The layer's route is the request's, unless something set another one on the context.
        let route = route.filter(|handle| facts.route.is_none_or(|r| r == handle.label()));
        if state.count == 0 && state.pool_waits == 0 {
            let route = route.unwrap_or_else(|| analyzer.route_handle(facts.method, facts.route));
            analyzer.settle_empty(facts.method, route, facts.request_id, facts.elapsed);
            return;
        }
        count_distinct_params(&state.records, &mut state.totals);
        let queries = RequestQueries {
            method: facts.method,
            route: route.as_ref().map_or_else(
                || analyzer.route_label(facts.route),
                RouteHandle::shared_label,
            ),
            request_id: facts.request_id.as_str().to_owned(),
            elapsed: facts.elapsed,
            records: state.records,
            records_dropped: state.records_dropped,
            totals: state.totals,
            untracked: state.untracked,
            count: state.count,
            db_time: state.db_time,
            pool_waits: state.pool_waits,
            pool_wait: state.pool_wait,
        };
        analyzer.settle(queries, route);
    }
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

/// Fills `distinct_params` of each fingerprint from the detailed records that carry a parameter hash.
fn count_distinct_params(records: &[QueryRecord], totals: &mut [FingerprintTotals]) {
    if records.iter().all(|r| r.params.is_none()) {
        return;
    }
    let mut pairs: Vec<(FingerprintId, u64)> = records
        .iter()
        .filter_map(|r| r.params.map(|p| (r.fingerprint, p)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    for totals in totals.iter_mut() {
        let distinct = pairs
            .iter()
            .filter(|(fingerprint, _)| *fingerprint == totals.fingerprint)
            .count();
        totals.distinct_params = u32::try_from(distinct).unwrap_or(u32::MAX);
    }
}
