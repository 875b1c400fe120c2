//! One generation of a scale-out member: the partitions the group assigned it, from the
//! state committed in Kafka until the input ends or the partitions are taken away.
//!
//! ```text
//!  committed offsets + metadata ─▶ readers at their restart points
//!  input partitions u ─▶ ShuffleWriter ─▶ shuffle topic (rows by key group, event time)  ┐ one
//!  shuffle partitions q (or keyed input) ─▶ splits ─▶ engine ─▶ KafkaSink (output)       │ transaction
//!  coordinator: barrier n ─▶ positions + snapshots ─▶ local checkpoint ─▶ commit offsets ┘ per epoch
//!               (with metadata, under the group's generation: KIP-447)
//! ```
//!
//! A generation never restores from the local folder: the coordinator still writes its
//! checkpoints there (the member's folder holds its lock and its last two checkpoints, for
//! inspection), but the state comes from Kafka, so a member that lost its disk, or another
//! member, resumes the same way.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use rdkafka::consumer::ConsumerGroupMetadata;
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::JobIdentity;
use weir_engine::{Input, Partitioner};
use weir_io::kafka::reader::PartitionReader;
use weir_io::kafka::sink::{transactional, OffsetsOf, OpenTransaction, TransactionalConfig};
use weir_io::kafka::txn::{CommittedOffset, Delivery, JobProducer, ProducerOptions};
use weir_io::parse::{LineParser, ParseStats};
use weir_io::split::{Driver, Split};

use super::splits::{
    fired_of, restart_point, KeyedSplit, OpenRuns, Placeholder, Position, Report, Resume, Shared,
    ShuffleWriter, ShuffledSplit,
};
use super::state::{self, Downstream, JobEnds, Upstream};
use super::{Member, MemberConsumer};
use crate::checkpointed::store::CheckpointStore;
use crate::coordinator::{BarrierSource, Coordinator};
use crate::error::{Error, Result};
use crate::replay::job_builder;

/// What the group assigned a member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Assignment {
    /// Input partitions it reads into the shuffle.
    pub upstream: Vec<i32>,
    /// Partitions whose rows it aggregates (shuffle partitions, or keyed input partitions).
    pub downstream: Vec<i32>,
}

impl Assignment {
    pub(super) fn is_empty(&self) -> bool {
        self.upstream.is_empty() && self.downstream.is_empty()
    }
}

/// What a generation did.
#[derive(Debug, Default)]
pub(super) struct Ran {
    pub parse: ParseStats,
    pub rows: u64,
    pub records: u64,
    pub commits: u64,
}

/// Runs one generation until its input ends or `stop` is set.
pub(super) fn run(
    m: &Member<'_>,
    consumer: &MemberConsumer,
    group: Arc<ConsumerGroupMetadata>,
    asg: &Assignment,
    store: &mut CheckpointStore,
    stop: Arc<AtomicBool>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Ran> {
    let cfg = m.cfg;
    let brokers = &cfg.from.brokers;
    let ups: Vec<(String, i32)> = asg
        .upstream
        .iter()
        .map(|&p| (cfg.from.topic.clone(), p))
        .collect();
    let downs: Vec<(String, i32)> = asg
        .downstream
        .iter()
        .map(|&p| (m.down_topic.clone(), p))
        .collect();
    let up_state = state::read::<Upstream>(consumer, brokers, &cfg.group, &ups)?;
    let down_state = state::read::<Downstream>(consumer, brokers, &cfg.group, &downs)?;

    let mut producer = JobProducer::open(ProducerOptions {
        brokers: cfg.to.brokers.clone(),
        transactional_id: m.transactional_id.clone(),
        group: cfg.group.clone(),
        delivery: Delivery::ExactlyOnce,
        transaction_timeout: cfg.transaction_timeout,
    })?;
    producer.begin()?;
    let sender = producer.sender();

    let cached = cached(m, store, asg, &down_state)?;
    if cached.is_none() {
        if let Some(&newest) = store.epochs()?.last() {
            say(&format!(
                "discarding the checkpoints in {} (the newest is {newest}): the group has \
                 committed this member's partitions elsewhere since, or others; resuming from \
                 Kafka",
                cfg.checkpoint_dir.display()
            ));
            store.continue_after(0)?;
        }
    }
    let last = store.epochs()?.last().copied().unwrap_or(0);
    store.continue_after(last)?;
    let inputs = asg.downstream.len().max(1);
    let spec = job_builder(&cfg.job, inputs).checkpoints(true).build()?;
    let schema = LineParser::new(m.opts.clone()).schema();
    let open = Arc::new(OpenTransaction::default());
    let records = Arc::new(AtomicU64::new(0));
    let ends = m.ends.clone();
    let (down_topic, from_topic) = (m.down_topic.clone(), cfg.from.topic.clone());
    let member_id = m.member_id.clone();
    let offsets = move |positions: &serde_json::Value, manifest: &str| {
        let cache = format!("{member_id}/{manifest}");
        commit_offsets(positions, &from_topic, &down_topic, ends.as_ref(), &cache)
    };
    let (sink, mut committer) = transactional(
        producer,
        TransactionalConfig {
            topic: cfg.to.topic.clone(),
            key_columns: cfg.job.keys.len(),
            format: cfg.value_format,
            epoch: last + 1,
            job: m.transactional_id.clone(),
            offsets: OffsetsOf::Member {
                offsets: Box::new(offsets),
                group,
                open: Arc::clone(&open),
            },
            record: serde_json::json!({
                "kafka": cfg.to.to_string(),
                "group": cfg.group,
                "transactional_id": m.transactional_id,
            }),
            commit_delay: cfg.commit_delay,
        },
        records.clone(),
    );
    let (mut job, starts) = match cached {
        Some((restored, at)) => {
            say(&format!(
                "restoring partitions {:?} from {} (the epoch the group committed for them)",
                asg.downstream,
                restored.path().display()
            ));
            let job = spec.start_restored(schema.clone(), Box::new(sink), &restored.states())?;
            let starts: Vec<Start> = at
                .positions
                .into_iter()
                .filter(|p| !p.partition().0)
                .map(|p| Start::Cached(p, at.fired))
                .collect();
            (job, starts)
        }
        None => {
            let job = spec.start_with_sink(schema.clone(), Box::new(sink))?;
            (job, down_state.into_iter().map(Start::Kafka).collect())
        }
    };
    let snapshots = job.take_snapshots().expect("built with checkpoints");
    let job_inputs = job.take_inputs();

    let shared = Shared {
        requested: AtomicU64::new(last),
        failed: AtomicBool::new(false),
        stop,
        fired: AtomicI64::new(i64::MIN),
        writers_open: AtomicUsize::new(asg.upstream.len()),
        open,
        windows: spec.windows(),
        read_delay: cfg.read_delay,
    };
    let router_spec = job_builder(&cfg.job, 1)
        .parallelism(m.shuffle_partitions)
        .build()?;
    let id = identity(m);
    let (reports_tx, reports_rx) = crossbeam_channel::unbounded();
    let readers = asg.upstream.len() + asg.downstream.len();

    let (read, coordinated) = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (&u, st) in asg.upstream.iter().zip(&up_state) {
            let (shared, tx, sender) = (&shared, reports_tx.clone(), sender.clone());
            let (router_spec, schema) = (&router_spec, schema.clone());
            handles.push(s.spawn(move || {
                let writer = || -> Result<(i32, ParseStats)> {
                    let start = st.as_ref().map(|c| c.offset);
                    ShuffleWriter {
                        reader: PartitionReader::open(&cfg.from, u, start, &cfg.group)?,
                        shared,
                        reports: &tx,
                        injected: last,
                        parser: LineParser::new(m.opts.clone()),
                        router: Partitioner::new(router_spec, schema)?,
                        sender,
                        topic: m.down_topic.clone(),
                        partitions: m.shuffle_partitions as i32,
                        max_ts: st.as_ref().map_or(i64::MIN, |c| c.meta.max_ts),
                        ended: st.as_ref().is_some_and(|c| c.meta.ended),
                        end: m.ends.as_ref().map(|e| e.ends[u as usize]),
                    }
                    .run()
                };
                let r = writer();
                shared.writers_open.fetch_sub(1, Ordering::AcqRel);
                failed_if_err(shared, &tx, r)
            }));
        }
        let mut job_inputs = job_inputs.into_iter();
        for (&q, start) in asg.downstream.iter().zip(starts) {
            let input = job_inputs.next().expect("one input per partition");
            let (shared, tx) = (&shared, reports_tx.clone());
            handles.push(s.spawn(move || {
                let r = read_downstream(m, q, start, input, shared, &tx, last);
                failed_if_err(shared, &tx, r)
            }));
        }
        if asg.downstream.is_empty() {
            let input = job_inputs.next().expect("one input");
            let shared = &shared;
            let bounded = m.ends.is_some();
            handles.push(s.spawn(move || {
                let mut split = Placeholder {
                    shared,
                    injected: last,
                    bounded,
                };
                let r = drive(&mut split, input, m);
                failed_if_err(shared, &reports_tx, r.map(|s| (-1, s)))
            }));
        } else {
            drop(reports_tx);
        }
        let mut barriers = MemberBarriers {
            shared: &shared,
            reports: reports_rx,
            readers,
            epoch: 0,
            at: Vec::new(),
            finals: Vec::new(),
        };
        let dropping = |epoch: u64, last: u64| {
            format!("epoch {epoch}, whose transaction the broker aborts (last committed {last})")
        };
        let coordinated = Coordinator {
            store,
            id: &id,
            interval: cfg.interval,
            keep: 2,
            workers: cfg.job.parallelism,
            snapshots: &snapshots,
            stop: None,
            dropping: &dropping,
        }
        .run(&mut barriers, &mut committer, last);
        drop(committer);
        if coordinated.is_err() {
            shared.failed.store(true, Ordering::Relaxed);
        }
        let read: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("a reader panicked"))
            .collect();
        (read, coordinated)
    });
    let joined = job.join().map_err(Error::from);
    let mut ran = Ran::default();
    let mut reader_err = None;
    for r in read {
        match r {
            Ok((_, stats)) => ran.parse.merge(&stats),
            Err(e) => reader_err = Error::most_telling(reader_err.into_iter().chain([e])),
        }
    }
    match (joined, coordinated, reader_err) {
        (Ok(j), Ok(c), None) => {
            ran.rows = j.rows_in;
            ran.commits = c.committed;
            ran.records = records.load(Ordering::Relaxed);
            Ok(ran)
        }
        (j, c, r) => {
            let errors = [j.err(), c.err(), r].into_iter().flatten();
            Err(Error::most_telling(errors).expect("one of them failed"))
        }
    }
}

/// A reader's result; on an error, the generation stops and the coordinator hears of it.
fn failed_if_err<T>(
    shared: &Shared,
    reports: &crossbeam_channel::Sender<Report>,
    r: Result<T>,
) -> Result<T> {
    if r.is_err() {
        shared.failed.store(true, Ordering::Relaxed);
        let _ = reports.send(Report::Failed);
    }
    r
}

/// Drives one split into its engine input and finishes the input.
fn drive<S: Split>(split: &mut S, mut input: Input, m: &Member<'_>) -> Result<ParseStats> {
    let mut driver = Driver::new(LineParser::new(m.opts.clone()));
    driver.run(split, &mut input)?;
    input.finish()?;
    Ok(driver.into_stats())
}

/// Where a downstream partition starts.
enum Start {
    /// From what the group committed: its restart point, re-reading the rows of open windows
    /// (`None`: nothing committed, the partition's start).
    Kafka(Option<state::Committed<Downstream>>),
    /// From the member's local checkpoint (its state restored in the job): where it was then,
    /// with the fired bound of that epoch.
    Cached(Position, i64),
}

/// One downstream partition, through the driver.
fn read_downstream(
    m: &Member<'_>,
    partition: i32,
    start: Start,
    mut input: Input,
    shared: &Shared,
    reports: &crossbeam_channel::Sender<Report>,
    injected: u64,
) -> Result<(i32, ParseStats)> {
    let cfg = m.cfg;
    let fresh_marks = if cfg.keyed {
        vec![i64::MIN]
    } else {
        vec![i64::MIN; m.input_partitions]
    };
    let (resume, runs) = match start {
        Start::Kafka(Some(c)) => (
            Resume {
                from: Some(c.offset),
                replay_until: c.meta.next,
                fired: c.meta.fired,
                marks: c.meta.marks,
            },
            OpenRuns::default(),
        ),
        Start::Kafka(None) => (
            Resume {
                from: None,
                replay_until: i64::MIN,
                fired: i64::MIN,
                marks: fresh_marks,
            },
            OpenRuns::default(),
        ),
        Start::Cached(
            Position::Down {
                next,
                marks,
                runs,
                floor,
                ..
            },
            fired,
        ) => (
            Resume {
                from: Some(next),
                replay_until: i64::MIN,
                fired: fired_of(fired, floor),
                marks,
            },
            OpenRuns::from(runs),
        ),
        Start::Cached(Position::Up { .. }, _) => unreachable!("only downstream positions"),
    };
    let url = weir_io::kafka::KafkaUrl {
        brokers: cfg.from.brokers.clone(),
        topic: m.down_topic.clone(),
    };
    let reader = PartitionReader::open(&url, partition, resume.from, &cfg.group)?;
    let least = resume.marks.iter().copied().min().unwrap_or(i64::MIN);
    let stats = if cfg.keyed {
        if least > i64::MIN {
            input.advance_to(least)?;
        }
        let mut split = KeyedSplit {
            reader,
            shared,
            reports,
            injected,
            end: m.ends.as_ref().map(|e| e.ends[partition as usize]),
            buf: Vec::with_capacity(1 << 20),
            run_first: 0,
            max_ts: least,
            runs,
            resume,
        };
        drive(&mut split, input, m)?
    } else {
        input.hold_watermark();
        if least > i64::MIN {
            input.advance_to(least)?;
        }
        let mut split = ShuffledSplit {
            reader,
            shared,
            reports,
            injected,
            marks: resume.marks.clone(),
            ended: least == i64::MAX,
            resume,
            records: Vec::new(),
            at: 0,
            batches: Vec::new(),
            runs,
        };
        drive(&mut split, input, m)?
    };
    Ok((partition, stats))
}

/// The positions of one epoch, as the coordinator records them and the commit turns them into
/// offsets.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochPositions {
    epoch: u64,
    /// Windows that end at or before this have fired in every worker.
    fired: i64,
    positions: Vec<Position>,
}

/// The offsets (with their metadata) that commit an epoch.
fn commit_offsets(
    positions: &serde_json::Value,
    from_topic: &str,
    down_topic: &str,
    ends: Option<&JobEnds>,
    cache: &str,
) -> Vec<CommittedOffset> {
    let at: EpochPositions = serde_json::from_value(positions.clone()).expect("positions we wrote");
    let mut out: Vec<CommittedOffset> = at
        .positions
        .iter()
        .map(|p| match p {
            Position::Up {
                partition,
                offset,
                max_ts,
                ended,
            } => state::offset_of(
                from_topic,
                *partition,
                *offset,
                &Upstream {
                    epoch: at.epoch,
                    max_ts: *max_ts,
                    ended: *ended,
                },
            ),
            Position::Down {
                partition,
                next,
                marks,
                runs,
                floor,
                ended,
                ..
            } => {
                let fired = fired_of(at.fired, *floor);
                let (from, marks) = restart_point(runs, fired, *next, marks);
                state::offset_of(
                    down_topic,
                    *partition,
                    from,
                    &Downstream {
                        epoch: at.epoch,
                        next: *next,
                        fired,
                        marks,
                        ended: *ended,
                        cache: cache.to_owned(),
                    },
                )
            }
        })
        .collect();
    if let Some(ends) = ends {
        out.push(state::ends_offset(ends));
    }
    out
}

/// The barrier side of a generation: barriers are requested through [`Shared`]; every reader
/// injects them before its next read and reports its position with them.
struct MemberBarriers<'a> {
    shared: &'a Shared,
    reports: Receiver<Report>,
    readers: usize,
    epoch: u64,
    at: Vec<Position>,
    finals: Vec<Position>,
}

impl MemberBarriers<'_> {
    /// The positions of the current epoch: those reported with its barrier and, for readers
    /// that had ended, their final ones.
    fn current(&self) -> Vec<Position> {
        let mut all = self.at.clone();
        for f in &self.finals {
            if !all.iter().any(|p| p.partition() == f.partition()) {
                all.push(f.clone());
            }
        }
        all.sort_by_key(Position::partition);
        all
    }

    fn json(&self, epoch: u64, positions: Vec<Position>) -> serde_json::Value {
        // Every worker's watermark at the barrier is the least over the inputs that have not
        // ended (a member's job has no idle timeout): windows up to there have fired.
        let fired = positions
            .iter()
            .filter_map(|p| match p {
                Position::Down {
                    watermark,
                    ended: false,
                    ..
                } => Some(*watermark),
                _ => None,
            })
            .min()
            .unwrap_or(i64::MAX);
        serde_json::to_value(EpochPositions {
            epoch,
            fired,
            positions,
        })
        .expect("serialisable")
    }
}

impl BarrierSource for MemberBarriers<'_> {
    type Report = Report;

    fn reports(&self) -> Receiver<Report> {
        self.reports.clone()
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::At(e, p) if e == self.epoch => self.at.push(p),
            Report::At(..) | Report::Failed => {}
            Report::Final(p) => self.finals.push(p),
        }
    }

    fn request(&mut self, epoch: u64, _last: bool) {
        self.epoch = epoch;
        self.at.clear();
        self.shared.requested.store(epoch, Ordering::Release);
    }

    fn positions(&self, epoch: u64) -> Option<serde_json::Value> {
        let all = self.current();
        if epoch != self.epoch || all.len() != self.readers {
            return None;
        }
        let json = self.json(epoch, all);
        let fired = json["fired"].as_i64().expect("a number");
        self.shared.fired.fetch_max(fired, Ordering::AcqRel);
        Some(json)
    }

    fn final_positions(&self) -> Option<serde_json::Value> {
        if self.finals.len() != self.readers {
            return None;
        }
        let mut all = self.finals.clone();
        all.sort_by_key(Position::partition);
        Some(self.json(self.epoch + 1, all))
    }

    fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    fn missing(&self, _epoch: u64) -> String {
        format!(
            "positions from {} of {} readers",
            self.current().len(),
            self.readers
        )
    }
}

/// The member's local checkpoint to restore its downstream partitions from, with the positions
/// it recorded: only when the group's last commit of every one of them was this member's, of
/// that checkpoint (its manifest hash), and the checkpoint holds exactly these partitions.
/// Anything else (another member committed since, a damaged or missing checkpoint, another
/// share of partitions) is resumed from Kafka.
fn cached(
    m: &Member<'_>,
    store: &mut CheckpointStore,
    asg: &Assignment,
    down_state: &[Option<state::Committed<Downstream>>],
) -> Result<Option<(crate::checkpointed::store::Restored, EpochPositions)>> {
    let Some(Some(first)) = down_state.first() else {
        return Ok(None);
    };
    let (epoch, key) = (first.meta.epoch, first.meta.cache.clone());
    let Some(manifest) = key
        .strip_prefix(&m.member_id)
        .and_then(|k| k.strip_prefix('/'))
    else {
        return Ok(None);
    };
    let same = |c: &Option<state::Committed<Downstream>>| {
        c.as_ref()
            .is_some_and(|c| c.meta.cache == key && c.meta.epoch == epoch)
    };
    if !down_state.iter().all(same) || !store.epochs()?.contains(&epoch) {
        return Ok(None);
    }
    store.continue_after(epoch)?;
    let Ok(found) = store.latest_valid(&identity(m), "", |_| Ok(())) else {
        return Ok(None);
    };
    let Some(r) = found
        .checkpoint
        .filter(|r| r.epoch == epoch && !r.is_final && r.manifest_hash() == manifest)
    else {
        return Ok(None);
    };
    let Ok(at) = serde_json::from_value::<EpochPositions>(r.sources.clone()) else {
        return Ok(None);
    };
    let held: Vec<i32> = at
        .positions
        .iter()
        .filter(|p| !p.partition().0)
        .map(|p| p.partition().1)
        .collect();
    Ok((held == asg.downstream).then_some((r, at)))
}

/// The identity of a member's local checkpoints.
fn identity(m: &Member<'_>) -> JobIdentity {
    let cfg = m.cfg;
    JobIdentity {
        input: format!(
            "scale-out member of group {} ({} to {}, {}, {}, {:?})",
            cfg.group,
            cfg.from,
            cfg.to,
            if cfg.keyed { "keyed" } else { "shuffled" },
            m.format.name(),
            cfg.job.watermark
        ),
        window_ms: cfg.job.window.as_millis() as i64,
        keys: cfg.job.keys.clone(),
        aggregates: vec!["count(*)".into()],
        parallelism: cfg.job.parallelism,
        key_groups: cfg.job.key_groups,
        input_file: None,
    }
}
