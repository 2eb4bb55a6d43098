//! What handlers and middleware hand to the response cache: [`CacheTags`] on a response, [`CacheIdentity`] on a
//! request.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

/// The response header a handler may list tags in (comma or space separated); always removed before sending.
pub const CACHE_TAG_HEADER: &str = "cache-tag";

/// The longest tag kept, in bytes.
pub const MAX_TAG_LEN: usize = 128;

/// Tags of a response, for invalidating it later with the cache's `invalidate_tag`.
///
/// Put it in the response's extensions (from axum: return `(Extension(CacheTags::new(["products"])), body)`),
/// or send a `Cache-Tag: products product:7` header, which the layer removes before the response leaves.
/// A response whose tags cannot all be kept (more than the layer's `max_tags`, or a tag that is empty, longer
/// than [`MAX_TAG_LEN`] or not printable ASCII) is not stored: storing it without a tag would let
/// `invalidate_tag` miss it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTags(Vec<Arc<str>>);

impl CacheTags {
    /// Tags from any list of strings.
    pub fn new<I, T>(tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<Arc<str>>,
    {
        CacheTags(tags.into_iter().map(Into::into).collect())
    }

    /// Adds a tag.
    #[must_use]
    pub fn with(mut self, tag: impl Into<Arc<str>>) -> Self {
        self.0.push(tag.into());
        self
    }

    /// The tags, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|tag| &**tag)
    }

    /// How many tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Who a request is for, when a route's responses depend on it; part of the cache key.
///
/// Requests with `Authorization` or `Cookie` bypass the response cache, unless the layer was built with
/// `key_by_identity()` and the request carries this extension (set it in the authentication middleware that
/// runs before the cache layer). The identity must cover everything the response depends on: a tenant, a user,
/// a role set. Its bytes are only compared, never logged.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheIdentity(Bytes);

impl CacheIdentity {
    /// An identity from any bytes (`"tenant=3;user=42"`).
    pub fn new(identity: impl Into<Bytes>) -> Self {
        CacheIdentity(identity.into())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for CacheIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheIdentity")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

/// Whether `tag` can be stored as given.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= MAX_TAG_LEN && tag.bytes().all(|b| b.is_ascii_graphic())
}

/// Collects the tags of a response from its extension and its `Cache-Tag` lines (removing them), checked
/// against `max_tags`. `Err(())` when they cannot all be kept.
pub(crate) fn take_tags(
    extension: Option<CacheTags>,
    headers: &mut HeaderMap,
    max_tags: usize,
) -> Result<Vec<Arc<str>>, ()> {
    let mut tags = extension.map(|tags| tags.0).unwrap_or_default();
    let mut result = Ok(());
    if let http::header::Entry::Occupied(entry) = headers.entry(CACHE_TAG_HEADER) {
        for value in entry.remove_entry_mult().1 {
            let Ok(line) = value.to_str() else {
                result = Err(());
                continue;
            };
            for tag in line.split([',', ' ', '\t']).filter(|tag| !tag.is_empty()) {
                if tags.iter().any(|known| &**known == tag) {
                    continue;
                }
                if tags.len() >= max_tags {
                    // Stop early: a huge header costs one pass, not an allocation per tag.
                    result = Err(());
                    break;
                }
                tags.push(Arc::from(tag));
            }
        }
    }
    result?;
    tags.sort_unstable();
    tags.dedup();
    if tags.len() > max_tags || !tags.iter().all(|tag| valid_tag(tag)) {
        return Err(());
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CACHE_TAG_HEADER, HeaderValue::from_str(line).unwrap());
        }
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers
    }

    fn strs(tags: &[Arc<str>]) -> Vec<&str> {
        tags.iter().map(|t| &**t).collect()
    }

    #[test]
    fn tags_from_header_and_extension_are_merged_and_the_header_removed() {
        let mut h = headers(&["products, product:7", "catalog  products\tx"]);
        let tags = take_tags(Some(CacheTags::new(["ext"]).with("product:7")), &mut h, 16).unwrap();
        assert_eq!(
            strs(&tags),
            ["catalog", "ext", "product:7", "products", "x"]
        );
        assert!(!h.contains_key(CACHE_TAG_HEADER));
        assert!(h.contains_key("content-type"));
        assert!(
            take_tags(None, &mut HeaderMap::new(), 16)
                .unwrap()
                .is_empty()
        );
        let repeated = "t ".repeat(30_000);
        assert_eq!(
            strs(&take_tags(None, &mut headers(&[&repeated]), 16).unwrap()),
            ["t"]
        );
    }

    #[test]
    fn too_many_or_invalid_tags_refuse() {
        let many = (0..20)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut h = headers(&[&many]);
        assert!(take_tags(None, &mut h, 16).is_err());
        assert!(
            !h.contains_key(CACHE_TAG_HEADER),
            "stripped even when refused"
        );
        assert!(take_tags(Some(CacheTags::new([""])), &mut HeaderMap::new(), 16).is_err());
        assert!(
            take_tags(
                Some(CacheTags::new(["a".repeat(MAX_TAG_LEN + 1)])),
                &mut HeaderMap::new(),
                16
            )
            .is_err()
        );
        assert!(take_tags(Some(CacheTags::new(["é"])), &mut HeaderMap::new(), 16).is_err());
        let mut h = HeaderMap::new();
        h.append(
            CACHE_TAG_HEADER,
            HeaderValue::from_bytes(b"a\xffb").unwrap(),
        );
        assert!(take_tags(None, &mut h, 16).is_err());
        // a huge header line stops early instead of collecting every tag
        let huge = (0..30_000).map(|i| format!("t{i} ")).collect::<String>();
        assert!(take_tags(None, &mut headers(&[&huge]), 16).is_err());
    }
}
