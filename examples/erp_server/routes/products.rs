//! Product catalogue: search with pagination, read one, read its stock level, update price, stock or name.
//!
//! Reads are cached (see [`crate::caches`]): the list and the detail through the response cache, tagged
//! `products` and `product:{id}`, and each product's row in the `products` data cache. An update invalidates
//! them once it has committed. The stock level is the exception: it is read from the database on every request.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use perfscope::cache::CacheTags;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::caches::{PRODUCTS, product_key, product_tag};
use crate::catalog::LOW_STOCK;
use crate::error::AppError;
use crate::pagination::Page;

/// Longest product name accepted by `PUT`, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Highest price accepted by `PUT`, in cents (1,000,000.00): far above any pharmacy product, far below where
/// sums of prices times quantities could overflow an `i64`.
const MAX_PRICE_CENTS: i64 = 100_000_000;
/// Highest stock level accepted by `PUT`.
const MAX_STOCK: i64 = 10_000_000;

/// A product as stored and as returned (and, with a shared Redis, as kept there).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub(crate) struct Product {
    pub(crate) id: i64,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) price_cents: i64,
    pub(crate) stock: i64,
    pub(crate) updated_at: String,
}

impl Product {
    /// Approximate bytes of the value: the struct and its strings (the cache adds the key and its bookkeeping).
    pub(crate) fn weight(&self) -> u64 {
        let strings = [&self.sku, &self.name, &self.category, &self.updated_at];
        (size_of::<Self>() + strings.iter().map(|s| s.len()).sum::<usize>()) as u64
    }

    /// Loads one product, `None` when the id does not exist.
    async fn find(db: &sqlx::AnyPool, id: i64) -> Result<Option<Self>, sqlx::Error> {
        sqlx::query_as::<_, Self>(
            "SELECT id, sku, name, category, price_cents, stock, updated_at FROM products WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(db)
        .await
    }
}

/// Query string of `GET /api/products`.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchParams {
    /// Substring of the name or SKU, case-insensitive for ASCII; empty or absent lists everything.
    q: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

/// One page of search results.
#[derive(Debug, Serialize)]
pub(crate) struct ProductPage {
    items: Vec<Product>,
    page: u32,
    per_page: u32,
    /// Matches across all pages.
    total: i64,
}

/// `GET /api/products?q=&page=&per_page=`
pub(crate) async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<(Extension<CacheTags>, Json<ProductPage>), AppError> {
    let Query(params) = params?;
    let page = Page::new(params.page, params.per_page)?;
    let pattern = like_pattern(params.q.as_deref().unwrap_or("").trim());

    let total: i64 = sqlx::query_scalar(
        r"SELECT COUNT(*) FROM products WHERE lower(name) LIKE $1 ESCAPE '\' OR lower(sku) LIKE $1 ESCAPE '\'",
    )
    .bind(&pattern)
    .fetch_one(&state.db)
    .await?;
    let items = sqlx::query_as::<_, Product>(
        r"SELECT id, sku, name, category, price_cents, stock, updated_at FROM products
          WHERE lower(name) LIKE $1 ESCAPE '\' OR lower(sku) LIKE $1 ESCAPE '\'
          ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(&pattern)
    .bind(page.limit())
    .bind(page.offset())
    .fetch_all(&state.db)
    .await?;

    Ok((
        // Any product's change can move it in or out of any page.
        Extension(CacheTags::new([PRODUCTS])),
        Json(ProductPage {
            items,
            page: page.page,
            per_page: page.per_page,
            total,
        }),
    ))
}

/// `GET /api/products/{id}`: the row from the `products` data cache (one load per id however many requests miss
/// it at once; a missing id is an error, not cached), the response tagged for the response cache.
pub(crate) async fn show(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(Extension<CacheTags>, Json<Product>), AppError> {
    let Path(id) = id?;
    let db = state.db.clone();
    let product = state
        .caches
        .products
        .try_get_or_compute(&product_key(id), move || async move {
            Product::find(&db, id)
                .await?
                .ok_or_else(|| AppError::not_found("product", id))
        })
        .await?;
    Ok((
        Extension(CacheTags::new([PRODUCTS]).with(product_tag(id))),
        Json(product),
    ))
}

/// Response of `GET /api/products/{id}/stock`.
#[derive(Debug, Serialize)]
pub(crate) struct StockLevel {
    id: i64,
    sku: String,
    stock: i64,
    /// `stock` is below the dashboard's low-stock threshold.
    low_stock: bool,
    updated_at: String,
}

/// `GET /api/products/{id}/stock`: one query, never cached. A checkout or a warehouse screen asks it before
/// promising goods, so it must see the last write, not a copy up to [`crate::caches::RESPONSE_TTL`] old.
pub(crate) async fn stock(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<StockLevel>, AppError> {
    let Path(id) = id?;
    let (sku, stock, updated_at) = sqlx::query_as::<_, (String, i64, String)>(
        "SELECT sku, stock, updated_at FROM products WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| AppError::not_found("product", id))?;
    Ok(Json(StockLevel {
        id,
        sku,
        stock,
        low_stock: stock < LOW_STOCK,
        updated_at,
    }))
}

/// Body of `PUT /api/products/{id}`: every field optional, unknown fields rejected so typos do not pass silently.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductUpdate {
    name: Option<String>,
    price_cents: Option<i64>,
    stock: Option<i64>,
}

impl ProductUpdate {
    /// Checks the ranges and the characters and trims the name; the returned update is ready to bind. Every
    /// refusal is a 422 whose message names the field and the rule, never the value.
    fn validate(self) -> Result<Self, AppError> {
        let name = match self.name {
            Some(name) => Some(valid_name(&name)?),
            None => None,
        };
        if let Some(price) = self.price_cents
            && !(0..=MAX_PRICE_CENTS).contains(&price)
        {
            return Err(AppError::Invalid(format!(
                "price_cents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        if let Some(stock) = self.stock
            && !(0..=MAX_STOCK).contains(&stock)
        {
            return Err(AppError::Invalid(format!(
                "stock must be between 0 and {MAX_STOCK}"
            )));
        }
        if name.is_none() && self.price_cents.is_none() && self.stock.is_none() {
            return Err(AppError::Invalid(
                "set at least one of name, price_cents, stock".to_owned(),
            ));
        }
        Ok(Self { name, ..self })
    }
}

/// The name trimmed, if it is 1 to [`MAX_NAME_CHARS`] characters with no control character (NUL, newline, ESC,
/// ...) and no bidirectional formatting character (an RTL override makes `exe.txt` display as `txt.exe`).
fn valid_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(AppError::Invalid(format!(
            "name must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(AppError::Invalid(
            "name must not contain control characters or bidirectional formatting characters"
                .to_owned(),
        ));
    }
    Ok(name.to_owned())
}

/// The Unicode bidirectional formatting characters: marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `PUT /api/products/{id}`: updates the given fields and `updated_at`, returns the product as stored. Once the
/// update has committed, the cached copies of the product and of everything listing it are invalidated, so the
/// next read shows the change.
pub(crate) async fn update(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<ProductUpdate>, JsonRejection>,
) -> Result<Json<Product>, AppError> {
    let Path(id) = id?;
    let Json(update) = body?;
    let update = update.validate()?;

    let product = sqlx::query_as::<_, Product>(
        "UPDATE products
         SET name = COALESCE($1, name), price_cents = COALESCE($2, price_cents), stock = COALESCE($3, stock),
             updated_at = $4
         WHERE id = $5
         RETURNING id, sku, name, category, price_cents, stock, updated_at",
    )
    .bind(update.name)
    .bind(update.price_cents)
    .bind(update.stock)
    .bind(crate::time::now_utc())
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| AppError::not_found("product", id))?;
    state.caches.product_changed(id);
    Ok(Json(product))
}

/// `%needle%` in ASCII lower case, to match against `lower(column)` (LIKE ignores case on SQLite but not on
/// PostgreSQL), with the LIKE wildcards of the needle escaped, so a search for `50%` means the literal text.
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c.to_ascii_lowercase());
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("para"), "%para%");
        assert_eq!(like_pattern("Para"), "%para%");
        assert_eq!(like_pattern(r"1%_\"), r"%1\%\_\\%");
    }

    fn update(name: Option<&str>, price_cents: Option<i64>, stock: Option<i64>) -> ProductUpdate {
        ProductUpdate {
            name: name.map(str::to_owned),
            price_cents,
            stock,
        }
    }

    #[test]
    fn validation_bounds_prices_and_stock() {
        assert!(update(None, Some(0), Some(0)).validate().is_ok());
        assert!(
            update(None, Some(MAX_PRICE_CENTS), Some(MAX_STOCK))
                .validate()
                .is_ok()
        );
        for (price, stock) in [
            (Some(-1), None),
            (Some(i64::MAX), None),
            (None, Some(i64::MAX)),
            (None, Some(-1)),
        ] {
            assert!(matches!(
                update(None, price, stock).validate(),
                Err(AppError::Invalid(_))
            ));
        }
    }

    #[test]
    fn validation_refuses_control_and_bidi_characters_in_names() {
        assert!(
            update(Some(" Paracetamol 500 mg "), None, None)
                .validate()
                .is_ok()
        );
        assert!(
            update(Some("Ibuprofène – 200 mg"), None, None)
                .validate()
                .is_ok()
        );
        for name in [
            "a\0b",
            "a\nb",
            "a\u{1b}[31mb",
            "a\u{7f}",
            "a\u{202E}txt.exe",
            "a\u{2066}b",
            "a\u{200F}",
            "",
            "   ",
        ] {
            assert!(
                matches!(
                    update(Some(name), None, None).validate(),
                    Err(AppError::Invalid(_))
                ),
                "{name:?} accepted"
            );
        }
    }
}
