//! Reading one partition of an input topic: a consumer assigned to exactly that partition at an
//! explicit offset, `read_committed`, never auto-committing (the job's checkpoints own the
//! positions).
//!
//! Each message value is one access-log line. [`PartitionReader::read`] gathers a run of
//! consecutive messages into a buffer of lines, so a parser sees large chunks, and stops at a
//! gap in the offsets (transaction markers, compaction), so that line `i` of a run is at offset
//! `first + i`: malformed lines are reported by partition and offset.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, KafkaIoError, KafkaUrl, Result, CONNECT_TIMEOUT};

/// One input partition, positioned at `next`.
pub struct PartitionReader {
    consumer: BaseConsumer,
    url: KafkaUrl,
    partition: i32,
    next: i64,
    held: Option<(i64, Vec<u8>)>,
}

/// What one [`PartitionReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Offset of the first line appended (meaningless when `lines` is 0).
    pub first: i64,
    /// Lines appended; line `i` is at offset `first + i`.
    pub lines: u64,
    /// Whether the reader reached the end of what is committed in the partition.
    pub caught_up: bool,
}

impl PartitionReader {
    /// A reader of `url`'s `partition` from offset `start` (`None`: the earliest offset), in
    /// consumer group `group` (only named; nothing is committed by the reader).
    pub fn open(url: &KafkaUrl, partition: i32, start: Option<i64>, group: &str) -> Result<Self> {
        let consumer: BaseConsumer = client_config(&url.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .set("queued.min.messages", "200000")
            .create()
            .map_err(|e| KafkaIoError::call(&url.brokers, "cannot create a consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        let offset = start.map_or(Offset::Beginning, Offset::Offset);
        tpl.add_partition_offset(&url.topic, partition, offset)
            .expect("a fresh list takes offsets");
        consumer.assign(&tpl).map_err(|e| {
            KafkaIoError::call(
                &url.brokers,
                format!("assign {} partition {partition}", url.topic),
                e,
            )
        })?;
        let next = match start {
            Some(o) => o,
            None => {
                let (low, _) = watermarks(&consumer, url, partition)?;
                low
            }
        };
        Ok(Self {
            consumer,
            url: url.clone(),
            partition,
            next,
            held: None,
        })
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset of the next message to read: the position to checkpoint.
    pub fn position(&self) -> i64 {
        self.held.as_ref().map_or(self.next, |(o, _)| *o)
    }

    /// The partition's current end (high watermark): a bounded run reads up to here.
    pub fn end_offset(&self) -> Result<i64> {
        Ok(watermarks(&self.consumer, &self.url, self.partition)?.1)
    }

    /// Appends the next run of consecutive messages to `buf` as lines, until `max_bytes` are in
    /// `buf`, a gap in offsets, the end of what is available, or `timeout`.
    pub fn read(&mut self, buf: &mut Vec<u8>, max_bytes: usize, timeout: Duration) -> Result<Run> {
        let mut run = Run {
            first: self.position(),
            lines: 0,
            caught_up: false,
        };
        if let Some((offset, value)) = self.held.take() {
            push_line(buf, &value);
            run.first = offset;
            run.lines = 1;
            self.next = offset + 1;
        }
        let deadline = Instant::now() + timeout;
        while buf.len() < max_bytes {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Some(m) = self
                .consumer
                .poll(if run.lines > 0 { Duration::ZERO } else { wait })
            else {
                if run.lines > 0 || Instant::now() >= deadline {
                    break;
                }
                continue;
            };
            match m {
                Ok(m) => {
                    let value = m.payload().unwrap_or_default();
                    let offset = m.offset();
                    if run.lines > 0 && offset != self.next {
                        // A gap: this message starts the next run.
                        self.held = Some((offset, value.to_vec()));
                        break;
                    }
                    if run.lines == 0 {
                        run.first = offset;
                    }
                    push_line(buf, value);
                    run.lines += 1;
                    self.next = offset + 1;
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    if let Some(pos) = self.consumer_position() {
                        self.next = self.next.max(pos);
                    }
                    run.caught_up = true;
                    break;
                }
                Err(e) => {
                    return Err(KafkaIoError::call(
                        &self.url.brokers,
                        format!("read {} partition {}", self.url.topic, self.partition),
                        e,
                    ))
                }
            }
        }
        Ok(run)
    }

    fn consumer_position(&self) -> Option<i64> {
        let tpl = self.consumer.position().ok()?;
        match tpl
            .find_partition(&self.url.topic, self.partition)?
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }
}

fn push_line(buf: &mut Vec<u8>, value: &[u8]) {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// `(low, high)` watermarks of `url`'s `partition`.
pub fn watermarks<C: Consumer>(client: &C, url: &KafkaUrl, partition: i32) -> Result<(i64, i64)> {
    client
        .fetch_watermarks(&url.topic, partition, CONNECT_TIMEOUT)
        .map_err(|e| {
            KafkaIoError::call(
                &url.brokers,
                format!("read the offsets of {} partition {partition}", url.topic),
                e,
            )
        })
}
