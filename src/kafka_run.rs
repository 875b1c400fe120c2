//! `weir run`: access-log lines from a Kafka topic, per-key window counts into another, exactly
//! once (DESIGN.md §4: commit last, presumed abort).
//!
//! ```text
//!  partition p ─▶ reader p (consumer, parser) ─▶ Input p ─┐
//!      barrier n at a run boundary, position p ──────────┼──▶ workers ─▶ collector ─▶ KafkaSink
//!                                                          │  snapshot n       │          │ epoch n's records
//!                                                          ▼                   ▼          ▼ in transaction n
//!  coordinator: positions n + snapshots n + sink ready n ─▶ write chk-n (fsync) ─▶ sink commits
//!               transaction n with the progress offset (epoch n, manifest hash) and the input
//!               offsets ─▶ retain old checkpoints ─▶ (interval) ─▶ barrier n+1
//! ```
//!
//! The Kafka commit is the one decision point. On start the producer's `init_transactions`
//! aborts whatever a crashed run left open, then the group's committed progress names the epoch
//! to restore: its local checkpoint must exist and match the recorded manifest hash; newer local
//! checkpoints were never committed and are discarded; anything else is an error naming the
//! folder. With `stop_at_end` the run reads each partition up to the end offset it found at
//! start, fires every window, commits a final epoch and returns.
//!
//! A suspend request (SIGINT, SIGTERM: [`KafkaRunConfig::suspend`]) ends the run at a last,
//! ordinary checkpoint instead (Flink's stop with a savepoint, without draining): its barrier is
//! requested at once, every reader finishes its input right after injecting it, the epoch
//! commits as usual, and what the workers fire after it is dropped by the sink (it is in the
//! checkpoint's state) and no further transaction begins. Running the job again resumes there.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use weir_engine::checkpoint::JobIdentity;
use weir_engine::{Input, JobStats};
use weir_io::kafka::reader::PartitionReader;
use weir_io::kafka::records::{Progress, ValueFormat, PROGRESS_TOPIC};
use weir_io::kafka::sink::{transactional, OffsetsOf, TransactionalConfig};
use weir_io::kafka::txn::{Delivery, JobProducer, ProducerOptions};
use weir_io::kafka::{connect, ensure_topic, KafkaUrl};
use weir_io::parse::{detect_format, LineParser, LogFormat, ParseOptions, ParseStats};
use weir_io::source::MappedFile;
use weir_io::split::{Driver, Split, Step};

pub mod source;

use crate::checkpointed::store::CheckpointStore;
use crate::coordinator::{BarrierSource, Coordinator};
use crate::error::{Error, Result};
use crate::replay::{job_builder, parse_options, pick_format, JobOptions, ParseConfig};
use crate::stop::Stop;
use source::{FileReader, Reader, Source};

/// Everything `weir run` needs.
#[derive(Debug, Clone)]
pub struct KafkaRunConfig {
    /// The input: a topic (one access-log line per record) or a log file.
    pub from: Source,
    /// The output topic.
    pub to: KafkaUrl,
    /// Checkpoints of the job's state (and its lock).
    pub checkpoint_dir: PathBuf,
    /// Time between barriers, i.e. between transactions.
    pub interval: Duration,
    /// The group holding the job's progress and input offsets.
    pub group: String,
    /// The producer's stable transactional id.
    pub transactional_id: String,
    /// Exactly once (transactions) or at least once.
    pub delivery: Delivery,
    /// The value format of result records.
    pub value_format: ValueFormat,
    /// Read up to the end offsets found at start, then fire every window and stop.
    pub stop_at_end: bool,
    /// Partitions of the output topic if weir creates it.
    pub output_partitions: usize,
    /// An input partition with nothing new for this long stops holding windows back.
    pub idle_timeout: Duration,
    /// Complete checkpoints to keep.
    pub keep: usize,
    /// The producer's `transaction.timeout.ms`: the broker aborts a transaction left open this
    /// long (the run was paused or cut off); the run then stops, and a restart recovers.
    /// `None`: 10 checkpoint intervals, at least 60 s.
    pub transaction_timeout: Option<Duration>,
    /// How lines are read.
    pub parse: ParseConfig,
    /// What is computed.
    pub job: JobOptions,
    /// Test hook: a pause inside the commit window (after the local checkpoint is durable,
    /// before the Kafka commit; the records are flushed to the broker first and the window is
    /// announced on stderr), so crash tests can kill a run there. Zero in normal use.
    pub commit_delay: Duration,
    /// Test hook: read at most 16 KiB at a time and pause this long after each read, so crash
    /// tests can kill a run mid-way. Zero in normal use.
    pub read_delay: Duration,
    /// Test hook: once every partition reached its end (bounded runs), the reader of partition
    /// `p` finishes `p` × this later, still injecting barriers meanwhile, so that barriers are
    /// requested while some readers have finished and others have not. Zero in normal use.
    pub finish_stagger: Duration,
    /// Set to end the run as if the input had ended here: every window fires, the last epoch
    /// commits and [`run`] returns (a graceful stop for library users; benchmarks use it).
    pub stop: Option<std::sync::Arc<AtomicBool>>,
    /// Requested to suspend the run: a last checkpoint commits (windows still open stay in its
    /// state, unfired), [`run`] returns ([`KafkaRunSummary::stopped_at`]) and running the job
    /// again resumes from it.
    pub suspend: Option<Stop>,
}

impl KafkaRunConfig {
    /// Defaults for a job from `from` to `to` with checkpoints in `dir`.
    pub fn new(from: Source, to: KafkaUrl, dir: impl Into<PathBuf>) -> Self {
        let id = weir_io::kafka::records::default_job_id(&from.to_string(), &to.to_string());
        Self {
            from,
            to,
            checkpoint_dir: dir.into(),
            interval: Duration::from_secs(1),
            group: id.clone(),
            transactional_id: id,
            delivery: Delivery::ExactlyOnce,
            value_format: ValueFormat::Json,
            stop_at_end: false,
            output_partitions: 4,
            idle_timeout: Duration::from_secs(2),
            keep: 2,
            transaction_timeout: None,
            parse: ParseConfig::default(),
            job: JobOptions::default(),
            commit_delay: Duration::ZERO,
            read_delay: Duration::ZERO,
            finish_stagger: Duration::ZERO,
            stop: None,
            suspend: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct KafkaRunSummary {
    /// The log format used.
    pub format: Option<LogFormat>,
    /// Lines read by this run (after the restored position), malformed ones counted; examples
    /// carry the offset in `line` and the partition in [`KafkaRunSummary::example_partitions`].
    pub parse: ParseStats,
    /// The partition of each malformed example.
    pub example_partitions: Vec<i32>,
    /// The engine's counters.
    pub job: JobStats,
    /// Transactions committed by this run.
    pub commits: u64,
    /// Result records produced by this run.
    pub records: u64,
    /// The epoch this run resumed from (0: the start).
    pub resumed_from: u64,
    /// Whether the job had already finished before this run (nothing was done).
    pub already_finished: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// The run was suspended at this committed epoch, before the end of its input: running it
    /// again resumes there.
    pub stopped_at: Option<u64>,
}

pub use weir_io::kafka::sink::PartitionPosition;
use weir_io::kafka::sink::Positions;

/// What a partition reader tells the coordinator.
enum Report {
    /// Its position at barrier `n`.
    At(u64, PartitionPosition),
    /// Its position at the end of its input (bounded runs, or a suspend).
    Final(PartitionPosition),
    /// It failed (its error says why).
    Failed,
}

/// Runs the job until the input ends (`stop_at_end`) or forever; `say` gets progress messages.
pub fn run(cfg: &KafkaRunConfig, say: &(dyn Fn(&str) + Sync)) -> Result<KafkaRunSummary> {
    let started_at = Instant::now();
    if cfg.job.late_output.is_some() {
        return Err(Error::usage(
            "--late-output is not exactly-once; leave it out with a Kafka output",
        ));
    }
    let (partitions, file) = match &cfg.from {
        Source::Kafka(from) => {
            let n = connect(from)?.ok_or_else(|| {
                Error::usage(format!(
                    "{from}: the input topic does not exist (create it, or produce to it first)"
                ))
            })?;
            (n, None)
        }
        Source::File(path) => {
            crate::replay::check_paths(Some(path), &[], Some(&cfg.checkpoint_dir))?;
            (1, Some(crate::checkpointed::open_rewindable(path)?))
        }
    };
    ensure_topic(&cfg.to, cfg.output_partitions)?;
    let progress_topic = KafkaUrl {
        brokers: cfg.to.brokers.clone(),
        topic: PROGRESS_TOPIC.into(),
    };
    ensure_topic(&progress_topic, 1)?;

    let mut store = CheckpointStore::open(&cfg.checkpoint_dir)?;
    let mut producer = JobProducer::open(ProducerOptions {
        brokers: cfg.to.brokers.clone(),
        transactional_id: cfg.transactional_id.clone(),
        group: cfg.group.clone(),
        delivery: cfg.delivery,
        transaction_timeout: cfg
            .transaction_timeout
            .unwrap_or((cfg.interval * 10).max(Duration::from_secs(60))),
    })?;
    let inputs: Vec<(String, i32)> = match &cfg.from {
        Source::Kafka(from) => (0..partitions as i32)
            .map(|p| (from.topic.clone(), p))
            .collect(),
        Source::File(_) => Vec::new(),
    };
    let (progress, committed_inputs) = producer.read_progress(&inputs)?;
    let mut summary = KafkaRunSummary::default();
    let finished = |epoch: u64| {
        say(&format!(
            "the job finished at epoch {epoch}: its output is committed; nothing to do"
        ));
        KafkaRunSummary {
            already_finished: true,
            resumed_from: epoch,
            elapsed: started_at.elapsed(),
            ..KafkaRunSummary::default()
        }
    };
    if let Some(p) = progress.as_ref().filter(|p| p.finished) {
        return Ok(finished(p.epoch));
    }

    let mut detection_readers = Vec::new();
    let format = match (&cfg.from, &file) {
        (Source::Kafka(from), _) => {
            let (format, opened) =
                pick_kafka_format(cfg.parse.format, from, partitions, &cfg.group)?;
            detection_readers = opened;
            format
        }
        (Source::File(path), Some(f)) => {
            let data = f.bytes();
            pick_format(&cfg.parse, &data[..data.len().min(1 << 16)], path)?
        }
        (Source::File(_), None) => unreachable!("the file was opened above"),
    };
    summary.format = Some(format);
    let opts = parse_options(&cfg.parse, format, &cfg.job.keys)?;
    let id = identity(cfg, partitions, format, file.as_ref())?;
    let committed = progress.as_ref().map_or(0, |p| p.epoch);
    let restored = restore_point(&store, &id, progress.as_ref(), cfg)?;
    store.continue_after(committed)?;
    let positions: Vec<PartitionPosition> = match &restored {
        Some(r) => {
            let pos: Positions = serde_json::from_value(r.sources.clone()).map_err(|e| {
                Error::Refused(format!(
                    "{}: unreadable partition positions: {e}",
                    r.path().display()
                ))
            })?;
            for (p, offset) in committed_inputs.iter().enumerate() {
                let local = pos.partitions.iter().find(|x| x.partition == p as i32);
                if local.map(|l| l.offset) != *offset {
                    return Err(Error::Mismatch(format!(
                        "{}: partition {p} is at offset {:?} in the checkpoint but group {} \
                         committed {:?}: local state and Kafka disagree",
                        r.path().display(),
                        local.map(|l| l.offset),
                        cfg.group,
                        offset
                    )));
                }
            }
            pos.partitions
        }
        None => Vec::new(),
    };
    summary.resumed_from = committed;
    if committed > 0 {
        let at: Vec<String> = positions
            .iter()
            .map(|p| format!("{}@{}", p.partition, p.offset))
            .collect();
        say(&format!(
            "resuming from epoch {committed}: partition@offset {}",
            at.join(" ")
        ));
    }

    // Readers first: a broker that cannot serve a partition fails the run before the job starts.
    let mut readers = Vec::with_capacity(partitions);
    match (&cfg.from, file) {
        (Source::Kafka(from), _) => {
            let mut detection_readers = detection_readers.into_iter();
            for p in 0..partitions as i32 {
                let start = positions.iter().find(|x| x.partition == p);
                // The format detection's reader of this partition, if it opened one, is at the
                // partition's start with its records handed back: a fresh run reads on from it.
                let detected = detection_readers.next().filter(|_| start.is_none());
                let reader = match detected {
                    Some(r) => r,
                    None => PartitionReader::open(from, p, start.map(|s| s.offset), &cfg.group)?,
                };
                let end = if cfg.stop_at_end {
                    Some(reader.end_offset()?)
                } else {
                    None
                };
                readers.push((Reader::Kafka(reader), start.map(|s| s.max_ts), end));
            }
        }
        (Source::File(_), Some(file)) => {
            let start = positions.first();
            let end = file.bytes().len() as i64;
            let reader = FileReader::new(
                file,
                start.map_or(0, |s| s.offset as usize),
                start.map_or(0, |s| s.lines),
            );
            readers.push((Reader::File(reader), start.map(|s| s.max_ts), Some(end)));
        }
        (Source::File(_), None) => unreachable!("the file was opened above"),
    }

    let spec = job_builder(&cfg.job, partitions)
        .idle_timeout(cfg.idle_timeout)
        .checkpoints(true)
        .build()?;
    let schema = LineParser::new(opts.clone()).schema();
    producer.begin()?;
    crate::metrics::watch_commits(producer.commit_counts());
    let records = std::sync::Arc::new(AtomicU64::new(0));
    let (sink, mut committer) = transactional(
        producer,
        TransactionalConfig {
            topic: cfg.to.topic.clone(),
            key_columns: cfg.job.keys.len(),
            format: cfg.value_format,
            epoch: committed + 1,
            job: cfg.transactional_id.clone(),
            offsets: OffsetsOf::Progress(match &cfg.from {
                Source::Kafka(from) => Some(from.topic.clone()),
                Source::File(_) => None,
            }),
            record: serde_json::json!({
                "kafka": cfg.to.to_string(),
                "group": cfg.group,
                "transactional_id": cfg.transactional_id,
            }),
            commit_delay: cfg.commit_delay,
        },
        records.clone(),
    );
    let sink = Box::new(sink);
    let mut job = match &restored {
        Some(r) => spec.start_restored(schema.clone(), sink, &r.states())?,
        None => spec.start_with_sink(schema, sink)?,
    };
    let snap_rx = job.take_snapshots().expect("built with checkpoints");
    crate::metrics::watch_job(&job, &cfg.job, |p| input_label(&cfg.from, p));
    let job_inputs = job.take_inputs();

    let requested = AtomicU64::new(committed);
    let last_epoch = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let at_end = AtomicUsize::new(0);
    let (pos_tx, pos_rx) = crossbeam_channel::unbounded();
    let shared = Shared {
        requested: &requested,
        last_epoch: &last_epoch,
        failed: &failed,
        at_end: &at_end,
        readers: partitions,
        stop: cfg.stop.as_deref(),
        finish_stagger: cfg.finish_stagger,
        say,
    };
    let (read, coordinated) = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for ((reader, max_ts, end), input) in readers.into_iter().zip(job_inputs) {
            let pos_tx = pos_tx.clone();
            let opts = opts.clone();
            let shared = &shared;
            let delay = cfg.read_delay;
            handles.push(s.spawn(move || {
                let r = read_partition(
                    reader, input, opts, max_ts, end, shared, &pos_tx, committed, delay,
                );
                if r.is_err() {
                    shared.failed.store(true, Ordering::Relaxed);
                    let _ = pos_tx.send(Report::Failed);
                }
                r
            }));
        }
        drop(pos_tx);
        let mut barriers = KafkaBarriers {
            shared: &shared,
            reports: pos_rx,
            epoch: 0,
            at: Vec::new(),
            finals: Vec::new(),
        };
        let dropping = |epoch: u64, last: u64| {
            format!(
                "epoch {epoch}, whose transaction the broker aborts: running the same command \
                 again resumes from epoch {last}"
            )
        };
        let coordinated = Coordinator {
            store: &mut store,
            id: &id,
            interval: cfg.interval,
            keep: cfg.keep,
            workers: cfg.job.parallelism,
            snapshots: &snap_rx,
            stop: cfg.suspend.as_ref(),
            dropping: &dropping,
        }
        .run(&mut barriers, &mut committer, committed);
        drop(committer);
        if coordinated.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        let read: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("partition reader panicked"))
            .collect();
        (read, coordinated)
    });
    let joined = job.join().map_err(Error::from);
    let mut parse = ParseStats::default();
    let mut reader_err = None;
    for r in read {
        match r {
            Ok((p, stats)) => {
                for _ in &stats.examples {
                    summary.example_partitions.push(p);
                }
                parse.lines += stats.lines;
                parse.bytes += stats.bytes;
                parse.rows += stats.rows;
                parse.malformed += stats.malformed;
                parse.examples.extend(stats.examples);
            }
            Err(e) => reader_err = Error::most_telling(reader_err.into_iter().chain([e])),
        }
    }
    let (job_stats, (commits, stopped_at)) = match (joined, coordinated, reader_err) {
        (Ok(j), Ok(c), None) => (j, (c.committed, c.stopped_at)),
        // The job's error first (a sink failure), then the coordinator's, then a reader's.
        (j, c, r) => {
            let errors = [j.err(), c.err(), r].into_iter().flatten();
            return Err(Error::most_telling(errors).expect("one of them failed"));
        }
    };
    summary.commits = commits;
    summary.stopped_at = stopped_at;
    summary.parse = parse;
    summary.job = job_stats;
    summary.records = records.load(Ordering::Relaxed);
    summary.elapsed = started_at.elapsed();
    Ok(summary)
}

/// The metrics label of engine input `p`: `TOPIC/P` for a Kafka partition, the path for a file.
fn input_label(from: &Source, p: usize) -> String {
    match from {
        Source::Kafka(url) => format!("{}/{p}", url.topic),
        Source::File(path) => crate::metrics::path_label(path),
    }
}

/// What the readers and the coordinator share.
struct Shared<'a> {
    /// The newest barrier requested.
    requested: &'a AtomicU64,
    /// The barrier after which every reader finishes (a suspend); 0: none.
    last_epoch: &'a AtomicU64,
    /// Something failed: stop.
    failed: &'a AtomicBool,
    /// Readers that reached their end offset (bounded runs).
    at_end: &'a AtomicUsize,
    /// Readers in all.
    readers: usize,
    /// The caller's stop request.
    stop: Option<&'a AtomicBool>,
    /// See [`KafkaRunConfig::finish_stagger`].
    finish_stagger: Duration,
    /// Progress messages.
    say: &'a (dyn Fn(&str) + Sync),
}

/// How long a reader of a bounded run may get nothing while short of its end before it says so
/// (and again after as long): a broker that stopped serving a partition is otherwise invisible,
/// as checkpoints go on.
const QUIET_WARNING: Duration = Duration::from_secs(30);

/// The checkpoint to restore for the Kafka progress `progress`, checked against the local
/// folder: `None` for a fresh start.
fn restore_point(
    store: &CheckpointStore,
    id: &JobIdentity,
    progress: Option<&Progress>,
    cfg: &KafkaRunConfig,
) -> Result<Option<crate::checkpointed::store::Restored>> {
    let dir = cfg.checkpoint_dir.as_path();
    let start_over = start_over(cfg);
    let local = store.epochs()?;
    let Some(p) = progress else {
        // Nothing committed: at most the first checkpoint can exist, uncommitted.
        if let Some(&e) = local.iter().find(|&&e| e > 1) {
            return Err(Error::Mismatch(format!(
                "{} holds checkpoint {} but the broker has no committed progress for this job: \
                 the broker lost its state, or the folder belongs to another job (another \
                 --group / --transactional-id); move the folder away to start over",
                dir.display(),
                e
            )));
        }
        return Ok(None);
    };
    if local.iter().any(|&e| e > p.epoch + 1) {
        return Err(Error::Mismatch(format!(
            "{}: local checkpoints go beyond epoch {} + 1, the one the broker committed: the \
             broker lost committed transactions, or the folder belongs to another job. \
             {start_over}",
            dir.display(),
            p.epoch
        )));
    }
    store.continue_after(p.epoch)?;
    let found = store.latest_valid(id, &start_over, |_| Ok(()))?;
    let r = match found.checkpoint {
        Some(r) if r.epoch == p.epoch => r,
        other => {
            let mut msg = format!(
                "the broker committed epoch {} of {} but {} has no valid checkpoint {} ({}): \
                 the job's checkpoints are in another folder, or were lost",
                p.epoch,
                p.job,
                dir.display(),
                store.folder(p.epoch).display(),
                match other {
                    Some(r) => format!("the newest valid one is {}", r.epoch),
                    None => "none is valid".into(),
                }
            );
            for s in found.skipped {
                msg.push_str("; ");
                msg.push_str(&s);
            }
            msg.push_str(". ");
            msg.push_str(&start_over);
            return Err(Error::Mismatch(msg));
        }
    };
    let hash = r.manifest_hash();
    if hash != p.manifest {
        return Err(Error::Refused(format!(
            "{}: its manifest hash {hash} is not the {} the broker committed with epoch {}: \
             the checkpoint was replaced or tampered with. {start_over}",
            r.path().join("MANIFEST").display(),
            p.manifest,
            p.epoch
        )));
    }
    Ok(Some(r))
}

/// The sentence that ends every refusal of a Kafka job's checkpoint: how to start over. There
/// is no `--fresh`: what the job committed to its output topic stays there, so starting over
/// means another job (another output topic, or another group for a topic input).
pub fn start_over(cfg: &KafkaRunConfig) -> String {
    let other = match cfg.from {
        Source::File(_) => "send to another output topic",
        Source::Kafka(_) => "run it with another --group",
    };
    format!(
        "What this job committed to {} stays there: to start over, {other} with another \
         --checkpoint-dir",
        cfg.to
    )
}

/// The identity of a Kafka job: what must not change for a checkpoint to be restored. A file
/// input's length, modification time, inode and sampled checksums are part of it
/// ([`InputFile`]), as for a file replay.
fn identity(
    cfg: &KafkaRunConfig,
    partitions: usize,
    format: LogFormat,
    file: Option<&MappedFile>,
) -> Result<JobIdentity> {
    let from = match (&cfg.from, file) {
        (Source::File(p), Some(_)) => p
            .canonicalize()
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        _ => cfg.from.to_string(),
    };
    let input_file = match file {
        Some(f) => Some(crate::checkpointed::input_identity(f)?),
        None => None,
    };
    Ok(JobIdentity {
        input: format!(
            "{from} ({partitions} partitions, {}, {:?}) to {} ({:?})",
            format.name(),
            cfg.job.watermark,
            cfg.to,
            cfg.value_format
        ),
        window_ms: cfg.job.window.as_millis() as i64,
        keys: cfg.job.keys.clone(),
        aggregates: vec!["count(*)".into()],
        parallelism: cfg.job.parallelism,
        key_groups: cfg.job.key_groups,
        input_file,
    })
}

/// The configured format, or the one detected from the first records of the first partition
/// that has any (combined if the topic is empty). Also returns the readers it opened, each at
/// the start of its partition with what it read handed back: a run that starts there uses them.
fn pick_kafka_format(
    configured: Option<LogFormat>,
    from: &KafkaUrl,
    partitions: usize,
    group: &str,
) -> Result<(LogFormat, Vec<PartitionReader>)> {
    let mut opened = Vec::new();
    if let Some(f) = configured {
        return Ok((f, opened));
    }
    for p in 0..partitions {
        let mut r = PartitionReader::open(from, p as i32, None, group)?;
        let end = r.end_offset()?;
        let mut sample = Vec::new();
        let mut runs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sample.len() < 1 << 16 && r.position() < end && Instant::now() < deadline {
            let at = sample.len();
            let run = r.read(&mut sample, 1 << 16, Duration::from_millis(200))?;
            runs.push((run, sample[at..].to_vec()));
        }
        for (run, lines) in runs {
            r.unread(run, lines);
        }
        opened.push(r);
        if !sample.is_empty() {
            let format = detect_format(&sample).ok_or_else(|| {
                Error::usage(format!(
                    "{from} partition {p}: cannot detect the log format from the first records \
                     (combined, common or simple); pass --format"
                ))
            })?;
            return Ok((format, opened));
        }
    }
    Ok((LogFormat::Combined, opened))
}

/// The log format of a topic's records, detected from the first records of the first
/// partition that has any (combined if the topic is empty).
pub(crate) fn detect_topic_format(
    from: &KafkaUrl,
    partitions: usize,
    group: &str,
) -> Result<LogFormat> {
    Ok(pick_kafka_format(None, from, partitions, group)?.0)
}

/// One partition, driven by the one source driver until its split ends (a bounded run, once
/// every partition reached its end) or the run stops at its last barrier. Returns the partition
/// and its parse counters.
#[allow(clippy::too_many_arguments)]
fn read_partition(
    reader: Reader,
    mut input: Input,
    opts: ParseOptions,
    max_ts: Option<i64>,
    end: Option<i64>,
    shared: &Shared<'_>,
    positions: &Sender<Report>,
    injected: u64,
    delay: Duration,
) -> Result<(i32, ParseStats)> {
    let partition = reader.partition();
    if let Some(ts) = max_ts {
        input.advance_to(ts)?;
    }
    let mut split = PartitionSplit {
        reader,
        shared,
        positions,
        injected,
        end,
        reached_end: false,
        finish_at: None,
        last_record: Instant::now(),
        buf: Vec::with_capacity(1 << 20),
        // Small reads when throttled, so that a slowed run still moves in small steps.
        read_bytes: if delay.is_zero() { 1 << 20 } else { 1 << 14 },
        meter: crate::metrics::meter(input.index()),
    };
    let meter = split.meter.clone();
    let mut driver = Driver::new(LineParser::new(opts))
        .with_pace(delay)
        .with_meter(meter.driver());
    driver.run(&mut split, &mut input)?;
    input.finish()?;
    Ok((partition, driver.into_stats()))
}

/// A partition's split: runs of records; a barrier wherever the reader is when one is
/// requested; in a bounded run, the end once every partition has reached its end offset.
struct PartitionSplit<'a> {
    reader: Reader,
    shared: &'a Shared<'a>,
    positions: &'a Sender<Report>,
    /// The last barrier injected.
    injected: u64,
    /// The end offset of a bounded run.
    end: Option<i64>,
    reached_end: bool,
    /// When this partition finishes, once every partition is at its end (staggered).
    finish_at: Option<Instant>,
    last_record: Instant,
    buf: Vec<u8>,
    read_bytes: usize,
    /// The partition's metrics (its consumer lag is measured here).
    meter: crate::metrics::Meter,
}

impl PartitionSplit<'_> {
    fn position(&self, input: &Input) -> PartitionPosition {
        PartitionPosition {
            partition: self.reader.partition(),
            offset: self.reader.position(),
            max_ts: input.max_timestamp(),
            lines: self.reader.lines_before(),
        }
    }
}

impl Split for PartitionSplit<'_> {
    fn next(&mut self) -> weir_io::Result<Step<'_>> {
        let shared = self.shared;
        if shared.failed.load(Ordering::Relaxed) {
            return Err(weir_io::Error::Stopped("another part of the run failed"));
        }
        let want = shared.requested.load(Ordering::Acquire);
        if want > self.injected {
            self.injected = want;
            // The last barrier (a suspend): nothing after it is read.
            let last = shared.last_epoch.load(Ordering::Acquire) == want;
            return Ok(Step::Barrier { epoch: want, last });
        }
        let stopped = shared.stop.is_some_and(|s| s.load(Ordering::Relaxed));
        let past_end = self.end.is_some_and(|e| self.reader.position() >= e);
        if !self.reached_end && (stopped || past_end) {
            self.reached_end = true;
            shared.at_end.fetch_add(1, Ordering::AcqRel);
        }
        if self.reached_end {
            let all_at_end = shared.at_end.load(Ordering::Acquire) == shared.readers;
            if all_at_end && self.finish_at.is_none() {
                let stagger = shared.finish_stagger * self.reader.partition() as u32;
                self.finish_at = Some(Instant::now() + stagger);
            }
            if self.finish_at.is_some_and(|t| Instant::now() >= t) {
                return Ok(Step::End);
            }
            std::thread::sleep(Duration::from_millis(5));
            return Ok(Step::Idle);
        }
        self.buf.clear();
        let run = self
            .reader
            .read(&mut self.buf, self.read_bytes, Duration::from_millis(50))?;
        self.meter
            .consumer_lag(self.reader.position(), || self.reader.end_offset());
        if run.lines > 0 {
            self.last_record = Instant::now();
            return Ok(Step::Lines {
                bytes: &self.buf,
                first_line: Some(run.first as u64),
                // Nothing more for now: do not keep rows while the partition is quiet.
                flush: run.caught_up,
            });
        }
        if let Some(e) = self
            .end
            .filter(|_| self.last_record.elapsed() >= QUIET_WARNING)
        {
            (shared.say)(&format!(
                "partition {}: nothing read for {} s at offset {}, short of its end {e}",
                self.reader.partition(),
                QUIET_WARNING.as_secs(),
                self.reader.position()
            ));
            self.last_record = Instant::now();
        }
        Ok(Step::Idle)
    }

    fn barrier(&mut self, epoch: u64, input: &Input) {
        let _ = self.positions.send(Report::At(epoch, self.position(input)));
    }

    fn ended(&mut self, input: &Input) {
        let _ = self.positions.send(Report::Final(self.position(input)));
    }
}

/// The barrier side of a Kafka job: a barrier is requested through [`Shared`] and injected by
/// every partition reader before its next read, which reports its position with it.
struct KafkaBarriers<'a> {
    shared: &'a Shared<'a>,
    reports: Receiver<Report>,
    /// The barrier requested last, and the positions reported for it.
    epoch: u64,
    at: Vec<PartitionPosition>,
    /// Final positions of readers that finished.
    finals: Vec<PartitionPosition>,
}

impl BarrierSource for KafkaBarriers<'_> {
    type Report = Report;

    fn reports(&self) -> Receiver<Report> {
        self.reports.clone()
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::At(e, p) if e == self.epoch => self.at.push(p),
            Report::At(..) => {}
            Report::Final(p) => self.finals.push(p),
            // The reader set `Shared::failed` before it sent this: the report only wakes the
            // coordinator up.
            Report::Failed => {}
        }
    }

    fn request(&mut self, epoch: u64, last: bool) {
        self.epoch = epoch;
        self.at.clear();
        if last {
            // Readers see the last epoch no later than its barrier request.
            self.shared.last_epoch.store(epoch, Ordering::Release);
        }
        self.shared.requested.store(epoch, Ordering::Release);
    }

    fn positions(&self, epoch: u64) -> Option<serde_json::Value> {
        let at = with_finals(&self.at, &self.finals);
        (epoch == self.epoch && at.len() == self.shared.readers)
            .then(|| serde_json::to_value(Positions { partitions: at }).expect("serialisable"))
    }

    fn final_positions(&self) -> Option<serde_json::Value> {
        (self.finals.len() == self.shared.readers).then(|| {
            let mut partitions = self.finals.clone();
            partitions.sort_by_key(|p| p.partition);
            serde_json::to_value(Positions { partitions }).expect("serialisable")
        })
    }

    fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    fn missing(&self, _epoch: u64) -> String {
        format!(
            "positions from {} of {} partitions",
            with_finals(&self.at, &self.finals).len(),
            self.shared.readers
        )
    }
}

/// The positions of an epoch by partition: those the readers sent with its barrier and, for a
/// reader that had already finished when the barrier was requested (a bounded run ending, the
/// others still injecting), its final position. The engine aligns a barrier over an input that
/// ended after all of its rows, so the epoch's state holds everything before that position.
fn with_finals(at: &[PartitionPosition], finals: &[PartitionPosition]) -> Vec<PartitionPosition> {
    let mut all = at.to_vec();
    all.extend(
        finals
            .iter()
            .filter(|f| !at.iter().any(|p| p.partition == f.partition))
            .cloned(),
    );
    all.sort_by_key(|p| p.partition);
    all
}
