//! Structured cache keys: `namespace:part:part`, with O(1) prefix invalidation.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use super::error::KeyParseError;

/// How many leading parts get an implicit prefix tag: a key `a:b:c:d:e` can be invalidated by the prefixes `a`,
/// `a:b` and `a:b:c` in O(1); a longer prefix invalidates everything under its first three parts (more than
/// asked, never less).
pub const PREFIX_DEPTH: usize = 3;

/// A structured key: a namespace and parts, shown as `namespace:part:part`.
///
/// ```
/// use perfscope::cache::CacheKey;
///
/// let key = CacheKey::new("product").part(42).part("details");
/// assert_eq!(key.to_string(), "product:42:details");
/// assert_eq!(key.namespace(), "product");
/// assert_eq!(key.len(), 3);
/// // A ':' or '\' inside a part is escaped, so every key reads back to the same parts.
/// let odd = CacheKey::new("url").part("http://x");
/// assert_eq!(odd.as_str(), r"url:http\://x");
/// assert_eq!(odd.as_str().parse::<CacheKey>().unwrap(), odd);
/// ```
///
/// Cloning is a reference-count increment; hashing and comparing use the text only. The namespace (the first
/// part) is the key's statistics bucket, and every proper prefix of up to [`PREFIX_DEPTH`] parts is an implicit
/// tag, so [`Cache::invalidate_prefix`](super::Cache::invalidate_prefix)`("product:42")` removes
/// `product:42` and everything under `product:42:` in O(1).
#[derive(Clone)]
pub struct CacheKey {
    text: Arc<str>,
    /// Byte offsets of the first `PREFIX_DEPTH` separators.
    seps: [u32; PREFIX_DEPTH],
    /// Number of separators (parts - 1), saturating.
    nseps: u32,
}

/// Appends `part` to `out`, escaping `:` and `\`.
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            if ch == ':' || ch == '\\' {
                self.0.push('\\');
            }
            self.0.push(ch);
        }
        Ok(())
    }
}

fn escaped(part: impl fmt::Display, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    // Escaper never fails; a Display impl that returns an error leaves what it wrote so far.
    let _ = write!(Escaper(&mut out), "{part}");
    out
}

/// Byte offsets of the unescaped `:` separators in `text` (a `\` escapes the next character).
pub(crate) fn separators(text: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b':' => {
                    i += 1;
                    return Some(i - 1);
                }
                _ => i += 1,
            }
        }
        None
    })
}

fn offset(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl CacheKey {
    /// A key with one part, its namespace.
    pub fn new(namespace: impl fmt::Display) -> Self {
        CacheKey {
            text: Arc::from(escaped(namespace, 16)),
            seps: [0; PREFIX_DEPTH],
            nseps: 0,
        }
    }

    /// This key with one more part.
    #[must_use]
    pub fn part(self, part: impl fmt::Display) -> Self {
        let mut text = String::with_capacity(self.text.len() + 16);
        text.push_str(&self.text);
        let sep = text.len();
        text.push(':');
        let _ = write!(Escaper(&mut text), "{part}");
        let mut seps = self.seps;
        if let Some(slot) = seps.get_mut(self.nseps as usize) {
            *slot = offset(sep);
        }
        CacheKey {
            text: Arc::from(text),
            seps,
            nseps: self.nseps.saturating_add(1),
        }
    }

    /// A key from its text form (`a:b:c`, with `\:` and `\\` inside parts).
    pub fn parse(text: &str) -> Result<Self, KeyParseError> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                if !matches!(bytes.get(i + 1), Some(b':' | b'\\')) {
                    return Err(KeyParseError {
                        text: text.to_owned(),
                    });
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        let mut seps = [0; PREFIX_DEPTH];
        let mut nseps = 0_u32;
        for sep in separators(text) {
            if let Some(slot) = seps.get_mut(nseps as usize) {
                *slot = offset(sep);
            }
            nseps = nseps.saturating_add(1);
        }
        Ok(CacheKey {
            text: Arc::from(text),
            seps,
            nseps,
        })
    }

    /// The text form, as shown by `Display`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first part (escaped as in the text form): the key's statistics namespace.
    pub fn namespace(&self) -> &str {
        if self.nseps == 0 {
            &self.text
        } else {
            self.text.get(..self.seps[0] as usize).unwrap_or(&self.text)
        }
    }

    /// The number of parts.
    #[allow(clippy::len_without_is_empty)] // a key always has at least one part
    pub fn len(&self) -> usize {
        self.nseps as usize + 1
    }

    /// The parts, unescaped.
    pub fn parts(&self) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        let text: &str = &self.text;
        let mut start = 0;
        let mut seps = separators(text).chain(std::iter::once(text.len()));
        std::iter::from_fn(move || {
            let end = seps.next()?;
            let raw = text.get(start..end).unwrap_or("");
            start = end + 1;
            Some(unescape(raw))
        })
    }

    /// Whether `prefix`'s parts are the first parts of this key (a key is a prefix of itself).
    pub fn starts_with(&self, prefix: &CacheKey) -> bool {
        let (key, p) = (self.as_str(), prefix.as_str());
        key == p
            || (key.starts_with(p) && key.as_bytes().get(p.len()) == Some(&b':') && {
                // The ':' right after the prefix must be a separator, not an escaped part character.
                separators(key).any(|sep| sep == p.len())
            })
    }

    /// The implicit prefix tags of this key: its first 1..=min(len-1, PREFIX_DEPTH) parts.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &str> + '_ {
        let count = (self.nseps as usize).min(PREFIX_DEPTH);
        self.seps[..count]
            .iter()
            .filter_map(|&end| self.text.get(..end as usize))
    }
}

fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for CacheKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CacheKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheKey").field(&&*self.text).finish()
    }
}

impl FromStr for CacheKey {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CacheKey::parse(text)
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// The text of a string-like key ([`CacheKey`], `String`, `Arc<str>`, `Box<str>`, `&'static str`), with
/// whether its first part is a namespace even when it is the only part.
pub(crate) fn key_text<K: 'static>(key: &K) -> Option<(&str, bool)> {
    let any = key as &dyn Any;
    if let Some(key) = any.downcast_ref::<CacheKey>() {
        Some((key.as_str(), true))
    } else if let Some(key) = any.downcast_ref::<String>() {
        Some((key.as_str(), false))
    } else if let Some(key) = any.downcast_ref::<Arc<str>>() {
        Some((key, false))
    } else if let Some(key) = any.downcast_ref::<Box<str>>() {
        Some((key, false))
    } else if let Some(key) = any.downcast_ref::<&'static str>() {
        Some((key, false))
    } else {
        None
    }
}

/// Whether `K` is one of the string-like key types of [`key_text`].
pub(crate) fn is_text_key<K: 'static>() -> bool {
    let id = TypeId::of::<K>();
    id == TypeId::of::<CacheKey>()
        || id == TypeId::of::<String>()
        || id == TypeId::of::<Arc<str>>()
        || id == TypeId::of::<Box<str>>()
        || id == TypeId::of::<&'static str>()
}

/// A key of type `K` from its text, for the string-like key types (`&'static str` cannot be built).
pub(crate) fn key_from_text<K: 'static>(text: &str) -> Option<K> {
    let id = TypeId::of::<K>();
    let boxed: Box<dyn Any> = if id == TypeId::of::<CacheKey>() {
        Box::new(CacheKey::parse(text).ok()?)
    } else if id == TypeId::of::<String>() {
        Box::new(text.to_owned())
    } else if id == TypeId::of::<Arc<str>>() {
        Box::new(Arc::<str>::from(text))
    } else if id == TypeId::of::<Box<str>>() {
        Box::new(Box::<str>::from(text))
    } else {
        return None;
    };
    boxed.downcast::<K>().ok().map(|key| *key)
}

/// The text of a key in the second level and on the bus: the key's own text for the string-like key types, the
/// bytes in lowercase hex for a response cache's [`ResponseKey`](super::http::ResponseKey).
#[cfg(feature = "redis")]
pub(crate) fn wire_key<K: 'static>(key: &K) -> Option<Cow<'_, str>> {
    if let Some((text, _)) = key_text(key) {
        return Some(Cow::Borrowed(text));
    }
    (key as &dyn Any)
        .downcast_ref::<super::http::ResponseKey>()
        .map(|key| Cow::Owned(key.to_hex()))
}

/// A key of type `K` from its [`wire_key`] text.
#[cfg(feature = "redis")]
pub(crate) fn key_from_wire<K: 'static>(text: &str) -> Option<K> {
    if TypeId::of::<K>() == TypeId::of::<super::http::ResponseKey>() {
        let key: Box<dyn Any> = Box::new(super::http::ResponseKey::from_hex(text)?);
        return key.downcast::<K>().ok().map(|key| *key);
    }
    key_from_text(text)
}

/// Whether keys of type `K` have a [`wire_key`] text.
#[cfg(feature = "redis")]
pub(crate) fn has_wire_key<K: 'static>() -> bool {
    is_text_key::<K>() || TypeId::of::<K>() == TypeId::of::<super::http::ResponseKey>()
}

/// The statistics namespace of a string-like key: the first part (for plain strings only when there is more
/// than one part, so single-part string keys do not each become a namespace).
pub(crate) fn text_namespace(text: &str, always: bool) -> Option<&str> {
    if !text.contains(':') {
        return always.then_some(text);
    }
    match separators(text).next() {
        Some(end) => text.get(..end),
        None if always => Some(text),
        None => None,
    }
}

/// The implicit prefix tags of a string-like key's text.
pub(crate) fn text_prefixes(text: &str) -> impl Iterator<Item = &str> + '_ {
    separators(text)
        .take(PREFIX_DEPTH)
        .filter_map(move |end| text.get(..end))
}

/// `prefix` without a trailing `:*` (an unescaped separator followed by `*` as the last part).
pub(crate) fn strip_wildcard(prefix: &str) -> &str {
    match prefix.strip_suffix('*') {
        Some(rest) if rest.ends_with(':') && separators(rest).last() == Some(rest.len() - 1) => {
            &rest[..rest.len() - 1]
        }
        _ => prefix,
    }
}

/// The prefix tag that covers every key under `prefix` (a trailing `:*` is ignored): the prefix itself when it
/// has at most [`PREFIX_DEPTH`] parts, else its first `PREFIX_DEPTH` parts.
pub(crate) fn prefix_tag(prefix: &str) -> &str {
    let prefix = strip_wildcard(prefix);
    match separators(prefix).nth(PREFIX_DEPTH - 1) {
        Some(end) => prefix.get(..end).unwrap_or(prefix),
        None => prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_displays_and_parses() {
        let key = CacheKey::new("product").part(42).part("details");
        assert_eq!(key.as_str(), "product:42:details");
        assert_eq!(key.namespace(), "product");
        assert_eq!(key.len(), 3);
        assert_eq!(
            key.prefixes().collect::<Vec<_>>(),
            ["product", "product:42"]
        );
        assert_eq!(CacheKey::parse("product:42:details").unwrap(), key);
        assert_eq!(format!("{key:?}"), "CacheKey(\"product:42:details\")");
        assert!(CacheKey::parse(r"a\b").is_err());
        assert!(CacheKey::parse("a\\").is_err());
        let odd = CacheKey::new("a:b").part(r"c\d");
        assert_eq!(odd.as_str(), r"a\:b:c\\d");
        assert_eq!(odd.parts().collect::<Vec<_>>(), ["a:b", r"c\d"]);
        assert_eq!(odd.namespace(), r"a\:b");
        let deep = CacheKey::new("a").part("b").part("c").part("d").part("e");
        assert_eq!(deep.prefixes().collect::<Vec<_>>(), ["a", "a:b", "a:b:c"]);
    }

    #[test]
    fn prefix_relations() {
        let key = CacheKey::new("product").part(42).part("details");
        assert!(key.starts_with(&CacheKey::new("product")));
        assert!(key.starts_with(&CacheKey::new("product").part(42)));
        assert!(key.starts_with(&key));
        assert!(!key.starts_with(&CacheKey::new("product").part(4)));
        assert!(!CacheKey::new("a:b").starts_with(&CacheKey::new("a")));
        assert_eq!(prefix_tag("product:42"), "product:42");
        assert_eq!(prefix_tag("product:42:*"), "product:42");
        assert_eq!(prefix_tag("a:b:c:d:e"), "a:b:c");
        assert_eq!(prefix_tag(r"a\:*"), r"a\:*");
        assert_eq!(strip_wildcard("a:*"), "a");
        assert_eq!(strip_wildcard("*"), "*");
        assert_eq!(text_namespace("orders:7", false), Some("orders"));
        assert_eq!(text_namespace("orders", false), None);
        assert_eq!(text_namespace("orders", true), Some("orders"));
        assert_eq!(text_prefixes("a:b:c").collect::<Vec<_>>(), ["a", "a:b"]);
    }

    #[test]
    fn string_like_keys_convert() {
        assert_eq!(key_text(&String::from("a:b")), Some(("a:b", false)));
        assert_eq!(key_text(&CacheKey::new("a")), Some(("a", true)));
        assert_eq!(key_text(&5_u64), None);
        assert!(is_text_key::<Arc<str>>() && !is_text_key::<u64>());
        assert_eq!(key_from_text::<String>("x:y"), Some("x:y".to_owned()));
        assert_eq!(
            key_from_text::<CacheKey>("x:y"),
            Some(CacheKey::new("x").part("y"))
        );
        assert_eq!(key_from_text::<u64>("1"), None);
    }

    fn part() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-z0-9:\\\\*é]{0,6}").unwrap()
    }

    proptest! {
        #[test]
        fn text_round_trips_and_parts_survive(parts in proptest::collection::vec(part(), 1..7)) {
            let mut key = CacheKey::new(&parts[0]);
            for p in &parts[1..] {
                key = key.part(p);
            }
            let parsed = CacheKey::parse(key.as_str()).unwrap();
            prop_assert_eq!(&parsed, &key);
            prop_assert_eq!(parsed.to_string(), key.to_string());
            let back: Vec<String> = parsed.parts().map(Cow::into_owned).collect();
            prop_assert_eq!(&back, &parts);
            prop_assert_eq!(parsed.prefixes().collect::<Vec<_>>(), key.prefixes().collect::<Vec<_>>());
            prop_assert_eq!(key.len(), parts.len());
        }

        #[test]
        fn every_prefix_is_covered_by_its_tag(parts in proptest::collection::vec(part(), 1..7), cut in 1_usize..7) {
            let mut key = CacheKey::new(&parts[0]);
            for p in &parts[1..] {
                key = key.part(p);
            }
            let cut = cut.min(parts.len());
            let mut prefix = CacheKey::new(&parts[0]);
            for p in &parts[1..cut] {
                prefix = prefix.part(p);
            }
            prop_assert!(key.starts_with(&prefix));
            // Invalidating `prefix` bumps prefix_tag(prefix); the key carries that tag unless it is the prefix
            // itself (which invalidate_prefix removes by key).
            let tag = prefix_tag(prefix.as_str());
            if key != prefix {
                prop_assert!(key.prefixes().any(|p| p == tag), "{} lacks {}", key, tag);
            }
            // Plain-string keys carry the same tags.
            prop_assert_eq!(text_prefixes(key.as_str()).collect::<Vec<_>>(), key.prefixes().collect::<Vec<_>>());
        }

        #[test]
        fn unrelated_keys_are_not_prefixes(a in proptest::collection::vec(part(), 1..4), b in proptest::collection::vec(part(), 1..4)) {
            let build = |parts: &[String]| {
                let mut key = CacheKey::new(&parts[0]);
                for p in &parts[1..] {
                    key = key.part(p);
                }
                key
            };
            let (ka, kb) = (build(&a), build(&b));
            prop_assert_eq!(ka.starts_with(&kb), a.starts_with(&b));
        }
    }
}
