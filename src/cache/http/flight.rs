//! Single flight: one handler call per key at a time; the other requests for that key wait for it.
//!
//! The first miss for a key becomes the leader and gets a [`FlightGuard`]; later misses for the same key get a
//! receiver. When the leader stores the response it hands the stored value to every waiter
//! ([`FlightGuard::complete`]), so they are answered without looking the store up again (and without waiting
//! for a client that reads slowly: the leader reads the body ahead before storing). When the leader finds the
//! response unstorable, gives up on a body too large, or is cancelled, the guard just drops: the waiters' receivers
//! fail and each calls the handler itself, as without the cache. The table holds only keys in flight, so its size
//! is bounded by the requests in progress.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::entry::CachedResponse;
use super::key::ResponseKey;

const SHARDS: usize = 16;

/// What the leader hands to its waiters: the key it stored under (a variant key when the response has a
/// `Vary`) and the stored value.
pub(crate) type Delivery = (ResponseKey, CachedResponse);

type Waiters = Vec<oneshot::Sender<Delivery>>;

/// Keys being loaded, sharded to keep misses on different keys off one lock.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: [Mutex<HashMap<ResponseKey, Waiters>>; SHARDS],
    hasher: RandomState,
}

/// What a miss got from [`Flights::join`].
#[derive(Debug)]
pub(crate) enum Joined {
    /// Load the key; waiters are released when the guard completes or drops.
    Leader(FlightGuard),
    /// Another request is loading the key: wait for its delivery (an error when it stored nothing).
    Waiter(oneshot::Receiver<Delivery>),
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: RandomState::new(),
        }
    }
}

impl Flights {
    fn shard(&self, key: &ResponseKey) -> &Mutex<HashMap<ResponseKey, Waiters>> {
        // PANIC: the modulo keeps the index in range.
        &self.shards[(self.hasher.hash_one(key.as_bytes()) as usize) % SHARDS]
    }

    /// Leads the load of `key`, or waits for the request already loading it.
    pub(crate) fn join(self: &Arc<Self>, key: &ResponseKey) -> Joined {
        let mut shard = self.shard(key).lock();
        match shard.get_mut(key) {
            Some(waiters) => {
                let (sender, receiver) = oneshot::channel();
                waiters.push(sender);
                Joined::Waiter(receiver)
            }
            None => {
                shard.insert(key.clone(), Vec::new());
                Joined::Leader(self.guard(key))
            }
        }
    }

    /// Leads the load of `key` if nobody is loading it (a background refresh); never waits.
    pub(crate) fn try_lead(self: &Arc<Self>, key: &ResponseKey) -> Option<FlightGuard> {
        let mut shard = self.shard(key).lock();
        if shard.contains_key(key) {
            return None;
        }
        shard.insert(key.clone(), Vec::new());
        Some(self.guard(key))
    }

    fn guard(self: &Arc<Self>, key: &ResponseKey) -> FlightGuard {
        FlightGuard {
            flights: self.clone(),
            key: key.clone(),
            released: false,
        }
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }
}

/// Held by the request loading a key; completing or dropping it releases the waiters.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: ResponseKey,
    released: bool,
}

impl FlightGuard {
    /// Hands the stored value to every waiter.
    pub(crate) fn complete(mut self, stored_under: &ResponseKey, value: &CachedResponse) {
        for waiter in self.release() {
            // A waiter that went away (its request was cancelled) does not matter.
            let _ = waiter.send((stored_under.clone(), value.clone()));
        }
    }

    /// Removes the key from the table, once, and returns its waiters.
    fn release(&mut self) -> Waiters {
        if std::mem::replace(&mut self.released, true) {
            return Vec::new();
        }
        let mut shard = self.flights.shard(&self.key).lock();
        let waiters = shard.remove(&self.key).unwrap_or_default();
        // Give back the memory of a burst once it is over.
        if shard.is_empty() && shard.capacity() > 256 {
            shard.shrink_to_fit();
        }
        waiters
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // Dropping the senders wakes every waiter with an error: they call the handler themselves.
        drop(self.release());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn key(path: &str) -> ResponseKey {
        let request = Request::get(path).body(()).unwrap();
        let config = super::super::key::KeyConfig {
            query: super::super::key::QueryKey::All,
            headers: Box::new([]),
            max_key_bytes: 1024,
        };
        super::super::key::base_key(
            super::super::key::KeyInput {
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                route: None,
                identity: None,
            },
            &config,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn one_leader_and_waiters_released_on_drop() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(guard) = flights.join(&key("/a")) else {
            panic!("first is the leader")
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| match flights.join(&key("/a")) {
                Joined::Waiter(receiver) => receiver,
                Joined::Leader(_) => panic!("second is a waiter"),
            })
            .collect();
        assert!(flights.try_lead(&key("/a")).is_none());
        let other = flights.try_lead(&key("/b")).unwrap();
        assert_eq!(flights.in_flight(), 2);
        drop(guard);
        for waiter in waiters {
            assert!(waiter.await.is_err());
        }
        drop(other);
        assert_eq!(flights.in_flight(), 0);

        // completing hands the value over
        let Joined::Leader(guard) = flights.join(&key("/a")) else {
            panic!("a new leader")
        };
        let Joined::Waiter(waiter) = flights.join(&key("/a")) else {
            panic!("a waiter")
        };
        let value = CachedResponse::vary(
            super::super::key::VarySpec::from_response(&{
                let mut h = http::HeaderMap::new();
                h.insert("vary", http::HeaderValue::from_static("accept"));
                h
            })
            .unwrap()
            .unwrap(),
        );
        guard.complete(&key("/b"), &value);
        let (stored_under, _) = waiter.await.unwrap();
        assert_eq!(stored_under, key("/b"));
        assert_eq!(flights.in_flight(), 0);
    }
}
