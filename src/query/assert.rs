//! Query budgets for tests: fail a test when a request or a route runs more queries than it should, or
//! shows an N+1.

use super::detect::FindingKind;
use super::report::RequestReport;

/// What a request may run: at most so many queries, and optionally no N+1 and no duplicate.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use axum::{Router, routing::get};
/// use perfscope::query::QueryBudget;
/// use tower::ServiceExt;
///
/// let perf = perfscope::Perfscope::builder().build().unwrap();
/// let recorder = perf.query_recorder();
/// let app: Router = Router::new()
///     .route("/api/quotations", get(move || {
///         let recorder = recorder.clone();
///         async move {
///             recorder.record("SELECT id FROM quotations LIMIT 20", std::time::Duration::from_micros(90), Some(20));
///             "[]"
///         }
///     }))
///     .layer(perf.query_layer())
///     .layer(perf.layer());
/// let response = app.oneshot(http::Request::get("/api/quotations").body(axum::body::Body::empty()).unwrap()).await.unwrap();
/// let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
/// drop(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap());
///
/// let report = perf.request_queries(&id).await.expect("settled");
/// QueryBudget::at_most(3).no_n_plus_one().assert(&report);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a budget checks nothing until `check` or `assert` is called"]
pub struct QueryBudget {
    max_queries: u64,
    no_n_plus_one: bool,
    no_duplicates: bool,
}

/// Why a request broke its [`QueryBudget`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetViolation {
    /// More queries than allowed.
    #[error("{method} {route} ran {count} queries, the budget is {max}:\n{statements}")]
    TooManyQueries {
        /// Method of the request.
        method: String,
        /// Route of the request.
        route: String,
        /// Queries it ran.
        count: u64,
        /// The budget.
        max: u64,
        /// Its statements with counts, one per line.
        statements: String,
    },
    /// A query loop (N+1 or MN+1) or a duplicate was found.
    #[error("{method} {route}: {kind} of `{sql}` ({count} times); fix: {recommendation}")]
    Finding {
        /// Method of the request.
        method: String,
        /// Route of the request.
        route: String,
        /// `n_plus_one`, `mn_plus_one` or `duplicate`.
        kind: String,
        /// The normalized statement.
        sql: String,
        /// How many times it ran.
        count: u64,
        /// What to do instead.
        recommendation: String,
    },
}

impl QueryBudget {
    /// A budget of at most `max_queries` queries.
    pub fn at_most(max_queries: u64) -> Self {
        QueryBudget {
            max_queries,
            no_n_plus_one: false,
            no_duplicates: false,
        }
    }

    /// Also refuse any query loop: an `n_plus_one` or `mn_plus_one` finding.
    pub fn no_n_plus_one(mut self) -> Self {
        self.no_n_plus_one = true;
        self
    }

    /// Also refuse any `duplicate` finding.
    pub fn no_duplicates(mut self) -> Self {
        self.no_duplicates = true;
        self
    }

    /// Checks `report` against the budget.
    pub fn check(&self, report: &RequestReport) -> Result<(), Box<BudgetViolation>> {
        if report.count > self.max_queries {
            let statements = report
                .fingerprints
                .iter()
                .map(|f| {
                    format!(
                        "  {:>5} × {}",
                        f.count,
                        f.sql.as_deref().unwrap_or("(forgotten fingerprint)")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Box::new(BudgetViolation::TooManyQueries {
                method: report.method.clone(),
                route: report.route.clone(),
                count: report.count,
                max: self.max_queries,
                statements,
            }));
        }
        let refused = report.findings.iter().find(|f| {
            (self.no_n_plus_one && f.kind.is_loop())
                || (self.no_duplicates && f.kind == FindingKind::Duplicate)
        });
        match refused {
            Some(finding) => Err(Box::new(BudgetViolation::Finding {
                method: report.method.clone(),
                route: report.route.clone(),
                kind: finding.kind.as_str().to_owned(),
                sql: finding.sql.clone(),
                count: finding.count,
                recommendation: finding.recommendation.summary.clone(),
            })),
            None => Ok(()),
        }
    }

    /// Checks `report` and panics with the violation: for tests.
    #[track_caller]
    pub fn assert(&self, report: &RequestReport) {
        if let Err(violation) = self.check(report) {
            panic!("query budget exceeded: {violation}");
        }
    }
}
