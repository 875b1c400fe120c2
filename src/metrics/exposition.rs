//! The Prometheus text format of a [`Snapshot`]: every series `weir_`-prefixed, counters with
//! `_total` (the encoder adds it), times in seconds, event times in epoch seconds.
//!
//! | series | labels | from |
//! |---|---|---|
//! | `weir_input_lines_total`, `weir_input_bytes_total`, `weir_input_malformed_total` | `input` | the drivers, per chunk |
//! | `weir_input_late_rows_total`, `weir_input_watermark_seconds`, `weir_input_watermark_lag_seconds` | `input` | the engine's inputs |
//! | `weir_kafka_consumer_lag` | `input` (`TOPIC/P`) | the partition readers, once a second |
//! | `weir_rows_total`, `weir_malformed_lines_total`, `weir_late_rows_total`, `weir_windows_fired_total`, `weir_result_rows_total` | | the engine, the drivers |
//! | `weir_worker_rows_total`, `weir_worker_watermark_seconds`, `weir_worker_queue_fill`, `weir_worker_queue_capacity`, `weir_worker_producer_stalls_total`, `weir_worker_producer_blocked_seconds_total` | `worker` | the engine's workers and queues |
//! | `weir_checkpoints_total`, `weir_checkpoint_duration_seconds` (histogram), `weir_checkpoint_bytes_total`, `weir_checkpoint_last_bytes`, `weir_checkpoint_last_pause_seconds` | | the checkpoint coordinator |
//! | `weir_kafka_transactions_total` | `outcome` (`committed`, `aborted`) | the Kafka sink |
//! | `weir_errors_total` | `kind` | the drivers |
//! | `weir_job_window_seconds`, `weir_job_parallelism`, `weir_uptime_seconds` | | the job |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Metrics, Snapshot};

/// `snapshot` (and the checkpoint histogram of `m`) in the Prometheus text format.
pub(super) fn encode(m: &Metrics, snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register(
        "weir_checkpoint_duration_seconds",
        "Time from a checkpoint's barrier request to its commit",
        m.checkpoint_seconds.clone(),
    );
    registry.register_collector(Box::new(SnapshotSeries(series(snapshot))));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// One metric family: name (without `_total`), help, type, and its samples by labels.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// The families of a snapshot, read once per request.
#[derive(Debug)]
struct SnapshotSeries(Vec<Family>);

impl Collector for SnapshotSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (labels, value) in &f.samples {
                let sample = family.encode_family(labels)?;
                // Whole numbers (counts, bytes) are written as integers: `20000`, not `20000.0`.
                let whole = value.fract() == 0.0 && value.abs() < (1u64 << 53) as f64;
                match (f.kind, whole) {
                    (Kind::Counter, true) => ConstCounter::new(*value as u64).encode(sample)?,
                    (Kind::Counter, false) => ConstCounter::new(*value).encode(sample)?,
                    (Kind::Gauge, true) => ConstGauge::new(*value as i64).encode(sample)?,
                    (Kind::Gauge, false) => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

fn series(s: &Snapshot) -> Vec<Family> {
    let mut out = Vec::new();
    let mut add = |name, help, kind, samples| {
        out.push(Family {
            name,
            help,
            kind,
            samples,
        })
    };
    let one = |v: f64| vec![(Vec::new(), v)];
    let per_input = |f: &dyn Fn(&super::InputView) -> Option<f64>| {
        s.inputs
            .iter()
            .filter_map(|i| f(i).map(|v| (vec![("input", i.name.clone())], v)))
            .collect::<Vec<_>>()
    };
    let per_worker = |f: &dyn Fn(&super::WorkerView) -> Option<f64>| {
        s.workers
            .iter()
            .enumerate()
            .filter_map(|(k, w)| f(w).map(|v| (vec![("worker", k.to_string())], v)))
            .collect::<Vec<_>>()
    };
    use Kind::{Counter, Gauge};
    add(
        "weir_uptime_seconds",
        "Seconds since the metrics started",
        Gauge,
        one(s.uptime_seconds),
    );
    if let Some(j) = &s.job {
        add(
            "weir_job_window_seconds",
            "Tumbling window size",
            Gauge,
            one(j.window_seconds),
        );
        add(
            "weir_job_parallelism",
            "Partition workers",
            Gauge,
            one(j.parallelism as f64),
        );
    }
    add(
        "weir_input_lines",
        "Lines read, by input",
        Counter,
        per_input(&|i| Some(i.lines as f64)),
    );
    add(
        "weir_input_bytes",
        "Bytes read, by input",
        Counter,
        per_input(&|i| Some(i.bytes as f64)),
    );
    add(
        "weir_input_malformed",
        "Malformed lines (counted, not aggregated), by input",
        Counter,
        per_input(&|i| Some(i.malformed as f64)),
    );
    add(
        "weir_input_late_rows",
        "Rows that came after their window fired, by input",
        Counter,
        per_input(&|i| Some(i.late_rows as f64)),
    );
    add(
        "weir_input_watermark_seconds",
        "Event-time watermark of the input, in epoch seconds (absent before its first row and while idle)",
        Gauge,
        per_input(&|i| i.watermark_ms.map(|w| w as f64 / 1e3)),
    );
    add(
        "weir_input_watermark_lag_seconds",
        "Wall-clock time minus the input's watermark",
        Gauge,
        per_input(&|i| i.lag_seconds),
    );
    add(
        "weir_kafka_consumer_lag",
        "Records between a partition reader's position and the partition's end",
        Gauge,
        per_input(&|i| i.consumer_lag.map(|l| l as f64)),
    );
    let t = &s.totals;
    add(
        "weir_rows",
        "Rows pushed into the engine",
        Counter,
        one(t.rows as f64),
    );
    add(
        "weir_malformed_lines",
        "Malformed lines, all inputs",
        Counter,
        one(t.malformed as f64),
    );
    add(
        "weir_late_rows",
        "Late rows, all inputs",
        Counter,
        one(t.late_rows as f64),
    );
    add(
        "weir_windows_fired",
        "Windows that fired",
        Counter,
        one(t.windows_fired as f64),
    );
    add(
        "weir_result_rows",
        "Result rows delivered to the sink",
        Counter,
        one(t.result_rows as f64),
    );
    add(
        "weir_worker_rows",
        "Rows folded (or found late) by the worker",
        Counter,
        per_worker(&|w| Some(w.rows as f64)),
    );
    add(
        "weir_worker_watermark_seconds",
        "The worker's watermark (minimum over its inputs), in epoch seconds",
        Gauge,
        per_worker(&|w| w.watermark_ms.map(|v| v as f64 / 1e3)),
    );
    add(
        "weir_worker_queue_fill",
        "Batches waiting in the worker's input queues",
        Gauge,
        per_worker(&|w| Some(w.queue_fill as f64)),
    );
    add(
        "weir_worker_queue_capacity",
        "Capacity of the worker's input queues, in batches",
        Gauge,
        per_worker(&|w| Some(w.queue_capacity as f64)),
    );
    add(
        "weir_worker_producer_stalls",
        "Sends into the worker that found its queue full (backpressure)",
        Counter,
        per_worker(&|w| Some(w.stalls as f64)),
    );
    add(
        "weir_worker_producer_blocked_seconds",
        "Time producers spent blocked on the worker's full queues",
        Counter,
        per_worker(&|w| Some(w.blocked_seconds)),
    );
    let c = &s.checkpoints;
    add(
        "weir_checkpoints",
        "Checkpoints committed",
        Counter,
        one(c.count as f64),
    );
    add(
        "weir_checkpoint_bytes",
        "Bytes of state written by checkpoints",
        Counter,
        one(c.bytes as f64),
    );
    if let Some(last) = c.recent.first() {
        add(
            "weir_checkpoint_last_bytes",
            "State written by the last checkpoint",
            Gauge,
            one(last.bytes as f64),
        );
        add(
            "weir_checkpoint_last_pause_seconds",
            "Longest worker pause to take the last checkpoint's snapshot",
            Gauge,
            one(last.pause_seconds),
        );
    }
    let tx = &s.transactions;
    add(
        "weir_kafka_transactions",
        "Kafka commits of the output (transactions; offset commits at least once), by outcome",
        Counter,
        vec![
            (
                vec![("outcome", "committed".to_string())],
                tx.committed as f64,
            ),
            (vec![("outcome", "aborted".to_string())], tx.aborted as f64),
        ],
    );
    add(
        "weir_errors",
        "Errors, by kind",
        Counter,
        s.errors
            .iter()
            .map(|e| (vec![("kind", e.kind.clone())], e.count as f64))
            .collect(),
    );
    out
}
