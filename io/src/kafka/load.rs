//! Loading a log into a topic: one record per line, spread over the partitions in runs, so
//! every partition holds its lines in file order (and so in event-time order, if the file is).

use std::io::BufRead;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{ensure_topic, send_waiting, KafkaIoError, KafkaUrl};

/// Lines sent to one partition before moving to the next.
const RUN: u64 = 1000;

/// Sends every line of `lines` to `url`'s topic (created with `partitions` partitions if
/// missing; an existing topic keeps its count) with an idempotent producer; returns the lines
/// sent. `read_error` names the input in an I/O error.
pub fn load_lines(
    mut lines: impl BufRead,
    url: &KafkaUrl,
    partitions: usize,
    read_error: &dyn Fn(std::io::Error) -> crate::Error,
) -> std::result::Result<u64, LoadError> {
    let partitions = ensure_topic(url, partitions)? as u64;
    let producer: BaseProducer = url
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .map_err(|e| KafkaIoError::call(&url.brokers, "cannot create a producer", e))?;
    let mut sent = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines
            .read_until(b'\n', &mut line)
            .map_err(|e| LoadError::Read(read_error(e)))?
            == 0
        {
            break;
        }
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.is_empty() {
            continue;
        }
        let partition = ((sent / RUN) % partitions) as i32;
        let record = BaseRecord::<(), [u8]>::to(&url.topic)
            .payload(l)
            .partition(partition);
        send_waiting(&producer, record, &url.brokers)?;
        sent += 1;
        if sent.is_multiple_of(10_000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| KafkaIoError::call(&url.brokers, format!("flush to {}", url.topic), e))?;
    Ok(sent)
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The broker.
    #[error(transparent)]
    Kafka(#[from] KafkaIoError),
    /// The input.
    #[error(transparent)]
    Read(crate::Error),
}
