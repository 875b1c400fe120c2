//! `weir replay --checkpoint-dir`: barrier checkpoints, recovery and exactly-once file output.
//!
//! ```text
//!  timer ─▶ claims.request(n) ─▶ every parser thread injects barrier n before its next chunk
//!                                   │
//!  workers align n, freeze state ───┼──▶ snapshots ──▶ coordinator: write worker-i.state, fsync
//!  collector aligns n ──▶ sink seals pending-n (len, xxh3) ──▶ coordinator ──┘
//!                                                           │ all pieces of n known
//!                                                           ▼
//!        pending-n: fsync, rename part-n, fsync dir ─▶ MANIFEST listing parts 1..=n with their
//!        lengths and XXH3-64 (temp, fsync, rename, fsync dir) ─▶ retain
//! ```
//!
//! One checkpoint is in flight at a time. Part *n* is sealed, fsynced and renamed `part-n`
//! before manifest *n* is committed, and every manifest lists the parts `1..=n` it relies on
//! with their lengths and XXH3-64. At the end of the input the last results are sealed as a
//! final epoch whose manifest says `final`, and the parts are concatenated into the output path
//! (each verified as it is copied; temp file, fsync, rename), so the output appears whole, once.
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
//! and the output parts up to it (later parts are discarded). A damaged checkpoint, state file or
//! part, is reported by file name and the previous one is used; when none is usable the run is
//! refused, saying that `--fresh` starts over. A checkpoint of another job, or of an input file
//! that changed since (its identity: [`identity`]), is refused naming what differs. On-disk
//! format: [`store`].

pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use weir_engine::{ResultSink, SinkError, WorkerSnapshot};
use weir_io::parts::{concat_into, promote, PartDigest, PartFiles, SealedPart};
use weir_io::sink::{continue_writer, BatchWriter, OutputFormat};
use weir_io::source::MappedFile;

use crate::error::{opening, Error, Result};
use crate::replay::{
    check_paths, job_builder, job_outputs, parse_options, pick_format, FileRun, ReplayConfig,
    RunSummary, Started,
};
use crate::stop::Stop;
use store::{CheckpointStore, PARTS_DIR};
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

/// The sink of a checkpointed run: results into the pending part, sealed at each checkpoint.
struct PartSink {
    writer: Box<dyn BatchWriter>,
    parts: PartFiles,
    sealed: Sender<SealedPart>,
}

impl ResultSink for PartSink {
    fn batch(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        Ok(self.writer.write(&batch)?)
    }
    fn checkpoint(&mut self, _epoch: u64) -> Result<(), SinkError> {
        let part = self.parts.seal()?;
        let _ = self.sealed.send(part);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        self.writer.finish()?;
        let part = self.parts.seal()?;
        let _ = self.sealed.send(part);
        Ok(())
    }
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
    let parts_dir = ck.dir.join(PARTS_DIR);
    let start_over = start_over(&ck.dir, path);
    let restored = if ck.fresh {
        None
    } else {
        let found = store.latest_valid(&id, &start_over)?;
        if let Some(refused) = found.refusal(&ck.dir, &start_over) {
            return Err(refused);
        }
        for skipped in &found.skipped {
            say(skipped);
        }
        found.checkpoint
    };
    // What the restored checkpoint says, read before anything in the folder changes: the
    // output parts it relies on (verified by the restore: 1..=its epoch) and its position.
    let committed = restored.as_ref().map_or(0, |r| r.epoch);
    let unusable = |what: String| {
        Error::Refused(format!(
            "checkpoint {committed} in {}: {what}. {start_over}",
            ck.dir.display()
        ))
    };
    let mut parts_digests = match &restored {
        Some(r) => r.parts().map_err(|e| unusable(e.to_string()))?,
        None => Vec::new(),
    };
    let position: SourcePosition = match &restored {
        Some(r) => serde_json::from_value(r.sources.clone())
            .map_err(|e| unusable(format!("unreadable source position: {e}")))?,
        None => SourcePosition::default(),
    };
    store.continue_after(committed)?;
    let mut stats = CheckpointStats::default();

    if let Some(r) = restored.as_ref().filter(|r| r.is_final) {
        // The run had finished; only the output may be missing.
        concat_into(&parts_dir, &parts_digests, &output)?;
        say(&format!(
            "checkpoint {} is final: the run was complete; output written again",
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

    let parts = PartFiles::resume(&parts_dir, committed)?;
    let output_started = std::fs::read_dir(&parts_dir)
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("part-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        })
        .unwrap_or(false);

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
        Box::new(parts.writer()),
        output.clone(),
        out_schema,
        cfg.job.utc_offset_secs,
        output_started,
    )?;
    let sink = Box::new(PartSink {
        writer,
        parts,
        sealed: sealed_tx,
    });
    let job = match &restored {
        Some(r) => spec.start_restored(schema.clone(), sink, &r.states())?,
        None => spec.start_with_sink(schema.clone(), sink)?,
    };
    let mut started = Started::attach(job, &cfg.job, schema)?;
    let inputs = started.job.take_inputs();

    let parsing_done = AtomicBool::new(false);
    let p = cfg.job.parallelism;
    let mut leftover = Vec::new();
    let (parsed, coordinated) = std::thread::scope(|s| {
        let coordinator = s.spawn(|| {
            coordinate(
                &run,
                &mut store,
                &parts_dir,
                ck,
                committed,
                p,
                &snap_rx,
                &sealed_rx,
                &parsing_done,
                &id,
                &mut leftover,
                cfg.stop.as_ref(),
                &mut parts_digests,
            )
        });
        let parsed = run.parse(inputs);
        parsing_done.store(true, Ordering::Relaxed);
        (
            parsed,
            coordinator.join().expect("checkpoint coordinator panicked"),
        )
    });
    let joined = started.join();
    let (parse_stats, job_stats) = run.settle(parsed, joined)?;
    let (last, mut cstats) = coordinated?;
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

    // The final epoch: everything after the last committed checkpoint, in the parts sealed since
    // (the last by the sink's finish, once the job has ended).
    leftover.extend(sealed_rx.try_iter());
    leftover.sort_by_key(|p| p.epoch);
    let Some(final_epoch) = leftover.iter().map(|p| p.epoch).max() else {
        return Err(Error::Engine(weir_engine::EngineError::Internal(
            "the output's last part was not sealed".into(),
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
    for p in &leftover {
        p.sync()?;
        promote(&parts_dir, p.epoch)?;
        parts_digests.push(p.digest());
    }
    if !parts_digests
        .iter()
        .enumerate()
        .all(|(i, p)| p.epoch == i as u64 + 1)
    {
        return Err(Error::Engine(weir_engine::EngineError::Internal(format!(
            "the output parts are not 1..={final_epoch}: {:?}",
            parts_digests.iter().map(|p| p.epoch).collect::<Vec<_>>()
        ))));
    }
    let sink = serde_json::json!({ "parts_after": last, "last_part": final_epoch });
    store.commit(
        final_epoch,
        &id,
        &[],
        manifest_sources,
        sink,
        true,
        &parts_digests,
    )?;
    concat_into(&parts_dir, &parts_digests, &output)?;
    store.retain(ck.keep)?;
    cstats.committed += 1;
    summary(cstats)
}

fn part_json(p: &SealedPart) -> serde_json::Value {
    serde_json::json!({ "part": p.epoch, "bytes": p.len })
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

/// The coordinator loop: one checkpoint per interval while the parsers run; on a stop request,
/// one more at once, after which the parsers stop. Returns the last committed epoch and the
/// checkpoint stats.
#[allow(clippy::too_many_arguments)]
fn coordinate(
    run: &FileRun<'_>,
    store: &mut CheckpointStore,
    parts_dir: &Path,
    ck: &CheckpointOptions,
    mut last: u64,
    workers: usize,
    snapshots: &Receiver<WorkerSnapshot>,
    sealed: &Receiver<SealedPart>,
    done: &AtomicBool,
    id: &JobIdentity,
    leftover: &mut Vec<SealedPart>,
    stop: Option<&Stop>,
    parts: &mut Vec<PartDigest>,
) -> Result<(u64, CheckpointStats)> {
    let mut stats = CheckpointStats::default();
    let mut total = Duration::ZERO;
    let stopping = || stop.is_some_and(Stop::is_requested);
    'run: loop {
        // Sleep the interval in small steps, so the end of input is noticed at once.
        let wake = Instant::now() + ck.interval;
        while Instant::now() < wake {
            if done.load(Ordering::Relaxed) {
                break 'run;
            }
            if stopping() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5).min(ck.interval));
        }
        let epoch = last + 1;
        let requested = Instant::now();
        let last_one = stopping();
        let at = if last_one {
            if let Some(stop) = stop {
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
            run.claims.request_last(epoch)
        } else {
            run.claims.request(epoch)
        };
        // Wait for every worker's snapshot and the sealed output part of this epoch.
        let mut states: Vec<Option<WorkerSnapshot>> = (0..workers).map(|_| None).collect();
        let mut part = None;
        while states.iter().any(Option::is_none) || part.is_none() {
            let mut ended = false;
            crossbeam_channel::select! {
                recv(snapshots) -> s => match s {
                    Ok(s) if s.epoch == epoch => { let w = s.worker; states[w] = Some(s); }
                    Ok(_) => {}
                    Err(_) => ended = true,
                },
                recv(sealed) -> p => match p {
                    Ok(p) if p.epoch == epoch => part = Some(p),
                    Ok(p) => leftover.push(p),
                    Err(_) => ended = true,
                },
                default(Duration::from_millis(20)) => {
                    // The parsers of a last barrier end right after injecting it: wait for the
                    // checkpoint (or for the job's end, if none of them reached the barrier).
                    ended = done.load(Ordering::Relaxed) && !last_one;
                }
            }
            if ended {
                // Snapshots sent before the end are still queued: with all of them, the barrier
                // passed every worker, so the part of this epoch is its checkpoint's.
                for s in snapshots.try_iter().filter(|s| s.epoch == epoch) {
                    let w = s.worker;
                    states[w] = Some(s);
                }
                if states.iter().all(Option::is_some) && part.is_some() {
                    break;
                }
                // The input ended before every input passed the barrier: the final epoch takes
                // over whatever this one holds (a part of this epoch is the final one).
                leftover.extend(part.take());
                break 'run;
            }
        }
        let part = part.expect("loop ends with the part");
        // The part is durable under its final name before the manifest that lists it.
        part.sync()?;
        promote(parts_dir, epoch)?;
        parts.push(part.digest());
        let (lines, rows, malformed) = run.counts_before(at);
        let max_ts = run.max_ts_before(at);
        let sources = serde_json::to_value(SourcePosition {
            chunk: at,
            chunk_bytes: run.chunk_bytes,
            offset: run.chunk_start(at) as u64,
            max_ts,
            lines,
            rows,
            malformed,
        })
        .expect("serialisable");
        let snapshots: Vec<WorkerSnapshot> = states
            .into_iter()
            .map(|s| s.expect("all present"))
            .collect();
        stats.bytes += store
            .commit(
                epoch,
                id,
                &snapshots,
                sources,
                part_json(&part),
                false,
                parts,
            )?
            .bytes;
        store.retain(ck.keep)?;
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
    Ok((last, stats))
}
