//! The management dashboard: a handful of aggregate queries, run concurrently on the pool.
//!
//! The aggregates are computed at most once at a time, into the `dashboard` data cache, which keeps serving them
//! (stale) for a few seconds while one background load replaces them; the response is cached too. Both are
//! tagged with the tables they were computed from (see [`crate::caches`]).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use perfscope::cache::{CacheTags, Loaded};
use serde::Serialize;
use sqlx::AnyPool;

use crate::AppState;
use crate::caches::{CUSTOMERS, PRODUCTS, QUOTATIONS};
use crate::catalog::{LOW_STOCK, STATUS_NAMES};
use crate::error::AppError;

/// How many products the "most quoted" list shows.
const TOP_PRODUCTS: i64 = 10;

/// The tables the dashboard is computed from: a change to any of them invalidates it.
const TABLES: [&str; 3] = [PRODUCTS, CUSTOMERS, QUOTATIONS];

/// A product ranked by the quantity quoted across all quotations.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct TopProduct {
    product_id: i64,
    name: String,
    quantity: i64,
}

/// Response of `GET /api/dashboard`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Dashboard {
    products: i64,
    customers: i64,
    /// Every status, zero included.
    quotations_by_status: BTreeMap<&'static str, i64>,
    accepted_revenue_cents: i64,
    top_products: Vec<TopProduct>,
    /// Products with `stock < low_stock_threshold`.
    low_stock_products: i64,
    low_stock_threshold: i64,
}

impl Dashboard {
    /// Approximate bytes of the value: the struct, the status map and the top-products list.
    pub(crate) fn weight(&self) -> u64 {
        let statuses = self.quotations_by_status.len() * size_of::<(&str, i64)>();
        let top: usize = self
            .top_products
            .iter()
            .map(|top| size_of::<TopProduct>() + top.name.len())
            .sum();
        (size_of::<Self>() + statuses + top) as u64
    }
}

/// `GET /api/dashboard`
pub(crate) async fn summary(
    State(state): State<AppState>,
) -> Result<(Extension<CacheTags>, Json<Dashboard>), AppError> {
    let db = state.db.clone();
    let dashboard = state
        .caches
        .dashboard
        .try_get_or_compute(&state.caches.dashboard_key, move || async move {
            let dashboard = compute(&db).await?;
            // The loader names what it read; a `PUT /api/products/{id}` invalidates `products`.
            Ok::<_, AppError>(Loaded::new(dashboard).tags(TABLES))
        })
        .await?;
    Ok((Extension(CacheTags::new(TABLES)), Json(dashboard)))
}

/// The aggregates, from five queries run concurrently. Sums are cast to `BIGINT`: PostgreSQL sums 64-bit integers
/// into `NUMERIC`, which the `Any` driver does not carry.
async fn compute(db: &AnyPool) -> Result<Dashboard, AppError> {
    let (products, customers, by_status, accepted_revenue_cents, top_products) = tokio::try_join!(
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN stock < $1 THEN 1 ELSE 0 END), 0) FROM products"
        )
        .bind(LOW_STOCK)
        .fetch_one(db),
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM customers").fetch_one(db),
        sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM quotations GROUP BY status"
        )
        .fetch_all(db),
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(SUM(total_cents), 0) AS BIGINT) FROM quotations WHERE status = 'accepted'"
        )
        .fetch_one(db),
        sqlx::query_as::<_, TopProduct>(
            "SELECT p.id AS product_id, p.name, CAST(SUM(l.quantity) AS BIGINT) AS quantity
             FROM quotation_lines l JOIN products p ON p.id = l.product_id
             GROUP BY p.id ORDER BY quantity DESC, p.id LIMIT $1",
        )
        .bind(TOP_PRODUCTS)
        .fetch_all(db),
    )?;

    let mut quotations_by_status: BTreeMap<&'static str, i64> =
        STATUS_NAMES.iter().map(|s| (*s, 0)).collect();
    for (status, count) in by_status {
        if let Some(slot) = STATUS_NAMES.iter().find(|known| **known == status) {
            quotations_by_status.insert(slot, count);
        }
    }

    Ok(Dashboard {
        products: products.0,
        customers,
        quotations_by_status,
        accepted_revenue_cents,
        top_products,
        low_stock_products: products.1,
        low_stock_threshold: LOW_STOCK,
    })
}
