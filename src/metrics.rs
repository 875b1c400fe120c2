//! What a running weir process shows of itself: Prometheus metrics at `/metrics` and a live
//! status page at `/` on `--metrics-listen ADDR` (`weir run`, `serve` and `replay`).
//!
//! ```text
//!  engine LiveStats (per batch) ───┐
//!  source driver: meter(k) (per run ┤
//!    of lines; Kafka lag per second)┤
//!  coordinator: checkpoint(…) ─────┼──▶ Snapshot::take() ──┬─▶ /metrics (Prometheus text)
//!  Kafka producer: CommitCounts ───┤     (at each request)  └─▶ /status.json ──▶ / (the page)
//!  serve: error(kind, why) ────────┘
//! ```
//!
//! Nothing is counted twice: the engine's own counters ([`LiveStats`]: rows, late rows,
//! watermarks, queues, windows, results) are read at each request, not copied as the job runs.
//! What the engine cannot know (lines and bytes of input, malformed lines, checkpoints written,
//! Kafka lag, errors) is counted here, per run of lines (the source driver's
//! [`Meter`](weir_io::split::Meter) hook), per checkpoint or per event, with relaxed atomics;
//! the Kafka producer's own commit counts ([`CommitCounts`]) are read like the engine's.
//!
//! The registry is process-wide, as the endpoint is: [`listen`] turns it on once, before the
//! run, and every recording function below is a no-op (one branch) while it is off, so drivers
//! call them unconditionally, in one line each. A process runs one job; [`watch_job`] names it.
//!
//! Inputs are labelled by what the user knows them as: the replayed path (`stdin` for `-`; a
//! file's parser threads are engine inputs that share its label: its watermark is their
//! minimum), `conn-K` for `weir serve`'s K-th connection slot (a bounded set, whoever is
//! connected), `TOPIC/P` for a Kafka partition.

mod exposition;
mod server;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use weir_engine::{LiveStats, RunningJob};
use weir_io::kafka::txn::CommitCounts;
use weir_io::split::Counted;

use crate::error::{Error, Result};
use crate::replay::JobOptions;

/// Checkpoints kept for the status page.
const RECENT_CHECKPOINTS: usize = 10;
/// Windows with late rows shown on the status page (the newest).
const RECENT_LATE_WINDOWS: usize = 12;
/// How often a Kafka reader asks the broker for its partition's end (for the lag).
const LAG_EVERY: Duration = Duration::from_secs(1);

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics; see the module doc.
struct Metrics {
    command: String,
    started: Instant,
    job: Mutex<Option<Watched>>,
    /// Input counters by label, in order of first use.
    inputs: Mutex<Vec<(String, Arc<InputCounters>)>>,
    checkpoints: Mutex<Checkpoints>,
    checkpoint_seconds: prometheus_client::metrics::histogram::Histogram,
    commits: Mutex<Option<Arc<CommitCounts>>>,
    errors: Mutex<BTreeMap<String, (u64, String)>>,
}

/// The job being watched.
struct Watched {
    live: Arc<LiveStats>,
    /// The label of each engine input.
    labels: Vec<String>,
    window: Duration,
    keys: Vec<String>,
    parallelism: usize,
}

/// What the drivers count of one labelled input.
#[derive(Debug, Default)]
struct InputCounters {
    lines: AtomicU64,
    bytes: AtomicU64,
    malformed: AtomicU64,
    /// Records between the reader's position and the partition's end (Kafka); -1: unknown.
    consumer_lag: AtomicI64,
    /// When the lag was last asked for, in ns since the process's metrics started.
    lag_asked_ns: AtomicU64,
}

#[derive(Default)]
struct Checkpoints {
    count: u64,
    bytes: u64,
    recent: VecDeque<CheckpointView>,
}

/// Turns metrics on and serves them on `addr` (`/metrics`, `/status.json`, `/`) from a thread
/// of their own, for as long as the process lives; `command` is shown on the status page.
/// Returns the bound address (`addr` may ask for port 0).
pub fn listen(addr: &str, command: String) -> Result<SocketAddr> {
    let buckets = prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16);
    let metrics = Metrics {
        command,
        started: Instant::now(),
        job: Mutex::new(None),
        inputs: Mutex::new(Vec::new()),
        checkpoints: Mutex::new(Checkpoints::default()),
        checkpoint_seconds: prometheus_client::metrics::histogram::Histogram::new(buckets),
        commits: Mutex::new(None),
        errors: Mutex::new(BTreeMap::new()),
    };
    if METRICS.set(metrics).is_err() {
        return Err(Error::usage("metrics are already served by this process"));
    }
    server::spawn(addr)
}

fn metrics() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Shows `job` (computing `opts`) on the metrics; `label(k)` names engine input `k`.
pub fn watch_job(job: &RunningJob, opts: &JobOptions, label: impl Fn(usize) -> String) {
    let Some(m) = metrics() else { return };
    let live = job.live();
    let labels = (0..live.inputs()).map(label).collect();
    *m.job.lock().expect("metrics lock") = Some(Watched {
        live,
        labels,
        window: opts.window,
        keys: opts.keys.clone(),
        parallelism: opts.parallelism,
    });
}

/// The label for a replayed path: the path as given, `stdin` for `-`.
pub fn path_label(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "stdin".into()
    } else {
        path.display().to_string()
    }
}

/// The counters of engine input `k` of the watched job (its label's), for its reading thread.
pub fn meter(k: usize) -> Meter {
    let Some(m) = metrics() else {
        return Meter(None);
    };
    let label = match m.job.lock().expect("metrics lock").as_ref() {
        Some(w) => w
            .labels
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("input-{k}")),
        None => format!("input-{k}"),
    };
    let mut inputs = m.inputs.lock().expect("metrics lock");
    let counters = match inputs.iter().find(|(l, _)| *l == label) {
        Some((_, c)) => Arc::clone(c),
        None => {
            let c = Arc::new(InputCounters {
                consumer_lag: AtomicI64::new(-1),
                ..InputCounters::default()
            });
            inputs.push((label, Arc::clone(&c)));
            c
        }
    };
    Meter(Some(counters))
}

/// What one reading thread counts of its input (nothing while metrics are off).
#[derive(Debug, Clone, Default)]
pub struct Meter(Option<Arc<InputCounters>>);

impl weir_io::split::Meter for InputCounters {
    fn read(&self, counted: Counted, bytes: u64) {
        self.lines.fetch_add(counted.lines, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.malformed
            .fetch_add(counted.malformed, Ordering::Relaxed);
    }
}

impl Meter {
    /// The counters for the source driver ([`weir_io::split::Driver::with_meter`]): it reports
    /// each run of lines it parses.
    pub fn driver(&self) -> Option<&dyn weir_io::split::Meter> {
        self.0.as_deref().map(|c| c as _)
    }

    /// Updates a Kafka partition's consumer lag from `position` (the reader's next offset) and
    /// the partition's end as `end()` fetches it from the broker, at most once per second.
    pub fn consumer_lag(&self, position: i64, end: impl FnOnce() -> Option<i64>) {
        let (Some(c), Some(m)) = (&self.0, metrics()) else {
            return;
        };
        let now = m.started.elapsed().as_nanos() as u64;
        let asked = c.lag_asked_ns.load(Ordering::Relaxed);
        if asked != 0 && now.saturating_sub(asked) < LAG_EVERY.as_nanos() as u64 {
            return;
        }
        c.lag_asked_ns.store(now.max(1), Ordering::Relaxed);
        if let Some(end) = end() {
            c.consumer_lag
                .store((end - position).max(0), Ordering::Relaxed);
        }
    }
}

/// Counts a committed checkpoint: `took` from its barrier's request to its commit, `bytes` of
/// state written, `pause` the longest worker pause to take its snapshot.
pub fn checkpoint(epoch: u64, took: Duration, bytes: u64, pause: Duration) {
    let Some(m) = metrics() else { return };
    m.checkpoint_seconds.observe(took.as_secs_f64());
    let mut c = m.checkpoints.lock().expect("metrics lock");
    c.count += 1;
    c.bytes += bytes;
    if c.recent.len() == RECENT_CHECKPOINTS {
        c.recent.pop_front();
    }
    c.recent.push_back(CheckpointView {
        epoch,
        at_ms: now_ms(),
        seconds: took.as_secs_f64(),
        bytes,
        pause_seconds: pause.as_secs_f64(),
    });
}

/// Shows the Kafka producer's commits of the job's output: transactions (exactly once) or, at
/// least once, offset commits.
pub fn watch_commits(counts: Arc<CommitCounts>) {
    if let Some(m) = metrics() {
        *m.commits.lock().expect("metrics lock") = Some(counts);
    }
}

/// Counts an error of kind `kind` (`connection_bad_input`, `run_failed`, …); `why` is kept as
/// the kind's last message for the status page.
pub fn error(kind: &str, why: &str) {
    if let Some(m) = metrics() {
        let mut e = m.errors.lock().expect("metrics lock");
        let entry = e.entry(kind.to_string()).or_default();
        entry.0 += 1;
        entry.1 = why.chars().take(300).collect();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Everything shown, read at one request: the body of `/status.json`, and what `/metrics`
/// encodes.
#[derive(Debug, Serialize)]
struct Snapshot {
    version: &'static str,
    command: String,
    now_ms: i64,
    uptime_seconds: f64,
    job: Option<JobView>,
    totals: Totals,
    inputs: Vec<InputView>,
    workers: Vec<WorkerView>,
    checkpoints: CheckpointsView,
    late_windows: Vec<LateWindow>,
    transactions: TransactionsView,
    errors: Vec<ErrorView>,
}

#[derive(Debug, Serialize)]
struct JobView {
    window_seconds: f64,
    keys: Vec<String>,
    parallelism: usize,
    inputs: usize,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    lines: u64,
    bytes: u64,
    malformed: u64,
    rows: u64,
    late_rows: u64,
    windows_fired: u64,
    result_rows: u64,
}

#[derive(Debug, Serialize)]
struct InputView {
    name: String,
    lines: u64,
    bytes: u64,
    malformed: u64,
    late_rows: u64,
    /// Event-time watermark, epoch ms (`None` before the first row or while idle).
    watermark_ms: Option<i64>,
    /// Wall clock minus the watermark.
    lag_seconds: Option<f64>,
    /// Kafka: records between the reader and the partition's end.
    consumer_lag: Option<i64>,
}

#[derive(Debug, Serialize)]
struct WorkerView {
    rows: u64,
    watermark_ms: Option<i64>,
    queue_fill: usize,
    queue_capacity: usize,
    stalls: u64,
    blocked_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
struct CheckpointView {
    epoch: u64,
    at_ms: i64,
    seconds: f64,
    bytes: u64,
    pause_seconds: f64,
}

#[derive(Debug, Serialize)]
struct CheckpointsView {
    count: u64,
    bytes: u64,
    recent: Vec<CheckpointView>,
}

#[derive(Debug, Serialize)]
struct LateWindow {
    start_ms: i64,
    rows: u64,
}

#[derive(Debug, Serialize)]
struct TransactionsView {
    committed: u64,
    aborted: u64,
}

#[derive(Debug, Serialize)]
struct ErrorView {
    kind: String,
    count: u64,
    last: String,
}

impl Snapshot {
    fn take(m: &Metrics) -> Snapshot {
        let now_ms = now_ms();
        let job = m.job.lock().expect("metrics lock");
        let counters = m.inputs.lock().expect("metrics lock").clone();
        let mut inputs: Vec<InputView> = counters
            .iter()
            .map(|(name, c)| InputView {
                name: name.clone(),
                lines: c.lines.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                malformed: c.malformed.load(Ordering::Relaxed),
                late_rows: 0,
                watermark_ms: None,
                lag_seconds: None,
                consumer_lag: Some(c.consumer_lag.load(Ordering::Relaxed)).filter(|&l| l >= 0),
            })
            .collect();
        let mut totals = Totals::default();
        for i in &inputs {
            totals.lines += i.lines;
            totals.bytes += i.bytes;
            totals.malformed += i.malformed;
        }
        let mut workers = Vec::new();
        let mut late_windows = Vec::new();
        if let Some(w) = job.as_ref() {
            let live = &w.live;
            // An engine input's late rows and watermark go to its label's row: late rows add
            // up, the watermark is the minimum over the label's inputs that have one.
            for (k, label) in w.labels.iter().enumerate() {
                let late = live.input_late_rows(k);
                let wm = live.input_watermark(k);
                if late == 0 && wm.is_none() && !inputs.iter().any(|i| i.name == *label) {
                    continue;
                }
                let i = match inputs.iter().position(|i| i.name == *label) {
                    Some(i) => i,
                    None => {
                        inputs.push(InputView {
                            name: label.clone(),
                            lines: 0,
                            bytes: 0,
                            malformed: 0,
                            late_rows: 0,
                            watermark_ms: None,
                            lag_seconds: None,
                            consumer_lag: None,
                        });
                        inputs.len() - 1
                    }
                };
                let view = &mut inputs[i];
                view.late_rows += late;
                if let Some(wm) = wm {
                    view.watermark_ms = Some(view.watermark_ms.map_or(wm, |v| v.min(wm)));
                }
            }
            for v in &mut inputs {
                v.lag_seconds = v.watermark_ms.map(|wm| (now_ms - wm) as f64 / 1e3);
            }
            totals.rows = live.rows_in();
            totals.late_rows = live.late_rows();
            totals.windows_fired = live.windows_fired();
            totals.result_rows = live.result_rows();
            workers = (0..live.workers())
                .map(|k| {
                    let (fill, capacity) = live.worker_queue_fill(k);
                    let (stalls, blocked) = live.worker_stalls(k);
                    WorkerView {
                        rows: live.worker_rows(k),
                        watermark_ms: live.worker_watermark(k),
                        queue_fill: fill,
                        queue_capacity: capacity,
                        stalls,
                        blocked_seconds: blocked.as_secs_f64(),
                    }
                })
                .collect();
            let late = live.late_by_window();
            late_windows = late
                .iter()
                .rev()
                .take(RECENT_LATE_WINDOWS)
                .map(|(&start_ms, &rows)| LateWindow { start_ms, rows })
                .collect();
        }
        let c = m.checkpoints.lock().expect("metrics lock");
        Snapshot {
            version: crate::VERSION,
            command: m.command.clone(),
            now_ms,
            uptime_seconds: m.started.elapsed().as_secs_f64(),
            job: job.as_ref().map(|w| JobView {
                window_seconds: w.window.as_secs_f64(),
                keys: w.keys.clone(),
                parallelism: w.parallelism,
                inputs: w.labels.len(),
            }),
            totals,
            inputs,
            workers,
            checkpoints: CheckpointsView {
                count: c.count,
                bytes: c.bytes,
                recent: c.recent.iter().rev().cloned().collect(),
            },
            late_windows,
            transactions: match m.commits.lock().expect("metrics lock").as_ref() {
                Some(c) => TransactionsView {
                    committed: c.committed.load(Ordering::Relaxed),
                    aborted: c.aborted.load(Ordering::Relaxed),
                },
                None => TransactionsView {
                    committed: 0,
                    aborted: 0,
                },
            },
            errors: m
                .errors
                .lock()
                .expect("metrics lock")
                .iter()
                .map(|(kind, (count, last))| ErrorView {
                    kind: kind.clone(),
                    count: *count,
                    last: last.clone(),
                })
                .collect(),
        }
    }
}
