//! The engine's one error type.
//!
//! Variants are named after who has to act: [`EngineError::Plan`] is the caller's mistake (a
//! missing column, a wrong type) and is returned before any data flows;
//! [`EngineError::Checkpoint`] is a checkpoint that cannot be restored into the job (damaged,
//! tampered with, or taken by another job); [`EngineError::Execution`] and
//! [`EngineError::WorkerPanicked`] happen while a job runs; [`EngineError::Sink`] comes from the
//! code that consumes results; [`EngineError::Internal`] is a bug in weir.

use arrow_schema::ArrowError;

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The job does not fit the data: the message names the column and what is wrong with it.
    #[error("plan error: {0}")]
    Plan(String),
    /// A checkpoint cannot be restored into this job: a worker's state does not decode
    /// (truncated, damaged, tampered with, or written for other keys or aggregates), or the
    /// checkpoint does not fit the job (another parallelism). The checkpoint is at fault, not
    /// the input: restore another one, start fresh, or start the job it was taken with.
    #[error("checkpoint {what}: {why}")]
    Checkpoint {
        /// The part of the checkpoint at fault, e.g. `state of worker 3`.
        what: String,
        /// What is wrong with it, and what to do when there is something to do.
        why: String,
    },
    /// A job could not continue.
    #[error("execution error: {0}")]
    Execution(String),
    /// A partition worker panicked; the job was stopped.
    #[error("partition worker {worker} panicked: {message}")]
    WorkerPanicked {
        /// Index of the worker.
        worker: usize,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// An input was dropped without `finish()`: whatever fed it stopped, and its own error
    /// says why; the run is incomplete.
    #[error(
        "input {input} of worker {worker} was dropped without finish(); the run is incomplete"
    )]
    InputDropped {
        /// The input's index.
        input: usize,
        /// The worker's index.
        worker: usize,
    },
    /// The result collector saw a partition worker stop before the end of its input: the
    /// worker's own error says why.
    #[error("partition worker {worker} stopped before the end of its input")]
    WorkerStopped {
        /// The worker's index.
        worker: usize,
    },
    /// The job was stopped (a worker failed or the job was dropped) while data was still pushed.
    #[error("the job has stopped and accepts no more input")]
    Closed,
    /// The result sink refused a batch.
    #[error("result sink failed: {0}")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An Arrow kernel failed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A bug in weir.
    #[error("internal error (a bug in weir, please report it): {0}")]
    Internal(String),
}
