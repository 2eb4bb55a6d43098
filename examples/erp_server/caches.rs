//! Caching, at two levels, and what a write invalidates.
//!
//! - **Responses** ([`ResponseCacheLayer`]): the hot GET routes (product list and detail, customer detail,
//!   dashboard) are answered from stored responses for [`RESPONSE_TTL`], marked `X-Cache: HIT` / `MISS` /
//!   `STALE`. Handlers tag their responses with [`CacheTags`] (`product:1`, `products`, ...).
//! - **Data** ([`Cache`] with [`Cache::try_get_or_compute`]): product rows (`product:{id}`) and the dashboard
//!   aggregates (`dashboard`), loaded once however many requests ask at the same time (single flight), with
//!   tags chosen by the loader. A product's row outlives a response-cache invalidation of the whole catalogue
//!   (a `PUT` of another product), so the next miss of its detail page reads no SQL.
//!
//! Tags name what a value was computed from: a whole table (`products`, `customers`, `quotations`) or one row
//! (`product:1`, `customer:1`; on the data caches the key `product:1` itself, through `invalidate_prefix`).
//! [`Caches::product_changed`] is the one place that knows what a product write touches.

use std::time::Duration;

use perfscope::cache::http::{ResponseCacheLayer, ResponseStore};
use perfscope::cache::{Cache, CacheKey, LoadError};

use crate::error::AppError;
use crate::fleet::Fleet;
use crate::routes::dashboard::Dashboard;
use crate::routes::products::Product;

/// How long a stored response is served as `HIT` (handlers send no `Cache-Control`, so this applies).
pub(crate) const RESPONSE_TTL: Duration = Duration::from_secs(30);
/// After [`RESPONSE_TTL`], how long a response is still served (`STALE`) while one request refreshes it.
const RESPONSE_STALE: Duration = Duration::from_secs(5);
/// Bound of the response store: keys, bodies and headers.
const RESPONSE_MAX_BYTES: u64 = 16 << 20;
/// The query parameters the cached routes read (only `/api/products` reads any); the others are not part of the
/// key, so `?cb=<random>` cannot fill the store.
const RESPONSE_QUERY: [&str; 3] = ["q", "page", "per_page"];

/// Product rows change only through `PUT /api/products/{id}`, which invalidates them: a long TTL is safe.
const PRODUCT_TTL: Duration = Duration::from_secs(300);
/// Bound of the product rows, by their [`weight`](Product::weight): room for the 1,000 products of the catalogue
/// (a row weighs about 350 bytes with its key and the cache's bookkeeping).
const PRODUCT_MAX_BYTES: u64 = 1 << 20;
/// The dashboard also counts quotations, which this demo never writes through the API but a real ERP would.
const DASHBOARD_TTL: Duration = Duration::from_secs(30);
/// After [`DASHBOARD_TTL`], how long the old aggregates are served while one background load replaces them.
const DASHBOARD_STALE: Duration = Duration::from_secs(10);
/// Bound of the dashboard cache: its one entry weighs about 1 KiB.
const DASHBOARD_MAX_BYTES: u64 = 256 << 10;

/// Tag of everything computed from the whole `products` table (the list, the dashboard).
pub(crate) const PRODUCTS: &str = "products";
/// Tag of everything computed from the whole `customers` table.
pub(crate) const CUSTOMERS: &str = "customers";
/// Tag of everything computed from the `quotations` table.
pub(crate) const QUOTATIONS: &str = "quotations";

/// The tag (response cache) and key prefix (data cache) of one product.
pub(crate) fn product_tag(id: i64) -> String {
    format!("product:{id}")
}

/// The data-cache key of one product row: `product:{id}`, so `invalidate_prefix(&product_tag(id))` covers it.
pub(crate) fn product_key(id: i64) -> CacheKey {
    CacheKey::new("product").part(id)
}

/// The tag of one customer's responses.
pub(crate) fn customer_tag(id: i64) -> String {
    format!("customer:{id}")
}

/// Every cache of the application. Cheap to clone: each field is an `Arc`.
#[derive(Clone)]
pub(crate) struct Caches {
    /// Product rows by `product:{id}`.
    pub(crate) products: Cache<CacheKey, Product>,
    /// The dashboard aggregates, one entry under `dashboard`.
    pub(crate) dashboard: Cache<CacheKey, Dashboard>,
    /// The key of the one dashboard entry, built once.
    pub(crate) dashboard_key: CacheKey,
    /// The response cache's store, where its entries are invalidated.
    responses: ResponseStore,
}

impl Caches {
    /// Builds the data caches and the response-cache layer (to be applied to the cached routes); with a shared
    /// Redis (`fleet`), product rows are kept there too and every invalidation reaches the other instances.
    pub(crate) fn new(fleet: &Fleet) -> Result<(Self, ResponseCacheLayer), perfscope::BuildError> {
        let layer = fleet
            .share_responses(ResponseCacheLayer::builder())
            .max_bytes(RESPONSE_MAX_BYTES)
            .default_ttl(RESPONSE_TTL)
            .stale_while_revalidate(RESPONSE_STALE)
            .query_allowlist(RESPONSE_QUERY)
            .build()?;
        // Bounded by bytes with a weigher, so `/admin/perf/cache` reports their size (`weighted_bytes`); a cache
        // bounded by `max_entries` only counts entries.
        let products = fleet
            .share_values(Cache::builder())
            .name("products")
            .max_weight(PRODUCT_MAX_BYTES)
            .weigher(|_, product: &Product| product.weight())
            .ttl(PRODUCT_TTL)
            .ttl_jitter(0.1) // rows loaded together do not all expire together
            .build()?;
        // The aggregates are cheap to recompute and hold `&'static str` keys: shared invalidations only.
        let dashboard = fleet
            .share_invalidations(Cache::builder())
            .name("dashboard")
            .max_weight(DASHBOARD_MAX_BYTES)
            .weigher(|_, dashboard: &Dashboard| dashboard.weight())
            .ttl(DASHBOARD_TTL)
            .stale_for(DASHBOARD_STALE)
            .build()?;
        let caches = Caches {
            products,
            dashboard,
            dashboard_key: CacheKey::new("dashboard"),
            responses: layer.store().clone(),
        };
        Ok((caches, layer))
    }

    /// Reports every cache in perfscope's snapshots, `/admin/perf/cache` (which can also invalidate them) and
    /// `/admin/perf/metrics`.
    pub(crate) fn register(&self, perf: &perfscope::Perfscope) {
        for handle in [
            self.responses.handle(),
            self.products.handle(),
            self.dashboard.handle(),
        ] {
            let name = handle.name().to_owned();
            if !perf.register_cache(handle) {
                tracing::warn!(cache = %name, "too many caches registered; this one is not reported");
            }
        }
    }

    /// After a product's row changed (call it once the write has committed): its row and its detail response
    /// go, and so does everything computed from the whole table (the lists, the dashboard). Other products' rows
    /// stay in the data cache.
    pub(crate) fn product_changed(&self, id: i64) {
        let tag = product_tag(id);
        self.products.invalidate_prefix(&tag);
        self.responses.invalidate_tag(&tag);
        // Product rows are not tagged `products` (each depends on its own row only), so only the dashboard's
        // entry carries the tag among the data caches.
        self.dashboard.invalidate_tag(PRODUCTS);
        self.responses.invalidate_tag(PRODUCTS);
    }
}

/// A loader's error back to the handler: its own error as it was, a panic as a 500.
impl From<LoadError<AppError>> for AppError {
    fn from(error: LoadError<AppError>) -> Self {
        match error {
            LoadError::Failed(error) => error,
            LoadError::Panicked(message) => {
                AppError::internal(format!("cache loader panicked: {message}"))
            }
            // `LoadError` is non-exhaustive.
            _ => AppError::internal("cache loader failed"),
        }
    }
}
