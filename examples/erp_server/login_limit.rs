//! What an anonymous client may cost the login route: attempts per client address and per account (governor's
//! keyed GCRA limiters), and the password hashing they trigger, on a bounded pool.
//!
//! Each attempt costs a PBKDF2 hash (about 100 ms of CPU in a debug build). Without limits, 32 clients posting
//! wrong passwords keep every core hashing and the blocking pool growing, and every other route slows down.
//!
//! - **Per address** ([`PER_ADDRESS_BURST`] attempts, then one every [`PER_ADDRESS_PERIOD`]): checked first, before
//!   the body is read, so a flood from one address is refused for the cost of a map lookup.
//! - **Per account** ([`PER_ACCOUNT_BURST`], then one every [`PER_ACCOUNT_PERIOD`]): attempts on one email from
//!   many addresses. It is looser than the per-address budget, so one address alone can never lock an account
//!   out; the price of the per-account limit is that a distributed attack on an account also delays its owner.
//! - **Hashing** ([`hash_permits`] at once): a semaphore in front of `spawn_blocking`, so logins can use at most
//!   half the cores; a login that waits more than [`HASH_QUEUE_TIMEOUT`] for a permit is answered 503.
//!
//! Refusals are 429 with `Retry-After`, the time until the budget allows an attempt again. The limiters' maps
//! forget keys whose budget is full again every [`FORGET_EVERY`], so their memory follows the recent attackers,
//! not all the addresses ever seen.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

/// Attempts from one address before the budget applies.
pub(crate) const PER_ADDRESS_BURST: u32 = 10;
/// One more attempt from an address per this period.
pub(crate) const PER_ADDRESS_PERIOD: Duration = Duration::from_secs(6);
/// Attempts on one account before the budget applies.
pub(crate) const PER_ACCOUNT_BURST: u32 = 20;
/// One more attempt on an account per this period.
pub(crate) const PER_ACCOUNT_PERIOD: Duration = Duration::from_secs(3);
/// Longest wait for a hashing permit before answering 503.
pub(crate) const HASH_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a refusal waits before it is sent. A client that waits for each answer before trying again (most
/// scripts do) then makes at most a few attempts per second instead of thousands of cheap ones, each of which
/// still costs the server a connection and a trip through the middleware.
pub(crate) const REFUSAL_DELAY: Duration = Duration::from_millis(500);
/// How often the limiters forget keys that are back to a full budget.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The login limiters and the hashing pool; one per process, shared through `AppState`.
pub(crate) struct LoginLimits {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed by a hash of the normalized email: 8 bytes per account whatever the email's length.
    per_account: DefaultKeyedRateLimiter<u64>,
    account_hasher: RandomState,
    hashing: Arc<Semaphore>,
    clock: DefaultClock,
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimits")
            .field("addresses", &self.per_address.len())
            .field("accounts", &self.per_account.len())
            .field("hash_permits_free", &self.hashing.available_permits())
            .finish()
    }
}

/// Hashes at once: half the cores (at least one), so logins never take every core from the API.
pub(crate) fn hash_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

impl LoginLimits {
    /// The limiters with the budgets above, and a task that trims their maps.
    pub(crate) fn new() -> Arc<Self> {
        let limits = Arc::new(Self {
            per_address: RateLimiter::keyed(quota(PER_ADDRESS_BURST, PER_ADDRESS_PERIOD)),
            per_account: RateLimiter::keyed(quota(PER_ACCOUNT_BURST, PER_ACCOUNT_PERIOD)),
            account_hasher: RandomState::new(),
            hashing: Arc::new(Semaphore::new(hash_permits())),
            clock: DefaultClock::default(),
        });
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FORGET_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(limits) = weak.upgrade() else { break };
                limits.forget_idle();
            }
        });
        limits
    }

    /// Takes one attempt from `address`'s budget, or says how long to wait.
    pub(crate) fn check_address(&self, address: IpAddr) -> Result<(), AppError> {
        // An IPv6 client can use a whole /64: count it as one address.
        let key = match address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        self.per_address
            .check_key(&key)
            .map_err(|not_until| self.refusal("from this address", &not_until))
    }

    /// Takes one attempt from the budget of the account `email` (compared as the users query does: trimmed,
    /// case-insensitive), or says how long to wait.
    pub(crate) fn check_account(&self, email: &str) -> Result<(), AppError> {
        let key = self.account_hasher.hash_one(email.trim().to_lowercase());
        self.per_account
            .check_key(&key)
            .map_err(|not_until| self.refusal("for this account", &not_until))
    }

    /// Waits [`REFUSAL_DELAY`] before passing `result` on when it is a 429.
    pub(crate) async fn refuse_slowly<T>(result: Result<T, AppError>) -> Result<T, AppError> {
        if matches!(result, Err(AppError::TooManyRequests { .. })) {
            tokio::time::sleep(REFUSAL_DELAY).await;
        }
        result
    }

    /// A permit to hash one password, or 503 when the pool stays busy for [`HASH_QUEUE_TIMEOUT`].
    pub(crate) async fn hashing_permit(&self) -> Result<OwnedSemaphorePermit, AppError> {
        let busy = AppError::Unavailable {
            message: "too many logins at once",
            retry_after_secs: 1,
        };
        match tokio::time::timeout(
            HASH_QUEUE_TIMEOUT,
            Arc::clone(&self.hashing).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a closed one would refuse the same way.
            Ok(Err(_)) | Err(_) => Err(busy),
        }
    }

    fn refusal(
        &self,
        scope: &str,
        not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> AppError {
        let wait = not_until.wait_time_from(self.clock.now());
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        AppError::TooManyRequests {
            message: format!("too many login attempts {scope}; retry in {retry_after_secs} s"),
            retry_after_secs,
        }
    }

    /// Drops the keys whose budget is full again, and the memory they held.
    fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
        self.per_account.retain_recent();
        self.per_account.shrink_to_fit();
    }
}

/// `burst` attempts at once, then one per `period`.
fn quota(burst: u32, period: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_gets_its_burst_then_429_with_retry_after() {
        let limits = LoginLimits::new();
        let address = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..PER_ADDRESS_BURST {
            assert!(limits.check_address(address).is_ok());
        }
        match limits.check_address(address) {
            Err(AppError::TooManyRequests {
                retry_after_secs, ..
            }) => assert!((1..=PER_ADDRESS_PERIOD.as_secs()).contains(&retry_after_secs)),
            other => panic!("expected 429, got {other:?}"),
        }
        // Another address and the account keep their own budgets.
        assert!(limits.check_address(IpAddr::from([192, 0, 2, 2])).is_ok());
        assert!(limits.check_account("Admin@Pharmacy.test ").is_ok());
    }

    #[tokio::test]
    async fn an_account_is_one_key_whatever_the_case() {
        let limits = LoginLimits::new();
        for i in 0..PER_ACCOUNT_BURST {
            let email = if i % 2 == 0 {
                "admin@pharmacy.test"
            } else {
                " ADMIN@pharmacy.test"
            };
            assert!(limits.check_account(email).is_ok());
        }
        assert!(limits.check_account("Admin@pharmacy.test").is_err());
    }

    #[tokio::test]
    async fn a_v6_client_is_limited_by_its_64() {
        let limits = LoginLimits::new();
        for i in 0..PER_ADDRESS_BURST {
            let address = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, u16::try_from(i).unwrap()]);
            assert!(limits.check_address(address).is_ok());
        }
        assert!(
            limits
                .check_address(IpAddr::from([0x2001, 0xdb8, 0, 1, 9, 9, 9, 9]))
                .is_err()
        );
    }
}
