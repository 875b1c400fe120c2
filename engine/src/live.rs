//! The counters of a running job, readable while it runs: what metrics and status pages show.
//!
//! ```text
//!   Input k ──(per push)──▶ inputs[k]: rows, watermark, max timestamp
//!   worker w ─(per batch)─▶ workers[w]: rows, late rows (and inputs[k].late, late_by_window)
//!   queues ───(per message)▶ QueueStats: fill, producer stalls (see `queue`)
//!   collector ─(per batch)─▶ windows fired, result rows and batches, checkpoints
//! ```
//!
//! Every counter has one writer (or a few, for the per-input late rows and the late rows per
//! window, which only late rows touch) and is updated once per batch or message, never per row,
//! with relaxed atomics: a reader sees each value as of some recent moment, not a consistent cut
//! across them. [`JobStats`](crate::JobStats) at the end of a run is read from the same
//! counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::queue::QueueStats;

/// The live counters of one job, shared by its threads; see the module doc.
#[derive(Debug)]
pub struct LiveStats {
    pub(crate) inputs: Vec<InputLive>,
    pub(crate) workers: Vec<WorkerLive>,
    pub(crate) windows_fired: Counter,
    pub(crate) result_rows: Counter,
    pub(crate) result_batches: Counter,
    pub(crate) checkpoints: Counter,
    pub(crate) late_by_window: Mutex<BTreeMap<i64, u64>>,
}

/// Live counters of one input.
#[derive(Debug)]
pub(crate) struct InputLive {
    pub(crate) rows: Counter,
    pub(crate) watermark: AtomicI64,
    pub(crate) max_timestamp: AtomicI64,
    pub(crate) late_rows: AtomicU64,
    pub(crate) idle: AtomicBool,
}

/// Live counters of one worker, with its queues.
#[derive(Debug)]
pub(crate) struct WorkerLive {
    pub(crate) rows: Counter,
    pub(crate) late_rows: Counter,
    pub(crate) watermark: AtomicI64,
    /// The queues from each input into this worker.
    pub(crate) inputs: Vec<Arc<QueueStats>>,
    /// The queue from this worker to the collector.
    pub(crate) output: Arc<QueueStats>,
}

/// A counter with a single writer: an add is a relaxed load and store, as cheap as a plain add.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only one thread may call this on a given counter.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl LiveStats {
    /// Counters for `inputs` inputs and one worker per entry of `queues` (`queues[w]`: the
    /// queues from each input into worker `w`, and the worker's output queue).
    pub(crate) fn new(inputs: usize, queues: Vec<(Vec<Arc<QueueStats>>, Arc<QueueStats>)>) -> Self {
        Self {
            inputs: (0..inputs)
                .map(|_| InputLive {
                    rows: Counter::default(),
                    watermark: AtomicI64::new(i64::MIN),
                    max_timestamp: AtomicI64::new(i64::MIN),
                    late_rows: AtomicU64::new(0),
                    idle: AtomicBool::new(false),
                })
                .collect(),
            workers: queues
                .into_iter()
                .map(|(inputs, output)| WorkerLive {
                    rows: Counter::default(),
                    late_rows: Counter::default(),
                    watermark: AtomicI64::new(i64::MIN),
                    inputs,
                    output,
                })
                .collect(),
            windows_fired: Counter::default(),
            result_rows: Counter::default(),
            result_batches: Counter::default(),
            checkpoints: Counter::default(),
            late_by_window: Mutex::new(BTreeMap::new()),
        }
    }

    /// The job's inputs.
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// The job's workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Rows pushed through input `k`.
    pub fn input_rows(&self, k: usize) -> u64 {
        self.inputs[k].rows.get()
    }

    /// Input `k`'s watermark (epoch milliseconds); `None` before its first row, and while it is
    /// idle (its source has gone).
    pub fn input_watermark(&self, k: usize) -> Option<i64> {
        let i = &self.inputs[k];
        let wm = i.watermark.load(Ordering::Relaxed);
        (wm != i64::MIN && !i.idle.load(Ordering::Relaxed)).then_some(wm)
    }

    /// The largest event time pushed through input `k` since it last started over.
    pub fn input_max_timestamp(&self, k: usize) -> Option<i64> {
        let ts = self.inputs[k].max_timestamp.load(Ordering::Relaxed);
        (ts != i64::MIN).then_some(ts)
    }

    /// Late rows that came through input `k`.
    pub fn input_late_rows(&self, k: usize) -> u64 {
        self.inputs[k].late_rows.load(Ordering::Relaxed)
    }

    /// Rows folded (or found late) by worker `w`.
    pub fn worker_rows(&self, w: usize) -> u64 {
        self.workers[w].rows.get()
    }

    /// Worker `w`'s watermark: the minimum over its inputs (`None` before the first).
    pub fn worker_watermark(&self, w: usize) -> Option<i64> {
        let wm = self.workers[w].watermark.load(Ordering::Relaxed);
        (wm != i64::MIN && wm != i64::MAX).then_some(wm)
    }

    /// Messages waiting in worker `w`'s input queues, and their total capacity.
    pub fn worker_queue_fill(&self, w: usize) -> (usize, usize) {
        self.workers[w]
            .inputs
            .iter()
            .fold((0, 0), |(f, c), q| (f + q.fill(), c + q.capacity()))
    }

    /// Sends into worker `w` that found its queue full (producer stalls), and the time the
    /// producers spent blocked on them.
    pub fn worker_stalls(&self, w: usize) -> (u64, Duration) {
        self.workers[w]
            .inputs
            .iter()
            .fold((0, Duration::ZERO), |(n, t), q| {
                (n + q.full_events(), t + q.blocked())
            })
    }

    /// Time worker `w` spent blocked on its output queue (backpressure from the sink).
    pub fn worker_output_blocked(&self, w: usize) -> Duration {
        self.workers[w].output.blocked()
    }

    /// Late rows, all workers.
    pub fn late_rows(&self) -> u64 {
        self.workers.iter().map(|w| w.late_rows.get()).sum()
    }

    /// Late rows per window start (epoch milliseconds).
    pub fn late_by_window(&self) -> BTreeMap<i64, u64> {
        self.late_by_window.lock().expect("late lock").clone()
    }

    /// Windows that fired (distinct window starts delivered to the collector).
    pub fn windows_fired(&self) -> u64 {
        self.windows_fired.get()
    }

    /// Result rows delivered to the sink.
    pub fn result_rows(&self) -> u64 {
        self.result_rows.get()
    }

    /// Result batches delivered to the sink.
    pub fn result_batches(&self) -> u64 {
        self.result_batches.get()
    }

    /// Checkpoint barriers that passed every worker and reached the sink.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.get()
    }

    /// Rows pushed, all inputs.
    pub fn rows_in(&self) -> u64 {
        self.inputs.iter().map(|i| i.rows.get()).sum()
    }

    /// Counts `n` late rows of window `start` that came through input `input` (worker side).
    pub(crate) fn late(&self, worker: usize, input: usize, start: i64, n: u64) {
        self.workers[worker].late_rows.add(n);
        self.inputs[input].late_rows.fetch_add(n, Ordering::Relaxed);
        *self
            .late_by_window
            .lock()
            .expect("late lock")
            .entry(start)
            .or_default() += n;
    }
}
