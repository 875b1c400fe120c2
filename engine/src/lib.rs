//! # weir-engine
//!
//! The engine of weir: parallel, thread-pinned partition workers that aggregate Arrow
//! `RecordBatch`es into tumbling event-time windows, fed by bounded lock-free queues.
//!
//! ```text
//!  push(batch) ─▶ watermark slices ─▶ hash partition ─▶ queue ─▶ worker (pinned) ─▶ queue ─▶ collector ─▶ sink
//! ```
//!
//! - One [`Message`] type on every queue: data, watermark, checkpoint barrier, an input's
//!   idle/active status, end of input.
//! - Per-row work happens only in the key hash tables and accumulator loops; everything else
//!   moves whole batches.
//! - The engine knows nothing of log formats or Kafka: it takes batches and gives batches.
//!
//! Start with [`Job::builder`], or [`aggregate`] for batches already in memory.

#![warn(missing_docs)]

// Modules bottom up: each imports only modules on lines above it (most also `error`).
// `checkpoint` stands apart: it stores bytes and imports nothing else of the crate.
//
//   error  window  message  stats  align  pages     leaves
//   hash → error;  watermark → window;  queue → message;  keygroup → hash
//   live → queue                                    counters readable while a job runs
//   aggregate → pages, hash
//   snapshot → aggregate, pages, keygroup           what a worker hands out at a barrier
//   spec → aggregate, keygroup, snapshot, watermark, window, queue
//   plan → spec, aggregate, hash, window            a spec bound to a schema
//   state → plan, snapshot, aggregate, hash, pages, keygroup
//   partition → plan, spec, hash, keygroup
//   worker → state, plan, snapshot, align, queue, message, watermark, keygroup, live
//   sink → align, queue, message, live
//   job → spec, plan, state, partition, worker, sink, queue, message, watermark, stats,
//         keygroup, live

pub mod aggregate;
mod align;
pub mod checkpoint;
mod error;
mod hash;
mod job;
pub mod keygroup;
pub mod live;
mod message;
mod pages;
mod partition;
mod plan;
pub mod queue;
mod sink;
pub mod snapshot;
mod spec;
mod state;
mod stats;
pub mod watermark;
pub mod window;
mod worker;

pub use aggregate::{
    count, max, mean, min, sum, AggregateExpr, AggregateFunction, GroupsAccumulator,
};
pub use error::{EngineError, Result};
pub use hash::{hash_bytes, hash_u64, partition_of};
pub use job::{aggregate, Input, RunningJob};
pub use keygroup::{KeyGroupRange, DEFAULT_KEY_GROUPS, MAX_KEY_GROUPS};
pub use live::LiveStats;
pub use message::{Barrier, Message};
pub use partition::Partitioner;
pub use sink::{ResultSink, SinkError};
pub use snapshot::WorkerSnapshot;
pub use spec::{Job, JobBuilder, JobSpec, MAX_INPUTS, MAX_PARALLELISM};
pub use stats::JobStats;
pub use watermark::WatermarkStrategy;
pub use window::TumblingWindows;
