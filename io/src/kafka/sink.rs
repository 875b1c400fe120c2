//! Kafka's transactional sink: exactly-once result records, in the two halves of
//! [`crate::two_phase`].
//!
//! ```text
//!  result thread (owns the producer)               coordinator
//!  rows ─▶ records of the open transaction n
//!  barrier n ─▶ Ready(n) ────────────────────────▶ gather n ─▶ prepare (record for the manifest)
//!                                                   manifest n durable
//!  wait for Commit(n) ◀──────────────────────────── commit(n): hand the commit over, wait its ack
//!  send_offsets (progress record, input offsets),
//!  commit transaction n, ack ──────────────────────▶ returns
//!  begin transaction n+1
//! ```
//!
//! The producer belongs to the result thread (librdkafka's transactional calls are made from
//! one thread), so the commit of epoch *n* is made there: the coordinator hands it over once the
//! manifest is durable and waits for its acknowledgement. A suspended run (stopped at a barrier)
//! commits its last epoch and opens no transaction after it: what follows is dropped, since the
//! windows fired at the end are in that checkpoint's state and a resumed run fires them again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use weir_engine::{ResultSink, SinkError};

use super::records::{Progress, ValueFormat};
use super::txn::{CommittedOffset, JobProducer};
use crate::error::{Error, Result};
use crate::sink::RowRenderer;
use crate::two_phase::{SinkEvent, TwoPhaseSink};
use rdkafka::consumer::ConsumerGroupMetadata;

/// A Kafka source partition's position at a barrier: what a Kafka job's manifest records of its
/// input, and what the offsets committed with the transaction come from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartitionPosition {
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub offset: i64,
    /// The input's largest event time pushed before the barrier.
    pub max_ts: i64,
    /// Lines before `offset` (a file's; Kafka offsets number the lines themselves).
    #[serde(default)]
    pub lines: u64,
}

/// The source section of a Kafka job's checkpoint manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Positions {
    /// Every partition's position.
    pub partitions: Vec<PartitionPosition>,
}

/// How the transactional sink writes.
pub struct TransactionalConfig {
    /// The output topic.
    pub topic: String,
    /// Leading key columns of a result row: the record's key.
    pub key_columns: usize,
    /// How a record's value is written.
    pub format: ValueFormat,
    /// The first epoch this run writes.
    pub epoch: u64,
    /// The job (the transactional id), named in the progress record.
    pub job: String,
    /// What each transaction commits besides the records.
    pub offsets: OffsetsOf,
    /// The sink's record in each manifest.
    pub record: serde_json::Value,
    /// Test hook: each commit waits this long with its records on the broker (see `weir run
    /// --commit-delay`).
    pub commit_delay: Duration,
}

/// What a transaction commits besides its records: offsets of the job's group.
pub enum OffsetsOf {
    /// A one-process job: the progress record (epoch and manifest) and, for a Kafka input, the
    /// positions of this topic's partitions ([`Positions`]); `None`: the input is not Kafka.
    Progress(Option<String>),
    /// A member of a scale-out job: the offsets (with their metadata) computed from an epoch's
    /// positions, committed with the member's group metadata (KIP-447), so that a member of an
    /// older generation of the group is fenced.
    Member {
        /// The offsets of an epoch's positions.
        offsets: MemberOffsets,
        /// The group membership the transactions commit under.
        group: Arc<ConsumerGroupMetadata>,
        /// The epoch whose transaction is open, for the member's other senders.
        open: Arc<OpenTransaction>,
    },
}

/// How a scale-out member turns an epoch's positions, and the hash of its local checkpoint's
/// manifest, into the offsets it commits.
pub type MemberOffsets = Box<dyn FnMut(&serde_json::Value, &str) -> Vec<CommittedOffset> + Send>;

/// The epoch whose transaction is open: a thread that sends records into the transactions of
/// a member of a scale-out job (its shuffle) waits here after each barrier until the next
/// transaction is open, so that a record never commits with an epoch before its own.
#[derive(Debug, Default)]
pub struct OpenTransaction {
    epoch: Mutex<u64>,
    opened: Condvar,
}

impl OpenTransaction {
    /// The transaction of `epoch` is open.
    pub fn open(&self, epoch: u64) {
        *self.epoch.lock().expect("not poisoned") = epoch;
        self.opened.notify_all();
    }

    /// Waits until the transaction of `epoch` (or a later one) is open; `false` if `stopped`
    /// said so first (it is asked every 50 ms).
    pub fn wait_for(&self, epoch: u64, stopped: &dyn Fn() -> bool) -> bool {
        let mut open = self.epoch.lock().expect("not poisoned");
        while *open < epoch {
            if stopped() {
                return false;
            }
            open = self
                .opened
                .wait_timeout(open, Duration::from_millis(50))
                .expect("not poisoned")
                .0;
        }
        true
    }
}

/// The two halves of the transactional sink over `producer`, whose first transaction is open.
/// `records` counts the result records sent.
pub fn transactional(
    producer: JobProducer,
    cfg: TransactionalConfig,
    records: Arc<AtomicU64>,
) -> (KafkaSink, KafkaCommitter) {
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (acks_tx, acks) = crossbeam_channel::unbounded();
    let (commits_tx, commits) = crossbeam_channel::bounded(1);
    let member = match &cfg.offsets {
        OffsetsOf::Member { group, open, .. } => {
            open.open(cfg.epoch);
            Some((Arc::clone(group), Arc::clone(open)))
        }
        OffsetsOf::Progress(_) => None,
    };
    let sink = KafkaSink {
        member,
        producer,
        topic: cfg.topic,
        key_columns: cfg.key_columns,
        format: cfg.format,
        epoch: cfg.epoch,
        events: events_tx,
        acks: acks_tx,
        commits,
        job: cfg.job,
        commit_delay: cfg.commit_delay,
        records,
        open_records: 0,
        key: Vec::new(),
        value: Vec::new(),
        suspended: false,
    };
    let committer = KafkaCommitter {
        record: cfg.record,
        offsets: cfg.offsets,
        commits: commits_tx,
        events,
        acks,
    };
    (sink, committer)
}

/// What the coordinator tells the sink: checkpoint n is durable; commit.
struct Commit {
    epoch: u64,
    manifest: String,
    offsets: Vec<CommittedOffset>,
    finished: bool,
    /// The run is suspended after this commit: no transaction follows.
    last: bool,
}

/// The coordinator's half: the transaction of epoch n holds its results already; preparing
/// records the sink in the manifest, and the commit (made on the result thread, which owns the
/// producer) adds the progress record and the input offsets to the transaction and commits it
/// once the manifest is durable.
pub struct KafkaCommitter {
    record: serde_json::Value,
    offsets: OffsetsOf,
    commits: Sender<Commit>,
    events: Receiver<SinkEvent<()>>,
    /// Epochs whose transaction committed.
    acks: Receiver<u64>,
}

impl TwoPhaseSink for KafkaCommitter {
    type Mark = ();

    fn events(&self) -> Receiver<SinkEvent<()>> {
        self.events.clone()
    }

    fn prepare(&mut self, _epoch: u64, _mark: ()) -> Result<serde_json::Value> {
        Ok(self.record.clone())
    }

    fn commit(
        &mut self,
        epoch: u64,
        manifest: &str,
        positions: &serde_json::Value,
        finished: bool,
        last: bool,
    ) -> Result<()> {
        let offsets = match &mut self.offsets {
            OffsetsOf::Progress(Some(topic)) => {
                let at: Positions =
                    serde_json::from_value(positions.clone()).expect("positions we wrote");
                at.partitions
                    .iter()
                    .map(|p| CommittedOffset {
                        topic: topic.clone(),
                        partition: p.partition,
                        offset: p.offset,
                        metadata: String::new(),
                    })
                    .collect()
            }
            OffsetsOf::Progress(None) => Vec::new(),
            OffsetsOf::Member { offsets, .. } => offsets(positions, manifest),
        };
        let stopped = || Error::Stopped("the job or its sink failed");
        self.commits
            .send(Commit {
                epoch,
                manifest: manifest.to_owned(),
                offsets,
                finished,
                last,
            })
            .map_err(|_| stopped())?;
        loop {
            match self.acks.recv() {
                Ok(n) if n == epoch => return Ok(()),
                Ok(_) => {}
                Err(_) => return Err(stopped()),
            }
        }
    }
}
/// The writing half, the job's sink: result rows as records of the open transaction; at each checkpoint, the
/// commit (after the coordinator made the checkpoint durable), then the next transaction.
pub struct KafkaSink {
    producer: JobProducer,
    /// A scale-out member's group membership and its open-transaction signal.
    member: Option<(Arc<ConsumerGroupMetadata>, Arc<OpenTransaction>)>,
    topic: String,
    key_columns: usize,
    format: ValueFormat,
    epoch: u64,
    events: Sender<SinkEvent<()>>,
    acks: Sender<u64>,
    commits: Receiver<Commit>,
    job: String,
    commit_delay: Duration,
    records: Arc<AtomicU64>,
    /// Records in the open transaction.
    open_records: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Suspended: the last epoch committed, what follows is dropped (the windows fired at the
    /// end are in that checkpoint's state, and a resumed run fires them).
    suspended: bool,
}

impl KafkaSink {
    fn commit(&mut self, epoch: u64) -> std::result::Result<(), SinkError> {
        let c = self
            .commits
            .recv()
            .map_err(|_| "the checkpoint coordinator stopped")?;
        if c.epoch != epoch {
            return Err(format!("checkpoint {} handed to the commit of {epoch}", c.epoch).into());
        }
        if !self.commit_delay.is_zero() {
            // The records are on the broker when the window is announced: a test that kills
            // or pauses the run there leaves them in an open transaction.
            self.producer.flush()?;
            eprintln!(
                "weir: commit window of epoch {epoch} ({} records in the transaction)",
                self.open_records
            );
            std::thread::sleep(self.commit_delay);
        }
        let progress = Progress {
            job: self.job.clone(),
            epoch,
            manifest: c.manifest,
            finished: c.finished,
        };
        // A scale-out member's members each have their own epochs: no job-wide progress.
        let (progress, group) = match &self.member {
            Some((group, _)) => (None, Some(&**group)),
            None => (Some(&progress), None),
        };
        self.producer.commit(progress, &c.offsets, group)?;
        if !self.commit_delay.is_zero() {
            eprintln!("weir: committed epoch {epoch}");
        }
        self.suspended = c.last;
        let _ = self.acks.send(epoch);
        Ok(())
    }
}

impl ResultSink for KafkaSink {
    fn batch(&mut self, batch: RecordBatch) -> std::result::Result<(), SinkError> {
        if self.suspended {
            return Ok(());
        }
        let rows = RowRenderer::new(&batch, self.key_columns);
        for row in 0..batch.num_rows() {
            self.key.clear();
            self.value.clear();
            rows.key(row, &mut self.key);
            match self.format {
                ValueFormat::Json => rows.json(row, &mut self.value),
                ValueFormat::Csv => rows.csv(row, &mut self.value),
            }
            self.producer.send(&self.topic, &self.key, &self.value)?;
        }
        self.records
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.open_records += batch.num_rows() as u64;
        self.producer.poll();
        Ok(())
    }

    fn checkpoint(&mut self, epoch: u64) -> std::result::Result<(), SinkError> {
        let _ = self.events.send(SinkEvent::Ready(epoch, ()));
        self.commit(epoch)?;
        self.epoch = epoch + 1;
        self.open_records = 0;
        if !self.suspended {
            self.producer.begin()?;
            if let Some((_, open)) = &self.member {
                open.open(self.epoch);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<(), SinkError> {
        if self.suspended {
            return Ok(());
        }
        let _ = self.events.send(SinkEvent::Finished(self.epoch, ()));
        self.commit(self.epoch)
    }
}
