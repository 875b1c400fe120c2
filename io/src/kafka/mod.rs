//! Kafka in and out: addresses, client settings, topics, and the records weir writes.
//!
//! * [`KafkaUrl`]: `kafka://HOST:PORT/TOPIC`, the one way every command names a topic.
//! * [`connect`]: a reachability check that fails within seconds, naming the address.
//! * [`ensure_topic`]: creates a topic with the admin API (brokers that run with
//!   `auto.create.topics.enable=false`, as production clusters and scripts/kafka.sh's do, create
//!   none on produce).
//! * [`load`]: a log file into a topic, one record per line.
//! * [`reader`]: one consumer per input partition, positioned explicitly, `read_committed`, never
//!   auto-committing.
//! * [`txn`]: the transactional producer of the two-phase-commit sink and the progress record
//!   (the progress group's committed offset) that makes a Kafka commit the one decision point.
//! * [`shuffle`]: the records of a scale-out job's shuffle topic (rows and event time).
//! * [`records`]: the output record format (key, JSON or CSV value) and the progress record.
//!
//! All calls are blocking and run on weir's own threads: librdkafka has its own I/O threads and
//! no async runtime is needed.

pub mod load;
pub mod reader;
pub mod records;
pub mod shuffle;
pub mod sink;
pub mod txn;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord};

/// How long a first contact with a broker may take before weir gives up with an error (a
/// broker that refuses connections is reported at once).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// Errors of Kafka sources and sinks: each names the broker address and what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaIoError {
    /// The broker did not answer in time, or nothing listens at its address.
    #[error(
        "cannot reach the Kafka broker at {addr} ({why}): is it running? Start the development \
             broker with `scripts/kafka.sh start`, or name a running one"
    )]
    Unreachable {
        /// `HOST:PORT`.
        addr: String,
        /// What happened: the connection refused, or no answer within the time allowed.
        why: String,
    },
    /// A topic that must exist does not.
    #[error("Kafka broker {addr}: topic {topic:?} does not exist")]
    NoTopic {
        /// `HOST:PORT`.
        addr: String,
        /// The topic.
        topic: String,
    },
    /// Another producer with the same transactional id took over.
    #[error(
        "Kafka broker {addr}: this producer was fenced: another process started with the \
             transactional id {id:?} and now owns the job's output; this one stops ({reason})"
    )]
    Fenced {
        /// `HOST:PORT`.
        addr: String,
        /// The transactional id.
        id: String,
        /// librdkafka's words.
        reason: String,
    },
    /// The broker aborted the open transaction because it outlived `transaction.timeout.ms`
    /// (the process was paused or cut off), and fenced the producer.
    #[error(
        "Kafka broker {addr}: the broker aborted this run's transaction (transactional id \
             {id:?}): it had been open for {open_secs:.1} s, past its transaction timeout of \
             {timeout_secs:.1} s (was the process paused, or cut off from the broker?). Nothing \
             of it was committed; run the same command again to resume from the last commit \
             ({reason})"
    )]
    TransactionTimedOut {
        /// `HOST:PORT`.
        addr: String,
        /// The transactional id.
        id: String,
        /// How long the transaction had been open.
        open_secs: f64,
        /// `transaction.timeout.ms`.
        timeout_secs: f64,
        /// librdkafka's words.
        reason: String,
    },
    /// Any other failed call.
    #[error("Kafka broker {addr}: {what}: {source}")]
    Call {
        /// `HOST:PORT`.
        addr: String,
        /// What was being done.
        what: String,
        /// librdkafka's error.
        #[source]
        source: Box<KafkaError>,
    },
    /// Something the broker returned does not make sense to weir.
    #[error("Kafka broker {addr}: {what}")]
    Protocol {
        /// `HOST:PORT`.
        addr: String,
        /// What is wrong.
        what: String,
    },
}

/// `Result` of the Kafka module.
pub type Result<T, E = KafkaIoError> = std::result::Result<T, E>;

impl KafkaIoError {
    /// Wraps a librdkafka error: `what` says what was being done against `addr`.
    pub fn call(addr: &str, what: impl Into<String>, source: KafkaError) -> Self {
        KafkaIoError::Call {
            addr: addr.to_owned(),
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// A topic on a broker: `kafka://HOST:PORT/TOPIC`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaUrl {
    /// `HOST:PORT` (several, comma-separated, are passed on as bootstrap servers).
    pub brokers: String,
    /// The topic.
    pub topic: String,
}

impl KafkaUrl {
    /// Whether `s` names a Kafka topic rather than a file.
    pub fn is_kafka(s: &str) -> bool {
        s.starts_with("kafka://")
    }

    /// Settings shared by every client weir makes for this broker.
    pub fn client_config(&self) -> ClientConfig {
        client_config(&self.brokers)
    }
}

impl FromStr for KafkaUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("kafka://")
            .ok_or_else(|| format!("{s}: not a kafka://HOST:PORT/TOPIC address"))?;
        let (brokers, topic) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s}: no topic: write kafka://HOST:PORT/TOPIC"))?;
        if brokers.is_empty() {
            return Err(format!(
                "{s}: no broker address: write kafka://HOST:PORT/TOPIC"
            ));
        }
        if topic.is_empty() || topic.contains('/') || !topic.chars().all(legal_topic_char) {
            return Err(format!(
                "{s}: {topic:?} is not a topic name (letters, digits, '.', '_', '-')"
            ));
        }
        Ok(KafkaUrl {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
        })
    }
}

impl fmt::Display for KafkaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kafka://{}/{}", self.brokers, self.topic)
    }
}

fn legal_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Settings shared by every client weir makes: the bootstrap servers, IPv4 for `localhost`, and
/// short connection timeouts so a dead broker is reported, not waited for.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4")
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3");
    c
}

/// Sends `record`, serving delivery reports while the producer's queue is full.
pub fn send_waiting<K, P>(
    producer: &BaseProducer,
    mut record: BaseRecord<'_, K, P>,
    brokers: &str,
) -> Result<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, r)) => {
                return Err(KafkaIoError::call(
                    brokers,
                    format!("produce to {}", r.topic),
                    e,
                ))
            }
        }
    }
}

/// Checks that the broker answers and returns the partition count of `topic` (`None` if the
/// topic does not exist). Fails within [`CONNECT_TIMEOUT`], naming the address; at once when no
/// bootstrap address accepts a TCP connection.
pub fn connect(url: &KafkaUrl) -> Result<Option<usize>> {
    probe(&url.brokers)?;
    let consumer: BaseConsumer = url
        .client_config()
        .create()
        .map_err(|e| KafkaIoError::call(&url.brokers, "cannot create a client", e))?;
    partitions_of(&consumer, url)
}

/// Fails at once, naming the addresses, when none of the bootstrap servers `brokers` accepts a
/// TCP connection (refused, unresolvable, or silent for 2 s): librdkafka would retry until its
/// timeout before saying anything.
fn probe(brokers: &str) -> Result<()> {
    use std::net::{TcpStream, ToSocketAddrs};
    let mut why = Vec::new();
    for addr in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let addrs = match addr.to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                why.push(format!("{addr}: {e}"));
                continue;
            }
        };
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                Ok(_) => return Ok(()),
                Err(e) => why.push(format!("{a}: {e}")),
            }
        }
    }
    Err(KafkaIoError::Unreachable {
        addr: brokers.to_owned(),
        why: why.join("; "),
    })
}

/// The partition count of `url`'s topic as `client` sees it, `None` if it does not exist.
pub fn partitions_of<C: Consumer>(client: &C, url: &KafkaUrl) -> Result<Option<usize>> {
    let md = client
        .fetch_metadata(Some(&url.topic), CONNECT_TIMEOUT)
        .map_err(|e| KafkaIoError::Unreachable {
            addr: url.brokers.clone(),
            why: format!("no answer within {} s: {e}", CONNECT_TIMEOUT.as_secs()),
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == url.topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().len())),
        _ => Ok(None),
    }
}

/// Creates `url`'s topic with `partitions` partitions unless it exists; returns its partition
/// count.
pub fn ensure_topic(url: &KafkaUrl, partitions: usize) -> Result<usize> {
    if let Some(n) = connect(url)? {
        return Ok(n);
    }
    let admin: AdminClient<DefaultClientContext> = url
        .client_config()
        .create()
        .map_err(|e| KafkaIoError::call(&url.brokers, "cannot create an admin client", e))?;
    let topic = NewTopic::new(&url.topic, partitions as i32, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(CONNECT_TIMEOUT));
    let results = futures_executor::block_on(admin.create_topics([&topic], &opts))
        .map_err(|e| KafkaIoError::call(&url.brokers, format!("create topic {}", url.topic), e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaIoError::call(
                    &url.brokers,
                    format!("create topic {name}"),
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    // Metadata can lag behind the creation for a moment.
    let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        if let Some(n) = connect(url)? {
            return Ok(n);
        }
        if std::time::Instant::now() > deadline {
            return Err(KafkaIoError::NoTopic {
                addr: url.brokers.clone(),
                topic: url.topic.clone(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: KafkaUrl = "kafka://127.0.0.1:9092/access-log".parse().unwrap();
        assert_eq!(u.brokers, "127.0.0.1:9092");
        assert_eq!(u.topic, "access-log");
        assert_eq!(u.to_string(), "kafka://127.0.0.1:9092/access-log");
        for bad in [
            "127.0.0.1:9092/a",
            "kafka://127.0.0.1:9092",
            "kafka://127.0.0.1:9092/",
            "kafka:///a",
            "kafka://h:1/a/b",
            "kafka://h:1/a b",
        ] {
            assert!(bad.parse::<KafkaUrl>().is_err(), "{bad}");
        }
    }
}
