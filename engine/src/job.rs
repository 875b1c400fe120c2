//! The library face of the engine: build a job, start it, push batches, take results.
//!
//! ```text
//!  Input 0 ──push──▶ slice at watermark steps ─▶ partition by key hash ─┬─▶ worker 0 ─┐
//!  Input 1 ──push──▶        (per input)                                  ├─▶ worker 1 ─┼─▶ collector ─▶ ResultSink
//!    …                                                                   └─▶ worker P ─┘   (ordered)     or channel
//! ```
//!
//! A [`JobSpec`] (module `spec`) is bound to a schema and started here: its `start` methods
//! build the queues, spawn the workers and the collector, and hand back a [`RunningJob`].
//! An [`Input`] is owned by one pushing thread; a job has as many as it was built with
//! ([`JobBuilder::inputs`](crate::JobBuilder::inputs)), each with its own watermark. Pushing partitions the batch on the
//! caller's thread and blocks while the workers' queues are full, so the producer runs exactly as
//! fast as the job can take.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use crossbeam_channel::Receiver;

use crate::error::{EngineError, Result};
use crate::keygroup::KeyGroupRange;
use crate::live::LiveStats;
use crate::message::{Barrier, Message};
use crate::partition::Partitioner;
use crate::plan::Plan;
use crate::queue::{self, Producer};
use crate::sink::{collect, ResultSink, SinkError};
use crate::snapshot::WorkerSnapshot;
use crate::spec::JobSpec;
use crate::state::{regroup, RestoredWorker};
use crate::stats::JobStats;
use crate::watermark::{InputWatermark, WatermarkStrategy};
use crate::worker::{Worker, WorkerReport};

impl JobSpec {
    /// The schema of the result batches for input batches of `input` schema, or the plan error
    /// naming the column at fault.
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(Arc::clone(
            &Plan::new(self, Arc::clone(input))?.output_schema,
        ))
    }

    /// Starts the job; results arrive on [`RunningJob::results`]. Read them on another thread
    /// than the one pushing, or the pusher can wait on a full results channel forever; or use
    /// [`JobSpec::start_with_sink`].
    pub fn start(&self, schema: SchemaRef) -> Result<RunningJob> {
        let (tx, rx) = crossbeam_channel::bounded(self.results_capacity);
        let sink = move |batch: RecordBatch| -> Result<(), SinkError> {
            tx.send(batch)
                .map_err(|_| "the results receiver was dropped".into())
        };
        let mut job = self.start_with_sink(schema, Box::new(sink))?;
        job.results = Some(rx);
        Ok(job)
    }

    /// Starts the job, delivering results to `sink` on the collector thread.
    pub fn start_with_sink(
        &self,
        schema: SchemaRef,
        sink: Box<dyn ResultSink>,
    ) -> Result<RunningJob> {
        self.launch(schema, sink, None)
    }

    /// Starts the job from a checkpoint: `states[i]` is what [`WorkerSnapshot::encode`] wrote
    /// for worker `i` of the checkpoint, taken at this job's parallelism or any other: each
    /// key's state goes to the worker that now owns its key group (`state::regroup`). The key
    /// groups must be the checkpoint's. The caller rewinds its sources to the positions of the
    /// same checkpoint and resumes each input's watermark ([`Input::advance_to`]).
    pub fn start_restored(
        &self,
        schema: SchemaRef,
        sink: Box<dyn ResultSink>,
        states: &[&[u8]],
    ) -> Result<RunningJob> {
        let plan = Plan::new(self, schema.clone())?;
        let decoded = states
            .iter()
            .enumerate()
            .map(|(i, s)| RestoredWorker::decode(&plan, i, s))
            .collect::<Result<Vec<_>>>()?;
        let restored = regroup::reassign(&plan, decoded, self.parallelism, self.key_groups)?;
        self.launch(schema, sink, Some(restored))
    }

    fn launch(
        &self,
        schema: SchemaRef,
        mut sink: Box<dyn ResultSink>,
        restored: Option<Vec<RestoredWorker>>,
    ) -> Result<RunningJob> {
        let mut restored = restored.map(|r| r.into_iter());
        let plan = Arc::new(Plan::new(self, schema)?);
        let p = self.parallelism;
        let cores = if self.pin_workers {
            core_affinity::get_core_ids().filter(|ids| ids.len() >= p)
        } else {
            None
        };

        // queues[input][worker]
        let mut producers: Vec<Vec<Producer>> =
            (0..self.inputs).map(|_| Vec::with_capacity(p)).collect();
        let mut consumers: Vec<Vec<queue::Consumer>> =
            (0..p).map(|_| Vec::with_capacity(self.inputs)).collect();
        for input in producers.iter_mut() {
            for worker_inputs in consumers.iter_mut() {
                let (tx, rx) = queue::bounded(self.queue_capacity);
                input.push(tx);
                worker_inputs.push(rx);
            }
        }
        let outputs: Vec<(queue::Producer, queue::Consumer)> = (0..p)
            .map(|_| queue::bounded(self.queue_capacity))
            .collect();
        let live = Arc::new(LiveStats::new(
            self.inputs,
            consumers
                .iter()
                .zip(&outputs)
                .map(|(ins, (out, _))| {
                    let ins = ins.iter().map(|c| Arc::clone(c.stats())).collect();
                    (ins, Arc::clone(out.stats()))
                })
                .collect(),
        ));
        let (late_tx, late_rx) = if self.late_output {
            let (tx, rx) = crossbeam_channel::bounded(1024);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };

        let (snapshots_tx, snapshots_rx) = if self.checkpoints {
            let (tx, rx) = crossbeam_channel::unbounded();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let mut output_rx = Vec::with_capacity(p);
        let mut workers = Vec::with_capacity(p);
        for (index, (inputs, (out_tx, out_rx))) in consumers.into_iter().zip(outputs).enumerate() {
            output_rx.push(out_rx);
            let worker = Worker {
                index,
                live: Arc::clone(&live),
                key_groups: self.key_groups,
                range: KeyGroupRange::of_worker(index, p, self.key_groups),
                plan: Arc::clone(&plan),
                inputs,
                output: out_tx,
                late: late_tx.clone(),
                idle_timeout: self.idle_timeout,
                core: cores.as_ref().map(|ids| ids[index]),
                snapshots: snapshots_tx.clone(),
                restored: restored.as_mut().and_then(Iterator::next),
            };
            let handle = std::thread::Builder::new()
                .name(format!("weir-worker-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| EngineError::Execution(format!("cannot start worker thread: {e}")))?;
            workers.push(handle);
        }
        drop((late_tx, snapshots_tx));

        let ordered = self.ordered;
        let collector_live = Arc::clone(&live);
        let collector = std::thread::Builder::new()
            .name("weir-collector".into())
            .spawn(move || collect(output_rx, sink.as_mut(), ordered, &collector_live))
            .map_err(|e| EngineError::Execution(format!("cannot start collector thread: {e}")))?;

        let inputs = producers
            .into_iter()
            .enumerate()
            .map(|(index, producers)| Input {
                index,
                plan: Arc::clone(&plan),
                producers,
                partitioner: Partitioner::with_plan(Arc::clone(&plan), p, self.key_groups),
                watermark: InputWatermark::new(self.watermark, self.windows),
                live: Arc::clone(&live),
                finished: false,
                held: false,
            })
            .collect();
        Ok(RunningJob {
            inputs,
            results: None,
            late: late_rx,
            snapshots: snapshots_rx,
            workers,
            collector,
            live,
            started: Instant::now(),
            output_schema: Arc::clone(&plan.output_schema),
        })
    }
}

/// One input of a running job, owned by one pushing thread.
///
/// Call [`Input::finish`] when done: an input dropped without it makes the job fail, because
/// the run would be incomplete (a producer that panicked, say).
#[derive(Debug)]
pub struct Input {
    index: usize,
    plan: Arc<Plan>,
    producers: Vec<Producer>,
    partitioner: Partitioner,
    watermark: InputWatermark,
    live: Arc<LiveStats>,
    finished: bool,
    /// Rows do not move the watermark: only [`Input::advance_to`] does.
    held: bool,
}

impl Input {
    /// Pushes a batch, blocking while the workers' queues are full. An error means the batch
    /// does not fit the job (nothing of it was sent) or the job has stopped.
    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.plan.check_batch(&batch)?;
        let n = batch.num_rows();
        let plan = Arc::clone(&self.plan);
        let ts = plan.timestamps(&batch);
        let mut offset = 0;
        while offset < n && !self.held {
            match self.watermark.advance(&ts[offset..]) {
                Some((len, wm)) => {
                    self.send_rows(&batch.slice(offset, len))?;
                    self.broadcast(Message::Watermark(wm))?;
                    offset += len;
                }
                None => break,
            }
        }
        if offset < n {
            let rest = if offset == 0 {
                batch.clone()
            } else {
                batch.slice(offset, n - offset)
            };
            self.send_rows(&rest)?;
        }
        let live = &self.live.inputs[self.index];
        live.rows.add(n as u64);
        self.publish_watermark();
        Ok(())
    }

    /// This input's place among the job's inputs (0-based): what [`LiveStats`] numbers it by.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Shows this input's watermark to [`LiveStats`] readers.
    fn publish_watermark(&self) {
        let live = &self.live.inputs[self.index];
        live.watermark
            .store(self.watermark.current(), Ordering::Relaxed);
        live.max_timestamp
            .store(self.watermark.max_timestamp(), Ordering::Relaxed);
    }

    /// Sends checkpoint barrier `epoch` to every worker, after everything pushed so far.
    pub fn barrier(&mut self, epoch: u64) -> Result<()> {
        self.broadcast(Message::Barrier(Barrier { epoch }))
    }

    /// This input's current watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark.current()
    }

    /// The largest event time pushed so far: what a source saves at a checkpoint barrier to
    /// resume this input's watermark after a restore.
    pub fn max_timestamp(&self) -> i64 {
        self.watermark.max_timestamp()
    }

    /// Moves this input's watermark as if it had seen a row at `max_timestamp`, sending the
    /// new watermark if it passes a window boundary. For rows that belong before this input's
    /// next ones but that it did not push: those before a restored checkpoint (pass the
    /// [`Input::max_timestamp`] saved there, and rows replayed after it are judged late exactly
    /// as they were), or, when several inputs share one ordered source, the rows other inputs
    /// pushed from earlier parts of it (so lateness follows the source's order, not the
    /// inputs' interleaving). Never moves the watermark back.
    pub fn advance_to(&mut self, max_timestamp: i64) -> Result<()> {
        let advanced = self.watermark.advance(&[max_timestamp]);
        self.publish_watermark();
        match advanced {
            Some((_, wm)) => self.broadcast(Message::Watermark(wm)),
            None => Ok(()),
        }
    }

    /// From now on this input's rows do not move its watermark: only [`Input::advance_to`]
    /// does. For a source that knows its event time better than the order of its rows: a
    /// shuffle's partition, where rows of many upstream partitions interleave and the
    /// watermark is the least of theirs, sent along with them.
    pub fn hold_watermark(&mut self) {
        self.held = true;
    }

    /// Says this input has nothing to send for now (its source has gone, e.g. a connection
    /// closed): until its next message it holds no window back, so the other inputs' windows
    /// fire without it; and its watermark starts over, so the next rows (perhaps from another
    /// source) are judged as those of a new input. Rows behind the worker's watermark are late
    /// as usual. An idle input still takes part in barrier alignment: jobs that take
    /// checkpoints must keep sending barriers through it.
    pub fn idle(&mut self) -> Result<()> {
        self.watermark.restart();
        self.publish_watermark();
        self.live.inputs[self.index]
            .idle
            .store(true, Ordering::Relaxed);
        self.broadcast(Message::Idle)
    }

    /// Says this input is active again before it has rows to send (a new source has taken it
    /// over): from now on it holds windows back from the start of event time until its rows
    /// move its watermark, or until it has been silent for the job's idle timeout.
    pub fn active(&mut self) -> Result<()> {
        self.live.inputs[self.index]
            .idle
            .store(false, Ordering::Relaxed);
        self.broadcast(Message::Active)
    }

    /// Rows pushed through this input.
    pub fn rows(&self) -> u64 {
        self.live.inputs[self.index].rows.get()
    }

    /// Ends this input. The job ends when every input has finished.
    pub fn finish(mut self) -> Result<()> {
        self.finished = true;
        self.broadcast(Message::End)
    }

    fn send_rows(&mut self, batch: &RecordBatch) -> Result<()> {
        let parts = self.partitioner.split(batch)?;
        for (producer, part) in self.producers.iter_mut().zip(parts) {
            if let Some(part) = part {
                producer
                    .send(Message::Data(part))
                    .map_err(|_| EngineError::Closed)?;
            }
        }
        Ok(())
    }

    fn broadcast(&mut self, msg: Message) -> Result<()> {
        for producer in &mut self.producers {
            producer
                .send(msg.clone())
                .map_err(|_| EngineError::Closed)?;
        }
        Ok(())
    }
}

/// A started job.
#[derive(Debug)]
pub struct RunningJob {
    inputs: Vec<Input>,
    results: Option<Receiver<RecordBatch>>,
    late: Option<Receiver<RecordBatch>>,
    snapshots: Option<Receiver<WorkerSnapshot>>,
    workers: Vec<JoinHandle<Result<WorkerReport>>>,
    collector: JoinHandle<Result<()>>,
    live: Arc<LiveStats>,
    started: Instant,
    output_schema: SchemaRef,
}

impl RunningJob {
    /// Takes the job's inputs (all of them; later calls return none).
    pub fn take_inputs(&mut self) -> Vec<Input> {
        std::mem::take(&mut self.inputs)
    }

    /// Takes the first remaining input.
    pub fn input(&mut self) -> Option<Input> {
        (!self.inputs.is_empty()).then(|| self.inputs.remove(0))
    }

    /// The results channel, when started with [`JobSpec::start`].
    pub fn results(&self) -> Option<&Receiver<RecordBatch>> {
        self.results.as_ref()
    }

    /// Takes the results channel, e.g. to read it on another thread.
    pub fn take_results(&mut self) -> Option<Receiver<RecordBatch>> {
        self.results.take()
    }

    /// Late rows, when built with [`JobBuilder::late_output`](crate::JobBuilder::late_output). Drain it: a full side output
    /// (1024 batches) blocks the workers.
    pub fn late_records(&self) -> Option<&Receiver<RecordBatch>> {
        self.late.as_ref()
    }

    /// Takes the late-rows channel.
    pub fn take_late_records(&mut self) -> Option<Receiver<RecordBatch>> {
        self.late.take()
    }

    /// Takes the channel of worker snapshots, when built with [`JobBuilder::checkpoints`](crate::JobBuilder::checkpoints): one
    /// per worker at each aligned barrier; it disconnects when every worker has ended. The
    /// receiver must keep up with checkpoints (it is unbounded).
    pub fn take_snapshots(&mut self) -> Option<Receiver<WorkerSnapshot>> {
        self.snapshots.take()
    }

    /// The job's counters, readable while it runs (metrics, status pages).
    pub fn live(&self) -> Arc<LiveStats> {
        Arc::clone(&self.live)
    }

    /// The schema of result batches.
    pub fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    /// Waits for the job to end (inputs not taken are finished here) and returns its stats, or
    /// the first error: a worker's panic or error before the collector's.
    pub fn join(mut self) -> Result<JobStats> {
        for input in std::mem::take(&mut self.inputs) {
            let _ = input.finish();
        }
        // Errors by how much they explain: a panic, then a worker's own error, then the
        // collector's (a failing sink), then a dropped input (whoever fed it failed, and the
        // caller knows why), and last `Closed`, which only echoes one of those.
        let rank = |e: &EngineError| match e {
            EngineError::WorkerPanicked { .. } => 0,
            EngineError::InputDropped { .. } => 2,
            EngineError::Closed => 3,
            _ => 1,
        };
        let mut first_err: Option<EngineError> = None;
        let keep = |e: EngineError, first_err: &mut Option<EngineError>| {
            if first_err.as_ref().is_none_or(|f| rank(&e) < rank(f)) {
                *first_err = Some(e);
            }
        };
        let mut stats = JobStats::default();
        for (worker, handle) in self.workers.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(r)) => {
                    stats.worker_rows.push(self.live.worker_rows(worker));
                    stats.worker_cores.push(r.core);
                    stats.peak_open_windows = stats.peak_open_windows.max(r.peak_open_windows);
                    stats.peak_window_bytes = stats.peak_window_bytes.max(r.peak_state_bytes);
                    stats.worker_blocked += r.output_blocked;
                    stats.snapshots += r.snapshots;
                    stats.snapshot_pause_total += r.pause_total;
                    stats.snapshot_pause_max = stats.snapshot_pause_max.max(r.pause_max);
                }
                Ok(Err(e)) => keep(e, &mut first_err),
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    keep(
                        EngineError::WorkerPanicked { worker, message },
                        &mut first_err,
                    );
                }
            }
        }
        // The collector ends once every worker's output queue is closed, which has happened.
        let collected = self
            .collector
            .join()
            .map_err(|_| EngineError::Internal("the collector thread panicked".into()))?;
        match (collected, first_err) {
            (Ok(_), None) => {}
            (Ok(_), Some(e)) => return Err(e),
            // The collector only saw a worker stop: the worker's error says why.
            (Err(EngineError::WorkerStopped { .. }), Some(e)) => return Err(e),
            (Err(_), Some(e)) if rank(&e) < 2 => return Err(e),
            (Err(c), _) => return Err(c),
        };
        let live = &self.live;
        stats.late_rows = live.late_rows();
        stats.late_by_window = live.late_by_window();
        stats.windows_fired = live.windows_fired();
        stats.result_rows = live.result_rows();
        stats.result_batches = live.result_batches();
        stats.checkpoints = live.checkpoints();
        stats.rows_in = live.rows_in();
        for w in 0..live.workers() {
            let (n, t) = live.worker_stalls(w);
            stats.input_full_events += n;
            stats.input_blocked += t;
        }
        stats.elapsed = self.started.elapsed();
        Ok(stats)
    }
}

/// Runs `spec` over batches already in memory, as a batch job: no watermarks until the end, so
/// nothing is late, and every window is in the result, oldest first. The batches are pushed in
/// parallel (rayon) through as many inputs as there are threads.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use arrow_array::{RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
/// use arrow_schema::{DataType, Field, Schema, TimeUnit};
/// use weir_engine::{aggregate, count, sum, Job};
///
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
///     Field::new("ip", DataType::Utf8, false),
///     Field::new("bytes", DataType::UInt64, false),
/// ]));
/// let batch = RecordBatch::try_new(schema, vec![
///     Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000, 6_000])),
///     Arc::new(StringArray::from(vec!["10.0.0.1", "10.0.0.1", "10.0.0.2"])),
///     Arc::new(UInt64Array::from(vec![100, 50, 7])),
/// ]).unwrap();
///
/// let spec = Job::builder()
///     .parallelism(2)
///     .event_time("ts")
///     .key_by(["ip"])
///     .tumbling(Duration::from_secs(5))
///     .aggregate([weir_engine::count(), sum("bytes")])
///     .build()
///     .unwrap();
/// let results = aggregate(vec![batch], &spec).unwrap();
/// let rows: usize = results.iter().map(|b| b.num_rows()).sum();
/// assert_eq!(rows, 2); // (0 s, 10.0.0.1): 2 requests, 150 bytes; (5 s, 10.0.0.2): 1, 7
/// # let _ = count();
/// ```
pub fn aggregate(batches: Vec<RecordBatch>, spec: &JobSpec) -> Result<Vec<RecordBatch>> {
    use rayon::prelude::*;
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let k = rayon::current_num_threads().clamp(1, batches.len());
    let mut spec = spec.clone();
    spec.inputs = k;
    spec.watermark = WatermarkStrategy::EndOfInput;
    let results = Arc::new(Mutex::new(Vec::new()));
    let sink_results = Arc::clone(&results);
    let sink = move |b: RecordBatch| -> Result<(), SinkError> {
        sink_results.lock().expect("results lock").push(b);
        Ok(())
    };
    let mut job = spec.start_with_sink(schema, Box::new(sink))?;
    let inputs = job.take_inputs();
    let chunk = batches.len().div_ceil(k);
    let pushed: Vec<Result<()>> = inputs
        .into_par_iter()
        .zip(batches.par_chunks(chunk))
        .map(|(mut input, part)| {
            for b in part {
                input.push(b.clone())?;
            }
            input.finish()
        })
        .collect();
    let joined = job.join();
    pushed.into_iter().collect::<Result<()>>()?;
    joined?;
    let out = std::mem::take(&mut *results.lock().expect("results lock"));
    Ok(out)
}
