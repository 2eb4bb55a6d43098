//! A `shuttle` model of the cache's invalidation protocol, exploring thread interleavings.
//!
//! The model mirrors `src/cache`: one table slot per key that is empty, a loader's placeholder, or a stored
//! value with the invalidation clock read before it was computed (`born`) and a unique id; one counter per tag
//! and one for `clear`, raised to a fresh clock value by each invalidation; reads accept a value only while its
//! tag and clear counters are `<= born`. A loader inserts only over its own placeholder; a background refresh
//! installs only over the exact value it refreshed; `invalidate(key)` empties the slot, placeholder included.
//!
//! Each run races a loader and a refresh against a writer that bumps the database and invalidates, then reads:
//! no read after the invalidation may see a value older than the bump. A deliberately broken variant (the clock
//! read after the compute, as in Symfony's tag-aware adapter) must be caught.
//!
//! `insert_since` (an application's own read-then-store with a ticket) is modelled too: `invalidate(key)` raises
//! the key's stamp to a fresh clock value before it empties the slot; `insert_since` puts a placeholder in the
//! slot (taking it from a loader if needed), then checks the stamp against its ticket, then publishes into its
//! placeholder. Two broken variants must be caught: a plain insert (the clock read at insert time, which is what
//! the response cache did), and the stamp checked only before the placeholder.
#![allow(clippy::unwrap_used)]

use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::sync::{Arc, Mutex};
use shuttle::thread;

#[derive(Debug, Clone, Copy)]
enum Slot {
    Empty,
    Placeholder(u64),
    Stored { value: u64, born: u64, id: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Invalidation {
    Tag,
    Key,
    Clear,
}

struct Model {
    seq: AtomicU64,
    tag: AtomicU64,
    cleared: AtomicU64,
    db: AtomicU64,
    /// The clock value of the last `invalidate(key)`.
    key_stamp: AtomicU64,
    next_id: AtomicU64,
    slot: Mutex<Slot>,
    /// The broken variant reads the clock after computing.
    born_after_compute: bool,
}

enum Lookup {
    Value(u64),
    Guard(u64),
}

impl Model {
    fn new(born_after_compute: bool) -> Self {
        Model {
            seq: AtomicU64::new(1),
            tag: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            db: AtomicU64::new(0),
            key_stamp: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            // A value of version 0, computed at clock 1: stale, so a refresh of it may run.
            slot: Mutex::new(Slot::Stored {
                value: 0,
                born: 1,
                id: 0,
            }),
            born_after_compute,
        }
    }

    fn live(&self, born: u64) -> bool {
        self.tag.load(Ordering::SeqCst) <= born && self.cleared.load(Ordering::SeqCst) <= born
    }

    /// `entry_async` with the cache's callback: a live value, or a guard (replacing a dead value); waits
    /// (yields) while another loader holds the placeholder.
    fn lookup(&self) -> Option<Lookup> {
        for _ in 0..50 {
            let mut slot = self.slot.lock().unwrap();
            match *slot {
                Slot::Stored { value, born, .. } if self.live(born) => {
                    return Some(Lookup::Value(value));
                }
                Slot::Placeholder(_) => {}
                Slot::Stored { .. } | Slot::Empty => {
                    let token = self.next_id.fetch_add(1, Ordering::SeqCst);
                    *slot = Slot::Placeholder(token);
                    return Some(Lookup::Guard(token));
                }
            }
            drop(slot);
            thread::yield_now();
        }
        None
    }

    /// A slow compute from the database.
    fn compute(&self) -> (u64, u64) {
        let mut born = self.seq.load(Ordering::SeqCst);
        let value = self.db.load(Ordering::SeqCst);
        thread::yield_now();
        if self.born_after_compute {
            born = self.seq.load(Ordering::SeqCst);
        }
        (value, born)
    }

    /// `get_or_compute`.
    fn get_or_compute(&self) -> Option<u64> {
        match self.lookup()? {
            Lookup::Value(value) => Some(value),
            Lookup::Guard(token) => {
                let (value, born) = self.compute();
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                let mut slot = self.slot.lock().unwrap();
                if matches!(*slot, Slot::Placeholder(t) if t == token) {
                    // admit(): a value already dead is not stored (the guard is dropped).
                    *slot = if self.live(born) {
                        Slot::Stored { value, born, id }
                    } else {
                        Slot::Empty
                    };
                }
                // The loader's own caller gets its value either way.
                Some(value)
            }
        }
    }

    /// A background refresh of the stored value with id `refreshed`.
    fn refresh(&self, refreshed: u64) {
        let (value, born) = self.compute();
        if !self.live(born) {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut slot = self.slot.lock().unwrap();
        if matches!(*slot, Slot::Stored { id: current, .. } if current == refreshed) {
            *slot = Slot::Stored { value, born, id };
        }
    }

    /// `get`: a live stored value.
    fn get(&self) -> Option<u64> {
        match *self.slot.lock().unwrap() {
            Slot::Stored { value, born, .. } if self.live(born) => Some(value),
            _ => None,
        }
    }

    fn invalidate(&self, how: Invalidation) {
        match how {
            Invalidation::Tag => {
                let s = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                self.tag.fetch_max(s, Ordering::SeqCst);
            }
            Invalidation::Clear => {
                let s = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                self.cleared.fetch_max(s, Ordering::SeqCst);
            }
            Invalidation::Key => {
                let s = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                self.key_stamp.fetch_max(s, Ordering::SeqCst);
                *self.slot.lock().unwrap() = Slot::Empty;
            }
        }
    }

    /// `insert_since(ticket, value)`, or one of its broken variants.
    fn insert_since(&self, ticket: u64, value: u64, variant: ByHand) {
        let born = match variant {
            ByHand::PlainInsert => self.seq.load(Ordering::SeqCst),
            ByHand::InsertSince | ByHand::StampBeforePlaceholderOnly => ticket,
        };
        if variant != ByHand::PlainInsert && self.key_stamp.load(Ordering::SeqCst) > born {
            return;
        }
        let token = self.next_id.fetch_add(1, Ordering::SeqCst);
        // The table's `entry` with `ReplaceWithGuard`, taking a loader's placeholder if there is one.
        *self.slot.lock().unwrap() = Slot::Placeholder(token);
        thread::yield_now();
        let refused = match variant {
            ByHand::InsertSince => self.key_stamp.load(Ordering::SeqCst) > born,
            ByHand::PlainInsert | ByHand::StampBeforePlaceholderOnly => false,
        } || !self.live(born);
        let mut slot = self.slot.lock().unwrap();
        if matches!(*slot, Slot::Placeholder(t) if t == token) {
            *slot = if refused {
                Slot::Empty
            } else {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                Slot::Stored { value, born, id }
            };
        }
    }
}

/// How the by-hand reader stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByHand {
    InsertSince,
    PlainInsert,
    StampBeforePlaceholderOnly,
}

/// An application's own read-then-store racing a loader and a writer that bumps the database and invalidates.
fn scenario_by_hand(how: Invalidation, variant: ByHand) {
    let model = Arc::new(Model::new(false));
    let reader = {
        let model = model.clone();
        thread::spawn(move || {
            let ticket = model.seq.load(Ordering::SeqCst);
            let value = model.db.load(Ordering::SeqCst);
            thread::yield_now();
            model.insert_since(ticket, value, variant);
        })
    };
    let loader = {
        let model = model.clone();
        thread::spawn(move || {
            model.get_or_compute();
        })
    };
    let writer = {
        let model = model.clone();
        thread::spawn(move || {
            let version = model.db.fetch_add(1, Ordering::SeqCst) + 1;
            model.invalidate(how);
            if let Some(value) = model.get() {
                assert!(
                    value >= version,
                    "get read {value} after invalidating version {version}"
                );
            }
            if let Some(value) = model.get_or_compute() {
                assert!(
                    value >= version,
                    "get_or_compute read {value} after invalidating version {version}"
                );
            }
        })
    };
    reader.join().unwrap();
    loader.join().unwrap();
    writer.join().unwrap();
    if let Some(value) = model.get() {
        assert!(value >= 1, "stored {value} survived the invalidation");
    }
}

fn scenario(how: Invalidation, born_after_compute: bool) {
    let model = Arc::new(Model::new(born_after_compute));
    let loader = {
        let model = model.clone();
        thread::spawn(move || {
            model.invalidate(Invalidation::Key); // make the key cold, so this caller loads
            model.get_or_compute();
        })
    };
    let refresher = {
        let model = model.clone();
        thread::spawn(move || model.refresh(0))
    };
    let writer = {
        let model = model.clone();
        thread::spawn(move || {
            let version = model.db.fetch_add(1, Ordering::SeqCst) + 1;
            model.invalidate(how);
            // The invalidation has returned.
            if let Some(value) = model.get() {
                assert!(
                    value >= version,
                    "get read {value} after invalidating version {version}"
                );
            }
            if let Some(value) = model.get_or_compute() {
                assert!(
                    value >= version,
                    "get_or_compute read {value} after invalidating version {version}"
                );
            }
        })
    };
    loader.join().unwrap();
    refresher.join().unwrap();
    writer.join().unwrap();
    // Once everything settled, what is stored is as new as the database was at the invalidation.
    if let Some(value) = model.get() {
        assert!(value >= 1, "stored {value} survived the invalidation");
    }
}

#[test]
fn tag_invalidation_is_never_stale() {
    shuttle::check_random(|| scenario(Invalidation::Tag, false), 10_000);
}

#[test]
fn key_invalidation_is_never_stale() {
    shuttle::check_random(|| scenario(Invalidation::Key, false), 10_000);
}

#[test]
fn clear_is_never_stale() {
    shuttle::check_random(|| scenario(Invalidation::Clear, false), 10_000);
}

#[test]
fn the_model_catches_a_version_read_after_the_compute() {
    let caught = std::panic::catch_unwind(|| {
        shuttle::check_random(|| scenario(Invalidation::Tag, true), 10_000);
    });
    assert!(
        caught.is_err(),
        "shuttle should find the stale read of the broken protocol"
    );
}

#[test]
fn insert_since_racing_tag_invalidation_is_never_stale() {
    shuttle::check_random(
        || scenario_by_hand(Invalidation::Tag, ByHand::InsertSince),
        10_000,
    );
}

#[test]
fn insert_since_racing_key_invalidation_is_never_stale() {
    shuttle::check_random(
        || scenario_by_hand(Invalidation::Key, ByHand::InsertSince),
        10_000,
    );
}

#[test]
fn insert_since_racing_clear_is_never_stale() {
    shuttle::check_random(
        || scenario_by_hand(Invalidation::Clear, ByHand::InsertSince),
        10_000,
    );
}

#[test]
fn the_model_catches_a_plain_insert_after_a_read() {
    let caught = std::panic::catch_unwind(|| {
        shuttle::check_random(
            || scenario_by_hand(Invalidation::Tag, ByHand::PlainInsert),
            10_000,
        );
    });
    assert!(
        caught.is_err(),
        "shuttle should find the stale read of a plain insert"
    );
}

#[test]
fn the_model_catches_a_key_stamp_checked_before_the_placeholder_only() {
    let caught = std::panic::catch_unwind(|| {
        shuttle::check_random(
            || scenario_by_hand(Invalidation::Key, ByHand::StampBeforePlaceholderOnly),
            10_000,
        );
    });
    assert!(
        caught.is_err(),
        "shuttle should find the stale read of a stamp checked too early"
    );
}
