//! What a run did, for the summary line, metrics and tests.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters of one finished job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStats {
    /// Rows pushed into the job.
    pub rows_in: u64,
    /// Rows that arrived after their window had fired (counted, not aggregated).
    pub late_rows: u64,
    /// Late rows per window start (epoch milliseconds).
    pub late_by_window: BTreeMap<i64, u64>,
    /// Distinct windows that fired.
    pub windows_fired: u64,
    /// Result rows delivered to the sink.
    pub result_rows: u64,
    /// Result batches delivered to the sink.
    pub result_batches: u64,
    /// Checkpoints that completed.
    pub checkpoints: u64,
    /// Rows folded (or found late) by each worker.
    pub worker_rows: Vec<u64>,
    /// The core each worker was pinned to, if it was.
    pub worker_cores: Vec<Option<usize>>,
    /// Most windows open at once in any worker.
    pub peak_open_windows: usize,
    /// Largest state of one window, in bytes, in any worker.
    pub peak_window_bytes: usize,
    /// Time inputs spent blocked on full queues (backpressure from the workers).
    pub input_blocked: Duration,
    /// Sends by inputs that found a queue full.
    pub input_full_events: u64,
    /// Time workers spent blocked on their output queues (backpressure from the sink).
    pub worker_blocked: Duration,
    /// Worker snapshots taken at checkpoint barriers (one per worker per checkpoint).
    pub snapshots: u64,
    /// Longest pause of a worker to take a snapshot.
    pub snapshot_pause_max: Duration,
    /// Sum of all snapshot pauses.
    pub snapshot_pause_total: Duration,
    /// Wall time from start to the end of the last worker.
    pub elapsed: Duration,
}

impl JobStats {
    /// Rows per second over the whole run.
    pub fn rows_per_sec(&self) -> f64 {
        self.rows_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}
