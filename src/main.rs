//! The `weir` command: flags in, pipelines of the `weir` library out. Kept thin on purpose: it
//! parses and validates flags, draws the progress bar and prints the summary; everything else
//! is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use weir::checkpointed::{replay_checkpointed, CheckpointOptions};
use weir::engine::WatermarkStrategy;
use weir::io::gen::{generate, GenOptions};
use weir::io::parse::LogFormat;
use weir::io::sink::OutputFormat;
use weir::replay::{describe_malformed, replay, JobOptions, ParseConfig, ReplayConfig, RunSummary};
use weir::serve::{serve, ServeConfig};
use weir::units::{parse_date, parse_duration, parse_utc_offset};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// weir: count requests per client in event-time windows, fast, on one machine.
#[derive(Parser)]
#[command(name = "weir", version, about, long_about = None, after_help = "\
Examples:
  weir gen --lines 1000000 --clients 10000 --output access.log
  weir replay access.log                      # HH:MM:SS client count, per 5 s window
  weir replay access.log.gz --output-format csv --output counts.csv
  weir serve --listen 127.0.0.1:9999          # then: nc 127.0.0.1 9999 < access.log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay an access log (file, .gz or `-` for stdin) and write per-window counts.
    #[command(after_help = "\
Example:
  weir replay /var/log/nginx/access.log --window 5s --parallelism 2 --output-format csv --output counts.csv

Lines that have no client or no valid [dd/Mon/yyyy:HH:MM:SS +hhmm] timestamp are malformed:
they are counted and the first few are shown with their line numbers (--strict: the first one
is an error). Rows whose window already fired are late: counted, and written to --late-output.")]
    Replay(ReplayArgs),
    /// Listen on a TCP socket for log lines (like Flink's socketTextStream) and write counts as
    /// windows close.
    #[command(after_help = "\
Example:
  weir serve --listen 127.0.0.1:9999 --format simple
  printf '12:00:01 10.0.0.1\\n12:00:07 10.0.0.2\\n' | nc -q1 127.0.0.1 9999")]
    Serve(ServeArgs),
    /// Write a deterministic synthetic access log (Zipf-like clients, some IPv6).
    #[command(after_help = "\
Example:
  weir gen --lines 10000000 --clients 100000 --rate 50000 --seed 7 --output big.log")]
    Gen(GenArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Auto,
    Combined,
    Common,
    Simple,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenFormatArg {
    Combined,
    Common,
    Simple,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormatArg {
    Print,
    Csv,
    Jsonl,
    Arrow,
}

/// Flags shared by `replay` and `serve`.
#[derive(Args)]
struct JobArgs {
    /// Log format; `auto` detects it from the first lines.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Date of the `simple` format's HH:MM:SS times (YYYY-MM-DD, UTC); default today.
    #[arg(long, value_parser = parse_date)]
    date: Option<i32>,
    /// Tumbling window size (500ms, 5s, 1m, …).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    window: Duration,
    /// Key column(s), comma separated: client, method, path, status, bytes, referer, user_agent.
    #[arg(long, default_value = "client", value_delimiter = ',')]
    key: Vec<String>,
    /// Partition workers (threads pinned to cores when there are enough cores).
    #[arg(long, short = 'p', default_value_t = 1)]
    parallelism: usize,
    /// Allow timestamps this far out of order (0: ascending; later rows behind a fired window
    /// are late).
    #[arg(long, value_parser = parse_duration)]
    max_out_of_orderness: Option<Duration>,
    /// Write results here instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Results format: print (HH:MM:SS client count), csv, jsonl, arrow (IPC file).
    #[arg(long, value_enum, default_value = "print")]
    output_format: OutputFormatArg,
    /// Write rows that arrived after their window fired to this CSV file.
    #[arg(long)]
    late_output: Option<PathBuf>,
    /// Fail on the first malformed line instead of counting it.
    #[arg(long)]
    strict: bool,
    /// Show the print format's times at this UTC offset (+02:00, -0700); default UTC.
    #[arg(long, value_parser = parse_utc_offset, allow_hyphen_values = true)]
    tz: Option<i32>,
    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args)]
struct ReplayArgs {
    /// The log file (`.gz` is decompressed), or `-` for stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// Parser threads for a plain file (default: one per core).
    #[arg(long)]
    parse_threads: Option<usize>,
    /// Take barrier checkpoints into this folder, resume from its newest valid checkpoint of
    /// the same job, and write --output exactly once (it appears whole at the end).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkpoint_interval: Duration,
    /// Ignore existing checkpoints in --checkpoint-dir and start over.
    #[arg(long)]
    fresh: bool,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// Chunk size for parallel parsing and checkpoint positions (bytes).
    #[arg(long, hide = true)]
    chunk_bytes: Option<usize>,
    /// Test hook: sleep this long after each chunk, so crash tests can kill a run mid-way.
    #[arg(long, hide = true, value_parser = parse_duration)]
    test_chunk_delay: Option<Duration>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: String,
    /// Stop after the first connection closes (every window fires) instead of serving forever.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(Args)]
struct GenArgs {
    /// Number of lines.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Number of distinct clients.
    #[arg(long, default_value_t = 10_000)]
    clients: u64,
    /// Lines per second of event time.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Random seed (same seed, same file).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Line format.
    #[arg(long, value_enum, default_value = "combined")]
    format: GenFormatArg,
    /// Largest step back in time between lines (0: in order).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    out_of_order: Duration,
    /// Fraction of malformed lines (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    malformed: f64,
    /// Event time of the first line, in epoch milliseconds (default 2024-05-12 00:00:00 UTC).
    /// The simple format has no date: keep its lines within one day.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Write here instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

fn log_format(f: FormatArg) -> Option<LogFormat> {
    match f {
        FormatArg::Auto => None,
        FormatArg::Combined => Some(LogFormat::Combined),
        FormatArg::Common => Some(LogFormat::Common),
        FormatArg::Simple => Some(LogFormat::Simple),
    }
}

impl JobArgs {
    fn parse_config(&self) -> ParseConfig {
        let mut p = ParseConfig {
            format: log_format(self.format),
            strict: self.strict,
            ..ParseConfig::default()
        };
        if let Some(d) = self.date {
            p.simple_date_days = d;
        }
        p
    }

    fn job_options(&self) -> Result<JobOptions, weir::Error> {
        if self.parallelism == 0 {
            return Err(weir::Error::Usage(
                "--parallelism must be at least 1".into(),
            ));
        }
        Ok(JobOptions {
            window: self.window,
            keys: self.key.clone(),
            parallelism: self.parallelism,
            watermark: match self.max_out_of_orderness {
                None => WatermarkStrategy::Ascending,
                Some(d) => WatermarkStrategy::bounded(d),
            },
            output: self.output.clone(),
            output_format: match self.output_format {
                OutputFormatArg::Print => OutputFormat::Print,
                OutputFormatArg::Csv => OutputFormat::Csv,
                OutputFormatArg::Jsonl => OutputFormat::Jsonl,
                OutputFormatArg::Arrow => OutputFormat::Arrow,
            },
            late_output: self.late_output.clone(),
            utc_offset_secs: self.tz.unwrap_or(0),
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => run_replay(a),
        Command::Serve(a) => run_serve(a),
        Command::Gen(a) => run_gen(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS, // `weir replay … | head`
        Err(e) => {
            // Every message already includes its cause; no chain to print.
            eprintln!("weir: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Whether the error comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &weir::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn run_replay(a: ReplayArgs) -> Result<(), weir::Error> {
    let mut cfg = ReplayConfig::new(a.input.clone());
    cfg.parse = a.job.parse_config();
    cfg.job = a.job.job_options()?;
    if let Some(t) = a.parse_threads {
        cfg.parse_threads = t.max(1);
    }
    if let Some(c) = a.chunk_bytes {
        cfg.chunk_bytes = c.max(1);
    }
    cfg.chunk_delay = a.test_chunk_delay.unwrap_or_default();
    let bar = (!a.job.quiet && std::io::stderr().is_terminal()).then(|| progress_bar(&a.input));
    if let Some(bar) = &bar {
        let bar = bar.clone();
        cfg.progress = Some(Arc::new(move |n| bar.inc(n)));
    }
    let quiet = a.job.quiet;
    let (summary, checkpoints) = match &a.checkpoint_dir {
        Some(dir) => {
            let ck = CheckpointOptions {
                dir: dir.clone(),
                interval: a.checkpoint_interval,
                fresh: a.fresh,
                keep: a.keep_checkpoints,
            };
            let say = |m: &str| {
                if !quiet {
                    eprintln!("weir: {m}");
                }
            };
            match replay_checkpointed(&cfg, &ck, &say) {
                Ok((s, c)) => (Ok(s), Some(c)),
                Err(e) => (Err(e), None),
            }
        }
        None => (replay(&cfg), None),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = summary?;
    if !quiet {
        print_summary(&summary, &cfg.job);
        if let Some(c) = checkpoints {
            eprintln!(
                "weir: {} checkpoints (mean {:.1} ms, max {:.1} ms, {} of state written); worker pause at barriers mean {:.1} µs, max {:.1} µs{}",
                c.committed,
                c.mean.as_secs_f64() * 1e3,
                c.max.as_secs_f64() * 1e3,
                human_bytes(c.bytes),
                summary.job.snapshot_pause_total.as_secs_f64() * 1e6 / summary.job.snapshots.max(1) as f64,
                summary.job.snapshot_pause_max.as_secs_f64() * 1e6,
                c.resumed_from.map_or(String::new(), |e| format!("; resumed from checkpoint {e}")),
            );
        }
    }
    Ok(())
}

fn progress_bar(input: &std::path::Path) -> indicatif::ProgressBar {
    let len = std::fs::metadata(input)
        .map(|m| m.len())
        .ok()
        .filter(|_| input.as_os_str() != "-");
    let bar = match len {
        Some(len) => indicatif::ProgressBar::new(len).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template"),
        ),
        None => indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {binary_bytes} read, {binary_bytes_per_sec}")
                .expect("valid template"),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn run_serve(a: ServeArgs) -> Result<(), weir::Error> {
    let cfg = ServeConfig {
        listen: a.listen.clone(),
        parse: a.job.parse_config(),
        job: a.job.job_options()?,
        once: a.once,
    };
    let quiet = a.job.quiet;
    let summary = serve(&cfg, |addr| {
        if !quiet {
            eprintln!("weir: listening on {addr}");
        }
    })?;
    if !quiet {
        print_summary(&summary, &cfg.job);
    }
    Ok(())
}

fn run_gen(a: GenArgs) -> Result<(), weir::Error> {
    if !(0.0..=1.0).contains(&a.malformed) {
        return Err(weir::Error::Usage(
            "--malformed must be between 0 and 1".into(),
        ));
    }
    if a.rate <= 0.0 || !a.rate.is_finite() {
        return Err(weir::Error::Usage(
            "--rate must be a positive number".into(),
        ));
    }
    let opts = GenOptions {
        lines: a.lines,
        clients: a.clients.max(1),
        rate: a.rate,
        seed: a.seed,
        format: match a.format {
            GenFormatArg::Combined => LogFormat::Combined,
            GenFormatArg::Common => LogFormat::Common,
            GenFormatArg::Simple => LogFormat::Simple,
        },
        out_of_order_ms: a.out_of_order.as_millis() as u64,
        malformed: a.malformed,
        ..GenOptions::default()
    };
    let opts = GenOptions {
        start_ms: a.start_ms.unwrap_or(opts.start_ms),
        ..opts
    };
    let path = a.output.clone().unwrap_or_else(|| "-".into());
    let io_err = |e| weir::Error::Io(weir::io::Error::io(&path, e));
    match &a.output {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(io_err)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            generate(&opts, &mut w).map_err(io_err)?;
            std::io::Write::flush(&mut w).map_err(io_err)?;
        }
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            generate(&opts, &mut w).map_err(io_err)?;
            std::io::Write::flush(&mut w).map_err(io_err)?;
        }
    }
    Ok(())
}

fn print_summary(s: &RunSummary, job: &JobOptions) {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let p = &s.parse;
    eprintln!(
        "weir: {} lines ({}, {}) in {:.2} s: {} lines/s, {:.1} MB/s",
        group(p.lines),
        human_bytes(p.bytes),
        s.format.name(),
        secs,
        group((p.lines as f64 / secs) as u64),
        p.bytes as f64 / secs / 1e6
    );
    let pinned: Vec<String> = s
        .job
        .worker_cores
        .iter()
        .flatten()
        .map(|c| c.to_string())
        .collect();
    let pinning = if pinned.len() == job.parallelism {
        format!("pinned to cores {}", pinned.join(", "))
    } else {
        "not pinned: fewer cores than workers".to_string()
    };
    eprintln!(
        "weir: {} counted, {} malformed, {} late; {} windows, {} result rows; parallelism {} ({pinning})",
        group(p.rows),
        group(p.malformed),
        group(s.job.late_rows),
        group(s.job.windows_fired),
        group(s.job.result_rows),
        job.parallelism,
    );
    if !p.examples.is_empty() {
        eprintln!("weir: first malformed lines:");
        for l in describe_malformed(&p.examples) {
            eprintln!("  {l}");
        }
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
