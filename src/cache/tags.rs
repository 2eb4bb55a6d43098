//! Tag version counters: O(1) invalidation of every entry that carries a tag, checked on read.
//!
//! # Protocol
//! One logical clock per cache, [`Seq`], counts invalidations. An entry records `born`, the clock's value
//! *before* its value was computed, and the ids of its tags. Invalidating a tag takes a new clock value `s`
//! and raises the tag's counter to `s`. An entry is live while every one of its tags' counters is `<= born`:
//! a compute that started before the invalidation has `born < s`, so once the invalidation has returned no
//! read accepts it, wherever it is (in the table, in flight, or about to be inserted). `clear()` is the same
//! check against one cache-wide counter.
//!
//! # Bounds
//! Tag names are interned to ids in a table of at most `max_tags` slots. Past the cap, a name hashes into one
//! of [`OVERFLOW_BUCKETS`] shared counters: invalidating it also invalidates its bucket-mates (more misses,
//! never a stale read). The sweeper frees the slots of tags no live entry carries; a freed slot's history is
//! folded into `floor`, the counter every newly interned tag starts from, so a compute that started before an
//! invalidation of a tag that was then freed still reads as stale.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::RwLock;
use quick_cache::DefaultHashBuilder;

/// Shared counters for the tags past `max_tags`.
pub(crate) const OVERFLOW_BUCKETS: usize = 1024;

/// The id of a tag: an index into the counters.
pub(crate) type TagId = u32;

/// The cache's invalidation clock.
#[derive(Debug)]
pub(crate) struct Seq(AtomicU64);

impl Seq {
    pub(crate) fn new() -> Self {
        Seq(AtomicU64::new(1))
    }

    /// The current value: read before a compute starts, it is the compute's `born`.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// A new value, greater than every `born` read before this call.
    pub(crate) fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// User tags and implicit key-prefix tags live in separate name spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TagKind {
    /// A tag the application attached.
    User,
    /// The implicit tag of a key prefix (`product:42` for `product:42:details`).
    Prefix,
}

#[derive(Debug, Default)]
struct Slot {
    name: Option<(Arc<str>, TagKind)>,
    /// Value of `Index::interned` when the name was interned here; the sweeper leaves younger slots alone.
    interned_at: u64,
    /// The sweep round in which an insert last used the name: a sweep does not free a name an insert used
    /// while it ran (the entry may have landed in a part of the table already scanned).
    used_in_round: AtomicU32,
}

/// Interned names (hashed with foldhash, seeded per map).
type NameMap = HashMap<Arc<str>, TagId, DefaultHashBuilder>;

#[derive(Debug, Default)]
struct Index {
    user: NameMap,
    prefix: NameMap,
    slots: Vec<Slot>,
    free: Vec<TagId>,
    /// Count of intern operations so far.
    interned: u64,
}

impl Index {
    fn map(&self, kind: TagKind) -> &NameMap {
        match kind {
            TagKind::User => &self.user,
            TagKind::Prefix => &self.prefix,
        }
    }

    fn map_mut(&mut self, kind: TagKind) -> &mut NameMap {
        match kind {
            TagKind::User => &mut self.user,
            TagKind::Prefix => &mut self.prefix,
        }
    }
}

/// Source of [`TagTable::uid`].
static NEXT_TABLE: AtomicU64 = AtomicU64::new(1);

/// Names remembered per thread.
const MEMO_SLOTS: usize = 8;

/// A name a thread interned, remembered (direct-mapped by hash) with the sweep round it was interned in.
///
/// A memo is trusted only while the table's round is the one it was taken in. Ids are freed only by
/// [`TagTable::reclaim`], after [`TagTable::scan_marker`] started a new round, and the slot was marked used in the
/// memo's round (by the interning that made the memo), so the sweep of that round keeps it. A thread that read
/// the old round just before a new one started read its compute's `born` earlier still, so an id freed by that
/// sweep (whose counter is raised to a later clock value) makes the thread's entry unreadable: a miss, never a
/// wrong tag.
#[derive(Debug)]
struct Memo {
    table: u64,
    round: u32,
    kind: TagKind,
    name: Arc<str>,
    id: TagId,
}

thread_local! {
    static MEMO: RefCell<[Option<Memo>; MEMO_SLOTS]> = const { RefCell::new([const { None }; MEMO_SLOTS]) };
}

/// Counters of what the tag table did, for the statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TagTableStats {
    pub(crate) interned: u64,
    pub(crate) max_tags: u64,
    pub(crate) overflowed: u64,
    pub(crate) reclaimed: u64,
}

/// The tag table of one cache.
#[derive(Debug)]
pub(crate) struct TagTable {
    /// `max_tags` slots, then `OVERFLOW_BUCKETS` shared counters. Counters only grow.
    seqs: Box<[AtomicU64]>,
    max_tags: u32,
    index: RwLock<Index>,
    /// The counter every newly interned tag starts from (see the module docs).
    floor: AtomicU64,
    hasher: DefaultHashBuilder,
    overflowed: AtomicU64,
    reclaimed: AtomicU64,
    /// Sweeps started so far.
    round: AtomicU32,
    /// Identifies this table in the threads' memos (unique in the process, unlike an address).
    uid: u64,
}

impl TagTable {
    pub(crate) fn new(max_tags: u32) -> Self {
        TagTable {
            seqs: (0..max_tags as usize + OVERFLOW_BUCKETS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max_tags,
            index: RwLock::new(Index::default()),
            floor: AtomicU64::new(0),
            hasher: DefaultHashBuilder::default(),
            overflowed: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            round: AtomicU32::new(0),
            uid: NEXT_TABLE.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn bucket(&self, kind: TagKind, name: &str) -> TagId {
        let hash = self.hasher.hash_one((kind, name));
        // PANIC-free: OVERFLOW_BUCKETS fits in u32 and max_tags + bucket < seqs.len().
        self.max_tags + (hash % OVERFLOW_BUCKETS as u64) as TagId
    }

    /// The id of `name`, interning it if needed.
    ///
    /// Each thread remembers its last few names per table (see [`Memo`]), so an insert with the usual tags
    /// takes no lock and touches no line another thread writes.
    #[inline]
    pub(crate) fn intern(&self, kind: TagKind, name: &str) -> TagId {
        let hash = self.hasher.hash_one((kind, name));
        let round = self.round.load(Ordering::SeqCst);
        let at = (hash as usize) % MEMO_SLOTS;
        let remembered = MEMO
            .try_with(|memo| {
                memo.borrow().get(at).and_then(|m| {
                    m.as_ref().and_then(|m| {
                        (m.table == self.uid
                            && m.round == round
                            && m.kind == kind
                            && *m.name == *name)
                            .then_some(m.id)
                    })
                })
            })
            .ok()
            .flatten();
        if let Some(id) = remembered {
            return id;
        }
        let (id, interned) = self.intern_locked(kind, name);
        if let Some(name) = interned {
            let _ = MEMO.try_with(|memo| {
                if let Some(slot) = memo.borrow_mut().get_mut(at) {
                    *slot = Some(Memo {
                        table: self.uid,
                        round,
                        kind,
                        name,
                        id,
                    });
                }
            });
        }
        id
    }

    /// [`intern`](TagTable::intern) through the index; returns the id and, when it is a slot of its own (not an
    /// overflow bucket), the interned name.
    fn intern_locked(&self, kind: TagKind, name: &str) -> (TagId, Option<Arc<str>>) {
        {
            let index = self.index.read();
            if let Some((interned, &id)) = index.map(kind).get_key_value(name) {
                if let Some(slot) = index.slots.get(id as usize) {
                    let round = self.round.load(Ordering::SeqCst);
                    if slot.used_in_round.load(Ordering::Relaxed) != round {
                        slot.used_in_round.store(round, Ordering::Relaxed);
                    }
                }
                return (id, Some(interned.clone()));
            }
        }
        let mut index = self.index.write();
        if let Some((interned, &id)) = index.map(kind).get_key_value(name) {
            return (id, Some(interned.clone()));
        }
        let id = match index.free.pop() {
            Some(id) => id,
            None if index.slots.len() < self.max_tags as usize => {
                index.slots.push(Slot::default());
                (index.slots.len() - 1) as TagId
            }
            None => {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
                return (self.bucket(kind, name), None);
            }
        };
        // Inherit the history of freed tags and of invalidations of names that were not interned.
        if let Some(seq) = self.seqs.get(id as usize) {
            seq.fetch_max(self.floor.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        let name: Arc<str> = Arc::from(name);
        index.interned += 1;
        let interned_at = index.interned;
        if let Some(slot) = index.slots.get_mut(id as usize) {
            *slot = Slot {
                name: Some((name.clone(), kind)),
                interned_at,
                used_in_round: AtomicU32::new(self.round.load(Ordering::SeqCst)),
            };
        }
        index.map_mut(kind).insert(name.clone(), id);
        (id, Some(name))
    }

    /// Invalidates `name`: every entry carrying it whose compute started before this call is dead when it
    /// returns.
    pub(crate) fn invalidate(&self, kind: TagKind, name: &str, seq: &Seq) {
        let index = self.index.read();
        let s = seq.next();
        match index.map(kind).get(name) {
            Some(&id) => {
                if let Some(counter) = self.seqs.get(id as usize) {
                    counter.fetch_max(s, Ordering::SeqCst);
                }
            }
            // Not interned: a compute in flight may intern it later; it will start from `floor`.
            None => {
                self.floor.fetch_max(s, Ordering::SeqCst);
            }
        }
        // Entries that overflowed carry the bucket of the name.
        if let Some(counter) = self.seqs.get(self.bucket(kind, name) as usize) {
            counter.fetch_max(s, Ordering::SeqCst);
        }
    }

    /// Whether every tag in `ids` is unchanged since `born`.
    #[inline]
    pub(crate) fn all_live(&self, ids: &[TagId], born: u64) -> bool {
        ids.iter().all(|&id| {
            self.seqs
                .get(id as usize)
                .is_some_and(|counter| counter.load(Ordering::SeqCst) <= born)
        })
    }

    /// The number of interned slots (the size of a liveness bitmap).
    pub(crate) fn slots(&self) -> usize {
        self.index.read().slots.len()
    }

    /// Starts a sweep: the marker that [`TagTable::reclaim`] compares slot ages against.
    pub(crate) fn scan_marker(&self) -> u64 {
        let index = self.index.write();
        // SeqCst: a thread that still trusts its memo of the previous round read its compute's `born` before
        // this, hence before the clock value `reclaim` kills freed ids with (see `Memo`).
        self.round.fetch_add(1, Ordering::SeqCst);
        index.interned
    }

    /// Frees every slot interned before `marker` that no live entry carries (`live` is a bitmap by id), so the
    /// table shrinks with the entries. Returns how many were freed.
    pub(crate) fn reclaim(&self, live: &[u64], marker: u64, seq: &Seq) -> usize {
        let mut index = self.index.write();
        let round = self.round.load(Ordering::SeqCst);
        let mut freed = Vec::new();
        for (id, slot) in index.slots.iter().enumerate() {
            let marked = live.get(id / 64).is_some_and(|w| w & (1 << (id % 64)) != 0);
            let used_now = slot.used_in_round.load(Ordering::Relaxed) == round;
            if slot.name.is_some() && slot.interned_at <= marker && !marked && !used_now {
                freed.push(id as TagId);
            }
        }
        if freed.is_empty() {
            return 0;
        }
        let s = seq.next();
        for &id in &freed {
            if let Some(counter) = self.seqs.get(id as usize) {
                // Keep the tag's history for a compute in flight that will intern it again...
                self.floor
                    .fetch_max(counter.load(Ordering::SeqCst), Ordering::SeqCst);
                // ...and kill any straggler entry still holding the old id.
                counter.fetch_max(s, Ordering::SeqCst);
            }
            let name = index
                .slots
                .get_mut(id as usize)
                .and_then(|slot| slot.name.take());
            if let Some((name, kind)) = name {
                index.map_mut(kind).remove(&name);
            }
            index.free.push(id);
        }
        for kind in [TagKind::User, TagKind::Prefix] {
            let map = index.map_mut(kind);
            if map.capacity() > 64 && map.len() * 4 < map.capacity() {
                map.shrink_to_fit();
            }
        }
        if index.free.len() == index.slots.len() {
            // Nothing interned: give the slot bookkeeping back too (ids restart from 0, whose counters only
            // grow, so old ids stay dead).
            index.slots = Vec::new();
            index.free = Vec::new();
        }
        self.reclaimed
            .fetch_add(freed.len() as u64, Ordering::Relaxed);
        freed.len()
    }

    pub(crate) fn stats(&self) -> TagTableStats {
        let index = self.index.read();
        TagTableStats {
            interned: (index.user.len() + index.prefix.len()) as u64,
            max_tags: u64::from(self.max_tags),
            overflowed: self.overflowed.load(Ordering::Relaxed),
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
        }
    }

    /// Whether `id` is one of the shared overflow buckets.
    #[cfg(test)]
    pub(crate) fn is_bucket(&self, id: TagId) -> bool {
        id >= self.max_tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invalidation_kills_older_computes_only() {
        let seq = Seq::new();
        let table = TagTable::new(8);
        let born_before = seq.now();
        let id = table.intern(TagKind::User, "products");
        assert_eq!(table.intern(TagKind::User, "products"), id);
        assert_ne!(table.intern(TagKind::Prefix, "products"), id);
        assert!(table.all_live(&[id], born_before));
        table.invalidate(TagKind::User, "products", &seq);
        assert!(!table.all_live(&[id], born_before));
        assert!(table.all_live(&[id], seq.now()));
    }

    #[test]
    fn invalidating_a_name_not_yet_interned_kills_computes_in_flight() {
        let seq = Seq::new();
        let table = TagTable::new(8);
        let born = seq.now();
        table.invalidate(TagKind::User, "late", &seq);
        // The loader returns and only now names its tag.
        let id = table.intern(TagKind::User, "late");
        assert!(!table.all_live(&[id], born));
        assert!(table.all_live(&[id], seq.now()));
    }

    #[test]
    fn overflow_shares_buckets_and_stays_correct() {
        let seq = Seq::new();
        let table = TagTable::new(2);
        let a = table.intern(TagKind::User, "a");
        let b = table.intern(TagKind::User, "b");
        let born = seq.now();
        let c = table.intern(TagKind::User, "c");
        assert!(table.is_bucket(c) && !table.is_bucket(a) && !table.is_bucket(b));
        assert_eq!(table.stats().overflowed, 1);
        table.invalidate(TagKind::User, "c", &seq);
        assert!(!table.all_live(&[c], born));
        assert!(table.all_live(&[a, b], born));
    }

    #[test]
    fn reclaim_frees_unused_slots_and_keeps_their_history() {
        let seq = Seq::new();
        let table = TagTable::new(4);
        let old = table.intern(TagKind::User, "old");
        let kept = table.intern(TagKind::User, "kept");
        let born = seq.now();
        table.invalidate(TagKind::User, "old", &seq);
        let marker = table.scan_marker();
        let mut live = vec![0_u64; 1];
        live[0] |= 1 << kept;
        assert_eq!(table.reclaim(&live, marker, &seq), 1);
        assert_eq!(table.stats().interned, 1);
        // A straggler holding the old id is dead; a compute that started before the invalidation and interns
        // the name again is dead too.
        assert!(!table.all_live(&[old], seq.now() - 1));
        let again = table.intern(TagKind::User, "old");
        assert!(!table.all_live(&[again], born));
        assert!(table.all_live(&[again], seq.now()));
        assert!(table.all_live(&[kept], born));
    }

    #[test]
    fn a_name_used_during_a_sweep_is_kept() {
        let seq = Seq::new();
        let table = TagTable::new(4);
        table.intern(TagKind::User, "a");
        table.intern(TagKind::User, "b");
        let marker = table.scan_marker();
        // An insert during the sweep uses "a"; its entry may sit in a part of the table already scanned.
        table.intern(TagKind::User, "a");
        assert_eq!(table.reclaim(&[], marker, &seq), 1);
        assert_eq!(table.stats().interned, 1);
        // The next sweep frees it if nothing uses it any more.
        let marker = table.scan_marker();
        assert_eq!(table.reclaim(&[], marker, &seq), 1);
    }

    #[test]
    fn a_memo_is_not_trusted_after_its_id_was_freed_and_reused() {
        let seq = Seq::new();
        let table = TagTable::new(1);
        let a = table.intern(TagKind::User, "a");
        // Remembered: the same id without the index.
        assert_eq!(table.intern(TagKind::User, "a"), a);
        let marker = table.scan_marker();
        assert_eq!(table.reclaim(&[], marker, &seq), 1);
        // The only slot now holds "b"; "a" must not come back with b's id from this thread's memo.
        let b = table.intern(TagKind::User, "b");
        assert_eq!(b, a);
        let again = table.intern(TagKind::User, "a");
        assert_ne!(again, b);
        assert!(table.is_bucket(again));
        // Another table's names are its own.
        let other = TagTable::new(4);
        other.intern(TagKind::User, "x");
        assert_eq!(other.intern(TagKind::User, "b"), 1);
        assert_eq!(table.intern(TagKind::User, "b"), b);
    }

    #[test]
    fn reclaiming_everything_returns_the_bookkeeping() {
        let seq = Seq::new();
        let table = TagTable::new(1000);
        for i in 0..500 {
            table.intern(TagKind::User, &format!("t{i}"));
        }
        let marker = table.scan_marker();
        assert_eq!(table.reclaim(&[], marker, &seq), 500);
        assert_eq!(table.stats().interned, 0);
        assert_eq!(table.slots(), 0);
    }

    proptest! {
        /// The table never holds more than `max_tags` names, whatever is interned and reclaimed, and an
        /// invalidation always kills what was born before it.
        #[test]
        fn bounded_and_never_stale(ops in proptest::collection::vec((0_u8..3, 0_u16..64), 1..300), max in 1_u32..16) {
            let seq = Seq::new();
            let table = TagTable::new(max);
            let mut held: Vec<(String, TagId, u64)> = Vec::new();
            for (op, n) in ops {
                let name = format!("t{n}");
                match op {
                    0 => {
                        let born = seq.now();
                        let id = table.intern(TagKind::User, &name);
                        held.push((name, id, born));
                    }
                    1 => {
                        table.invalidate(TagKind::User, &name, &seq);
                        for (held_name, id, born) in &held {
                            if *held_name == name {
                                prop_assert!(!table.all_live(&[*id], *born));
                            }
                        }
                    }
                    _ => {
                        let marker = table.scan_marker();
                        let mut live = vec![0_u64; table.slots().div_ceil(64)];
                        for (_, id, _) in held.iter().filter(|(_, id, _)| !table.is_bucket(*id)) {
                            live[*id as usize / 64] |= 1 << (id % 64);
                        }
                        table.reclaim(&live, marker, &seq);
                    }
                }
                prop_assert!(table.stats().interned <= u64::from(max));
                prop_assert!(table.slots() <= max as usize);
            }
        }
    }
}
