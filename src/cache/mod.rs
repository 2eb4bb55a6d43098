#![doc = include_str!("../../docs/cache.md")]

mod builder;
mod clock;
mod entry;
mod error;
mod handle;
mod key;
#[cfg(feature = "redis")]
pub mod l2;
mod loaded;
mod pattern;
mod stats;
pub(crate) use stats::hit_ratio;
mod store;
mod sweeper;
mod tags;
mod ticket;

pub use builder::{
    CacheBuilder, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_NAMESPACES, DEFAULT_MAX_TAGS,
    DEFAULT_SWEEP_INTERVAL,
};
pub use clock::{CacheClock, MockClock};
pub use error::{KeyParseError, LoadError};
pub use handle::CacheHandle;
pub use key::{CacheKey, PREFIX_DEPTH};
pub use loaded::{CacheStatus, Fetched, Loaded};
pub use stats::{
    CacheStatsSnapshot, Evictions, Invalidations, NamespaceStats, ResponseStats, SecondLevelStats,
    TagStats,
};
pub use store::Cache;
pub use ticket::Ticket;
pub mod http;
pub use http::{CacheTags, ResponseCacheLayer};
