//! The background task that publishes this instance's histograms, and the handle that stops it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;

use crate::fleet::codec::{self, Header};
use crate::fleet::config::FleetConfig;
use crate::fleet::error::{FleetError, StoreError};
use crate::fleet::log::LogLimiter;
use crate::fleet::snapshot::FleetStats;
use crate::monitor::state::MonitorState;

/// The index of instances lives this many TTLs: long enough for every live instance to refresh it, short
/// enough that a fleet that stopped leaves nothing behind. Entries older than that are pruned on publish;
/// the margin covers clocks that disagree between hosts.
const INDEX_TTLS: u64 = 10;

/// What the publisher task, the handle and `fleet_snapshot` share.
#[derive(Debug)]
pub(crate) struct FleetShared {
    pub(crate) config: FleetConfig,
    pub(crate) connection: ConnectionManager,
    /// Cleared when the [`FleetPublisher`] is dropped: `fleet_snapshot` then reports "not configured".
    pub(crate) active: AtomicBool,
    publishes: AtomicU64,
    publish_failures: AtomicU64,
    publish_timeouts: AtomicU64,
    routes_left_out: AtomicU64,
    pub(crate) skipped_entries: AtomicU64,
    last_error: Mutex<Option<String>>,
    publish_log: LogLimiter,
    pub(crate) read_log: LogLimiter,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl FleetShared {
    /// Checks `config` and prepares a connection that is opened on first use (so a Redis that is down at start
    /// delays nothing).
    pub(crate) fn new(config: FleetConfig) -> Result<Self, FleetError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(FleetError::NoRuntime);
        }
        let client =
            redis::Client::open(config.url.as_str()).map_err(|error| FleetError::InvalidUrl {
                reason: error.to_string(),
            })?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // One quick retry: the next publish is the real retry, a few seconds later.
            .set_number_of_retries(1)
            .set_max_delay(config.timeout);
        let connection =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(|error| {
                FleetError::InvalidUrl {
                    reason: error.to_string(),
                }
            })?;
        Ok(FleetShared {
            config,
            connection,
            active: AtomicBool::new(true),
            publishes: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
            publish_timeouts: AtomicU64::new(0),
            routes_left_out: AtomicU64::new(0),
            skipped_entries: AtomicU64::new(0),
            last_error: Mutex::new(None),
            publish_log: LogLimiter::default(),
            read_log: LogLimiter::default(),
        })
    }

    /// Runs `operation` on a clone of the connection, bounded by the configured timeout.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        name: &'static str,
        operation: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        // The connection has its own timeouts; this one also bounds a reconnect in progress.
        match tokio::time::timeout(self.config.timeout, operation(self.connection.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::redis(name, &error)),
            Err(_) => Err(StoreError::timeout(name, self.config.timeout)),
        }
    }

    /// Publishes the monitor's histograms once.
    pub(crate) async fn publish(&self, monitor: &MonitorState) -> Result<(), StoreError> {
        let routes = monitor.latency_histograms(tokio::time::Instant::now());
        let now = unix_ms();
        let ttl_ms = millis(self.config.ttl).max(1);
        let (bytes, left_out) = codec::encode(
            Header {
                published_at_unix_ms: now,
                started_at_unix_ms: monitor.started_unix_ms(),
                ttl_ms,
            },
            &routes,
        );
        drop(routes);
        self.routes_left_out.fetch_add(left_out, Ordering::Relaxed);
        let id = self.config.instance_id.as_str();
        let key = self.config.instance_key(id);
        let index = self.config.index_key();
        let mut pipe = redis::pipe();
        // One transaction: a reader never sees the index name an instance whose publish is not there yet.
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(&index)
            .arg(now)
            .arg(id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({}", now.saturating_sub(INDEX_TTLS * ttl_ms)))
            .ignore()
            .cmd("PEXPIRE")
            .arg(&index)
            .arg(INDEX_TTLS * ttl_ms)
            .ignore();
        let result = self
            .run("publish", |mut connection| async move {
                pipe.query_async::<()>(&mut connection).await
            })
            .await;
        self.note(&result);
        result
    }

    /// Counts a publish outcome and logs failures at a rate limit.
    fn note(&self, result: &Result<(), StoreError>) {
        match result {
            Ok(()) => {
                self.publishes.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = None;
            }
            Err(error) => {
                self.publish_failures.fetch_add(1, Ordering::Relaxed);
                if error.is_timeout() {
                    self.publish_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                *self.last_error.lock() = Some(error.to_string());
                if let Some(suppressed) = self.publish_log.allow() {
                    tracing::warn!(
                        instance = %self.config.instance_id,
                        suppressed,
                        "perfscope fleet publish failed (requests are not affected): {error}"
                    );
                }
            }
        }
    }

    /// Removes this instance's publish, for a graceful leave.
    async fn withdraw(&self) -> Result<(), StoreError> {
        let id = self.config.instance_id.clone();
        let key = self.config.instance_key(&id);
        let index = self.config.index_key();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(key)
            .ignore()
            .cmd("ZREM")
            .arg(index)
            .arg(id)
            .ignore();
        self.run("withdraw", |mut connection| async move {
            pipe.query_async::<()>(&mut connection).await
        })
        .await
    }

    pub(crate) fn stats(&self) -> FleetStats {
        FleetStats {
            publishes: self.publishes.load(Ordering::Relaxed),
            publish_failures: self.publish_failures.load(Ordering::Relaxed),
            publish_timeouts: self.publish_timeouts.load(Ordering::Relaxed),
            routes_left_out: self.routes_left_out.load(Ordering::Relaxed),
            skipped_entries: self.skipped_entries.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}

/// Publishes this instance's latency histograms to Redis until dropped.
///
/// Returned by [`Perfscope::publish_fleet`](crate::Perfscope::publish_fleet). Dropping it stops the task; the
/// last publish then expires after the configured TTL. [`FleetPublisher::shutdown`] removes it at once instead.
#[must_use = "publishing stops when the FleetPublisher is dropped: keep it for the life of the server"]
#[derive(Debug)]
pub struct FleetPublisher {
    shared: Arc<FleetShared>,
    monitor: Arc<MonitorState>,
    task: JoinHandle<()>,
}

impl FleetPublisher {
    pub(crate) fn start(shared: Arc<FleetShared>, monitor: Arc<MonitorState>) -> Self {
        let task_shared = shared.clone();
        let task_monitor = monitor.clone();
        let task = tokio::spawn(async move {
            let monitor = task_monitor;
            let mut ticker = tokio::time::interval(task_shared.config.interval);
            // After a slow publish, wait a whole interval again rather than publishing in a burst.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                // Failures are counted and logged inside; the next tick is the retry.
                let _ = task_shared.publish(&monitor).await;
            }
        });
        FleetPublisher {
            shared,
            monitor,
            task,
        }
    }

    /// Publishes now, outside the schedule: before reading the fleet in a test, or before a planned stop.
    pub async fn publish_now(&self) -> Result<(), FleetError> {
        Ok(self.shared.publish(&self.monitor).await?)
    }

    /// The id this instance publishes under.
    pub fn instance_id(&self) -> &str {
        &self.shared.config.instance_id
    }

    /// Publishing counters since this publisher started.
    pub fn stats(&self) -> FleetStats {
        self.shared.stats()
    }

    /// Stops publishing and removes this instance's publish from Redis, so it leaves fleet snapshots at once
    /// rather than after its TTL.
    pub async fn shutdown(self) -> Result<(), FleetError> {
        let shared = self.shared.clone();
        drop(self);
        Ok(shared.withdraw().await?)
    }
}

impl Drop for FleetPublisher {
    fn drop(&mut self) {
        self.shared.active.store(false, Ordering::Relaxed);
        self.task.abort();
    }
}
