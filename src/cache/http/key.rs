//! Cache keys: which parts of a request select a stored response.
//!
//! A key is the bytes themselves (no hash, so two requests can never collide), built from length-prefixed,
//! tagged parts so that no choice of values can make two different requests encode alike:
//!
//! - the method (`HEAD` looks up `GET`),
//! - the URI scheme and authority, and the `Host` header: never `X-Forwarded-Host`,
//! - the route template (axum's `MatchedPath`, which tells nested routers apart) and the raw path,
//! - the query pairs, sorted by name (values of one name keep their order), all of them or an allowlist,
//! - the values of the keyed request headers (by default the forwarding headers that commonly change what a
//!   handler renders, so `X-Forwarded-Host: evil` lands in its own entry),
//! - the identity a route opted into ([`CacheIdentity`](super::CacheIdentity)),
//! - then, in the variant key only, the request's values of the headers the stored response's `Vary` names.
//!
//! A key longer than the layer's `max_key_bytes` is not built: the request bypasses the cache.

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, Method, Uri};

/// How many header names a `Vary` may list before the response is not stored.
pub(crate) const MAX_VARY: usize = 4;

/// The opaque key of one stored entry; built by the layer, one per request (and one more per `Vary` variant).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResponseKey(Bytes);

impl ResponseKey {
    /// The encoded length, counted in the entry's weight.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: every key names at least a method and a path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's bytes in lowercase hex: its name in the second level and on the invalidation bus.
    #[cfg(feature = "redis")]
    pub(crate) fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(self.0.len() * 2);
        for byte in self.0.iter() {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// The key whose [`to_hex`](ResponseKey::to_hex) is `text`; `None` for anything else.
    #[cfg(feature = "redis")]
    pub(crate) fn from_hex(text: &str) -> Option<ResponseKey> {
        fn digit(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let bytes = text.as_bytes();
        if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
            return None;
        }
        let decoded = bytes
            .chunks_exact(2)
            .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
            .collect::<Option<Vec<u8>>>()?;
        Some(ResponseKey(Bytes::from(decoded)))
    }
}

impl std::fmt::Debug for ResponseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys hold header values (an identity, forwarding headers): show only their size.
        f.debug_struct("ResponseKey")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

/// Which query parameters are part of the key.
#[derive(Debug, Clone, Default)]
pub(crate) enum QueryKey {
    /// All of them, sorted by name.
    #[default]
    All,
    /// Only these (compared after percent-decoding the name), sorted by name; the others are ignored.
    Allow(Box<[Box<str>]>),
}

/// The per-layer inputs of key building.
#[derive(Debug, Clone)]
pub(crate) struct KeyConfig {
    pub(crate) query: QueryKey,
    pub(crate) headers: Box<[HeaderName]>,
    pub(crate) max_key_bytes: usize,
}

/// The request headers keyed by default: forwarding headers that commonly change what a handler renders.
pub(crate) const DEFAULT_KEY_HEADERS: [&str; 10] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-rewrite-url",
];

/// Part tags: each part is `tag, u32 length (LE), bytes`.
mod tag {
    pub(super) const VERSION: u8 = 1;
    pub(super) const METHOD: u8 = b'M';
    pub(super) const SCHEME: u8 = b'S';
    pub(super) const AUTHORITY: u8 = b'A';
    pub(super) const ROUTE: u8 = b'R';
    pub(super) const PATH: u8 = b'P';
    pub(super) const QUERY_NAME: u8 = b'q';
    pub(super) const QUERY_VALUE: u8 = b'v';
    pub(super) const QUERY_FLAG: u8 = b'f';
    pub(super) const HEADER_NAME: u8 = b'k';
    pub(super) const HEADER_VALUE: u8 = b'h';
    pub(super) const IDENTITY: u8 = b'I';
    pub(super) const VARY: u8 = b'Y';
}

/// Appends tagged, length-prefixed parts while staying under a byte limit.
struct KeyWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl KeyWriter {
    fn new(capacity: usize, limit: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.min(limit));
        buf.push(tag::VERSION);
        KeyWriter { buf, limit }
    }

    /// Adds a part; `None` once the key would exceed the limit.
    fn part(&mut self, tag: u8, bytes: &[u8]) -> Option<()> {
        let len = u32::try_from(bytes.len()).ok()?;
        if self.buf.len() + 5 + bytes.len() > self.limit {
            return None;
        }
        self.buf.push(tag);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(bytes);
        Some(())
    }

    /// Adds `name` and each value of it in `headers` (in order); nothing when it is absent (the names are
    /// tagged, so which headers were present is still encoded).
    fn header(&mut self, headers: &HeaderMap, name: &HeaderName) -> Option<()> {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Some(());
        }
        self.part(tag::HEADER_NAME, name.as_str().as_bytes())?;
        values.try_for_each(|value| self.part(tag::HEADER_VALUE, value.as_bytes()))
    }

    fn finish(self) -> ResponseKey {
        ResponseKey(Bytes::from(self.buf))
    }
}

/// What key building reads from a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyInput<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) route: Option<&'a str>,
    pub(crate) identity: Option<&'a [u8]>,
}

/// The base key of a request, or `None` when it would exceed `config.max_key_bytes`.
pub(crate) fn base_key(input: KeyInput<'_>, config: &KeyConfig) -> Option<ResponseKey> {
    let uri = input.uri;
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    // Cheap early refusal before any sorting work.
    if path.len() + query.len() > config.max_key_bytes {
        return None;
    }
    let method: &[u8] = if input.method == Method::HEAD {
        b"GET"
    } else {
        input.method.as_str().as_bytes()
    };
    let mut key = KeyWriter::new(64 + path.len() + query.len(), config.max_key_bytes);
    key.part(tag::METHOD, method)?;
    key.part(tag::SCHEME, uri.scheme_str().unwrap_or("").as_bytes())?;
    key.part(
        tag::AUTHORITY,
        uri.authority().map_or("", |a| a.as_str()).as_bytes(),
    )?;
    key.header(input.headers, &HOST)?;
    key.part(tag::ROUTE, input.route.unwrap_or("").as_bytes())?;
    key.part(tag::PATH, path.as_bytes())?;
    write_query(&mut key, query, &config.query)?;
    for name in config.headers.iter() {
        key.header(input.headers, name)?;
    }
    if let Some(identity) = input.identity {
        key.part(tag::IDENTITY, identity)?;
    }
    Some(key.finish())
}

fn write_query(key: &mut KeyWriter, query: &str, config: &QueryKey) -> Option<()> {
    let mut pairs: Vec<(&str, Option<&str>)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (pair, None),
        })
        .filter(|(name, _)| match config {
            QueryKey::All => true,
            QueryKey::Allow(allowed) => allowed.iter().any(|a| decoded_name_eq(name, a)),
        })
        .collect();
    // Stable: the values of one name keep their order, which a handler reading a list may depend on.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in pairs {
        key.part(tag::QUERY_NAME, name.as_bytes())?;
        match value {
            Some(value) => key.part(tag::QUERY_VALUE, value.as_bytes())?,
            None => key.part(tag::QUERY_FLAG, &[])?,
        }
    }
    Some(())
}

/// Whether the form-urlencoded `raw` name decodes to `expected` (so `p%61ge` cannot dodge an allowlisted `page`).
fn decoded_name_eq(raw: &str, expected: &str) -> bool {
    let mut raw = raw.as_bytes();
    let mut expected = expected.as_bytes();
    loop {
        let (byte, rest) = match raw {
            [] => return expected.is_empty(),
            [b'+', rest @ ..] => (b' ', rest),
            [b'%', hi, lo, rest @ ..] => match (hex(*hi), hex(*lo)) {
                (Some(hi), Some(lo)) => ((hi << 4) | lo, rest),
                _ => (b'%', &raw[1..]),
            },
            [byte, rest @ ..] => (*byte, rest),
        };
        match expected {
            [first, tail @ ..] if *first == byte => expected = tail,
            _ => return false,
        }
        raw = rest;
    }
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The header names a response's `Vary` lists: lowercased, sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VarySpec(Box<[HeaderName]>);

/// Why a `Vary` makes a response unstorable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VaryError {
    /// `Vary: *` never matches (RFC 9111 §4.1).
    Star,
    /// More than [`MAX_VARY`] names, or a name that is not a header name.
    Unsupported,
}

impl VarySpec {
    /// The spec of `headers`' `Vary` lines; `Ok(None)` when there is none.
    pub(crate) fn from_response(headers: &HeaderMap) -> Result<Option<VarySpec>, VaryError> {
        let mut names: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(http::header::VARY) {
            for name in value.as_bytes().split(|&b| b == b',') {
                let name = name.trim_ascii();
                if name.is_empty() {
                    continue;
                }
                if name == b"*" {
                    return Err(VaryError::Star);
                }
                // HeaderName::from_bytes lowercases.
                let name = HeaderName::from_bytes(name).map_err(|_| VaryError::Unsupported)?;
                if !names.contains(&name) {
                    if names.len() == MAX_VARY {
                        return Err(VaryError::Unsupported);
                    }
                    names.push(name);
                }
            }
        }
        if names.is_empty() {
            return Ok(None);
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(Some(VarySpec(names.into_boxed_slice())))
    }

    /// The spec of these names (as read back from the second level): `None` when there are none or too many.
    #[cfg(feature = "redis")]
    pub(crate) fn from_names(mut names: Vec<HeaderName>) -> Option<VarySpec> {
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        (!names.is_empty() && names.len() <= MAX_VARY).then(|| VarySpec(names.into_boxed_slice()))
    }

    /// The names, sorted.
    pub(crate) fn names(&self) -> &[HeaderName] {
        &self.0
    }

    /// The variant key: the base key plus the request's values of each named header.
    pub(crate) fn variant_key(
        &self,
        base: &ResponseKey,
        request: &HeaderMap,
        max_key_bytes: usize,
    ) -> Option<ResponseKey> {
        let mut key = KeyWriter {
            buf: Vec::with_capacity(base.len() + 64),
            limit: max_key_bytes,
        };
        key.buf.extend_from_slice(base.as_bytes());
        key.part(tag::VARY, &[])?;
        for name in self.0.iter() {
            key.header(request, name)?;
        }
        Some(key.finish())
    }

    /// Bytes counted in an entry's weight.
    pub(crate) fn weight(&self) -> usize {
        self.0.iter().map(|name| name.as_str().len() + 24).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Request};
    use proptest::prelude::*;

    fn config() -> KeyConfig {
        KeyConfig {
            query: QueryKey::All,
            headers: DEFAULT_KEY_HEADERS
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect(),
            max_key_bytes: 4096,
        }
    }

    fn key_of(request: &Request<()>, config: &KeyConfig) -> Option<ResponseKey> {
        base_key(
            KeyInput {
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                route: None,
                identity: None,
            },
            config,
        )
    }

    fn key(uri: &str, headers: &[(&str, &str)]) -> ResponseKey {
        let mut request = Request::get(uri).body(()).unwrap();
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        key_of(&request, &config()).unwrap()
    }

    #[test]
    fn query_order_does_not_matter_but_repeated_values_keep_theirs() {
        assert_eq!(key("/p?b=2&a=1", &[]), key("/p?a=1&b=2", &[]));
        assert_eq!(key("/p?a=1&&b=2&", &[]), key("/p?a=1&b=2", &[]));
        assert_ne!(key("/p?id=1&id=2", &[]), key("/p?id=2&id=1", &[]));
        assert_ne!(key("/p?a", &[]), key("/p?a=", &[]));
        assert_ne!(key("/p?a=1", &[]), key("/p", &[]));
        assert_ne!(key("/p?a=%41", &[]), key("/p?a=A", &[]));
    }

    #[test]
    fn host_comes_from_host_and_authority_only() {
        assert_ne!(
            key("/p", &[("host", "a.example")]),
            key("/p", &[("host", "b.example")])
        );
        assert_ne!(
            key("http://a.example/p", &[]),
            key("http://b.example/p", &[])
        );
        assert_ne!(
            key("http://a.example/p", &[]),
            key("https://a.example/p", &[])
        );
        // forwarding headers are keyed, so they get their own entry instead of changing the clean one
        let clean = key("/p", &[("host", "a.example")]);
        let forwarded = key("/p", &[("host", "a.example"), ("x-forwarded-host", "evil")]);
        assert_ne!(clean, forwarded);
        // unlisted headers do not matter
        assert_eq!(
            clean,
            key("/p", &[("host", "a.example"), ("user-agent", "x")])
        );
    }

    #[test]
    fn head_shares_the_get_key_and_other_methods_do_not() {
        let get = key("/p", &[]);
        let mut head = Request::head("/p").body(()).unwrap();
        assert_eq!(key_of(&head, &config()).unwrap(), get);
        *head.method_mut() = Method::POST;
        assert_ne!(key_of(&head, &config()).unwrap(), get);
    }

    #[test]
    fn route_and_identity_are_keyed() {
        let request = Request::get("/p").body(()).unwrap();
        let input = |route, identity| KeyInput {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            route,
            identity,
        };
        let c = config();
        let plain = base_key(input(None, None), &c).unwrap();
        assert_ne!(plain, base_key(input(Some("/v1/p"), None), &c).unwrap());
        assert_ne!(plain, base_key(input(None, Some(b"user-1")), &c).unwrap());
        assert_ne!(
            base_key(input(None, Some(b"user-1")), &c).unwrap(),
            base_key(input(None, Some(b"user-2")), &c).unwrap()
        );
        // an empty identity is still not "no identity"
        assert_ne!(plain, base_key(input(None, Some(b"")), &c).unwrap());
    }

    #[test]
    fn allowlist_collapses_other_params_and_decodes_names() {
        let mut c = config();
        c.query = QueryKey::Allow(vec!["page".into()].into_boxed_slice());
        let k = |uri: &str| key_of(&Request::get(uri).body(()).unwrap(), &c).unwrap();
        assert_eq!(k("/p?page=2&cb=1"), k("/p?cb=999&page=2"));
        assert_eq!(k("/p?cb=1"), k("/p"));
        assert_ne!(k("/p?page=2"), k("/p?page=3"));
        // an encoded name is still the allowlisted one
        assert_ne!(k("/p?p%61ge=2"), k("/p"));
        assert!(decoded_name_eq("p%61ge", "page"));
        assert!(decoded_name_eq("a+b", "a b"));
        assert!(decoded_name_eq("100%", "100%"));
        assert!(!decoded_name_eq("pag", "page"));
        assert!(!decoded_name_eq("pagee", "page"));
    }

    #[test]
    fn too_long_keys_are_refused() {
        let mut c = config();
        c.max_key_bytes = 100;
        let long = format!("/p?{}", "a=1&".repeat(40));
        assert!(key_of(&Request::get(long.as_str()).body(()).unwrap(), &c).is_none());
        let mut request = Request::get("/p").body(()).unwrap();
        request.headers_mut().insert(
            "x-forwarded-host",
            HeaderValue::from_str(&"e".repeat(200)).unwrap(),
        );
        assert!(key_of(&request, &c).is_none());
        assert!(key_of(&Request::get("/p").body(()).unwrap(), &c).is_some());
    }

    #[test]
    fn vary_spec_parsing() {
        let spec = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(http::header::VARY, HeaderValue::from_str(line).unwrap());
            }
            VarySpec::from_response(&headers)
        };
        assert_eq!(spec(&[]), Ok(None));
        assert_eq!(spec(&[" , "]), Ok(None));
        let s = spec(&["Accept-Language, accept-encoding", "ACCEPT-LANGUAGE"])
            .unwrap()
            .unwrap();
        let names: Vec<&str> = s.names().iter().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept-encoding", "accept-language"]);
        assert_eq!(spec(&["accept, *"]), Err(VaryError::Star));
        assert_eq!(spec(&["a, b, c, d, e"]), Err(VaryError::Unsupported));
        assert!(spec(&["a, b, c, d, a"]).unwrap().is_some());
        assert_eq!(spec(&["bad name"]), Err(VaryError::Unsupported));
    }

    #[test]
    fn variant_keys_follow_request_values() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::VARY,
            HeaderValue::from_static("accept-language"),
        );
        let spec = VarySpec::from_response(&headers).unwrap().unwrap();
        let base = key("/p", &[]);
        let variant = |value: Option<&str>| {
            let mut request = HeaderMap::new();
            if let Some(value) = value {
                request.insert("accept-language", HeaderValue::from_str(value).unwrap());
            }
            spec.variant_key(&base, &request, 4096).unwrap()
        };
        assert_ne!(variant(Some("en")), variant(Some("de")));
        assert_ne!(variant(Some("")), variant(None));
        assert_eq!(variant(Some("en")), variant(Some("en")));
        assert_ne!(variant(None), base);
    }

    proptest! {
        #[test]
        fn permuting_distinct_query_names_keeps_the_key(
            pairs in proptest::collection::btree_map("[a-z]{1,6}", "[a-zA-Z0-9%]{0,6}", 0..8),
            seed in any::<u64>(),
        ) {
            let mut list: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let sorted = format!("/p?{}", list.join("&"));
            // a deterministic shuffle
            let mut s = seed;
            for i in (1..list.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                list.swap(i, (s >> 33) as usize % (i + 1));
            }
            let shuffled = format!("/p?{}", list.join("&"));
            prop_assert_eq!(key(&sorted, &[]), key(&shuffled, &[]));
        }

        #[test]
        fn different_paths_or_values_never_share_a_key(
            a in "/[a-z0-9/]{0,12}", b in "/[a-z0-9/]{0,12}",
            va in "[a-z0-9=&]{0,10}", vb in "[a-z0-9=&]{0,10}",
        ) {
            let (qa, qb) = (format!("x={va}"), format!("x={vb}"));
            let ka = key(&format!("{a}?{qa}"), &[]);
            let kb = key(&format!("{b}?{qb}"), &[]);
            // the same request: same path and the same pairs once stably sorted by name
            let pairs = |q: &str| {
                let mut pairs: Vec<String> = q.split('&').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                pairs.sort_by(|x, y| x.split('=').next().cmp(&y.split('=').next()));
                pairs
            };
            prop_assert_eq!(ka == kb, a == b && pairs(&qa) == pairs(&qb));
        }

        #[test]
        fn header_values_are_unambiguous(
            values_a in proptest::collection::vec("[ -~]{0,8}", 0..3),
            values_b in proptest::collection::vec("[ -~]{0,8}", 0..3),
        ) {
            fn headers(values: &[String]) -> Vec<(&str, &str)> {
                values.iter().map(|v| ("x-forwarded-host", v.as_str())).collect()
            }
            let ka = key("/p", &headers(&values_a));
            let kb = key("/p", &headers(&values_b));
            // HeaderValue keeps bytes as given except surrounding whitespace, which from_str rejects or keeps
            prop_assert_eq!(ka == kb, values_a == values_b);
        }

        #[test]
        fn key_building_never_panics_and_respects_the_limit(
            path in "/[ -~]{0,300}",
            limit in 16usize..600,
        ) {
            let Ok(uri) = path.parse::<Uri>() else { return Ok(()) };
            let request = Request::get(uri).body(()).unwrap();
            let mut c = config();
            c.max_key_bytes = limit;
            if let Some(k) = key_of(&request, &c) {
                prop_assert!(k.len() <= limit);
            }
        }
    }
}
