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
//! - [`replay`] and [`serve`]: a log source wired to a job and a sink.
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

pub mod checkpointed;
mod coordinator;
mod error;
pub mod kafka_run;
pub mod replay;
pub mod serve;
pub mod stop;
pub mod units;
pub mod verify;

pub use error::{Error, Result};
pub use weir_engine as engine;
pub use weir_io as io;
