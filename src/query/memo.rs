//! [`FingerprintMemo`]: statement text → fingerprint, remembered, so a statement seen before costs one hash
//! and one map read.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::fingerprint::{DEFAULT_TAG_KEYS, Normalized, TagKeys, normalize_keeping};
use super::model::{Dialect, FingerprintId, FingerprintInfo, StatementKind};

/// Default bound on remembered statement texts (their hashes: the text itself is never kept).
pub const DEFAULT_MAX_RAW: usize = 10_000;
/// Default bound on fingerprints, as `pg_stat_statements.max`.
pub const DEFAULT_MAX_FINGERPRINTS: usize = 5_000;

const SHARDS: usize = 16;

/// Share of the fingerprint table freed at once when it is full (amortizes the search for the least used).
const EVICT_DIVISOR: usize = 20;

/// The keys are xxh3 hashes already: hashing them again would only cost time.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<K, V = Arc<Entry>> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A remembered statement text: its fingerprint, and whether the text shows all its values (no bind
/// parameter), so that its hash identifies them.
struct Raw {
    entry: Arc<Entry>,
    values_in_text: bool,
}

/// A fingerprint in the table, with what the eviction policy needs.
struct Entry {
    info: Arc<FingerprintInfo>,
    /// Executions seen (halved once per turnover of the table, so once-hot fingerprints can age out).
    uses: AtomicU64,
    /// Removed from the table: statement hashes still pointing here must look it up again.
    evicted: AtomicBool,
}

/// A bounded, thread-safe memo of fingerprints.
///
/// Two tables: statement hash (xxh3 of the raw text and the dialect) → fingerprint, bounded by `max_raw` and
/// sharded for concurrent reads; and fingerprint id → [`FingerprintInfo`], bounded by `max_fingerprints`.
/// When the fingerprint table is full, the least-used twentieth goes (counted by
/// [`evictions`](Self::evictions)); a fingerprint seen again after eviction comes back with the same id (the
/// id is the hash of its text). A full statement shard is simply emptied: refilling costs one normalization
/// per statement.
///
/// ```
/// use perfscope::query::{Dialect, FingerprintMemo};
///
/// let memo = FingerprintMemo::new(1_000, 100);
/// let a = memo.fingerprint("SELECT * FROM users WHERE id = 1", Dialect::PostgreSql);
/// let b = memo.fingerprint("select * from users where id = 2", Dialect::PostgreSql);
/// assert_eq!(a.id, b.id);
/// assert_eq!(&*a.text, "SELECT * FROM users WHERE id = $1");
/// assert_eq!(memo.get(a.id).map(|info| info.id), Some(a.id));
/// ```
pub struct FingerprintMemo {
    raw: Box<[RwLock<Map<u64, Raw>>]>,
    raw_per_shard: usize,
    table: RwLock<Map<FingerprintId>>,
    max_fingerprints: usize,
    evictions: AtomicU64,
    rounds: AtomicU64,
    /// The sqlcommenter keys whose pairs are kept in [`FingerprintInfo::tags`].
    tag_keys: Box<[Box<str>]>,
}

impl FingerprintMemo {
    /// A memo remembering at most `max_raw` statements and `max_fingerprints` fingerprints (each at least 1).
    pub fn new(max_raw: usize, max_fingerprints: usize) -> Self {
        let raw_per_shard = max_raw.div_ceil(SHARDS).max(1);
        Self {
            raw: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
            raw_per_shard,
            table: RwLock::new(Map::default()),
            max_fingerprints: max_fingerprints.max(1),
            evictions: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            tag_keys: DEFAULT_TAG_KEYS.iter().map(|&k| Box::from(k)).collect(),
        }
    }

    /// This memo keeping the sqlcommenter pairs of `keys` in [`FingerprintInfo::tags`] instead of
    /// [`DEFAULT_TAG_KEYS`](super::DEFAULT_TAG_KEYS); the pairs of other keys are dropped.
    ///
    /// ```
    /// use perfscope::query::{Dialect, FingerprintMemo};
    ///
    /// let memo = FingerprintMemo::default().with_tag_keys(["route", "tenant"]);
    /// let info = memo.fingerprint("SELECT 1 /*tenant='acme',user='alice'*/", Dialect::Generic);
    /// assert_eq!(info.tags, [("tenant".to_owned(), "acme".to_owned())]);
    /// ```
    pub fn with_tag_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.tag_keys = keys.into_iter().map(|k| Box::from(k.as_ref())).collect();
        self
    }

    /// The fingerprint of `sql` read in `dialect`: a map read when the statement was seen before, a
    /// normalization otherwise.
    pub fn fingerprint(&self, sql: &str, dialect: Dialect) -> Arc<FingerprintInfo> {
        self.fingerprint_and_values(sql, dialect).0
    }

    /// The fingerprint of `sql`, as [`fingerprint`](Self::fingerprint), and an identity of the values it ran
    /// with when its text shows them all: for a statement without bind parameters (`… WHERE id = 42`, or no
    /// value at all), a hash of its raw text, equal for byte-identical statements and different when a
    /// literal differs; `None` for a statement with bind parameters (`… WHERE id = $1`), whose values are not
    /// in the text. It costs nothing more: the hash is the memo's key.
    ///
    /// ```
    /// use perfscope::query::{Dialect, FingerprintMemo};
    ///
    /// let memo = FingerprintMemo::default();
    /// let (a, x) = memo.fingerprint_and_values("SELECT name FROM users WHERE id = 7", Dialect::PostgreSql);
    /// let (b, y) = memo.fingerprint_and_values("SELECT name FROM users WHERE id = 8", Dialect::PostgreSql);
    /// let (c, z) = memo.fingerprint_and_values("SELECT name FROM users WHERE id = $1", Dialect::PostgreSql);
    /// assert!(a.id == b.id && b.id == c.id);
    /// assert!(x.is_some() && y.is_some() && x != y);
    /// assert_eq!(z, None);
    /// ```
    pub fn fingerprint_and_values(
        &self,
        sql: &str,
        dialect: Dialect,
    ) -> (Arc<FingerprintInfo>, Option<u64>) {
        let key = raw_key(sql, dialect);
        let shard = self.shard(key);
        if let Some(raw) = shard.read().get(&key)
            && !raw.entry.evicted.load(Ordering::Relaxed)
        {
            raw.entry.uses.fetch_add(1, Ordering::Relaxed);
            let values = raw.values_in_text.then_some(key);
            return (Arc::clone(&raw.entry.info), values);
        }
        let (entry, values_in_text) = self.intern(sql, dialect);
        let info = Arc::clone(&entry.info);
        let mut shard = shard.write();
        if shard.len() >= self.raw_per_shard {
            shard.clear();
        }
        shard.insert(
            key,
            Raw {
                entry,
                values_in_text,
            },
        );
        (info, values_in_text.then_some(key))
    }

    /// The fingerprint with id `id`, while it is in the table.
    pub fn get(&self, id: FingerprintId) -> Option<Arc<FingerprintInfo>> {
        self.table
            .read()
            .get(&id)
            .map(|entry| Arc::clone(&entry.info))
    }

    /// Fingerprints in the table.
    pub fn len(&self) -> usize {
        self.table.read().len()
    }

    /// Whether the table holds no fingerprint.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fingerprints evicted from the table so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn shard(&self, key: u64) -> &RwLock<Map<u64, Raw>> {
        // The middle bits: the table's own hashing uses the low and the top ones.
        let index = usize::try_from(key >> 32).unwrap_or(0) % SHARDS;
        // PANIC: `raw` has `SHARDS` shards and `index < SHARDS`.
        &self.raw[index]
    }

    /// Normalizes `sql` and finds or adds its fingerprint; also says whether the text shows all its values
    /// (read whole, no bind parameter).
    fn intern(&self, sql: &str, dialect: Dialect) -> (Arc<Entry>, bool) {
        let normalized = normalize_or_placeholder(sql, dialect, TagKeys::Owned(&self.tag_keys));
        let values_in_text = !normalized.bound && !normalized.truncated;
        (self.intern_normalized(normalized, dialect), values_in_text)
    }

    fn intern_normalized(&self, normalized: Normalized, dialect: Dialect) -> Arc<Entry> {
        let id = normalized.id;
        if let Some(entry) = self.table.read().get(&id)
            && !entry.evicted.load(Ordering::Relaxed)
        {
            entry.uses.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(entry);
        }
        let mut table = self.table.write();
        if let Some(entry) = table.get(&id) {
            return Arc::clone(entry);
        }
        if table.len() >= self.max_fingerprints {
            self.evict_least_used(&mut table);
        }
        let entry = Arc::new(Entry {
            info: Arc::new(FingerprintInfo {
                id,
                text: Arc::from(normalized.text),
                kind: normalized.kind,
                dialect,
                tags: normalized.tags,
                enrichment: OnceLock::new(),
                exempt: OnceLock::new(),
            }),
            uses: AtomicU64::new(1),
            evicted: AtomicBool::new(false),
        });
        table.insert(id, Arc::clone(&entry));
        entry
    }

    /// Removes the least-used twentieth of the table (at least one); once per turnover of the table (twenty
    /// rounds), halves the others' counts.
    fn evict_least_used(&self, table: &mut Map<FingerprintId>) {
        let mut uses: Vec<(u64, FingerprintId)> = table
            .iter()
            .map(|(id, entry)| (entry.uses.load(Ordering::Relaxed), *id))
            .collect();
        let count = (table.len() / EVICT_DIVISOR).clamp(1, uses.len().max(1));
        if count < uses.len() {
            uses.select_nth_unstable(count);
        }
        for (_, id) in uses.iter().take(count) {
            if let Some(entry) = table.remove(id) {
                entry.evicted.store(true, Ordering::Relaxed);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let round = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        if round.is_multiple_of(EVICT_DIVISOR as u64) {
            for entry in table.values() {
                let used = entry.uses.load(Ordering::Relaxed);
                entry.uses.store(used / 2, Ordering::Relaxed);
            }
        }
    }
}

impl Default for FingerprintMemo {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RAW, DEFAULT_MAX_FINGERPRINTS)
    }
}

impl fmt::Debug for FingerprintMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FingerprintMemo")
            .field("fingerprints", &self.len())
            .field("max_fingerprints", &self.max_fingerprints)
            .field("evictions", &self.evictions())
            .finish_non_exhaustive()
    }
}

/// Normalized text given to statements the normalizer failed on (it never has, across fuzzing; this is the
/// net under the request path, where the normalizer runs).
pub(crate) const UNNORMALIZABLE: &str = "/* statement perfscope could not normalize */";

/// [`normalize`], with any panic caught: the statement then gets the [`UNNORMALIZABLE`] fingerprint, and the
/// query that ran it goes on (its request is not marked as panicked).
fn normalize_or_placeholder(sql: &str, dialect: Dialect, keys: TagKeys<'_>) -> Normalized {
    crate::panic_hook::caught(|| {
        std::panic::catch_unwind(|| normalize_keeping(sql, dialect, keys)).unwrap_or_else(|_| {
            Normalized {
                text: UNNORMALIZABLE.to_owned(),
                id: FingerprintId(xxhash_rust::xxh3::xxh3_64(UNNORMALIZABLE.as_bytes())),
                kind: StatementKind::Other,
                tags: Vec::new(),
                truncated: false,
                // Nothing is known of its values.
                bound: true,
            }
        })
    })
}
/// The statement key: the dialect seeds the hash, since the same text reads differently in each.
fn raw_key(sql: &str, dialect: Dialect) -> u64 {
    let seed = match dialect {
        Dialect::Generic => 0x9e37_79b9_7f4a_7c15,
        Dialect::PostgreSql => 0xbf58_476d_1ce4_e5b9,
        Dialect::MySql => 0x94d0_49bb_1331_11eb,
        Dialect::Sqlite => 0x2545_f491_4f6c_dd1d,
        Dialect::TSql => 0x5851_f42d_4c95_7f2d,
    };
    xxh3_64_with_seed(sql.as_bytes(), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_shape_same_info() {
        let memo = FingerprintMemo::default();
        let a = memo.fingerprint("SELECT * FROM t WHERE id = 1", Dialect::Generic);
        let b = memo.fingerprint("SELECT * FROM t WHERE id = 2", Dialect::Generic);
        let c = memo.fingerprint("SELECT * FROM t WHERE id = 1", Dialect::Generic);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a, &c));
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn dialect_is_part_of_the_key() {
        let memo = FingerprintMemo::default();
        let my = memo.fingerprint("SELECT \"a\" FROM t", Dialect::MySql);
        let pg = memo.fingerprint("SELECT \"a\" FROM t", Dialect::PostgreSql);
        assert_eq!(&*my.text, "SELECT ? FROM t");
        assert_eq!(&*pg.text, "SELECT a FROM t");
    }

    #[test]
    fn table_stays_bounded_and_keeps_hot_fingerprints() {
        let memo = FingerprintMemo::new(100, 50);
        let hot = memo.fingerprint("SELECT * FROM hot WHERE id = 1", Dialect::Generic);
        for _ in 0..100 {
            memo.fingerprint("SELECT * FROM hot WHERE id = 1", Dialect::Generic);
        }
        for i in 0..500 {
            let column = (0..4)
                .map(|k| char::from(b'a' + ((i >> (k * 3)) % 8) as u8))
                .collect::<String>();
            memo.fingerprint(&format!("SELECT {column} FROM cold"), Dialect::Generic);
            if i % 10 == 0 {
                memo.fingerprint("SELECT * FROM hot WHERE id = 3", Dialect::Generic);
            }
            assert!(memo.len() <= 50);
        }
        assert!(memo.evictions() > 0);
        assert!(memo.get(hot.id).is_some());
    }

    #[test]
    fn evicted_fingerprints_come_back_with_the_same_id() {
        let memo = FingerprintMemo::new(100, 1);
        let a = memo.fingerprint("SELECT a FROM t", Dialect::Generic);
        memo.fingerprint("SELECT b FROM t", Dialect::Generic);
        assert!(memo.get(a.id).is_none());
        let again = memo.fingerprint("SELECT a FROM t", Dialect::Generic);
        assert_eq!(again.id, a.id);
        assert!(memo.get(a.id).is_some());
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FingerprintMemo>();
    }
}
