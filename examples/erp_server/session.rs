//! Opaque session tokens for `/api/auth/login`.
//!
//! The demo only issues tokens; no route checks them. They are unguessable anyway (SHA-256 over a per-process
//! secret, a counter and the clock) so the example does not teach a bad habit.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Issues tokens; one per process, shared through [`AppState`](crate::AppState).
#[derive(Debug)]
pub(crate) struct SessionIssuer {
    secret: [u8; 32],
    counter: AtomicU64,
}

impl SessionIssuer {
    /// A new issuer with a secret drawn from the OS-seeded keys of [`RandomState`] (no `rand` dependency).
    pub(crate) fn new() -> Self {
        let mut secret = [0_u8; 32];
        for (i, chunk) in secret.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&RandomState::new().hash_one(i).to_le_bytes());
        }
        Self {
            secret,
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh 64-hex-digit token for `user_id`.
    pub(crate) fn issue(&self, user_id: i64) -> String {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let digest = Sha256::new()
            .chain_update(self.secret)
            .chain_update(user_id.to_le_bytes())
            .chain_update(counter.to_le_bytes())
            .chain_update(nanos.to_le_bytes())
            .finalize();
        digest.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ() {
        let issuer = SessionIssuer::new();
        let (a, b) = (issuer.issue(1), issuer.issue(1));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
