//! [`L2Backend`]: the few operations the second level needs from a shared store, and [`MemoryLevel`], an
//! in-process store for tests.
//!
//! The operations are whole steps of the protocol, not single commands, because some must be atomic on the
//! server (an invalidation bumps the generation, records it, drops the entry and announces it in one step; a
//! write lands only if nothing invalidated its key since its compute started). Redis does each in one round
//! trip (a pipeline or a Lua script); see [`RedisLevel`](super::RedisLevel).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::error::L2Error;

/// The future type of [`L2Backend`]'s methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The keys one L2 lookup reads together.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReadKeys {
    /// The entry.
    pub entry: String,
    /// The entry key's invalidation version (absent: 0).
    pub key_version: String,
    /// The cache's `clear` version (absent: 0).
    pub clear_version: String,
    /// The generation counter every version is taken from (absent: 0).
    pub generation: String,
}

/// What one lookup read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadReply {
    /// The entry's bytes, if it exists.
    pub entry: Option<Vec<u8>>,
    /// The value at [`ReadKeys::key_version`].
    pub key_version: u64,
    /// The value at [`ReadKeys::clear_version`].
    pub clear_version: u64,
    /// The value at [`ReadKeys::generation`].
    pub generation: u64,
}

impl ReadReply {
    /// A reply (for implementations of [`L2Backend`]).
    pub fn new(
        entry: Option<Vec<u8>>,
        key_version: u64,
        clear_version: u64,
        generation: u64,
    ) -> Self {
        ReadReply {
            entry,
            key_version,
            clear_version,
            generation,
        }
    }
}

/// A conditional write: store `bytes` at `keys.entry` for `ttl`, only if `keys.generation >= born` (the
/// store was not reset since) and neither `keys.key_version` nor `keys.clear_version` is above `born` (the key
/// was not invalidated and the cache not cleared since the compute started).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriteOp {
    /// The keys, as for a read.
    pub keys: ReadKeys,
    /// The encoded entry.
    pub bytes: Vec<u8>,
    /// How long the store keeps it.
    pub ttl: Duration,
    /// The generation read before the value was computed.
    pub born: u64,
}

/// An invalidation: atomically `g = INCR generation`, set every key of `set` to `g` (expiring after `ttl`),
/// delete every key of `delete`, publish `message_head + g + "|" + message_tail` on `channel`; answer `g`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InvalidateOp {
    /// The generation counter.
    pub generation: String,
    /// Version keys that take the new generation.
    pub set: Vec<String>,
    /// Entries to delete.
    pub delete: Vec<String>,
    /// Lifetime of the version keys (longer than any entry's).
    pub ttl: Duration,
    /// The bus channel.
    pub channel: String,
    /// The message before the generation.
    pub message_head: String,
    /// The message after the generation and a `|`.
    pub message_tail: String,
}

impl InvalidateOp {
    /// The bus message for generation `g`.
    pub fn message(&self, g: u64) -> Vec<u8> {
        format!("{}{g}|{}", self.message_head, self.message_tail).into_bytes()
    }
}

/// Messages of a bus channel, from [`L2Backend::subscribe`]. The stream ends when the subscription is lost.
#[derive(Debug)]
pub struct Subscription {
    receiver: mpsc::Receiver<Vec<u8>>,
}

impl Subscription {
    /// A subscription fed through the returned sender (for implementations of [`L2Backend`]); dropping the
    /// sender ends it.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Vec<u8>>, Subscription) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (sender, Subscription { receiver })
    }

    /// The next message, or `None` once the subscription is lost.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.receiver.recv().await
    }
}

/// A shared store for the second level and its invalidation bus. [`RedisLevel`](super::RedisLevel) is the
/// implementation for Redis and servers that speak its protocol (Valkey, KeyDB, Dragonfly); [`MemoryLevel`]
/// stands in for tests.
///
/// Implementations need not time out: the caller bounds every call with its own timeouts and circuit breaker.
pub trait L2Backend: Send + Sync + 'static {
    /// Reads an entry and the versions that judge it, in one round trip.
    fn read<'a>(&'a self, keys: &'a ReadKeys) -> BoxFuture<'a, Result<ReadReply, L2Error>>;
    /// Reads an entry alone (`None` if absent): the lookup of a node whose bus vouches for the versions.
    fn read_entry<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, L2Error>>;
    /// Reads integer versions (absent: 0), in one round trip.
    fn versions<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<u64>, L2Error>>;
    /// Performs a conditional write; answers whether it was stored.
    fn write<'a>(&'a self, op: &'a WriteOp) -> BoxFuture<'a, Result<bool, L2Error>>;
    /// Performs an invalidation atomically; answers the new generation.
    fn invalidate<'a>(&'a self, op: &'a InvalidateOp) -> BoxFuture<'a, Result<u64, L2Error>>;
    /// Publishes a message on a bus channel.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), L2Error>>;
    /// Subscribes to a bus channel on a connection of its own; resolves once the subscription is active.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription, L2Error>>;
}

#[derive(Debug, Default)]
struct MemoryState {
    values: HashMap<String, (Vec<u8>, Option<Instant>)>,
    subscribers: Vec<(String, mpsc::Sender<Vec<u8>>)>,
}

impl MemoryState {
    fn get(&mut self, key: &str) -> Option<&Vec<u8>> {
        let expired = matches!(self.values.get(key), Some((_, Some(at))) if *at <= Instant::now());
        if expired {
            self.values.remove(key);
        }
        self.values.get(key).map(|(value, _)| value)
    }

    fn number(&mut self, key: &str) -> u64 {
        self.get(key)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0)
    }

    fn publish(&mut self, channel: &str, message: &[u8]) {
        self.subscribers.retain(|(ch, sender)| {
            ch != channel || sender.try_send(message.to_vec()).is_ok() || !sender.is_closed()
        });
    }
}

#[derive(Debug, Default)]
struct MemoryShared {
    state: Mutex<MemoryState>,
    down: AtomicBool,
    delay_micros: AtomicU64,
    calls: AtomicU64,
}

/// An in-process [`L2Backend`]: clones share one store, so two caches built on two clones behave like two
/// instances sharing one Redis. It can be taken down and slowed, for tests of faults.
///
/// ```
/// use perfscope::cache::l2::{MemoryLevel, SecondLevel};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryLevel::new();
/// let a = SecondLevel::builder(store.clone()).build().unwrap();
/// let b = SecondLevel::builder(store.clone()).build().unwrap();
/// # drop((a, b));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryLevel {
    shared: Arc<MemoryShared>,
}

impl MemoryLevel {
    /// An empty store.
    pub fn new() -> Self {
        MemoryLevel::default()
    }

    /// Makes every operation fail (and ends every subscription) while `down`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.shared.state.lock().subscribers.clear();
        }
    }

    /// Makes every operation take at least `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_micros.store(
            u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Operations attempted so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Stores raw bytes under `key` (to plant corrupt entries in tests).
    pub fn put_raw(&self, key: &str, bytes: Vec<u8>) {
        self.shared
            .state
            .lock()
            .values
            .insert(key.to_owned(), (bytes, None));
    }

    /// The raw bytes under `key`.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.state.lock().get(key).cloned()
    }

    /// Drops every key (a store restarted empty).
    pub fn flush(&self) {
        self.shared.state.lock().values.clear();
    }

    async fn enter(&self) -> Result<(), L2Error> {
        self.shared.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.shared.delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        if self.shared.down.load(Ordering::SeqCst) {
            return Err(L2Error::connection("memory level is down"));
        }
        Ok(())
    }
}

impl L2Backend for MemoryLevel {
    fn read<'a>(&'a self, keys: &'a ReadKeys) -> BoxFuture<'a, Result<ReadReply, L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.shared.state.lock();
            Ok(ReadReply {
                entry: state.get(&keys.entry).cloned(),
                key_version: state.number(&keys.key_version),
                clear_version: state.number(&keys.clear_version),
                generation: state.number(&keys.generation),
            })
        })
    }

    fn read_entry<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            Ok(self.shared.state.lock().get(entry).cloned())
        })
    }

    fn versions<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<u64>, L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.shared.state.lock();
            Ok(keys.iter().map(|key| state.number(key)).collect())
        })
    }

    fn write<'a>(&'a self, op: &'a WriteOp) -> BoxFuture<'a, Result<bool, L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.shared.state.lock();
            let keys = &op.keys;
            if state.number(&keys.generation) < op.born
                || state.number(&keys.key_version) > op.born
                || state.number(&keys.clear_version) > op.born
            {
                return Ok(false);
            }
            state.values.insert(
                keys.entry.clone(),
                (op.bytes.clone(), Some(Instant::now() + op.ttl)),
            );
            Ok(true)
        })
    }

    fn invalidate<'a>(&'a self, op: &'a InvalidateOp) -> BoxFuture<'a, Result<u64, L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            let mut state = self.shared.state.lock();
            let g = state.number(&op.generation) + 1;
            state
                .values
                .insert(op.generation.clone(), (g.to_string().into_bytes(), None));
            let expires = Some(Instant::now() + op.ttl);
            for key in &op.set {
                state
                    .values
                    .insert(key.clone(), (g.to_string().into_bytes(), expires));
            }
            for key in &op.delete {
                state.values.remove(key);
            }
            state.publish(&op.channel, &op.message(g));
            Ok(g)
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        message: &'a [u8],
    ) -> BoxFuture<'a, Result<(), L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            self.shared.state.lock().publish(channel, message);
            Ok(())
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription, L2Error>> {
        Box::pin(async move {
            self.enter().await?;
            let (sender, subscription) = Subscription::channel(4096);
            self.shared
                .state
                .lock()
                .subscribers
                .push((channel.to_owned(), sender));
            Ok(subscription)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ReadKeys {
        ReadKeys {
            entry: "e".into(),
            key_version: "kv".into(),
            clear_version: "c".into(),
            generation: "g".into(),
        }
    }

    #[tokio::test]
    async fn memory_level_follows_the_protocol() {
        let store = MemoryLevel::new();
        let mut bus = store.subscribe("bus").await.unwrap();
        let write = WriteOp {
            keys: keys(),
            bytes: b"v".to_vec(),
            ttl: Duration::from_secs(5),
            born: 0,
        };
        assert!(store.write(&write).await.unwrap());
        assert_eq!(
            store.read(&keys()).await.unwrap().entry.as_deref(),
            Some(&b"v"[..])
        );
        let op = InvalidateOp {
            generation: "g".into(),
            set: vec!["kv".into()],
            delete: vec!["e".into()],
            ttl: Duration::from_secs(5),
            channel: "bus".into(),
            message_head: "h|".into(),
            message_tail: "name".into(),
        };
        assert_eq!(store.invalidate(&op).await.unwrap(), 1);
        assert_eq!(bus.next().await.unwrap(), b"h|1|name");
        let reply = store.read(&keys()).await.unwrap();
        assert_eq!(reply, ReadReply::new(None, 1, 0, 1));
        assert_eq!(store.read_entry("e").await.unwrap(), None);
        // A compute that started before the invalidation does not land.
        assert!(!store.write(&write).await.unwrap());
        assert!(
            store
                .write(&WriteOp {
                    born: 1,
                    ..write.clone()
                })
                .await
                .unwrap()
        );
        assert_eq!(
            store.read_entry("e").await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(
            store.versions(&["kv".into(), "none".into()]).await.unwrap(),
            [1, 0]
        );
        store.set_down(true);
        assert!(store.read(&keys()).await.unwrap_err().is_connection());
        assert!(bus.next().await.is_none(), "subscription ended");
        store.set_down(false);
        store.flush();
        assert_eq!(store.read(&keys()).await.unwrap(), ReadReply::default());
        assert!(store.calls() >= 8);
    }
}
