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
use weir::engine::{
    WatermarkStrategy, DEFAULT_KEY_GROUPS, MAX_INPUTS, MAX_KEY_GROUPS, MAX_PARALLELISM,
};
use weir::io::gen::{generate, GenOptions};
use weir::io::kafka::load::{load_lines, LoadError};
use weir::io::kafka::records::ValueFormat;
use weir::io::kafka::txn::Delivery;
use weir::io::kafka::KafkaUrl;
use weir::io::output::OutputFile;
use weir::io::parse::LogFormat;
use weir::io::sink::OutputFormat;
use weir::kafka_run::source::Source;
use weir::kafka_run::{self, KafkaRunConfig};
use weir::replay::{describe_malformed, replay, JobOptions, ParseConfig, ReplayConfig, RunSummary};
use weir::serve::{serve, ServeConfig};
use weir::stop::Stop;
use weir::units::{parse_date, parse_duration, parse_utc_offset, thousands};
use weir::verify::{verify, VerifyConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// weir: count requests per client in event-time windows, fast, on one machine.
#[derive(Parser)]
#[command(name = "weir", version = weir::VERSION, about, long_about = None, after_help = "\
Examples:
  weir gen --lines 1000000 --clients 10000 --output access.log
  weir replay access.log                      # HH:MM:SS client count, per 5 s window
  weir replay access.log.gz --output-format csv --output counts.csv
  weir serve --listen 127.0.0.1:9999          # then: nc 127.0.0.1 9999 < access.log
  weir bench --json bench.json --plot scaling.svg")]
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
  printf '12:00:01 10.0.0.1\\n12:00:07 10.0.0.2\\n' | nc -q1 127.0.0.1 9999

Connections are read at once, each with its own watermark and format (detected from its first
lines unless --format is given); one that sends bad input is told why and closed, the server
goes on. SIGINT or SIGTERM stops it: every window is written, then the summary; a second one
exits at once.")]
    Serve(ServeArgs),
    /// Run the job from a Kafka topic to a Kafka topic, exactly once (transactions and barrier
    /// checkpoints).
    #[command(after_help = "\
Example:
  scripts/kafka.sh start
  weir produce access.log --to kafka://127.0.0.1:9092/access --partitions 4
  weir run --from kafka://127.0.0.1:9092/access --to kafka://127.0.0.1:9092/counts \\
      --checkpoint-dir ckpt --stop-at-end
  weir verify --input kafka://127.0.0.1:9092/access --output kafka://127.0.0.1:9092/counts

Each output record: key = client, value = {\"window_start\":…,\"window_end\":…,\"client\":…,\"count\":…}.
A crash (even kill -9) loses and duplicates nothing: restart
the same command. A second run with the same --transactional-id fences the first.")]
    Run(RunArgs),
    /// Load an access log into a Kafka topic, one record per line (creating the topic).
    #[command(after_help = "\
Example:
  weir produce access.log --to kafka://127.0.0.1:9092/access --partitions 4")]
    Produce(ProduceArgs),
    /// Write a deterministic synthetic access log (Zipf-like clients, some IPv6).
    #[command(after_help = "\
Example:
  weir gen --lines 10000000 --clients 100000 --rate 50000 --seed 7 --output big.log")]
    Gen(GenArgs),
    /// Check a pipeline's committed output against its input: recompute every window and report
    /// missing, duplicated and wrong rows (exit status 0: clean, 1: differences, 2: could not
    /// check).
    Verify(VerifyArgs),
    /// Measure weir on generated data: parsing alone, the engine alone, replay end to end at
    /// parallelism 1 to the number of cores, checkpoint cost, and Kafka with --kafka; print a
    /// table of lines/s, MB/s and the ratio to a single-threaded memchr + HashMap baseline.
    #[command(after_help = "\
Examples:
  weir bench                                  # the standard suite: 10M lines, 5 rounds
  weir bench --quick                          # a second or two: does everything work?
  weir bench --kafka 127.0.0.1:9092 --json bench.json --plot scaling.svg

Whole-process timings (replay, checkpoints, the baseline) run this binary as child processes,
alternated round by round; medians are reported, and ratios are medians of paired runs. A
warning is printed when the load average says other processes compete for the cores.")]
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Lines of the generated log (combined format, seed 7: `weir gen --rate 20000 --seed 7`).
    #[arg(long, default_value_t = 10_000_000)]
    lines: u64,
    /// Distinct clients in the generated log.
    #[arg(long, default_value_t = 100_000)]
    clients: u64,
    /// Rounds of each measurement (medians are reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Highest parallelism measured, from 1.
    #[arg(long, value_name = "P", help = with_cores("Highest parallelism measured, from 1"))]
    max_parallelism: Option<usize>,
    /// Also measure Kafka → Kafka (exactly-once, at-least-once, the consumer-only limit) on
    /// this broker, HOST:PORT (`scripts/kafka.sh start`: 127.0.0.1:9092).
    #[arg(long, value_name = "HOST:PORT")]
    kafka: Option<String>,
    /// Lines loaded into the Kafka input topic.
    #[arg(long, default_value_t = 1_000_000)]
    kafka_lines: u64,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG chart of replay lines/s by parallelism to this file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Folder for the generated log and outputs (a subfolder, removed at the end); default the
    /// system's temporary folder.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A tiny run of every measurement (a second or two): checks the suite, measures nothing.
    #[arg(long)]
    quick: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Instead of the suite: how close `weir replay FILE` comes to reading FILE (`wc -l`),
    /// `-p` the highest parallelism against `-p 1`, peak anonymous memory, and the read floor
    /// (threads that only find the newlines of the mapped file); paired whole-process runs.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The baseline's child process: count FILE with the baseline loop, CSV to stdout.
    #[arg(long, hide = true, value_name = "FILE")]
    baseline_child: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenFormatArg {
    Combined,
    Common,
    Simple,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    format: InputFormat,
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
    #[arg(long, short = 'p', default_value_t = cores(), hide_default_value = true,
          help = with_cores("Partition workers (threads pinned to cores when there are enough cores)"))]
    parallelism: usize,
    /// Key groups (max parallelism): keys hash into this many groups, each worker owns a range
    /// of them. Fixed at a checkpointed job's first start: its checkpoints resume at any -p up
    /// to it, and a resume with another value is refused.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEY_GROUPS)]
    key_groups: usize,
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
    /// Longest line accepted, in bytes; a longer one is counted as malformed (over-long) and
    /// skipped without being held in memory whole.
    #[arg(long, default_value_t = weir::io::parse::DEFAULT_MAX_LINE_BYTES, value_name = "BYTES")]
    max_line_bytes: usize,
    /// Show the print format's times at this UTC offset (+02:00, -0700); default UTC.
    #[arg(long, value_parser = parse_utc_offset, allow_hyphen_values = true)]
    tz: Option<i32>,
    /// No progress bar and no summary.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics and a live status page at http://ADDR/
    /// while the job runs (e.g. 127.0.0.1:9898; port 0 picks a free one, said on stderr).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[derive(Args)]
struct ReplayArgs {
    /// The log file (`.gz` is decompressed), or `-` for stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// Parser threads for a plain file (gzip, stdin and pipes: one).
    #[arg(long, help = with_cores("Parser threads for a plain file (gzip, stdin and pipes: one)"))]
    parse_threads: Option<usize>,
    /// Take barrier checkpoints into this folder, resume from its newest valid checkpoint of
    /// the same job, and write --output exactly once (it appears whole at the end). A resumed
    /// run may use another -p (up to --key-groups): the key groups move to the new workers.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkpoint_interval: Duration,
    /// Send the results to a Kafka topic, kafka://HOST:PORT/TOPIC, exactly once (needs
    /// --checkpoint-dir; the records are those of `weir run`).
    #[arg(long)]
    to: Option<KafkaUrl>,
    /// Start over: delete the checkpoints and output parts in --checkpoint-dir and replay from
    /// the first line (not with --to: Kafka keeps what a job committed).
    #[arg(long)]
    fresh: bool,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// Chunk size for parallel parsing and checkpoint positions (bytes).
    #[arg(long, hide = true)]
    chunk_bytes: Option<usize>,
    /// Test hook: sleep this long after each chunk (with --to: after each 16 KiB read), so
    /// crash tests can kill a run mid-way.
    #[arg(long, hide = true, value_parser = parse_duration)]
    test_chunk_delay: Option<Duration>,
}

#[derive(Args)]
struct RunArgs {
    /// The input topic, kafka://HOST:PORT/TOPIC: one access-log line per record.
    #[arg(long)]
    from: KafkaUrl,
    /// The output topic, kafka://HOST:PORT/TOPIC (created if missing).
    #[arg(long)]
    to: KafkaUrl,
    /// Checkpoints of the job's state; the job's lock.
    #[arg(long)]
    checkpoint_dir: PathBuf,
    /// Consumer group holding the job's progress and input offsets (default: derived from
    /// --from and --to).
    #[arg(long)]
    group: Option<String>,
    /// Stable transactional id of the output producer (default: the group).
    #[arg(long)]
    transactional_id: Option<String>,
    /// Time between checkpoints, i.e. between transactions.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    checkpoint_interval: Duration,
    /// Read up to the end offsets found at start, fire every window, commit and exit.
    #[arg(long)]
    stop_at_end: bool,
    /// exactly-once (transactions) or at-least-once (no transactions; a crash may repeat output).
    #[arg(long, default_value = "exactly-once")]
    delivery: Delivery,
    /// Value format of the result records: json or csv.
    #[arg(long, default_value = "json")]
    value_format: ValueFormat,
    /// Partitions of the output topic when weir creates it.
    #[arg(long, default_value_t = 4)]
    output_partitions: usize,
    /// An input partition with nothing new for this long stops holding windows back.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Complete checkpoints to keep.
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,
    /// The producer's transaction.timeout.ms: a transaction left open this long by a run that
    /// stopped answering (paused, partitioned) is aborted by the broker. Default: 10 checkpoint
    /// intervals, at least 60 s; at most the broker's transaction.max.timeout.ms (15 min).
    #[arg(long, value_parser = parse_duration)]
    transaction_timeout: Option<Duration>,
    #[command(flatten)]
    job: JobArgs,
    /// Test hook: pause this long inside the commit window (checkpoint durable, Kafka commit not
    /// yet sent), so crash tests can kill the run there.
    #[arg(long, hide = true, value_parser = parse_duration)]
    test_commit_delay: Option<Duration>,
    /// Test hook: read 16 KiB at a time and pause this long after each read.
    #[arg(long, hide = true, value_parser = parse_duration)]
    test_read_delay: Option<Duration>,
    /// Test hook: the reader of partition p finishes p × this after every reader reached the end.
    #[arg(long, hide = true, value_parser = parse_duration)]
    test_finish_stagger: Option<Duration>,
    /// Run as one member of a job spread over several processes: start the same command, with
    /// the same --group, on every machine (each with its own --checkpoint-dir). The group
    /// shares the input's partitions out; the job's state lives in Kafka.
    #[arg(long, requires = "group")]
    scale_out: bool,
    /// With --scale-out: the input is keyed by client (`weir produce --key-by-client`), so its
    /// partitions are aggregated where they are read, without a shuffle.
    #[arg(long, requires = "scale_out")]
    keyed_input: bool,
    /// With --scale-out: partitions of the job's shuffle topic (GROUP-shuffle) when weir
    /// creates it (default: as many as the input's).
    #[arg(long, requires = "scale_out")]
    shuffle_partitions: Option<usize>,
    /// With --scale-out: how long the group waits for a silent member before it shares out its
    /// partitions (the consumer's session.timeout.ms, at least the broker's minimum, 6 s).
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    session_timeout: Duration,
}

#[derive(Args)]
struct ProduceArgs {
    /// The log file (`.gz` is decompressed), or `-` for stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// The topic, kafka://HOST:PORT/TOPIC.
    #[arg(long)]
    to: KafkaUrl,
    /// Partitions if the topic is created.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Key each record by its client and send it to the partition of that key, so that a
    /// client's lines are all in one partition (an input `weir run --scale-out --keyed-input`
    /// needs no shuffle for). Without it, lines go to the partitions in runs of 1,000.
    #[arg(long)]
    key_by_client: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: String,
    /// Serve the first connection only and stop when it closes (every window fires), instead
    /// of serving until SIGINT/SIGTERM.
    #[arg(long)]
    once: bool,
    /// Connections read at once, each with its own watermark; one more is told "too many
    /// connections" and closed.
    #[arg(long, default_value_t = 64)]
    max_connections: usize,
    /// A connection that sends nothing for this long stops holding windows back.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    read_timeout: Duration,
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
    /// Share of clients with an IPv6 address (0 to 0.995).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.03)]
    ipv6: f64,
    /// Pad valid lines (a `sid=` parameter in the path) to this mean length in bytes; default
    /// no padding (combined lines average about 180 bytes, common ones about 90).
    #[arg(long, value_name = "BYTES")]
    line_bytes: Option<u64>,
    /// Write here instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

impl JobArgs {
    /// Starts serving metrics and the status page if --metrics-listen asks for them, and says
    /// where (even with --quiet: it is what the flag asked for).
    fn serve_metrics(&self) -> Result<(), weir::Error> {
        if let Some(addr) = &self.metrics_listen {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let bound = weir::metrics::listen(addr, command)?;
            eprintln!("weir: metrics on http://{bound}/metrics, status page on http://{bound}/");
        }
        Ok(())
    }

    fn parse_config(&self) -> ParseConfig {
        let mut p = ParseConfig {
            format: self.format.log_format(),
            strict: self.strict,
            max_line_bytes: self.max_line_bytes.max(1),
            ..ParseConfig::default()
        };
        if let Some(d) = self.date {
            p.simple_date_days = d;
        }
        p
    }

    fn job_options(&self) -> Result<JobOptions, weir::Error> {
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(weir::Error::Usage(format!(
                "--parallelism {} is out of range: 1 to {MAX_PARALLELISM} workers (this machine \
                 has {} cores; more workers than cores add queues, not speed)",
                self.parallelism,
                cores()
            )));
        }
        if !(1..=MAX_KEY_GROUPS).contains(&self.key_groups) {
            return Err(weir::Error::Usage(format!(
                "--key-groups {} is out of range: 1 to {MAX_KEY_GROUPS}",
                self.key_groups
            )));
        }
        if self.parallelism > self.key_groups {
            return Err(weir::Error::Usage(format!(
                "--parallelism {} is more than --key-groups {}: each worker owns at least one key \
                 group; raise --key-groups (for a new job) or lower --parallelism",
                self.parallelism, self.key_groups
            )));
        }
        Ok(JobOptions {
            window: self.window,
            keys: self.key.clone(),
            parallelism: self.parallelism,
            key_groups: self.key_groups,
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
        Command::Run(a) => run_kafka(a),
        Command::Produce(a) => run_produce(a),
        Command::Bench(a) => run_bench(a),
        Command::Verify(a) => match verify(&a.config()) {
            Ok(report) => {
                print!("{report}");
                return ExitCode::from(u8::from(!report.is_clean()));
            }
            // diff(1)'s convention: 2 when the check could not be made.
            Err(e) => {
                eprintln!("weir: error: {e}");
                return ExitCode::from(2);
            }
        },
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

fn run_replay(mut a: ReplayArgs) -> Result<(), weir::Error> {
    a.job.serve_metrics()?;
    if let Some(to) = a.to.take() {
        return replay_to_kafka(a, to);
    }
    let mut cfg = ReplayConfig::new(a.input.clone());
    cfg.parse = a.job.parse_config();
    cfg.job = a.job.job_options()?;
    if let Some(t) = a.parse_threads {
        if !(1..=MAX_INPUTS).contains(&t) {
            return Err(weir::Error::Usage(format!(
                "--parse-threads {t} is out of range: 1 to {MAX_INPUTS} (this machine has {} \
                 cores)",
                cores()
            )));
        }
        cfg.parse_threads = t;
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
    let stop = stop_on_signals(if a.checkpoint_dir.is_some() {
        "taking a last checkpoint, then stopping (run the same command again to resume)"
    } else {
        "no more input is read; writing every window"
    });
    cfg.stop = Some(stop.clone());
    let (summary, checkpoints) = match &a.checkpoint_dir {
        Some(dir) => {
            let ck = CheckpointOptions {
                dir: dir.clone(),
                interval: a.checkpoint_interval,
                fresh: a.fresh,
                keep: a.keep_checkpoints,
            };
            match replay_checkpointed(&cfg, &ck, &say_unless(quiet)) {
                Ok((s, c)) => (Ok(s), Some(c)),
                Err(e) => (Err(e), None),
            }
        }
        None => (replay(&cfg), None),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = summary.map_err(|e| e.in_input(&a.input))?;
    if !quiet {
        print_summary(&summary, &cfg.job);
        eprintln!("weir: {}", parser_threads(&a.input, &cfg));
        if let Some(c) = &checkpoints {
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
        if stop.is_requested() {
            let cause = stop.cause();
            match checkpoints.as_ref().and_then(|c| c.stopped_at) {
                Some(n) => eprintln!(
                    "weir: stopped by {cause} at checkpoint {n}, after line {} of {}: run the same command again to resume; {} is written when the run completes",
                    thousands(summary.parse.lines),
                    a.input.display(),
                    cfg.job.output.as_deref().unwrap_or(std::path::Path::new("the output")).display(),
                ),
                None if checkpoints.is_some() => eprintln!(
                    "weir: {cause} came once the input was read: the run completed"
                ),
                None => eprintln!(
                    "weir: stopped by {cause} after {} lines: every window was written; the rest of the input was not read",
                    thousands(summary.parse.lines)
                ),
            }
        }
    }
    Ok(())
}

fn run_kafka(a: RunArgs) -> Result<(), weir::Error> {
    a.job.serve_metrics()?;
    if a.scale_out {
        return run_scale_out(a);
    }
    let mut cfg = KafkaRunConfig::new(Source::Kafka(a.from), a.to, a.checkpoint_dir);
    if a.job.output.is_some() || a.job.output_format != OutputFormatArg::Print {
        return Err(weir::Error::Usage(
            "weir run writes to --to; --output and --output-format are for replay".into(),
        ));
    }
    cfg.parse = a.job.parse_config();
    cfg.job = a.job.job_options()?;
    if let Some(g) = a.group {
        cfg.group = g.clone();
        cfg.transactional_id = g;
    }
    if let Some(t) = a.transactional_id {
        cfg.transactional_id = t;
    }
    cfg.interval = a.checkpoint_interval;
    cfg.stop_at_end = a.stop_at_end;
    cfg.delivery = a.delivery;
    cfg.value_format = a.value_format;
    cfg.output_partitions = a.output_partitions.max(1);
    cfg.idle_timeout = a.idle_timeout;
    cfg.keep = a.keep_checkpoints.max(1);
    if let Some(t) = a.transaction_timeout {
        if t <= cfg.interval {
            return Err(weir::Error::Usage(format!(
                "--transaction-timeout {t:?} must be longer than --checkpoint-interval {:?}: a \
                 transaction stays open for one interval and its commit",
                cfg.interval
            )));
        }
        cfg.transaction_timeout = Some(t);
    }
    cfg.commit_delay = a.test_commit_delay.unwrap_or_default();
    cfg.read_delay = a.test_read_delay.unwrap_or_default();
    cfg.finish_stagger = a.test_finish_stagger.unwrap_or_default();
    run_kafka_job(&cfg, a.job.quiet, false)
}

/// `weir run --scale-out`: one member of a job spread over several processes.
fn run_scale_out(a: RunArgs) -> Result<(), weir::Error> {
    use weir::scale_out::{self, ScaleOutConfig};
    if a.job.output.is_some() || a.job.output_format != OutputFormatArg::Print {
        return Err(weir::Error::Usage(
            "weir run writes to --to; --output and --output-format are for replay".into(),
        ));
    }
    if a.delivery != Delivery::ExactlyOnce || a.transactional_id.is_some() {
        return Err(weir::Error::Usage(
            "--scale-out is exactly-once, with a transactional id per member: leave out \
             --delivery and --transactional-id"
                .into(),
        ));
    }
    let group = a.group.clone().expect("clap requires --group");
    let mut cfg = ScaleOutConfig::new(a.from, a.to, a.checkpoint_dir, &group);
    cfg.parse = a.job.parse_config();
    cfg.job = a.job.job_options()?;
    cfg.interval = a.checkpoint_interval;
    cfg.keyed = a.keyed_input;
    cfg.shuffle_partitions = a.shuffle_partitions;
    cfg.stop_at_end = a.stop_at_end;
    cfg.value_format = a.value_format;
    cfg.output_partitions = a.output_partitions.max(1);
    cfg.session_timeout = a.session_timeout.max(Duration::from_secs(6));
    cfg.transaction_timeout = a
        .transaction_timeout
        .unwrap_or((cfg.interval * 10).max(Duration::from_secs(10)));
    cfg.read_delay = a.test_read_delay.unwrap_or_default();
    cfg.commit_delay = a.test_commit_delay.unwrap_or_default();
    let stop = stop_on_signals("leaving the group: the other members take over");
    cfg.suspend = Some(stop.clone());
    let quiet = a.job.quiet;
    let s = scale_out::run(&cfg, &say_unless(quiet))?;
    if !quiet {
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "weir: this member read {} lines ({} malformed), counted {} rows, wrote {} result \
             records in {} transactions over {} generations in {:.2} s",
            thousands(s.parse.lines),
            thousands(s.parse.malformed),
            thousands(s.rows),
            thousands(s.records),
            thousands(s.commits),
            s.generations,
            secs
        );
        if !s.parse.examples.is_empty() {
            eprintln!("weir: first malformed lines (by offset in their partition):");
        }
        for m in &s.parse.examples {
            eprintln!("  offset {} ({}): {:?}", m.line, m.reason, m.text);
        }
    }
    Ok(())
}

/// `weir replay FILE --to kafka://…`: the file as the one input of an exactly-once Kafka job.
fn replay_to_kafka(a: ReplayArgs, to: KafkaUrl) -> Result<(), weir::Error> {
    let Some(dir) = a.checkpoint_dir.clone() else {
        return Err(weir::Error::Usage(
            "--to kafka://… needs --checkpoint-dir: exactly-once output is tied to checkpoints"
                .into(),
        ));
    };
    if a.job.output.is_some() || a.job.output_format != OutputFormatArg::Print {
        return Err(weir::Error::Usage(
            "--to replaces --output and --output-format".into(),
        ));
    }
    let mut cfg = KafkaRunConfig::new(Source::File(a.input.clone()), to, dir);
    if a.fresh {
        return Err(weir::Error::Usage(format!(
            "--fresh cannot start a Kafka job over. {}",
            kafka_run::start_over(&cfg)
        )));
    }
    cfg.parse = a.job.parse_config();
    cfg.job = a.job.job_options()?;
    cfg.interval = a.checkpoint_interval;
    cfg.keep = a.keep_checkpoints.max(1);
    cfg.stop_at_end = true;
    cfg.read_delay = a.test_chunk_delay.unwrap_or_default();
    run_kafka_job(&cfg, a.job.quiet, true)
}

/// Runs a Kafka-output job, with progress messages and a summary unless `quiet`; `file`: the
/// input is a file (its summary speaks of lines, not partitions).
fn run_kafka_job(cfg: &KafkaRunConfig, quiet: bool, file: bool) -> Result<(), weir::Error> {
    let stop = stop_on_signals(
        "committing a last checkpoint, then stopping (run the same command again to resume)",
    );
    let cfg = KafkaRunConfig {
        suspend: Some(stop.clone()),
        ..cfg.clone()
    };
    let s = kafka_run::run(&cfg, &say_unless(quiet))?;
    if !quiet {
        print_kafka_summary(&s, file);
        match s.stopped_at {
            Some(n) => eprintln!(
                "weir: stopped by {} at epoch {n} (committed): run the same command again to resume",
                stop.cause()
            ),
            None if stop.is_requested() => eprintln!(
                "weir: {} came as the run was ending: it completed",
                stop.cause()
            ),
            None => {}
        }
    }
    Ok(())
}

/// Progress messages on stderr, `weir: …`, unless `quiet`.
fn say_unless(quiet: bool) -> impl Fn(&str) + Sync {
    move |m: &str| {
        if !quiet {
            eprintln!("weir: {m}");
        }
    }
}

fn print_kafka_summary(s: &kafka_run::KafkaRunSummary, file: bool) {
    if s.already_finished {
        return;
    }
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "weir: {} lines read in {:.2} s ({} /s), {} counted, {} malformed, {} late; {} windows, {} result records in {} transactions{}",
        thousands(s.parse.lines),
        secs,
        thousands((s.parse.lines as f64 / secs) as u64),
        thousands(s.parse.rows),
        thousands(s.parse.malformed),
        thousands(s.job.late_rows),
        thousands(s.job.windows_fired),
        thousands(s.records),
        thousands(s.commits),
        if s.resumed_from > 0 { format!("; resumed from epoch {}", s.resumed_from) } else { String::new() },
    );
    if !s.parse.examples.is_empty() {
        eprintln!("weir: first malformed lines:");
    }
    for (m, p) in s.parse.examples.iter().zip(&s.example_partitions) {
        if file {
            eprintln!("  line {} ({}): {:?}", m.line, m.reason, m.text);
        } else {
            eprintln!(
                "  partition {p} offset {} ({}): {:?}",
                m.line, m.reason, m.text
            );
        }
    }
}

fn run_produce(a: ProduceArgs) -> Result<(), weir::Error> {
    let input = a.input.clone();
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        weir::io::source::open_stream(&a.input).map_err(|e| weir::Error::Usage(e.to_string()))?,
    );
    let started = std::time::Instant::now();
    use std::io::Read;
    // The first 64 KiB tell the format (--key-by-client); they are read on from the start.
    let mut head = Vec::new();
    let mut reader = reader;
    if a.key_by_client {
        (&mut reader)
            .take(1 << 16)
            .read_to_end(&mut head)
            .map_err(|e| weir::io::Error::io(&input, e))?;
    }
    let key_by = if a.key_by_client {
        let format = weir::io::parse::detect_format(&head).ok_or_else(|| {
            weir::Error::Usage(format!(
                "{}: --key-by-client cannot tell the log format from the first lines (combined, \
                 common or simple)",
                input.display()
            ))
        })?;
        Some(format)
    } else {
        None
    };
    let reader = std::io::Cursor::new(head).chain(reader);
    let n = load_lines(reader, &a.to, a.partitions.max(1), key_by, &|e| {
        weir::io::Error::io(&input, e)
    })
    .map_err(|e| match e {
        LoadError::Kafka(k) => weir::Error::Kafka(k),
        LoadError::Read(r) => weir::Error::Io(r),
    })?;
    eprintln!(
        "weir: {} lines into {} in {:.2} s",
        thousands(n),
        a.to,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn progress_bar(input: &std::path::Path) -> indicatif::ProgressBar {
    // Only a regular file has a known length; a pipe or a device gets a spinner.
    let len = std::fs::metadata(input)
        .ok()
        .filter(|m| m.is_file() && input.as_os_str() != "-")
        .map(|m| m.len());
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
    a.job.serve_metrics()?;
    let mut cfg = ServeConfig::new(a.listen.clone());
    cfg.parse = a.job.parse_config();
    cfg.job = a.job.job_options()?;
    cfg.once = a.once;
    cfg.max_connections = a.max_connections;
    cfg.idle_timeout = a.idle_timeout;
    cfg.read_timeout = a.read_timeout;
    cfg.stop = Some(stop_on_signals(
        "no new connections; closing the open ones, then writing every window",
    ));
    let quiet = a.job.quiet;
    let summary = serve(&cfg, &say_unless(quiet), |addr| {
        if !quiet {
            eprintln!("weir: listening on {addr}");
        }
    })?;
    if !quiet {
        print_summary(&summary.run, &cfg.job);
        let c = &summary.connections;
        let formats: Vec<String> = summary
            .formats
            .iter()
            .map(|(f, n)| format!("{f} {}", thousands(*n)))
            .collect();
        eprintln!(
            "weir: {} connections: {} closed normally, {} closed for bad input, {} timed out, {} failed; {} refused (over --max-connections {}){}",
            thousands(c.accepted),
            thousands(c.closed),
            thousands(c.bad_input),
            thousands(c.timed_out),
            thousands(c.failed),
            thousands(c.refused),
            cfg.max_connections,
            if formats.is_empty() { String::new() } else { format!("; formats: {}", formats.join(", ")) },
        );
        if !summary.malformed_examples.is_empty() {
            eprintln!("weir: first malformed lines:");
            for l in &summary.malformed_examples {
                eprintln!("  {l}");
            }
        }
        if let Some(cause) = summary.stopped_by {
            eprintln!("weir: stopped by {cause}: every window was written");
        }
    }
    Ok(())
}

/// A stop requested by SIGINT or SIGTERM; `doing` says what the run does then. A second signal
/// exits at once.
fn stop_on_signals(doing: &str) -> Stop {
    let stop = Stop::new();
    if let Err(e) = stop.on_signals(doing) {
        eprintln!("weir: warning: cannot handle SIGINT/SIGTERM ({e}): they end weir at once");
    }
    stop
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
    if !(0.0..=0.995).contains(&a.ipv6) {
        return Err(weir::Error::Usage(
            "--ipv6 must be between 0 and 0.995".into(),
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
        ipv6: a.ipv6,
        line_bytes: a.line_bytes,
        ..GenOptions::default()
    };
    let opts = GenOptions {
        start_ms: a.start_ms.unwrap_or(opts.start_ms),
        ..opts
    };
    let path = a.output.clone().unwrap_or_else(|| "-".into());
    let io_err = |e| weir::Error::Io(weir::io::Error::io(&path, e));
    match &a.output {
        Some(p) if p.as_os_str() != "-" => {
            // Written under a temporary name and renamed into place when complete.
            let out = OutputFile::create(p).map_err(|e| weir::Error::Usage(e.to_string()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, out.handle()?);
            generate(&opts, &mut w).map_err(io_err)?;
            std::io::Write::flush(&mut w).map_err(io_err)?;
            out.commit()?;
        }
        _ => {
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
        thousands(p.lines),
        human_bytes(p.bytes),
        s.format.name(),
        secs,
        thousands((p.lines as f64 / secs) as u64),
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
        thousands(p.rows),
        thousands(p.malformed),
        thousands(s.job.late_rows),
        thousands(s.job.windows_fired),
        thousands(s.job.result_rows),
        job.parallelism,
    );
    if !p.examples.is_empty() {
        eprintln!("weir: first malformed lines:");
        for l in describe_malformed(&p.examples) {
            eprintln!("  {l}");
        }
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A flag's help ending in its default, the number of cores, and what that is here.
fn with_cores(help: &str) -> String {
    format!("{help} [default: the number of cores, {} here]", cores())
}

/// How many parser threads read `input`: up to --parse-threads (one per 1 MiB chunk at most)
/// for a plain, uncompressed file, one for anything read as a stream.
fn parser_threads(input: &std::path::Path, cfg: &ReplayConfig) -> String {
    let plain = std::fs::metadata(input)
        .ok()
        .filter(|m| m.is_file() && input.as_os_str() != "-")
        .filter(|_| {
            let mut first = [0u8; 2];
            let n = std::fs::File::open(input)
                .and_then(|mut f| std::io::Read::read(&mut f, &mut first))
                .unwrap_or(0);
            !weir::io::source::is_gzip(input, &first[..n])
        });
    match plain {
        Some(m) => {
            let chunks = m.len().div_ceil(cfg.chunk_bytes.max(1) as u64).max(1);
            let n = (cfg.parse_threads as u64).clamp(1, chunks);
            format!(
                "{n} parser thread{} (--parse-threads {})",
                if n == 1 { "" } else { "s" },
                cfg.parse_threads
            )
        }
        None => "1 parser thread (a stream is read by one)".to_string(),
    }
}

fn run_bench(a: BenchArgs) -> Result<(), weir::Error> {
    use weir::bench::{self, BenchConfig, Progress};
    if let Some(file) = a.baseline_child {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        bench::baseline::count_file(&file, 5_000, &mut out)
            .map_err(|e| weir::Error::Io(weir::io::Error::io(&file, e)))?;
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(|e| weir::Error::Usage(format!("weir bench: cannot find its own binary: {e}")))?;
    if let Some(file) = &a.file {
        if !file.is_file() {
            return Err(weir::Error::Usage(format!(
                "--file {}: not a regular file",
                file.display()
            )));
        }
        let p = a
            .max_parallelism
            .unwrap_or_else(bench::cores)
            .clamp(1, MAX_PARALLELISM);
        let quiet = a.quiet;
        let report = bench::limit::run(&exe, file, p, a.rounds.max(1), &|m| {
            if !quiet {
                eprintln!("weir bench: {m}");
            }
        })?;
        print!("{}", bench::limit::table(&report));
        return Ok(());
    }
    let mut cfg = if a.quick {
        BenchConfig::quick(exe)
    } else {
        let mut c = BenchConfig::standard(exe);
        c.lines = a.lines;
        c.clients = a.clients.max(1);
        c.rounds = a.rounds.max(1);
        c.kafka_lines = a.kafka_lines.max(1);
        c
    };
    if let Some(p) = a.max_parallelism {
        if !(1..=MAX_PARALLELISM).contains(&p) {
            return Err(weir::Error::Usage(format!(
                "--max-parallelism {p} is out of range: 1 to {MAX_PARALLELISM}"
            )));
        }
        cfg.max_parallelism = p;
    }
    cfg.kafka = a.kafka;
    if let Some(d) = a.dir {
        cfg.dir = d;
    }
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("valid template"),
        )
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = std::sync::atomic::AtomicBool::new(false);
    let report = bench::run(&cfg, &|p| match p {
        Progress::Total(n) => bar.set_length(n),
        Progress::Step(m) => {
            if started.swap(true, std::sync::atomic::Ordering::Relaxed) {
                bar.inc(1);
            }
            bar.set_message(m);
        }
    });
    bar.finish_and_clear();
    let report = report?;
    print!("{}", bench::report::table(&report));
    let write = |path: &PathBuf, text: String| -> Result<(), weir::Error> {
        let out = OutputFile::create(path).map_err(|e| weir::Error::Usage(e.to_string()))?;
        let io_err = |e| weir::Error::Io(weir::io::Error::io(path, e));
        std::io::Write::write_all(&mut out.handle()?, text.as_bytes()).map_err(io_err)?;
        out.commit()?;
        Ok(())
    };
    if let Some(path) = &a.json {
        let json = serde_json::to_string_pretty(&report).expect("a report serialises");
        write(path, json + "\n")?;
    }
    if let Some(path) = &a.plot {
        write(path, bench::report::svg(&report))?;
    }
    Ok(())
}

/// A log format as the command line names it: one of [`LogFormat`], or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum InputFormat {
    /// Detect it from the first lines.
    Auto,
    /// NGINX/Apache combined.
    Combined,
    /// The Common Log Format.
    Common,
    /// The seed's `HH:MM:SS client`.
    Simple,
}

impl InputFormat {
    /// The format, or `None` to detect it from the first lines.
    fn log_format(self) -> Option<LogFormat> {
        match self {
            InputFormat::Auto => None,
            InputFormat::Combined => Some(LogFormat::Combined),
            InputFormat::Common => Some(LogFormat::Common),
            InputFormat::Simple => Some(LogFormat::Simple),
        }
    }
}

/// Check a pipeline's committed output against its input (exit status 0: clean, 1: not, 2:
/// could not check).
///
/// Recomputes the per-client counts of every window from the input, independently of the
/// engine, and reports missing, duplicated, wrong and unexpected output rows.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  weir replay access.log --output-format csv -o counts.csv
  weir verify --input access.log --output counts.csv
  weir verify --input access.log.gz --output counts.jsonl --window 1m --format combined
  weir verify --input kafka://127.0.0.1:9092/access-log --output kafka://127.0.0.1:9092/counts

Every well-formed input line is counted (no lateness); malformed lines are skipped and counted.
The output is a CSV (window_start,window_end,client,count) or JSON-lines file written by
`weir replay --output-format csv|jsonl`, or a Kafka topic written by a weir job (read
read_committed from the beginning to the end offsets at the start of the check).")]
struct VerifyArgs {
    /// The input: an access-log file (`.gz` is decompressed, `-` is stdin) or
    /// kafka://HOST:PORT/TOPIC (every partition, from the beginning to its end offset now; each
    /// message is one line).
    #[arg(long)]
    input: String,
    /// The output to check: a results file written by `weir replay --output-format csv|jsonl`
    /// (told apart by its extension .csv/.jsonl/.json, or a first byte `{`) or
    /// kafka://HOST:PORT/TOPIC.
    #[arg(long)]
    output: String,
    /// The job's tumbling window size (500ms, 5s, 1m, …).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    window: Duration,
    /// Log format of the input; `auto` detects it from the first lines.
    #[arg(long, value_enum, default_value = "auto")]
    format: InputFormat,
    /// Date of the `simple` format's HH:MM:SS times (YYYY-MM-DD, UTC); default today.
    #[arg(long, value_parser = parse_date)]
    date: Option<i32>,
    /// The job's group (its progress on Kafka); default: the one the job derives from --input
    /// and --output.
    #[arg(long, value_name = "ID")]
    group: Option<String>,
    /// Examples of each kind of difference to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    examples: usize,
}

impl VerifyArgs {
    /// The library's plain config.
    fn config(self) -> VerifyConfig {
        VerifyConfig {
            input: self.input,
            output: self.output,
            window: self.window,
            format: self.format.log_format(),
            date: self.date,
            group: self.group,
            examples: self.examples,
        }
    }
}
