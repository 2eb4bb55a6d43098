//! [`QueryConfig`]: how the query analyzer reads, keeps and judges queries.

use super::detect::DetectConfig;
use super::model::Dialect;

/// Settings of the query analyzer, given to [`PerfscopeBuilder::query`](crate::PerfscopeBuilder::query).
///
/// ```
/// use perfscope::query::{Dialect, DetectConfig, QueryConfig};
///
/// let perf = perfscope::Perfscope::builder()
///     .query(QueryConfig::default().dialect(Dialect::PostgreSql).detect(DetectConfig::development()))
///     .build()
///     .expect("valid configuration");
/// # drop(perf);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a configuration does nothing until given to the builder"]
pub struct QueryConfig {
    pub(crate) dialect: Dialect,
    pub(crate) detect: DetectConfig,
    pub(crate) limits: Limits,
    pub(crate) tag_keys: Vec<String>,
}

/// The bounds that keep the analyzer's memory fixed whatever the application does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) records_per_request: usize,
    pub(crate) fingerprints_per_request: usize,
    pub(crate) fingerprints: usize,
    pub(crate) raw_statements: usize,
    pub(crate) routes: usize,
    pub(crate) findings: usize,
    pub(crate) recent_requests: usize,
    pub(crate) fingerprints_per_route: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            records_per_request: 1000,
            fingerprints_per_request: 64,
            fingerprints: 5000,
            raw_statements: 10_000,
            routes: 512,
            findings: 256,
            recent_requests: 64,
            fingerprints_per_route: 16,
        }
    }
}

impl Default for QueryConfig {
    /// Generic dialect; development thresholds in debug builds and production thresholds in release builds
    /// (the same split as the timing headers' default).
    fn default() -> Self {
        QueryConfig {
            dialect: Dialect::Generic,
            detect: if cfg!(debug_assertions) {
                DetectConfig::development()
            } else {
                DetectConfig::default()
            },
            limits: Limits::default(),
            tag_keys: super::DEFAULT_TAG_KEYS
                .iter()
                .map(|&k| k.to_owned())
                .collect(),
        }
    }
}

impl QueryConfig {
    /// The SQL dialect statements are read in (default [`Dialect::Generic`]); it decides what quotes,
    /// `#` and `$` mean when literals are removed.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The detection thresholds, allowlists and budgets.
    pub fn detect(mut self, detect: DetectConfig) -> Self {
        self.detect = detect;
        self
    }

    /// Queries kept in detail per request (default 1,000; at least 16); later ones are only counted, per
    /// fingerprint.
    pub fn max_records_per_request(mut self, records: usize) -> Self {
        self.limits.records_per_request = records.max(16);
        self
    }

    /// Distinct fingerprints tracked per request (default 64; at least 8); queries of later ones are counted
    /// as untracked.
    pub fn max_fingerprints_per_request(mut self, fingerprints: usize) -> Self {
        self.limits.fingerprints_per_request = fingerprints.max(8);
        self
    }

    /// Fingerprints remembered across requests (default 5,000, as `pg_stat_statements.max`; at least 64).
    pub fn max_fingerprints(mut self, fingerprints: usize) -> Self {
        self.limits.fingerprints = fingerprints.max(64);
        self
    }

    /// Route templates with query statistics (default 512; at least 1); later ones share `<overflow>`.
    pub fn max_routes(mut self, routes: usize) -> Self {
        self.limits.routes = routes.max(1);
        self
    }

    /// Distinct findings kept (default 256; at least 8); the least recently seen is dropped first.
    pub fn max_findings(mut self, findings: usize) -> Self {
        self.limits.findings = findings.max(8);
        self
    }

    /// The sqlcommenter keys whose pairs are kept with a statement ([`FingerprintInfo::tags`], default
    /// [`DEFAULT_TAG_KEYS`]: `route`, `controller`, `action`, `framework`, `application`, `db_driver`; ASCII
    /// case ignored). The pairs of any other key are dropped, key and value: a sqlcommenter comment may carry
    /// whatever the caller put in it (a user name, an order number), and tags are kept in memory and printed.
    ///
    /// ```
    /// use perfscope::query::{DEFAULT_TAG_KEYS, QueryConfig};
    ///
    /// // The defaults and a tenant tag the application writes itself.
    /// let config = QueryConfig::default().tag_keys(DEFAULT_TAG_KEYS.iter().copied().chain(["tenant"]));
    /// # drop(config);
    /// ```
    ///
    /// [`FingerprintInfo::tags`]: super::FingerprintInfo::tags
    /// [`DEFAULT_TAG_KEYS`]: super::DEFAULT_TAG_KEYS
    pub fn tag_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.tag_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Settled requests kept for [`Perfscope::request_queries`](crate::Perfscope::request_queries)
    /// (default 64).
    pub fn recent_requests(mut self, requests: usize) -> Self {
        self.limits.recent_requests = requests;
        self
    }
}
