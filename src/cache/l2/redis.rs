//! [`RedisLevel`]: the [`L2Backend`] for Redis (and Valkey, KeyDB, Dragonfly), on redis-rs: a
//! `ConnectionManager` (one multiplexed connection, reconnected on failure) for commands, and a connection of
//! its own per subscription.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::backend::{
    BoxFuture, InvalidateOp, L2Backend, ReadKeys, ReadReply, Subscription, WriteOp,
};
use super::error::{Kind, L2Error};
use super::level::SecondLevel;

/// A conditional write (see [`WriteOp`]). KEYS: entry, key version, clear version, generation. ARGV: bytes,
/// milliseconds to live, born.
const WRITE: &str = r"
local born = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[4]) or '0') < born then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') > born then return 0 end
if tonumber(redis.call('GET', KEYS[3]) or '0') > born then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// An invalidation (see [`InvalidateOp`]). KEYS: generation, the version keys to set, then the entries to
/// delete. ARGV: milliseconds to live, number of version keys, channel, message head, message tail.
const INVALIDATE: &str = r"
local g = redis.call('INCR', KEYS[1])
local n = tonumber(ARGV[2])
for i = 2, n + 1 do redis.call('SET', KEYS[i], g, 'PX', ARGV[1]) end
for i = n + 2, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. g .. '|' .. ARGV[5])
return g
";

/// How long one connection attempt may take (the caller's timeouts bound each operation anyway).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

fn error(e: redis::RedisError) -> L2Error {
    if e.is_timeout() {
        L2Error::timeout()
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        L2Error::connection(e.to_string())
    } else {
        L2Error::server(e.to_string())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The Redis backend of the second level: commands through redis-rs's `ConnectionManager`, the bus on a
/// pub/sub connection of its own. Works with any server speaking the Redis protocol with Lua scripting
/// (Redis 6+, Valkey, KeyDB, Dragonfly).
///
/// [`RedisLevel::connect`] is the short way; [`RedisLevel::open`] with [`SecondLevel::builder`] chooses the
/// settings:
///
/// ```no_run
/// use perfscope::cache::Cache;
/// use perfscope::cache::l2::{RedisLevel, SecondLevel};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let level = SecondLevel::builder(RedisLevel::open("redis://127.0.0.1:6379/")?)
///     .prefix("erp:")
///     .soft_timeout(Duration::from_millis(30))
///     .build()?;
/// let products: Cache<String, String> = Cache::builder()
///     .name("products")
///     .second_level(level)
///     .build()?;
/// # drop(products);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLevel {
    client: redis::Client,
    manager: ConnectionManager,
}

impl fmt::Debug for RedisLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLevel")
            .field(
                "server",
                &self.client.get_connection_info().addr().to_string(),
            )
            .finish_non_exhaustive()
    }
}

impl RedisLevel {
    /// A backend for the server at `url` (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS if
    /// redis-rs was built with it). Connects lazily, so it succeeds while the server is down: the second level
    /// then counts errors and the loaders answer. Must be called inside a tokio runtime.
    pub fn open(url: &str) -> Result<RedisLevel, L2Error> {
        let client = redis::Client::open(url)
            .map_err(|e| L2Error::new(Kind::Config, format!("invalid Redis URL {url:?}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                L2Error::new(
                    Kind::Config,
                    format!("cannot start a Redis connection: {e}"),
                )
            })?;
        Ok(RedisLevel { client, manager })
    }

    /// A [`SecondLevel`] with the default settings on the server at `url`, after checking that the server
    /// answers `PING`, so a wrong address fails at startup rather than as a stream of counted errors.
    ///
    /// ```no_run
    /// use perfscope::cache::Cache;
    /// use perfscope::cache::l2::RedisLevel;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let level = RedisLevel::connect("redis://127.0.0.1:6379/").await?;
    /// let cache: Cache<String, Vec<u32>> = Cache::builder().name("orders").second_level(level).build()?;
    /// # drop(cache);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(url: &str) -> Result<SecondLevel, L2Error> {
        let backend = RedisLevel::open(url)?;
        backend.ping().await?;
        SecondLevel::builder(backend)
            .build()
            .map_err(|e| L2Error::new(Kind::Config, e.to_string()))
    }

    /// Sends `PING` (within one second).
    pub async fn ping(&self) -> Result<(), L2Error> {
        let mut connection = self.manager.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(error(e)),
            Err(_) => Err(L2Error::timeout()),
        }
    }
}

impl L2Backend for RedisLevel {
    fn read<'a>(&'a self, keys: &'a ReadKeys) -> BoxFuture<'a, Result<ReadReply, L2Error>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            let (entry, key_version, clear_version, generation): (
                Option<Vec<u8>>,
                Option<u64>,
                Option<u64>,
                Option<u64>,
            ) = redis::pipe()
                .get(&keys.entry)
                .get(&keys.key_version)
                .get(&keys.clear_version)
                .get(&keys.generation)
                .query_async(&mut connection)
                .await
                .map_err(error)?;
            Ok(ReadReply::new(
                entry,
                key_version.unwrap_or(0),
                clear_version.unwrap_or(0),
                generation.unwrap_or(0),
            ))
        })
    }

    fn read_entry<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, L2Error>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            redis::cmd("GET")
                .arg(entry)
                .query_async(&mut connection)
                .await
                .map_err(error)
        })
    }

    fn versions<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<u64>, L2Error>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut connection = self.manager.clone();
            let values: Vec<Option<u64>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .map_err(error)?;
            Ok(values.into_iter().map(|v| v.unwrap_or(0)).collect())
        })
    }

    fn write<'a>(&'a self, op: &'a WriteOp) -> BoxFuture<'a, Result<bool, L2Error>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            let keys = &op.keys;
            let stored: i64 = redis::cmd("EVAL")
                .arg(WRITE)
                .arg(4)
                .arg(&keys.entry)
                .arg(&keys.key_version)
                .arg(&keys.clear_version)
                .arg(&keys.generation)
                .arg(&op.bytes[..])
                .arg(millis(op.ttl))
                .arg(op.born)
                .query_async(&mut connection)
                .await
                .map_err(error)?;
            Ok(stored == 1)
        })
    }

    fn invalidate<'a>(&'a self, op: &'a InvalidateOp) -> BoxFuture<'a, Result<u64, L2Error>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(INVALIDATE)
                .arg(1 + op.set.len() + op.delete.len())
                .arg(&op.generation)
                .arg(&op.set)
                .arg(&op.delete)
                .arg(millis(op.ttl))
                .arg(op.set.len())
                .arg(&op.channel)
                .arg(&op.message_head)
                .arg(&op.message_tail);
            cmd.query_async::<u64>(&mut connection).await.map_err(error)
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .query_async::<i64>(&mut connection)
                .await
                .map(drop)
                .map_err(error)
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription, L2Error>> {
        Box::pin(async move {
            let mut pubsub = self.client.get_async_pubsub().await.map_err(error)?;
            pubsub.subscribe(channel).await.map_err(error)?;
            let (sender, subscription) = Subscription::channel(4096);
            // Forwards messages until the connection ends (or the subscriber goes away), then drops the sender:
            // the subscriber sees the end of the stream as a disconnection.
            tokio::spawn(async move {
                use futures_util::StreamExt;
                let mut stream = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = stream.next() => match message {
                            Some(message) => {
                                if sender.send(message.get_payload_bytes().to_vec()).await.is_err() {
                                    break;
                                }
                            }
                            None => break,
                        },
                        // The subscriber gave up on this connection (a silent bus): close it now.
                        () = sender.closed() => break,
                    }
                }
            });
            Ok(subscription)
        })
    }
}
