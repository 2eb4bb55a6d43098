//! PBKDF2-SHA256 password hashes, stored as `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
//!
//! Hashing is deliberately expensive: it is the one CPU-bound step of a login and shows as the `password_hash`
//! phase in `Server-Timing`. The iteration count is tuned so a login takes roughly 50-200 ms in a debug build;
//! release builds use the OWASP 2023 recommendation. A real system would prefer Argon2id.

use sha2::Sha256;

/// Iterations for new hashes. Verification reads the count from the stored hash, so changing this is safe.
pub(crate) const ITERATIONS: u32 = if cfg!(debug_assertions) {
    10_000
} else {
    600_000
};

/// Length of the derived key, bytes.
const HASH_LEN: usize = 32;

/// Salt hashed against when the email is unknown, so a wrong email costs as much time as a wrong password and
/// response times do not reveal which accounts exist.
const DUMMY_SALT: [u8; 16] = [
    0x3c, 0x91, 0x0e, 0xd7, 0x5a, 0x28, 0xf4, 0x6b, 0xc2, 0x17, 0x8e, 0x43, 0xb9, 0x60, 0x0d, 0xa5,
];

/// A stored hash that does not parse.
#[derive(Debug)]
pub(crate) struct MalformedHash;

impl std::fmt::Display for MalformedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed password hash in the users table")
    }
}

impl std::error::Error for MalformedHash {}

/// Hashes `password` with `salt` into the stored format.
pub(crate) fn hash(password: &str, salt: &[u8], iterations: u32) -> String {
    let derived = derive(password, salt, iterations);
    format!(
        "pbkdf2-sha256${iterations}${}${}",
        to_hex(salt),
        to_hex(&derived)
    )
}

/// Checks `password` against a stored hash, comparing in constant time.
pub(crate) fn verify(password: &str, stored: &str) -> Result<bool, MalformedHash> {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(MalformedHash);
    };
    let iterations: u32 = iterations.parse().map_err(|_| MalformedHash)?;
    let salt = from_hex(salt).ok_or(MalformedHash)?;
    let expected = from_hex(expected).ok_or(MalformedHash)?;
    if iterations == 0 || expected.len() != HASH_LEN {
        return Err(MalformedHash);
    }
    Ok(constant_time_eq(
        &derive(password, &salt, iterations),
        &expected,
    ))
}

/// Spends the same time as [`verify`] for a user that does not exist; the result is thrown away.
pub(crate) fn verify_unknown_user(password: &str) {
    std::hint::black_box(derive(password, &DUMMY_SALT, ITERATIONS));
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let mut out = [0_u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// Compares without an early exit, so the time taken does not tell how many leading bytes matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let stored = hash("pharmacy", b"0123456789abcdef", 10);
        assert!(verify("pharmacy", &stored).unwrap());
        assert!(!verify("pharmacY", &stored).unwrap());
    }

    #[test]
    fn rejects_malformed() {
        assert!(verify("x", "plain").is_err());
        assert!(verify("x", "pbkdf2-sha256$0$00$00").is_err());
        assert!(verify("x", "pbkdf2-sha256$10$zz$00").is_err());
    }

    #[test]
    fn known_vector() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA256("passwd", "salt", 1), first 32 bytes.
        let stored = hash("passwd", b"salt", 1);
        assert!(
            stored.ends_with("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
        );
    }
}
