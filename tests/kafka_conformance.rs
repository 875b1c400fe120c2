//! Conformance of the Kafka broker to what weir's exactly-once sink relies on
//! (`../shared/DESIGN.md` §4): transactions, `read_committed`, and offsets committed with
//! `send_offsets_to_transaction` (the progress record).
//!
//! The broker is `WEIR_KAFKA` (`HOST:PORT`) or `127.0.0.1:$WEIR_KAFKA_PORT` (default 9092), the
//! development broker started by `scripts/kafka.sh start` (Apache Kafka). An unreachable
//! broker fails these tests: they are part of `cargo test --workspace` and must not pass
//! silently without one. Every run uses fresh topic, group and transactional ids, so tests can
//! be re-run against the same broker.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use weir::io::kafka::{client_config, ensure_topic, KafkaUrl};

/// Time allowed to every blocking client call.
const T: Duration = Duration::from_secs(10);

/// The broker's address; panics, saying how to start one, if it does not accept connections.
fn broker() -> String {
    let addr = std::env::var("WEIR_KAFKA").unwrap_or_else(|_| {
        format!(
            "127.0.0.1:{}",
            std::env::var("WEIR_KAFKA_PORT").unwrap_or_else(|_| "9092".into())
        )
    });
    let first = addr.split(',').next().unwrap_or_default().trim();
    let reachable = first
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(
        reachable,
        "no Kafka broker accepts connections at {addr}: start the development broker with \
         `scripts/kafka.sh start` (or set WEIR_KAFKA=HOST:PORT to a running Kafka)"
    );
    addr
}

/// A name no other run uses: `weir-conf-<what>-<pid>-<nanos>`.
fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("weir-conf-{what}-{}-{nanos}", std::process::id())
}

/// Creates a fresh one-partition topic and returns its name.
fn new_topic(addr: &str, what: &str) -> String {
    let url: KafkaUrl = format!("kafka://{addr}/{}", unique(what)).parse().unwrap();
    let n = ensure_topic(&url, 1).unwrap_or_else(|e| panic!("create topic {}: {e}", url.topic));
    assert_eq!(n, 1, "topic {} has {n} partitions, want 1", url.topic);
    url.topic
}

/// Collects the delivery failures of a producer.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<Vec<String>>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.lock().unwrap().push(e.to_string());
        }
    }
}

/// A transactional, idempotent producer (`acks=all`), transactions initialised.
struct TxnProducer {
    producer: BaseProducer<Deliveries>,
    failures: Deliveries,
}

impl TxnProducer {
    fn new(addr: &str, txn_id: &str) -> Self {
        let failures = Deliveries::default();
        let producer: BaseProducer<Deliveries> = client_config(addr)
            .set("transactional.id", txn_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("transaction.timeout.ms", "60000")
            .create_with_context(failures.clone())
            .expect("create the transactional producer");
        producer
            .init_transactions(T)
            .unwrap_or_else(|e| panic!("init_transactions({txn_id}): {e}"));
        TxnProducer { producer, failures }
    }

    fn begin(&self) {
        self.producer
            .begin_transaction()
            .expect("begin_transaction");
    }

    /// Produces one record to partition 0 of `topic`.
    fn send(&self, topic: &str, key: &str, value: &str) {
        let record = BaseRecord::to(topic).partition(0).key(key).payload(value);
        self.producer
            .send(record)
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    }

    /// Waits until every record sent is acknowledged by the broker; fails on any delivery error.
    fn flush(&self) {
        self.producer.flush(T).expect("flush");
        let failures = self.failures.0.lock().unwrap();
        assert!(failures.is_empty(), "delivery failures: {failures:?}");
    }

    fn commit(&self) {
        self.producer
            .commit_transaction(T)
            .expect("commit_transaction");
        self.flush();
    }

    /// Aborts the open transaction. Its records are flushed first: on a `BaseProducer`,
    /// `abort_transaction` fails while delivery reports are outstanding, as nothing serves them.
    fn abort(&self) {
        self.flush();
        self.producer
            .abort_transaction(T)
            .expect("abort_transaction");
    }

    /// Adds group `cgm`'s committed offset of partition 0 of `topic` to the open transaction.
    fn send_offset(&self, group_consumer: &BaseConsumer, topic: &str, offset: i64, meta: &str) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap();
        tpl.find_partition(topic, 0).unwrap().set_metadata(meta);
        let cgm = group_consumer
            .group_metadata()
            .expect("a consumer with a group.id has group metadata");
        self.producer
            .send_offsets_to_transaction(&tpl, &cgm, T)
            .expect("send_offsets_to_transaction");
    }
}

/// A record as a consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    key: String,
    value: String,
}

fn consumer(addr: &str, isolation: &str, group: &str) -> BaseConsumer {
    let mut config: ClientConfig = client_config(addr);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation);
    config.create().expect("create a consumer")
}

/// Reads partition 0 of `topic` from the beginning to its end as a consumer with
/// `isolation.level = isolation` sees it: the high watermark for `read_uncommitted`, the last
/// stable offset for `read_committed` (the end-offset query answers with it), so what comes
/// after an open transaction is not waited for. The end is an event, not a time: nothing is
/// concluded from records that did not come within some seconds. Fails past [`T`].
fn read(addr: &str, topic: &str, isolation: &str) -> Vec<Rec> {
    let end = end(addr, topic, isolation);
    let c = consumer(addr, isolation, &unique("reader"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + T;
    let mut out = Vec::new();
    loop {
        let position = c
            .position()
            .expect("position")
            .find_partition(topic, 0)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(-1);
        if position >= end {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} ({isolation}): at offset {position} of {end} after {T:?}, read {out:?}"
        );
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap_or_else(|e| panic!("consume {topic} ({isolation}): {e}"));
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        out.push(Rec {
            key: text(m.key()),
            value: text(m.payload()),
        });
    }
}

/// The end offset of partition 0 of `topic` for a consumer with `isolation.level = isolation`:
/// its high watermark (`read_uncommitted`) or last stable offset (`read_committed`).
fn end(addr: &str, topic: &str, isolation: &str) -> i64 {
    consumer(addr, isolation, &unique("end"))
        .fetch_watermarks(topic, 0, T)
        .unwrap_or_else(|e| panic!("end offset of {topic} ({isolation}): {e}"))
        .1
}

fn values(recs: &[Rec]) -> Vec<&str> {
    recs.iter().map(|r| r.value.as_str()).collect()
}

/// Group `group`'s committed offset and its metadata for partition 0 of `topic` (`None` if there
/// is none), read by a consumer of that group with `isolation.level = isolation`.
///
/// Note: with `read_committed`, librdkafka asks for stable offsets and waits (retries) while a
/// transaction with offsets for the group is open, as Kafka answers UNSTABLE_OFFSET_COMMIT; so
/// while one is open, read with `read_uncommitted`.
fn committed(addr: &str, group: &str, topic: &str, isolation: &str) -> Option<(i64, String)> {
    let c = consumer(addr, isolation, group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got: KafkaResult<TopicPartitionList> = c.committed_offsets(tpl, T);
    let got = got.unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
    let elem = got
        .find_partition(topic, 0)
        .expect("the partition asked for is in the answer");
    elem.error()
        .unwrap_or_else(|e| panic!("committed offset of group {group} on {topic}/0: {e}"));
    match elem.offset() {
        Offset::Offset(n) => Some((n, elem.metadata().to_owned())),
        Offset::Invalid => None,
        other => panic!("committed offset of group {group} on {topic}/0: unexpected {other:?}"),
    }
}

const RC: &str = "read_committed";
const RU: &str = "read_uncommitted";

/// a. The records of a committed transaction, with their keys, are visible to a
/// `read_committed` consumer.
#[test]
fn broker_conformance_a_committed_visible() {
    let addr = broker();
    let topic = new_topic(&addr, "a");
    let p = TxnProducer::new(&addr, &unique("txn-a"));
    p.begin();
    for i in 0..3 {
        let value = format!("committed-{i}");
        p.send(&topic, &format!("k{i}"), &value);
    }
    p.commit();

    let got = read(&addr, &topic, RC);
    assert_eq!(
        values(&got),
        ["committed-0", "committed-1", "committed-2"],
        "read_committed consumer of {topic}"
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.key, format!("k{i}"));
    }
}

/// b. The records of an open transaction are invisible to `read_committed` (it stops at the
/// last stable offset) although they are on the broker, and appear once it commits.
#[test]
fn broker_conformance_b_open_invisible_until_commit() {
    let addr = broker();
    let topic = new_topic(&addr, "b");
    let p = TxnProducer::new(&addr, &unique("txn-b"));
    p.begin();
    p.send(&topic, "k", "first");
    p.commit();

    p.begin();
    for i in 0..3 {
        p.send(&topic, "k", &format!("open-{i}"));
    }
    p.flush();
    // The open records reached the broker...
    let uncommitted = read(&addr, &topic, RU);
    assert_eq!(
        values(&uncommitted),
        ["first", "open-0", "open-1", "open-2"],
        "read_uncommitted consumer of {topic}: the open transaction's records should be there"
    );
    // ...but a read_committed consumer's end is the last stable offset, before them...
    let (stable, high) = (end(&addr, &topic, RC), end(&addr, &topic, RU));
    assert!(
        stable < high,
        "{topic}: the last stable offset {stable} is not before the open records (end {high})"
    );
    // ...and it sees only what precedes the open transaction.
    let during = read(&addr, &topic, RC);
    assert_eq!(
        values(&during),
        ["first"],
        "read_committed consumer of {topic} while a transaction is open"
    );

    p.commit();
    assert_eq!(
        end(&addr, &topic, RC),
        end(&addr, &topic, RU),
        "{topic}: the last stable offset after the commit"
    );
    let after = read(&addr, &topic, RC);
    assert_eq!(
        values(&after),
        ["first", "open-0", "open-1", "open-2"],
        "read_committed consumer of {topic} after the commit"
    );
}

/// Group `group`'s committed offset for partition 0 of `topic`, without the metadata.
fn committed_offset(addr: &str, group: &str, topic: &str, isolation: &str) -> Option<i64> {
    committed(addr, group, topic, isolation).map(|(offset, _)| offset)
}

/// c. Offsets sent with `send_offsets_to_transaction` (weir's progress record) are committed for
/// the group with the transaction and only with it: not while it is open, not after an abort;
/// after the commit; a later open or aborted transaction leaves them as they were. (That the
/// metadata comes back too is `broker_conformance_d3_offset_metadata_kept`.)
#[test]
fn broker_conformance_c_offsets_commit_with_transaction() {
    let addr = broker();
    let out = new_topic(&addr, "c-out");
    let progress = new_topic(&addr, "c-progress");
    let group = unique("c-group");
    let group_consumer = consumer(&addr, RC, &group);
    let p = TxnProducer::new(&addr, &unique("txn-c"));

    // Epoch 7, aborted.
    p.begin();
    p.send(&out, "k", "epoch-7");
    p.send_offset(&group_consumer, &progress, 7, r#"{"job":"c","epoch":7}"#);
    p.flush();
    assert_eq!(
        committed_offset(&addr, &group, &progress, RU),
        None,
        "group {group} while the transaction of epoch 7 is open"
    );
    p.abort();
    assert_eq!(
        committed_offset(&addr, &group, &progress, RC),
        None,
        "group {group} after the transaction of epoch 7 was aborted"
    );

    // Epoch 8, committed.
    let meta8 = r#"{"job":"c","epoch":8,"manifest":"0123456789abcdef"}"#;
    p.begin();
    p.send(&out, "k", "epoch-8");
    p.send_offset(&group_consumer, &progress, 8, meta8);
    p.flush();
    assert_eq!(
        committed_offset(&addr, &group, &progress, RU),
        None,
        "group {group} while the transaction of epoch 8 is open"
    );
    p.commit();
    let want = Some(8);
    assert_eq!(
        committed_offset(&addr, &group, &progress, RC),
        want,
        "group {group} after the transaction of epoch 8 committed"
    );

    // Epoch 9: open, then aborted; epoch 8's offset stays.
    p.begin();
    p.send(&out, "k", "epoch-9");
    p.send_offset(&group_consumer, &progress, 9, r#"{"job":"c","epoch":9}"#);
    p.flush();
    assert_eq!(
        committed_offset(&addr, &group, &progress, RU),
        want,
        "group {group} while the transaction of epoch 9 is open"
    );
    p.abort();
    assert_eq!(
        committed_offset(&addr, &group, &progress, RC),
        want,
        "group {group} after the transaction of epoch 9 was aborted"
    );
}

/// d1. The records of an aborted transaction are invisible to `read_committed`.
#[test]
fn broker_conformance_d1_aborted_invisible() {
    let addr = broker();
    let topic = new_topic(&addr, "d1");
    let p = TxnProducer::new(&addr, &unique("txn-d1"));
    p.begin();
    p.send(&topic, "k", "aborted");
    p.flush();
    p.abort();
    p.begin();
    p.send(&topic, "k", "committed");
    p.commit();
    let got = read(&addr, &topic, RC);
    assert_eq!(
        values(&got),
        ["committed"],
        "read_committed consumer of {topic}"
    );
}

/// d2. A second producer with the same `transactional.id` fences the first: the zombie's
/// commit fails as fenced and its records never become visible.
#[test]
fn broker_conformance_d2_zombie_fenced() {
    let addr = broker();
    let topic = new_topic(&addr, "d2");
    let id = unique("txn-d2");
    let zombie = TxnProducer::new(&addr, &id);
    zombie.begin();
    zombie.send(&topic, "k", "zombie");
    zombie.flush();

    let successor = TxnProducer::new(&addr, &id);
    let commit = zombie.producer.commit_transaction(Duration::from_secs(5));
    let code = match &commit {
        Ok(()) => panic!("the zombie's commit succeeded after another producer took its id"),
        Err(e) => e.rdkafka_error_code(),
    };
    assert!(
        matches!(
            code,
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        ),
        "the zombie's commit failed, but not as fenced: {commit:?}"
    );
    successor.begin();
    successor.send(&topic, "k", "successor");
    successor.commit();
    let got = read(&addr, &topic, RC);
    assert_eq!(
        values(&got),
        ["successor"],
        "read_committed consumer of {topic}"
    );
}

/// d3. The metadata of an offset committed with a transaction comes back with the offset
/// (weir's progress record keeps the job, epoch and manifest checksum there).
#[test]
fn broker_conformance_d3_offset_metadata_kept() {
    let addr = broker();
    let progress = new_topic(&addr, "d3-progress");
    let group = unique("d3-group");
    let group_consumer = consumer(&addr, RC, &group);
    let p = TxnProducer::new(&addr, &unique("txn-d3"));
    let meta = r#"{"job":"d3","epoch":8,"manifest":"0123456789abcdef"}"#;
    p.begin();
    p.send_offset(&group_consumer, &progress, 8, meta);
    p.commit();
    assert_eq!(
        committed(&addr, &group, &progress, RC),
        Some((8, meta.to_owned())),
        "group {group}'s committed offset and metadata"
    );
}
