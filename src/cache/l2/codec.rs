//! [`Codec`]: how a value becomes the bytes of an L2 entry and back, and [`Postcard`], the default.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns values into bytes for the second level and back.
///
/// A codec for any serde type is [`Postcard`]; implement this trait for values that serde does not describe,
/// or to use another format. Each codec has an [`id`](Codec::id) written into every entry, so entries written
/// with another codec (after a change of codec, or by another program) are a counted miss, never misread.
///
/// ```
/// use perfscope::cache::l2::Codec;
///
/// /// Stores UTF-8 strings as they are.
/// struct Utf8;
///
/// impl Codec<String> for Utf8 {
///     fn id(&self) -> u8 {
///         0x80
///     }
///     fn encode(&self, value: &String, out: &mut Vec<u8>) -> Result<(), String> {
///         out.extend_from_slice(value.as_bytes());
///         Ok(())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<String, String> {
///         String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
///     }
/// }
/// ```
pub trait Codec<V>: Send + Sync + 'static {
    /// Identifies the format in the entry's header (`0x01` is [`Postcard`]; use `0x80` and up for your own).
    fn id(&self) -> u8;
    /// Appends the bytes of `value` to `out`.
    fn encode(&self, value: &V, out: &mut Vec<u8>) -> Result<(), String>;
    /// Reads a value from `bytes` (which may be corrupt: return an error, never panic).
    fn decode(&self, bytes: &[u8]) -> Result<V, String>;
}

/// The default codec: [postcard](https://docs.rs/postcard), a compact serde format (variable-length integers,
/// no field names), with a small dependency tree. Chosen by measurement against bincode 2 and rmp-serde on a
/// typical ERP value: the smallest and the fastest to encode and to decode (see the
/// [module documentation](super), "Codec").
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

/// The id of [`Postcard`] in entry headers.
pub(crate) const POSTCARD_ID: u8 = 1;

impl<V> Codec<V> for Postcard
where
    V: Serialize + DeserializeOwned,
{
    fn id(&self) -> u8 {
        POSTCARD_ID
    }

    fn encode(&self, value: &V, out: &mut Vec<u8>) -> Result<(), String> {
        let buffer = std::mem::take(out);
        match postcard::to_extend(value, buffer) {
            Ok(buffer) => {
                *out = buffer;
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, String> {
        postcard::from_bytes(bytes).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt_input() {
        let mut out = vec![9];
        Postcard
            .encode(&(42_u64, "widget".to_owned()), &mut out)
            .unwrap();
        assert_eq!(out[0], 9, "appends");
        let back: (u64, String) = Postcard.decode(&out[1..]).unwrap();
        assert_eq!(back, (42, "widget".to_owned()));
        assert!(Codec::<(u64, String)>::decode(&Postcard, &[0xff, 0xff]).is_err());
        assert_eq!(Codec::<u8>::id(&Postcard), POSTCARD_ID);
    }
}
