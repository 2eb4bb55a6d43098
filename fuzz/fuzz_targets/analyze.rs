//! Fuzzes the analysis of statements: normalize and enrich in every dialect, then the detector over the
//! input's lines as one request's queries (`perfscope::query::analyze_for_fuzzing`, which a test also runs on
//! the seed corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    perfscope::query::analyze_for_fuzzing(&String::from_utf8_lossy(data));
});
