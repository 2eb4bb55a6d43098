//! The detector's thresholds, allowlists and rule switches.

use std::time::Duration;

use super::{Confidence, FindingKind};
use crate::glob::glob_match;
use crate::query::model::FingerprintId;

/// Thresholds and allowlists of the detector.
///
/// `Default` is safe for production (sampled traffic, few false positives): N+1 from 5 repeats (a warning from
/// 20 ms of summed time, listed as information below it), slow queries from 500 ms.
/// [`DetectConfig::development`] is stricter, for tests and local runs: N+1 from 3 repeats, a warning at any
/// total time, slow queries from 100 ms. [`DetectConfig::profile`] says which of the two a config started from;
/// the snapshot reports it with the thresholds in force. The parallelizable-sequence rule (R6) is off in both;
/// turn it on with [`DetectConfig::parallelizable`].
#[derive(Debug, Clone)]
#[must_use]
pub struct DetectConfig {
    pub(crate) n_plus_one_min_repeats: u64,
    pub(crate) n_plus_one_min_total: Duration,
    pub(crate) negligible_time: Duration,
    pub(crate) duplicate_min_repeats: u64,
    pub(crate) duplicates_select_only: bool,
    pub(crate) mn_plus_one_min_occurrences: u64,
    pub(crate) slow_query: Duration,
    pub(crate) query_budget: u64,
    pub(crate) route_budgets: Vec<(Box<str>, u64)>,
    pub(crate) regression_factor: f64,
    pub(crate) regression_min_samples: u64,
    pub(crate) regression_min_increase: u64,
    pub(crate) large_result_rows: u64,
    pub(crate) batchable_min_repeats: u64,
    pub(crate) pool_wait: Duration,
    pub(crate) parallel_min_query: Duration,
    pub(crate) parallel_min_saving: Duration,
    pub(crate) allowed_fingerprints: Vec<FingerprintId>,
    pub(crate) allowed_routes: Vec<Box<str>>,
    pub(crate) min_confidence: Confidence,
    pub(crate) max_findings: usize,
    pub(crate) profile: DetectProfile,
    disabled: u32,
}

/// Which set of defaults a [`DetectConfig`] started from (its setters change thresholds, not the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DetectProfile {
    /// [`DetectConfig::development`]: every pattern at its full severity, however fast.
    Development,
    /// [`DetectConfig::production`] (`Default`): quieter severities for patterns that cost little today.
    Production,
}

impl std::fmt::Display for DetectProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DetectProfile::Development => "development",
            DetectProfile::Production => "production",
        })
    }
}

/// Findings kept per request by default.
pub const DEFAULT_MAX_FINDINGS: usize = 32;

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            n_plus_one_min_repeats: 5,
            n_plus_one_min_total: Duration::from_millis(20),
            negligible_time: Duration::from_millis(1),
            duplicate_min_repeats: 2,
            duplicates_select_only: true,
            mn_plus_one_min_occurrences: 3,
            slow_query: Duration::from_millis(500),
            query_budget: 50,
            route_budgets: Vec::new(),
            regression_factor: 2.0,
            regression_min_samples: 100,
            regression_min_increase: 5,
            large_result_rows: 1000,
            batchable_min_repeats: 5,
            pool_wait: Duration::from_millis(100),
            parallel_min_query: Duration::from_millis(30),
            parallel_min_saving: Duration::from_millis(100),
            allowed_fingerprints: Vec::new(),
            allowed_routes: Vec::new(),
            min_confidence: Confidence::Low,
            max_findings: DEFAULT_MAX_FINDINGS,
            profile: DetectProfile::Production,
            disabled: FindingKind::Parallelizable.bit(),
        }
    }
}

impl DetectConfig {
    /// The production defaults (same as `Default`).
    pub fn production() -> Self {
        DetectConfig::default()
    }

    /// Stricter thresholds for tests and local runs, where every request is seen and noise is cheap.
    pub fn development() -> Self {
        DetectConfig {
            n_plus_one_min_repeats: 3,
            n_plus_one_min_total: Duration::ZERO,
            slow_query: Duration::from_millis(100),
            pool_wait: Duration::from_millis(10),
            profile: DetectProfile::Development,
            ..DetectConfig::default()
        }
    }

    /// Which defaults this config started from.
    pub fn profile(&self) -> DetectProfile {
        self.profile
    }

    /// Repeats of one statement from one call site needed for an N+1 (production 5, development 3; at
    /// least 2). Also the repeats from which a duplicate is a warning rather than information.
    pub fn n_plus_one_min_repeats(mut self, repeats: u64) -> Self {
        self.n_plus_one_min_repeats = repeats.max(2);
        self
    }

    /// Summed time of the repeats from which an N+1 or MN+1 is a warning (production 20 ms, development 0);
    /// below it the loop is still reported, with severity `info`.
    pub fn n_plus_one_min_total(mut self, total: Duration) -> Self {
        self.n_plus_one_min_total = total;
        self
    }

    /// Summed time under which a loop's queries cost nothing worth fixing today (default 1 ms): such a loop is
    /// still reported, with confidence `low`.
    pub fn negligible_time(mut self, total: Duration) -> Self {
        self.negligible_time = total;
        self
    }

    /// Executions with the same parameters needed for a duplicate (default 2, at least 2).
    pub fn duplicate_min_repeats(mut self, repeats: u64) -> Self {
        self.duplicate_min_repeats = repeats.max(2);
        self
    }

    /// Whether only `SELECT`s can be duplicates (default true: writing the same row twice may be intended).
    pub fn duplicates_select_only(mut self, select_only: bool) -> Self {
        self.duplicates_select_only = select_only;
        self
    }

    /// Repetitions of a sequence needed for an MN+1 (default 3, at least 2).
    pub fn mn_plus_one_min_occurrences(mut self, occurrences: u64) -> Self {
        self.mn_plus_one_min_occurrences = occurrences.max(2);
        self
    }

    /// Duration from which one execution is a slow query (production 500 ms, development 100 ms).
    pub fn slow_query(mut self, threshold: Duration) -> Self {
        self.slow_query = threshold;
        self
    }

    /// Queries per request above which a route is over budget (default 50).
    pub fn query_budget(mut self, budget: u64) -> Self {
        self.query_budget = budget;
        self
    }

    /// A budget for the routes matching `pattern` (the exact template, or a glob where `*` matches anything and `?` one character).
    /// The first matching pattern wins.
    pub fn route_budget(mut self, pattern: impl Into<String>, budget: u64) -> Self {
        self.route_budgets
            .push((pattern.into().into_boxed_str(), budget));
        self
    }

    /// How many times the route's rolling median a request must run to be a regression (default 2; at least
    /// 1).
    pub fn regression_factor(mut self, factor: f64) -> Self {
        self.regression_factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            2.0
        };
        self
    }

    /// Requests the route must have seen before the regression rule applies (default 100).
    pub fn regression_min_samples(mut self, samples: u64) -> Self {
        self.regression_min_samples = samples.max(1);
        self
    }

    /// Queries above the median a regression must also add (default 5), so that 1 → 3 is not one.
    pub fn regression_min_increase(mut self, queries: u64) -> Self {
        self.regression_min_increase = queries;
        self
    }

    /// Rows from which a result without `LIMIT` is large (default 1000).
    pub fn large_result_rows(mut self, rows: u64) -> Self {
        self.large_result_rows = rows.max(1);
        self
    }

    /// Executions of one write statement from which they are batchable (default 5, at least 2).
    pub fn batchable_min_repeats(mut self, repeats: u64) -> Self {
        self.batchable_min_repeats = repeats.max(2);
        self
    }

    /// Summed pool wait of a request from which it is reported (production 100 ms, development 10 ms).
    pub fn pool_wait(mut self, threshold: Duration) -> Self {
        self.pool_wait = threshold;
        self
    }

    /// Turns the parallelizable-sequence rule (R6) on or off (default off: it needs independent connections
    /// and is a suggestion more than a problem).
    pub fn parallelizable(self, on: bool) -> Self {
        self.rule(FindingKind::Parallelizable, on)
    }

    /// R6 thresholds: each independent query must take more than `min_query` (default 30 ms), and running
    /// them together must save at least `min_saving` (default 100 ms) and 10 % of the sequence.
    pub fn parallelizable_thresholds(mut self, min_query: Duration, min_saving: Duration) -> Self {
        self.parallel_min_query = min_query;
        self.parallel_min_saving = min_saving;
        self
    }

    /// Turns one rule on or off.
    pub fn rule(mut self, kind: FindingKind, on: bool) -> Self {
        if on {
            self.disabled &= !kind.bit();
        } else {
            self.disabled |= kind.bit();
        }
        self
    }

    /// Never reports this statement (nor a sequence containing it).
    pub fn allow_fingerprint(mut self, fingerprint: FingerprintId) -> Self {
        if !self.allowed_fingerprints.contains(&fingerprint) {
            self.allowed_fingerprints.push(fingerprint);
        }
        self
    }

    /// Never reports anything on the routes matching `pattern` (the exact template, or a glob where `*`
    /// matches anything, `/` included).
    pub fn allow_route(mut self, pattern: impl Into<String>) -> Self {
        self.allowed_routes.push(pattern.into().into_boxed_str());
        self
    }

    /// Hides findings below this confidence (default: low, everything shown).
    pub fn min_confidence(mut self, confidence: Confidence) -> Self {
        self.min_confidence = confidence;
        self
    }

    /// Findings kept per request, the most important first (default 32).
    pub fn max_findings(mut self, max: usize) -> Self {
        self.max_findings = max;
        self
    }

    pub(crate) fn rule_enabled(&self, kind: FindingKind) -> bool {
        self.disabled & kind.bit() == 0
    }

    pub(crate) fn fingerprint_allowed(&self, fingerprint: FingerprintId) -> bool {
        self.allowed_fingerprints.contains(&fingerprint)
    }

    pub(crate) fn route_allowed(&self, route: &str) -> bool {
        self.allowed_routes
            .iter()
            .any(|pattern| glob_match(pattern, route))
    }

    /// The budget of a route: its first matching override, else the default.
    pub(crate) fn budget_for(&self, route: &str) -> u64 {
        self.route_budgets
            .iter()
            .find(|(pattern, _)| glob_match(pattern, route))
            .map_or(self.query_budget, |(_, budget)| *budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::detect::test_support::*;

    #[test]
    fn development_is_stricter() {
        let dev = DetectConfig::development();
        let prod = DetectConfig::default();
        assert_eq!(dev.n_plus_one_min_repeats, 3);
        assert_eq!(prod.n_plus_one_min_repeats, 5);
        assert_eq!(dev.n_plus_one_min_total, Duration::ZERO);
        assert_eq!(prod.n_plus_one_min_total, Duration::from_millis(20));
        assert_eq!(dev.slow_query, Duration::from_millis(100));
        assert_eq!(prod.slow_query, Duration::from_millis(500));
        assert!(!prod.rule_enabled(FindingKind::Parallelizable));
        assert!(!dev.rule_enabled(FindingKind::Parallelizable));
        assert!(prod.rule_enabled(FindingKind::NPlusOne));
    }

    #[test]
    fn route_budgets_first_match_wins() {
        let config = DetectConfig::default()
            .route_budget("/reports/*", 200)
            .route_budget("/reports/daily", 10);
        assert_eq!(config.budget_for("/reports/daily"), 200);
        assert_eq!(config.budget_for("/quotations"), 50);
    }

    #[test]
    fn fingerprint_allowlist_hides_the_finding() {
        let mut builder = Builder::new();
        let [_, customers, lines] = quotations(&mut builder, true);
        let config = DetectConfig::development().allow_fingerprint(customers);
        let findings = builder.detect(&config);
        assert!(findings.iter().all(|f| f.fingerprint != customers));
        assert!(findings.iter().any(|f| f.fingerprint == lines));
    }

    #[test]
    fn disabled_rule_and_min_confidence() {
        let mut builder = Builder::new();
        quotations(&mut builder, true);
        let config = DetectConfig::development().rule(FindingKind::NPlusOne, false);
        assert!(of_kind(&builder.detect(&config), FindingKind::NPlusOne).is_empty());

        let mut builder = Builder::new();
        let id = builder.stmt("SELECT a FROM t WHERE b > ?");
        for _ in 0..6 {
            builder.run(id, 5, None, None);
        }
        let all = builder.detect(&DetectConfig::development());
        assert_eq!(of_kind(&all, FindingKind::NPlusOne).len(), 1);
        let config = DetectConfig::development().min_confidence(Confidence::Medium);
        assert!(of_kind(&builder.detect(&config), FindingKind::NPlusOne).is_empty());
    }
}
