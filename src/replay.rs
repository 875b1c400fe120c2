//! Replaying an access log through a job: the pipeline behind `weir replay`.
//!
//! ```text
//!  mmapped file ─▶ FileChunks ─▶ ChunkSplit t ─▶ Driver (parser thread t) ─▶ Input t ─┐
//!                  (threads claim 1 MiB line-aligned chunks in file order)            ├─▶ workers ─▶ sink
//!  stdin / .gz  ─▶ StreamSplit (reader thread) ─▶ Driver ─▶ Input 0 ─────────────────┘
//! ```
//!
//! Both are the one source driver of `weir_io::split` over a split of the input: a file is
//! parsed by several threads at once, each owning an engine [`Input`] (its own watermark) and
//! claiming the next chunk from a shared counter, so all threads move through the file, and
//! through event time, together: windows fire as the slowest thread passes them and state stays
//! as small as a single reader's. How the result stays a function of the file alone (barriers at
//! chunks, event time in file order, line numbers) is in `weir_io::split::chunks`.
//!
//! [`Input`]: weir_engine::Input

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir_engine::{count, Input, Job, JobSpec, JobStats, RunningJob, WatermarkStrategy};
use weir_io::output::OutputFile;
use weir_io::parse::{
    detect_format, Columns, LineParser, LogFormat, Malformed, ParseOptions, ParseStats,
};
use weir_io::paths::PathSet;
use weir_io::sink::{writer, OutputFormat, WriterSink};
use weir_io::source::{open_input, LineReader, LogInput, MappedFile, DEFAULT_CHUNK_BYTES};
use weir_io::split::chunks::{rebase_line, FileChunks};
use weir_io::split::stream::StreamSplit;
use weir_io::split::{Driver, Halt};

use crate::error::{opening, Error, Result};
use crate::stop::Stop;
use crate::units::thousands;

/// How log lines are read.
#[derive(Debug, Clone)]
pub struct ParseConfig {
    /// The format, or `None` to detect it from the first lines.
    pub format: Option<LogFormat>,
    /// Fail on the first malformed line instead of counting it.
    pub strict: bool,
    /// The date of the simple format's `HH:MM:SS` times, in days since the epoch.
    pub simple_date_days: i32,
    /// Longest line accepted; longer ones are malformed (and streams do not buffer them whole).
    pub max_line_bytes: usize,
}

impl Default for ParseConfig {
    fn default() -> Self {
        Self {
            format: None,
            strict: false,
            simple_date_days: weir_io::parse::today_utc_days(),
            max_line_bytes: weir_io::parse::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// What a job computes and where its results go.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Tumbling window size.
    pub window: Duration,
    /// Key columns (parser column names: `client`, `method`, `path`, `status`, …).
    pub keys: Vec<String>,
    /// Partition workers.
    pub parallelism: usize,
    /// Key groups (max parallelism): fixed at a checkpointed job's first start; a checkpoint
    /// restores at any parallelism up to it.
    pub key_groups: usize,
    /// Watermarks of each input.
    pub watermark: WatermarkStrategy,
    /// Results file, or stdout.
    pub output: Option<PathBuf>,
    /// Results format.
    pub output_format: OutputFormat,
    /// File for rows that arrive after their window fired (CSV), if wanted.
    pub late_output: Option<PathBuf>,
    /// Shift of the `print` format's clock, in seconds east of UTC.
    pub utc_offset_secs: i32,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5),
            keys: vec!["client".into()],
            parallelism: 1,
            key_groups: weir_engine::DEFAULT_KEY_GROUPS,
            watermark: WatermarkStrategy::Ascending,
            output: None,
            output_format: OutputFormat::Print,
            late_output: None,
            utc_offset_secs: 0,
        }
    }
}

/// A progress callback: called with the number of input bytes just consumed.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Everything `weir replay` needs.
#[derive(Clone)]
pub struct ReplayConfig {
    /// The log: a path, or `-` for stdin. `.gz` (or gzip content) is decompressed.
    pub input: PathBuf,
    /// How to read lines.
    pub parse: ParseConfig,
    /// What to compute and where to put it.
    pub job: JobOptions,
    /// Parser threads for a plain file (default: the number of cores).
    pub parse_threads: usize,
    /// Chunk size for parallel parsing.
    pub chunk_bytes: usize,
    /// Called as input is consumed.
    pub progress: Option<Progress>,
    /// A pause after each file chunk: a test hook that slows a replay down so crash tests can
    /// kill it mid-run. Zero in normal use.
    pub chunk_delay: Duration,
    /// Ends the replay early and cleanly when requested: reading stops, every window fires and
    /// is written (a checkpointed replay takes a last checkpoint instead, and a rerun resumes
    /// from it).
    pub stop: Option<Stop>,
}

impl ReplayConfig {
    /// Defaults for `input`: auto-detected format, 5 s windows by client, print to stdout.
    pub fn new(input: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            parse: ParseConfig::default(),
            job: JobOptions::default(),
            parse_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            progress: None,
            chunk_delay: Duration::ZERO,
            stop: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The log format used.
    pub format: LogFormat,
    /// Lines, bytes, rows and malformed lines read (examples with their real line numbers).
    pub parse: ParseStats,
    /// The engine's counters.
    pub job: JobStats,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Size of the input when known in advance (a plain file).
    pub input_bytes: Option<u64>,
}

/// Replays a log through the job described by `cfg`.
pub fn replay(cfg: &ReplayConfig) -> Result<RunSummary> {
    let started = Instant::now();
    let path = cfg.input.as_path();
    check_paths(Some(path), &job_outputs(&cfg.job), None)?;
    let replayed = match open_input(path).map_err(opening)? {
        LogInput::Mapped(file) => replay_file(cfg, &file),
        LogInput::Stream(reader) => replay_stream(cfg, reader),
    };
    let mut summary = replayed.map_err(|e| e.in_input(path))?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The outputs of a job as (flag, path) for [`check_paths`]: the results (`-`: stdout) and the
/// late rows.
pub(crate) fn job_outputs(opts: &JobOptions) -> Vec<(&'static str, &Path)> {
    let mut v = vec![("--output", opts.output.as_deref().unwrap_or(Path::new("-")))];
    if let Some(late) = &opts.late_output {
        v.push(("--late-output", late.as_path()));
    }
    v
}

/// Refuses, before anything is opened for writing, an output that is the input, two outputs
/// that are one file, and a checkpoint folder that holds the input or an output
/// ([`weir_io::paths`]): a usage error naming both paths.
pub(crate) fn check_paths(
    input: Option<&Path>,
    outputs: &[(&str, &Path)],
    checkpoint_dir: Option<&Path>,
) -> Result<()> {
    let mut set = PathSet::new();
    if let Some(i) = input {
        set.input(i);
    }
    for (flag, path) in outputs {
        set.output(flag, path);
    }
    if let Some(d) = checkpoint_dir {
        set.checkpoint_dir("--checkpoint-dir", d);
    }
    set.check().map_err(|e| Error::usage(e.to_string()))
}

/// The parser columns a job over `keys` needs.
pub fn columns_for(keys: &[String], format: LogFormat) -> Result<Columns> {
    let mut cols = Columns::TS;
    for k in keys {
        let c = Columns::from_name(k).filter(|c| *c != Columns::TS).ok_or_else(|| {
            Error::usage(format!(
                "--key {k}: not a column of the access log (client, method, path, status, bytes, referer, user_agent)"
            ))
        })?;
        if !Columns::available(format).contains(c) {
            return Err(Error::usage(format!(
                "--key {k}: the {} format has no such column",
                format.name()
            )));
        }
        cols |= c;
    }
    Ok(cols)
}

/// The job spec for `opts` with `inputs` inputs.
pub fn job_spec(opts: &JobOptions, inputs: usize) -> Result<JobSpec> {
    Ok(job_builder(opts, inputs).build()?)
}

/// The job builder for `opts` with `inputs` inputs.
pub(crate) fn job_builder(opts: &JobOptions, inputs: usize) -> weir_engine::JobBuilder {
    Job::builder()
        .parallelism(opts.parallelism)
        .key_groups(opts.key_groups)
        .inputs(inputs)
        .event_time("ts")
        .key_by(&opts.keys)
        .tumbling(opts.window)
        .watermark(opts.watermark)
        .aggregate([count()])
        .late_output(opts.late_output.is_some())
}

/// A started job whose results go to the configured output.
///
/// Output files are written under temporary names and renamed into place by [`Started::join`]
/// once the job and the late-rows writer have succeeded ([`OutputFile`]); a run that fails
/// removes them, leaving any earlier file at the output path as it was.
pub(crate) struct Started {
    pub job: RunningJob,
    late: Option<JoinHandle<Result<()>>>,
    files: Vec<OutputFile>,
}

impl Started {
    /// Starts the job of a bounded run: output files appear when it has succeeded.
    pub(crate) fn start(opts: &JobOptions, spec: &JobSpec, parse: &ParseOptions) -> Result<Self> {
        Self::start_with(opts, spec, parse, false)
    }

    /// Starts the job of a live run (`weir serve`): output files are written in place, to be
    /// read while they grow.
    pub(crate) fn start_live(
        opts: &JobOptions,
        spec: &JobSpec,
        parse: &ParseOptions,
    ) -> Result<Self> {
        Self::start_with(opts, spec, parse, true)
    }

    fn start_with(
        opts: &JobOptions,
        spec: &JobSpec,
        parse: &ParseOptions,
        live: bool,
    ) -> Result<Self> {
        let schema = LineParser::new(parse.clone()).schema();
        let out_schema = spec.output_schema(&schema)?;
        let mut files = Vec::new();
        let (out, name) = open_output(opts.output.as_deref(), live, &mut files)?;
        let w = writer(
            opts.output_format,
            out,
            name,
            out_schema,
            opts.utc_offset_secs,
        )?;
        let job = spec.start_with_sink(schema.clone(), Box::new(WriterSink(w)))?;
        Self::attach_with(job, opts, schema, live, files)
    }

    /// Wraps a started job, with the late-rows writer if `opts` asks for one.
    pub(crate) fn attach(
        job: RunningJob,
        opts: &JobOptions,
        schema: arrow_schema::SchemaRef,
    ) -> Result<Self> {
        Self::attach_with(job, opts, schema, false, Vec::new())
    }

    fn attach_with(
        mut job: RunningJob,
        opts: &JobOptions,
        schema: arrow_schema::SchemaRef,
        live: bool,
        mut files: Vec<OutputFile>,
    ) -> Result<Self> {
        let late = match (&opts.late_output, job.take_late_records()) {
            (Some(path), Some(rx)) => {
                let (out, name) = open_output(Some(path), live, &mut files)?;
                let mut w = writer(OutputFormat::Csv, out, name, schema, 0)?;
                Some(std::thread::spawn(move || -> Result<()> {
                    for b in rx {
                        w.write(&b)?;
                    }
                    Ok(w.finish()?)
                }))
            }
            _ => None,
        };
        Ok(Self { job, late, files })
    }

    /// Waits for the job and the late-rows writer; if both succeeded, makes the output files
    /// visible.
    pub(crate) fn join(self) -> Result<JobStats> {
        let stats = self.job.join()?;
        if let Some(late) = self.late {
            late.join()
                .map_err(|_| Error::usage("the late-output writer panicked"))??;
        }
        for f in self.files {
            f.commit()?;
        }
        Ok(stats)
    }
}

/// Opens an output (`None` or `-`: stdout), keeping its file in `files` for the commit.
fn open_output(
    path: Option<&Path>,
    live: bool,
    files: &mut Vec<OutputFile>,
) -> Result<(Box<dyn std::io::Write + Send>, PathBuf)> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let f = if live {
                OutputFile::live(p)
            } else {
                OutputFile::create(p)
            }
            .map_err(opening)?;
            let handle = f.handle()?;
            files.push(f);
            Ok((Box::new(handle), p.to_owned()))
        }
        _ => Ok((Box::new(std::io::stdout()), PathBuf::from("-"))),
    }
}

/// Parse options for `format` and the job's keys.
pub(crate) fn parse_options(
    cfg: &ParseConfig,
    format: LogFormat,
    keys: &[String],
) -> Result<ParseOptions> {
    let mut o = ParseOptions::new(format).with_columns(columns_for(keys, format)?);
    o.strict = cfg.strict;
    o.simple_date_days = cfg.simple_date_days;
    o.max_line_bytes = cfg.max_line_bytes;
    Ok(o)
}

/// The format from the config or from the first lines of `sample`.
pub(crate) fn pick_format(cfg: &ParseConfig, sample: &[u8], path: &Path) -> Result<LogFormat> {
    match cfg.format {
        Some(f) => Ok(f),
        None => detect_format(sample).ok_or_else(|| {
            Error::Io(weir_io::Error::UnknownFormat {
                path: path.to_owned(),
            })
        }),
    }
}

fn replay_file(cfg: &ReplayConfig, file: &MappedFile) -> Result<RunSummary> {
    let data = file.bytes();
    let format = pick_format(&cfg.parse, &data[..data.len().min(1 << 16)], file.path())?;
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;
    let mut run = FileRun::new(cfg, file, opts.clone(), 0);
    run.halt = cfg.stop.clone();
    let spec = job_spec(&cfg.job, run.threads)?;
    let mut started = Started::start(&cfg.job, &spec, &opts)?;
    crate::metrics::watch_job(&started.job, &cfg.job, |_| {
        crate::metrics::path_label(file.path())
    });
    let parsed = run.parse(started.job.take_inputs());
    let joined = started.join();
    let (stats, job) = run.settle(parsed, joined)?;
    Ok(RunSummary {
        format,
        parse: stats,
        job,
        elapsed: Duration::ZERO,
        input_bytes: Some(data.len() as u64),
    })
}

/// Parallel parsing of a mapped file into a job's inputs: one parser thread per input, each
/// driving its split of the file's chunks ([`FileChunks`]).
pub(crate) struct FileRun<'a> {
    pub chunks: FileChunks<'a>,
    opts: ParseOptions,
    pub threads: usize,
    progress: Option<Progress>,
    chunk_delay: Duration,
    /// Ends the parsing early, between chunks, when requested (a plain replay; a checkpointed
    /// one stops at a barrier instead: [`FileChunks::request_last`]).
    pub halt: Option<Stop>,
}

impl<'a> FileRun<'a> {
    pub(crate) fn new(
        cfg: &ReplayConfig,
        file: &'a MappedFile,
        opts: ParseOptions,
        first_chunk: usize,
    ) -> Self {
        let chunks = FileChunks::new(file, cfg.chunk_bytes, first_chunk);
        Self {
            threads: cfg.parse_threads.clamp(1, chunks.len().max(1)),
            chunks,
            opts,
            progress: cfg.progress.clone(),
            chunk_delay: cfg.chunk_delay,
            halt: None,
        }
    }

    /// Runs one parser thread per input until the file is consumed or one fails.
    pub(crate) fn parse(&self, inputs: Vec<Input>) -> Vec<Result<ParseStats>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .into_iter()
                .map(|mut input| {
                    s.spawn(move || {
                        let halt = self.halt.as_ref().map(|h| h as &dyn Halt);
                        let mut split = self.chunks.split(halt);
                        let meter = crate::metrics::meter(input.index());
                        let mut driver = Driver::new(LineParser::new(self.opts.clone()))
                            .with_progress(self.progress.as_deref().map(|p| p as _))
                            .with_meter(meter.driver())
                            .with_pace(self.chunk_delay);
                        let driven = driver.run(&mut split, &mut input);
                        match driven.and_then(|_| Ok(input.finish()?)) {
                            Ok(()) => Ok(driver.into_stats()),
                            Err(e) => {
                                // The other threads stop at their next chunk.
                                self.chunks.fail();
                                Err(self.chunks.rebase_error(e).into())
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("parser thread panicked"))
                .collect()
        })
    }

    /// Merges the threads' stats (rebasing line numbers) and settles the run's outcome.
    pub(crate) fn settle(
        &self,
        parsed: Vec<Result<ParseStats>>,
        joined: Result<JobStats>,
    ) -> Result<(ParseStats, JobStats)> {
        let mut stats = ParseStats::default();
        let mut failures = Vec::new();
        for p in parsed {
            match p {
                Ok(s) => stats.merge(&s),
                Err(e) => failures.push(e),
            }
        }
        // With --strict several threads may each stop at a malformed line: the first in the
        // file is the one reported, whichever thread found it first.
        let line = |e: &Error| match e {
            Error::Io(weir_io::Error::Malformed { line, .. }) => *line,
            _ => u64::MAX,
        };
        failures.sort_by_key(line);
        let job = Error::settle(failures, joined)?;
        let before = self.chunks.lines_before_each();
        for m in &mut stats.examples {
            m.line = rebase_line(m.line, &before);
        }
        Ok((stats, job))
    }
}

fn replay_stream(cfg: &ReplayConfig, reader: Box<dyn Read + Send>) -> Result<RunSummary> {
    let stop = cfg.stop.as_ref().map(|s| s as &dyn Halt);
    let mut split = StreamSplit::spawn(
        LineReader::new(reader, cfg.input.clone(), 1 << 20).with_max_line(cfg.parse.max_line_bytes),
        stop,
    );
    let format = match (split.first()?, cfg.parse.format) {
        // Stopped before the first line: an empty run.
        (None, Some(f)) => f,
        (None, None) if stop.is_some_and(|s| s.is_requested()) => LogFormat::Combined,
        (first, _) => pick_format(&cfg.parse, first.unwrap_or_default(), &cfg.input)?,
    };
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;
    let spec = job_spec(&cfg.job, 1)?;
    let mut started = Started::start(&cfg.job, &spec, &opts)?;
    crate::metrics::watch_job(&started.job, &cfg.job, |_| {
        crate::metrics::path_label(&cfg.input)
    });
    let mut input = started.job.input().expect("one input");
    let meter = crate::metrics::meter(input.index());
    let mut driver = Driver::new(LineParser::new(opts))
        .with_progress(cfg.progress.as_deref().map(|p| p as _))
        .with_meter(meter.driver());
    let driven = driver.run(&mut split, &mut input);
    if let Some(stop) = &cfg.stop {
        stop.set_dropping(format!(
            "the results not yet written of {} lines read",
            thousands(driver.stats().lines)
        ));
    }
    // A broken stream fails the run instead of ending it early as if the input were complete:
    // the input is then dropped unfinished, before the join, so the job stops with an error
    // instead of waiting for more input.
    let fed = driven.and_then(|_| Ok(input.finish()?));
    let job = Error::settle(fed.err().map(Error::from), started.join())?;
    Ok(RunSummary {
        format,
        parse: driver.into_stats(),
        job,
        elapsed: Duration::ZERO,
        input_bytes: None,
    })
}

/// The first malformed examples, as lines for a summary.
pub fn describe_malformed(examples: &[Malformed]) -> Vec<String> {
    examples
        .iter()
        .map(|m| format!("line {}: {}: {:?}", m.line, m.reason, m.text))
        .collect()
}
