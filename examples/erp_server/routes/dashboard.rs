//! The management dashboard: a handful of aggregate queries, run concurrently on the pool.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::AppState;
use crate::catalog::{LOW_STOCK, STATUS_NAMES};
use crate::error::AppError;

/// How many products the "most quoted" list shows.
const TOP_PRODUCTS: i64 = 10;

/// A product ranked by the quantity quoted across all quotations.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(crate) struct TopProduct {
    product_id: i64,
    name: String,
    quantity: i64,
}

/// Response of `GET /api/dashboard`.
#[derive(Debug, Serialize)]
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

/// `GET /api/dashboard`
pub(crate) async fn summary(State(state): State<AppState>) -> Result<Json<Dashboard>, AppError> {
    let db = &state.db;
    let (products, customers, by_status, accepted_revenue_cents, top_products) = tokio::try_join!(
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), COALESCE(SUM(stock < ?1), 0) FROM products"
        )
        .bind(LOW_STOCK)
        .fetch_one(db),
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM customers").fetch_one(db),
        sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM quotations GROUP BY status"
        )
        .fetch_all(db),
        sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(SUM(total_cents), 0) FROM quotations WHERE status = 'accepted'"
        )
        .fetch_one(db),
        sqlx::query_as::<_, TopProduct>(
            "SELECT p.id AS product_id, p.name, SUM(l.quantity) AS quantity
             FROM quotation_lines l JOIN products p ON p.id = l.product_id
             GROUP BY p.id ORDER BY quantity DESC, p.id LIMIT ?1",
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

    Ok(Json(Dashboard {
        products: products.0,
        customers,
        quotations_by_status,
        accepted_revenue_cents,
        top_products,
        low_stock_products: products.1,
        low_stock_threshold: LOW_STOCK,
    }))
}
