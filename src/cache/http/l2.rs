//! [`ResponseCodec`]: how a stored response becomes the payload of a second-level entry and back.
//!
//! ```text
//! kind u8: 0 a response, 1 the `Vary` names of a base key
//! response: status u16, stored at (Unix ms) u64, fresh for, stale-while-revalidate, stale-if-error, initial
//!           age (ms, u64 each), vary (count u8, then names), headers (count u16, then name u16+bytes, value
//!           u32+bytes), body (u32 + bytes)
//! vary:     count u8, then names (u16 + bytes)
//! ```
//!
//! Integers are little endian. Every length is checked against what is left, and names and values against
//! `http`'s rules, so a corrupt payload is an error, never a panic.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::entry::{CachedResponse, Entry, Stored};
use super::key::{MAX_VARY, VarySpec};
use super::policy::Freshness;
use crate::cache::l2::Codec;

/// The id of [`ResponseCodec`] in entry headers.
const RESPONSE_CODEC_ID: u8 = 2;

const RESPONSE: u8 = 0;
const VARY: u8 = 1;

/// The codec of a response cache's second level: status, stored headers, body, freshness and `Vary` of a
/// stored response, and the time it was stored (so `Age` stays right on the node that reads it).
///
/// [`ResponseCacheBuilder::second_level`](super::ResponseCacheBuilder::second_level) uses it for the layer's own
/// store; a store of your own shared by several layers takes it through
/// [`CacheBuilder::second_level_with_codec`](crate::cache::CacheBuilder::second_level_with_codec):
///
/// ```no_run
/// use perfscope::cache::Cache;
/// use perfscope::cache::http::{CachedResponse, ResponseCodec, ResponseStore};
/// use perfscope::cache::l2::RedisLevel;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let level = RedisLevel::connect("redis://127.0.0.1:6379/").await?;
/// let store: ResponseStore = Cache::builder()
///     .name("http")
///     .max_weight(128 << 20)
///     .weigher(CachedResponse::weigh)
///     .second_level_with_codec(level, ResponseCodec)
///     .build()?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseCodec;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

fn put_bytes_u16(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u16::try_from(bytes.len()).map_err(|_| "a header name too long".to_owned())?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_bytes_u32(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u32::try_from(bytes.len()).map_err(|_| "a value too long".to_owned())?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_names(out: &mut Vec<u8>, names: &[HeaderName]) -> Result<(), String> {
    let count = u8::try_from(names.len()).map_err(|_| "too many Vary names".to_owned())?;
    out.push(count);
    for name in names {
        put_bytes_u16(out, name.as_str().as_bytes())?;
    }
    Ok(())
}

/// Reads the parts of a payload, failing on anything short or malformed.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err("truncated".to_owned());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let raw = self.take(2)?;
        Ok(u16::from_le_bytes([raw[0], raw[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut array = [0; 8];
        array.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(array))
    }

    fn bytes_u16(&mut self) -> Result<&'a [u8], String> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn bytes_u32(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.u32()?).map_err(|_| "a length too large".to_owned())?;
        self.take(len)
    }

    fn names(&mut self) -> Result<Vec<HeaderName>, String> {
        let count = usize::from(self.u8()?);
        if count > MAX_VARY {
            return Err("too many Vary names".to_owned());
        }
        (0..count)
            .map(|_| {
                HeaderName::from_bytes(self.bytes_u16()?)
                    .map_err(|_| "a bad header name".to_owned())
            })
            .collect()
    }
}

impl Codec<CachedResponse> for ResponseCodec {
    fn id(&self) -> u8 {
        RESPONSE_CODEC_ID
    }

    fn encode(&self, value: &CachedResponse, out: &mut Vec<u8>) -> Result<(), String> {
        match value.entry() {
            Entry::Vary(spec) => {
                out.push(VARY);
                put_names(out, spec.names())
            }
            Entry::Response(stored) => {
                out.push(RESPONSE);
                out.extend_from_slice(&stored.status.as_u16().to_le_bytes());
                let age = Instant::now().saturating_duration_since(stored.stored_at);
                let stored_at = unix_millis().saturating_sub(millis(age));
                let f = &stored.freshness;
                for n in [
                    stored_at,
                    millis(f.fresh_for),
                    millis(f.stale_while_revalidate),
                    millis(f.stale_if_error),
                    millis(f.initial_age),
                ] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                put_names(out, stored.vary.as_ref().map_or(&[], VarySpec::names))?;
                let count = u16::try_from(stored.headers.len())
                    .map_err(|_| "too many headers".to_owned())?;
                out.extend_from_slice(&count.to_le_bytes());
                for (name, value) in &stored.headers {
                    put_bytes_u16(out, name.as_str().as_bytes())?;
                    put_bytes_u32(out, value.as_bytes())?;
                }
                put_bytes_u32(out, &stored.body)
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<CachedResponse, String> {
        let mut r = Reader { bytes };
        let value = match r.u8()? {
            VARY => {
                let names = r.names()?;
                CachedResponse::vary(VarySpec::from_names(names).ok_or("an empty Vary")?)
            }
            RESPONSE => {
                let status =
                    StatusCode::from_u16(r.u16()?).map_err(|_| "a bad status".to_owned())?;
                let stored_at_ms = r.u64()?;
                let ms = |n: u64| Duration::from_millis(n);
                let freshness = Freshness {
                    fresh_for: ms(r.u64()?),
                    stale_while_revalidate: ms(r.u64()?),
                    stale_if_error: ms(r.u64()?),
                    initial_age: ms(r.u64()?),
                };
                let vary = VarySpec::from_names(r.names()?);
                let count = r.u16()?;
                let mut headers = HeaderMap::with_capacity(usize::from(count));
                let mut names = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let name = HeaderName::from_bytes(r.bytes_u16()?)
                        .map_err(|_| "a bad header name".to_owned())?;
                    let value = HeaderValue::from_bytes(r.bytes_u32()?)
                        .map_err(|_| "a bad header value".to_owned())?;
                    if !names.contains(&name) {
                        names.push(name.clone());
                    }
                    headers.append(name, value);
                }
                let body = Bytes::copy_from_slice(r.bytes_u32()?);
                if !r.bytes.is_empty() {
                    return Err("bytes after the body".to_owned());
                }
                // Stored that long ago on the node that wrote it (a clock behind ours counts as now).
                let age = ms(unix_millis().saturating_sub(stored_at_ms));
                let now = Instant::now();
                let stored_at = now.checked_sub(age).unwrap_or(now);
                CachedResponse::response(Stored::new(
                    status, &headers, &names, body, stored_at, freshness, vary,
                ))
            }
            _ => return Err("an unknown kind".to_owned()),
        };
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::http::ResponseKey;
    use http::header::{CONTENT_TYPE, ETAG};

    fn response(vary: bool) -> CachedResponse {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            http::header::VARY,
            HeaderValue::from_static("accept-language"),
        );
        let vary = vary
            .then(|| VarySpec::from_response(&headers).ok().flatten())
            .flatten();
        CachedResponse::response(Stored::new(
            StatusCode::OK,
            &headers,
            &[CONTENT_TYPE],
            Bytes::from_static(br#"{"id":7}"#),
            Instant::now() - Duration::from_secs(3),
            Freshness {
                fresh_for: Duration::from_secs(60),
                stale_while_revalidate: Duration::from_secs(5),
                stale_if_error: Duration::ZERO,
                initial_age: Duration::from_secs(1),
            },
            vary,
        ))
    }

    #[test]
    fn responses_and_vary_records_round_trip() {
        for vary in [false, true] {
            let value = response(vary);
            let mut out = Vec::new();
            ResponseCodec.encode(&value, &mut out).unwrap();
            let back = ResponseCodec.decode(&out).unwrap();
            let (Entry::Response(a), Entry::Response(b)) = (value.entry(), back.entry()) else {
                panic!("not a response");
            };
            assert_eq!((a.status, &a.body, &a.etag), (b.status, &b.body, &b.etag));
            assert_eq!(a.headers, b.headers);
            assert_eq!(a.headers.get(ETAG), b.headers.get(ETAG));
            assert_eq!(a.vary, b.vary);
            assert_eq!(a.freshness.fresh_for, b.freshness.fresh_for);
            assert_eq!(value.weight(), back.weight());
            // Stored about three seconds ago on either side (the wall clock moves in milliseconds).
            let age = b.stored_at.elapsed();
            assert!(
                age >= Duration::from_millis(2990) && age < Duration::from_secs(5),
                "{age:?}"
            );
            if let Some(spec) = &a.vary {
                let mut out = Vec::new();
                ResponseCodec
                    .encode(&CachedResponse::vary(spec.clone()), &mut out)
                    .unwrap();
                let back = ResponseCodec.decode(&out).unwrap();
                assert!(matches!(back.entry(), Entry::Vary(s) if s == spec));
            }
        }
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        let mut good = Vec::new();
        ResponseCodec.encode(&response(true), &mut good).unwrap();
        for cut in 0..good.len() {
            assert!(ResponseCodec.decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(ResponseCodec.decode(&extra).is_err());
        let mut kind = good.clone();
        kind[0] = 9;
        assert!(ResponseCodec.decode(&kind).is_err());
        let mut status = good;
        status[1..3].copy_from_slice(&1000_u16.to_le_bytes());
        assert!(ResponseCodec.decode(&status).is_err());
    }

    #[test]
    fn response_keys_cross_the_bus_as_hex() {
        let key = ResponseKey::from_hex("014d00ff70617468").unwrap();
        assert_eq!(key.as_bytes(), b"\x01M\x00\xffpath");
        let text = key.to_hex();
        assert_eq!(text, "014d00ff70617468");
        assert_eq!(ResponseKey::from_hex(&text), Some(key.clone()));
        assert_eq!(
            crate::cache::key::key_from_wire::<ResponseKey>(&text),
            Some(key.clone())
        );
        assert_eq!(
            crate::cache::key::wire_key(&key).as_deref(),
            Some(text.as_str())
        );
        for bad in ["", "0", "zz", "0G", "é1"] {
            assert_eq!(ResponseKey::from_hex(bad), None, "{bad}");
        }
    }
}
