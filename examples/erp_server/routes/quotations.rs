//! Quotations: the list page (twice) and the detail page.
//!
//! `GET /api/quotations` is deliberately slow. It loads a page of quotations and then, for each one, its customer
//! and its lines with one query each: 1 + 20 × 2 = 41 queries per page, the N+1 shape a naive ERP grows into. It
//! is kept on purpose so perfscope's query analyzer has something real to find.
//!
//! `GET /api/v2/quotations` is the fix: the same page query, then one `WHERE id IN (..)` for the customers of the
//! page and one `WHERE quotation_id IN (..)` for its lines, so 3 queries whatever the page size. The JSON types
//! and [`QuotationView::assemble`] do not depend on how rows are loaded, so both return the identical body.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, AssertSqlSafe};

use super::customers::Customer;
use crate::AppState;
use crate::db::placeholders;
use crate::error::AppError;
use crate::pagination::Page;

/// Quotations per page of the list.
const PER_PAGE: u32 = 20;

/// A quotation row without its relations.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct QuotationRow {
    pub(crate) id: i64,
    pub(crate) customer_id: i64,
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) total_cents: i64,
}

/// One line of a quotation, with the product's name for display.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct LineView {
    pub(crate) id: i64,
    pub(crate) product_id: i64,
    pub(crate) product_name: String,
    pub(crate) quantity: i64,
    pub(crate) unit_price_cents: i64,
    pub(crate) line_total_cents: i64,
}

/// A quotation as returned by the list and the detail endpoints.
#[derive(Debug, Serialize)]
pub(crate) struct QuotationView {
    pub(crate) id: i64,
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) total_cents: i64,
    pub(crate) customer: Customer,
    pub(crate) lines: Vec<LineView>,
}

impl QuotationView {
    /// Builds the view from already-loaded parts; whoever loads them decides how many queries that takes.
    pub(crate) fn assemble(row: QuotationRow, customer: Customer, lines: Vec<LineView>) -> Self {
        Self {
            id: row.id,
            status: row.status,
            created_at: row.created_at,
            total_cents: row.total_cents,
            customer,
            lines,
        }
    }
}

/// Loads the customer and the lines of one quotation: two queries per call. Calling it in a loop is the N+1.
pub(crate) async fn load_relations(
    db: &AnyPool,
    row: QuotationRow,
) -> Result<QuotationView, AppError> {
    let customer = Customer::find(db, row.customer_id).await?.ok_or_else(|| {
        // The foreign key makes this unreachable unless the database was edited by hand.
        AppError::internal(format!(
            "quotation {} refers to missing customer {}",
            row.id, row.customer_id
        ))
    })?;
    let lines = sqlx::query_as::<_, LineView>(
        "SELECT l.id, l.product_id, p.name AS product_name, l.quantity, l.unit_price_cents,
                l.quantity * l.unit_price_cents AS line_total_cents
         FROM quotation_lines l JOIN products p ON p.id = l.product_id
         WHERE l.quotation_id = $1
         ORDER BY l.id",
    )
    .bind(row.id)
    .fetch_all(db)
    .await?;
    Ok(QuotationView::assemble(row, customer, lines))
}

/// A line with the quotation it belongs to, as the batched query returns it.
#[derive(sqlx::FromRow)]
struct PageLineRow {
    quotation_id: i64,
    #[sqlx(flatten)]
    line: LineView,
}

/// Loads the customers and the lines of a whole page of quotations: two queries however many rows, then the
/// views assembled in the order of `rows`.
pub(crate) async fn load_relations_batched(
    db: &AnyPool,
    rows: Vec<QuotationRow>,
) -> Result<Vec<QuotationView>, AppError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }

    let mut customer_ids: Vec<i64> = rows.iter().map(|row| row.customer_id).collect();
    customer_ids.sort_unstable();
    customer_ids.dedup();
    let customers = Customer::find_many(db, &customer_ids).await?;

    let quotation_ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let sql = format!(
        "SELECT l.quotation_id, l.id, l.product_id, p.name AS product_name, l.quantity, l.unit_price_cents,
                l.quantity * l.unit_price_cents AS line_total_cents
         FROM quotation_lines l JOIN products p ON p.id = l.product_id
         WHERE l.quotation_id IN ({})
         ORDER BY l.quotation_id, l.id",
        placeholders(1, quotation_ids.len())
    );
    let mut query = sqlx::query_as::<_, PageLineRow>(AssertSqlSafe(sql));
    for id in &quotation_ids {
        query = query.bind(*id);
    }
    let mut lines: HashMap<i64, Vec<LineView>> = HashMap::with_capacity(rows.len());
    for row in query.fetch_all(db).await? {
        lines.entry(row.quotation_id).or_default().push(row.line);
    }

    rows.into_iter()
        .map(|row| {
            let customer = customers.get(&row.customer_id).cloned().ok_or_else(|| {
                // The foreign key makes this unreachable unless the database was edited by hand.
                AppError::internal(format!(
                    "quotation {} refers to missing customer {}",
                    row.id, row.customer_id
                ))
            })?;
            let lines = lines.remove(&row.id).unwrap_or_default();
            Ok(QuotationView::assemble(row, customer, lines))
        })
        .collect()
}

/// Query string of `GET /api/quotations` and `GET /api/v2/quotations`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    page: Option<u32>,
}

/// One page of quotations, newest first.
#[derive(Debug, Serialize)]
pub(crate) struct QuotationPage {
    pub(crate) items: Vec<QuotationView>,
    pub(crate) page: u32,
    pub(crate) per_page: u32,
    /// Whether a next page exists (found by reading one row more than the page, no extra `COUNT` query).
    pub(crate) has_more: bool,
}

/// Query 1 of both list versions: one page of quotations, newest first (ties broken by id, so the order is the
/// same on every database), and whether a next page exists.
async fn load_page(db: &AnyPool, page: Page) -> Result<(Vec<QuotationRow>, bool), AppError> {
    // One row more than the page, to learn whether there is a next page (no extra `COUNT` query).
    let mut rows = sqlx::query_as::<_, QuotationRow>(
        "SELECT id, customer_id, status, created_at, total_cents FROM quotations
         ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
    )
    .bind(page.limit() + 1)
    .bind(page.offset())
    .fetch_all(db)
    .await?;
    let per_page = page.per_page as usize;
    let has_more = rows.len() > per_page;
    rows.truncate(per_page);
    Ok((rows, has_more))
}

/// `GET /api/quotations?page=`: the known-slow N+1 shape, kept on purpose (see the module docs).
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<QuotationPage>, AppError> {
    let Query(params) = params?;
    let page = Page::new(params.page, Some(PER_PAGE))?;

    // Query 1: the page itself.
    let (rows, has_more) = load_page(&state.db, page).await?;

    // Queries 2..=41: customer and lines, one quotation at a time. N+1 on purpose.
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(load_relations(&state.db, row).await?);
    }

    Ok(Json(QuotationPage {
        items,
        page: page.page,
        per_page: page.per_page,
        has_more,
    }))
}

/// `GET /api/v2/quotations?page=`: the same page as [`list`], byte for byte, in 3 queries instead of 41.
pub(crate) async fn list_v2(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<QuotationPage>, AppError> {
    let Query(params) = params?;
    let page = Page::new(params.page, Some(PER_PAGE))?;

    // Query 1: the page itself; queries 2 and 3: the customers and the lines of all its quotations at once.
    let (rows, has_more) = load_page(&state.db, page).await?;
    let items = load_relations_batched(&state.db, rows).await?;

    Ok(Json(QuotationPage {
        items,
        page: page.page,
        per_page: page.per_page,
        has_more,
    }))
}

/// `GET /api/quotations/{id}`
pub(crate) async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<QuotationView>, AppError> {
    let Path(id) = id?;
    let row = sqlx::query_as::<_, QuotationRow>(
        "SELECT id, customer_id, status, created_at, total_cents FROM quotations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| AppError::not_found("quotation", id))?;
    Ok(Json(load_relations(&state.db, row).await?))
}
