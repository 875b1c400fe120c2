//! Loading a log into a topic: one record per line, spread over the partitions in runs, so
//! every partition holds its lines in file order (and so in event-time order, if the file is).

use std::io::BufRead;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use xxhash_rust::xxh3::xxh3_64;

use crate::parse::LogFormat;

use super::{ensure_topic, send_waiting, KafkaIoError, KafkaUrl};

/// Lines sent to one partition before moving to the next.
const RUN: u64 = 1000;

/// Sends every line of `lines` to `url`'s topic (created with `partitions` partitions if
/// missing; an existing topic keeps its count) with an idempotent producer; returns the lines
/// sent. With `key_by_client`, the lines' format, each record is keyed by its client and sent
/// to the partition of that key (XXH3-64 of the client, modulo the partitions), so that each
/// client's lines are in one partition, in file order. `read_error` names the input in an I/O
/// error.
pub fn load_lines(
    mut lines: impl BufRead,
    url: &KafkaUrl,
    partitions: usize,
    key_by_client: Option<LogFormat>,
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
        match key_by_client {
            Some(format) => {
                let client = client_of(l, format);
                let partition = (xxh3_64(client) % partitions) as i32;
                let record = BaseRecord::to(&url.topic)
                    .key(client)
                    .payload(l)
                    .partition(partition);
                send_waiting(&producer, record, &url.brokers)?;
            }
            None => {
                let partition = ((sent / RUN) % partitions) as i32;
                let record = BaseRecord::<(), [u8]>::to(&url.topic)
                    .payload(l)
                    .partition(partition);
                send_waiting(&producer, record, &url.brokers)?;
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

/// The client of a line: the first field (combined, common), or the one after the time of day
/// (simple). A line too short for it is its own key: it is malformed and goes somewhere.
fn client_of(line: &[u8], format: LogFormat) -> &[u8] {
    let rest = match format {
        LogFormat::Simple => line.get(9..).unwrap_or(line),
        _ => line,
    };
    let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    &rest[..end]
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
