#![doc = include_str!("../../docs/fleet.md")]

mod codec;
mod config;
mod error;
mod log;
mod publisher;
mod reader;
mod snapshot;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use config::FleetConfig;
pub use error::{FleetError, StoreError};
pub use publisher::FleetPublisher;
pub(crate) use publisher::FleetShared;
pub use snapshot::{FleetInstance, FleetRoute, FleetSnapshot, FleetStats};

use crate::Perfscope;

impl Perfscope {
    /// Starts publishing this instance's per-route latency histograms to Redis, every
    /// [`interval`](FleetConfig::interval), so that [`Perfscope::fleet_snapshot`] on any instance of the fleet
    /// can merge them. Publishing stops when the returned [`FleetPublisher`] is dropped.
    ///
    /// Returns at once: the connection opens in the background, and a Redis that is down or slow is retried
    /// on the next tick, counted in [`FleetStats`] and logged once a minute; requests never wait for Redis.
    /// Fails only on a bad setting, a URL that does not parse, or a call outside a Tokio runtime. Calling it
    /// again starts a second publisher, and `fleet_snapshot` reads through the newest one.
    ///
    /// ```no_run
    /// use perfscope::fleet::FleetConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let perf = perfscope::Perfscope::builder().build()?;
    /// let _fleet = perf.publish_fleet(FleetConfig::new("redis://127.0.0.1:6379/"))?;
    /// // ... serve; later, on any instance:
    /// let fleet = perf.fleet_snapshot().await?;
    /// for route in &fleet.routes {
    ///     println!("{} {}: fleet p99 {} ms over {} instances", route.method, route.route,
    ///              route.lifetime.p99_ms, route.instances);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn publish_fleet(&self, config: FleetConfig) -> Result<FleetPublisher, FleetError> {
        let shared = Arc::new(FleetShared::new(config)?);
        *self.inner.fleet.lock() = Arc::downgrade(&shared);
        Ok(FleetPublisher::start(shared, self.inner.monitor.clone()))
    }

    /// The fleet's latency: every live instance's last publish, merged per route into percentiles of the union
    /// of their samples, with the list of instances and the age of their last publish.
    ///
    /// Fails with [`FleetError::NotConfigured`] when no [`FleetPublisher`] of this handle is alive, and with
    /// [`FleetError::Store`] when Redis cannot be reached within the configured timeout. Entries under the
    /// fleet's keys that do not decode are left out and counted.
    pub async fn fleet_snapshot(&self) -> Result<FleetSnapshot, FleetError> {
        let shared = self
            .inner
            .fleet
            .lock()
            .upgrade()
            .filter(|shared| shared.active.load(Ordering::Relaxed))
            .ok_or(FleetError::NotConfigured)?;
        reader::read(&shared).await
    }
}
