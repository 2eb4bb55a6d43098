//! Nothing to see: this package exists for its test, `tests/capture.rs`, which runs perfscope's query capture
//! against sqlx 0.8.
