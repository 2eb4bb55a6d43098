//! What a loader returns (a value with its tags and lifetimes), what a lookup returns, and the adapter that
//! turns a loader's panic into an error.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

/// A value to store, with the tags and lifetimes chosen when it was computed.
///
/// A loader may return a plain `V` (stored with the cache's defaults) or a `Loaded<V>`:
///
/// ```
/// use perfscope::cache::{Cache, Loaded};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache: Cache<String, String> = Cache::builder().build()?;
/// let name = cache
///     .get_or_compute(&"product:42".to_owned(), || async {
///         // ... read the product and, while at it, learn what it depends on
///         Loaded::new("Widget".to_owned())
///             .tags(["products", "supplier:7"])
///             .ttl(Duration::from_secs(60))
///     })
///     .await?;
/// assert_eq!(name, "Widget");
/// cache.invalidate_tag("supplier:7"); // the entry is gone
/// assert!(cache.get(&"product:42".to_owned()).is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Loaded<V> {
    pub(crate) value: V,
    pub(crate) tags: Vec<Cow<'static, str>>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale_for: Option<Duration>,
    pub(crate) store: bool,
}

impl<V> Loaded<V> {
    /// The value, with the cache's default TTL and no tags.
    pub fn new(value: V) -> Self {
        Loaded {
            value,
            tags: Vec::new(),
            ttl: None,
            stale_for: None,
            store: true,
        }
    }

    /// Adds a tag: [`Cache::invalidate_tag`](super::Cache::invalidate_tag) with it removes the entry.
    pub fn tag(mut self, tag: impl Into<Cow<'static, str>>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Adds tags.
    pub fn tags<T: Into<Cow<'static, str>>>(mut self, tags: impl IntoIterator<Item = T>) -> Self {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// How long the value is fresh (overrides the cache's `ttl`; jitter still applies).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long after `ttl` the value may still be served by `get_or_compute` while it is refreshed in the
    /// background (overrides the cache's `stale_for`).
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.stale_for = Some(stale_for);
        self
    }

    /// Returns the value to the caller without storing it (for results that must not be shared, such as an
    /// error page). Callers waiting on the same key then run their own loader.
    pub fn no_store(mut self) -> Self {
        self.store = false;
        self
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, dropping the rest.
    pub fn into_value(self) -> V {
        self.value
    }
}

impl<V> From<V> for Loaded<V> {
    fn from(value: V) -> Self {
        Loaded::new(value)
    }
}

/// How a lookup got its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheStatus {
    /// A fresh stored value.
    Hit,
    /// A value past its TTL but inside its stale window; a background refresh was started.
    Stale,
    /// This caller ran the loader.
    Miss,
    /// Another caller's load of the same key, waited for.
    Coalesced,
    /// The loader failed and an expired value within `fail_safe_max` was returned instead.
    FailSafe,
    /// Not in this node's cache, found fresh in the shared second level (feature `redis`).
    SecondLevelHit,
}

impl CacheStatus {
    /// The status as an `x-cache`-style word: `HIT`, `STALE`, `MISS`, `COALESCED`, `FAIL-SAFE`,
    /// `HIT-L2`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Stale => "STALE",
            CacheStatus::Miss => "MISS",
            CacheStatus::Coalesced => "COALESCED",
            CacheStatus::FailSafe => "FAIL-SAFE",
            CacheStatus::SecondLevelHit => "HIT-L2",
        }
    }
}

/// A value from [`Cache::try_get_or_compute_entry`](super::Cache::try_get_or_compute_entry), with how it was
/// obtained.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fetched<V> {
    /// The value.
    pub value: V,
    /// How the lookup got it.
    pub status: CacheStatus,
    /// Time since the value was stored (zero for a value this caller loaded).
    pub age: Duration,
}

pin_project! {
    /// Polls a future, turning a panic inside `poll` into an `Err` with the payload. The panicked future is
    /// never polled again.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match crate::panic_hook::caught(|| catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Calls `loader` and awaits its future, catching a panic in either.
pub(crate) async fn run_loader<F, Fut>(loader: F) -> Result<Fut::Output, Box<dyn Any + Send>>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let future = crate::panic_hook::caught(|| catch_unwind(AssertUnwindSafe(loader)))?;
    CatchUnwind::new(future).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn catches_panics_in_the_call_and_in_poll() {
        let ok = run_loader(|| async { 5 }).await;
        assert_eq!(ok.ok(), Some(5));
        let in_call = run_loader(|| -> std::future::Ready<u8> { panic!("in call") }).await;
        assert!(in_call.is_err());
        let in_poll = run_loader(|| async {
            tokio::task::yield_now().await;
            panic!("in poll")
        })
        .await;
        let payload = in_poll.unwrap_err();
        assert_eq!(super::super::error::panic_message(&*payload), "in poll");
    }

    #[test]
    fn loaded_builder() {
        let loaded = Loaded::new(1)
            .tag("a")
            .tags([String::from("b")])
            .ttl(Duration::from_secs(1))
            .stale_for(Duration::from_secs(2))
            .no_store();
        assert_eq!(loaded.tags, ["a", "b"]);
        assert!(!loaded.store);
        assert_eq!(*loaded.value(), 1);
        let plain: Loaded<u8> = 3.into();
        assert_eq!(plain.into_value(), 3);
        assert_eq!(CacheStatus::FailSafe.as_str(), "FAIL-SAFE");
    }
}
