//! The L2 entry format: a fixed header (magic, format version, codec id, lifetimes, version point), the tags,
//! then the codec's payload.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "P2"
//! 2       1     format version (FORMAT_VERSION)
//! 3       1     codec id (Codec::id)
//! 4       8     created, Unix milliseconds (little endian, as every integer here)
//! 12      8     fresh until, Unix milliseconds (u64::MAX: never expires)
//! 20      8     stale until, Unix milliseconds (u64::MAX: never expires)
//! 28      8     born: the L2 generation read before the value was computed
//! 36      2     number of tags n (at most MAX_TAGS)
//! 38      ...   n tags: kind (1 byte: 0 user tag, 1 key prefix), length (2 bytes), UTF-8 name
//! ...     ...   payload (the rest)
//! ```
//!
//! `born` is the one version every tag was computed under: tag versions are generations of one counter, so a
//! tag invalidated after the compute started has a version above `born` (see the module docs). The header is
//! written by hand, not by the codec, so that a foreign, truncated or old-format entry is recognised whatever
//! the payload's codec is.

/// The first two bytes of every entry.
pub(crate) const MAGIC: [u8; 2] = *b"P2";
/// The format this crate writes and reads; entries of any other format are a miss.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Most tags per entry (user tags and key prefixes).
pub(crate) const MAX_TAGS: usize = 256;
/// Longest tag name stored, in bytes.
pub(crate) const MAX_TAG_BYTES: usize = 1024;
/// Bytes of the fixed header.
const HEADER: usize = 38;

/// Kind of a stored tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagKindByte {
    User = 0,
    Prefix = 1,
}

/// A decoded entry, borrowing the bytes it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub(crate) codec: u8,
    pub(crate) created_ms: u64,
    pub(crate) fresh_until_ms: u64,
    pub(crate) stale_until_ms: u64,
    pub(crate) born: u64,
    pub(crate) tags: Vec<(TagKindByte, &'a str)>,
    pub(crate) payload: &'a [u8],
}

/// Why bytes read from L2 are not an entry this crate can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not written by this crate (wrong magic).
    Foreign,
    /// Written in another format version.
    OldFormat,
    /// Cut short, or a length or kind that cannot be right.
    Corrupt,
}

/// Writes the header and tags of an entry into `out`; the payload is appended after.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_header<'t>(
    out: &mut Vec<u8>,
    codec: u8,
    created_ms: u64,
    fresh_until_ms: u64,
    stale_until_ms: u64,
    born: u64,
    tags: impl ExactSizeIterator<Item = (TagKindByte, &'t str)> + Clone,
) -> bool {
    if tags.len() > MAX_TAGS || tags.clone().any(|(_, name)| name.len() > MAX_TAG_BYTES) {
        return false;
    }
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec);
    for n in [created_ms, fresh_until_ms, stale_until_ms, born] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    for (kind, name) in tags {
        out.push(kind as u8);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    true
}

/// Reads `n` bytes at `*at`, advancing it.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], DecodeError> {
    let end = at.checked_add(n).ok_or(DecodeError::Corrupt)?;
    let slice = bytes.get(*at..end).ok_or(DecodeError::Corrupt)?;
    *at = end;
    Ok(slice)
}

fn u64_at(bytes: &[u8], at: &mut usize) -> Result<u64, DecodeError> {
    let raw = take(bytes, at, 8)?;
    let mut array = [0; 8];
    array.copy_from_slice(raw);
    Ok(u64::from_le_bytes(array))
}

fn u16_at(bytes: &[u8], at: &mut usize) -> Result<u16, DecodeError> {
    let raw = take(bytes, at, 2)?;
    Ok(u16::from_le_bytes([raw[0], raw[1]]))
}

/// Reads an entry. Never panics, whatever `bytes` holds.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    if bytes.len() < 2 || bytes[..2] != MAGIC {
        return Err(DecodeError::Foreign);
    }
    if bytes.len() < HEADER {
        return Err(DecodeError::Corrupt);
    }
    if bytes[2] != FORMAT_VERSION {
        return Err(DecodeError::OldFormat);
    }
    let codec = bytes[3];
    let mut at = 4;
    let created_ms = u64_at(bytes, &mut at)?;
    let fresh_until_ms = u64_at(bytes, &mut at)?;
    let stale_until_ms = u64_at(bytes, &mut at)?;
    let born = u64_at(bytes, &mut at)?;
    let n = u16_at(bytes, &mut at)? as usize;
    if n > MAX_TAGS || fresh_until_ms > stale_until_ms {
        return Err(DecodeError::Corrupt);
    }
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = match take(bytes, &mut at, 1)?[0] {
            0 => TagKindByte::User,
            1 => TagKindByte::Prefix,
            _ => return Err(DecodeError::Corrupt),
        };
        let len = u16_at(bytes, &mut at)? as usize;
        if len > MAX_TAG_BYTES {
            return Err(DecodeError::Corrupt);
        }
        let name =
            std::str::from_utf8(take(bytes, &mut at, len)?).map_err(|_| DecodeError::Corrupt)?;
        tags.push((kind, name));
    }
    Ok(Envelope {
        codec,
        created_ms,
        fresh_until_ms,
        stale_until_ms,
        born,
        tags,
        payload: bytes.get(at..).unwrap_or(&[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let tags = [
            (TagKindByte::User, "products"),
            (TagKindByte::Prefix, "product"),
        ];
        assert!(encode_header(
            &mut out,
            1,
            10,
            20,
            30,
            7,
            tags.iter().copied()
        ));
        out.extend_from_slice(b"payload");
        out
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let envelope = decode(&bytes).unwrap();
        assert_eq!(envelope.codec, 1);
        assert_eq!(
            (
                envelope.created_ms,
                envelope.fresh_until_ms,
                envelope.stale_until_ms,
                envelope.born
            ),
            (10, 20, 30, 7)
        );
        assert_eq!(
            envelope.tags,
            [
                (TagKindByte::User, "products"),
                (TagKindByte::Prefix, "product")
            ]
        );
        assert_eq!(envelope.payload, b"payload");
    }

    #[test]
    fn foreign_old_truncated_and_corrupt_are_errors() {
        assert_eq!(decode(b""), Err(DecodeError::Foreign));
        assert_eq!(decode(b"{\"json\":1}"), Err(DecodeError::Foreign));
        let mut old = sample();
        old[2] = 0;
        assert_eq!(decode(&old), Err(DecodeError::OldFormat));
        let bytes = sample();
        for cut in 2..HEADER + 12 {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_kind = sample();
        bad_kind[HEADER] = 9;
        assert_eq!(decode(&bad_kind), Err(DecodeError::Corrupt));
        let mut too_many = sample();
        too_many[36..38].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(decode(&too_many), Err(DecodeError::Corrupt));
        let long = "x".repeat(MAX_TAG_BYTES + 1);
        assert!(!encode_header(
            &mut Vec::new(),
            1,
            0,
            0,
            0,
            0,
            [(TagKindByte::User, long.as_str())].into_iter()
        ));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_flip_of_a_valid_entry_decodes_without_panic(at in 0usize..60, to in any::<u8>()) {
            let mut bytes = sample();
            if let Some(b) = bytes.get_mut(at) {
                *b = to;
            }
            let _ = decode(&bytes);
        }

        #[test]
        fn encoded_entries_round_trip(
            tags in proptest::collection::vec(("[a-z:0-9]{0,20}", any::<bool>()), 0..10),
            times in (any::<u64>(), any::<u64>(), any::<u64>()),
            payload in proptest::collection::vec(any::<u8>(), 0..50),
        ) {
            let (fresh, stale) = if times.1 <= times.2 { (times.1, times.2) } else { (times.2, times.1) };
            let tags: Vec<(TagKindByte, &str)> = tags
                .iter()
                .map(|(name, prefix)| (if *prefix { TagKindByte::Prefix } else { TagKindByte::User }, name.as_str()))
                .collect();
            let mut out = Vec::new();
            prop_assert!(encode_header(&mut out, 3, times.0, fresh, stale, 5, tags.iter().copied()));
            out.extend_from_slice(&payload);
            let envelope = decode(&out).unwrap();
            prop_assert_eq!(envelope.tags, tags);
            prop_assert_eq!(envelope.payload, &payload[..]);
            prop_assert_eq!(envelope.fresh_until_ms, fresh);
        }
    }
}
