//! Customer record: the CRM view of one customer with a summary of their quotations.
//!
//! The response is cached (see [`crate::caches`]), tagged `customer:{id}` and `quotations`.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use perfscope::cache::CacheTags;
use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::AppState;
use crate::caches::{QUOTATIONS, customer_tag};
use crate::db::placeholders;
use crate::error::AppError;

/// How many recent quotations the customer view lists.
const RECENT_QUOTATIONS: i64 = 5;

/// A customer as stored; also embedded in every quotation.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct Customer {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) city: String,
    pub(crate) phone: String,
}

impl Customer {
    /// Loads one customer, `None` when the id does not exist.
    pub(crate) async fn find(db: &sqlx::AnyPool, id: i64) -> Result<Option<Self>, sqlx::Error> {
        sqlx::query_as::<_, Self>(
            "SELECT id, name, email, city, phone FROM customers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(db)
        .await
    }

    /// Loads the customers with the given ids in one query, by id; ids that do not exist are left out.
    pub(crate) async fn find_many(
        db: &sqlx::AnyPool,
        ids: &[i64],
    ) -> Result<HashMap<i64, Self>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, name, email, city, phone FROM customers WHERE id IN ({}) ORDER BY id",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query_as::<_, Self>(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        let customers = query.fetch_all(db).await?;
        Ok(customers.into_iter().map(|c| (c.id, c)).collect())
    }
}

/// A quotation in a list where the customer is already known.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(crate) struct QuotationSummary {
    id: i64,
    status: String,
    total_cents: i64,
    created_at: String,
}

/// Response of `GET /api/customers/{id}`.
#[derive(Debug, Serialize)]
pub(crate) struct CustomerDetail {
    #[serde(flatten)]
    customer: Customer,
    quotation_count: i64,
    /// Newest first, at most [`RECENT_QUOTATIONS`].
    recent_quotations: Vec<QuotationSummary>,
}

/// `GET /api/customers/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(Extension<CacheTags>, Json<CustomerDetail>), AppError> {
    let Path(id) = id?;
    let customer = Customer::find(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("customer", id))?;
    let quotation_count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM quotations WHERE customer_id = $1")
            .bind(id)
            .fetch_one(&state.db)
            .await?;
    let recent_quotations = sqlx::query_as::<_, QuotationSummary>(
        "SELECT id, status, total_cents, created_at FROM quotations
         WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(id)
    .bind(RECENT_QUOTATIONS)
    .fetch_all(&state.db)
    .await?;
    Ok((
        // The customer's row, and the quotations counted and listed.
        Extension(CacheTags::new([QUOTATIONS]).with(customer_tag(id))),
        Json(CustomerDetail {
            customer,
            quotation_count,
            recent_quotations,
        }),
    ))
}
