//! `weir replay --checkpoint-dir`: barrier checkpoints, recovery and exactly-once file output.
//!
//! ```text
//!  timer ─▶ claims.request(n) ─▶ every parser thread injects barrier n before its next chunk
//!                                   │
//!  workers align n, freeze state ───┼──▶ snapshots ──▶ coordinator: write worker-i.state, fsync
//!  collector aligns n ──▶ sink marks the results file (len, xxh3) ──▶ coordinator ──┘
//!                                                           │ all pieces of n known
//!                                                           ▼
//!        results file: fdatasync (what epoch n appended) ─▶ MANIFEST recording its committed
//!        length and XXH3-64 (temp, fsync, rename, fsync dir) ─▶ retain
//! ```
//!
//! One checkpoint is in flight at a time, driven by events: the interval's timer, the pieces
//! of the checkpoint arriving, the end of the input, a stop request. The results go to one file
//! written in place ([`weir_io::results_file`]); checkpoint *n* records how much of it is
//! committed, after making that much durable. At the end of the input a final epoch's manifest
//! says `final`, and the results file is renamed to the output path, so the output appears
//! whole, once, and is never copied.
//!
//! A stop request (SIGINT, SIGTERM) ends the run at a last, ordinary checkpoint instead: the
//! coordinator requests its barrier at once, every parser thread stops after injecting it, and
//! once it is committed the run returns ([`CheckpointStats::stopped_at`]); what the workers fire
//! after it goes to a pending part that is never committed. Running the same command again
//! resumes from that checkpoint, and the output appears when the run completes.
//!
//! Recovery: the newest checkpoint whose manifest, files and output parts verify (checksums) is
//! restored: the workers' state, the file position (a chunk index: the barrier splits the file
//! at a chunk boundary on every input), the inputs' watermark, the counters of lines before it,
//! and the results file up to its committed length (what follows is cut off). A damaged
//! checkpoint, state file or results file is reported by file name and the previous one is
//! used (an older checkpoint commits fewer results); when none is usable the run is
//! refused, saying that `--fresh` starts over. A checkpoint of another job, or of an input file
//! that changed since (its identity: [`identity`]), is refused naming what differs. On-disk
//! format: [`store`].

pub mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::{never, Receiver, Sender};
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{CheckpointError, FileDigest};
use weir_engine::{ResultSink, SinkError, WorkerSnapshot};
use weir_io::results_file::{Committed, ResultsFile};
use weir_io::sink::{continue_writer, BatchWriter, OutputFormat};
use weir_io::source::MappedFile;

use crate::error::{opening, Error, Result};
use crate::replay::{
    check_paths, job_builder, job_outputs, parse_options, pick_format, FileRun, ReplayConfig,
    RunSummary, Started,
};
use crate::stop::Stop;
use store::{results_of, CheckpointStore, RESULTS};
use weir_engine::checkpoint::{InputFile, JobIdentity};

/// Checkpointing settings.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// The folder of checkpoints, output parts and the lock.
    pub dir: PathBuf,
    /// Time between barriers.
    pub interval: Duration,
    /// Ignore existing checkpoints and start over.
    pub fresh: bool,
    /// Complete checkpoints to keep.
    pub keep: usize,
}

/// What the checkpoints of a run did.
#[derive(Debug, Clone, Default)]
pub struct CheckpointStats {
    /// Checkpoints committed (the final one included).
    pub committed: u64,
    /// Mean and longest time from barrier request to committed manifest.
    pub mean: Duration,
    /// See `mean`.
    pub max: Duration,
    /// Bytes of state written.
    pub bytes: u64,
    /// The epoch this run resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// The run was stopped (a stop request) at this checkpoint, before the end of its input:
    /// the output is not written yet, and running it again resumes there.
    pub stopped_at: Option<u64>,
}

/// Where the file source stood at a checkpoint, and what had been counted before it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourcePosition {
    /// The first chunk not yet read.
    pub chunk: usize,
    /// Chunk size the positions are in.
    pub chunk_bytes: usize,
    /// Byte offset of `chunk`.
    pub offset: u64,
    /// The inputs' largest event time at the barrier (their smallest, across inputs).
    pub max_ts: i64,
    /// Lines, rows and malformed lines before `chunk`.
    pub lines: u64,
    /// See `lines`.
    pub rows: u64,
    /// See `lines`.
    pub malformed: u64,
}

/// The identity of a replay job: a checkpoint is restored only into the same job. Everything
/// that changes what the state or the positions mean is part of it; the input names the file
/// and how it is read, and the input file's length, modification time, inode and sampled
/// checksums ([`InputFile`]) tell whether its bytes are still those the checkpoint was taken on.
pub fn identity(cfg: &ReplayConfig, file: &MappedFile, format: &str) -> Result<JobIdentity> {
    let path = file
        .path()
        .canonicalize()
        .unwrap_or_else(|_| file.path().to_owned());
    let input_file = InputFile::of(file.file()).map_err(|e| weir_io::Error::io(file.path(), e))?;
    Ok(JobIdentity {
        input: format!(
            "{} ({format}, chunks of {} bytes, {:?}, {:?} output)",
            path.display(),
            cfg.chunk_bytes,
            cfg.job.watermark,
            cfg.job.output_format,
        ),
        window_ms: cfg.job.window.as_millis() as i64,
        keys: cfg.job.keys.clone(),
        aggregates: vec!["count(*)".into()],
        parallelism: cfg.job.parallelism,
        input_file: Some(input_file),
    })
}

/// The sentence that ends every refusal of a checkpoint of a replay: what `--fresh` does.
fn start_over(dir: &Path, input: &Path) -> String {
    format!(
        "--fresh starts over: it deletes the checkpoints and output parts in {} and replays {} \
         from its first line",
        dir.display(),
        input.display()
    )
}

/// Maps the input of a checkpointed run, which must be a plain file: a run resumes from a
/// position in it. Stdin, gzip, pipes and devices are refused, saying why.
pub(crate) fn open_rewindable(path: &Path) -> Result<MappedFile> {
    let why = "--checkpoint-dir needs a plain file (a run resumes from a position in it)";
    if path.as_os_str() == "-" || path.extension().is_some_and(|e| e == "gz") {
        return Err(Error::usage(format!(
            "{}: {why}, and stdin or gzip can only be read from the start: replay it without \
             --checkpoint-dir, or decompress it to a file first",
            path.display()
        )));
    }
    MappedFile::open(path).map_err(|e| match e {
        weir_io::Error::NotRegular { .. } => Error::usage(format!(
            "{e}; {why}: replay it without --checkpoint-dir, or save it to a file first"
        )),
        e => opening(e),
    })
}

/// What the sink hands the coordinator: the results file's mark at a checkpoint's barrier, or
/// at the end of the input.
#[derive(Debug, Clone, Copy)]
enum Sealed {
    Epoch(u64, Committed),
    End(Committed),
}

/// The sink of a checkpointed run: results appended to the results file, marked at each
/// checkpoint's barrier.
struct ResultsSink {
    writer: Box<dyn BatchWriter>,
    results: ResultsFile,
    sealed: Sender<Sealed>,
}

impl ResultSink for ResultsSink {
    fn batch(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        Ok(self.writer.write(&batch)?)
    }
    fn checkpoint(&mut self, epoch: u64) -> Result<(), SinkError> {
        let _ = self.sealed.send(Sealed::Epoch(epoch, self.results.mark()));
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.writer.finish()?;
        let _ = self.sealed.send(Sealed::End(self.results.mark()));
        Ok(())
    }
}

/// Whether the results a checkpoint commits are intact: the first bytes of the results file
/// at `results` (or, for a final checkpoint whose results were already published, of the
/// output) are those it recorded. The check [`CheckpointStore::latest_valid`] makes of each
/// candidate, so that a damaged results file falls back to an older checkpoint.
fn results_intact(
    r: &weir_engine::checkpoint::Restored,
    results: &Path,
    output: &Path,
) -> std::result::Result<(), CheckpointError> {
    let committed = results_of(r)?;
    let published =
        r.manifest.sink.get("final").and_then(|f| f.as_bool()) == Some(true) && !results.exists();
    let file = if published { output } else { results };
    let digest = |(len, xxh3): (u64, u64)| FileDigest { len, xxh3 };
    ResultsFile::check(file, committed).map_err(|e| match e {
        weir_io::Error::DamagedPart {
            path,
            expected,
            found,
        } => CheckpointError::Damaged {
            path,
            expected: digest(expected),
            found: digest(found),
        },
        weir_io::Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            CheckpointError::Missing { path }
        }
        e => CheckpointError::BadManifest {
            path: file.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// Replays `cfg.input` with checkpoints in `ck.dir`, resuming from the newest valid checkpoint
/// of the same job unless `ck.fresh`. `say` receives progress messages for stderr.
pub fn replay_checkpointed(
    cfg: &ReplayConfig,
    ck: &CheckpointOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(RunSummary, CheckpointStats)> {
    let started_at = Instant::now();
    let output = match &cfg.job.output {
        Some(p) if p.as_os_str() != "-" => p.clone(),
        _ => {
            return Err(Error::usage(
                "--checkpoint-dir needs --output PATH: exactly-once output goes to a file",
            ))
        }
    };
    if cfg.job.output_format == OutputFormat::Arrow {
        return Err(Error::usage(
            "--checkpoint-dir works with --output-format print, csv or jsonl, not arrow",
        ));
    }
    if cfg.job.late_output.is_some() {
        return Err(Error::usage(
            "--late-output is not exactly-once yet; leave it out with --checkpoint-dir",
        ));
    }
    let path = cfg.input.as_path();
    check_paths(Some(path), &job_outputs(&cfg.job), Some(&ck.dir))?;
    let file = open_rewindable(path)?;
    let data = file.bytes();
    let format = pick_format(&cfg.parse, &data[..data.len().min(1 << 16)], path)?;
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;
    let id = identity(cfg, &file, format.name())?;

    let mut store = CheckpointStore::open(&ck.dir)?;
    let results_path = ck.dir.join(RESULTS);
    let start_over = start_over(&ck.dir, path);
    let restored = if ck.fresh {
        None
    } else {
        let found = store.latest_valid(&id, &start_over, |r| {
            results_intact(r, &results_path, &output)
        })?;
        if let Some(refused) = found.refusal(&ck.dir, &start_over) {
            return Err(refused);
        }
        for skipped in &found.skipped {
            say(skipped);
        }
        found.checkpoint
    };
    // What the restored checkpoint says, read before anything in the folder changes: the
    // results it commits (checked by the restore) and its position.
    let committed = restored.as_ref().map_or(0, |r| r.epoch);
    let unusable = |what: String| {
        Error::Refused(format!(
            "checkpoint {committed} in {}: {what}. {start_over}",
            ck.dir.display()
        ))
    };
    let results_at = match &restored {
        Some(r) => r.results()?,
        None => Committed::default(),
    };
    let position: SourcePosition = match &restored {
        Some(r) => serde_json::from_value(r.sources.clone())
            .map_err(|e| unusable(format!("unreadable source position: {e}")))?,
        None => SourcePosition::default(),
    };
    store.continue_after(committed)?;
    let mut stats = CheckpointStats::default();

    if let Some(r) = restored.as_ref().filter(|r| r.is_final) {
        // The run had finished; the results may not have been published yet.
        let what = if results_path.exists() {
            ResultsFile::publish(&results_path, results_at, &output)?;
            "output written"
        } else {
            "its output is in place"
        };
        say(&format!(
            "checkpoint {} is final: the run was complete; {what}",
            r.epoch
        ));
        stats.resumed_from = Some(r.epoch);
        return Ok((final_summary(format, &r.sources, started_at), stats));
    }

    if let Some(r) = &restored {
        say(&format!(
            "resuming from checkpoint {} in {}: byte {} (line {}) of {}",
            r.epoch,
            ck.dir.display(),
            position.offset,
            position.lines + 1,
            path.display()
        ));
        stats.resumed_from = Some(r.epoch);
    }

    let results = match &restored {
        Some(_) => ResultsFile::resume(&results_path, results_at)?,
        None => ResultsFile::create(&results_path)?,
    };

    let mut run = FileRun::new(cfg, &file, opts.clone(), position.chunk);
    if position.chunk > 0 {
        run.resume(
            position.lines,
            position.rows,
            position.malformed,
            position.max_ts,
        );
    }

    let (snap_tx, snap_rx) = crossbeam_channel::unbounded();
    let (sealed_tx, sealed_rx) = crossbeam_channel::unbounded();
    let spec = job_builder(&cfg.job, run.threads)
        .snapshots(snap_tx)
        .build()?;
    let schema = weir_io::parse::LineParser::new(opts.clone()).schema();
    let out_schema = spec.output_schema(&schema)?;
    let writer = continue_writer(
        cfg.job.output_format,
        Box::new(results.writer()),
        output.clone(),
        out_schema,
        cfg.job.utc_offset_secs,
        results_at.len > 0,
    )?;
    let sink = Box::new(ResultsSink {
        writer,
        results: results.clone(),
        sealed: sealed_tx,
    });
    let job = match &restored {
        Some(r) => spec.start_restored(schema.clone(), sink, &r.states())?,
        None => spec.start_with_sink(schema.clone(), sink)?,
    };
    drop(spec);
    let mut started = Started::attach(job, &cfg.job, schema)?;
    let inputs = started.job.take_inputs();

    let p = cfg.job.parallelism;
    let (parsed, coordinated) = std::thread::scope(|s| {
        // Disconnects when the parser threads are done: the coordinator's "end of input".
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let coordinator = s.spawn(|| {
            Coordinator {
                run: &run,
                store: &mut store,
                results: &results,
                ck,
                id: &id,
                workers: p,
                snapshots: &snap_rx,
                sealed: &sealed_rx,
                stop: cfg.stop.as_ref(),
                end: None,
            }
            .run(committed, done_rx)
        });
        let parsed = run.parse(inputs);
        drop(done_tx);
        (
            parsed,
            coordinator.join().expect("checkpoint coordinator panicked"),
        )
    });
    let joined = started.join();
    let (parse_stats, job_stats) = run.settle(parsed, joined)?;
    let (last, mut cstats, end) = coordinated?;
    cstats.resumed_from = stats.resumed_from;
    let totals = run.counts_before(run.chunks);
    let summary = |cstats| {
        let mut parse = parse_stats;
        (parse.lines, parse.rows, parse.malformed) = totals;
        Ok((
            RunSummary {
                format,
                parse,
                job: job_stats,
                elapsed: started_at.elapsed(),
                input_bytes: Some(data.len() as u64),
            },
            cstats,
        ))
    };
    if cstats.stopped_at.is_some() {
        // Stopped at checkpoint `last`: what came after it is not committed, and the output is
        // written by the run that completes.
        return summary(cstats);
    }

    // The final epoch: everything after the last committed checkpoint, up to the end the sink
    // marked once the job ended.
    let end = end.or_else(|| {
        sealed_rx.try_iter().find_map(|s| match s {
            Sealed::End(c) => Some(c),
            Sealed::Epoch(..) => None,
        })
    });
    let Some(done) = end else {
        return Err(Error::Engine(weir_engine::EngineError::Internal(
            "the results file's end was not marked".into(),
        )));
    };
    let manifest_sources = serde_json::to_value(SourcePosition {
        chunk: run.chunks,
        chunk_bytes: run.chunk_bytes,
        offset: data.len() as u64,
        max_ts: i64::MAX,
        lines: totals.0,
        rows: totals.1,
        malformed: totals.2,
    })
    .expect("serialisable");
    results.sync()?;
    drop(results);
    let final_epoch = last + 1;
    store.commit(
        final_epoch,
        &id,
        &[],
        manifest_sources,
        serde_json::json!({ "results": done }),
        true,
    )?;
    ResultsFile::publish(&results_path, done, &output)?;
    store.retain(ck.keep)?;
    cstats.committed += 1;
    summary(cstats)
}

fn final_summary(
    format: weir_io::parse::LogFormat,
    sources: &serde_json::Value,
    started_at: Instant,
) -> RunSummary {
    let pos: SourcePosition = serde_json::from_value(sources.clone()).unwrap_or_default();
    let parse = weir_io::parse::ParseStats {
        lines: pos.lines,
        bytes: pos.offset,
        rows: pos.rows,
        malformed: pos.malformed,
        ..Default::default()
    };
    RunSummary {
        format,
        parse,
        job: Default::default(),
        elapsed: started_at.elapsed(),
        input_bytes: Some(pos.offset),
    }
}

/// The checkpoint coordinator of a checkpointed replay: one checkpoint per interval while the
/// parsers run; on a stop request, one more at once, after which the parsers stop. It waits
/// only on events (the timer, the pieces of a checkpoint, the end of the input, the stop).
struct Coordinator<'a, 'f> {
    run: &'a FileRun<'f>,
    store: &'a mut CheckpointStore,
    results: &'a ResultsFile,
    ck: &'a CheckpointOptions,
    id: &'a JobIdentity,
    workers: usize,
    snapshots: &'a Receiver<WorkerSnapshot>,
    sealed: &'a Receiver<Sealed>,
    stop: Option<&'a Stop>,
    /// The results' end, if the sink marked it while a checkpoint was awaited.
    end: Option<Committed>,
}

impl Coordinator<'_, '_> {
    /// Runs until the parsers are done (`done` disconnects) or a stop's last checkpoint is
    /// committed. Returns the last committed epoch, the checkpoint stats, and the results' end
    /// if the sink marked it meanwhile.
    fn run(
        mut self,
        mut last: u64,
        done: Receiver<()>,
    ) -> Result<(u64, CheckpointStats, Option<Committed>)> {
        let mut stats = CheckpointStats::default();
        let mut total = Duration::ZERO;
        let stop_woken = self.stop.map_or_else(never, |s| s.woken().clone());
        loop {
            let stopping = self.stop.is_some_and(Stop::is_requested);
            if !stopping {
                crossbeam_channel::select! {
                    recv(done) -> _ => break,
                    recv(stop_woken) -> _ => {},
                    recv(crossbeam_channel::after(self.ck.interval)) -> _ => {},
                }
            }
            let epoch = last + 1;
            let requested = Instant::now();
            let last_one = self.stop.is_some_and(Stop::is_requested);
            let at = if last_one {
                self.say_dropping(epoch, last);
                self.run.claims.request_last(epoch)
            } else {
                self.run.claims.request(epoch)
            };
            let Some((states, mark)) = self.gather(epoch, last_one, &done) else {
                // The input ended before every input passed the barrier: the final epoch takes
                // over whatever this one holds.
                break;
            };
            // The results up to the mark are durable before the manifest that commits them.
            self.results.sync()?;
            let (lines, rows, malformed) = self.run.counts_before(at);
            let sources = serde_json::to_value(SourcePosition {
                chunk: at,
                chunk_bytes: self.run.chunk_bytes,
                offset: self.run.chunk_start(at) as u64,
                max_ts: self.run.max_ts_before(at),
                lines,
                rows,
                malformed,
            })
            .expect("serialisable");
            let sink = serde_json::json!({ "results": mark });
            stats.bytes += self
                .store
                .commit(epoch, self.id, &states, sources, sink, false)?
                .bytes;
            self.store.retain(self.ck.keep)?;
            let took = requested.elapsed();
            total += took;
            stats.max = stats.max.max(took);
            stats.committed += 1;
            last = epoch;
            if last_one {
                stats.stopped_at = Some(epoch);
                break;
            }
        }
        if stats.committed > 0 {
            stats.mean = total / stats.committed as u32;
        }
        Ok((last, stats, self.end))
    }

    /// Waits for every worker's snapshot and the results mark of `epoch`. `None` when the
    /// parsers finished first and the barrier did not pass every worker (the parsers of a last
    /// barrier end right after injecting it: then the checkpoint is waited for).
    fn gather(
        &mut self,
        epoch: u64,
        last_one: bool,
        done: &Receiver<()>,
    ) -> Option<(Vec<WorkerSnapshot>, Committed)> {
        let mut states: Vec<Option<WorkerSnapshot>> = (0..self.workers).map(|_| None).collect();
        let mut mark = None;
        let done = if last_one { &never() } else { done };
        while states.iter().any(Option::is_none) || mark.is_none() {
            let mut ended = false;
            crossbeam_channel::select! {
                recv(self.snapshots) -> s => match s {
                    Ok(s) if s.epoch == epoch => { let w = s.worker; states[w] = Some(s); }
                    Ok(_) => {}
                    Err(_) => ended = true,
                },
                recv(self.sealed) -> m => match m {
                    Ok(Sealed::Epoch(e, c)) if e == epoch => mark = Some(c),
                    Ok(Sealed::Epoch(..)) => {}
                    Ok(Sealed::End(c)) => self.end = Some(c),
                    Err(_) => ended = true,
                },
                recv(done) -> _ => ended = true,
            }
            if ended {
                // Snapshots sent before the end are still queued: with all of them, the
                // barrier passed every worker, and its mark follows.
                for s in self.snapshots.try_iter().filter(|s| s.epoch == epoch) {
                    let w = s.worker;
                    states[w] = Some(s);
                }
                for m in self.sealed.try_iter() {
                    match m {
                        Sealed::Epoch(e, c) if e == epoch => mark = Some(c),
                        Sealed::Epoch(..) => {}
                        Sealed::End(c) => self.end = Some(c),
                    }
                }
                if states.iter().all(Option::is_some) && mark.is_some() {
                    break;
                }
                return None;
            }
        }
        let states = states
            .into_iter()
            .map(|s| s.expect("all present"))
            .collect();
        Some((states, mark.expect("loop ends with the mark")))
    }

    fn say_dropping(&self, epoch: u64, last: u64) {
        if let Some(stop) = self.stop {
            stop.set_dropping(format!(
                "the last checkpoint ({epoch}) was not completed: running the same command \
                 again resumes from {}",
                if last == 0 {
                    "the start".to_string()
                } else {
                    format!("checkpoint {last}")
                }
            ));
        }
    }
}
