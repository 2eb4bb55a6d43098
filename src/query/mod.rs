//! The query analyzer: captures each request's SQL, fingerprints it, and finds N+1 queries and other patterns.
//!
#![doc = include_str!("../../docs/query.md")]

pub mod detect;
mod fingerprint;
mod memo;
pub mod model;
mod parse;

pub use model::{
    Dialect, Enrichment, FingerprintId, FingerprintInfo, FingerprintTotals, QueryRecord,
    RequestQueries, StatementKind,
};

pub use fingerprint::{
    DEFAULT_TAG_KEYS, MAX_SCAN_LEN, MAX_TAG_LEN, MAX_TAGS, Normalized, normalize,
    normalize_with_tag_keys,
};
pub use memo::{DEFAULT_MAX_FINGERPRINTS, DEFAULT_MAX_RAW, FingerprintMemo};
pub use parse::{MAX_PARSE_LEN, RECURSION_LIMIT, enrich};

pub use detect::{
    Confidence, DetectConfig, DetectProfile, Finding, FindingKind, PatternMember, Recommendation,
    RouteBaseline, Severity, SourceEvidence, detect,
};

pub(crate) mod analyzer;
mod assert;
mod capture;
mod config;
mod fuzzing;
mod histogram;
mod layer;
pub(crate) mod log;
mod report;

pub use assert::{BudgetViolation, QueryBudget};
pub use capture::{
    CaptureFilter, QueryCaptureLayer, QueryRecordBuilder, QueryRecorder, QueryTimer,
    SQLX_POOL_TARGET, SQLX_QUERY_TARGET,
};
pub use config::QueryConfig;
#[doc(hidden)]
pub use fuzzing::analyze_for_fuzzing;
pub use histogram::QueriesPerRequest;
pub use layer::{QueryLayer, QueryService, ResponseFuture, X_QUERY_COUNT};
pub use report::{
    DetectionSettings, FindingSummary, FingerprintStats, QueryStatsSnapshot, RequestFingerprint,
    RequestReport, RouteQueryStats,
};
