//! What the table stores per key: the value and the metadata that decides whether a read may return it.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::stats::{Counter, Stats};
use super::tags::TagId;
use crate::thread_slot as slot;

/// Tag ids kept inline before spilling to the heap.
const INLINE_TAGS: usize = 3;

/// Metadata of one stored value, packed: a read copies it with the value. Times are nanoseconds since the
/// cache was built.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The invalidation clock read before the value was computed.
    pub(crate) born: u64,
    /// Reads return the value before this instant.
    pub(crate) fresh_until: u64,
    /// `get_or_compute` returns it (and refreshes it in the background) before this instant.
    pub(crate) stale_until: u64,
    pub(crate) created: u64,
    /// Identifies this stored value: a background refresh installs its result only over the value it
    /// refreshed. (Wrapping is harmless: a refresh result is also checked against every invalidation.)
    pub(crate) id: u32,
    /// The estimated bytes of the entry (saturating).
    pub(crate) bytes: u32,
    /// Index of the key's namespace in the statistics.
    pub(crate) ns: u16,
    /// Number of tag ids inline, or `u8::MAX` when they are on the heap.
    ntags: u8,
    inline: [TagId; INLINE_TAGS],
    heap: Option<Arc<Box<[TagId]>>>,
}

impl Meta {
    pub(crate) fn new(born: u64, created: u64, ns: u16, ids: &[TagId]) -> Self {
        let mut meta = Meta {
            born,
            fresh_until: 0,
            stale_until: 0,
            created,
            id: next_id(),
            bytes: 0,
            ns,
            ntags: 0,
            inline: [0; INLINE_TAGS],
            heap: None,
        };
        if ids.len() <= INLINE_TAGS {
            meta.inline[..ids.len()].copy_from_slice(ids);
            meta.ntags = ids.len() as u8;
        } else {
            meta.heap = Some(Arc::new(ids.into()));
            meta.ntags = u8::MAX;
        }
        meta
    }

    /// The ids of the entry's tags (user tags and implicit key-prefix tags).
    #[inline]
    pub(crate) fn tags(&self) -> &[TagId] {
        match &self.heap {
            None => self.inline.get(..self.ntags as usize).unwrap_or(&[]),
            Some(ids) => ids,
        }
    }

    /// Heap bytes of the tag list beyond the entry itself.
    pub(crate) fn tags_heap_bytes(&self) -> u64 {
        self.heap
            .as_ref()
            .map_or(0, |ids| 40 + 4 * ids.len() as u64)
    }
}

/// Tag ids gathered for one entry while it is built: inline up to [`TagIds::INLINE`], so an insert with a few
/// tags allocates nothing for them.
#[derive(Debug, Default)]
pub(crate) struct TagIds {
    inline: [TagId; TagIds::INLINE],
    len: usize,
    spilled: Vec<TagId>,
}

impl TagIds {
    const INLINE: usize = 8;

    #[inline]
    pub(crate) fn push(&mut self, id: TagId) {
        if self.spilled.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = id;
                self.len += 1;
                return;
            }
            self.spilled.extend_from_slice(&self.inline);
        }
        self.spilled.push(id);
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[TagId] {
        if self.spilled.is_empty() {
            self.inline.get(..self.len).unwrap_or(&[])
        } else {
            &self.spilled
        }
    }
}

/// A stored value.
#[derive(Debug, Clone)]
pub(crate) struct Stored<V> {
    pub(crate) value: V,
    pub(crate) meta: Meta,
}

/// Weighs entries from their precomputed size, so a weight never changes while the entry is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryWeighter {
    /// One per entry (an entry-count bound).
    Count,
    /// Bytes, at least `floor` (a weight bound, with an entry bound too when `floor > 0`).
    Bytes { floor: u64 },
}

impl EntryWeighter {
    #[inline]
    pub(crate) fn weigh(&self, bytes: u32) -> u64 {
        match *self {
            EntryWeighter::Count => 1,
            EntryWeighter::Bytes { floor } => u64::from(bytes).max(floor),
        }
    }
}

impl<K, V> quick_cache::Weighter<K, Stored<V>> for EntryWeighter {
    #[inline]
    fn weight(&self, _key: &K, stored: &Stored<V>) -> u64 {
        self.weigh(stored.meta.bytes)
    }
}

/// Counts evictions by size and drops evicted entries outside the table's locks.
pub(crate) struct EntryLifecycle<K, V> {
    pub(crate) stats: Arc<Stats>,
    marker: PhantomData<fn() -> (K, V)>,
}

impl<K, V> EntryLifecycle<K, V> {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        EntryLifecycle {
            stats,
            marker: PhantomData,
        }
    }
}

impl<K, V> Clone for EntryLifecycle<K, V> {
    fn clone(&self) -> Self {
        EntryLifecycle::new(self.stats.clone())
    }
}

impl<K, V> std::fmt::Debug for EntryLifecycle<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryLifecycle").finish_non_exhaustive()
    }
}

/// What one table operation evicted: entries are dropped with it, after the shard lock is released.
pub(crate) struct Evicted<K, V> {
    /// Entries chosen for eviction (`before_evict`) and not yet reported (`on_evict`). The table also reports
    /// the value an insert replaces through `on_evict`, without `before_evict`: that is not an eviction.
    chosen: u32,
    dropped: [Option<(K, Stored<V>)>; 2],
}

impl<K, V> Default for Evicted<K, V> {
    fn default() -> Self {
        Evicted {
            chosen: 0,
            dropped: [None, None],
        }
    }
}

impl<K, V> quick_cache::Lifecycle<K, Stored<V>> for EntryLifecycle<K, V> {
    type RequestState = Evicted<K, V>;

    #[inline]
    fn before_evict(&self, state: &mut Self::RequestState, _key: &K, _stored: &mut Stored<V>) {
        state.chosen += 1;
    }

    fn on_evict(&self, state: &mut Self::RequestState, key: K, stored: Stored<V>) {
        if state.chosen > 0 {
            state.chosen -= 1;
            self.stats
                .add(slot::current(), stored.meta.ns, Counter::EvictSize, 1);
        }
        if let Some(free) = state.dropped.iter_mut().find(|s| s.is_none()) {
            *free = Some((key, stored));
        }
    }
}

/// Ids are handed out to threads in blocks, so allocating one is a thread-local increment.
const ID_BLOCK: u32 = 1024;
static NEXT_ID_BLOCK: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static IDS: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// An id for a stored value, unique among the last 2^32 handed out in the process.
#[inline]
pub(crate) fn next_id() -> u32 {
    IDS.try_with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_ID_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next.wrapping_add(ID_BLOCK);
        }
        ids.set((next.wrapping_add(1), end));
        next
    })
    .unwrap_or_else(|_| NEXT_ID_BLOCK.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_inline_and_heap() {
        let few = Meta::new(1, 0, 0, &[1, 2]);
        assert_eq!(few.tags(), &[1, 2]);
        assert_eq!(few.tags_heap_bytes(), 0);
        let many = Meta::new(1, 0, 0, &(0..9).collect::<Vec<_>>());
        assert_eq!(many.tags().len(), 9);
        assert!(many.tags_heap_bytes() > 0);
        assert!(Meta::new(1, 0, 0, &[]).tags().is_empty());
        // A read copies the metadata with the value: keep it small.
        assert!(
            std::mem::size_of::<Meta>() <= 64,
            "{}",
            std::mem::size_of::<Meta>()
        );
    }

    #[test]
    fn tag_ids_spill_past_the_inline_room() {
        let mut ids = TagIds::default();
        assert!(ids.as_slice().is_empty());
        for id in 0..20 {
            ids.push(id);
            assert_eq!(ids.as_slice(), (0..=id).collect::<Vec<_>>());
        }
    }

    #[test]
    fn weights() {
        assert_eq!(EntryWeighter::Count.weigh(500), 1);
        assert_eq!(EntryWeighter::Bytes { floor: 0 }.weigh(500), 500);
        assert_eq!(EntryWeighter::Bytes { floor: 1000 }.weigh(500), 1000);
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let mut all: Vec<u32> = (0..3)
            .map(|_| std::thread::spawn(|| (0..3000).map(|_| next_id()).collect::<Vec<_>>()))
            .flat_map(|h| h.join().unwrap())
            .chain((0..10).map(|_| next_id()))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
