//! Where results go: the [`ResultSink`] trait and the collector that feeds it.
//!
//! The collector merges the output queues of all workers into one stream of events for the sink:
//! result batches, completed checkpoints, end of input. In *ordered* mode (the default) it holds
//! each fired window until every worker's watermark has passed it, then hands the window's parts
//! to the sink in worker order, so windows reach the sink oldest first and, for a given input,
//! in the same order on every run. At a checkpoint barrier everything held is flushed first: the
//! results of epoch *n* reach the sink before it hears that *n* is complete.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::RecordBatch;
use crossbeam_channel::Select;

use crate::align::BarrierAligner;
use crate::error::{EngineError, Result};
use crate::live::LiveStats;
use crate::message::{Barrier, Message};
use crate::queue::Consumer;

/// The error type sinks return.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// A push-based consumer of job results, called on the collector thread.
pub trait ResultSink: Send {
    /// The results of one window (or part of one, from one worker).
    fn batch(&mut self, batch: RecordBatch) -> Result<(), SinkError>;

    /// Checkpoint `epoch` has passed every worker: all results before it have been delivered.
    fn checkpoint(&mut self, epoch: u64) -> Result<(), SinkError> {
        let _ = epoch;
        Ok(())
    }

    /// End of input: every window has fired and been delivered.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl<F> ResultSink for F
where
    F: FnMut(RecordBatch) -> Result<(), SinkError> + Send,
{
    fn batch(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        self(batch)
    }
}

struct Collector<'a> {
    sink: &'a mut dyn ResultSink,
    ordered: bool,
    /// Fired windows not yet released, by start: (worker, batch).
    held: BTreeMap<i64, Vec<(usize, RecordBatch)>>,
    windows_seen: BTreeSet<i64>,
    /// Where the collector counts windows, results and checkpoints.
    live: &'a LiveStats,
}

fn window_start(batch: &RecordBatch) -> i64 {
    batch
        .column(0)
        .as_primitive::<TimestampMillisecondType>()
        .value(0)
}

impl Collector<'_> {
    fn deliver(&mut self, batch: RecordBatch) -> Result<()> {
        self.live.result_batches.add(1);
        self.live.result_rows.add(batch.num_rows() as u64);
        self.sink.batch(batch).map_err(EngineError::Sink)
    }

    /// Releases held windows whose end is at or before `wm` (all of them for `i64::MAX`).
    fn release(&mut self, wm: i64) -> Result<()> {
        while let Some(entry) = self.held.first_entry() {
            let parts = entry.get();
            let end = parts[0]
                .1
                .column(1)
                .as_primitive::<TimestampMillisecondType>()
                .value(0);
            if end > wm {
                break;
            }
            let mut parts = entry.remove();
            parts.sort_by_key(|(w, _)| *w);
            for (_, b) in parts {
                self.deliver(b)?;
            }
        }
        Ok(())
    }
}

/// Runs the collector until every worker has ended.
pub(crate) fn collect(
    outputs: Vec<Consumer>,
    sink: &mut dyn ResultSink,
    ordered: bool,
    live: &LiveStats,
) -> Result<()> {
    let n = outputs.len();
    let mut c = Collector {
        sink,
        ordered,
        held: BTreeMap::new(),
        windows_seen: BTreeSet::new(),
        live,
    };
    let mut wms = vec![i64::MIN; n];
    // A worker that has delivered barrier n is not read again until every worker has: what it
    // sends after the barrier belongs to the next checkpoint (alignment, as in the workers).
    let mut aligner = BarrierAligner::new(n);
    while !aligner.all_ended() {
        let mut sel = Select::new();
        let open: Vec<usize> = aligner.open().collect();
        for &i in &open {
            sel.recv(outputs[i].receiver());
        }
        let op = sel.select();
        let w = open[op.index()];
        match op.recv(outputs[w].receiver()) {
            Ok(Message::Data(batch)) => {
                if batch.num_rows() == 0 {
                    continue;
                }
                let start = window_start(&batch);
                if c.windows_seen.insert(start) {
                    c.live.windows_fired.add(1);
                }
                if c.ordered {
                    c.held.entry(start).or_default().push((w, batch));
                } else {
                    c.deliver(batch)?;
                }
            }
            Ok(Message::Watermark(wm)) => {
                wms[w] = wm;
                c.release(*wms.iter().min().expect("at least one worker"))?;
            }
            Ok(Message::Barrier(Barrier { epoch })) => aligner.hold(w, epoch),
            // Only inputs say these; a worker never forwards them.
            Ok(Message::Idle | Message::Active) => {}
            Ok(Message::End) => {
                aligner.end(w);
                wms[w] = i64::MAX;
                c.release(*wms.iter().min().expect("at least one worker"))?;
            }
            Err(_) => return Err(EngineError::WorkerStopped { worker: w }),
        }
        if let Some(epoch) = aligner.release() {
            c.release(i64::MAX)?;
            c.live.checkpoints.add(1);
            c.sink.checkpoint(epoch).map_err(EngineError::Sink)?;
        }
    }
    c.release(i64::MAX)?;
    c.sink.finish().map_err(EngineError::Sink)?;
    Ok(())
}
