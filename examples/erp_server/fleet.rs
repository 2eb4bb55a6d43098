//! Several instances of the demo behind a load balancer, sharing one database and one Redis.
//!
//! With `REDIS_URL` (and the demo's `redis` feature: `cargo run --features perfscope-demo/redis --example erp_server`):
//! - the product rows and the cached responses live in Redis too, as the second level of the `products` cache and
//!   of the response cache, so an instance that has not loaded a product reads it from Redis instead of the
//!   database;
//! - every cache's invalidations (a `PUT /api/products/{id}` on any instance) reach the other instances over the
//!   invalidation bus, so none serves the old product after the write returns (within the bound printed at start);
//! - this instance publishes its latency histograms, and `/admin/perf/stats?scope=fleet` merges every
//!   instance's into fleet-wide percentiles.
//!
//! Without `REDIS_URL` every cache is local to the process, as in a single-instance deployment.

/// The environment variable naming the shared Redis.
pub(crate) const VARIABLE: &str = "REDIS_URL";

/// The Redis URL, when one is set (blank counts as unset).
fn redis_url() -> Option<String> {
    std::env::var(VARIABLE)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

#[cfg(feature = "redis")]
mod shared {
    use perfscope::cache::CacheBuilder;
    use perfscope::cache::http::ResponseCacheBuilder;
    use perfscope::cache::l2::{RedisLevel, SecondLevel};
    use perfscope::fleet::{FleetConfig, FleetPublisher};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// What this instance shares with the others through Redis.
    pub(crate) struct Fleet {
        /// The second level and invalidation bus every cache uses; `None` without `REDIS_URL`.
        pub(crate) level: Option<SecondLevel>,
        /// Publishes this instance's latency histograms while it is kept.
        publisher: Option<FleetPublisher>,
    }

    impl Fleet {
        /// Connects to `REDIS_URL` when it is set. The connection is made lazily: the server starts (and serves
        /// from its own caches and database) while Redis is down, and uses it once it answers.
        pub(crate) fn from_env(
            perf: &perfscope::Perfscope,
        ) -> Result<Self, Box<dyn std::error::Error>> {
            let Some(url) = super::redis_url() else {
                return Ok(Fleet {
                    level: None,
                    publisher: None,
                });
            };
            let level = SecondLevel::builder(RedisLevel::open(&url)?)
                .prefix("erp:cache:")
                .build()?;
            let publisher = perf.publish_fleet(FleetConfig::new(url).prefix("erp:fleet:"))?;
            Ok(Fleet {
                level: Some(level),
                publisher: Some(publisher),
            })
        }

        /// `builder` with Redis as its second level (values shared between instances), when there is one.
        pub(crate) fn share_values<K, V>(&self, builder: CacheBuilder<K, V>) -> CacheBuilder<K, V>
        where
            K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
            V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
        {
            match &self.level {
                Some(level) => builder.second_level(level.clone()),
                None => builder,
            }
        }

        /// `builder` with its invalidations shared between instances (its values stay in the process).
        pub(crate) fn share_invalidations<K, V>(
            &self,
            builder: CacheBuilder<K, V>,
        ) -> CacheBuilder<K, V>
        where
            K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
        {
            match &self.level {
                Some(level) => builder.invalidation_bus(level.clone()),
                None => builder,
            }
        }

        /// The response cache with Redis as its second level: a response one instance stored is served by the
        /// others (`X-Cache: HIT-L2`), and invalidations reach them all.
        pub(crate) fn share_responses(
            &self,
            builder: ResponseCacheBuilder,
        ) -> ResponseCacheBuilder {
            match &self.level {
                Some(level) => builder.second_level(level.clone()),
                None => builder,
            }
        }

        /// One line for the start-up banner.
        pub(crate) fn describe(&self) -> Option<String> {
            let level = self.level.as_ref()?;
            Some(format!(
                "shared caches and invalidations on {} (staleness bound {:.2?}), fleet latency published",
                super::VARIABLE,
                level.staleness_bound()
            ))
        }

        /// Stops publishing and removes this instance from the fleet's percentiles at once.
        pub(crate) async fn shutdown(self) {
            if let Some(publisher) = self.publisher {
                let _ = publisher.shutdown().await;
            }
        }
    }
}

#[cfg(not(feature = "redis"))]
mod shared {
    use perfscope::cache::CacheBuilder;
    use perfscope::cache::http::ResponseCacheBuilder;

    /// Without the `redis` feature there is nothing to share; `REDIS_URL` is refused rather than ignored.
    pub(crate) struct Fleet;

    impl Fleet {
        pub(crate) fn share_values<K, V>(&self, builder: CacheBuilder<K, V>) -> CacheBuilder<K, V> {
            builder
        }

        pub(crate) fn share_invalidations<K, V>(
            &self,
            builder: CacheBuilder<K, V>,
        ) -> CacheBuilder<K, V> {
            builder
        }

        pub(crate) fn share_responses(
            &self,
            builder: ResponseCacheBuilder,
        ) -> ResponseCacheBuilder {
            builder
        }

        pub(crate) fn from_env(
            _: &perfscope::Perfscope,
        ) -> Result<Self, Box<dyn std::error::Error>> {
            match super::redis_url() {
                None => Ok(Fleet),
                Some(_) => Err(format!(
                    "{} is set, but this build has no Redis support: run \
                     `cargo run --features perfscope-demo/redis --example erp_server`",
                    super::VARIABLE
                )
                .into()),
            }
        }

        pub(crate) fn describe(&self) -> Option<String> {
            None
        }

        pub(crate) async fn shutdown(self) {}
    }
}

pub(crate) use shared::Fleet;
