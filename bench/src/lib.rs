//! Shared pieces of weir's benchmarks. The measurements themselves live in the `weir` crate
//! (`weir::bench`, what `weir bench` runs), so that each has one implementation: this crate
//! re-exports the seeded data generators for the criterion benches and keeps the binaries that
//! `weir bench` does not cover (`barrier_pause`; `kafka_pipeline`'s memory and latency parts).

#![warn(missing_docs)]

pub use weir::bench::engine::{key_batches, key_schema, Rng};
