//! Request IDs: kept from the client when well-formed, otherwise generated, time-sortable and cheap.
//!
//! An inbound ID is kept only if it matches `^[A-Za-z0-9._:-]{1,128}$`, so it can go into logs, headers and JSON
//! without escaping and cannot inject anything. A generated ID is 26 characters of Crockford base32: 10 for the
//! Unix time in milliseconds (so IDs sort by time), 16 for 80 bits from a per-thread generator.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The default request-ID header.
#[cfg(any(feature = "monitor", feature = "query"))]
pub(crate) static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request ID accepted or produced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A validated request ID, stored inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    bytes: [u8; MAX_REQUEST_ID_LEN],
    len: u8,
}

/// Whether `bytes` is an acceptable request ID: 1 to 128 of `A-Z a-z 0-9 . _ : -`.
pub fn is_valid_request_id(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl RequestId {
    /// Parses a client-supplied ID; `None` unless it is valid.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if !is_valid_request_id(bytes) {
            return None;
        }
        let mut id = RequestId {
            bytes: [0; MAX_REQUEST_ID_LEN],
            len: bytes.len() as u8,
        };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// The first valid value among the `name` headers, if any.
    pub fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Option<Self> {
        headers
            .get_all(name)
            .iter()
            .find_map(|value| RequestId::parse(value.as_bytes()))
    }

    /// A new time-sortable ID for the given Unix time in milliseconds.
    pub fn generate(unix_ms: u64) -> Self {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let mut id = RequestId {
            bytes: [0; MAX_REQUEST_ID_LEN],
            len: 26,
        };
        // 50 bits of milliseconds: good until the year 37648.
        for (i, byte) in id.bytes[..10].iter_mut().enumerate() {
            *byte = ALPHABET[((unix_ms >> (45 - 5 * i)) & 31) as usize];
        }
        let (high, low) = (next_random(), next_random());
        for (i, byte) in id.bytes[10..26].iter_mut().enumerate() {
            let bits = if i < 8 {
                high >> (5 * i)
            } else {
                low >> (5 * (i - 8))
            };
            *byte = ALPHABET[(bits & 31) as usize];
        }
        id
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (validated or generated from the alphabet).
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The ID as a header value.
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.as_bytes()).ok()
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// splitmix64 over a per-thread state seeded from the OS-keyed `RandomState`: unique enough for IDs, not for secrets.
fn next_random() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(state as *const Cell<u64> as usize);
            x = hasher.finish() | 1;
        }
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_are_valid_unique_and_sort_by_time() {
        let a = RequestId::generate(1_700_000_000_000);
        let b = RequestId::generate(1_700_000_000_001);
        let c = RequestId::generate(1_700_000_000_001);
        for id in [a, b, c] {
            assert!(is_valid_request_id(id.as_bytes()), "{id}");
            assert_eq!(id.as_str().len(), 26);
        }
        assert!(a.as_str() < b.as_str());
        assert_ne!(b, c);
    }

    #[test]
    fn boundaries() {
        assert!(RequestId::parse(b"").is_none());
        assert!(RequestId::parse(&[b'a'; 128]).is_some());
        assert!(RequestId::parse(&[b'a'; 129]).is_none());
        assert!(RequestId::parse(b"abc def").is_none());
        assert!(RequestId::parse(b"trace:1.2_3-4").is_some());
    }

    #[test]
    fn first_valid_header_wins() {
        let name = HeaderName::from_static("x-request-id");
        let mut headers = HeaderMap::new();
        headers.append(&name, HeaderValue::from_static("bad value"));
        headers.append(&name, HeaderValue::from_static("good-1"));
        headers.append(&name, HeaderValue::from_static("good-2"));
        assert_eq!(
            RequestId::from_headers(&headers, &name).unwrap().as_str(),
            "good-1"
        );
    }

    proptest! {
        #[test]
        fn parsed_ids_are_always_valid(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(id) = RequestId::parse(&bytes) {
                prop_assert_eq!(id.as_bytes(), &bytes[..]);
                prop_assert!(id.to_header_value().is_some());
            } else {
                prop_assert!(!is_valid_request_id(&bytes));
            }
        }
    }
}
