//! Replaying an access log through a job: the pipeline behind `weir replay`.
//!
//! ```text
//!  mmapped file ─▶ chunk i (1 MiB, line-aligned) ─▶ parser thread t ─▶ Input t ─┐
//!     (parser threads take chunks in file order from one counter)               ├─▶ workers ─▶ sink
//!  stdin / .gz  ─▶ LineReader ─▶ one parser thread ─▶ Input 0 ─────────────────┘
//! ```
//!
//! A file is parsed by several threads at once. Each thread owns an engine [`Input`] (its own
//! watermark) and takes the next chunk from a shared counter, so all threads move through the
//! file, and through event time, together: windows fire as the slowest thread passes them and
//! state stays as small as a single reader's. Malformed lines are reported with their line
//! numbers although no thread knows where its chunk starts: a parser is told that chunk `i`
//! starts at line `i << 32 | 1`, and once every chunk's line count is known those numbers are
//! rebased ([`rebase_line`]).
//!
//! [`Input`]: weir_engine::Input

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use weir_engine::{
    count, Input, Job, JobSpec, JobStats, ResultSink, RunningJob, SinkError, WatermarkStrategy,
};
use weir_io::output::OutputFile;
use weir_io::parse::{
    detect_format, Columns, LineParser, LogFormat, Malformed, ParseOptions, ParseStats,
};
use weir_io::paths::PathSet;
use weir_io::sink::{writer, BatchWriter, OutputFormat};
use weir_io::source::{open_input, LineReader, LogInput, MappedFile, DEFAULT_CHUNK_BYTES};

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

struct WriterSink(Box<dyn BatchWriter>);

impl ResultSink for WriterSink {
    fn batch(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        Ok(self.0.write(&batch)?)
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(self.0.finish()?)
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

/// Lines, rows and malformed lines of one chunk, known once it is parsed.
#[derive(Debug, Default)]
pub(crate) struct ChunkCounts {
    pub lines: AtomicU64,
    pub rows: AtomicU64,
    pub malformed: AtomicU64,
}

/// Hands out chunk indices in file order, and checkpoint barriers: once a barrier is requested
/// at chunk `at`, a thread injects it into its input before it parses any chunk from `at` on,
/// so the barrier splits the file exactly at `at` on every input.
pub(crate) struct Claims {
    state: std::sync::Mutex<ClaimState>,
}

struct ClaimState {
    next: usize,
    barrier: Option<(u64, usize)>,
    /// The barrier after which every thread stops.
    last: Option<u64>,
}

impl Claims {
    pub(crate) fn new(first: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(ClaimState {
                next: first,
                barrier: None,
                last: None,
            }),
        }
    }

    /// The next chunk for a thread that has injected barriers up to `seen`, the barrier it
    /// must inject first, if any, and whether it must stop after that barrier (not parsing the
    /// chunk).
    fn claim(&self, seen: &mut u64) -> (Option<u64>, usize, bool) {
        let mut g = self.state.lock().expect("claims lock");
        let i = g.next;
        g.next += 1;
        match g.barrier {
            Some((epoch, at)) if i >= at && *seen < epoch => {
                *seen = epoch;
                (Some(epoch), i, g.last == Some(epoch))
            }
            _ => (None, i, false),
        }
    }

    /// Like [`Claims::request`], for the run's last barrier: every thread stops once it has
    /// injected it, so the checkpoint holds everything the run read.
    pub(crate) fn request_last(&self, epoch: u64) -> usize {
        let mut g = self.state.lock().expect("claims lock");
        g.barrier = Some((epoch, g.next));
        g.last = Some(epoch);
        g.next
    }

    /// Requests barrier `epoch` before the first chunk not yet handed out; returns that chunk.
    /// One barrier at a time: request the next only once this one has completed.
    pub(crate) fn request(&self, epoch: u64) -> usize {
        let mut g = self.state.lock().expect("claims lock");
        g.barrier = Some((epoch, g.next));
        g.next
    }
}

/// Event time in file order, for parser threads that parse a file's chunks in parallel.
///
/// Each input's watermark must be a function of the file, not of which thread parsed which
/// chunk when: before a thread pushes chunk `i`, its input's watermark moves to the largest
/// timestamp of chunks `..i` ([`Input::advance_to`]), so every row is judged late or not exactly
/// as a single reader of the file would judge it. A thread publishes its chunk's largest
/// timestamp once it is parsed and the chunk before is published, so threads wait only for a
/// slower neighbour's parse, never for a push.
pub(crate) struct FileClock {
    state: std::sync::Mutex<ClockState>,
    published: std::sync::Condvar,
}

struct ClockState {
    /// The first chunk of this run; `base` is the largest timestamp before it.
    first: usize,
    base: i64,
    /// `prefix[k]`: the largest timestamp of chunks `..=first + k`.
    prefix: Vec<i64>,
    stopped: bool,
}

impl FileClock {
    fn new(first: usize, base: i64) -> Self {
        Self {
            state: std::sync::Mutex::new(ClockState {
                first,
                base,
                prefix: Vec::new(),
                stopped: false,
            }),
            published: std::sync::Condvar::new(),
        }
    }

    /// Records chunk `i`'s largest timestamp once chunk `i - 1`'s is known, and returns the
    /// largest timestamp before chunk `i`; `None` if the run stopped meanwhile.
    fn publish(&self, i: usize, chunk_max: i64) -> Option<i64> {
        let mut g = self.state.lock().expect("clock lock");
        while g.first + g.prefix.len() < i && !g.stopped {
            g = self.published.wait(g).expect("clock lock");
        }
        if g.stopped {
            return None;
        }
        debug_assert_eq!(g.first + g.prefix.len(), i, "chunk {i} published twice");
        let before = g.prefix.last().copied().unwrap_or(g.base);
        g.prefix.push(before.max(chunk_max));
        self.published.notify_all();
        Some(before)
    }

    /// The largest timestamp before chunk `i`, over the chunks published so far.
    fn before(&self, i: usize) -> i64 {
        let g = self.state.lock().expect("clock lock");
        match i.checked_sub(g.first + 1) {
            None => g.base,
            Some(k) => g.prefix[..g.prefix.len().min(k + 1)]
                .last()
                .copied()
                .unwrap_or(g.base),
        }
    }

    /// Wakes and ends every wait: a thread failed.
    fn stop(&self) {
        self.state.lock().expect("clock lock").stopped = true;
        self.published.notify_all();
    }
}

/// The largest event time in `batches` (`i64::MIN` if none): the parser's `ts` column.
fn max_timestamp(batches: &[RecordBatch]) -> i64 {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;
    batches
        .iter()
        .filter_map(|b| b.column_by_name("ts"))
        .filter_map(|c| {
            c.as_primitive::<TimestampMillisecondType>()
                .values()
                .iter()
                .max()
                .copied()
        })
        .max()
        .unwrap_or(i64::MIN)
}

/// Parallel parsing of a mapped file into a job's inputs.
pub(crate) struct FileRun<'a> {
    file: &'a MappedFile,
    pub chunk_bytes: usize,
    opts: ParseOptions,
    pub threads: usize,
    pub chunks: usize,
    pub claims: Claims,
    stop: AtomicBool,
    counts: Vec<ChunkCounts>,
    /// Event time in file order: what each input's watermark starts a chunk from.
    clock: FileClock,
    progress: Option<Progress>,
    chunk_delay: Duration,
    /// Ends the parsing early, between chunks, when requested (a plain replay; a checkpointed
    /// one stops at a barrier instead: [`Claims::request_last`]).
    pub halt: Option<Stop>,
}

impl<'a> FileRun<'a> {
    pub(crate) fn new(
        cfg: &ReplayConfig,
        file: &'a MappedFile,
        opts: ParseOptions,
        first_chunk: usize,
    ) -> Self {
        let chunk_bytes = cfg.chunk_bytes.max(1);
        let chunks = file.chunk_count(chunk_bytes);
        Self {
            file,
            chunk_bytes,
            opts,
            threads: cfg.parse_threads.clamp(1, chunks.max(1)),
            chunks,
            claims: Claims::new(first_chunk),
            stop: AtomicBool::new(false),
            counts: (0..chunks).map(|_| ChunkCounts::default()).collect(),
            clock: FileClock::new(first_chunk, i64::MIN),
            progress: cfg.progress.clone(),
            chunk_delay: cfg.chunk_delay,
            halt: None,
        }
    }

    /// Continues a run restored at its first chunk: the lines, rows and malformed lines before
    /// it count towards line numbers and totals (booked on the chunk before, which this run does
    /// not parse), and event time resumes from `max_ts`, the largest timestamp before it.
    pub(crate) fn resume(&mut self, lines: u64, rows: u64, malformed: u64, max_ts: i64) {
        let first = self.claims.state.lock().expect("claims lock").next;
        if let Some(c) = first.checked_sub(1).and_then(|i| self.counts.get(i)) {
            c.lines.store(lines, Ordering::Relaxed);
            c.rows.store(rows, Ordering::Relaxed);
            c.malformed.store(malformed, Ordering::Relaxed);
        }
        self.clock = FileClock::new(first, max_ts);
    }

    /// The largest timestamp of the rows before chunk `i`, once every chunk before it has been
    /// parsed (at a completed barrier at `i`): what a run restored there resumes from.
    pub(crate) fn max_ts_before(&self, i: usize) -> i64 {
        self.clock.before(i)
    }

    /// Whether a parser thread failed (the run stops; its error says why).
    pub(crate) fn failed(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The byte offset where chunk `i` starts (the file's length past the end).
    pub(crate) fn chunk_start(&self, i: usize) -> usize {
        self.file
            .chunk(i, self.chunk_bytes)
            .map_or(self.file.bytes().len(), |r| r.start)
    }

    /// Runs one parser thread per input until the file is consumed or one fails.
    pub(crate) fn parse(&self, inputs: Vec<Input>) -> Vec<Result<ParseStats>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .into_iter()
                .map(|input| s.spawn(move || self.parse_chunks(input)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("parser thread panicked"))
                .collect()
        })
    }

    fn parse_chunks(&self, mut input: Input) -> Result<ParseStats> {
        let mut parser = LineParser::new(self.opts.clone());
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut seen = 0u64;
        let fail = |e: Error| {
            self.stop.store(true, Ordering::Relaxed);
            self.clock.stop();
            e
        };
        while !self.stop.load(Ordering::Relaxed)
            && !self.halt.as_ref().is_some_and(Stop::is_requested)
        {
            let (barrier, i, last) = self.claims.claim(&mut seen);
            if let Some(epoch) = barrier {
                input.barrier(epoch).map_err(|e| fail(e.into()))?;
                if last {
                    // The run stops at this barrier: nothing after it is read.
                    break;
                }
            }
            let Some(range) = self.file.chunk(i, self.chunk_bytes) else {
                break;
            };
            let bytes = &self.file.bytes()[range];
            let st = parser.stats();
            let before = (st.lines, st.rows, st.malformed);
            // Every chunk's rows leave the parser with it: a batch never mixes two chunks.
            let parsed = parser
                .parse(bytes, (i as u64) << 32 | 1, &mut |b| batches.push(b))
                .map(|()| parser.flush(&mut |b| batches.push(b)));
            let (st, c) = (parser.stats(), &self.counts[i]);
            c.lines.store(st.lines - before.0, Ordering::Relaxed);
            c.rows.store(st.rows - before.1, Ordering::Relaxed);
            c.malformed
                .store(st.malformed - before.2, Ordering::Relaxed);
            parsed.map_err(|e| fail(e.into()))?;
            // Event time has reached, in file order, the largest timestamp before this chunk,
            // whichever threads parsed those chunks: the rows of this one are judged from there.
            let Some(max_before) = self.clock.publish(i, max_timestamp(&batches)) else {
                break; // another thread failed
            };
            input.advance_to(max_before).map_err(|e| fail(e.into()))?;
            for b in batches.drain(..) {
                input.push(b).map_err(|e| fail(e.into()))?;
            }
            if let Some(p) = &self.progress {
                p(bytes.len() as u64);
            }
            if !self.chunk_delay.is_zero() {
                std::thread::sleep(self.chunk_delay);
            }
        }
        input.finish()?;
        Ok(parser.take_stats())
    }

    /// Sums of the per-chunk counts over chunks `0..i`: (lines, rows, malformed).
    pub(crate) fn counts_before(&self, i: usize) -> (u64, u64, u64) {
        self.counts[..i.min(self.chunks)]
            .iter()
            .fold((0, 0, 0), |acc, c| {
                (
                    acc.0 + c.lines.load(Ordering::Relaxed),
                    acc.1 + c.rows.load(Ordering::Relaxed),
                    acc.2 + c.malformed.load(Ordering::Relaxed),
                )
            })
    }

    /// Merges the threads' stats (rebasing line numbers) and settles the run's outcome.
    pub(crate) fn settle(
        &self,
        parsed: Vec<Result<ParseStats>>,
        joined: Result<JobStats>,
    ) -> Result<(ParseStats, JobStats)> {
        let data = self.file.bytes();
        // A thread's own failure explains more than the `Closed` its stop causes in the others.
        let mut stats = ParseStats::default();
        let mut failure: Option<Error> = None;
        for p in parsed {
            match p {
                Ok(s) => stats.merge(&s),
                Err(Error::Io(weir_io::Error::Malformed { line, reason, text })) => {
                    let start = self.chunk_start((line >> 32) as usize);
                    let line = memchr::memchr_iter(b'\n', &data[..start]).count() as u64
                        + (line & 0xFFFF_FFFF);
                    return Err(Error::Io(weir_io::Error::Malformed { line, reason, text }));
                }
                Err(e) => {
                    let closed = matches!(
                        failure,
                        Some(Error::Engine(weir_engine::EngineError::Closed))
                    );
                    if failure.is_none() || closed {
                        failure = Some(e);
                    }
                }
            }
        }
        let job = match failure {
            Some(e) => settle(Err(e), joined)?,
            None => joined?,
        };
        // Chunk i's first line is 1 + the lines of chunks 0..i.
        let mut before = Vec::with_capacity(self.chunks);
        let mut acc = 0u64;
        for c in &self.counts {
            before.push(acc);
            acc += c.lines.load(Ordering::Relaxed);
        }
        for m in &mut stats.examples {
            m.line = rebase_line(m.line, &before);
        }
        Ok((stats, job))
    }
}

/// The real line number of a line numbered `chunk << 32 | line-in-chunk` (1-based), given the
/// number of lines before each chunk.
pub fn rebase_line(encoded: u64, lines_before: &[u64]) -> u64 {
    let chunk = (encoded >> 32) as usize;
    lines_before.get(chunk).copied().unwrap_or(0) + (encoded & 0xFFFF_FFFF)
}

fn replay_stream(cfg: &ReplayConfig, reader: Box<dyn Read + Send>) -> Result<RunSummary> {
    let chunks = StreamChunks::spawn(
        LineReader::new(reader, cfg.input.clone(), 1 << 20).with_max_line(cfg.parse.max_line_bytes),
    );
    let stop = cfg.stop.as_ref();
    let first = chunks.next(stop)?;
    let format = match (&first, cfg.parse.format) {
        // Stopped before the first line: an empty run.
        (None, Some(f)) => f,
        (None, None) if stop.is_some_and(Stop::is_requested) => LogFormat::Combined,
        (first, _) => pick_format(&cfg.parse, first.as_deref().unwrap_or_default(), &cfg.input)?,
    };
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;
    let spec = job_spec(&cfg.job, 1)?;
    let mut started = Started::start(&cfg.job, &spec, &opts)?;
    let input = started.job.input().expect("one input");
    let mut feed = Feed::new(opts, input);
    let fed = (|| -> Result<()> {
        let mut next = first;
        while let Some(chunk) = next {
            // Rows wait in the parser for a full batch only while more input is at hand: a
            // quiet stream (a live pipe) has its rows pushed, and its windows fire on time.
            feed.chunk(&chunk, chunks.caught_up(), cfg.progress.as_ref())?;
            chunks.recycle(chunk);
            next = chunks.next(stop)?;
        }
        Ok(())
    })();
    if let Some(stop) = stop {
        stop.set_dropping(format!(
            "the results not yet written of {} lines read",
            thousands(feed.lines())
        ));
    }
    let (stats, job) = feed.close(fed, started)?;
    Ok(RunSummary {
        format,
        parse: stats,
        job,
        elapsed: Duration::ZERO,
        input_bytes: None,
    })
}

/// The chunks of a stream, read on a thread of their own so that a stop is noticed at once even
/// while the stream has nothing to read (a quiet pipe): the reader thread is then left blocked
/// in its read, and ends with the process. Buffers go round between the two threads, so a long
/// stream does not allocate per chunk.
struct StreamChunks {
    chunks: crossbeam_channel::Receiver<Result<Vec<u8>>>,
    spare: crossbeam_channel::Sender<Vec<u8>>,
}

impl StreamChunks {
    fn spawn(mut lines: LineReader<Box<dyn Read + Send>>) -> Self {
        let (tx, chunks) = crossbeam_channel::bounded(2);
        let (spare, spares) = crossbeam_channel::bounded::<Vec<u8>>(4);
        std::thread::spawn(move || loop {
            let msg = match lines.next_chunk() {
                Ok(Some(c)) => {
                    let mut buf = spares.try_recv().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(c);
                    Ok(buf)
                }
                Ok(None) => return,
                Err(e) => Err(e.into()),
            };
            let failed = msg.is_err();
            if tx.send(msg).is_err() || failed {
                return;
            }
        });
        Self { chunks, spare }
    }

    /// The next chunk; `None` at the end of the stream or once `stop` is requested.
    fn next(&self, stop: Option<&Stop>) -> Result<Option<Vec<u8>>> {
        let never = crossbeam_channel::never();
        let woken = stop.map_or(&never, Stop::woken);
        if stop.is_some_and(Stop::is_requested) {
            return Ok(None);
        }
        crossbeam_channel::select! {
            recv(self.chunks) -> c => c.ok().transpose(),
            recv(woken) -> _ => Ok(None),
        }
    }

    /// Whether no chunk is waiting: the reader has caught up with the stream.
    fn caught_up(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Hands a used buffer back to the reader.
    fn recycle(&self, buf: Vec<u8>) {
        let _ = self.spare.try_send(buf);
    }
}

/// A parser feeding one input from sequential chunks, numbering lines as it goes.
pub(crate) struct Feed {
    parser: LineParser,
    input: Input,
    batches: Vec<RecordBatch>,
}

impl Feed {
    pub(crate) fn new(opts: ParseOptions, input: Input) -> Self {
        Self {
            parser: LineParser::new(opts),
            input,
            batches: Vec::new(),
        }
    }

    /// Parses `chunk` and pushes its rows; with `flush`, also the rows still buffered (for live
    /// sources, where the next line may be long in coming).
    pub(crate) fn chunk(
        &mut self,
        chunk: &[u8],
        flush: bool,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let first_line = self.parser.stats().lines + 1;
        let batches = &mut self.batches;
        self.parser
            .parse(chunk, first_line, &mut |b| batches.push(b))?;
        if flush {
            self.parser.flush(&mut |b| batches.push(b));
        }
        for b in self.batches.drain(..) {
            self.input.push(b)?;
        }
        if let Some(p) = progress {
            p(chunk.len() as u64);
        }
        Ok(())
    }

    /// Lines read so far.
    pub(crate) fn lines(&self) -> u64 {
        self.parser.stats().lines
    }

    /// Flushes the parser: the input, every row not yet pushed, and the source's counters.
    fn drain(self) -> (Input, Vec<RecordBatch>, ParseStats) {
        let Feed {
            mut parser,
            input,
            mut batches,
        } = self;
        parser.flush(&mut |b| batches.push(b));
        (input, batches, parser.take_stats())
    }

    /// Ends this source without ending the input: pushes what is buffered and hands the input
    /// back (for the next source that takes it over), with the source's counters.
    pub(crate) fn release(self) -> Result<(Input, ParseStats)> {
        let (mut input, batches, stats) = self.drain();
        for b in batches {
            input.push(b)?;
        }
        Ok((input, stats))
    }

    /// Ends the run: pushes what is buffered and finishes the input if `fed` (the reading
    /// side's result) is a success, then waits for the job. A broken stream fails the run
    /// instead of ending it early as if the input were complete.
    pub(crate) fn close(self, fed: Result<()>, started: Started) -> Result<(ParseStats, JobStats)> {
        let (mut input, batches, stats) = self.drain();
        // On failure the input is dropped unfinished here, before the join: the job then stops
        // with an error instead of waiting for more input.
        let fed = fed.and_then(|()| {
            for b in batches {
                input.push(b)?;
            }
            Ok(input.finish()?)
        });
        Ok((stats, settle(fed, started.join())?))
    }
}

/// The outcome of a run from the feeding side's result and the job's: the feeding error wins,
/// unless it is only the `Closed` that the job's own failure caused.
pub(crate) fn settle(fed: Result<()>, joined: Result<JobStats>) -> Result<JobStats> {
    match (fed, joined) {
        (Err(Error::Engine(weir_engine::EngineError::Closed)), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
        (Ok(()), joined) => joined,
    }
}

/// The first malformed examples, as lines for a summary.
pub fn describe_malformed(examples: &[Malformed]) -> Vec<String> {
    examples
        .iter()
        .map(|m| format!("line {}: {}: {:?}", m.line, m.reason, m.text))
        .collect()
}
