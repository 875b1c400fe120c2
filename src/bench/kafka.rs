//! Kafka → Kafka throughput on a running broker: a bounded `weir run` (`stop_at_end`, 1 s
//! checkpoints) with exactly-once delivery, the same job at-least-once (same checkpoints, no
//! transactions), and **the limit**: a plain librdkafka consumer (`read_committed`, the fetch
//! settings of weir's partition readers) that reads the same input topic to its end and
//! discards the records. The three alternate round after round in one process, so all see the
//! same machine; each run gets a fresh output topic, group and checkpoint folder.
//!
//! `weir bench --kafka HOST:PORT` runs these; `kafka_pipeline` of crate weir-bench adds peak
//! memory and end-to-end latency on top of the same pieces.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use weir_io::kafka::txn::Delivery;
use weir_io::kafka::{client_config, KafkaUrl};

use crate::kafka_run::source::Source;
use crate::kafka_run::{run, KafkaRunConfig};

/// A topic on `broker`.
pub fn url(broker: &str, topic: &str) -> KafkaUrl {
    KafkaUrl {
        brokers: broker.to_owned(),
        topic: topic.to_owned(),
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A name part no earlier run used: this process and the time.
pub fn unique() -> String {
    format!("{}-{}", std::process::id(), now_ms())
}

/// A bounded run of `input` at `parallelism` with 1 s checkpoints into a fresh output topic,
/// with group, transactional id and checkpoint folder (under `tmp`) named after `id`.
pub fn bounded(
    broker: &str,
    input: &KafkaUrl,
    tmp: &Path,
    id: &str,
    delivery: Delivery,
    parallelism: usize,
) -> KafkaRunConfig {
    let id = format!("bench-{id}");
    let mut cfg = KafkaRunConfig::new(
        Source::Kafka(input.clone()),
        url(broker, &format!("{id}-out")),
        tmp.join(&id),
    );
    cfg.group = id.clone();
    cfg.transactional_id = id;
    cfg.delivery = delivery;
    cfg.stop_at_end = true;
    cfg.job.parallelism = parallelism;
    cfg.interval = Duration::from_secs(1);
    cfg
}

/// One bounded run of `cfg`; its wall time (from the run's start to its last commit), checking
/// that it read `lines` lines.
pub fn time_run(cfg: &KafkaRunConfig, lines: u64) -> Result<Duration, String> {
    let s = run(cfg, &|_| {}).map_err(|e| e.to_string())?;
    if s.parse.lines != lines {
        return Err(format!(
            "the run read {} lines of the {lines} in its input",
            s.parse.lines
        ));
    }
    Ok(s.elapsed)
}

/// The limit: a plain consumer reads every partition of `input` to its end (`read_committed`,
/// records discarded); returns the time from its creation to the last of `lines` records, as a
/// run's time counts from its start.
pub fn read_to_end(input: &KafkaUrl, lines: u64) -> Result<Duration, String> {
    let t = Instant::now();
    let c: BaseConsumer = client_config(&input.brokers)
        .set("group.id", format!("bench-limit-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        .set("queued.min.messages", "200000")
        .create()
        .map_err(|e| format!("{}: {e}", input.brokers))?;
    let md = c
        .fetch_metadata(Some(&input.topic), Duration::from_secs(10))
        .map_err(|e| format!("{input}: {e}"))?;
    let partitions = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&input.topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let (mut n, mut bytes) = (0u64, 0usize);
    while n < lines {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => return Err(format!("the limit's consumer: {e}")),
            None => {
                return Err(format!(
                    "the limit's consumer: nothing for 10 s at {n} of {lines} records"
                ))
            }
        }
    }
    std::hint::black_box(bytes);
    Ok(t.elapsed())
}
