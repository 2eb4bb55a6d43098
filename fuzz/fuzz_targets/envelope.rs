//! Fuzzes the decoder of second-level entries (the envelope read back from Redis, which may hold anything):
//! it must answer `Ok` or an error, never panic (`perfscope::cache::l2::fuzz_decode_envelope`, which a test
//! also runs on the seed corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = perfscope::cache::l2::fuzz_decode_envelope(data) {
        assert!(payload <= data.len());
    }
});
