//! What a job is, before it meets a schema: [`JobSpec`], built and checked by [`JobBuilder`].
//!
//! A spec names columns (event time, keys, aggregate inputs) and says how to run (parallelism,
//! inputs, windows, watermarks, queues). [`JobBuilder::build`] checks what can be checked
//! without a schema; binding to a schema (`plan`) and starting (`job`) come later and build on
//! this module, which depends only on the job's parts: aggregates, windows, watermark strategy,
//! the queue's default capacity and the snapshot type a job hands out.

use std::time::Duration;

use crate::aggregate::AggregateExpr;
use crate::error::{EngineError, Result};
use crate::keygroup::{DEFAULT_KEY_GROUPS, MAX_KEY_GROUPS};
use crate::queue;
use crate::watermark::WatermarkStrategy;
use crate::window::TumblingWindows;

/// The most workers a job may have. Each worker is a pinned thread with a queue from every
/// input: beyond a few per core they only add memory (thousands of queues) and context switches.
pub const MAX_PARALLELISM: usize = 256;
/// The most inputs (pushing threads, source splits) a job may have, for the same reason.
pub const MAX_INPUTS: usize = 1024;

/// Entry point: `Job::builder()`.
#[derive(Debug)]
pub struct Job;

impl Job {
    /// A builder with the defaults: parallelism 1, one input, 5 s tumbling windows, ascending
    /// watermarks, ordered results.
    pub fn builder() -> JobBuilder {
        JobBuilder::default()
    }
}

/// Builds a [`JobSpec`].
#[derive(Debug, Clone)]
pub struct JobBuilder {
    spec: JobSpec,
    window: Duration,
}

impl Default for JobBuilder {
    fn default() -> Self {
        Self {
            spec: JobSpec {
                parallelism: 1,
                key_groups: DEFAULT_KEY_GROUPS,
                inputs: 1,
                event_time: "ts".into(),
                keys: Vec::new(),
                windows: TumblingWindows::new(Duration::from_secs(5)),
                aggregates: Vec::new(),
                watermark: WatermarkStrategy::Ascending,
                idle_timeout: None,
                queue_capacity: queue::DEFAULT_CAPACITY,
                results_capacity: 64,
                pin_workers: true,
                ordered: true,
                late_output: false,
                checkpoints: false,
            },
            window: Duration::from_secs(5),
        }
    }
}

impl JobBuilder {
    /// Number of partition workers (threads), at least 1.
    pub fn parallelism(mut self, n: usize) -> Self {
        self.spec.parallelism = n;
        self
    }

    /// Number of key groups (max parallelism), at least the parallelism: keys hash into this
    /// many groups and each worker owns a range of them. Fixed for the life of a job's
    /// checkpoints, which can be restored at any parallelism up to it (module `keygroup`).
    pub fn key_groups(mut self, n: usize) -> Self {
        self.spec.key_groups = n;
        self
    }

    /// Number of inputs (pushing threads, source splits), each with its own watermark.
    pub fn inputs(mut self, n: usize) -> Self {
        self.spec.inputs = n;
        self
    }

    /// The event-time column: `Timestamp(Millisecond, _)`, no nulls.
    pub fn event_time(mut self, column: &str) -> Self {
        self.spec.event_time = column.into();
        self
    }

    /// The key columns (any Arrow types that can be compared; one or more).
    pub fn key_by<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.spec.keys = columns.into_iter().map(|c| c.as_ref().to_owned()).collect();
        self
    }

    /// Tumbling windows of `size`, aligned to the epoch.
    pub fn tumbling(mut self, size: Duration) -> Self {
        self.window = size;
        self
    }

    /// The aggregates to compute per window and key.
    pub fn aggregate(mut self, aggs: impl IntoIterator<Item = AggregateExpr>) -> Self {
        self.spec.aggregates = aggs.into_iter().collect();
        self
    }

    /// How inputs derive watermarks.
    pub fn watermark(mut self, strategy: WatermarkStrategy) -> Self {
        self.spec.watermark = strategy;
        self
    }

    /// Shorthand for [`WatermarkStrategy::BoundedOutOfOrderness`].
    pub fn max_out_of_orderness(self, bound: Duration) -> Self {
        self.watermark(WatermarkStrategy::bounded(bound))
    }

    /// An input that sends nothing for this long stops holding the watermark back while other
    /// inputs advance (for unbounded sources; off by default).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.spec.idle_timeout = Some(timeout);
        self
    }

    /// Capacity, in batches, of each queue between inputs, workers and the collector.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.spec.queue_capacity = n.max(1);
        self
    }

    /// Capacity, in batches, of the results channel of [`JobSpec::start`].
    pub fn results_capacity(mut self, n: usize) -> Self {
        self.spec.results_capacity = n.max(1);
        self
    }

    /// Whether to pin workers to cores (when there are at least as many cores as workers).
    pub fn pin_workers(mut self, pin: bool) -> Self {
        self.spec.pin_workers = pin;
        self
    }

    /// Whether results are delivered oldest window first (default) or as soon as they fire.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.spec.ordered = ordered;
        self
    }

    /// Sends late rows to a side output ([`RunningJob::late_records`](crate::RunningJob::late_records)).
    pub fn late_output(mut self, on: bool) -> Self {
        self.spec.late_output = on;
        self
    }

    /// Takes a [`WorkerSnapshot`] of every worker at each aligned checkpoint barrier (see
    /// [`Input::barrier`](crate::Input::barrier)), delivered on the running job's
    /// [`RunningJob::take_snapshots`](crate::RunningJob::take_snapshots) channel, which
    /// disconnects when every worker has ended. Without it barriers still align and reach the
    /// sink, but no state is saved.
    pub fn checkpoints(mut self, on: bool) -> Self {
        self.spec.checkpoints = on;
        self
    }

    /// Checks what can be checked without a schema and returns the spec.
    pub fn build(mut self) -> Result<JobSpec> {
        self.spec.windows = TumblingWindows::try_new(self.window).ok_or_else(|| {
            EngineError::Plan(format!(
                "window size {:?} is out of range (1 ms and up)",
                self.window
            ))
        })?;
        let s = &self.spec;
        if s.parallelism == 0 || s.parallelism > MAX_PARALLELISM {
            return Err(EngineError::Plan(format!(
                "parallelism {} is out of range: 1 to {MAX_PARALLELISM} workers",
                s.parallelism
            )));
        }
        if s.key_groups == 0 || s.key_groups > MAX_KEY_GROUPS {
            return Err(EngineError::Plan(format!(
                "{} key groups are out of range: 1 to {MAX_KEY_GROUPS}",
                s.key_groups
            )));
        }
        if s.parallelism > s.key_groups {
            return Err(EngineError::Plan(format!(
                "parallelism {} is more than the job's {} key groups: each worker owns at least \
                 one key group, so raise the key groups (max parallelism) or lower the parallelism",
                s.parallelism, s.key_groups
            )));
        }
        if s.inputs == 0 || s.inputs > MAX_INPUTS {
            return Err(EngineError::Plan(format!(
                "{} inputs are out of range: a job has 1 to {MAX_INPUTS}",
                s.inputs
            )));
        }
        if s.keys.is_empty() {
            return Err(EngineError::Plan(
                "key_by needs at least one key column".into(),
            ));
        }
        if s.aggregates.is_empty() {
            return Err(EngineError::Plan(
                "a job needs at least one aggregate".into(),
            ));
        }
        Ok(self.spec)
    }
}

/// A job description, not yet bound to a schema. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub(crate) parallelism: usize,
    pub(crate) key_groups: usize,
    pub(crate) inputs: usize,
    pub(crate) event_time: String,
    pub(crate) keys: Vec<String>,
    pub(crate) windows: TumblingWindows,
    pub(crate) aggregates: Vec<AggregateExpr>,
    pub(crate) watermark: WatermarkStrategy,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) queue_capacity: usize,
    pub(crate) results_capacity: usize,
    pub(crate) pin_workers: bool,
    pub(crate) ordered: bool,
    pub(crate) late_output: bool,
    pub(crate) checkpoints: bool,
}

impl JobSpec {
    /// The number of partition workers.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    /// The number of key groups (max parallelism).
    pub fn key_groups(&self) -> usize {
        self.key_groups
    }

    /// The window assigner.
    pub fn windows(&self) -> TumblingWindows {
        self.windows
    }
}
