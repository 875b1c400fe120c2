//! Reading one partition of an input topic: a consumer assigned to exactly that partition at an
//! explicit offset, `read_committed`, never auto-committing (the job's checkpoints own the
//! positions).
//!
//! Each message value is one access-log line. [`PartitionReader::read`] gathers a run of
//! consecutive messages into a buffer of lines, so a parser sees large chunks, and stops at a
//! gap in the offsets (transaction markers, compaction), so that line `i` of a run is at offset
//! `first + i`: malformed lines are reported by partition and offset.

use std::collections::VecDeque;
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
    /// Runs read and handed back with [`PartitionReader::unread`]: served first, in order.
    unread: VecDeque<(Run, Vec<u8>)>,
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
            .set("queued.min.messages", "100000")
            .set("queued.max.messages.kbytes", "32768")
            .create()
            .map_err(|e| KafkaIoError::call(&url.brokers, "cannot create a consumer", e))?;
        let offset = start.map_or(Offset::Beginning, Offset::Offset);
        assign(&consumer, url, partition, offset)?;
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
            unread: VecDeque::new(),
        })
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset of the next message to read: the position to checkpoint.
    pub fn position(&self) -> i64 {
        match (self.unread.front(), &self.held) {
            (Some((run, _)), _) => run.first,
            (None, Some((o, _))) => *o,
            (None, None) => self.next,
        }
    }

    /// Hands back a run that [`PartitionReader::read`] returned (`lines` its lines, as
    /// appended to the caller's buffer): the next reads return it again, before anything newer.
    /// A look at the first records (to detect their format) costs no second reader.
    pub fn unread(&mut self, run: Run, lines: Vec<u8>) {
        if run.lines > 0 {
            self.unread.push_back((run, lines));
        }
    }

    /// The partition's current end (high watermark): a bounded run reads up to here.
    pub fn end_offset(&self) -> Result<i64> {
        Ok(watermarks(&self.consumer, &self.url, self.partition)?.1)
    }

    /// Appends the next run of consecutive messages to `buf` as lines, until `max_bytes` are in
    /// `buf`, a gap in offsets, the end of what is available, or `timeout`.
    pub fn read(&mut self, buf: &mut Vec<u8>, max_bytes: usize, timeout: Duration) -> Result<Run> {
        if let Some((run, lines)) = self.unread.pop_front() {
            buf.extend_from_slice(&lines);
            return Ok(run);
        }
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
            // Once a run has begun, take only what is already there (and read no clock: this
            // loop runs once per record).
            let wait = if run.lines > 0 {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let Some(m) = self.consumer.poll(wait) else {
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
                    if let Some(pos) = position(&self.consumer, &self.url, self.partition) {
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
}

/// One record as the broker holds it (a scale-out job's shuffle reads its own records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Its offset.
    pub offset: i64,
    /// Its key (empty: none).
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

impl PartitionReader {
    /// Appends the next records to `out` as they are, until their values hold `max_bytes`, the
    /// end of what is available, or `timeout`; returns whether the reader caught up with the
    /// partition. Not to be mixed with [`PartitionReader::read`] on one reader.
    pub fn read_records(
        &mut self,
        out: &mut Vec<RawRecord>,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut bytes = 0;
        while bytes < max_bytes {
            let wait = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let Some(m) = self.consumer.poll(wait) else {
                if !out.is_empty() || Instant::now() >= deadline {
                    return Ok(false);
                }
                continue;
            };
            match m {
                Ok(m) => {
                    let value = m.payload().unwrap_or_default();
                    bytes += value.len();
                    out.push(RawRecord {
                        offset: m.offset(),
                        key: m.key().unwrap_or_default().to_vec(),
                        value: value.to_vec(),
                    });
                    self.next = m.offset() + 1;
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    if let Some(pos) = position(&self.consumer, &self.url, self.partition) {
                        self.next = self.next.max(pos);
                    }
                    return Ok(true);
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
        Ok(false)
    }
}

/// The consumer's position in `url`'s `partition`: past the last record it delivered (or, at
/// the end of the partition, past any transaction markers there).
fn position(consumer: &BaseConsumer, url: &KafkaUrl, partition: i32) -> Option<i64> {
    let tpl = consumer.position().ok()?;
    match tpl.find_partition(&url.topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn push_line(buf: &mut Vec<u8>, value: &[u8]) {
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// Assigns `consumer` exactly `url`'s `partition`, positioned at `offset`.
fn assign(consumer: &BaseConsumer, url: &KafkaUrl, partition: i32, offset: Offset) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&url.topic, partition, offset)
        .expect("a fresh list takes offsets");
    consumer.assign(&tpl).map_err(|e| {
        KafkaIoError::call(
            &url.brokers,
            format!("assign {} partition {partition}", url.topic),
            e,
        )
    })
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

/// A whole partition read once, from its beginning to an end offset, with keys and headers:
/// for auditors and recovery, not for the job's input.
pub struct RecordReader {
    consumer: BaseConsumer,
    url: KafkaUrl,
    partition: i32,
    end: i64,
}

impl RecordReader {
    /// Opens `url`'s `partition`, to be read up to `end` (`None`: the end offset now).
    /// `read_committed` hides the records of open and aborted transactions; otherwise every
    /// record is read.
    pub fn open(
        url: &KafkaUrl,
        partition: i32,
        group: &str,
        read_committed: bool,
        end: Option<i64>,
    ) -> Result<Self> {
        let consumer: BaseConsumer = client_config(&url.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .set("enable.partition.eof", "true")
            .create()
            .map_err(|e| KafkaIoError::call(&url.brokers, "cannot create a consumer", e))?;
        let end = match end {
            Some(e) => e,
            None => watermarks(&consumer, url, partition)?.1,
        };
        assign(&consumer, url, partition, Offset::Beginning)?;
        Ok(Self {
            consumer,
            url: url.clone(),
            partition,
            end,
        })
    }

    /// Calls `f` with every record below the end offset; returns how many. Fails if nothing arrives for 30 s before the end
    /// is reached (an open transaction holds a `read_committed` reader back).
    pub fn read_to_end(
        &mut self,
        f: &mut dyn FnMut(&rdkafka::message::BorrowedMessage<'_>),
    ) -> Result<u64> {
        let mut n = 0;
        let mut next = 0i64;
        let mut last_progress = Instant::now();
        while next < self.end {
            match self.consumer.poll(Duration::from_millis(100)) {
                // Past the end: everything below it has been seen.
                Some(Ok(m)) if m.offset() >= self.end => next = self.end,
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    f(&m);
                    n += 1;
                    last_progress = Instant::now();
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    if let Some(p) = position(&self.consumer, &self.url, self.partition) {
                        next = next.max(p);
                    }
                }
                Some(Err(e)) => {
                    return Err(KafkaIoError::call(
                        &self.url.brokers,
                        format!("read {} partition {}", self.url.topic, self.partition),
                        e,
                    ))
                }
                None => {}
            }
            if last_progress.elapsed() > Duration::from_secs(30) {
                return Err(KafkaIoError::Protocol {
                    addr: self.url.brokers.clone(),
                    what: format!(
                        "{} partition {}: stuck at offset {next} before the end {} for 30 s (an open transaction?)",
                        self.url.topic, self.partition, self.end
                    ),
                });
            }
        }
        Ok(n)
    }
}
