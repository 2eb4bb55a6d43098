#![doc = include_str!("../../../docs/second-level.md")]

mod attach;
mod backend;
mod breaker;
mod bus;
mod codec;
mod envelope;
mod error;
mod level;
mod redis;

pub(crate) use attach::{CacheL2, Found, Lookup};
pub use backend::{
    BoxFuture, InvalidateOp, L2Backend, MemoryLevel, ReadKeys, ReadReply, Subscription, WriteOp,
};
pub(crate) use bus::MessageKind;
pub use codec::{Codec, Postcard};
pub use error::L2Error;
pub(crate) use level::BusTarget as BusTargetDyn;
pub use level::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_OPEN_FOR, DEFAULT_HARD_TIMEOUT, DEFAULT_HEARTBEAT,
    DEFAULT_MAX_TTL, DEFAULT_PREFIX, DEFAULT_REVERIFY_INTERVAL, DEFAULT_SILENCE_TIMEOUT,
    DEFAULT_SOFT_TIMEOUT, DEFAULT_VERSION_CACHE, DEFAULT_WRITE_QUEUE, SecondLevel,
    SecondLevelBuilder,
};
pub use redis::RedisLevel;

/// Decodes an L2 entry's envelope (for the fuzz target): `Ok` with the payload's length, or the kind of
/// error. Never panics.
#[doc(hidden)]
pub fn fuzz_decode_envelope(bytes: &[u8]) -> Result<usize, &'static str> {
    match envelope::decode(bytes) {
        Ok(envelope) => Ok(envelope.payload.len()),
        Err(envelope::DecodeError::Foreign) => Err("foreign"),
        Err(envelope::DecodeError::OldFormat) => Err("old format"),
        Err(envelope::DecodeError::Corrupt) => Err("corrupt"),
    }
}

/// What a cache builder holds for its second level: the level, and the codec when values are stored there.
pub(crate) type Attachment<V> = (SecondLevel, Option<std::sync::Arc<dyn Codec<V>>>);
