//! # weir
//!
//! A single-node, high-throughput columnar stream engine: read an access log (file, gzip, stdin,
//! socket), count requests per client in tumbling event-time windows, write the results.
//!
//! This crate is the facade over the two libraries that do the work, and the home of the
//! pipelines the `weir` command runs:
//!
//! - [`engine`] (`weir-engine`): queues, partitioned pinned workers, windows, aggregates;
//! - [`io`] (`weir-io`): log parsers, sources, sinks;
//! - [`replay`] and [`serve`]: a log source wired to a job and a sink;
//! - [`bench`]: the throughput suite `weir bench` runs.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir::engine::{count, Job};
//!
//! // Batch loaders: a Vec<RecordBatch> in hand, results back.
//! # let batches: Vec<arrow_array::RecordBatch> = Vec::new();
//! let spec = Job::builder()
//!     .parallelism(4)
//!     .event_time("ts")
//!     .key_by(["client"])
//!     .tumbling(Duration::from_secs(5))
//!     .aggregate([count()])
//!     .build()?;
//! let results = weir::engine::aggregate(batches, &spec)?;
//! # Ok::<(), weir::engine::EngineError>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod checkpointed;
mod coordinator;
mod error;
pub mod kafka_run;
pub mod metrics;
pub mod replay;
pub mod scale_out;
pub mod serve;
pub mod stop;
pub mod units;
pub mod verify;

pub use error::{Error, Result};

/// weir's version and the commit it was built from: `0.1.0 (3f2a9c1b7e0d)`, with `-dirty` when
/// the tree had uncommitted changes, or `(unknown)` when built outside a git checkout (see
/// `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WEIR_GIT_COMMIT"),
    ")"
);
pub use weir_engine as engine;
pub use weir_io as io;
