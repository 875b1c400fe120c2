//! The one message type that flows on every queue.
//!
//! Data and control travel in-band, in order: a [`Message::Watermark`] or [`Message::Barrier`]
//! sent after a batch can never overtake it, because both go down the same FIFO queue. That is
//! the whole correctness argument for watermarks and aligned checkpoints, so no side channel
//! carries either.

use arrow_array::RecordBatch;

/// A message between operators: from an input to a partition worker, or from a worker to the
/// result collector.
#[derive(Debug, Clone)]
pub enum Message {
    /// A batch of rows. Between an input and a worker: the rows of one partition. Between a
    /// worker and the collector: the results of one fired window.
    Data(RecordBatch),
    /// Event time has reached this value (epoch milliseconds): the sender will send no row whose
    /// window ends at or before it. Watermarks of one sender never go backwards.
    Watermark(i64),
    /// Checkpoint barrier `epoch`: everything before it belongs to checkpoint `epoch`.
    Barrier(Barrier),
    /// The sender has nothing to send for now (Flink's idle watermark status): it holds no
    /// window back until its next message, and its watermark starts over from there. Only
    /// between an input and a worker.
    Idle,
    /// The sender is active again, at the start of event time, before it has sent any rows:
    /// it holds windows back from now on (or until it goes idle). Only between an input and a
    /// worker.
    Active,
    /// The sender is done; nothing follows.
    End,
}

/// A checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Barrier {
    /// The checkpoint number, increasing from 1.
    pub epoch: u64,
}
