//! `weir run --scale-out`: one member of a job spread over several processes, with Kafka as
//! the engine that spreads it (Kafka Streams' way: a consumer group, a shuffle topic, state
//! that lives in Kafka; no cluster manager of weir's own).
//!
//! ```text
//!  member 1 ┐                                  input partitions ──▶ the members that read them
//!  member 2 ├─ consumer group --group ──▶      shuffle partitions ─▶ the members that own their
//!  member N ┘  (input topic + shuffle topic)                        key groups
//!
//!  input u ─▶ parse ─▶ rows by key group ─▶ shuffle topic q ─▶ windows ─▶ output topic
//!             (member A)                    + event time of u   (member B)
//! ```
//!
//! The same command started N times (here or on N machines, each with its own
//! `--checkpoint-dir`) is one job. The group's protocol shares out the partitions of the input
//! topic and of the job's shuffle topic (`GROUP-shuffle`, created with as many partitions as
//! the input unless `--shuffle-partitions` says otherwise); an input already keyed by client
//! (`weir produce --key-by-client`) needs no shuffle (`--keyed-input`): its partitions are
//! aggregated where they are read.
//!
//! Each member commits everything of an epoch in one transaction: output records, shuffle
//! records, and the group's offsets with the metadata that is the job's state
//! ([`state`]), under the group generation it holds (KIP-447): a member the group has moved on
//! from cannot commit. Whenever the group rebalances, a member ends its generation (its open
//! transaction is aborted) and starts the next one from what is committed, so a member that
//! died, with its disk, loses nothing: its partitions resume elsewhere from Kafka.
//!
//! With `--stop-at-end`, the end offsets are fixed when the job first starts; every member
//! exits once the whole group has committed up to them and fired every window.

pub mod generation;
pub mod splits;
pub mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use weir_io::kafka::records::{ValueFormat, PROGRESS_TOPIC};
use weir_io::kafka::{connect, ensure_topic, KafkaIoError, KafkaUrl};
use weir_io::parse::{LogFormat, ParseOptions, ParseStats};

use crate::checkpointed::store::CheckpointStore;
use crate::error::{Error, Result};
use crate::replay::{parse_options, JobOptions, ParseConfig};
use crate::stop::Stop;
use generation::Assignment;
use state::{Downstream, JobEnds, Upstream};

/// Everything a scale-out member needs.
#[derive(Debug, Clone)]
pub struct ScaleOutConfig {
    /// The input topic.
    pub from: KafkaUrl,
    /// The output topic.
    pub to: KafkaUrl,
    /// The member's own folder (its lock and local checkpoints); the job's state is in Kafka.
    pub checkpoint_dir: PathBuf,
    /// The job: its consumer group, and the prefix of its shuffle topic.
    pub group: String,
    /// Time between barriers, i.e. between transactions.
    pub interval: Duration,
    /// The input is keyed by client: no shuffle.
    pub keyed: bool,
    /// Partitions of the shuffle topic if weir creates it (`None`: as many as the input's).
    pub shuffle_partitions: Option<usize>,
    /// Read up to the end offsets fixed when the job first started, then exit once the whole
    /// group has committed them.
    pub stop_at_end: bool,
    /// The value format of result records.
    pub value_format: ValueFormat,
    /// Partitions of the output topic if weir creates it.
    pub output_partitions: usize,
    /// The producer's `transaction.timeout.ms`: how long a dead member's open transaction holds
    /// back the partitions it wrote to before the broker aborts it.
    pub transaction_timeout: Duration,
    /// The group's `session.timeout.ms`: how long a silent member keeps its partitions.
    pub session_timeout: Duration,
    /// How lines are read.
    pub parse: ParseConfig,
    /// What is computed.
    pub job: JobOptions,
    /// Test hook: a pause after every read, so that a run lasts.
    pub read_delay: Duration,
    /// Test hook: each commit waits this long with its records flushed, and is announced on
    /// stderr (see `weir run --test-commit-delay`).
    pub commit_delay: Duration,
    /// Requested to leave the group: the open transaction is aborted, the others take over.
    pub suspend: Option<Stop>,
}

impl ScaleOutConfig {
    /// Defaults for member of job `group` from `from` to `to` with its folder `dir`.
    pub fn new(from: KafkaUrl, to: KafkaUrl, dir: impl Into<PathBuf>, group: &str) -> Self {
        Self {
            from,
            to,
            checkpoint_dir: dir.into(),
            group: group.to_owned(),
            interval: Duration::from_secs(1),
            keyed: false,
            shuffle_partitions: None,
            stop_at_end: false,
            value_format: ValueFormat::Json,
            output_partitions: 4,
            transaction_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(6),
            parse: ParseConfig::default(),
            job: JobOptions::default(),
            read_delay: Duration::ZERO,
            commit_delay: Duration::ZERO,
            suspend: None,
        }
    }
}

/// What a member did.
#[derive(Debug, Clone, Default)]
pub struct ScaleOutSummary {
    /// The log format used.
    pub format: Option<LogFormat>,
    /// Lines this member read from the input (re-reads after a rebalance included).
    pub parse: ParseStats,
    /// Rows its engine took in.
    pub rows: u64,
    /// Result records it produced.
    pub records: u64,
    /// Transactions it committed.
    pub commits: u64,
    /// Generations it ran (one per assignment).
    pub generations: u64,
    /// It left the group on request before the job ended.
    pub left: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Generations that may fail in a row (without a rebalance in between) before the member
/// gives up with the last one's error.
const MAX_FAILURES: u32 = 3;

/// What every generation of a member shares.
pub(crate) struct Member<'a> {
    cfg: &'a ScaleOutConfig,
    format: LogFormat,
    opts: ParseOptions,
    input_partitions: usize,
    /// The topic of the partitions the member aggregates (the shuffle, or the input if keyed).
    down_topic: String,
    shuffle_partitions: usize,
    ends: Option<JobEnds>,
    /// The member's name, kept in its folder: its static group membership, its transactional
    /// id, and what marks the partitions it committed as restorable from its folder.
    member_id: String,
    transactional_id: String,
}

/// A rebalance, as the member's consumer saw it.
enum Rebalanced {
    Revoked,
    Assigned(Vec<(String, i32)>),
}

/// The member's consumer context: passes rebalances on, and pauses what it is assigned (the
/// member's readers fetch; this consumer only holds the membership).
///
/// When partitions are revoked it stops the running generation and waits for its end (its
/// last commit done or failed, its transaction no longer open) before the consumer rejoins:
/// the group's next generation, and whoever is given these partitions in it, never overlaps
/// this one (Kafka Streams does the same in its revocation callback). A member frozen past its
/// session cannot wait like this; its commits are refused by the group (KIP-447).
pub(crate) struct MemberContext {
    events: Sender<Rebalanced>,
    /// The stop flag of the generation running, if one is.
    running: Mutex<Option<Arc<AtomicBool>>>,
    ended: Condvar,
}

/// How long a revocation waits for the running generation to stop.
const STOP_WAIT: Duration = Duration::from_secs(120);

impl MemberContext {
    /// A generation with stop flag `stop` is running.
    fn started(&self, stop: Arc<AtomicBool>) {
        *self.running.lock().expect("not poisoned") = Some(stop);
    }

    /// The running generation has ended.
    fn ended(&self) {
        *self.running.lock().expect("not poisoned") = None;
        self.ended.notify_all();
    }

    /// Stops the running generation, if any, and waits for its end.
    fn stop_running(&self) {
        let mut running = self.running.lock().expect("not poisoned");
        if let Some(stop) = running.as_ref() {
            stop.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + STOP_WAIT;
        while running.is_some() && Instant::now() < deadline {
            running = self
                .ended
                .wait_timeout(running, Duration::from_millis(100))
                .expect("not poisoned")
                .0;
        }
    }
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.stop_running();
            let _ = self.events.send(Rebalanced::Revoked);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let _ = consumer.pause(tpl);
            let list = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let _ = self.events.send(Rebalanced::Assigned(list));
        }
    }
}

/// The consumer that holds a member's place in the group.
pub(crate) type MemberConsumer = BaseConsumer<MemberContext>;

/// Runs one member until the job ends (`stop_at_end`), it is asked to leave, or it fails.
pub fn run(cfg: &ScaleOutConfig, say: &(dyn Fn(&str) + Sync)) -> Result<ScaleOutSummary> {
    let started = Instant::now();
    if cfg.job.late_output.is_some() {
        return Err(Error::usage(
            "--late-output is not exactly-once; leave it out with a Kafka output",
        ));
    }
    let input_partitions = connect(&cfg.from)?.ok_or_else(|| {
        Error::usage(format!(
            "{}: the input topic does not exist (create it, or produce to it first)",
            cfg.from
        ))
    })?;
    ensure_topic(&cfg.to, cfg.output_partitions)?;
    ensure_topic(
        &KafkaUrl {
            brokers: cfg.to.brokers.clone(),
            topic: PROGRESS_TOPIC.into(),
        },
        1,
    )?;
    let (down_topic, shuffle_partitions) = if cfg.keyed {
        (cfg.from.topic.clone(), input_partitions)
    } else {
        let url = KafkaUrl {
            brokers: cfg.from.brokers.clone(),
            topic: format!("{}-shuffle", cfg.group),
        };
        let want = cfg.shuffle_partitions.unwrap_or(input_partitions);
        ensure_topic(&url, want)?;
        let have = connect(&url)?.unwrap_or(0);
        if cfg.shuffle_partitions.is_some_and(|n| n != have) {
            return Err(Error::usage(format!(
                "{url} has {have} partitions, not the {want} of --shuffle-partitions: the job's \
                 shuffle topic is fixed when it first starts"
            )));
        }
        (url.topic, have)
    };

    let mut store = CheckpointStore::open(&cfg.checkpoint_dir)?;
    let member_id = member_id(&cfg.checkpoint_dir)?;

    let format = match cfg.parse.format {
        Some(f) => f,
        None => crate::kafka_run::detect_topic_format(&cfg.from, input_partitions, &cfg.group)?,
    };
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;

    let (events_tx, events) = crossbeam_channel::unbounded();
    let consumer = member_consumer(cfg, &member_id, events_tx)?;
    let ends = if cfg.stop_at_end {
        Some(
            match state::ends(&consumer, &cfg.from.brokers, &cfg.group)? {
                Some(e) if e.ends.len() == input_partitions => e,
                Some(e) => {
                    return Err(Error::Mismatch(format!(
                        "group {} fixed the end offsets of {} input partitions, but {} has {}",
                        cfg.group,
                        e.ends.len(),
                        cfg.from,
                        input_partitions
                    )))
                }
                None => JobEnds {
                    ends: (0..input_partitions as i32)
                        .map(|p| {
                            consumer
                                .fetch_watermarks(
                                    &cfg.from.topic,
                                    p,
                                    weir_io::kafka::CONNECT_TIMEOUT,
                                )
                                .map(|w| w.1)
                                .map_err(|e| {
                                    KafkaIoError::call(
                                        &cfg.from.brokers,
                                        format!(
                                            "read the end offset of {} partition {p}",
                                            cfg.from
                                        ),
                                        e,
                                    )
                                })
                        })
                        .collect::<std::result::Result<_, _>>()?,
                },
            },
        )
    } else {
        None
    };
    let member = Member {
        cfg,
        format,
        opts,
        input_partitions,
        down_topic,
        shuffle_partitions,
        ends,
        transactional_id: format!("{}-member-{member_id}", cfg.group),
        member_id,
    };
    let mut topics = vec![cfg.from.topic.as_str()];
    if !cfg.keyed {
        topics.push(&member.down_topic);
    }
    consumer.subscribe(&topics).map_err(|e| {
        KafkaIoError::call(&cfg.from.brokers, format!("join group {}", cfg.group), e)
    })?;
    say(&format!(
        "member {} of group {}: {} input partitions, {}",
        member.transactional_id,
        cfg.group,
        input_partitions,
        if cfg.keyed {
            "keyed input (no shuffle)".to_owned()
        } else {
            format!(
                "shuffle {} ({shuffle_partitions} partitions)",
                member.down_topic
            )
        }
    ));
    let mut summary = ScaleOutSummary {
        format: Some(format),
        ..ScaleOutSummary::default()
    };
    let done = membership(&member, &consumer, &events, &mut store, &mut summary, say);
    consumer.unsubscribe();
    done?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The member's loop: holds its place in the group, runs a generation per assignment, and
/// (bounded runs) waits for the whole group to finish.
fn membership(
    m: &Member<'_>,
    consumer: &MemberConsumer,
    events: &Receiver<Rebalanced>,
    store: &mut CheckpointStore,
    summary: &mut ScaleOutSummary,
    say: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let cfg = m.cfg;
    std::thread::scope(|s| {
        let mut assignment: Option<Assignment> = None;
        let mut running: Option<(std::thread::ScopedJoinHandle<'_, _>, Arc<AtomicBool>)> = None;
        let mut finished = false;
        let mut failures = 0;
        let mut last_check = Instant::now();
        let mut store = Some(store);
        loop {
            // Rebalance callbacks run inside poll; records never come (everything is paused).
            let _ = consumer.poll(Duration::from_millis(100));
            while let Ok(ev) = events.try_recv() {
                match ev {
                    Rebalanced::Revoked => {
                        // The callback has stopped it already.
                        if let Some((h, _)) = running.take() {
                            let (back, _) = h.join().expect("a generation panicked");
                            store = Some(back);
                            say(&format!(
                                "partitions revoked: generation {} stopped, its open transaction \
                                 is aborted",
                                summary.generations
                            ));
                        }
                        assignment = None;
                        finished = false;
                    }
                    Rebalanced::Assigned(list) => {
                        let a = assignment_of(m, &list);
                        say(&format!(
                            "assigned input partitions {:?}, {} partitions {:?}",
                            a.upstream,
                            if cfg.keyed { "keyed" } else { "shuffle" },
                            a.downstream
                        ));
                        assignment = Some(a);
                        finished = false;
                        failures = 0;
                    }
                }
            }
            if cfg.suspend.as_ref().is_some_and(Stop::is_requested) {
                if let Some((h, _)) = running.take() {
                    consumer.context().stop_running();
                    let _ = h.join();
                }
                summary.left = true;
                say("leaving the group: the others take over this member's partitions");
                return Ok(());
            }
            if let Some((h, _)) = running.as_ref() {
                if h.is_finished() {
                    let (h, _) = running.take().expect("running");
                    let (back, r) = h.join().expect("a generation panicked");
                    store = Some(back);
                    let ran: generation::Ran = match r {
                        Ok(ran) => ran,
                        // The group moved on (this member was silent past its session timeout:
                        // a zombie, fenced by the group's generation), the broker aborted a
                        // transaction left open too long, or a broker failed: start again from
                        // what is committed, a few times, before giving up.
                        Err(e) if failures < MAX_FAILURES => {
                            failures += 1;
                            say(&format!(
                                "generation {} failed ({e}); starting again from what the group \
                                 committed ({failures} of {MAX_FAILURES} tries)",
                                summary.generations
                            ));
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    failures = 0;
                    summary.parse.merge(&ran.parse);
                    summary.rows += ran.rows;
                    summary.records += ran.records;
                    summary.commits += ran.commits;
                    finished = true;
                    say(&format!(
                        "generation {} ended: {} commits, {} result records",
                        summary.generations, ran.commits, ran.records
                    ));
                }
            }
            let idle = running.is_none()
                && (finished || assignment.as_ref().is_none_or(Assignment::is_empty));
            if running.is_none() && !finished {
                if let Some(a) = assignment.clone().filter(|a| !a.is_empty()) {
                    let group = consumer.group_metadata().ok_or_else(|| {
                        Error::Kafka(KafkaIoError::Protocol {
                            addr: cfg.from.brokers.clone(),
                            what: format!("no group metadata for group {}", cfg.group),
                        })
                    })?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let st = store.take().expect("the store is back");
                    let stop2 = Arc::clone(&stop);
                    summary.generations += 1;
                    consumer.context().started(Arc::clone(&stop));
                    running = Some((
                        s.spawn(move || {
                            let group = Arc::new(group);
                            let r = generation::run(m, consumer, group, &a, st, stop2, say);
                            consumer.context().ended();
                            (st, r)
                        }),
                        stop,
                    ));
                }
            }
            if idle && cfg.stop_at_end && last_check.elapsed() >= Duration::from_millis(500) {
                last_check = Instant::now();
                if job_done(m, consumer)? {
                    say("the whole job has committed its end: exiting");
                    return Ok(());
                }
            }
        }
    })
}

/// Whether every partition of the job has committed its end (bounded runs).
fn job_done(m: &Member<'_>, consumer: &MemberConsumer) -> Result<bool> {
    let cfg = m.cfg;
    let brokers = &cfg.from.brokers;
    let downs: Vec<(String, i32)> = (0..m.shuffle_partitions as i32)
        .map(|p| (m.down_topic.clone(), p))
        .collect();
    let down = state::read::<Downstream>(consumer, brokers, &cfg.group, &downs)?;
    let downs_done = down
        .iter()
        .all(|c| c.as_ref().is_some_and(|c| c.meta.done(c.offset)));
    if cfg.keyed || !downs_done {
        return Ok(downs_done);
    }
    let ups: Vec<(String, i32)> = (0..m.input_partitions as i32)
        .map(|p| (cfg.from.topic.clone(), p))
        .collect();
    let up = state::read::<Upstream>(consumer, brokers, &cfg.group, &ups)?;
    Ok(up.iter().all(|c| c.as_ref().is_some_and(|c| c.meta.ended)))
}

/// The member's share of the job, from the partitions the group assigned it.
fn assignment_of(m: &Member<'_>, list: &[(String, i32)]) -> Assignment {
    let mut a = Assignment::default();
    for (topic, p) in list {
        // A keyed job's input is its downstream topic.
        if *topic == m.down_topic {
            a.downstream.push(*p);
        } else {
            a.upstream.push(*p);
        }
    }
    a.upstream.sort_unstable();
    a.downstream.sort_unstable();
    a
}

/// The consumer that joins the group.
fn member_consumer(
    cfg: &ScaleOutConfig,
    member_id: &str,
    events: Sender<Rebalanced>,
) -> Result<MemberConsumer> {
    let mut c: ClientConfig = weir_io::kafka::client_config(&cfg.from.brokers);
    // Static membership (KIP-345): a member that restarts within its session keeps its
    // partitions (and its local checkpoints stay of use); its old instance is fenced.
    c.set("group.id", &cfg.group)
        .set("group.instance.id", format!("{}-{member_id}", cfg.group))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            cfg.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (cfg.session_timeout.as_millis() / 4).max(100).to_string(),
        )
        .set("partition.assignment.strategy", "range");
    c.create_with_context(MemberContext {
        events,
        running: Mutex::new(None),
        ended: Condvar::new(),
    })
    .map_err(|e| KafkaIoError::call(&cfg.from.brokers, "cannot create a consumer", e).into())
}

/// The member's name: read from `DIR/MEMBER`, or made (from the process id and the time) and
/// written there, durably, at its first start.
fn member_id(dir: &std::path::Path) -> Result<String> {
    let path = dir.join("MEMBER");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(weir_io::Error::io(&path, e).into()),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = xxhash_rust::xxh3::xxh3_64(format!("{}-{nanos}", std::process::id()).as_bytes());
    let id = format!("{:08x}", h as u32);
    let io = |e| weir_io::Error::io(&path, e);
    let tmp = dir.join("MEMBER.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(id.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(id)
}
