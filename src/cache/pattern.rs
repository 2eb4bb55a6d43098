//! Glob invalidation (`invalidate_matching("product:*:details")`): a scan of the table, plus a short list of
//! recent patterns that refuses the inserts of computes that started before a matching pattern was invalidated.
//!
//! Inserts of string-like keys take a per-thread gate for reading; `invalidate_matching` takes every gate for
//! writing while it registers the pattern and scans. So an insert either lands before the scan (and the scan
//! removes it) or checks the pattern list after it was registered (and is refused if its compute is older).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::tags::Seq;
pub(crate) use crate::glob::glob_match;
use crate::thread_slot as slot;

/// Patterns remembered for computes in flight; a compute older than the oldest forgotten one is refused.
const MAX_PATTERNS: usize = 64;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Gate(RwLock<()>);

#[derive(Debug)]
pub(crate) struct Patterns {
    gates: Box<[Gate]>,
    /// The clock value of the newest pattern (0: none yet).
    latest: AtomicU64,
    /// The clock value of the newest pattern dropped from `list`.
    floor: AtomicU64,
    list: RwLock<VecDeque<(u64, Box<str>)>>,
}

impl Patterns {
    pub(crate) fn new() -> Self {
        Patterns {
            gates: (0..=slot::OWNED).map(|_| Gate::default()).collect(),
            latest: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            list: RwLock::new(VecDeque::new()),
        }
    }

    /// Held while an insert checks the patterns and writes.
    pub(crate) fn enter(&self, stripe: usize) -> Option<RwLockReadGuard<'_, ()>> {
        self.gates.get(stripe).map(|gate| gate.0.read())
    }

    /// Whether a value computed from state as of `born` for the key `text` must not be stored.
    #[inline]
    pub(crate) fn refuses(&self, born: u64, text: &str) -> bool {
        if self.latest.load(Ordering::SeqCst) <= born {
            return false;
        }
        if self.floor.load(Ordering::SeqCst) > born {
            return true;
        }
        self.list
            .read()
            .iter()
            .any(|(seq, pattern)| *seq > born && glob_match(pattern, text))
    }

    /// Registers `pattern` and returns the gates, held until the caller has scanned the table.
    pub(crate) fn register(&self, pattern: &str, seq: &Seq) -> Vec<RwLockWriteGuard<'_, ()>> {
        let gates: Vec<_> = self.gates.iter().map(|gate| gate.0.write()).collect();
        let s = seq.next();
        let mut list = self.list.write();
        list.push_back((s, pattern.into()));
        while list.len() > MAX_PATTERNS {
            if let Some((dropped, _)) = list.pop_front() {
                self.floor.fetch_max(dropped, Ordering::SeqCst);
            }
        }
        self.latest.fetch_max(s, Ordering::SeqCst);
        gates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_older_computes_of_matching_keys() {
        let seq = Seq::new();
        let patterns = Patterns::new();
        let born = seq.now();
        assert!(!patterns.refuses(born, "product:1:details"));
        drop(patterns.register("product:*", &seq));
        assert!(patterns.refuses(born, "product:1:details"));
        assert!(!patterns.refuses(born, "order:1"));
        assert!(!patterns.refuses(seq.now(), "product:1:details"));
        for i in 0..MAX_PATTERNS + 1 {
            drop(patterns.register(&format!("x{i}"), &seq));
        }
        // Forgotten patterns: anything older than them is refused.
        assert!(patterns.refuses(born, "order:1"));
        let _gate = patterns.enter(slot::current());
    }
}
