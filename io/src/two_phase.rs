//! Sinks that take part in checkpoints: the two halves of a two-phase commit.
//!
//! ```text
//!  result thread: ResultSink ──Ready(n, mark)──▶ coordinator ──prepare(n, mark)──▶ record for
//!  (the job's collector)      ──Finished(n, mark)─▶             manifest n durable ──▶ commit(n)
//! ```
//!
//! A checkpointed output has two halves. The engine's result thread holds the writing half (an
//! [`weir_engine::ResultSink`]): it writes results as windows fire and, when a checkpoint's barrier
//! or the end of the input passes, marks where the epoch's results end and sends that
//! [`SinkEvent`] to the checkpoint coordinator. The coordinator holds the committing half (a
//! [`TwoPhaseSink`]): once every piece of checkpoint `n` is in, it *prepares* `n` (makes the
//! results up to the mark durable, and gets the sink's record for the manifest, from which a
//! restart recovers exactly them), writes the manifest, and only then *commits* `n`.
//!
//! Two sinks implement it: the exactly-once results file
//! ([`crate::results_file::exactly_once`]: prepare = fdatasync what the epoch appended; the
//! manifest records the committed length and checksum; commit = nothing until the end, when the
//! results become the output) and Kafka's transactional sink ([`crate::kafka::sink`]: prepare =
//! nothing more than the records already sent in the open transaction; commit = commit that
//! transaction with the input offsets and the job's progress record).

use crossbeam_channel::Receiver;

use crate::error::Result;

/// What the writing half of a sink tells the coordinator.
#[derive(Debug)]
pub enum SinkEvent<M> {
    /// Every result of epoch `n` has been handed to the sink, which marked where they end.
    Ready(u64, M),
    /// The input ended: epoch `n` (the open one) is the last; its results end at the mark.
    Finished(u64, M),
}

/// A sink that takes part in checkpoints: the coordinator's (committing) half of it.
pub trait TwoPhaseSink {
    /// Where a result ends, as the writing half marks it at a barrier or at the end.
    type Mark: Send;
    /// Where the writing half's events arrive.
    fn events(&self) -> Receiver<SinkEvent<Self::Mark>>;
    /// Makes epoch `epoch`'s results (up to `mark`) ready to commit and returns the sink's
    /// record for the manifest, from which a restart recovers exactly them.
    fn prepare(&mut self, epoch: u64, mark: Self::Mark) -> Result<serde_json::Value>;
    /// Checkpoint `epoch`'s manifest (fingerprint `manifest`, source `positions`) is durable:
    /// commits the epoch. `finished`: the input ended with it; `last`: the run is suspended
    /// after it.
    fn commit(
        &mut self,
        epoch: u64,
        manifest: &str,
        positions: &serde_json::Value,
        finished: bool,
        last: bool,
    ) -> Result<()>;
}
