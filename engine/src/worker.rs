//! The partition worker: one pinned OS thread that owns the window state of one partition.
//!
//! ```text
//!   input 0 ─queue─┐                     ┌──────────────────────────────┐
//!   input 1 ─queue─┼─ select (skipping ──▶│ data      → fold into windows │──queue──▶ collector
//!   input 2 ─queue─┘  held/ended inputs)  │ watermark → fire, forward min │
//!                                         │ barrier   → align, forward    │
//!                                         │ end       → fire all, forward │
//!                                         └──────────────────────────────┘
//! ```
//!
//! The worker reads its inputs with `crossbeam::Select`, so a quiet input costs nothing. A
//! barrier from one input holds that input (it is left out of the select) until the same barrier
//! has come from every other live input ([`BarrierAligner`]): that is barrier alignment, and it
//! makes the state at the barrier exactly the fold of everything before it on every input.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_select::take::take_record_batch;
use crossbeam_channel::{RecvTimeoutError, Select, Sender};

use crate::align::BarrierAligner;
use crate::error::{EngineError, Result};
use crate::keygroup::KeyGroupRange;
use crate::live::LiveStats;
use crate::message::{Barrier, Message};
use crate::plan::Plan;
use crate::queue::{Consumer, Producer};
use crate::snapshot::WorkerSnapshot;
use crate::state::{RestoredWorker, WindowStore};
use crate::watermark::CombinedWatermark;

/// What a worker did, returned when it ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerReport {
    pub core: Option<usize>,
    pub output_blocked: Duration,
    pub peak_open_windows: usize,
    pub peak_state_bytes: usize,
    pub snapshots: u64,
    pub pause_total: Duration,
    pub pause_max: Duration,
}

/// Everything a worker thread starts with.
pub(crate) struct Worker {
    pub index: usize,
    /// Where the worker counts rows, late rows and its watermark as it goes.
    pub live: Arc<LiveStats>,
    /// The job's key groups, and the range of them this worker owns.
    pub key_groups: usize,
    pub range: KeyGroupRange,
    pub plan: Arc<Plan>,
    pub inputs: Vec<Consumer>,
    pub output: Producer,
    pub late: Option<Sender<RecordBatch>>,
    pub idle_timeout: Option<Duration>,
    pub core: Option<core_affinity::CoreId>,
    /// Where snapshots go at aligned barriers; `None`: barriers pass without one.
    pub snapshots: Option<Sender<WorkerSnapshot>>,
    /// State to start from (a restored checkpoint).
    pub restored: Option<RestoredWorker>,
}

struct Running {
    index: usize,
    live: Arc<LiveStats>,
    key_groups: usize,
    range: KeyGroupRange,
    snapshots: Option<Sender<WorkerSnapshot>>,
    plan: Arc<Plan>,
    store: WindowStore,
    output: Producer,
    late: Option<Sender<RecordBatch>>,
    watermark: i64,
    groups: Vec<u32>,
    report: WorkerReport,
}

impl Worker {
    /// Runs the worker to the end of all its inputs.
    pub(crate) fn run(self) -> Result<WorkerReport> {
        let Worker {
            index,
            live,
            key_groups,
            range,
            plan,
            inputs,
            output,
            late,
            idle_timeout,
            core,
            snapshots,
            restored,
        } = self;
        let (watermark, store) = match restored {
            Some(r) => (r.watermark, r.store),
            None => (i64::MIN, WindowStore::default()),
        };
        let mut run = Running {
            index,
            live,
            key_groups,
            range,
            snapshots,
            plan,
            store,
            output,
            late,
            watermark,
            groups: Vec::new(),
            report: WorkerReport::default(),
        };
        if let Some(core) = core {
            if core_affinity::set_for_current(core) {
                run.report.core = Some(core.id);
            }
        }
        let n = inputs.len();
        let mut wm = CombinedWatermark::new(n, idle_timeout);
        for i in 0..n {
            // A restored worker's inputs resume where the checkpoint left them.
            wm.update(i, watermark);
        }
        let mut aligner = BarrierAligner::new(n);
        let mut open: Vec<usize> = Vec::with_capacity(n);

        while !aligner.all_ended() {
            open.clear();
            open.extend(aligner.open());
            let received = receive(&inputs, &open, idle_timeout);
            let now = Instant::now();
            if idle_timeout.is_some() {
                // An input with messages waiting is not silent, however long ago this worker
                // last took one from it (a busy machine, another input read first): were it
                // timed out, its rows would come in behind windows fired without them.
                for (j, c) in inputs.iter().enumerate() {
                    if !c.receiver().is_empty() {
                        wm.touch(j, now);
                    }
                }
            }
            let Some((i, msg)) = received else {
                // Timed out: only idleness can have moved the watermark.
                run.advance(wm.current(now))?;
                continue;
            };
            inputs[i].received();
            if !matches!(msg, Some(Message::Idle)) {
                wm.touch(i, now);
            }
            match msg {
                Some(Message::Data(batch)) => run.process(&batch, i, wm.of(i))?,
                Some(Message::Watermark(w)) => wm.update(i, w),
                Some(Message::Barrier(Barrier { epoch })) => aligner.hold(i, epoch),
                Some(Message::Idle) => wm.idle(i),
                Some(Message::Active) => {}
                Some(Message::End) => {
                    aligner.end(i);
                    wm.end(i);
                }
                None => {
                    return Err(EngineError::InputDropped {
                        input: i,
                        worker: index,
                    })
                }
            }
            run.advance(wm.current(now))?;
            if let Some(epoch) = aligner.release() {
                run.checkpoint(epoch)?;
            }
        }
        run.advance(i64::MAX)?;
        run.send(Message::End)?;
        run.report.output_blocked = run.output.blocked();
        Ok(run.report)
    }
}

/// Waits for the next message on one of the `open` inputs. `None` on timeout; `Some((i, None))`
/// when input `i` disconnected.
fn receive(
    inputs: &[Consumer],
    open: &[usize],
    idle_timeout: Option<Duration>,
) -> Option<(usize, Option<Message>)> {
    if let [only] = open {
        let rx = inputs[*only].receiver();
        return match idle_timeout {
            None => Some((*only, rx.recv().ok())),
            Some(t) => match rx.recv_timeout(t) {
                Ok(m) => Some((*only, Some(m))),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some((*only, None)),
            },
        };
    }
    let mut sel = Select::new();
    for &i in open {
        sel.recv(inputs[i].receiver());
    }
    let op = match idle_timeout {
        None => sel.select(),
        Some(t) => sel.select_timeout(t).ok()?,
    };
    let i = open[op.index()];
    Some((i, op.recv(inputs[i].receiver()).ok()))
}

impl Running {
    fn send(&mut self, msg: Message) -> Result<()> {
        self.output.send(msg).map_err(|_| EngineError::Closed)
    }

    /// Moves the worker's watermark to `wm` if that is forward, firing what it closes.
    fn advance(&mut self, wm: i64) -> Result<()> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        self.live.workers[self.index]
            .watermark
            .store(wm, Ordering::Relaxed);
        let plan = Arc::clone(&self.plan);
        let mut fired = Vec::new();
        self.store.fire(&plan, wm, |batch| {
            fired.push(batch);
            Ok(())
        })?;
        for batch in fired {
            self.send(Message::Data(batch))?;
        }
        self.send(Message::Watermark(wm))
    }

    /// At aligned barrier `epoch` (every live input has delivered it): sends the snapshot, if
    /// the job takes them, and forwards the barrier.
    fn checkpoint(&mut self, epoch: u64) -> Result<()> {
        if let Some(tx) = &self.snapshots {
            let started = Instant::now();
            let state = self.store.snapshot()?;
            let pause = started.elapsed();
            let r = &mut self.report;
            r.snapshots += 1;
            r.pause_total += pause;
            r.pause_max = r.pause_max.max(pause);
            let snapshot = WorkerSnapshot {
                epoch,
                worker: self.index,
                key_groups: self.key_groups,
                range: self.range,
                watermark: self.watermark,
                pause,
                state,
            };
            if tx.send(snapshot).is_err() {
                return Err(EngineError::Execution(
                    "the checkpoint writer stopped: snapshots cannot be saved".into(),
                ));
            }
        }
        self.send(Message::Barrier(Barrier { epoch }))
    }

    /// Folds one batch from input `input` into its windows. Rows whose window ends at or before
    /// `input_wm` (the watermark of that input) or the worker's watermark are late.
    fn process(&mut self, batch: &RecordBatch, input: usize, input_wm: i64) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        self.live.workers[self.index].rows.add(n as u64);
        let plan = Arc::clone(&self.plan);
        let ts = plan.timestamps(batch);
        let keys = plan.key_columns(batch);
        let start = plan.windows.start_of(ts[0]);
        let end = plan.windows.end_of(start);
        if ts.iter().all(|&t| t >= start && t < end) {
            self.fold(&plan, batch, &keys, start, None, (input, input_wm))?;
        } else {
            for (start, rows) in rows_by_window(&plan, ts) {
                self.fold(&plan, batch, &keys, start, Some(&rows), (input, input_wm))?;
            }
        }
        let open = self.store.len();
        if open > self.report.peak_open_windows {
            self.report.peak_open_windows = open;
        }
        Ok(())
    }

    fn fold(
        &mut self,
        plan: &Plan,
        batch: &RecordBatch,
        keys: &[ArrayRef],
        start: i64,
        rows: Option<&[u32]>,
        (input, input_wm): (usize, i64),
    ) -> Result<()> {
        if plan.windows.end_of(start) <= self.watermark.max(input_wm) {
            return self.late(batch, input, start, rows);
        }
        let window = self.store.window_mut(plan, start);
        window.update(plan, keys, batch, rows, &mut self.groups)?;
        let size = window.size();
        if size > self.report.peak_state_bytes {
            self.report.peak_state_bytes = size;
        }
        Ok(())
    }

    /// Counts (and, if asked, forwards) rows whose window has already fired.
    fn late(
        &mut self,
        batch: &RecordBatch,
        input: usize,
        start: i64,
        rows: Option<&[u32]>,
    ) -> Result<()> {
        let n = rows.map_or(batch.num_rows(), <[u32]>::len) as u64;
        self.live.late(self.index, input, start, n);
        if let Some(tx) = &self.late {
            let late = match rows {
                None => batch.clone(),
                Some(rows) => take_record_batch(batch, &UInt32Array::from(rows.to_vec()))?,
            };
            if tx.send(late).is_err() {
                // Nobody reads the side output any more: keep counting, stop sending.
                self.late = None;
            }
        }
        Ok(())
    }
}

/// Row indices of `ts` grouped by window start, windows in order of first appearance.
fn rows_by_window(plan: &Plan, ts: &[i64]) -> Vec<(i64, Vec<u32>)> {
    let mut windows: Vec<(i64, Vec<u32>)> = Vec::new();
    let mut index: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut last = usize::MAX;
    for (r, &t) in ts.iter().enumerate() {
        let s = plan.windows.start_of(t);
        if last == usize::MAX || windows[last].0 != s {
            last = *index.entry(s).or_insert_with(|| {
                windows.push((s, Vec::new()));
                windows.len() - 1
            });
        }
        windows[last].1.push(r as u32);
    }
    windows
}
