//! Integration tests of the query analyzer.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod capture;
mod corpus;
mod fingerprint;
mod loops;
mod manual;
mod pathological;
mod pipeline;
mod sites;

#[allow(dead_code)]
#[path = "../monitor/alloc.rs"]
mod alloc;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;
