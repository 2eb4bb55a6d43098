//! The bytes one instance publishes: a small frame around HdrHistogram's V2 serialization of each route's
//! latency histograms.
//!
//! ```text
//! "PSFH" | version u8 = 1 | published_at_unix_ms u64 | started_at_unix_ms u64 | ttl_ms u64 | routes u32
//! per route: method (u8 length + UTF-8) | route (u16 length + UTF-8) | sum_us u64 | max_us u64
//!            | lifetime (u32 length + V2 histogram) | window_5m (u32 length + V2 histogram)
//! ```
//! Integers are big-endian, as in the V2 format. The exact sum and maximum ride along because a histogram
//! only knows them to its precision.
//!
//! Redis is shared: anything may sit under our keys (another version, another program, a truncated write).
//! Decoding therefore never trusts a length: each is checked against the bytes left, each V2 header is checked
//! before `hdrhistogram` sees it (its deserializer allocates what the header asks for), and a bad frame or
//! histogram is reported as a skip, never a panic.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use crate::monitor::histogram::Layout;
use crate::monitor::route_entry::RouteHistograms;

const MAGIC: &[u8; 4] = b"PSFH";
const VERSION: u8 = 1;
/// Cookie of an uncompressed V2 histogram (`hdrhistogram`'s `V2_COOKIE`); the compressed form is refused.
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_HEADER_LEN: usize = 40;
/// Most bins a decoded histogram may have: 16 MiB of counts. The largest layout perfscope builds (5 digits,
/// 60 s) has 1.3 million.
const MAX_BINS: usize = 1 << 21;

/// One instance's publish, as read back.
#[derive(Debug)]
pub(crate) struct Publish {
    pub(crate) published_at_unix_ms: u64,
    pub(crate) started_at_unix_ms: u64,
    pub(crate) ttl_ms: u64,
    pub(crate) routes: Vec<PublishedRoute>,
    /// Routes whose histograms did not decode (left out, counted).
    pub(crate) skipped_routes: u64,
}

/// One route of a publish.
#[derive(Debug)]
pub(crate) struct PublishedRoute {
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) sum_us: u64,
    pub(crate) max_us: u64,
    pub(crate) lifetime: Histogram<u64>,
    pub(crate) window_5m: Histogram<u64>,
}

/// Why a publish could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not a perfscope publish (wrong magic).
    Foreign,
    /// A perfscope publish of a format this version does not read.
    Version(u8),
    /// Shorter than its lengths say, or with bytes left over.
    Truncated,
    /// A method or route label is not UTF-8.
    Label,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Foreign => f.write_str("not a perfscope fleet publish"),
            DecodeError::Version(v) => {
                write!(f, "publish format {v}, this version reads {VERSION}")
            }
            DecodeError::Truncated => f.write_str("truncated or malformed publish"),
            DecodeError::Label => f.write_str("route or method label is not UTF-8"),
        }
    }
}

/// The header of a publish.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) published_at_unix_ms: u64,
    pub(crate) started_at_unix_ms: u64,
    pub(crate) ttl_ms: u64,
}

/// Encodes `routes`; returns the bytes and the number of routes left out because a histogram could not be
/// serialized (a count above `i64::MAX`).
pub(crate) fn encode(header: Header, routes: &[RouteHistograms]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(64 + routes.len() * 128);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&header.published_at_unix_ms.to_be_bytes());
    out.extend_from_slice(&header.started_at_unix_ms.to_be_bytes());
    out.extend_from_slice(&header.ttl_ms.to_be_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_be_bytes());
    let mut serializer = V2Serializer::new();
    let mut written = 0u32;
    let mut skipped = 0u64;
    let mut lifetime = Vec::new();
    let mut window = Vec::new();
    for route in routes {
        lifetime.clear();
        window.clear();
        let label = route.route.as_bytes();
        let method = route.method.as_str().as_bytes();
        let (Ok(label_len), Ok(method_len)) =
            (u16::try_from(label.len()), u8::try_from(method.len()))
        else {
            skipped += 1;
            continue;
        };
        let serialized = serializer
            .serialize(&route.lifetime, &mut lifetime)
            .and_then(|_| serializer.serialize(&route.window_5m, &mut window));
        let (Ok(_), Ok(lifetime_len), Ok(window_len)) = (
            serialized,
            u32::try_from(lifetime.len()),
            u32::try_from(window.len()),
        ) else {
            skipped += 1;
            continue;
        };
        out.push(method_len);
        out.extend_from_slice(method);
        out.extend_from_slice(&label_len.to_be_bytes());
        out.extend_from_slice(label);
        out.extend_from_slice(&route.sum_us.to_be_bytes());
        out.extend_from_slice(&route.max_us.to_be_bytes());
        out.extend_from_slice(&lifetime_len.to_be_bytes());
        out.extend_from_slice(&lifetime);
        out.extend_from_slice(&window_len.to_be_bytes());
        out.extend_from_slice(&window);
        written += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&written.to_be_bytes());
    (out, skipped)
}

/// A cursor that refuses to read past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn label(&mut self, len: usize) -> Result<String, DecodeError> {
        std::str::from_utf8(self.take(len)?)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Label)
    }
}

/// Decodes a publish. A frame that does not hold together is an error; a route whose histogram does not decode
/// is left out and counted in [`Publish::skipped_routes`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Publish, DecodeError> {
    let mut reader = Reader { bytes };
    if reader.take(4).map_err(|_| DecodeError::Foreign)? != MAGIC {
        return Err(DecodeError::Foreign);
    }
    let version = reader.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let published_at_unix_ms = reader.u64()?;
    let started_at_unix_ms = reader.u64()?;
    let ttl_ms = reader.u64()?;
    let count = reader.u32()?;
    let mut deserializer = Deserializer::new();
    let mut routes = Vec::new();
    let mut skipped_routes = 0u64;
    for _ in 0..count {
        let method_len = usize::from(reader.u8()?);
        let method = reader.label(method_len)?;
        let route_len = usize::from(reader.u16()?);
        let route = reader.label(route_len)?;
        let sum_us = reader.u64()?;
        let max_us = reader.u64()?;
        let lifetime_len = reader.u32()? as usize;
        let lifetime = reader.take(lifetime_len)?;
        let window_len = reader.u32()? as usize;
        let window = reader.take(window_len)?;
        match (
            histogram(&mut deserializer, lifetime),
            histogram(&mut deserializer, window),
        ) {
            (Some(lifetime), Some(window_5m)) => routes.push(PublishedRoute {
                method,
                route,
                sum_us,
                max_us,
                lifetime,
                window_5m,
            }),
            _ => skipped_routes += 1,
        }
    }
    if !reader.bytes.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(Publish {
        published_at_unix_ms,
        started_at_unix_ms,
        ttl_ms,
        routes,
        skipped_routes,
    })
}

/// One V2 histogram, if its header describes something perfscope could have written and its body decodes.
fn histogram(deserializer: &mut Deserializer, bytes: &[u8]) -> Option<Histogram<u64>> {
    let header = bytes.get(..V2_HEADER_LEN)?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(header.get(at..at + 4)?.try_into().ok()?))
    };
    let long = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(header.get(at..at + 8)?.try_into().ok()?))
    };
    let payload_len = word(4)? as usize;
    let digits = word(12)?;
    let (lowest, highest) = (long(16)?, long(24)?);
    // Checked here because the deserializer allocates the payload and the counts before reading either.
    let plausible = word(0)? == V2_COOKIE
        && payload_len == bytes.len() - V2_HEADER_LEN
        && word(8)? == 0
        && (1..=5).contains(&digits)
        && lowest == 1
        && highest >= 2
        && Layout::new(highest, digits as u8).len() <= MAX_BINS;
    if !plausible {
        return None;
    }
    let mut reader = bytes;
    deserializer.deserialize::<u64, _>(&mut reader).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::monitor::histogram::ShardedHistogram;
    use crate::route::MethodLabel;

    fn route(label: &str, values: &[u64]) -> RouteHistograms {
        let histogram = ShardedHistogram::new(Layout::new(60_000_000, 2));
        for &value in values {
            histogram.record(value);
        }
        let (_, sum_us, max_us) = histogram.totals();
        RouteHistograms {
            method: MethodLabel::Get,
            route: Arc::from(label),
            lifetime: histogram.to_histogram(),
            sum_us,
            max_us,
            window_5m: histogram.to_histogram(),
        }
    }

    fn header() -> Header {
        Header {
            published_at_unix_ms: 1_700_000_000_000,
            started_at_unix_ms: 1_600_000_000_000,
            ttl_ms: 15_000,
        }
    }

    fn sample() -> Vec<u8> {
        let routes = [
            route("/api/products/{id}", &[1_000, 2_000, 250_000]),
            route("/api/ünïcode", &[7]),
        ];
        encode(header(), &routes).0
    }

    #[test]
    fn round_trip_keeps_every_count() {
        let publish = decode(&sample()).unwrap();
        assert_eq!(publish.published_at_unix_ms, 1_700_000_000_000);
        assert_eq!(publish.started_at_unix_ms, 1_600_000_000_000);
        assert_eq!(publish.ttl_ms, 15_000);
        assert_eq!(publish.skipped_routes, 0);
        assert_eq!(publish.routes.len(), 2);
        let first = &publish.routes[0];
        assert_eq!(
            (first.method.as_str(), first.route.as_str()),
            ("GET", "/api/products/{id}")
        );
        assert_eq!((first.sum_us, first.max_us), (253_000, 250_000));
        assert_eq!(first.lifetime.len(), 3);
        assert_eq!(
            first.lifetime.max(),
            first.lifetime.highest_equivalent(250_000)
        );
        assert_eq!(publish.routes[1].route, "/api/ünïcode");
    }

    #[test]
    fn foreign_old_and_truncated_payloads_are_errors() {
        assert_eq!(decode(b"").unwrap_err(), DecodeError::Foreign);
        assert_eq!(decode(b"{\"json\":1}").unwrap_err(), DecodeError::Foreign);
        let mut old = sample();
        old[4] = 0;
        assert_eq!(decode(&old).unwrap_err(), DecodeError::Version(0));
        let bytes = sample();
        for len in 4..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn a_corrupt_histogram_skips_its_route_only() {
        let mut bytes = sample();
        // The first route's lifetime histogram starts after the frame header and the route's fixed fields.
        let at = 4 + 1 + 24 + 4 + 1 + 3 + 2 + "/api/products/{id}".len() + 16 + 4;
        bytes[at] ^= 0xff; // break its cookie
        let publish = decode(&bytes).unwrap();
        assert_eq!(publish.skipped_routes, 1);
        assert_eq!(publish.routes.len(), 1);
        assert_eq!(publish.routes[0].route, "/api/ünïcode");
    }

    #[test]
    fn a_header_asking_for_a_huge_histogram_is_refused_before_allocating() {
        let mut v2 = Vec::new();
        V2Serializer::new()
            .serialize(
                &Histogram::<u64>::new_with_bounds(1, 1000, 2).unwrap(),
                &mut v2,
            )
            .unwrap();
        let mut deserializer = Deserializer::new();
        assert!(histogram(&mut deserializer, &v2).is_some());
        let mut huge = v2.clone();
        huge[12..16].copy_from_slice(&5u32.to_be_bytes());
        huge[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(histogram(&mut deserializer, &huge).is_none());
        let mut long_payload = v2.clone();
        long_payload[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(histogram(&mut deserializer, &long_payload).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.push(VERSION);
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }

        #[test]
        fn corrupted_publishes_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = sample();
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            let _ = decode(&bytes);
            let _ = decode(&bytes[..cut.index(bytes.len())]);
        }

        #[test]
        fn encoded_counts_survive(values in proptest::collection::vec(1u64..100_000_000, 1..300)) {
            let (bytes, skipped) = encode(header(), &[route("/r", &values)]);
            prop_assert_eq!(skipped, 0);
            let publish = decode(&bytes).unwrap();
            prop_assert_eq!(publish.routes[0].lifetime.len(), values.len() as u64);
            prop_assert_eq!(publish.routes[0].max_us, values.iter().copied().max().unwrap_or(0));
        }
    }
}
