//! [`ResponseCacheLayer`], its builder, and the state its services share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use tokio::time::Instant;
use tower_layer::Layer;

use super::entry::{CacheStatus, CachedResponse, DEFAULT_STORED_HEADERS, Entry, Stored};
use super::extensions::take_tags;
use super::flight::Flights;
use super::key::{DEFAULT_KEY_HEADERS, KeyConfig, QueryKey, ResponseKey, VarySpec};
use super::policy::{Freshness, Lifetimes, SkipReason, storable};
use super::service::ResponseCache;
use crate::cache::stats::Counter;
use crate::cache::{Cache, Loaded, ResponseStats, Ticket};
use crate::error::BuildError;

/// The store of a response cache.
pub type ResponseStore = Cache<ResponseKey, CachedResponse>;

/// The name of the store a layer builds for itself.
pub const DEFAULT_STORE_NAME: &str = "http_responses";

/// Default bound of the layer's own store: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default longest key: 4 KiB.
pub const DEFAULT_MAX_KEY_BYTES: usize = 4 << 10;
/// Default most tags per response: 16.
pub const DEFAULT_MAX_RESPONSE_TAGS: usize = 16;

/// A tower layer that answers `GET`/`HEAD` requests from stored responses; see the [module docs](super).
///
/// Cloning is cheap (one `Arc`): `Router::layer` clones it once per route, and every clone shares one store and
/// one set of statistics.
#[derive(Debug, Clone)]
pub struct ResponseCacheLayer {
    shared: Arc<Shared>,
}

impl ResponseCacheLayer {
    /// A builder with the default settings.
    pub fn builder() -> ResponseCacheBuilder {
        ResponseCacheBuilder::default()
    }

    /// What this layer did so far, and the size of its store.
    pub fn stats(&self) -> ResponseCacheStats {
        self.shared.stats.snapshot(&self.shared.store)
    }

    /// The store: invalidate tags here (`layer.store().invalidate_tag("products")`), read its statistics, or
    /// register its [`handle`](Cache::handle) for exports and the admin endpoints.
    pub fn store(&self) -> &ResponseStore {
        &self.shared.store
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache::new(inner, self.shared.clone())
    }
}

/// Builds a [`ResponseCacheLayer`]. Every setting has a default; `build` checks them.
#[derive(Debug, Clone)]
#[must_use]
pub struct ResponseCacheBuilder {
    store: Option<ResponseStore>,
    max_bytes: u64,
    lifetimes: Lifetimes,
    max_body: usize,
    max_key_bytes: usize,
    max_tags: usize,
    query: Option<Vec<String>>,
    key_headers: Vec<String>,
    stored_headers: Vec<String>,
    key_by_identity: bool,
    honor_request_directives: bool,
    /// The second level, and whether responses are stored there (else invalidations only).
    #[cfg(feature = "redis")]
    l2: Option<(crate::cache::l2::SecondLevel, bool)>,
}

impl Default for ResponseCacheBuilder {
    fn default() -> Self {
        ResponseCacheBuilder {
            store: None,
            max_bytes: DEFAULT_MAX_BYTES,
            lifetimes: Lifetimes::default(),
            max_body: DEFAULT_MAX_BODY,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_tags: DEFAULT_MAX_RESPONSE_TAGS,
            query: None,
            key_headers: DEFAULT_KEY_HEADERS
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            stored_headers: DEFAULT_STORED_HEADERS
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            key_by_identity: false,
            honor_request_directives: false,
            #[cfg(feature = "redis")]
            l2: None,
        }
    }
}

impl ResponseCacheBuilder {
    /// Uses `store` instead of a store of the layer's own; several layers (one per route, each with its own
    /// settings) can share one. Build it bounded by weight with [`CachedResponse::weigh`]:
    /// `Cache::builder().max_weight(64 << 20).weigher(CachedResponse::weigh).build()`. `max_bytes` is then
    /// not used.
    pub fn store(mut self, store: ResponseStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Bound of the layer's own store, in bytes of keys, bodies, headers and bookkeeping (default 64 MiB).
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Lifetime of responses that have no `s-maxage`/`max-age`; without it they are not stored.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.lifetimes.default_ttl = Some(ttl);
        self
    }

    /// Upper bound on any lifetime, whatever the response says.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.lifetimes.max_ttl = Some(ttl);
        self
    }

    /// `stale-while-revalidate` for responses that do not give one.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.lifetimes.stale_while_revalidate = Some(window);
        self
    }

    /// `stale-if-error` for responses that do not give one.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.lifetimes.stale_if_error = Some(window);
        self
    }

    /// Largest body stored (default 1 MiB); larger bodies stream through unstored.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Longest cache key (default 4 KiB); requests with a longer key bypass the cache.
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key_bytes = bytes;
        self
    }

    /// Most tags per response (default 16); a response with more is not stored.
    pub fn max_tags(mut self, tags: usize) -> Self {
        self.max_tags = tags;
        self
    }

    /// Keys only these query parameters (sorted by name); the others are ignored, so `?cb=<random>` cannot
    /// create entries. Every parameter the handler reads must be listed, or responses for different values of
    /// an unlisted one would be shared.
    pub fn query_allowlist<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.query = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Also keys the values of this request header (a tenant header, for example).
    pub fn key_header(mut self, name: impl Into<String>) -> Self {
        self.key_headers.push(name.into());
        self
    }

    /// Replaces the keyed request headers (by default the forwarding headers: `Forwarded`, `X-Forwarded-Host`,
    /// `X-Forwarded-Proto`, `X-Forwarded-Scheme`, `X-Forwarded-Prefix`, `X-Forwarded-Port`, `X-Host`,
    /// `X-Original-Host`, `X-Original-URL`, `X-Rewrite-URL`). Leave out only headers the handlers never read.
    pub fn key_headers<I, T>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.key_headers = names.into_iter().map(Into::into).collect();
        self
    }

    /// Also stores this response header (by default only representation headers such as `Content-Type`,
    /// `Cache-Control`, `ETag`, `Last-Modified`, `Vary`, `Link` and a few CORS and security headers are stored).
    pub fn store_header(mut self, name: impl Into<String>) -> Self {
        self.stored_headers.push(name.into());
        self
    }

    /// Lets requests with `Authorization` or `Cookie` use the cache when they carry a
    /// [`CacheIdentity`](super::CacheIdentity), which is then part of the key. Use it on routes whose
    /// authentication middleware sets the identity.
    pub fn key_by_identity(mut self) -> Self {
        self.key_by_identity = true;
        self
    }

    /// Lets a request's `Cache-Control: no-cache` / `max-age=0` (and `Pragma: no-cache`) skip the stored
    /// response and refresh it. Off by default: any client could otherwise send every request to the handler.
    pub fn honor_request_directives(mut self, honor: bool) -> Self {
        self.honor_request_directives = honor;
        self
    }

    /// Puts `level` (Redis, usually) behind the layer's own store: a request that finds nothing in this node's
    /// store reads the second level before it calls the handler (under the key's single flight), a fresh
    /// response found there is answered with `X-Cache: HIT-L2` and kept in this node's store, and every
    /// response stored is also written there in the background (encoded by [`ResponseCodec`](super::ResponseCodec)
    /// in the second level's envelope). Invalidations (`invalidate_tag`, `invalidate`, `clear` on
    /// [`store`](ResponseCacheLayer::store)) reach every node on `level`. Feature `redis`.
    ///
    /// For a [`store`](ResponseCacheBuilder::store) of your own, attach the level to that store instead
    /// (`second_level_with_codec(level, ResponseCodec)` or `invalidation_bus(level)` on its builder);
    /// `build` refuses both together.
    #[cfg(feature = "redis")]
    pub fn second_level(mut self, level: crate::cache::l2::SecondLevel) -> Self {
        self.l2 = Some((level, true));
        self
    }

    /// Shares the invalidations of the layer's own store with the other nodes on `level` and applies theirs,
    /// without storing responses in the second level. Feature `redis`.
    #[cfg(feature = "redis")]
    pub fn invalidation_bus(mut self, level: crate::cache::l2::SecondLevel) -> Self {
        self.l2 = Some((level, false));
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<ResponseCacheLayer, BuildError> {
        range(
            "max_bytes",
            self.max_bytes,
            4 << 10,
            u64::MAX,
            "at least 4096",
        )?;
        range(
            "max_body",
            self.max_body as u64,
            1,
            64 << 20,
            "between 1 and 64 MiB",
        )?;
        range(
            "max_key_bytes",
            self.max_key_bytes as u64,
            256,
            64 << 10,
            "between 256 and 65536",
        )?;
        range("max_tags", self.max_tags as u64, 0, 256, "at most 256")?;
        for (setting, ttl) in [
            ("default_ttl", self.lifetimes.default_ttl),
            ("max_ttl", self.lifetimes.max_ttl),
        ] {
            if ttl.is_some_and(|ttl| ttl.is_zero()) {
                return Err(BuildError::OutOfRange {
                    setting,
                    expected: "more than zero",
                    got: "0s".to_owned(),
                });
            }
        }
        let key_headers = header_names("key_header", &self.key_headers)?;
        let stored_headers = header_names("store_header", &self.stored_headers)?;
        let config = Config {
            key: KeyConfig {
                query: match self.query {
                    None => QueryKey::All,
                    Some(names) => {
                        QueryKey::Allow(names.into_iter().map(String::into_boxed_str).collect())
                    }
                },
                headers: key_headers,
                max_key_bytes: self.max_key_bytes,
            },
            lifetimes: self.lifetimes,
            max_body: self.max_body,
            max_tags: self.max_tags,
            key_by_identity: self.key_by_identity,
            honor_request_directives: self.honor_request_directives,
            stored_headers,
        };
        #[cfg(feature = "redis")]
        if self.store.is_some() && self.l2.is_some() {
            return Err(BuildError::OutOfRange {
                setting: "second_level",
                expected: "no store of your own (attach the level to that store: \
                           second_level_with_codec(level, ResponseCodec) on its builder)",
                got: "a store and a second level".to_owned(),
            });
        }
        let store = match self.store {
            Some(store) => store,
            None => {
                let builder = Cache::builder()
                    .name(DEFAULT_STORE_NAME)
                    .max_weight(self.max_bytes)
                    .weigher(CachedResponse::weigh);
                #[cfg(feature = "redis")]
                let builder = match self.l2 {
                    Some((level, true)) => {
                        builder.second_level_with_codec(level, super::ResponseCodec)
                    }
                    Some((level, false)) => builder.invalidation_bus(level),
                    None => builder,
                };
                builder.build()?
            }
        };
        let stats = Arc::new(Stats::default());
        store.inner.responses.lock().push(Arc::downgrade(&stats));
        Ok(ResponseCacheLayer {
            shared: Arc::new(Shared {
                store,
                config,
                flights: Arc::default(),
                stats,
            }),
        })
    }
}

fn range(
    setting: &'static str,
    got: u64,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<(), BuildError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(BuildError::OutOfRange {
            setting,
            expected,
            got: got.to_string(),
        })
    }
}

fn header_names(setting: &'static str, names: &[String]) -> Result<Box<[HeaderName]>, BuildError> {
    let mut parsed: Vec<HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        let header =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError::InvalidHeaderName {
                setting,
                name: name.clone(),
            })?;
        if !parsed.contains(&header) {
            parsed.push(header);
        }
    }
    Ok(parsed.into_boxed_slice())
}

/// The settings of one layer.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) key: KeyConfig,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) max_body: usize,
    pub(crate) max_tags: usize,
    pub(crate) key_by_identity: bool,
    pub(crate) honor_request_directives: bool,
    pub(crate) stored_headers: Box<[HeaderName]>,
}

/// What the services of one layer share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: ResponseStore,
    pub(crate) config: Config,
    pub(crate) flights: Arc<Flights>,
    /// Also registered with the store, for its snapshot.
    pub(crate) stats: Arc<Stats>,
}

/// A response that may be stored once its body is read.
#[derive(Debug)]
pub(crate) struct Pending {
    freshness: Freshness,
    vary: Option<VarySpec>,
    /// Where the response goes: the base key, or the variant key when it has a `Vary`.
    key: ResponseKey,
    tags: Vec<std::sync::Arc<str>>,
}

impl Shared {
    /// The stored response for a request: the entry at the base key, or, when that holds `Vary` names, the
    /// entry at the request's variant key.
    ///
    /// Counts nothing: the layer counts each request once, as its `X-Cache` says ([`Shared::count`]).
    pub(crate) fn lookup(&self, base: &ResponseKey, request: &HeaderMap) -> Option<CachedResponse> {
        let found = self.store.peek(base)?;
        match found.entry() {
            Entry::Response(stored) if stored.vary.is_none() => Some(found),
            Entry::Response(_) => None,
            Entry::Vary(spec) => {
                let variant = spec.variant_key(base, request, self.config.key.max_key_bytes)?;
                let found = self.store.peek(&variant)?;
                match found.entry() {
                    Entry::Response(stored) if stored.vary.as_ref() == Some(spec) => Some(found),
                    _ => None,
                }
            }
        }
    }

    /// Whether a response may be stored: its tags (the `Cache-Tag` header is removed either way), status,
    /// directives, `Vary` and announced size. Counts the reason when not.
    pub(crate) fn prepare(
        &self,
        base: &ResponseKey,
        request: &HeaderMap,
        status: StatusCode,
        headers: &mut HeaderMap,
        tags: Option<super::CacheTags>,
        body_lower_bound: u64,
    ) -> Result<Pending, SkipReason> {
        let config = &self.config;
        let result = take_tags(tags, headers, config.max_tags)
            .map_err(|()| SkipReason::Tags)
            .and_then(|tags| {
                let freshness = storable(status, headers, &config.lifetimes)?;
                let vary = VarySpec::from_response(headers).map_err(|_| SkipReason::Vary)?;
                // An event stream is never complete enough to store, and reading it ahead would hold its
                // first events back.
                if body_lower_bound > config.max_body as u64 || is_event_stream(headers) {
                    return Err(SkipReason::Body);
                }
                let key = match &vary {
                    Some(spec) => spec
                        .variant_key(base, request, config.key.max_key_bytes)
                        .ok_or(SkipReason::KeyTooLarge)?,
                    None => base.clone(),
                };
                Ok(Pending {
                    freshness,
                    vary,
                    key,
                    tags,
                })
            });
        if let Err(reason) = result {
            self.stats.skip(reason);
        }
        result
    }

    /// Counts a request answered as `status` (`HIT`, `STALE` or `MISS`), in the layer's counters and in the
    /// store's, so the store's statistics tell stale answers from fresh ones.
    pub(crate) fn count(&self, base: &ResponseKey, status: CacheStatus) {
        let (counter, lookup) = match status {
            CacheStatus::Hit | CacheStatus::SecondLevelHit => (&self.stats.hits, Counter::Hits),
            CacheStatus::Stale => (&self.stats.stale, Counter::StaleHits),
            CacheStatus::Miss => (&self.stats.misses, Counter::Misses),
            CacheStatus::Bypass => (&self.stats.bypassed, Counter::Misses),
        };
        Stats::add(counter);
        if status != CacheStatus::Bypass {
            self.store.count_lookup(base, lookup);
        }
    }

    /// Counts a request that waits for another request's load of its key.
    pub(crate) fn count_coalesced(&self, base: &ResponseKey) {
        Stats::add(&self.stats.coalesced);
        self.store.count_lookup(base, Counter::Coalesced);
    }

    /// Whether `value`, delivered by the request that stored it under `key`, is still what the store holds: a
    /// request that waited for that load may take it only then (an invalidation may have landed since).
    pub(crate) fn still_stored(&self, key: &ResponseKey, value: &CachedResponse) -> bool {
        self.store
            .peek(key)
            .is_some_and(|current| current.same(value))
    }

    /// Stores a response whose body was read in full, computed by a handler called after `ticket` was taken;
    /// returns the key it goes under, the value, and whether it was stored: not when an invalidation of the
    /// key, of one of its tags, or `clear` landed since the ticket (counted as
    /// [`SkipReason::Invalidated`]).
    ///
    /// With a second level, a stored response is also written there; `l2_born` is the generation the second
    /// level answered with before the handler was called (`None`: the latest this node saw).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &self,
        base: &ResponseKey,
        pending: Pending,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        ticket: Ticket,
        l2_born: Option<u64>,
    ) -> (ResponseKey, CachedResponse, bool) {
        let Pending {
            freshness,
            vary,
            key,
            tags,
        } = pending;
        // The store keeps the entry for its whole life (fresh and stale windows); the layer tells fresh from
        // stale itself, from when it was stored.
        let keep_for = freshness.keep_for();
        let stored = Stored::new(
            status,
            headers,
            &self.config.stored_headers,
            body,
            Instant::now(),
            freshness,
            vary.clone(),
        );
        let value = CachedResponse::response(stored);
        let tags: Vec<std::borrow::Cow<'static, str>> = tags
            .iter()
            .map(|tag| std::borrow::Cow::Owned(tag.to_string()))
            .collect();
        let loaded = Loaded::new(value.clone())
            .ttl(keep_for)
            .stale_for(Duration::ZERO)
            .tags(tags.iter().cloned());
        if !self.store.insert_since(ticket, key.clone(), loaded) {
            self.stats.skip(SkipReason::Invalidated);
            return (key, value, false);
        }
        #[cfg(feature = "redis")]
        if self.store.stores_in_l2() {
            self.store
                .second_level_put(&key, &value, &tags, keep_for, l2_born);
        }
        #[cfg(not(feature = "redis"))]
        let _ = l2_born;
        if let Some(spec) = vary {
            let record = CachedResponse::vary(spec);
            #[cfg(feature = "redis")]
            if self.store.stores_in_l2() {
                self.store
                    .second_level_put(base, &record, &[], keep_for, l2_born);
            }
            let record = Loaded::new(record).ttl(keep_for).stale_for(Duration::ZERO);
            // Refused only after an invalidation of the base key: the variant is then not found, a miss.
            self.store.insert_since(ticket, base.clone(), record);
        }
        self.stats.stores.fetch_add(1, Ordering::Relaxed);
        (key, value, true)
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .trim_ascii_start()
                .starts_with(b"text/event-stream")
        })
}

/// Counters of one layer.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) hits: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) stores: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    skipped: [AtomicU64; SkipReason::ALL.len()],
}

impl Stats {
    pub(crate) fn skip(&self, reason: SkipReason) {
        if let Some(counter) = self.skipped.get(reason.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds these counters to `total` (the store's snapshot sums the layers using it).
    pub(crate) fn add_to(&self, total: &mut ResponseStats) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        total.hits += load(&self.hits);
        total.stale += load(&self.stale);
        total.misses += load(&self.misses);
        total.bypassed += load(&self.bypassed);
        total.stores += load(&self.stores);
        total.not_modified += load(&self.not_modified);
        total.coalesced += load(&self.coalesced);
        total.refreshes += load(&self.refreshes);
        for reason in SkipReason::ALL {
            let count = self.skipped.get(reason.index()).map_or(0, load);
            if count > 0 {
                *total.skipped.entry(reason.as_str()).or_default() += count;
            }
        }
    }

    fn snapshot(&self, store: &ResponseStore) -> ResponseCacheStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let store = store.stats();
        ResponseCacheStats {
            hits: load(&self.hits),
            stale: load(&self.stale),
            misses: load(&self.misses),
            bypassed: load(&self.bypassed),
            stores: load(&self.stores),
            not_modified: load(&self.not_modified),
            coalesced: load(&self.coalesced),
            refreshes: load(&self.refreshes),
            entries: store.entries,
            weighted_bytes: store.weighted_bytes,
            max_bytes: store.max_weight_bytes,
            skipped: std::array::from_fn(|i| load(&self.skipped[i])),
        }
    }
}

/// A copy of a [`ResponseCacheLayer`]'s counters and the size of its store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseCacheStats {
    /// Responses served fresh from the store (`X-Cache: HIT`, including `304`s and waiters served after a
    /// single-flight load).
    pub hits: u64,
    /// Responses served stale (`X-Cache: STALE`): within `stale-while-revalidate`, or instead of an error.
    pub stale: u64,
    /// Requests that looked up, found nothing usable, and went to the handler (`X-Cache: MISS`).
    pub misses: u64,
    /// Requests that could not use the cache (`X-Cache: BYPASS`).
    pub bypassed: u64,
    /// Responses stored.
    pub stores: u64,
    /// `304 Not Modified` answers sent from the store.
    pub not_modified: u64,
    /// Requests that waited for another request's load of the same key instead of calling the handler.
    pub coalesced: u64,
    /// Background refreshes that stored a new response.
    pub refreshes: u64,
    /// Entries in the store (responses and `Vary` records; shared with other layers using the same store).
    pub entries: u64,
    /// Weight of the store in bytes (keys, bodies, headers, bookkeeping).
    pub weighted_bytes: u64,
    /// The store's weight bound in bytes, if it has one.
    pub max_bytes: Option<u64>,
    skipped: [u64; SkipReason::ALL.len()],
}

impl ResponseCacheStats {
    /// How many requests bypassed the cache, or responses were not stored, for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(reason.index()).copied().unwrap_or(0)
    }
}
