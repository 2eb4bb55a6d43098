//! Renderings of a [`Snapshot`](crate::Snapshot): JSON and the Prometheus text format.
//!
//! Both read only the snapshot, which holds route templates, counts and timings: never a raw path, a header
//! value or a request ID (except in the slow and hung request lists of the JSON, which are meant for operators).

#[cfg(feature = "json")]
mod json;
mod prometheus;

#[cfg(feature = "json")]
pub use json::{render as json, render_pretty as json_pretty};
pub use prometheus::render as prometheus;
