#![doc = include_str!("../../../docs/response-cache.md")]

mod body;
mod cache_control;
mod entry;
mod etag;
mod extensions;
mod flight;
mod future;
mod key;
#[cfg(feature = "redis")]
mod l2;
mod layer;
mod policy;
mod service;

pub use body::ResponseBody;
pub use entry::{CachedResponse, X_CACHE};
pub use extensions::{CACHE_TAG_HEADER, CacheIdentity, CacheTags, MAX_TAG_LEN};
pub use future::ResponseFuture;
pub use key::ResponseKey;
#[cfg(feature = "redis")]
pub use l2::ResponseCodec;
pub use layer::{
    DEFAULT_MAX_BODY, DEFAULT_MAX_BYTES, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_RESPONSE_TAGS,
    DEFAULT_STORE_NAME, ResponseCacheBuilder, ResponseCacheLayer, ResponseCacheStats,
    ResponseStore,
};
pub use policy::SkipReason;
pub use service::ResponseCache;

pub(crate) use layer::Stats as LayerStats;
