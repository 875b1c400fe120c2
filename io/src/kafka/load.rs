//! Loading a log into a topic: one record per line, spread over the partitions in runs, so
//! every partition holds its lines in file order (and so in event-time order, if the file is).

use std::io::BufRead;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{ensure_topic, KafkaIoError, KafkaUrl};

/// Lines sent to one partition before moving to the next.
const RUN: u64 = 1000;

/// Sends every line of `lines` to `url`'s topic (created with `partitions` partitions if
/// missing; an existing topic keeps its count) with an idempotent producer; returns the lines
/// sent. `read_error` names the input in an I/O error.
pub fn load_lines(
    lines: impl BufRead,
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
    for line in lines.split(b'\n') {
        let line = line.map_err(|e| LoadError::Read(read_error(e)))?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        let partition = ((sent / RUN) % partitions) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(&url.topic)
            .payload(line)
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(KafkaIoError::call(
                        &url.brokers,
                        format!("produce to {}", url.topic),
                        e,
                    )
                    .into())
                }
            }
        }
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
