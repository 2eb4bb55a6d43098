//! The package of perfscope's demo server. The server itself is the `erp_server` example
//! (`cargo run --example erp_server`, see `main.rs`); this library is empty.
