//! Getting queries in: [`QueryCaptureLayer`] reads sqlx's `sqlx::query` and `sqlx::pool::acquire` events, and
//! [`QueryRecorder`] is the manual API for other drivers. Both attribute each query to its request's
//! [`RequestContext`], or count it as unattributed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{Filtered, LevelFilter};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::analyzer::Analyzer;
use super::log::QueryLog;
use super::model::{Dialect, FingerprintId, FingerprintInfo, QueryRecord, StatementKind};
use crate::context::RequestContext;
use crate::context_layer::{self, REQUEST_SPAN_TARGET};

/// Target of sqlx's per-statement events.
pub const SQLX_QUERY_TARGET: &str = "sqlx::query";
/// Target of sqlx's slow pool-acquire events.
pub const SQLX_POOL_TARGET: &str = "sqlx::pool::acquire";

/// Records queries run by drivers that do not emit sqlx's events (tokio-postgres, diesel, SeaORM callbacks),
/// attributing each to the current request. Cheap to clone; get one with
/// [`Perfscope::query_recorder`](crate::Perfscope::query_recorder).
///
/// ```
/// use std::time::Duration;
///
/// let perf = perfscope::Perfscope::builder().build().unwrap();
/// let recorder = perf.query_recorder();
/// // With a duration you measured:
/// recorder.record("SELECT name FROM products WHERE id = $1", Duration::from_micros(180), Some(1));
/// // Or with a guard that times until it is dropped:
/// let mut timer = recorder.time("UPDATE products SET price = $1 WHERE id = $2");
/// // ... run the statement ...
/// timer.set_rows(1);
/// drop(timer);
/// // Outside a request both count as unattributed.
/// assert_eq!(perf.snapshot().queries.unattributed_queries, 2);
/// ```
#[derive(Clone)]
pub struct QueryRecorder {
    analyzer: Arc<Analyzer>,
}

impl std::fmt::Debug for QueryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRecorder").finish_non_exhaustive()
    }
}

/// What one query reported, besides its statement.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueryFacts {
    pub(crate) duration: Duration,
    pub(crate) rows_returned: Option<u64>,
    pub(crate) rows_affected: Option<u64>,
    pub(crate) params: Option<u64>,
    /// The call site (0: directly in the request).
    pub(crate) site: u64,
    /// When it started, since the request started, when the caller knows; otherwise its end (when it is
    /// recorded) minus its duration.
    pub(crate) start: Option<Duration>,
    /// The dialect to read it in, when not the configured one.
    pub(crate) dialect: Option<Dialect>,
}

impl QueryRecorder {
    pub(crate) fn new(analyzer: Arc<Analyzer>) -> Self {
        QueryRecorder { analyzer }
    }

    /// Records a query that took `duration` and returned `rows` rows (when known), in the current request
    /// ([`RequestContext::current`]).
    pub fn record(&self, sql: &str, duration: Duration, rows: Option<u64>) {
        let facts = QueryFacts {
            duration,
            rows_returned: rows,
            ..QueryFacts::default()
        };
        self.record_facts(RequestContext::current().as_ref(), sql, facts);
    }

    /// Records a query in `context`'s request (for code that holds the context, on any thread).
    pub fn record_in(
        &self,
        context: &RequestContext,
        sql: &str,
        duration: Duration,
        rows: Option<u64>,
    ) {
        let facts = QueryFacts {
            duration,
            rows_returned: rows,
            ..QueryFacts::default()
        };
        self.record_facts(Some(context), sql, facts);
    }

    /// Records a query with a hash of its bind values, which tells an N+1 (different values) from a
    /// duplicate (the same values). Hash the values yourself; perfscope never sees them.
    pub fn record_with_params(
        &self,
        sql: &str,
        duration: Duration,
        rows: Option<u64>,
        params_hash: u64,
    ) {
        let facts = QueryFacts {
            duration,
            rows_returned: rows,
            params: Some(params_hash),
            ..QueryFacts::default()
        };
        self.record_facts(RequestContext::current().as_ref(), sql, facts);
    }

    /// Describes one query to record, with everything a driver may know about it: its start, duration, rows,
    /// values, call site and dialect. Nothing is recorded until [`record`](QueryRecordBuilder::record) or
    /// [`record_in`](QueryRecordBuilder::record_in).
    ///
    /// ```
    /// use std::time::Duration;
    /// use perfscope::query::Dialect;
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// let recorder = perf.query_recorder();
    /// # let context = perfscope::RequestContext::new(
    /// #     perfscope::RequestId::generate(0),
    /// #     perfscope::MethodLabel::of(&http::Method::GET),
    /// #     tokio::time::Instant::now(),
    /// #     0,
    /// # );
    /// // A statement run through tiberius, 3 ms into the request, from the orders repository.
    /// recorder
    ///     .query("SELECT TOP (@P1) [Id] FROM [Orders] WHERE [CustomerId] = @P2")
    ///     .dialect(Dialect::TSql)
    ///     .started_at(Duration::from_millis(3))
    ///     .duration(Duration::from_micros(420))
    ///     .rows_returned(20)
    ///     .site_here()
    ///     .record_in(&context);
    /// assert_eq!(context.counters().queries, 1);
    /// ```
    pub fn query<'a>(&'a self, sql: &'a str) -> QueryRecordBuilder<'a> {
        QueryRecordBuilder {
            recorder: self,
            sql,
            facts: QueryFacts::default(),
        }
    }

    /// A guard that records `sql` when dropped, timed from now, in the request current now.
    pub fn time(&self, sql: &str) -> QueryTimer {
        let context = RequestContext::current();
        let (id, values) = self
            .fingerprint_in(context.as_ref(), sql)
            .map_or((None, None), |(id, values)| (Some(id), values));
        QueryTimer {
            recorder: self.clone(),
            id,
            values,
            context,
            start: Instant::now(),
            rows: None,
        }
    }

    pub(crate) fn record_facts(
        &self,
        context: Option<&RequestContext>,
        sql: &str,
        facts: QueryFacts,
    ) {
        match self.log_of(context) {
            // The request's log may belong to another handle's analyzer (one capture layer serves every
            // handle in the process): fingerprint with the analyzer that will read the fingerprint.
            (Some(context), Some(log)) => {
                let (info, values) = match facts.dialect {
                    Some(dialect) => log.analyzer().fingerprint_and_values_in(sql, dialect),
                    None => log.analyzer().fingerprint_and_values(sql),
                };
                let facts = QueryFacts {
                    params: facts.params.or(values),
                    ..facts
                };
                record_fingerprinted(context, log, &info, facts);
            }
            (context, _) => self.count_only(context, facts.duration),
        }
    }

    /// The request's log, unless there is no request or it is excluded from statistics.
    fn log_of<'c>(
        &self,
        context: Option<&'c RequestContext>,
    ) -> (Option<&'c RequestContext>, Option<&'c QueryLog>) {
        let log = context
            .filter(|c| !c.is_excluded())
            .map(|c| c.query_log(&self.analyzer));
        (context, log)
    }

    /// A query that goes in no log: counted on its (excluded) request, or as unattributed.
    fn count_only(&self, context: Option<&RequestContext>, duration: Duration) {
        match context {
            Some(context) => context.record_query(duration),
            None => self.analyzer.unattributed(duration),
        }
    }

    /// The fingerprint `sql` gets in `context`'s log; `None` when the query goes in no log (outside a request,
    /// or in an excluded one), where only its time counts.
    /// With the identity of its values when the text shows them.
    fn fingerprint_in(
        &self,
        context: Option<&RequestContext>,
        sql: &str,
    ) -> Option<(FingerprintId, Option<u64>)> {
        let (_, log) = self.log_of(context);
        log.map(|log| {
            let (info, values) = log.analyzer().fingerprint_and_values(sql);
            (info.id, values)
        })
    }

    fn record_pool_wait(&self, context: Option<&RequestContext>, wait: Duration) {
        if let Some(context) = context.filter(|c| !c.is_excluded()) {
            context.query_log(&self.analyzer).push_pool_wait(wait);
        }
    }
}

/// Counts a fingerprinted query on `context` and adds it to its `log`.
fn record_fingerprinted(
    context: &RequestContext,
    log: &QueryLog,
    info: &FingerprintInfo,
    facts: QueryFacts,
) {
    context.record_query(facts.duration);
    // SQLite reports the previous write's count as a SELECT's rows affected: meaningless for reads.
    let facts = if info.kind == StatementKind::Select {
        QueryFacts {
            rows_affected: None,
            ..facts
        }
    } else {
        facts
    };
    push(context, log, info.id, facts);
}

/// Adds one query to `log`, timed against `context`'s start.
fn push(context: &RequestContext, log: &QueryLog, fingerprint: FingerprintId, facts: QueryFacts) {
    let start = facts
        .start
        .unwrap_or_else(|| context.elapsed().saturating_sub(facts.duration));
    log.push(QueryRecord {
        fingerprint,
        start,
        duration: facts.duration,
        rows_returned: facts.rows_returned,
        rows_affected: facts.rows_affected,
        params: facts.params,
        site: facts.site,
    });
}

/// One query to record, described piece by piece; from [`QueryRecorder::query`]. Every setter is optional: a
/// query recorded with none has a zero duration, unknown rows and values, site 0 (directly in the request) and
/// the configured dialect. Its `Debug` shows no statement text.
#[must_use = "the query is recorded only by `record` or `record_in`"]
pub struct QueryRecordBuilder<'a> {
    recorder: &'a QueryRecorder,
    sql: &'a str,
    facts: QueryFacts,
}

impl QueryRecordBuilder<'_> {
    /// How long the query took (default zero).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.facts.duration = duration;
        self
    }

    /// When the query started, as an offset from the start of its request
    /// ([`RequestContext::elapsed`] when it started). Without it the start is taken as the time of recording
    /// minus the duration, which is right for a query recorded as soon as it ends.
    pub fn started_at(mut self, offset: Duration) -> Self {
        self.facts.start = Some(offset);
        self
    }

    /// Rows the query returned.
    pub fn rows_returned(mut self, rows: u64) -> Self {
        self.facts.rows_returned = Some(rows);
        self
    }

    /// Rows the query wrote (ignored for a `SELECT`, where SQLite reports a stale figure).
    pub fn rows_affected(mut self, rows: u64) -> Self {
        self.facts.rows_affected = Some(rows);
        self
    }

    /// A hash of the bind values (hash them yourself; perfscope never sees them): equal hashes mean the same
    /// query ran again (a duplicate), different ones an N+1, as with
    /// [`QueryRecorder::record_with_params`].
    pub fn params_hash(mut self, hash: u64) -> Self {
        self.facts.params = Some(hash);
        self
    }

    /// The call site, any value that identifies the code that ran the query (0, the default, stands for
    /// "directly in the request"). Repeats of a statement from different sites are never one loop.
    pub fn site(mut self, site: u64) -> Self {
        self.facts.site = site;
        self
    }

    /// The call site of the code that calls this method: its file, line and column, hashed.
    #[track_caller]
    pub fn site_here(self) -> Self {
        let location = std::panic::Location::caller();
        let line = (u64::from(location.line()) << 32) | u64::from(location.column());
        let site = xxh3_64_with_seed(location.file().as_bytes(), line).max(1);
        self.site(site)
    }

    /// The dialect this statement is read in, instead of the configured one (a second database behind the
    /// same application, such as SQL Server through tiberius beside PostgreSQL through sqlx).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.facts.dialect = Some(dialect);
        self
    }

    /// Records the query in the current request ([`RequestContext::current`]), or as unattributed outside
    /// one.
    pub fn record(self) {
        self.recorder
            .record_facts(RequestContext::current().as_ref(), self.sql, self.facts);
    }

    /// Records the query in `context`'s request (for code that holds the context, on any thread).
    pub fn record_in(self, context: &RequestContext) {
        self.recorder
            .record_facts(Some(context), self.sql, self.facts);
    }
}

impl std::fmt::Debug for QueryRecordBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRecordBuilder")
            .field("duration", &self.facts.duration)
            .field("rows_returned", &self.facts.rows_returned)
            .field("rows_affected", &self.facts.rows_affected)
            .field("site", &self.facts.site)
            .field("dialect", &self.facts.dialect)
            .finish_non_exhaustive()
    }
}

/// Times one query; records it when dropped. From [`QueryRecorder::time`].
#[must_use = "the query is recorded when the timer is dropped"]
pub struct QueryTimer {
    recorder: QueryRecorder,
    id: Option<FingerprintId>,
    /// The identity of the statement's values, when its text shows them all.
    values: Option<u64>,
    context: Option<RequestContext>,
    start: Instant,
    rows: Option<u64>,
}

impl QueryTimer {
    /// Sets the rows the query returned.
    pub fn set_rows(&mut self, rows: u64) {
        self.rows = Some(rows);
    }
}

impl std::fmt::Debug for QueryTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryTimer")
            .field("fingerprint", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        let facts = QueryFacts {
            duration: self.start.elapsed(),
            rows_returned: self.rows,
            params: self.values,
            ..QueryFacts::default()
        };
        match (self.recorder.log_of(self.context.as_ref()), self.id) {
            ((Some(context), Some(log)), Some(id)) => {
                context.record_query(facts.duration);
                push(context, log, id, facts);
            }
            ((context, _), _) => self.recorder.count_only(context, facts.duration),
        }
    }
}

/// A `tracing_subscriber` layer that captures sqlx's query events and attributes them to requests.
///
/// sqlx emits one `DEBUG` event per statement (target `sqlx::query`) with the statement, rows and elapsed
/// time; SQLite emits it on its worker thread inside the caller's span, PostgreSQL in the caller's task. The
/// layer finds the request through the request span, which it also tags with the request's context (so
/// [`ContextLayer`](crate::ContextLayer) is not needed beside it). Get it filtered with
/// [`Perfscope::query_capture_layer`](crate::Perfscope::query_capture_layer), which turns on exactly the
/// events and spans it needs, whatever the application's own filter says:
///
/// ```
/// use tracing_subscriber::{EnvFilter, fmt, prelude::*};
///
/// let perf = perfscope::Perfscope::builder().build().unwrap();
/// tracing_subscriber::registry()
///     // the application's log, at INFO, filtered for this layer only
///     .with(fmt::layer().with_filter(EnvFilter::new("info")))
///     // sqlx's DEBUG query events reach perfscope, not the log
///     .with(perf.query_capture_layer())
///     .try_init()
///     .ok();
/// ```
///
/// A global filter (`registry().with(EnvFilter::new("info"))` with no per-layer filters) vetoes DEBUG events
/// for every layer: put the application's filter on its own layer as above, or have sqlx log statements at
/// INFO (`ConnectOptions::log_statements(log::LevelFilter::Info)`). The subscriber must be the global default:
/// sqlx's SQLite worker threads do not see a thread-local (`set_default`) subscriber.
///
/// ## Drivers that query on the request's own task
///
/// sqlx's PostgreSQL and MySQL drivers run each query on the task that awaits it, where the request's
/// task-local context is found without any span. For them,
/// [`Perfscope::query_capture_layer_in_task`](crate::Perfscope::query_capture_layer_in_task) leaves the request
/// span out: the registry then creates, enters and closes no span per request (about 5,000 instructions per
/// request on the example's 1-query route). Work spawned from a handler is then attributed only when it runs in
/// [`RequestContext::scope`], not through `.in_current_span()`. Keep the default for SQLite, whose worker
/// threads know the request only through the span.
///
/// ## Call sites
///
/// Each query gets a call site ([`QueryRecord::site`]): a hash of the name, target, file and line of the
/// application's spans around sqlx's event (an `#[instrument]`ed function, an `info_span!`), from the innermost
/// up to the request span, at most 8 of them; perfscope's and sqlx's own spans are left out. A query run
/// directly in the handler, with no span of its own, has site 0. The detector groups repeats by statement and
/// site, so an auth middleware's lookup in its own `#[instrument]`ed function and the handler's lookup of the
/// same user are two call sites, not a loop. The layer's filter turns on the spans it reads for this: those at
/// [`call_site_level`](Self::call_site_level) or above (default `INFO`, the level of `#[instrument]`), whatever
/// the application's own filter says. The site is hashed in the same walk up the spans that finds the request,
/// which allocates nothing; it adds a few tens of nanoseconds per query (`docs/benchmarks.md`).
#[derive(Debug, Clone)]
pub struct QueryCaptureLayer {
    recorder: QueryRecorder,
    request_span: bool,
    site_level: LevelFilter,
}

/// Most application spans hashed into a call site (the innermost ones).
const MAX_SITE_SPANS: usize = 8;

impl QueryCaptureLayer {
    pub(crate) fn new(recorder: QueryRecorder) -> Self {
        context_layer::mark_installed();
        QueryCaptureLayer {
            recorder,
            request_span: true,
            site_level: LevelFilter::INFO,
        }
    }

    /// The least important level of the spans that make up a query's call site (default `INFO`). Spans at this
    /// level or above are enabled for this layer, so the registry records them even when the application's
    /// log filter would not; `LevelFilter::OFF` turns call sites off (every query's site is then 0, and only
    /// the request span is enabled).
    ///
    /// ```
    /// use tracing_subscriber::filter::LevelFilter;
    /// use tracing_subscriber::prelude::*;
    ///
    /// let perf = perfscope::Perfscope::builder().build().unwrap();
    /// // DEBUG spans count too (the registry then records them for this layer).
    /// let subscriber = tracing_subscriber::registry().with(
    ///     perfscope::query::QueryCaptureLayer::from(&perf)
    ///         .call_site_level(LevelFilter::DEBUG)
    ///         .filtered(),
    /// );
    /// # drop(subscriber);
    /// ```
    pub fn call_site_level(mut self, level: LevelFilter) -> Self {
        self.site_level = level;
        self
    }

    /// This layer without the request span: for drivers that run queries on the request's own task (see
    /// [above](#drivers-that-query-on-the-requests-own-task)).
    pub fn without_request_span(mut self) -> Self {
        self.request_span = false;
        self
    }

    /// This layer with the per-layer filter that enables exactly what it reads.
    pub fn filtered<S>(self) -> Filtered<Self, CaptureFilter, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let filter = CaptureFilter {
            request_span: self.request_span,
            site_level: self.site_level,
        };
        self.with_filter(filter)
    }

    /// The request's context and the query's call site, in one walk up from the event's span: the site is a
    /// hash of the application's spans met before the request span (0 when there are none), and the context is
    /// the request span's. Walks the registry's parent links; allocates nothing.
    fn context_and_site<S>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
    ) -> (Option<RequestContext>, u64)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(scope) = ctx.event_scope(event) else {
            return (None, 0);
        };
        let mut site = 0u64;
        let mut spans = 0;
        let mut context = None;
        for span in scope {
            let metadata = span.metadata();
            let target = metadata.target();
            if target == REQUEST_SPAN_TARGET {
                // Only request spans carry a context (see `context_layer::attach_context`).
                context = span.extensions().get::<RequestContext>().cloned();
                if context.is_some() {
                    break;
                }
                continue;
            }
            if spans == MAX_SITE_SPANS
                || metadata.level() > &self.site_level
                || is_driver_target(target)
            {
                continue;
            }
            site = (site ^ span_site(metadata))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
            spans += 1;
        }
        // 0 means "directly in the request": a site made of spans is never 0.
        let site = if spans > 0 && site == 0 { 1 } else { site };
        (context, site)
    }
}

impl From<&crate::Perfscope> for QueryCaptureLayer {
    /// The capture layer of a handle, unfiltered (the same as
    /// [`Perfscope::query_capture_layer`](crate::Perfscope::query_capture_layer) before
    /// [`filtered`](QueryCaptureLayer::filtered)).
    fn from(perf: &crate::Perfscope) -> Self {
        QueryCaptureLayer::new(perf.query_recorder())
    }
}

/// Spans of perfscope and of the drivers, which say nothing of the application's call site.
fn is_driver_target(target: &str) -> bool {
    [
        "perfscope",
        "sqlx",
        "sea_orm",
        "diesel",
        "tokio_postgres",
        "tiberius",
    ]
    .iter()
    .any(|prefix| {
        target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// One span's part of a call site: its name, target, file and line, stable across processes and builds of
/// the same code (unlike the callsite's address).
fn span_site(metadata: &Metadata<'_>) -> u64 {
    let name = xxh3_64_with_seed(
        metadata.name().as_bytes(),
        u64::from(metadata.line().unwrap_or(0)),
    );
    let target = xxh3_64(metadata.target().as_bytes());
    let file = metadata.file().map_or(0, |file| xxh3_64(file.as_bytes()));
    name ^ target.rotate_left(21) ^ file.rotate_left(42)
}

/// The per-layer filter of [`QueryCaptureLayer`]: sqlx's query and pool events, (unless the layer goes
/// without) perfscope's request spans, at any level up to `DEBUG`, and the application's spans at the layer's
/// [call-site level](QueryCaptureLayer::call_site_level) or above.
#[derive(Debug, Clone, Copy)]
pub struct CaptureFilter {
    request_span: bool,
    site_level: LevelFilter,
}

impl CaptureFilter {
    fn wanted(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        if metadata.is_span() {
            if target == REQUEST_SPAN_TARGET {
                return self.request_span;
            }
            // The application's spans, for call sites.
            metadata.level() <= &self.site_level && !is_driver_target(target)
        } else {
            target == SQLX_QUERY_TARGET || target == SQLX_POOL_TARGET
        }
    }
}

impl<S> Filter<S> for CaptureFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.wanted(metadata)
    }

    fn callsite_enabled(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.wanted(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }
}

impl<S> Layer<S> for QueryCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        context_layer::attach_context(attrs, id, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let target = event.metadata().target();
        let is_query = target == SQLX_QUERY_TARGET;
        if !is_query && target != SQLX_POOL_TARGET {
            return;
        }
        let (context, site) = self.context_and_site(event, &ctx);
        let context = context.or_else(RequestContext::current_task);
        if !is_query {
            let mut fields = SqlxFields::default();
            event.record(&mut fields);
            if let Some(wait) = fields.acquired_after {
                self.recorder.record_pool_wait(context.as_ref(), wait);
            }
            return;
        }
        let (context, log) = self.recorder.log_of(context.as_ref());
        // The statement is fingerprinted as it is visited (only for a request's log), never copied.
        let mut fields = SqlxFields {
            analyzer: log.map(|log| &**log.analyzer()),
            ..SqlxFields::default()
        };
        event.record(&mut fields);
        let mut facts = QueryFacts {
            duration: fields.elapsed.unwrap_or_default(),
            rows_returned: fields.rows_returned,
            rows_affected: fields.rows_affected,
            ..QueryFacts::default()
        };
        match (context, log, fields.fingerprint()) {
            (Some(context), Some(log), Some((info, values))) => {
                facts.params = values;
                facts.site = site;
                record_fingerprinted(context, log, &info, facts)
            }
            (context, _, _) => self.recorder.count_only(context, facts.duration),
        }
    }
}

/// The fields of sqlx's events, as sqlx 0.7 to 0.9 name them.
#[derive(Default)]
struct SqlxFields<'a> {
    /// Fingerprints `db.statement` as it is visited; `None` when the query goes in no log.
    analyzer: Option<&'a Analyzer>,
    /// The first words of the statement: all of it when sqlx leaves `db.statement` empty.
    summary: String,
    statement: Option<Arc<FingerprintInfo>>,
    /// The identity of the statement's values, when its text shows them all (no bind parameter).
    values: Option<u64>,
    rows_returned: Option<u64>,
    rows_affected: Option<u64>,
    elapsed: Option<Duration>,
    acquired_after: Option<Duration>,
}

/// Longest statement text taken from an event; longer text is cut (on a character boundary) before
/// fingerprinting, which looks at a bounded prefix anyway.
const MAX_CAPTURED_SQL: usize = 64 * 1024;

fn capped(value: &str) -> &str {
    if value.len() <= MAX_CAPTURED_SQL {
        return value;
    }
    let mut end = MAX_CAPTURED_SQL;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or("")
}

impl SqlxFields<'_> {
    /// The statement's fingerprint; sqlx leaves `db.statement` empty when the summary is the whole statement.
    /// With the identity of its values when its text shows them.
    fn fingerprint(&self) -> Option<(Arc<FingerprintInfo>, Option<u64>)> {
        if let Some(info) = &self.statement {
            return Some((info.clone(), self.values));
        }
        let summary = self.summary.trim();
        self.analyzer
            .filter(|_| !summary.is_empty())
            .map(|analyzer| analyzer.fingerprint_and_values(summary))
    }
}

fn seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

impl Visit for SqlxFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "db.statement" => {
                let statement = capped(value).trim();
                if let Some(analyzer) = self.analyzer.filter(|_| !statement.is_empty()) {
                    let (info, values) = analyzer.fingerprint_and_values(statement);
                    self.statement = Some(info);
                    self.values = values;
                }
            }
            "summary" if self.analyzer.is_some() => self.summary = capped(value).to_owned(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = Some(value),
            "rows_affected" => self.rows_affected = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match field.name() {
            "elapsed_secs" => self.elapsed = seconds(value),
            // sqlx 0.8 spells it without the c.
            "acquired_after_secs" | "aquired_after_secs" => self.acquired_after = seconds(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}
