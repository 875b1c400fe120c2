//! The checkpoint coordinator: the JobManager of DESIGN §3, one for every checkpointed pipeline
//! (a file replay with exactly-once file output, a Kafka job with exactly-once Kafka output).
//!
//! ```text
//!   timer / stop ──▶ source.request(n) ──▶ every split injects barrier n
//!   workers ──snapshots──┐
//!   splits ──positions───┼──▶ gather n ──▶ sink.prepare(n) ──▶ manifest n (durable) ──▶ sink.commit(n)
//!   sink ──Ready(n)──────┘
//!   sink ──Finished(n)──▶ final positions ──▶ prepare ──▶ manifest n, final ──▶ commit n, finished
//! ```
//!
//! One checkpoint is in flight at a time. The coordinator waits only on events: the interval's
//! timer, a stop request, the pieces of the checkpoint (worker snapshots, split positions, the
//! sink saying the epoch's results are all handed over), the end of the input (the sink's
//! `Finished`), a failed split. What differs between pipelines is behind two traits:
//! [`BarrierSource`] (how barriers are injected and positions known) and [`TwoPhaseSink`]
//! (prepare epoch *n*, giving the sink's record for the manifest; commit *n* once the manifest
//! is durable). A stop request ends the run at one more, ordinary checkpoint, after which the
//! splits stop: running the same command again resumes from it.

use std::time::{Duration, Instant};

use crossbeam_channel::{never, Receiver};
use weir_engine::checkpoint::JobIdentity;
use weir_engine::WorkerSnapshot;
use weir_io::two_phase::{SinkEvent, TwoPhaseSink};

use crate::checkpointed::store::CheckpointStore;
use crate::checkpointed::CheckpointStats;
use crate::error::{Error, Result};
use crate::stop::Stop;

/// How long a checkpoint may take from its barrier's request to being gathered (Flink's default
/// checkpoint timeout) before the run stops with what was missing, instead of waiting.
pub(crate) const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// The source side of a checkpointed pipeline: its splits take barriers and know their
/// positions.
pub(crate) trait BarrierSource {
    /// What a split reports, as it happens (a position at a barrier, its end, a failure).
    type Report: Send;
    /// Where the reports arrive ([`never`] for a source that knows its positions itself).
    fn reports(&self) -> Receiver<Self::Report>;
    /// Takes one report in.
    fn report(&mut self, report: Self::Report);
    /// Injects barrier `epoch` into every split; with `last`, every split stops after it.
    fn request(&mut self, epoch: u64, last: bool);
    /// The positions at barrier `epoch` for the manifest, once every split has reported them.
    fn positions(&self, epoch: u64) -> Option<serde_json::Value>;
    /// The positions at the end of the input, once every split has reported its end.
    fn final_positions(&self) -> Option<serde_json::Value>;
    /// Whether a split failed (the run stops; the split's own error says why).
    fn failed(&self) -> bool;
    /// What is still missing of barrier `epoch`'s positions, for a timeout's message.
    fn missing(&self, epoch: u64) -> String;
}

/// One coordinator run; see the module doc.
pub(crate) struct Coordinator<'a> {
    /// The checkpoint folder.
    pub store: &'a mut CheckpointStore,
    /// The job the checkpoints are of.
    pub id: &'a JobIdentity,
    /// Time between barriers.
    pub interval: Duration,
    /// Complete checkpoints to keep.
    pub keep: usize,
    /// Workers (snapshots per checkpoint).
    pub workers: usize,
    /// Where the workers' snapshots arrive.
    pub snapshots: &'a Receiver<WorkerSnapshot>,
    /// A stop request ends the run at one more checkpoint.
    pub stop: Option<&'a Stop>,
    /// What a stopped run says it dropped, given the epoch not completed and the last committed.
    pub dropping: &'a dyn Fn(u64, u64) -> String,
}

enum Next<M> {
    /// Checkpoint `n` is gathered.
    Complete(Vec<WorkerSnapshot>, M),
    /// The input ended (epoch `n` is the last, ending at the mark).
    Finished(u64, M),
}

impl Coordinator<'_> {
    /// Runs checkpoints after epoch `last` until the input ends (its final checkpoint
    /// committed) or a stop request's checkpoint is committed.
    pub(crate) fn run<S: BarrierSource, K: TwoPhaseSink>(
        mut self,
        source: &mut S,
        sink: &mut K,
        mut last: u64,
    ) -> Result<CheckpointStats> {
        let mut done = CheckpointStats::default();
        let mut total = Duration::ZERO;
        let mut reports = source.reports();
        let events = sink.events();
        let stop_woken = self.stop.map_or_else(never, |s| s.woken().clone());
        let mut finished: Option<(u64, K::Mark)> = None;
        while finished.is_none() {
            // Wait for the interval (or a stop), taking reports and noticing the end meanwhile.
            let wake = crossbeam_channel::after(self.interval);
            let mut stop_seen = self.stop.is_some_and(Stop::is_requested);
            while !stop_seen && finished.is_none() {
                crossbeam_channel::select! {
                    recv(wake) -> _ => break,
                    recv(stop_woken) -> _ => stop_seen = true,
                    recv(reports) -> r => match r {
                        Ok(r) => source.report(r),
                        // Every split has ended; the sink says when the job has.
                        Err(_) => reports = never(),
                    },
                    recv(events) -> e => match e {
                        Ok(SinkEvent::Finished(n, m)) => finished = Some((n, m)),
                        Ok(SinkEvent::Ready(..)) => {}
                        Err(_) => return Err(failed()),
                    },
                }
                if source.failed() {
                    return Err(failed());
                }
            }
            if finished.is_some() {
                break;
            }
            let epoch = last + 1;
            let requested = Instant::now();
            let last_one = self.stop.is_some_and(Stop::is_requested);
            if last_one {
                if let Some(stop) = self.stop {
                    stop.set_dropping((self.dropping)(epoch, last));
                }
            }
            source.request(epoch, last_one);
            let (states, mark) = match self.gather(source, sink, &mut reports, epoch, requested)? {
                Next::Complete(states, mark) => (states, mark),
                Next::Finished(n, m) => {
                    finished = Some((n, m));
                    break;
                }
            };
            let positions = source.positions(epoch).expect("gathered");
            let record = sink.prepare(epoch, mark)?;
            let written =
                self.store
                    .commit(epoch, self.id, &states, positions.clone(), record, false)?;
            sink.commit(epoch, &written.manifest, &positions, false, last_one)?;
            self.store.retain(self.keep)?;
            let took = requested.elapsed();
            let pause = states.iter().map(|s| s.pause).max().unwrap_or_default();
            crate::metrics::checkpoint(epoch, took, written.bytes, pause);
            total += took;
            done.max = done.max.max(took);
            done.bytes += written.bytes;
            done.committed += 1;
            last = epoch;
            if last_one {
                done.stopped_at = Some(epoch);
                break;
            }
        }
        if let Some((n, mark)) = finished {
            if source.failed() {
                // A split failed and the others ended: the input did not really end.
                return Err(failed());
            }
            // The final checkpoint: no state to keep (the job is complete), the end positions.
            let positions = loop {
                if let Some(p) = source.final_positions() {
                    break p;
                }
                // Every split reports its end before the job can end: they are all queued.
                match reports.recv_timeout(Duration::from_secs(10)) {
                    Ok(r) => source.report(r),
                    Err(_) => return Err(failed()),
                }
                if source.failed() {
                    return Err(failed());
                }
            };
            let record = sink.prepare(n, mark)?;
            let written = self
                .store
                .commit(n, self.id, &[], positions.clone(), record, true)?;
            sink.commit(n, &written.manifest, &positions, true, false)?;
            self.store.retain(self.keep)?;
            done.committed += 1;
        }
        if done.committed > 0 {
            done.mean = total / done.committed.max(1) as u32;
        }
        Ok(done)
    }

    /// Waits for every piece of checkpoint `epoch`, or the end of the input.
    fn gather<S: BarrierSource, K: TwoPhaseSink>(
        &mut self,
        source: &mut S,
        sink: &K,
        reports: &mut Receiver<S::Report>,
        epoch: u64,
        requested: Instant,
    ) -> Result<Next<K::Mark>> {
        let events = sink.events();
        let timeout = crossbeam_channel::at(requested + CHECKPOINT_TIMEOUT);
        let mut states: Vec<Option<WorkerSnapshot>> = (0..self.workers).map(|_| None).collect();
        let mut mark = None;
        loop {
            if states.iter().all(Option::is_some) && source.positions(epoch).is_some() {
                if let Some(mark) = mark.take() {
                    let states = states.into_iter().map(|s| s.expect("all")).collect();
                    return Ok(Next::Complete(states, mark));
                }
            }
            crossbeam_channel::select! {
                recv(self.snapshots) -> s => if let Ok(s) = s {
                    if s.epoch == epoch { let w = s.worker; states[w] = Some(s); }
                },
                recv(reports) -> r => match r {
                    Ok(r) => source.report(r),
                    Err(_) => *reports = never(),
                },
                recv(events) -> e => match e {
                    Ok(SinkEvent::Ready(n, m)) if n == epoch => mark = Some(m),
                    Ok(SinkEvent::Ready(..)) => {}
                    // The input ended before the barrier passed everything: the final epoch
                    // takes over whatever this one holds.
                    Ok(SinkEvent::Finished(n, m)) => return Ok(Next::Finished(n, m)),
                    Err(_) => return Err(failed()),
                },
                recv(timeout) -> _ => {
                    return Err(Error::Engine(weir_engine::EngineError::Execution(format!(
                        "checkpoint {epoch} did not complete within {} s: {}, snapshots from {} \
                         of {} workers, sink ready: {}",
                        CHECKPOINT_TIMEOUT.as_secs(),
                        source.missing(epoch),
                        states.iter().flatten().count(),
                        self.workers,
                        mark.is_some(),
                    ))));
                }
            }
            if source.failed() {
                return Err(failed());
            }
        }
    }
}

/// The error of a run whose job, sink or a split failed: theirs explains it better, and the
/// caller ranks it below theirs.
fn failed() -> Error {
    Error::Stopped("the job or its sink failed")
}

#[cfg(test)]
mod tests {
    //! The coordinator against a source and a sink of the test's own: no broker, no file
    //! replay. Checkpoints have no workers here (their snapshots are the engine's business);
    //! what is checked is the order of the two phases, the manifests, the end and the stop.

    use std::sync::{Arc, Mutex};

    use crossbeam_channel::Sender;

    use super::*;

    /// A source whose positions are the epoch itself, known at once. Its barrier reaches the
    /// result writer at once too: request `n` makes the sink `Ready(n)` at mark `10 n`, until
    /// epoch `end`; then the input ends (`Finished` at `10 end + 5`).
    struct Positions {
        requested: Vec<(u64, bool)>,
        writer: Sender<SinkEvent<u64>>,
        end: u64,
    }

    impl BarrierSource for Positions {
        type Report = ();
        fn reports(&self) -> Receiver<()> {
            never()
        }
        fn report(&mut self, _: ()) {}
        fn request(&mut self, epoch: u64, last: bool) {
            self.requested.push((epoch, last));
            let event = if epoch <= self.end {
                SinkEvent::Ready(epoch, 10 * epoch)
            } else {
                SinkEvent::Finished(epoch, 10 * self.end + 5)
            };
            self.writer.send(event).unwrap();
        }
        fn positions(&self, epoch: u64) -> Option<serde_json::Value> {
            Some(serde_json::json!({ "at": epoch }))
        }
        fn final_positions(&self) -> Option<serde_json::Value> {
            Some(serde_json::json!({ "at": "end" }))
        }
        fn failed(&self) -> bool {
            false
        }
        fn missing(&self, _: u64) -> String {
            String::new()
        }
    }

    /// A sink that records what the coordinator asked of it, with whether the manifest of the
    /// epoch was on disk when it was asked to commit.
    struct Recorder {
        events: Receiver<SinkEvent<u64>>,
        dir: std::path::PathBuf,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl TwoPhaseSink for Recorder {
        type Mark = u64;
        fn events(&self) -> Receiver<SinkEvent<u64>> {
            self.events.clone()
        }
        fn prepare(&mut self, epoch: u64, mark: u64) -> weir_io::Result<serde_json::Value> {
            self.log
                .lock()
                .unwrap()
                .push(format!("prepare {epoch} at {mark}"));
            Ok(serde_json::json!({ "mark": mark }))
        }
        fn commit(
            &mut self,
            epoch: u64,
            _manifest: &str,
            positions: &serde_json::Value,
            finished: bool,
            last: bool,
        ) -> weir_io::Result<()> {
            let durable = self
                .dir
                .join(format!("chk-{epoch:09}"))
                .join("MANIFEST")
                .exists();
            self.log.lock().unwrap().push(format!(
                "commit {epoch} {positions} finished={finished} last={last} manifest={durable}"
            ));
            Ok(())
        }
    }

    fn id() -> JobIdentity {
        JobIdentity {
            input: "test".into(),
            window_ms: 5_000,
            keys: vec!["client".into()],
            aggregates: vec!["count(*)".into()],
            parallelism: 0,
            key_groups: 128,
            input_file: None,
        }
    }

    /// What a test run did: the coordinator's result, the sink's log, the barriers requested and
    /// the complete checkpoints on disk.
    type Ran = (
        Result<CheckpointStats>,
        Vec<String>,
        Vec<(u64, bool)>,
        Vec<u64>,
    );

    /// Runs a coordinator over [`Positions`] ending after epoch `end`, or stopped.
    fn run(end: u64, stop: Option<&Stop>) -> Ran {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = CheckpointStore::open(tmp.path()).unwrap();
        let (tx, rx): (Sender<SinkEvent<u64>>, _) = crossbeam_channel::unbounded();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Recorder {
            events: rx,
            dir: tmp.path().to_owned(),
            log: Arc::clone(&log),
        };
        let mut source = Positions {
            requested: Vec::new(),
            writer: tx,
            end,
        };
        let (snapshots_tx, snapshots) = crossbeam_channel::unbounded::<WorkerSnapshot>();
        let dropping = |e: u64, l: u64| format!("{e} after {l}");
        let done = Coordinator {
            store: &mut store,
            id: &id(),
            interval: Duration::from_millis(1),
            keep: 100,
            workers: 0,
            snapshots: &snapshots,
            stop,
            dropping: &dropping,
        }
        .run(&mut source, &mut sink, 0);
        drop(snapshots_tx);
        let mut epochs: Vec<u64> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("MANIFEST").exists())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        epochs.sort_unstable();
        let log = log.lock().unwrap().clone();
        (done, log, source.requested, epochs)
    }

    #[test]
    fn each_epoch_is_prepared_then_made_durable_then_committed_and_the_end_is_final() {
        let (done, log, requested, epochs) = run(2, None);
        let done = done.unwrap();
        assert_eq!(
            log,
            [
                "prepare 1 at 10",
                r#"commit 1 {"at":1} finished=false last=false manifest=true"#,
                "prepare 2 at 20",
                r#"commit 2 {"at":2} finished=false last=false manifest=true"#,
                "prepare 3 at 25",
                r#"commit 3 {"at":"end"} finished=true last=false manifest=true"#,
            ]
        );
        assert_eq!((done.committed, done.stopped_at), (3, None));
        // Barrier 3 was requested while the input was ending: the final epoch took it over.
        assert_eq!(requested, [(1, false), (2, false), (3, false)]);
        assert_eq!(epochs, [1, 2, 3]);
    }

    #[test]
    fn a_stop_ends_the_run_at_one_more_ordinary_checkpoint() {
        let stop = Stop::new();
        stop.request();
        let (done, log, requested, epochs) = run(3, Some(&stop));
        let done = done.unwrap();
        assert_eq!(requested, [(1, true)], "the first barrier is the last one");
        assert_eq!(
            log,
            [
                "prepare 1 at 10",
                r#"commit 1 {"at":1} finished=false last=true manifest=true"#,
            ]
        );
        assert_eq!((done.committed, done.stopped_at), (1, Some(1)));
        assert_eq!(epochs, [1]);
    }
}
