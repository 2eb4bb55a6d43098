//! The requests in flight, so a snapshot can list the ones running for too long (hung requests).
//!
//! One slab per thread slot, each behind its own lock: a request registers in the slab of the thread that
//! started it and leaves it from wherever it ends. Freed places are reused, so after warm-up registering does
//! not allocate; the slabs hold as many places as requests were ever in flight at once.

use parking_lot::Mutex;

use crate::context::RequestContext;
use crate::thread_slot::{self, OWNED};

#[derive(Debug, Default)]
struct Slab {
    places: Vec<Option<RequestContext>>,
    free: Vec<usize>,
}

/// Where a request was registered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveToken {
    shard: usize,
    place: usize,
}

/// The in-flight requests of one monitor.
#[derive(Debug)]
pub(crate) struct LiveRequests {
    shards: Box<[Mutex<Slab>]>,
}

impl Default for LiveRequests {
    fn default() -> Self {
        LiveRequests {
            shards: (0..=OWNED).map(|_| Mutex::new(Slab::default())).collect(),
        }
    }
}

impl LiveRequests {
    pub(crate) fn insert(&self, context: RequestContext) -> LiveToken {
        let shard = thread_slot::current().min(OWNED);
        let mut slab = self.shards[shard].lock();
        let place = match slab.free.pop() {
            Some(place) => {
                slab.places[place] = Some(context);
                place
            }
            None => {
                slab.places.push(Some(context));
                slab.places.len() - 1
            }
        };
        LiveToken { shard, place }
    }

    pub(crate) fn remove(&self, token: LiveToken) {
        let Some(shard) = self.shards.get(token.shard) else {
            return;
        };
        let mut slab = shard.lock();
        if let Some(place) = slab.places.get_mut(token.place)
            && place.take().is_some()
        {
            slab.free.push(token.place);
        }
    }

    /// Calls `f` with each request in flight.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&RequestContext)) {
        for shard in self.shards.iter() {
            // Clone out under the lock, call `f` outside it.
            let contexts: Vec<RequestContext> =
                shard.lock().places.iter().flatten().cloned().collect();
            contexts.iter().for_each(&mut f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_id::RequestId;
    use crate::route::MethodLabel;

    #[test]
    fn places_are_reused() {
        let live = LiveRequests::default();
        let ctx = RequestContext::new(
            RequestId::generate(0),
            MethodLabel::Get,
            tokio::time::Instant::now(),
            0,
        );
        let a = live.insert(ctx.clone());
        let b = live.insert(ctx.clone());
        live.remove(a);
        let c = live.insert(ctx.clone());
        assert_eq!(a.place, c.place);
        live.remove(b);
        live.remove(c);
        live.remove(c); // twice is harmless
        let mut n = 0;
        live.for_each(|_| n += 1);
        assert_eq!(n, 0);
    }
}
