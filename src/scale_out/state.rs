//! What a scale-out job keeps in Kafka: the committed offsets of its group, with metadata.
//!
//! There is no state topic: a key group's window state is the tail of the partition its rows
//! come from (the shuffle partition, or a keyed input partition), from the first record of a
//! window still open. The group's committed offset of that partition is that first record, and
//! its metadata says how to rebuild the windows from there ([`Downstream`]):
//!
//! ```text
//!  partition q:  … fired windows … │ R ─ rows of open windows (and of fired ones) ─ │ O ─ new rows
//!                                  committed offset                                 next to read
//!  restore: read R..O, dropping rows of windows that end at or before `fired` (their results are
//!  committed); from O on, read as usual
//! ```
//!
//! An input partition read by the shuffle commits its next offset and its largest event time
//! ([`Upstream`]). All of it commits in the member's transaction, with the output records and
//! the shuffle records: state, positions and output move together or not at all. A job's end
//! offsets (bounded runs) are fixed when it first starts, in the group's offset of
//! [`PROGRESS_TOPIC`] partition 0 ([`JobEnds`]).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use weir_io::kafka::records::PROGRESS_TOPIC;
use weir_io::kafka::txn::{CommittedOffset, TXN_CALL_TIMEOUT};
use weir_io::kafka::KafkaIoError;

use crate::error::{Error, Result};

/// The committed state of an input partition that the shuffle reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The member epoch that committed it.
    pub epoch: u64,
    /// Its largest event time before the committed offset (`i64::MIN`: none).
    pub max_ts: i64,
    /// It reached the job's end offset and sent its end to every shuffle partition.
    pub ended: bool,
}

/// The committed state of a partition whose rows a member aggregates (a shuffle partition, or
/// an input partition keyed by client): see the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downstream {
    /// The member epoch that committed it.
    pub epoch: u64,
    /// The next offset to read (`O`); the committed offset is `R`.
    pub next: i64,
    /// Windows that end at or before this event time have fired: their results are committed.
    pub fired: i64,
    /// The event time at `R`: for a shuffle partition, each upstream partition's largest event
    /// time as its records before `R` said (`i64::MAX`: ended); for a keyed input partition, one
    /// number, its largest event time before `R`.
    pub marks: Vec<i64>,
    /// It has ended (every upstream partition ended, or the input reached its end offset).
    pub ended: bool,
    /// `MEMBER/MANIFEST`: the member that committed it and the manifest hash of that member's
    /// local checkpoint of the same epoch, which the member may restore instead of re-reading
    /// the partition (its local cache).
    #[serde(default)]
    pub cache: String,
}

impl Downstream {
    /// Whether the partition is done: ended, and every window of its rows has fired.
    pub fn done(&self, committed: i64) -> bool {
        self.ended && committed == self.next
    }
}

/// The job's end offsets, fixed when it first started (bounded runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnds {
    /// The end offset of each input partition.
    pub ends: Vec<i64>,
}

/// A committed offset and its metadata, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed<M> {
    /// The committed offset.
    pub offset: i64,
    /// Its metadata.
    pub meta: M,
}

/// The offset that records `meta` for `(topic, partition)`.
pub fn offset_of<M: Serialize>(
    topic: &str,
    partition: i32,
    offset: i64,
    meta: &M,
) -> CommittedOffset {
    CommittedOffset {
        topic: topic.to_owned(),
        partition,
        offset,
        metadata: serde_json::to_string(meta).expect("serialisable"),
    }
}

/// The group's committed offsets of `partitions` (`(topic, partition)`) with their metadata, in
/// that order (`None`: nothing committed). `require_stable` offsets (the consumer reads
/// committed): a transaction still committing offsets of the group is waited for.
pub fn read<M: for<'de> Deserialize<'de>>(
    consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>,
    brokers: &str,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<Vec<Option<Committed<M>>>> {
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    let deadline = std::time::Instant::now() + TXN_CALL_TIMEOUT;
    let committed = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.committed_offsets(tpl.clone(), left) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() < deadline && retriable(&e) => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => {
                return Err(KafkaIoError::call(
                    brokers,
                    format!("read the committed offsets of group {group}"),
                    e,
                )
                .into())
            }
        }
    };
    partitions
        .iter()
        .map(|(t, p)| {
            let Some(e) = committed.find_partition(t, *p) else {
                return Ok(None);
            };
            let Offset::Offset(offset) = e.offset() else {
                return Ok(None);
            };
            let meta = serde_json::from_str(e.metadata()).map_err(|err| {
                Error::Refused(format!(
                    "group {group} committed offset {offset} of {t}/{p} with metadata weir \
                     cannot read ({err}): {:?}; was the group used by another program?",
                    e.metadata()
                ))
            })?;
            Ok(Some(Committed { offset, meta }))
        })
        .collect()
}

/// The job's end offsets, if they were fixed.
pub fn ends(
    consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>,
    brokers: &str,
    group: &str,
) -> Result<Option<JobEnds>> {
    let got = read::<JobEnds>(consumer, brokers, group, &[(PROGRESS_TOPIC.into(), 0)])?;
    Ok(got.into_iter().next().flatten().map(|c| c.meta))
}

/// The offset that fixes the job's end offsets.
pub fn ends_offset(ends: &JobEnds) -> CommittedOffset {
    offset_of(PROGRESS_TOPIC, 0, 0, ends)
}

/// Errors worth another try: the group's coordinator is loading or moving, or a transaction is
/// still committing offsets of the partitions.
fn retriable(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::UnstableOffsetCommit
                | C::RebalanceInProgress
        )
    )
}
