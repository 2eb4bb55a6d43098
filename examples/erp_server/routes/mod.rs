//! The HTTP surface: the route table in one place, handlers in one module per resource.

mod auth;
mod customers;
pub(crate) mod dashboard;
pub(crate) mod products;
mod quotations;

use axum::Json;
use axum::Router;
use axum::routing::{get, post, put};
use perfscope::cache::http::ResponseCacheLayer;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;

/// Every application route. perfscope labels measurements with these templates (`/api/products/{id}`), never with
/// the raw path, so the number of series stays bounded.
///
/// `responses` caches the hot GET routes only: they are grouped in a router of their own, which the layer wraps,
/// and merged with the rest (`PUT /api/products/{id}` joins its `GET` there, uncached). A product's stock level
/// is never cached: it must show the last write.
pub(crate) fn router(responses: ResponseCacheLayer) -> Router<AppState> {
    let cached = Router::new()
        .route("/api/products", get(products::search))
        .route("/api/products/{id}", get(products::show))
        .route("/api/customers/{id}", get(customers::show))
        .route("/api/dashboard", get(dashboard::summary))
        .layer(responses);
    Router::new()
        .route("/health", get(health))
        .route("/api/products/{id}", put(products::update))
        .route("/api/products/{id}/stock", get(products::stock))
        .route("/api/quotations", get(quotations::list))
        .route("/api/v2/quotations", get(quotations::list_v2))
        .route("/api/quotations/{id}", get(quotations::show))
        .route("/api/auth/login", post(auth::login))
        .merge(cached)
        .fallback(fallback)
}

/// Liveness probe: answers without touching the database, so it stays cheap for load balancers.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Unknown paths get the same JSON error shape as everything else.
async fn fallback() -> AppError {
    AppError::NotFound("no such route".to_owned())
}
