//! The data the query analyzer's parts exchange: fingerprints and what is known about them, one request's
//! captured queries, and the settled form the detector reads.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

use crate::route::MethodLabel;

/// A 64-bit fingerprint id: the xxh3 hash of the normalized statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FingerprintId(pub u64);

impl FingerprintId {
    /// The id as 16 lowercase hex digits, as the exports show it.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl std::fmt::Display for FingerprintId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for FingerprintId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The SQL dialect statements are read in: it decides what `"…"`, `#`, `$1` and backslashes mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Dialect {
    /// Anything: the common subset, strings in single quotes, identifiers in double quotes.
    #[default]
    Generic,
    /// PostgreSQL: `E''` escapes, dollar quoting, `$1` placeholders, `::` casts, JSON operators.
    PostgreSql,
    /// MySQL: backslash escapes, `"…"` strings, backtick identifiers, `#` comments.
    MySql,
    /// SQLite: `?`, `?NNN`, `:name`, `@name`, `$name` placeholders.
    Sqlite,
    /// Microsoft SQL Server's T-SQL (for drivers such as tiberius, through the manual API): `[…]` identifiers
    /// (`]]` escapes `]`), `@p1` parameters, `N'…'` strings, `#temp` tables, nested block comments.
    #[serde(rename = "tsql")]
    TSql,
}

/// What kind of statement a fingerprint is, from its first keyword (and the parser, when it ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE`.
    Select,
    /// `INSERT`, `REPLACE`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// A statement starting with `WITH` (its main statement is known after enrichment).
    With,
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`.
    Transaction,
    /// `SET`, `SHOW`, `RESET`.
    Session,
    /// DDL, `EXPLAIN`, `COPY`, `NOTIFY`, `LISTEN`, `PRAGMA`, `VACUUM`, and anything else.
    Other,
}

/// What the SQL parser found in a statement. Computed once per fingerprint, off the request path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Enrichment {
    /// Whether the parser accepted the statement; every other field is empty or false when it did not.
    pub parsed: bool,
    /// Why parsing was not done or failed (`too_large`, `too_deep`, `syntax`, `multiple_statements`), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    /// The statement kind as parsed (a `WITH … SELECT` is `Select`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<StatementKind>,
    /// Table names read or written, lowercased, without schema, deduplicated, in order of appearance (at most 16).
    pub tables: Vec<String>,
    /// The outermost projection has `*` or `t.*` (not `COUNT(*)`, not inside `EXISTS`, not an `INSERT … SELECT`).
    pub select_star: bool,
    /// An `UPDATE` or `DELETE` without a `WHERE` clause.
    pub write_without_where: bool,
    /// The statement has a `LIMIT`/`FETCH`/`TOP`.
    pub has_limit: bool,
    /// A `LIMIT` without an `ORDER BY` (the rows returned are arbitrary).
    pub limit_without_order: bool,
    /// The `WHERE` clause is a single equality of a column and a placeholder (`id = ?`): a key lookup.
    pub single_key_predicate: bool,
    /// Number of joins in the outermost query.
    pub joins: u32,
}

/// A fingerprint and what is known about it: the normalized text (no literal survives normalization) and
/// the parser's findings, filled in lazily.
#[derive(Debug)]
pub struct FingerprintInfo {
    /// The id (hash of `text`).
    pub id: FingerprintId,
    /// Normalized statement text, capped at [`MAX_NORMALIZED_LEN`] bytes on a character boundary.
    pub text: Arc<str>,
    /// The kind from the first keyword.
    pub kind: StatementKind,
    /// The dialect it was read in.
    pub dialect: Dialect,
    /// sqlcommenter key/values from the statement's comments, only for the allowlisted keys
    /// ([`QueryConfig::tag_keys`](super::QueryConfig::tag_keys)): values are not literals of the query, but a
    /// caller may put anything in them, so other keys' pairs are dropped. At most 8 pairs of at most 64 bytes
    /// each.
    pub tags: Vec<(String, String)>,
    /// The parser's findings; set once, after the first request that ran the statement has been answered.
    pub enrichment: OnceLock<Enrichment>,
    /// Whether the detector leaves the statement alone (transactions, session statements, migrations,
    /// advisory locks, health checks), decided once the enrichment is known.
    pub(crate) exempt: OnceLock<bool>,
}

/// Longest normalized text kept, in bytes.
pub const MAX_NORMALIZED_LEN: usize = 2048;

/// One captured query, in the order queries finished within their request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRecord {
    /// Its fingerprint.
    pub fingerprint: FingerprintId,
    /// When it started, since the request started (its end minus its duration when only the end is known).
    pub start: Duration,
    /// How long it took.
    pub duration: Duration,
    /// Rows the driver returned, when known.
    pub rows_returned: Option<u64>,
    /// Rows written, when known (SQLite reports a stale figure for `SELECT`: callers leave it `None` there).
    pub rows_affected: Option<u64>,
    /// An identity of the values the statement ran with (a hash, never the values themselves), when known:
    /// the hash of the bind values a caller passed to `record_with_params`, or, for a statement whose text
    /// shows all its values (no bind parameter), the hash of its raw text. Equal values mean the same query
    /// ran again (a duplicate); `None` when the values are not known (sqlx's `$1` binds).
    pub params: Option<u64>,
    /// The call site: a hash of the application's spans between the request span and the query (their names,
    /// targets, files and lines; see [`QueryCaptureLayer`](super::QueryCaptureLayer#call-sites)), or the site
    /// given to the manual API; 0 directly in the request. Repeats of a statement from two sites are two
    /// groups for the detector, never one loop.
    pub site: u64,
}

/// Totals of one fingerprint within one request; kept for every query, also past the detailed-record cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FingerprintTotals {
    /// The fingerprint.
    pub fingerprint: FingerprintId,
    /// Executions.
    pub count: u64,
    /// Their summed duration.
    pub total: Duration,
    /// The slowest one.
    pub max: Duration,
    /// Rows returned, summed.
    pub rows_returned: u64,
    /// Index (in finish order) of the first execution within the request.
    pub first_index: u64,
    /// Distinct parameter hashes seen among the detailed records (saturates at `u32::MAX`); 0 when unknown.
    pub distinct_params: u32,
}

/// One request's queries, settled: every query the request ran has been recorded. The detector's input.
#[derive(Debug, Clone)]
pub struct RequestQueries {
    /// The request's method.
    pub method: MethodLabel,
    /// The request's route template (`<unmatched>` when none).
    pub route: Arc<str>,
    /// The request ID.
    pub request_id: String,
    /// How long the request took, start to settlement.
    pub elapsed: Duration,
    /// Detailed records in finish order, at most the configured cap (the first ones).
    pub records: Vec<QueryRecord>,
    /// Queries past the detailed-record cap (counted in `totals`, not in `records`).
    pub records_dropped: u64,
    /// Per-fingerprint totals, first-seen order, at most the configured number of fingerprints.
    pub totals: Vec<FingerprintTotals>,
    /// Queries whose fingerprint came after the per-request fingerprint cap (counted in `count` only).
    pub untracked: u64,
    /// All queries.
    pub count: u64,
    /// Summed query time.
    pub db_time: Duration,
    /// Connection-pool acquisitions that were reported as slow, and their summed wait.
    pub pool_waits: u64,
    /// Summed pool wait.
    pub pool_wait: Duration,
}
