//! `weir bench`: the standard throughput suite on generated data, one implementation of each
//! measurement (the binaries of crate weir-bench call these too).
//!
//! ```text
//!  weir gen-like log ──┬─▶ parse alone (in memory, one thread)           ─┐
//!  (seed 7, 100k       ├─▶ engine alone (pre-built u32 rows, p = 1..N)    │  table (lines/s, MB/s,
//!   clients, combined) ├─▶ baseline ◀─alternated─▶ weir replay -p 1..N    ├─▶ × baseline), JSON,
//!                      ├─▶ replay -o file ◀─paired─▶ + --checkpoint-dir   │  SVG of the scaling
//!                      └─▶ Kafka: limit ◀─▶ exactly-once ◀─▶ at-least-once┘
//! ```
//!
//! - **Whole-process timings** (replay, checkpoint cost, the baseline) run the `weir` binary
//!   itself as a child process ([`BenchConfig::weir_exe`], normally `std::env::current_exe`):
//!   `weir replay … -q` and `weir bench --baseline-child FILE` (the [`baseline`] loop). They are
//!   alternated inside each round (the order reversed every other round), so that a burst of
//!   load from elsewhere hits every configuration alike, and the medians are reported. A ratio
//!   is the median of the per-round ratios of paired runs, which holds up on a noisy machine
//!   far better than a ratio of two medians.
//! - **In-process timings** (parse alone, engine alone, Kafka): medians over the rounds.
//! - The yardstick of the "× baseline" column is the baseline's median rate on the same log in
//!   the same command: a single-threaded `memchr` + `HashMap` loop writing the same CSV.
//! - The 1-minute load average is read before and after; above half a run queue entry per core,
//!   a warning says that other processes compete for the cores.

pub mod baseline;
pub mod engine;
pub mod kafka;
pub mod limit;
pub mod parse;
pub mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_io::gen::{generate, generate_vec, GenOptions};
use weir_io::kafka::txn::Delivery;
use weir_io::parse::{Columns, LogFormat, ParseOptions};

/// What `weir bench` runs, and where.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `weir` binary run for whole-process timings.
    pub weir_exe: PathBuf,
    /// Folder for the generated log and the outputs (a fresh subfolder is made and removed).
    pub dir: PathBuf,
    /// Lines of the generated log.
    pub lines: u64,
    /// Distinct clients in it.
    pub clients: u64,
    /// Lines parsed by "parse alone" (from the start of the same kind of log, in memory).
    pub parse_lines: u64,
    /// Rows of the engine-alone runs.
    pub engine_rows: usize,
    /// The engine-alone cases: (distinct keys, pushing inputs).
    pub engine_cases: Vec<(u32, usize)>,
    /// Rounds of every measurement; medians are reported.
    pub rounds: usize,
    /// Parallelisms measured: 1 to this.
    pub max_parallelism: usize,
    /// Checkpoint interval of the checkpoint-cost runs.
    pub checkpoint_interval: Duration,
    /// A Kafka broker, `HOST:PORT`: the Kafka measurements run only with one.
    pub kafka: Option<String>,
    /// Lines loaded into the Kafka input topic.
    pub kafka_lines: u64,
    /// Whether this is the small `--quick` run.
    pub quick: bool,
}

impl BenchConfig {
    /// The standard suite: the README's 10M-line log (`weir gen --lines 10000000 --clients
    /// 100000 --rate 20000 --seed 7`), 5 rounds, parallelism 1 to the number of cores.
    pub fn standard(weir_exe: PathBuf) -> Self {
        Self {
            weir_exe,
            dir: std::env::temp_dir(),
            lines: 10_000_000,
            clients: 100_000,
            parse_lines: 1_000_000,
            engine_rows: 10_000_000,
            engine_cases: vec![(100_000, 1), (1_000_000, 2)],
            rounds: 5,
            max_parallelism: cores(),
            checkpoint_interval: Duration::from_secs(1),
            kafka: None,
            kafka_lines: 1_000_000,
            quick: false,
        }
    }

    /// A run of a second or two that exercises every part (tiny sizes, one round each): to check
    /// that the suite works, not to quote.
    pub fn quick(weir_exe: PathBuf) -> Self {
        Self {
            lines: 20_000,
            clients: 1_000,
            parse_lines: 20_000,
            engine_rows: 50_000,
            engine_cases: vec![(1_000, 1)],
            rounds: 1,
            checkpoint_interval: Duration::from_millis(100),
            kafka_lines: 5_000,
            quick: true,
            ..Self::standard(weir_exe)
        }
    }
}

/// The cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why the suite could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Writing the generated data or a report failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A measured child process failed; its command and the end of its stderr.
    #[error("`{command}` failed ({status}): {stderr}")]
    Child {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// The engine failed in an engine-alone run.
    #[error("engine alone: {0}")]
    Engine(#[from] weir_engine::EngineError),
    /// A Kafka measurement failed (broker unreachable, a run failed).
    #[error("kafka: {0}")]
    Kafka(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `parse`, `engine`, `baseline`, `replay`, `checkpoint` or `kafka`.
    pub group: &'static str,
    /// What was measured, in words.
    pub name: String,
    /// Workers (and parser threads) when it applies.
    pub parallelism: Option<usize>,
    /// Median lines (the engine: rows) per second.
    pub lines_per_sec: f64,
    /// Median input megabytes (10^6) per second, when the input is bytes.
    pub mb_per_sec: Option<f64>,
    /// This row's rate over the baseline's (both medians; for whole-process replays the median
    /// of the per-round paired ratios).
    pub vs_baseline: f64,
    /// Median seconds of one run.
    pub seconds: f64,
    /// Seconds of every run, in order.
    pub runs: Vec<f64>,
    /// What else to know (ratios to other rows).
    pub note: String,
}

/// The Kafka part's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum KafkaOutcome {
    /// Not run; why.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Run: its rows are in [`BenchReport::rows`].
    Measured {
        /// The broker.
        broker: String,
        /// Exactly-once throughput over the limit's (median of per-round ratios).
        exactly_once_vs_limit: f64,
        /// Exactly-once throughput over at-least-once's (median of per-round ratios).
        exactly_once_vs_at_least_once: f64,
    },
}

/// Checkpoint cost: the same replay with and without `--checkpoint-dir`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointCost {
    /// Checkpoint interval, ms.
    pub interval_ms: u64,
    /// Median of the per-round time ratios, checkpointed over plain (1.05: 5 % slower).
    pub slowdown: f64,
}

/// Everything `weir bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `weir --version`.
    pub version: String,
    /// Cores this process may use.
    pub cores: usize,
    /// 1, 5 and 15-minute load averages before the suite (empty where unknown).
    pub load_average_start: Vec<f64>,
    /// The same after it.
    pub load_average_end: Vec<f64>,
    /// Lines of the generated log.
    pub lines: u64,
    /// Its bytes.
    pub bytes: u64,
    /// Its distinct clients.
    pub clients: u64,
    /// Rounds of each measurement.
    pub rounds: usize,
    /// Whether this was `--quick`.
    pub quick: bool,
    /// The table, baseline first.
    pub rows: Vec<Row>,
    /// The checkpoint cost.
    pub checkpoint: CheckpointCost,
    /// The Kafka part.
    pub kafka: KafkaOutcome,
    /// Warnings (a busy machine).
    pub warnings: Vec<String>,
}

/// What the suite tells its progress bar.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The number of steps to come.
    Total(u64),
    /// A step is starting.
    Step(String),
}

/// The 1, 5 and 15-minute load averages (Linux), or nothing.
pub fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A warning when the load average is high for `cores`, else `None`.
pub fn load_warning(load: &[f64], cores: usize, when: &str) -> Option<String> {
    let one = *load.first()?;
    (one > cores as f64 * 0.5).then(|| {
        format!(
            "load average {one:.2} on {cores} cores {when}: other processes compete for the cores, \
             so the absolute rates are noisy; the paired ratios hold up better"
        )
    })
}

/// The median of `v` (the mean of the middle two for an even count); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Runs `command` to its end with stdout discarded; its wall time.
fn time_child(command: &mut Command) -> Result<Duration, BenchError> {
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let out = command.output().map_err(|e| BenchError::Child {
        command: describe(command),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    let took = start.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(BenchError::Child {
            command: describe(command),
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        });
    }
    Ok(took)
}

fn describe(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The generated log's options: the README's big.log at `lines` and `clients`.
fn log_options(lines: u64, clients: u64) -> GenOptions {
    GenOptions {
        lines,
        clients,
        rate: 20_000.0,
        seed: 7,
        ..GenOptions::default()
    }
}

/// Runs the suite. `progress` hears of each step.
pub fn run(cfg: &BenchConfig, progress: &dyn Fn(Progress)) -> Result<BenchReport, BenchError> {
    let cores = cores();
    let maxp = cfg.max_parallelism.max(1);
    let rounds = cfg.rounds.max(1);
    let load_start = load_average();
    let mut warnings: Vec<String> = load_warning(&load_start, cores, "at the start")
        .into_iter()
        .collect();
    let kafka_steps = if cfg.kafka.is_some() {
        2 + 3 * rounds as u64
    } else {
        0
    };
    progress(Progress::Total(
        1 + rounds as u64 * (1 + (cfg.engine_cases.len() * maxp) as u64 + maxp as u64 + 1 + 2)
            + kafka_steps,
    ));

    let tmp = cfg.dir.join(format!("weir-bench-{}", kafka::unique()));
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = run_in(cfg, &tmp, maxp, rounds, progress, &mut warnings);
    let _ = std::fs::remove_dir_all(&tmp);
    let (rows, checkpoint, kafka, bytes) = result?;

    let load_end = load_average();
    warnings.extend(load_warning(&load_end, cores, "at the end"));
    Ok(BenchReport {
        version: crate::VERSION.to_owned(),
        cores,
        load_average_start: load_start,
        load_average_end: load_end,
        lines: cfg.lines,
        bytes,
        clients: cfg.clients,
        rounds,
        quick: cfg.quick,
        rows,
        checkpoint,
        kafka,
        warnings,
    })
}

type Measured = (Vec<Row>, CheckpointCost, KafkaOutcome, u64);

fn run_in(
    cfg: &BenchConfig,
    tmp: &Path,
    maxp: usize,
    rounds: usize,
    progress: &dyn Fn(Progress),
    warnings: &mut Vec<String>,
) -> Result<Measured, BenchError> {
    // The log.
    progress(Progress::Step(format!(
        "generating {} lines",
        crate::units::thousands(cfg.lines)
    )));
    let log = tmp.join("access.log");
    let gen = {
        let f = std::fs::File::create(&log).map_err(io_err(&log))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let s = generate(&log_options(cfg.lines, cfg.clients), &mut w).map_err(io_err(&log))?;
        w.flush().map_err(io_err(&log))?;
        s
    };
    let (lines, bytes) = (gen.lines as f64, gen.bytes as f64);
    let exe = &cfg.weir_exe;

    // Baseline and replay at 1..=maxp, alternated.
    let mut base_runs = Vec::new();
    let mut replay_runs: Vec<Vec<f64>> = vec![Vec::new(); maxp];
    let mut replay_ratios: Vec<Vec<f64>> = vec![Vec::new(); maxp];
    for round in 0..rounds {
        let mut order: Vec<Option<usize>> =
            std::iter::once(None).chain((1..=maxp).map(Some)).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut times = vec![0.0; maxp + 1];
        for which in order {
            let t = match which {
                None => {
                    progress(Progress::Step(format!("round {}: baseline", round + 1)));
                    time_child(
                        Command::new(exe)
                            .args(["bench", "--baseline-child"])
                            .arg(&log),
                    )?
                }
                Some(p) => {
                    progress(Progress::Step(format!(
                        "round {}: replay -p {p}",
                        round + 1
                    )));
                    time_child(&mut replay_command(exe, &log, p))?
                }
            };
            times[which.unwrap_or(0)] = t.as_secs_f64();
        }
        base_runs.push(times[0]);
        for p in 1..=maxp {
            replay_runs[p - 1].push(times[p]);
            replay_ratios[p - 1].push(times[0] / times[p]);
        }
    }
    let base_s = median(&base_runs);
    let base_rate = lines / base_s;
    let mut rows = vec![Row {
        group: "baseline",
        name: "baseline: one thread, memchr + HashMap, same CSV (whole process)".into(),
        parallelism: Some(1),
        lines_per_sec: base_rate,
        mb_per_sec: Some(bytes / base_s / 1e6),
        vs_baseline: 1.0,
        seconds: base_s,
        runs: base_runs,
        note: String::new(),
    }];

    // Parse alone.
    let (parse_log, _) = generate_vec(&log_options(cfg.parse_lines.min(cfg.lines), cfg.clients));
    let opts = ParseOptions::new(LogFormat::Combined).with_columns(Columns::ts_client());
    let mut parse_runs = Vec::new();
    for round in 0..rounds {
        progress(Progress::Step(format!("round {}: parse alone", round + 1)));
        let t = Instant::now();
        let n = parse::parse_all(&parse_log, &opts);
        parse_runs.push(t.elapsed().as_secs_f64());
        std::hint::black_box(n);
    }
    let parse_lines = bytecount_lines(&parse_log) as f64;
    let parse_s = median(&parse_runs);
    rows.push(Row {
        group: "parse",
        name: "parse alone: combined → Arrow (ts, client), one thread, in memory".into(),
        parallelism: Some(1),
        lines_per_sec: parse_lines / parse_s,
        mb_per_sec: Some(parse_log.len() as f64 / parse_s / 1e6),
        vs_baseline: parse_lines / parse_s / base_rate,
        seconds: parse_s,
        runs: parse_runs,
        note: format!(
            "{} lines, {:.0} MB",
            crate::units::thousands(parse_lines as u64),
            parse_log.len() as f64 / 1e6
        ),
    });
    drop(parse_log);

    // Engine alone.
    for &(keys, inputs) in &cfg.engine_cases {
        let batches = engine::key_batches(cfg.engine_rows, keys, 1_000_000, 8192, 42);
        let mut runs: Vec<Vec<f64>> = vec![Vec::new(); maxp];
        for round in 0..rounds {
            let mut ps: Vec<usize> = (1..=maxp).collect();
            if round % 2 == 1 {
                ps.reverse();
            }
            for p in ps {
                progress(Progress::Step(format!(
                    "round {}: engine alone, {keys} keys, -p {p}",
                    round + 1
                )));
                let (t, _) = engine::run_once(&batches, p, inputs)?;
                runs[p - 1].push(t.as_secs_f64());
            }
        }
        let p1 = cfg.engine_rows as f64 / median(&runs[0]);
        for (i, r) in runs.into_iter().enumerate() {
            let s = median(&r);
            let rate = cfg.engine_rows as f64 / s;
            rows.push(Row {
                group: "engine",
                name: format!(
                    "engine alone: {} rows, {} u32 keys, {inputs} input(s), count() per 5 s",
                    crate::units::thousands(cfg.engine_rows as u64),
                    crate::units::thousands(u64::from(keys))
                ),
                parallelism: Some(i + 1),
                lines_per_sec: rate,
                mb_per_sec: None,
                vs_baseline: rate / base_rate,
                seconds: s,
                runs: r,
                note: if i == 0 {
                    String::new()
                } else {
                    format!("{:.2}× -p 1", rate / p1)
                },
            });
        }
    }

    // Replay rows (measured above, with the baseline).
    for (i, (r, ratios)) in replay_runs.into_iter().zip(replay_ratios).enumerate() {
        let s = median(&r);
        rows.push(Row {
            group: "replay",
            name: "replay end to end: weir replay FILE --output-format csv -o /dev/null".into(),
            parallelism: Some(i + 1),
            lines_per_sec: lines / s,
            mb_per_sec: Some(bytes / s / 1e6),
            vs_baseline: median(&ratios),
            seconds: s,
            runs: r,
            note: format!("-p {0} --parse-threads {0}", i + 1),
        });
    }

    // Checkpoint cost: to a file, with and without --checkpoint-dir, paired.
    let (mut plain_runs, mut ck_runs, mut slow) = (Vec::new(), Vec::new(), Vec::new());
    let out = tmp.join("out.csv");
    let ck = tmp.join("ck");
    let interval = format!("{}ms", cfg.checkpoint_interval.as_millis());
    for round in 0..rounds {
        let mut pair = [false, true];
        if round % 2 == 1 {
            pair.reverse();
        }
        let mut times = [0.0; 2];
        for checkpointed in pair {
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_dir_all(&ck);
            let mut c = Command::new(exe);
            c.arg("replay")
                .arg(&log)
                .args(["--output-format", "csv", "-q", "-p"]);
            c.arg(maxp.to_string()).arg("-o").arg(&out);
            if checkpointed {
                progress(Progress::Step(format!(
                    "round {}: replay --checkpoint-dir",
                    round + 1
                )));
                c.arg("--checkpoint-dir")
                    .arg(&ck)
                    .args(["--checkpoint-interval", &interval]);
            } else {
                progress(Progress::Step(format!(
                    "round {}: replay -o FILE",
                    round + 1
                )));
            }
            times[usize::from(checkpointed)] = time_child(&mut c)?.as_secs_f64();
        }
        plain_runs.push(times[0]);
        ck_runs.push(times[1]);
        slow.push(times[1] / times[0]);
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&ck);
    let slowdown = median(&slow);
    let (plain_s, ck_s) = (median(&plain_runs), median(&ck_runs));
    rows.push(Row {
        group: "checkpoint",
        name: "replay, CSV to a file (no checkpoints)".into(),
        parallelism: Some(maxp),
        lines_per_sec: lines / plain_s,
        mb_per_sec: Some(bytes / plain_s / 1e6),
        vs_baseline: lines / plain_s / base_rate,
        seconds: plain_s,
        runs: plain_runs,
        note: String::new(),
    });
    rows.push(Row {
        group: "checkpoint",
        name: format!("same, with --checkpoint-dir (every {interval}, exactly-once output)"),
        parallelism: Some(maxp),
        lines_per_sec: lines / ck_s,
        mb_per_sec: Some(bytes / ck_s / 1e6),
        vs_baseline: lines / ck_s / base_rate,
        seconds: ck_s,
        runs: ck_runs,
        note: format!("{slowdown:.2}× the time without (paired)"),
    });
    let checkpoint = CheckpointCost {
        interval_ms: cfg.checkpoint_interval.as_millis() as u64,
        slowdown,
    };

    let kafka = match &cfg.kafka {
        None => KafkaOutcome::Skipped {
            reason: "no --kafka HOST:PORT (start one with scripts/kafka.sh start)".into(),
        },
        Some(broker) => kafka_part(
            cfg, broker, tmp, maxp, rounds, base_rate, progress, &mut rows,
        )?,
    };
    if cfg.quick {
        warnings.push("--quick: tiny inputs and one round; the numbers check that the suite runs, they measure nothing".into());
    }
    Ok((rows, checkpoint, kafka, gen.bytes))
}

/// Lines in `b` (a last line without a newline counts).
fn bytecount_lines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count() + usize::from(b.last().is_some_and(|&c| c != b'\n'))
}

#[allow(clippy::too_many_arguments)]
fn kafka_part(
    cfg: &BenchConfig,
    broker: &str,
    tmp: &Path,
    maxp: usize,
    rounds: usize,
    base_rate: f64,
    progress: &dyn Fn(Progress),
    rows: &mut Vec<Row>,
) -> Result<KafkaOutcome, BenchError> {
    let n = cfg.kafka_lines;
    progress(Progress::Step(format!(
        "loading {} lines into Kafka",
        crate::units::thousands(n)
    )));
    let (log, gen) = generate_vec(&log_options(n, cfg.clients));
    let tag = kafka::unique();
    let input = kafka::url(broker, &format!("bench-in-{tag}"));
    weir_io::kafka::load::load_lines(&log[..], &input, 4, None, &|e| {
        weir_io::Error::io(Path::new("generated log"), e)
    })
    .map_err(|e| BenchError::Kafka(format!("loading {input}: {e}")))?;
    drop(log);
    let mut t: [Vec<f64>; 3] = Default::default();
    let (mut vs_limit, mut vs_alo) = (Vec::new(), Vec::new());
    progress(Progress::Step(
        "Kafka: warming up the limit's consumer".into(),
    ));
    kafka::read_to_end(&input, n).map_err(BenchError::Kafka)?;
    for round in 0..rounds {
        progress(Progress::Step(format!("round {}: Kafka limit", round + 1)));
        let limit = kafka::read_to_end(&input, n).map_err(BenchError::Kafka)?;
        let one = |name: &str, delivery| -> Result<f64, BenchError> {
            progress(Progress::Step(format!("round {}: Kafka {name}", round + 1)));
            let id = format!("{tag}-{round}-{name}");
            let c = kafka::bounded(broker, &input, tmp, &id, delivery, maxp);
            Ok(kafka::time_run(&c, n)
                .map_err(|e| BenchError::Kafka(format!("{name}: {e}")))?
                .as_secs_f64())
        };
        let eo = one("exactly-once", Delivery::ExactlyOnce)?;
        let alo = one("at-least-once", Delivery::AtLeastOnce)?;
        t[0].push(limit.as_secs_f64());
        t[1].push(eo);
        t[2].push(alo);
        vs_limit.push(limit.as_secs_f64() / eo);
        vs_alo.push(alo / eo);
    }
    let (eo_limit, eo_alo) = (median(&vs_limit), median(&vs_alo));
    let names = [
        "Kafka, the limit: a plain consumer reads the input topic (read_committed)".to_owned(),
        format!("Kafka → Kafka exactly-once (weir run, {maxp} workers, 1 s checkpoints)"),
        "same, at-least-once (no transactions)".to_owned(),
    ];
    let notes = [
        format!("{} lines, 4 partitions", crate::units::thousands(n)),
        format!("{eo_limit:.2}× the limit, {eo_alo:.2}× at-least-once (paired)"),
        String::new(),
    ];
    for ((runs, name), note) in t.into_iter().zip(names).zip(notes) {
        let s = median(&runs);
        rows.push(Row {
            group: "kafka",
            name,
            parallelism: None,
            lines_per_sec: n as f64 / s,
            mb_per_sec: Some(gen.bytes as f64 / s / 1e6),
            vs_baseline: n as f64 / s / base_rate,
            seconds: s,
            runs,
            note,
        });
    }
    Ok(KafkaOutcome::Measured {
        broker: broker.to_owned(),
        exactly_once_vs_limit: eo_limit,
        exactly_once_vs_at_least_once: eo_alo,
    })
}

/// `weir replay FILE --output-format csv -o /dev/null -q -p P --parse-threads P`: the end-to-end
/// replay every whole-process measurement times.
pub(crate) fn replay_command(exe: &Path, file: &Path, p: usize) -> Command {
    let mut c = Command::new(exe);
    c.arg("replay").arg(file).args([
        "--output-format",
        "csv",
        "-o",
        "/dev/null",
        "-q",
        "-p",
        &p.to_string(),
        "--parse-threads",
        &p.to_string(),
    ]);
    c
}
