//! `weir replay --checkpoint-dir`: barrier checkpoints, recovery and exactly-once file output.
//!
//! ```text
//!  timer ─▶ chunks.request(n) ─▶ every parser thread injects barrier n before its next chunk
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

use crossbeam_channel::{never, Receiver};

use crate::coordinator::{BarrierSource, Coordinator};
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{CheckpointError, FileDigest, FsStorage};
use weir_io::results_file::{self, Committed, ResultsFile};
use weir_io::sink::{continue_writer, OutputFormat};
use weir_io::source::MappedFile;

use crate::error::{opening, Error, Result};
use crate::replay::{
    check_paths, job_builder, job_outputs, parse_options, pick_format, FileRun, ReplayConfig,
    RunSummary, Started,
};
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
    let input_file = input_identity(file)?;
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
        key_groups: cfg.job.key_groups,
        input_file: Some(input_file),
    })
}

/// The identity of a mapped input file ([`InputFile`]). Its sampled blocks are read through the
/// file: one that ends early was truncated since it was mapped, and is named as such.
pub(crate) fn input_identity(file: &MappedFile) -> Result<InputFile> {
    InputFile::of(file.file()).map_err(|e| {
        let e = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(
                e.kind(),
                "the file was truncated while weir was reading it (another process changed it)",
            )
        } else {
            e
        };
        weir_io::Error::io(file.path(), e).into()
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

/// The barrier side of a checkpointed file replay: barriers at chunk boundaries, handed out by
/// the file splitter's claims; a barrier's position is the chunk it was placed before.
struct FileBarriers<'a, 'f> {
    run: &'a FileRun<'f>,
    /// The last barrier requested and its chunk.
    at: Option<(u64, usize)>,
}

impl FileBarriers<'_, '_> {
    fn position(&self, chunk: usize, max_ts: i64) -> serde_json::Value {
        let (lines, rows, malformed) = self.run.chunks.counts_before(chunk);
        serde_json::to_value(SourcePosition {
            chunk,
            chunk_bytes: self.run.chunks.chunk_bytes(),
            offset: self.run.chunks.chunk_start(chunk) as u64,
            max_ts,
            lines,
            rows,
            malformed,
        })
        .expect("serialisable")
    }
}

impl BarrierSource for FileBarriers<'_, '_> {
    type Report = ();

    fn reports(&self) -> Receiver<()> {
        never()
    }

    fn report(&mut self, _: ()) {}

    fn request(&mut self, epoch: u64, last: bool) {
        let chunk = if last {
            self.run.chunks.request_last(epoch)
        } else {
            self.run.chunks.request(epoch)
        };
        self.at = Some((epoch, chunk));
    }

    fn positions(&self, epoch: u64) -> Option<serde_json::Value> {
        // Known once the barrier passed every worker, which the coordinator waits for.
        let (_, chunk) = self.at.filter(|(e, _)| *e == epoch)?;
        Some(self.position(chunk, self.run.chunks.max_ts_before(chunk)))
    }

    fn final_positions(&self) -> Option<serde_json::Value> {
        Some(self.position(self.run.chunks.len(), i64::MAX))
    }

    fn failed(&self) -> bool {
        self.run.chunks.failed()
    }

    fn missing(&self, _epoch: u64) -> String {
        "positions known".into()
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
            results_file::publish(&FsStorage, &results_path, results_at, &output)?;
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
        run.chunks.resume(
            position.lines,
            position.rows,
            position.malformed,
            position.max_ts,
        );
    }

    let spec = job_builder(&cfg.job, run.threads)
        .checkpoints(true)
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
    let (sink, mut committer) =
        results_file::exactly_once(writer, results, output, results_at, committed + 1);
    let sink = Box::new(sink);
    let mut job = match &restored {
        Some(r) => spec.start_restored(schema.clone(), sink, &r.states())?,
        None => spec.start_with_sink(schema.clone(), sink)?,
    };
    let snap_rx = job.take_snapshots().expect("built with checkpoints");
    let mut started = Started::attach(job, &cfg.job, schema)?;
    crate::metrics::watch_job(&started.job, &cfg.job, |_| {
        crate::metrics::path_label(&cfg.input)
    });
    let inputs = started.job.take_inputs();

    let dropping = |epoch: u64, last: u64| {
        format!(
            "the last checkpoint ({epoch}) was not completed: running the same command again \
             resumes from {}",
            if last == 0 {
                "the start".to_string()
            } else {
                format!("checkpoint {last}")
            }
        )
    };
    let (parsed, coordinated) = std::thread::scope(|s| {
        let coordinator = s.spawn(|| {
            let mut barriers = FileBarriers {
                run: &run,
                at: None,
            };
            Coordinator {
                store: &mut store,
                id: &id,
                interval: ck.interval,
                keep: ck.keep,
                workers: cfg.job.parallelism,
                snapshots: &snap_rx,
                stop: cfg.stop.as_ref(),
                dropping: &dropping,
            }
            .run(&mut barriers, &mut committer, committed)
        });
        let parsed = run.parse(inputs);
        (
            parsed,
            coordinator.join().expect("checkpoint coordinator panicked"),
        )
    });
    let joined = started.join();
    let (parse_stats, job_stats) = run.settle(parsed, joined)?;
    let done = coordinated?;
    let totals = run.chunks.counts_before(run.chunks.len());
    let mut parse = parse_stats;
    (parse.lines, parse.rows, parse.malformed) = totals;
    let cstats = CheckpointStats {
        resumed_from: stats.resumed_from,
        ..done
    };
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
