//! A cache's side of the second level: its key names, the L2 lookup on an L1 miss, the background write of a
//! loaded value, the invalidations it sends, and those it applies from other nodes.

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::backend::{InvalidateOp, ReadKeys, ReadReply, WriteOp};
use super::bus::MessageKind;
use super::codec::Codec;
use super::envelope::{self, DecodeError, TagKindByte};
use super::level::{BusTarget, SecondLevel, unix_micros};
use crate::cache::key::{key_from_text, key_from_wire, prefix_tag, strip_wildcard, text_prefixes};
use crate::cache::stats::SecondLevelStats;
use crate::cache::store::Inner;
use crate::cache::tags::TagKind;

/// A cache's attachment to a [`SecondLevel`].
pub(crate) struct CacheL2<V> {
    pub(crate) level: SecondLevel,
    /// `{prefix}{cache}:`.
    ns: String,
    /// `{prefix}{cache}:clear`: the version of the cache's last `clear`.
    clear_key: String,
    name: Arc<str>,
    /// `None`: invalidations only (values stay in L1).
    codec: Option<Arc<dyn Codec<V>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    corrupt: AtomicU64,
}

/// A value found in L2, ready for L1.
pub(crate) struct Found<V> {
    pub(crate) value: V,
    pub(crate) tags: Vec<String>,
    /// Fresh for this long from now.
    pub(crate) fresh_for: Duration,
    /// Then stale for this long.
    pub(crate) stale_for: Duration,
}

/// What one lookup read besides the entry.
enum Read {
    /// The entry with its key's version, the cache's `clear` version and the generation.
    Full(ReadReply),
    /// The entry alone; the `clear` version is the one the bus vouches for.
    Trusted { clear_version: u64 },
}

/// What an L2 lookup gave.
pub(crate) enum Lookup<V> {
    Hit(Found<V>),
    /// Not usable; the generation read (the `born` of a value computed now), if the store answered.
    Miss(Option<u64>),
}

/// The part of a version's store key that says whose version it is: a tag's (`t:`) or a key prefix's (`p:`).
fn version_kind(kind: TagKindByte) -> &'static str {
    match kind {
        TagKindByte::User => "t:",
        TagKindByte::Prefix => "p:",
    }
}

fn unix_millis() -> u64 {
    unix_micros() / 1000
}

impl<V: Send + Sync + 'static> CacheL2<V> {
    pub(crate) fn new(
        level: SecondLevel,
        name: Arc<str>,
        codec: Option<Arc<dyn Codec<V>>>,
    ) -> Self {
        let ns = format!("{}{}:", level.shared.settings.prefix, name);
        CacheL2 {
            clear_key: format!("{ns}clear"),
            ns,
            level,
            name,
            codec,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        }
    }

    /// The highest generation this node has seen: the `born` of a value whose compute starts now, when no
    /// lookup read one.
    pub(crate) fn known_generation(&self) -> u64 {
        self.level.shared.last_generation.load(Ordering::SeqCst)
    }

    /// Whether values are stored in L2 (not only invalidations).
    pub(crate) fn stores_values(&self) -> bool {
        self.codec.is_some()
    }

    /// Writes `{ns}{kind}{key}` into `buffer` (reused across an entry's tags), without the formatting
    /// machinery: this is on every lookup.
    fn store_key_into<'b>(&self, buffer: &'b mut String, kind: &str, key: &str) -> &'b str {
        buffer.clear();
        buffer.push_str(&self.ns);
        buffer.push_str(kind);
        buffer.push_str(key);
        buffer
    }

    /// `{ns}{kind}{key}`: the name in the store of an entry (`e:`), a key's version (`k:`), a tag's (`t:`) or a
    /// key prefix's (`p:`).
    fn store_key(&self, kind: &str, key: &str) -> String {
        let mut name = String::with_capacity(self.ns.len() + kind.len() + key.len());
        self.store_key_into(&mut name, kind, key);
        name
    }

    fn entry_key(&self, key: &str) -> String {
        self.store_key("e:", key)
    }

    fn key_version_key(&self, key: &str) -> String {
        self.store_key("k:", key)
    }

    fn read_keys(&self, key: &str) -> ReadKeys {
        ReadKeys {
            entry: self.entry_key(key),
            key_version: self.key_version_key(key),
            clear_version: self.clear_key.clone(),
            generation: self.level.shared.generation_key.clone(),
        }
    }

    fn miss(&self, generation: u64) -> Lookup<V> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(Some(generation))
    }

    fn reject(&self, generation: u64) -> Lookup<V> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.miss(generation)
    }

    fn corrupt(&self, generation: u64) -> Lookup<V> {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
        self.miss(generation)
    }

    /// Looks `key` up in L2 within the soft timeout: a value only if its envelope is sound, it is fresh, and
    /// no invalidation of its key, its tags, its key prefixes or its cache came after it was computed.
    ///
    /// While the bus vouches for this node's remembered versions (and the cache's `clear` version is among
    /// them), the lookup reads the entry alone: a key's invalidation deletes its entry in the same atomic step
    /// that raises the key's version, and the conditional write never stores an entry born before that
    /// version, so an entry present in the store is never older than its key's last invalidation. Otherwise it
    /// reads the entry with the key's, the cache's and the generation's versions in one round trip.
    pub(crate) async fn lookup(&self, key: &str) -> Lookup<V> {
        let Some(codec) = &self.codec else {
            return Lookup::Miss(None);
        };
        let level = &*self.level.shared;
        let started = tokio::time::Instant::now();
        let soft = level.settings.soft_timeout;
        // Taken before the store is asked, so a value computed after a miss is never born later than it.
        let known_generation = level.last_generation.load(Ordering::SeqCst);
        let epoch = level.epoch.load(Ordering::SeqCst);
        let trusted = level.trusted_epoch();
        let (bytes, read) = match level.trusted_version(&self.clear_key, trusted) {
            Some(clear_version) => {
                let Ok(entry) = level
                    .call(soft, level.backend.read_entry(&self.entry_key(key)))
                    .await
                else {
                    return self.miss(known_generation);
                };
                (entry, Read::Trusted { clear_version })
            }
            None => {
                let keys = self.read_keys(key);
                let Ok(mut reply) = level.call(soft, level.backend.read(&keys)).await else {
                    return self.miss(known_generation);
                };
                level.observe_generation(reply.generation);
                level.remember_version(&self.clear_key, reply.clear_version, epoch);
                (reply.entry.take(), Read::Full(reply))
            }
        };
        let generation = match &read {
            Read::Full(reply) => reply.generation,
            Read::Trusted { .. } => known_generation,
        };
        let Some(bytes) = bytes else {
            return self.miss(generation);
        };
        let envelope = match envelope::decode(&bytes) {
            Ok(envelope) if envelope.codec == codec.id() => envelope,
            Ok(_) | Err(DecodeError::Foreign | DecodeError::OldFormat | DecodeError::Corrupt) => {
                return self.corrupt(generation);
            }
        };
        let now = unix_millis();
        let born = envelope.born;
        let outdated = match &read {
            Read::Full(reply) => {
                born > reply.generation || reply.key_version > born || reply.clear_version > born
            }
            Read::Trusted { clear_version } => *clear_version > born,
        };
        if outdated || envelope.fresh_until_ms <= now || born < level.floor.load(Ordering::SeqCst) {
            return self.reject(generation);
        }
        let mut buffer = String::with_capacity(self.ns.len() + 64);
        // This node's own invalidation of the key, its cache or one of its tags may still be on its way to the
        // store, whose versions do not show it yet: then the entry is not read.
        if level.has_pending() {
            let mut own = vec![self.key_version_key(key), self.clear_key.clone()];
            own.extend(
                envelope
                    .tags
                    .iter()
                    .map(|&(kind, name)| self.store_key(version_kind(kind), name)),
            );
            if level.any_pending(own.iter().map(String::as_str)) {
                return self.reject(generation);
            }
        }
        // Tag versions: remembered ones while the bus vouches for them, the rest read in one round trip.
        let mut unknown = Vec::new();
        for &(kind, name) in &envelope.tags {
            let version_key = self.store_key_into(&mut buffer, version_kind(kind), name);
            match level.trusted_version(version_key, trusted) {
                Some(version) if version > born => return self.reject(generation),
                Some(_) => {}
                None => unknown.push(version_key.to_owned()),
            }
        }
        if !unknown.is_empty() {
            let left = soft
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            let Ok(versions) = level.call(left, level.backend.versions(&unknown)).await else {
                return self.miss(generation);
            };
            let mut stale = false;
            for (version_key, version) in unknown.iter().zip(versions) {
                stale |= version > born;
                level.remember_version(version_key, version, epoch);
            }
            if stale {
                return self.reject(generation);
            }
        }
        let Ok(value) = codec.decode(envelope.payload) else {
            return self.corrupt(generation);
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let fresh_for = Duration::from_millis(envelope.fresh_until_ms.saturating_sub(now));
        let stale_for = if envelope.stale_until_ms == u64::MAX {
            Duration::ZERO
        } else {
            Duration::from_millis(
                envelope
                    .stale_until_ms
                    .saturating_sub(envelope.fresh_until_ms),
            )
        };
        Found {
            value,
            tags: envelope
                .tags
                .iter()
                .filter(|(kind, _)| *kind == TagKindByte::User)
                .map(|(_, name)| (*name).to_owned())
                .collect(),
            fresh_for: if envelope.fresh_until_ms == u64::MAX {
                Duration::MAX
            } else {
                fresh_for
            },
            stale_for,
        }
        .into()
    }

    /// Queues the write of a loaded value: `fresh_for`/`stale_for`/`keep_for` from now (`None`: no TTL);
    /// `born` is the generation read before the loader ran.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_back(
        &self,
        key: &str,
        value: &V,
        tags: &[Cow<'static, str>],
        fresh_for: Option<Duration>,
        stale_for: Duration,
        keep_for: Option<Duration>,
        born: Option<u64>,
    ) {
        let Some(codec) = &self.codec else {
            return;
        };
        let level = &*self.level.shared;
        let born = born.unwrap_or_else(|| level.last_generation.load(Ordering::SeqCst));
        let now = unix_millis();
        let to_ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let fresh_until = fresh_for.map_or(u64::MAX, |d| now.saturating_add(to_ms(d)));
        let stale_until = fresh_for.map_or(u64::MAX, |d| now.saturating_add(to_ms(d + stale_for)));
        let ttl = keep_for
            .unwrap_or(level.settings.max_ttl)
            .min(level.settings.max_ttl);
        if ttl.is_zero() {
            return;
        }
        let all_tags = tags
            .iter()
            .map(|t| (TagKindByte::User, t.as_ref()))
            .chain(text_prefixes(key).map(|p| (TagKindByte::Prefix, p)));
        let all_tags: Vec<(TagKindByte, &str)> = all_tags.collect();
        let mut bytes = Vec::with_capacity(64);
        if !envelope::encode_header(
            &mut bytes,
            codec.id(),
            now,
            fresh_until,
            stale_until,
            born,
            all_tags.iter().copied(),
        ) || codec.encode(value, &mut bytes).is_err()
        {
            // Too many tags, or the codec refused the value: it stays in L1 only.
            level
                .counters
                .writes_refused
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        level.enqueue_write(WriteOp {
            keys: self.read_keys(key),
            bytes,
            ttl,
            born,
        });
    }

    fn invalidation(&self, set: Vec<String>, delete: Vec<String>, tail: &str) -> InvalidateOp {
        let settings = &self.level.shared.settings;
        InvalidateOp {
            generation: self.level.shared.generation_key.clone(),
            set,
            delete,
            ttl: settings.max_ttl + super::level::VERSION_MARGIN,
            channel: format!("{}bus", settings.prefix),
            message_head: String::new(),
            message_tail: tail.to_owned(),
        }
    }

    /// Sends an invalidation to the store and the other nodes (in the background, in order).
    pub(crate) fn publish(&self, kind: MessageKind, name: &str) {
        let op = match kind {
            MessageKind::Tag => self.invalidation(
                vec![self.store_key(version_kind(TagKindByte::User), name)],
                Vec::new(),
                name,
            ),
            MessageKind::Prefix => {
                let exact = strip_wildcard(name);
                self.invalidation(
                    vec![
                        self.store_key(version_kind(TagKindByte::Prefix), prefix_tag(name)),
                        self.key_version_key(exact),
                    ],
                    vec![self.entry_key(exact)],
                    name,
                )
            }
            MessageKind::Key => self.invalidation(
                vec![self.key_version_key(name)],
                vec![self.entry_key(name)],
                name,
            ),
            MessageKind::Clear => self.invalidation(vec![self.clear_key.clone()], Vec::new(), ""),
            MessageKind::Heartbeat => return,
        };
        self.level.shared.enqueue_invalidation(&self.name, kind, op);
    }

    /// This cache's L2 statistics.
    pub(crate) fn stats(&self) -> SecondLevelStats {
        SecondLevelStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            stores_values: self.stores_values(),
            ..self.level.stats()
        }
    }
}

impl<V> From<Found<V>> for Lookup<V> {
    fn from(found: Found<V>) -> Self {
        Lookup::Hit(found)
    }
}

impl<K, V> BusTarget for Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn bus_name(&self) -> &str {
        &self.name
    }

    fn apply(&self, kind: MessageKind, name: &str) {
        match kind {
            MessageKind::Tag => self.tags.invalidate(TagKind::User, name, &self.seq),
            MessageKind::Prefix => {
                self.tags
                    .invalidate(TagKind::Prefix, prefix_tag(name), &self.seq);
                if let Some(key) = key_from_text::<K>(strip_wildcard(name)) {
                    self.invalidate_key(&key);
                }
            }
            MessageKind::Key => {
                if let Some(key) = key_from_wire::<K>(name) {
                    self.invalidate_key(&key);
                }
            }
            MessageKind::Clear => self.clear_local(),
            MessageKind::Heartbeat => {}
        }
    }

    fn clear_local(&self) {
        let s = self.seq.next();
        self.cleared.fetch_max(s, Ordering::SeqCst);
    }
}
