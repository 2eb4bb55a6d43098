//! Building the `X-Request-Id`, `X-Response-Time` and `Server-Timing` values without panicking, and with one
//! allocation for all of them.
//!
//! Values are written into a fixed buffer; what does not fit is left out. Phase names are reduced to
//! `A-Za-z0-9_.-` (a `Server-Timing` metric name is an HTTP token), so no name can break the header. The
//! values of one response are written back to back and handed out as slices of one shared buffer
//! ([`ValueBuf::into_shared`]), so three headers cost one allocation instead of three.

#[cfg(feature = "monitor")]
use std::ops::Range;
use std::time::Duration;

#[cfg(feature = "monitor")]
use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// The `Server-Timing` header name.
pub(crate) static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// A fixed-capacity byte buffer for header values.
#[derive(Debug)]
pub(crate) struct ValueBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> ValueBuf<N> {
    pub(crate) fn new() -> Self {
        ValueBuf {
            bytes: [0; N],
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) -> bool {
        match self.bytes.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Appends `bytes` whole, or nothing when they do not fit.
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> bool {
        let end = self.len + bytes.len();
        match self.bytes.get_mut(self.len..end) {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                self.len = end;
                true
            }
            None => false,
        }
    }

    fn push_u64(&mut self, mut value: u64) -> bool {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push_bytes(&digits[start..])
    }

    /// Milliseconds with three decimals, e.g. `12.345`.
    pub(crate) fn push_millis(&mut self, duration: Duration) -> bool {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let fraction = micros % 1_000;
        self.push_u64(micros / 1_000)
            && self.push_bytes(&[
                b'.',
                b'0' + (fraction / 100) as u8,
                b'0' + (fraction / 10 % 10) as u8,
                b'0' + (fraction % 10) as u8,
            ])
    }

    /// Appends `, name;dur=12.345`, or `name;dur=…` at `start` (the start of the value being written); rolls
    /// back when it does not fit.
    pub(crate) fn push_timing_from(
        &mut self,
        start: usize,
        name: &str,
        duration: Duration,
    ) -> bool {
        let mark = self.len;
        let ok = (mark == start || self.push_bytes(b", "))
            && push_token(self, name)
            && self.push_bytes(b";dur=")
            && self.push_millis(duration);
        if !ok {
            self.len = mark;
        }
        ok
    }

    /// Appends `, name;desc="1.50 MiB"` (or `name;desc=…` at `start`): a byte count in binary units, see
    /// [`ValueBuf::push_byte_size`]. Rolls back when it does not fit.
    #[cfg(any(all(feature = "monitor", feature = "alloc"), test))]
    pub(crate) fn push_allocated_from(&mut self, start: usize, name: &str, bytes: u64) -> bool {
        let mark = self.len;
        let ok = (mark == start || self.push_bytes(b", "))
            && push_token(self, name)
            && self.push_bytes(b";desc=\"")
            && self.push_byte_size(bytes)
            && self.push(b'"');
        if !ok {
            self.len = mark;
        }
        ok
    }

    /// A byte count for people: `512 B`, or two decimals of the largest binary unit it reaches (`1.00 MiB`,
    /// `12.34 KiB`). The decimals are cut, not rounded, so the figure shown is never above the true one and
    /// less than 1% below it.
    #[cfg(any(all(feature = "monitor", feature = "alloc"), test))]
    fn push_byte_size(&mut self, bytes: u64) -> bool {
        const UNITS: [&[u8]; 6] = [b" KiB", b" MiB", b" GiB", b" TiB", b" PiB", b" EiB"];
        if bytes < 1024 {
            return self.push_u64(bytes) && self.push_bytes(b" B");
        }
        // The largest unit at or below `bytes`: 1 KiB is 2^10, each next one 2^10 times more.
        let unit = ((63 - bytes.leading_zeros()) / 10).clamp(1, 6);
        let shift = 10 * unit;
        let whole = bytes >> shift;
        let rest = u128::from(bytes & ((1u64 << shift) - 1));
        // Below 100, so the cast is lossless.
        let hundredths = ((rest * 100) >> shift) as u8;
        self.push_u64(whole)
            && self.push_bytes(&[b'.', b'0' + hundredths / 10, b'0' + hundredths % 10])
            && self.push_bytes(UNITS[(unit - 1) as usize])
    }

    #[cfg(feature = "monitor")]
    /// Appends an `X-Response-Time` value, `12.345ms`; rolls back when it does not fit.
    pub(crate) fn push_response_time(&mut self, duration: Duration) -> bool {
        let mark = self.len;
        let ok = self.push_millis(duration) && self.push_bytes(b"ms");
        if !ok {
            self.len = mark;
        }
        ok
    }

    #[cfg(any(feature = "query", test))]
    /// Appends a timing entry to a buffer that holds one value only.
    pub(crate) fn push_timing(&mut self, name: &str, duration: Duration) -> bool {
        self.push_timing_from(0, name, duration)
    }

    #[cfg(feature = "monitor")]
    /// Where the next byte goes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[cfg(any(feature = "query", test))]
    pub(crate) fn to_header_value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.as_bytes()).ok()
    }
}

impl<const N: usize> AsRef<[u8]> for ValueBuf<N> {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(feature = "monitor")]
impl<const N: usize> ValueBuf<N> {
    /// Moves the buffer into one shared allocation, from which [`SharedValues::value`] slices each header value
    /// without copying.
    pub(crate) fn into_shared(self) -> SharedValues {
        SharedValues(Bytes::from_owner(self))
    }
}

#[cfg(feature = "monitor")]
/// Several header values in one allocation.
#[derive(Debug)]
pub(crate) struct SharedValues(Bytes);

#[cfg(feature = "monitor")]
impl SharedValues {
    /// The value written at `range`; `None` when empty or not a valid header value.
    pub(crate) fn value(&self, range: Range<usize>) -> Option<HeaderValue> {
        if range.is_empty() || range.end > self.0.len() {
            return None;
        }
        HeaderValue::from_maybe_shared(self.0.slice(range)).ok()
    }
}

/// Longest phase name kept in `Server-Timing`.
const MAX_NAME: usize = 32;

fn push_token<const N: usize>(buf: &mut ValueBuf<N>, name: &str) -> bool {
    let name = &name.as_bytes()[..name.len().min(MAX_NAME)];
    if name.is_empty() {
        return buf.push(b'_');
    }
    let mark = buf.len;
    if !buf.push_bytes(name) {
        return false;
    }
    for byte in &mut buf.bytes[mark..buf.len] {
        if !(byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')) {
            *byte = b'_';
        }
    }
    true
}

/// `X-Response-Time` value: `12.345ms`.
#[cfg(test)]
fn response_time(duration: Duration) -> Option<HeaderValue> {
    let mut buf = ValueBuf::<32>::new();
    buf.push_response_time(duration)
        .then(|| buf.to_header_value())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn response_time_has_three_decimals() {
        assert_eq!(
            response_time(Duration::from_micros(12_345)).unwrap(),
            "12.345ms"
        );
        assert_eq!(response_time(Duration::from_micros(7)).unwrap(), "0.007ms");
        assert!(
            response_time(Duration::MAX)
                .unwrap()
                .to_str()
                .unwrap()
                .len()
                > 10
        );
    }

    #[test]
    fn server_timing_entries_are_joined() {
        let mut buf = ValueBuf::<64>::new();
        assert!(buf.push_timing("total", Duration::from_micros(1_500)));
        assert!(buf.push_timing("db query", Duration::from_micros(250)));
        assert_eq!(buf.as_bytes(), b"total;dur=1.500, db_query;dur=0.250");
        // Does not fit: rolled back, earlier entries kept.
        assert!(!buf.push_timing("a-very-long-phase-name-that-fills", Duration::from_secs(1)));
        assert_eq!(buf.as_bytes(), b"total;dur=1.500, db_query;dur=0.250");
    }

    fn byte_size(bytes: u64) -> String {
        let mut buf = ValueBuf::<64>::new();
        assert!(buf.push_allocated_from(0, "alloc", bytes));
        String::from_utf8(buf.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn allocated_bytes_read_in_binary_units() {
        assert_eq!(byte_size(0), r#"alloc;desc="0 B""#);
        assert_eq!(byte_size(1023), r#"alloc;desc="1023 B""#);
        assert_eq!(byte_size(1024), r#"alloc;desc="1.00 KiB""#);
        assert_eq!(byte_size(1 << 20), r#"alloc;desc="1.00 MiB""#);
        // Cut, not rounded: just under 2 MiB is not shown as 2.00 MiB.
        assert_eq!(byte_size((2 << 20) - 1), r#"alloc;desc="1.99 MiB""#);
        assert_eq!(byte_size(1536 << 30), r#"alloc;desc="1.50 TiB""#);
        assert_eq!(byte_size(u64::MAX), r#"alloc;desc="15.99 EiB""#);
        let mut buf = ValueBuf::<64>::new();
        assert!(buf.push_timing("total", Duration::from_millis(1)));
        assert!(buf.push_allocated_from(0, "alloc", 1 << 20));
        assert_eq!(buf.as_bytes(), br#"total;dur=1.000, alloc;desc="1.00 MiB""#);
        let mut full = ValueBuf::<12>::new();
        assert!(!full.push_allocated_from(0, "alloc", 1 << 20));
        assert!(full.is_empty(), "rolled back");
    }

    /// Reads back a `push_byte_size` figure, in bytes, as shown.
    fn parse_byte_size(shown: &str) -> f64 {
        let (number, unit) = shown.split_once(' ').unwrap();
        let scale = match unit {
            "B" => 1.0,
            "KiB" => 1024f64,
            "MiB" => 1024f64.powi(2),
            "GiB" => 1024f64.powi(3),
            "TiB" => 1024f64.powi(4),
            "PiB" => 1024f64.powi(5),
            "EiB" => 1024f64.powi(6),
            other => panic!("unit {other}"),
        };
        number.parse::<f64>().unwrap() * scale
    }

    proptest! {
        /// The figure shown is never above the true count and less than 1% below it, and the entry is a
        /// valid header value.
        #[test]
        fn allocated_bytes_are_shown_within_one_percent_below(bytes in any::<u64>()) {
            let mut buf = ValueBuf::<64>::new();
            prop_assert!(buf.push_allocated_from(0, "alloc", bytes));
            prop_assert!(buf.to_header_value().is_some());
            let text = std::str::from_utf8(buf.as_bytes()).unwrap();
            let shown = text.strip_prefix("alloc;desc=\"").unwrap().strip_suffix('"').unwrap();
            let shown = parse_byte_size(shown);
            let exact = bytes as f64;
            // f64 carries 53 bits: allow its rounding at the top of the range.
            let slack = exact * 1e-12;
            prop_assert!(shown <= exact + slack, "{} shown as {}", bytes, shown);
            prop_assert!(shown > exact * 0.99 - slack, "{} shown as {}", bytes, shown);
        }

        #[test]
        fn any_phase_name_and_duration_gives_a_valid_header(
            names in proptest::collection::vec(any::<String>(), 0..20),
            micros in proptest::collection::vec(any::<u64>(), 20),
        ) {
            let mut buf = ValueBuf::<256>::new();
            for (name, micros) in names.iter().zip(micros) {
                buf.push_timing(name, Duration::from_micros(micros));
            }
            prop_assert!(buf.is_empty() || buf.to_header_value().is_some());
        }

        /// Values written back to back come out of the shared buffer whole, each a valid header value, and a
        /// value that did not fit is rolled back without touching the ones before it.
        #[cfg(feature = "monitor")]
        #[test]
        fn shared_values_slice_back_what_was_written(
            id in "[A-Za-z0-9._:-]{1,128}",
            names in proptest::collection::vec(any::<String>(), 0..12),
            micros in proptest::collection::vec(any::<u64>(), 13),
        ) {
            let mut buf = ValueBuf::<320>::new();
            prop_assert!(buf.push_bytes(id.as_bytes()));
            let id_range = 0..buf.len();
            let mark = buf.len();
            prop_assert!(buf.push_response_time(Duration::from_micros(micros[12])));
            let time_range = mark..buf.len();
            let start = buf.len();
            for (name, micros) in names.iter().zip(&micros) {
                let before = buf.len();
                if !buf.push_timing_from(start, name, Duration::from_micros(*micros)) {
                    prop_assert_eq!(buf.len(), before);
                }
            }
            let timing = buf.as_bytes()[start..].to_vec();
            let timing_range = start..buf.len();
            let values = buf.into_shared();
            let id_value = values.value(id_range).unwrap();
            prop_assert_eq!(id_value.as_bytes(), id.as_bytes());
            let time = values.value(time_range).unwrap();
            prop_assert!(time.as_bytes().ends_with(b"ms"));
            match values.value(timing_range) {
                Some(value) => prop_assert_eq!(value.as_bytes(), &timing[..]),
                None => prop_assert!(timing.is_empty()),
            }
        }
    }
}
