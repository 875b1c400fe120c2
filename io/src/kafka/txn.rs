//! The output side of exactly once: one transactional, idempotent producer per job, and the
//! progress record that commits with each transaction.
//!
//! ```text
//!  open():   init_transactions      fences a zombie with the same transactional id, aborts its
//!                                   open transaction (presumed abort)
//!            read_progress()        the group's committed progress: the last committed epoch
//!  epoch n:  begin ─ send … send ─ commit(progress n [+ input offsets]) ─ begin ─ …
//! ```
//!
//! [`Delivery::AtLeastOnce`] keeps the same calls without transactions: records are flushed at
//! each checkpoint and the progress is committed as a plain offset commit afterwards, so a crash
//! between the two repeats an epoch's output (the baseline of the exactly-once benchmark).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DefaultProducerContext};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::records::{Progress, PROGRESS_TOPIC};
use super::{client_config, send_waiting, KafkaIoError, Result};

/// Time allowed for a transactional call (init, commit, abort) before the run fails.
pub const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The delivery guarantee of the Kafka sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Transactions: a crash loses and duplicates nothing.
    #[default]
    ExactlyOnce,
    /// Idempotent producer without transactions: a crash may repeat the output since the last
    /// checkpoint.
    AtLeastOnce,
}

impl std::str::FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exactly-once" => Ok(Self::ExactlyOnce),
            "at-least-once" => Ok(Self::AtLeastOnce),
            _ => Err(format!(
                "{s}: not a delivery guarantee (exactly-once, at-least-once)"
            )),
        }
    }
}

/// Settings of a job's producer.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// `HOST:PORT` of the brokers.
    pub brokers: String,
    /// The stable transactional id of the job.
    pub transactional_id: String,
    /// The group whose committed offsets hold the job's progress (and a Kafka source's
    /// positions).
    pub group: String,
    /// The delivery guarantee.
    pub delivery: Delivery,
    /// `transaction.timeout.ms`: how long the broker keeps a transaction open for a producer
    /// that stopped answering.
    pub transaction_timeout: Duration,
}

/// How the commits of a job's output went, readable while it runs (metrics): transactions
/// exactly once, offset commits at least once.
#[derive(Debug, Default)]
pub struct CommitCounts {
    /// Commits that succeeded.
    pub committed: AtomicU64,
    /// Commits that failed (a transaction then aborted: presumed abort).
    pub aborted: AtomicU64,
}

/// One offset a transaction commits for the job's group: an input's position, with the
/// metadata that restores what goes with it (a scale-out job keeps its window state's bounds
/// there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset committed (the next to read).
    pub offset: i64,
    /// The offset's metadata (empty: none).
    pub metadata: String,
}

/// The job's producer and the consumer handle of its progress group.
pub struct JobProducer {
    producer: Arc<BaseProducer>,
    group: BaseConsumer,
    opts: ProducerOptions,
    counts: Arc<CommitCounts>,
    /// When the open transaction began (`None`: none is open).
    txn_since: Option<Instant>,
}

impl JobProducer {
    /// Creates the producer and, for exactly once, calls `init_transactions`: an older producer
    /// with the same transactional id is fenced and its open transaction aborted.
    pub fn open(opts: ProducerOptions) -> Result<Self> {
        let addr = opts.brokers.clone();
        let mut cfg = client_config(&opts.brokers);
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        let txn_ms = opts.transaction_timeout.as_millis().to_string();
        if opts.delivery == Delivery::ExactlyOnce {
            cfg.set("transactional.id", &opts.transactional_id)
                .set("transaction.timeout.ms", &txn_ms)
                .set("message.timeout.ms", &txn_ms);
        }
        let producer: BaseProducer<DefaultProducerContext> = cfg
            .create()
            .map_err(|e| KafkaIoError::call(&addr, "cannot create a producer", e))?;
        let group = group_consumer(&opts.brokers, &opts.group)?;
        if opts.delivery == Delivery::ExactlyOnce {
            producer
                .init_transactions(TXN_CALL_TIMEOUT)
                .map_err(|e| txn_error(&opts, None, "init_transactions", e))?;
        }
        Ok(Self {
            producer: Arc::new(producer),
            group,
            opts,
            txn_since: None,
            counts: Arc::default(),
        })
    }

    /// How this producer's commits went so far.
    pub fn commit_counts(&self) -> Arc<CommitCounts> {
        Arc::clone(&self.counts)
    }

    /// The job's committed progress and the group's committed offsets of `inputs`
    /// (`(topic, partition)`), in that order (`None`: nothing committed). Read after
    /// [`JobProducer::open`], so a transaction that was committing has finished.
    pub fn read_progress(
        &self,
        inputs: &[(String, i32)],
    ) -> Result<(Option<Progress>, Vec<Option<i64>>)> {
        read_progress(&self.group, &self.opts.brokers, &self.opts.group, inputs)
    }

    /// Begins the transaction of the next epoch (exactly once only).
    pub fn begin(&mut self) -> Result<()> {
        if self.opts.delivery == Delivery::ExactlyOnce && self.txn_since.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|e| self.txn_error("begin_transaction", e))?;
            self.txn_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Sends one result record into the open transaction, waiting while the producer's queue is
    /// full.
    pub fn send(&mut self, topic: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let record = BaseRecord::to(topic).key(key).payload(value);
        send_waiting(&self.producer, record, &self.opts.brokers).map_err(|e| self.fatal(e))
    }

    /// `e`, or what made the producer fail for good if it did: a send fails with a bare
    /// "fatal error" when the producer was fenced since the last transactional call.
    fn fatal(&self, e: KafkaIoError) -> KafkaIoError {
        match self.producer.client().fatal_error() {
            Some((code, reason)) if is_fenced(code) => self.fenced(reason),
            Some((_, reason)) => KafkaIoError::Protocol {
                addr: self.opts.brokers.clone(),
                what: format!("{e}; the producer failed for good: {reason}"),
            },
            None => e,
        }
    }

    /// Waits until every record sent so far is on the broker (in the open transaction).
    pub fn flush(&self) -> Result<()> {
        self.producer
            .flush(TXN_CALL_TIMEOUT)
            .map_err(|e| self.fatal(KafkaIoError::call(&self.opts.brokers, "flush", e)))
    }

    /// Serves delivery reports; call now and then between sends.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// A handle that sends records into this producer's transactions from other threads (a
    /// scale-out job's shuffle), each into the transaction of its epoch.
    pub fn sender(&self) -> RecordSender {
        RecordSender {
            producer: Arc::clone(&self.producer),
            brokers: self.opts.brokers.clone(),
        }
    }

    /// Commits `progress` (if any) and `offsets` with everything sent since
    /// [`JobProducer::begin`]: one transaction. `member` is the group metadata of a consumer that
    /// is a member of the job's group (KIP-447: a zombie of an older generation is fenced by the
    /// group); `None` for the job's own group handle. At least once: flushes, then commits the
    /// offsets.
    pub fn commit(
        &mut self,
        progress: Option<&Progress>,
        offsets: &[CommittedOffset],
        member: Option<&ConsumerGroupMetadata>,
    ) -> Result<()> {
        let done = self.commit_once(progress, offsets, member);
        let c = &self.counts;
        let n = if done.is_ok() {
            &c.committed
        } else {
            &c.aborted
        };
        n.fetch_add(1, Ordering::Relaxed);
        done
    }

    fn commit_once(
        &mut self,
        progress: Option<&Progress>,
        offsets: &[CommittedOffset],
        member: Option<&ConsumerGroupMetadata>,
    ) -> Result<()> {
        let mut tpl = TopicPartitionList::with_capacity(1 + offsets.len());
        let progress = progress.map(|p| CommittedOffset {
            topic: PROGRESS_TOPIC.into(),
            partition: 0,
            offset: p.epoch as i64,
            metadata: serde_json::to_string(p).expect("serialisable"),
        });
        for o in progress.iter().chain(offsets) {
            tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))
                .expect("a fresh list takes offsets");
            if !o.metadata.is_empty() {
                if let Some(mut e) = tpl.find_partition(&o.topic, o.partition) {
                    e.set_metadata(o.metadata.clone());
                }
            }
        }
        match self.opts.delivery {
            Delivery::ExactlyOnce => {
                let own;
                let cgm = match member {
                    Some(m) => m,
                    None => {
                        own = self.group_metadata()?;
                        &own
                    }
                };
                let sent = self
                    .producer
                    .send_offsets_to_transaction(&tpl, cgm, TXN_CALL_TIMEOUT)
                    .map_err(|e| self.txn_error("send_offsets_to_transaction", e))
                    .and_then(|()| {
                        self.producer
                            .commit_transaction(TXN_CALL_TIMEOUT)
                            .map_err(|e| self.txn_error("commit_transaction", e))
                    });
                self.txn_since = None;
                if sent.is_err() {
                    // Presumed abort: the epoch is repeated after a restart.
                    let _ = self.producer.abort_transaction(TXN_CALL_TIMEOUT);
                }
                sent
            }
            Delivery::AtLeastOnce => {
                self.producer
                    .flush(TXN_CALL_TIMEOUT)
                    .map_err(|e| KafkaIoError::call(&self.opts.brokers, "flush", e))?;
                self.group
                    .commit(&tpl, CommitMode::Sync)
                    .map_err(|e| KafkaIoError::call(&self.opts.brokers, "commit offsets", e))
            }
        }
    }

    /// Why a transactional call failed.
    fn txn_error(&self, what: &str, e: KafkaError) -> KafkaIoError {
        txn_error(&self.opts, self.txn_since, what, e)
    }

    /// The producer lost its transactional id: fenced by another producer, or by the broker
    /// for a transaction left open past its timeout.
    fn fenced(&self, reason: String) -> KafkaIoError {
        fenced(&self.opts, self.txn_since, reason)
    }

    fn group_metadata(&self) -> Result<ConsumerGroupMetadata> {
        self.group
            .group_metadata()
            .ok_or_else(|| KafkaIoError::Protocol {
                addr: self.opts.brokers.clone(),
                what: format!("no group metadata for group {}", self.opts.group),
            })
    }
}

/// Sends records into a [`JobProducer`]'s open transaction from another thread. The caller
/// makes sure the transaction open is the one its records belong to (a scale-out job's shuffle
/// waits for the next transaction after each barrier).
#[derive(Clone)]
pub struct RecordSender {
    producer: Arc<BaseProducer>,
    brokers: String,
}

impl RecordSender {
    /// Sends one record to `partition` of `topic`, waiting while the producer's queue is full.
    pub fn send(&self, topic: &str, partition: i32, key: &[u8], value: &[u8]) -> Result<()> {
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(key)
            .payload(value);
        send_waiting(&self.producer, record, &self.brokers)
    }
}

/// A consumer that only names `group`: for its metadata, committed offsets and commits.
pub fn group_consumer(brokers: &str, group: &str) -> Result<BaseConsumer> {
    let mut cfg: ClientConfig = client_config(brokers);
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    cfg.create()
        .map_err(|e| KafkaIoError::call(brokers, "cannot create a consumer", e))
}

/// The committed progress of `group` and its committed offsets of `inputs`.
pub fn read_progress(
    consumer: &BaseConsumer,
    brokers: &str,
    group: &str,
    inputs: &[(String, i32)],
) -> Result<(Option<Progress>, Vec<Option<i64>>)> {
    let mut tpl = TopicPartitionList::with_capacity(1 + inputs.len());
    tpl.add_partition(PROGRESS_TOPIC, 0);
    for (topic, partition) in inputs {
        tpl.add_partition(topic, *partition);
    }
    // A broker that has just started (or moved the group's coordinator) answers "not the
    // coordinator" or "loading" for a while: retry those until the call's time is up.
    let deadline = std::time::Instant::now() + TXN_CALL_TIMEOUT;
    let committed = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.committed_offsets(tpl.clone(), left) {
            Ok(c) => break c,
            Err(e)
                if e.rdkafka_error_code().is_some_and(coordinator_not_ready)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(KafkaIoError::call(
                    brokers,
                    format!("read committed offsets of group {group}"),
                    e,
                ))
            }
        }
    };
    let progress = match committed.find_partition(PROGRESS_TOPIC, 0) {
        Some(e) => match e.offset() {
            Offset::Offset(epoch) => {
                let p: Progress =
                    serde_json::from_str(e.metadata()).map_err(|err| KafkaIoError::Protocol {
                        addr: brokers.to_owned(),
                        what: format!(
                            "group {group}: the progress offset {epoch} on {PROGRESS_TOPIC} \
                             has metadata weir cannot read ({err}): {:?}",
                            e.metadata()
                        ),
                    })?;
                if p.epoch != epoch as u64 {
                    return Err(KafkaIoError::Protocol {
                        addr: brokers.to_owned(),
                        what: format!(
                            "group {group}: progress offset {epoch} but metadata says epoch {}",
                            p.epoch
                        ),
                    });
                }
                Some(p)
            }
            _ => None,
        },
        None => None,
    };
    let offsets = inputs
        .iter()
        .map(|(t, p)| {
            committed
                .find_partition(t, *p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
        })
        .collect();
    Ok((progress, offsets))
}

/// Whether `code` says the group's coordinator is not ready yet (retriable).
fn coordinator_not_ready(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
    )
}

/// Whether `code` says another producer took the transactional id.
fn is_fenced(code: RDKafkaErrorCode) -> bool {
    // librdkafka's transactional calls report both broker codes as its own `__FENCED`.
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// `TransactionTimedOut` when the open transaction (begun at `since`) outlived the transaction
/// timeout: the broker aborts such a transaction and bumps the producer's epoch, and whatever
/// call the producer makes next fails for that reason (as a fence, or a timeout of its own).
fn timed_out(opts: &ProducerOptions, since: Option<Instant>, reason: &str) -> Option<KafkaIoError> {
    let open = since?.elapsed();
    (open >= opts.transaction_timeout).then(|| KafkaIoError::TransactionTimedOut {
        addr: opts.brokers.clone(),
        id: opts.transactional_id.clone(),
        open_secs: open.as_secs_f64(),
        timeout_secs: opts.transaction_timeout.as_secs_f64(),
        reason: reason.to_owned(),
    })
}

/// `Fenced`, unless the open transaction had [`timed_out`].
fn fenced(opts: &ProducerOptions, since: Option<Instant>, reason: String) -> KafkaIoError {
    timed_out(opts, since, &reason).unwrap_or_else(|| KafkaIoError::Fenced {
        addr: opts.brokers.clone(),
        id: opts.transactional_id.clone(),
        reason,
    })
}

fn txn_error(
    opts: &ProducerOptions,
    since: Option<Instant>,
    what: &str,
    e: KafkaError,
) -> KafkaIoError {
    if let Some(t) = timed_out(opts, since, &e.to_string()) {
        t
    } else if e.rdkafka_error_code().is_some_and(is_fenced) {
        fenced(opts, since, e.to_string())
    } else if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut) {
        KafkaIoError::call(
            &opts.brokers,
            format!(
                "{what} (transactional id {:?}) got no answer within {} s: the broker is down \
                 or overloaded",
                opts.transactional_id,
                TXN_CALL_TIMEOUT.as_secs()
            ),
            e,
        )
    } else {
        KafkaIoError::call(
            &opts.brokers,
            format!("{what} (transactional id {:?})", opts.transactional_id),
            e,
        )
    }
}
