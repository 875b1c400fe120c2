//! The readers of one generation of a scale-out member: the shuffle's writers (input partition
//! to shuffle topic, no engine input) and the splits that feed the member's engine job (a
//! shuffle partition, a keyed input partition, or a placeholder when the member aggregates
//! nothing).
//!
//! Every reader injects the barriers the coordinator requests ([`Shared::requested`]) and
//! reports its position with each, or its final position when it ends. A split that feeds
//! the engine also tracks the runs of records that hold rows of windows still open
//! ([`OpenRuns`]): the first of them is the offset the group commits (see [`super::state`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{BooleanArray, RecordBatch};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use weir_engine::{Input, Partitioner, TumblingWindows};
use weir_io::kafka::reader::{PartitionReader, RawRecord};
use weir_io::kafka::shuffle::{self, ShuffleRecord, UpstreamTime};
use weir_io::kafka::sink::OpenTransaction;
use weir_io::kafka::txn::RecordSender;
use weir_io::parse::{LineParser, ParseStats};
use weir_io::split::{max_timestamp, Counted, Split, Step};

use crate::error::{Error, Result};

/// Bytes a reader takes from its partition at a time.
const READ_BYTES: usize = 1 << 20;
/// How long a read waits for records.
const READ_WAIT: Duration = Duration::from_millis(50);

/// What a generation's readers and its coordinator share.
pub(super) struct Shared {
    /// The newest barrier requested.
    pub requested: AtomicU64,
    /// A reader failed, or the generation is being stopped: every reader stops.
    pub failed: AtomicBool,
    /// The generation was asked to stop (its partitions were revoked, or the member stops).
    pub stop: Arc<AtomicBool>,
    /// Windows that end at or before this have fired (as of the last gathered barrier).
    pub fired: AtomicI64,
    /// Shuffle writers of this generation that have not ended.
    pub writers_open: AtomicUsize,
    /// The epoch whose transaction is open.
    pub open: Arc<OpenTransaction>,
    /// The windows of the job.
    pub windows: TumblingWindows,
    /// Test hook: a pause after every read.
    pub read_delay: Duration,
}

impl Shared {
    /// Bytes a reader takes at a time: small reads when throttled, so that a slowed run still
    /// moves in small steps.
    fn read_bytes(&self) -> usize {
        if self.read_delay.is_zero() {
            READ_BYTES
        } else {
            1 << 14
        }
    }
}

impl Shared {
    fn check(&self) -> weir_io::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(weir_io::Error::Stopped(
                "the member's partitions were reassigned",
            ));
        }
        if self.failed.load(Ordering::Relaxed) {
            return Err(weir_io::Error::Stopped("another part of the member failed"));
        }
        Ok(())
    }

    fn pace(&self) {
        if !self.read_delay.is_zero() {
            std::thread::sleep(self.read_delay);
        }
    }
}

/// What a reader tells the coordinator.
pub(super) enum Report {
    /// Its position at barrier `n`.
    At(u64, Position),
    /// Its position at its end.
    Final(Position),
    /// It failed (its error says why).
    Failed,
}

/// A reader's position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Position {
    /// An input partition read by the shuffle.
    Up {
        /// The partition.
        partition: i32,
        /// The next offset.
        offset: i64,
        /// The largest event time before it.
        max_ts: i64,
        /// It has ended (its end is sent to every shuffle partition).
        ended: bool,
    },
    /// A partition feeding the engine.
    Down {
        /// The partition.
        partition: i32,
        /// The next offset.
        next: i64,
        /// Its engine input's watermark.
        watermark: i64,
        /// The event time at `next` (see [`super::state::Downstream::marks`]).
        marks: Vec<i64>,
        /// Runs of records with rows of windows that may be open.
        runs: Vec<OpenRun>,
        /// The fired bound it was restored with: its windows up to there fired in an earlier
        /// generation (whatever this generation's workers have fired since).
        floor: i64,
        /// It has ended.
        ended: bool,
    },
}

impl Position {
    pub(super) fn partition(&self) -> (bool, i32) {
        match self {
            Position::Up { partition, .. } => (true, *partition),
            Position::Down { partition, .. } => (false, *partition),
        }
    }
}

/// A run of records from `first` whose rows' windows end at most at `max_end`, and the event
/// time before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct OpenRun {
    pub first: i64,
    pub max_end: i64,
    pub marks: Vec<i64>,
}

/// The runs of a partition that may hold rows of open windows, oldest first.
#[derive(Debug, Default)]
pub(super) struct OpenRuns {
    runs: VecDeque<OpenRun>,
}

impl From<Vec<OpenRun>> for OpenRuns {
    fn from(runs: Vec<OpenRun>) -> Self {
        Self { runs: runs.into() }
    }
}

impl OpenRuns {
    fn record(&mut self, first: i64, max_end: i64, marks: &[i64]) {
        if let Some(last) = self.runs.back_mut() {
            // Runs with the same newest window merge: the first of them is what counts.
            if last.max_end == max_end {
                return;
            }
        }
        self.runs.push_back(OpenRun {
            first,
            max_end,
            marks: marks.to_vec(),
        });
    }

    /// Forgets the runs at the front whose windows have all fired.
    fn prune(&mut self, fired: i64) {
        while self.runs.front().is_some_and(|r| r.max_end <= fired) {
            self.runs.pop_front();
        }
    }

    fn to_vec(&self) -> Vec<OpenRun> {
        self.runs.iter().cloned().collect()
    }
}

/// The fired bound of a downstream partition: what this generation's workers fired, or more if
/// the partition came with a higher bound from an earlier generation (its rows of windows up to
/// there are dropped or late here: those windows have fired for good).
pub(super) fn fired_of(generation: i64, floor: i64) -> i64 {
    generation.max(floor)
}

/// The committed offset of a downstream partition and the event time there, given its fired
/// bound: the first run with a window still open, or `next` if none.
pub(super) fn restart_point(
    runs: &[OpenRun],
    fired: i64,
    next: i64,
    marks: &[i64],
) -> (i64, Vec<i64>) {
    match runs.iter().find(|r| r.max_end > fired) {
        Some(r) => (r.first, r.marks.clone()),
        None => (next, marks.to_vec()),
    }
}

/// Drops the rows of windows that end at or before `fired` (a restored partition re-reads rows
/// whose results are committed); returns the largest event time of the rows dropped.
fn drop_fired(batches: &mut [RecordBatch], windows: &TumblingWindows, fired: i64) -> i64 {
    let mut dropped_max = i64::MIN;
    for b in batches.iter_mut() {
        let Some(ts) = b.column_by_name("ts") else {
            continue;
        };
        let ts = ts.as_primitive::<TimestampMillisecondType>().values();
        let keep: BooleanArray = ts
            .iter()
            .map(|&t| Some(windows.end_of(windows.start_of(t)) > fired))
            .collect();
        if keep.true_count() == b.num_rows() {
            continue;
        }
        for (&t, k) in ts.iter().zip(keep.values().iter()) {
            if !k {
                dropped_max = dropped_max.max(t);
            }
        }
        *b = arrow_select::filter::filter_record_batch(b, &keep).expect("a mask of its length");
    }
    dropped_max
}

fn window_end_of(windows: &TumblingWindows, ts: i64) -> i64 {
    windows.end_of(windows.start_of(ts))
}

/// Where a downstream partition resumes.
pub(super) struct Resume {
    /// The committed offset `R` (`None`: the partition's start).
    pub from: Option<i64>,
    /// Rows before this offset are re-read: those of fired windows are dropped.
    pub replay_until: i64,
    /// The fired bound of the commit.
    pub fired: i64,
    /// The event time at `from`.
    pub marks: Vec<i64>,
}

/// A shuffle partition: rows (already parsed, by the member that read their input partition)
/// and the event time of every input partition.
pub(super) struct ShuffledSplit<'a> {
    pub reader: PartitionReader,
    pub shared: &'a Shared,
    pub reports: &'a Sender<Report>,
    pub injected: u64,
    pub resume: Resume,
    /// The event time of each input partition, as this partition's records said so far.
    pub marks: Vec<i64>,
    pub records: Vec<RawRecord>,
    pub at: usize,
    pub batches: Vec<RecordBatch>,
    pub runs: OpenRuns,
    pub ended: bool,
}

impl ShuffledSplit<'_> {
    fn next_offset(&self) -> i64 {
        self.records
            .get(self.at)
            .map_or_else(|| self.reader.position(), |r| r.offset)
    }

    fn position(&mut self, input: &Input, ended: bool) -> Position {
        let floor = self.resume.fired;
        let fired = fired_of(self.shared.fired.load(Ordering::Acquire), floor);
        self.runs.prune(fired);
        Position::Down {
            partition: self.reader.partition(),
            next: self.next_offset(),
            watermark: input.watermark(),
            marks: self.marks.clone(),
            runs: self.runs.to_vec(),
            floor,
            ended,
        }
    }
}

impl Split for ShuffledSplit<'_> {
    fn next(&mut self) -> weir_io::Result<Step<'_>> {
        self.shared.check()?;
        let want = self.shared.requested.load(Ordering::Acquire);
        if want > self.injected {
            self.injected = want;
            return Ok(Step::Barrier {
                epoch: want,
                last: false,
            });
        }
        if self.ended {
            return Ok(Step::End);
        }
        if self.at == self.records.len() {
            self.records.clear();
            self.at = 0;
            self.reader
                .read_records(&mut self.records, self.shared.read_bytes(), READ_WAIT)?;
            self.shared.pace();
            if self.records.is_empty() {
                return Ok(Step::Idle);
            }
        }
        let record = &self.records[self.at];
        self.at += 1;
        let partition = self.reader.partition();
        let decoded = shuffle::decode(record).map_err(|e| {
            weir_io::Error::Kafka(weir_io::kafka::KafkaIoError::Protocol {
                addr: String::new(),
                what: format!("shuffle partition {partition}: {e}"),
            })
        })?;
        match decoded {
            ShuffleRecord::Rows(mut batches) => {
                if record.offset < self.resume.replay_until {
                    drop_fired(&mut batches, &self.shared.windows, self.resume.fired);
                }
                let max = max_timestamp(&batches);
                if max > i64::MIN {
                    let end = window_end_of(&self.shared.windows, max);
                    self.runs.record(record.offset, end, &self.marks);
                }
                self.batches = batches;
                Ok(Step::Rows {
                    batches: &self.batches,
                    advance_to: None,
                })
            }
            ShuffleRecord::Time(UpstreamTime {
                upstream,
                max_ts,
                ended,
            }) => {
                let Some(mark) = self.marks.get_mut(upstream as usize) else {
                    return Err(weir_io::Error::Kafka(
                        weir_io::kafka::KafkaIoError::Protocol {
                            addr: String::new(),
                            what: format!(
                                "shuffle partition {partition} offset {}: event time of input \
                                 partition {upstream}, but the input has {} partitions",
                                record.offset,
                                self.marks.len()
                            ),
                        },
                    ));
                };
                *mark = if ended { i64::MAX } else { (*mark).max(max_ts) };
                let least = self.marks.iter().copied().min().unwrap_or(i64::MAX);
                self.ended = least == i64::MAX;
                Ok(Step::Rows {
                    batches: &[],
                    advance_to: (least > i64::MIN).then_some(least),
                })
            }
        }
    }

    fn barrier(&mut self, epoch: u64, input: &Input) {
        let p = self.position(input, false);
        let _ = self.reports.send(Report::At(epoch, p));
    }

    fn ended(&mut self, input: &Input) {
        let p = self.position(input, true);
        let _ = self.reports.send(Report::Final(p));
    }
}

/// An input partition keyed by client, read directly into the engine: its own rows set its
/// event time.
pub(super) struct KeyedSplit<'a> {
    pub reader: PartitionReader,
    pub shared: &'a Shared,
    pub reports: &'a Sender<Report>,
    pub injected: u64,
    pub resume: Resume,
    /// The job's end offset of this partition (bounded runs).
    pub end: Option<i64>,
    pub buf: Vec<u8>,
    /// The first offset of the lines handed out last.
    pub run_first: i64,
    /// The largest event time read so far.
    pub max_ts: i64,
    pub runs: OpenRuns,
}

impl KeyedSplit<'_> {
    fn position(&mut self, input: &Input, ended: bool) -> Position {
        let floor = self.resume.fired;
        let fired = fired_of(self.shared.fired.load(Ordering::Acquire), floor);
        self.runs.prune(fired);
        Position::Down {
            partition: self.reader.partition(),
            next: self.reader.position(),
            watermark: input.watermark(),
            marks: vec![self.max_ts],
            runs: self.runs.to_vec(),
            floor,
            ended,
        }
    }
}

impl Split for KeyedSplit<'_> {
    fn next(&mut self) -> weir_io::Result<Step<'_>> {
        self.shared.check()?;
        let want = self.shared.requested.load(Ordering::Acquire);
        if want > self.injected {
            self.injected = want;
            return Ok(Step::Barrier {
                epoch: want,
                last: false,
            });
        }
        if self.end.is_some_and(|e| self.reader.position() >= e) {
            return Ok(Step::End);
        }
        self.buf.clear();
        let run = self
            .reader
            .read(&mut self.buf, self.shared.read_bytes(), READ_WAIT)?;
        self.shared.pace();
        if run.lines == 0 {
            return Ok(Step::Idle);
        }
        self.run_first = run.first;
        Ok(Step::Lines {
            bytes: &self.buf,
            first_line: Some(run.first as u64),
            // Each run's rows are pushed on their own: what is recorded of a run is exact.
            flush: true,
        })
    }

    fn parsed(
        &mut self,
        _counted: Counted,
        batches: &mut Vec<RecordBatch>,
    ) -> weir_io::Result<Option<i64>> {
        let before = self.max_ts;
        let mut advance = None;
        if self.run_first < self.resume.replay_until {
            // Rows of fired windows are dropped, but the event time they carried is not: the
            // input's watermark moves as it did when they were first read.
            let dropped = drop_fired(batches, &self.shared.windows, self.resume.fired);
            self.max_ts = self.max_ts.max(dropped);
            advance = (dropped > i64::MIN).then_some(dropped);
        }
        let max = max_timestamp(batches);
        if max > i64::MIN {
            let end = window_end_of(&self.shared.windows, max);
            self.runs.record(self.run_first, end, &[before]);
        }
        self.max_ts = self.max_ts.max(max);
        Ok(advance)
    }

    fn barrier(&mut self, epoch: u64, input: &Input) {
        let p = self.position(input, false);
        let _ = self.reports.send(Report::At(epoch, p));
    }

    fn ended(&mut self, input: &Input) {
        let p = self.position(input, true);
        let _ = self.reports.send(Report::Final(p));
    }
}

/// The engine input of a member that aggregates no partition in this generation: it only
/// carries barriers, and ends (bounded runs) once the member's shuffle writers have.
pub(super) struct Placeholder<'a> {
    pub shared: &'a Shared,
    pub injected: u64,
    pub bounded: bool,
}

impl Split for Placeholder<'_> {
    fn next(&mut self) -> weir_io::Result<Step<'_>> {
        self.shared.check()?;
        let want = self.shared.requested.load(Ordering::Acquire);
        if want > self.injected {
            self.injected = want;
            return Ok(Step::Barrier {
                epoch: want,
                last: false,
            });
        }
        if self.bounded && self.shared.writers_open.load(Ordering::Acquire) == 0 {
            return Ok(Step::End);
        }
        std::thread::sleep(READ_WAIT);
        Ok(Step::Idle)
    }
}

/// One input partition into the shuffle: parses its lines, sends each row to the shuffle
/// partition that owns its key group, and, at every barrier and at its end, its event time to
/// every shuffle partition. Records go into the member's open transaction; after a barrier
/// the writer waits for the next transaction, so that no record commits with an epoch before
/// its own.
pub(super) struct ShuffleWriter<'a> {
    pub reader: PartitionReader,
    pub shared: &'a Shared,
    pub reports: &'a Sender<Report>,
    pub injected: u64,
    pub parser: LineParser,
    pub router: Partitioner,
    pub sender: RecordSender,
    pub topic: String,
    pub partitions: i32,
    pub max_ts: i64,
    pub ended: bool,
    pub end: Option<i64>,
}

impl ShuffleWriter<'_> {
    /// Runs until the partition ends (bounded runs) or the generation stops.
    pub(super) fn run(mut self) -> Result<(i32, ParseStats)> {
        let partition = self.reader.partition();
        let mut buf = Vec::with_capacity(READ_BYTES);
        let mut batches = Vec::new();
        loop {
            self.shared.check()?;
            let want = self.shared.requested.load(Ordering::Acquire);
            if want > self.injected {
                self.injected = want;
                self.send_time()?;
                let _ = self.reports.send(Report::At(want, self.position()));
                let shared = self.shared;
                if !shared.open.wait_for(want + 1, &|| shared.check().is_err()) {
                    shared.check()?;
                }
                continue;
            }
            if !self.ended && self.end.is_some_and(|e| self.reader.position() >= e) {
                self.ended = true;
                self.send_time()?;
            }
            if self.ended {
                let _ = self.reports.send(Report::Final(self.position()));
                return Ok((partition, self.parser.take_stats()));
            }
            buf.clear();
            let run = self
                .reader
                .read(&mut buf, self.shared.read_bytes(), READ_WAIT)?;
            self.shared.pace();
            if run.lines == 0 {
                continue;
            }
            let parsed = self
                .parser
                .parse(&buf, run.first as u64, &mut |b| batches.push(b));
            self.parser.flush(&mut |b| batches.push(b));
            parsed?;
            for b in batches.drain(..) {
                self.max_ts = self.max_ts.max(max_timestamp(std::slice::from_ref(&b)));
                let parts = self.router.split(&b)?;
                for (q, part) in parts.into_iter().enumerate() {
                    if let Some(part) = part {
                        let value = shuffle::encode_rows(&part)
                            .map_err(|e| Error::Engine(weir_engine::EngineError::Execution(e)))?;
                        self.sender
                            .send(&self.topic, q as i32, shuffle::ROWS, &value)?;
                    }
                }
            }
        }
    }

    fn send_time(&self) -> Result<()> {
        let value = shuffle::encode_time(&UpstreamTime {
            upstream: self.reader.partition(),
            max_ts: self.max_ts,
            ended: self.ended,
        });
        for q in 0..self.partitions {
            self.sender
                .send(&self.topic, q, shuffle::EVENT_TIME, &value)?;
        }
        Ok(())
    }

    fn position(&self) -> Position {
        Position::Up {
            partition: self.reader.partition(),
            offset: self.reader.position(),
            max_ts: self.max_ts,
            ended: self.ended,
        }
    }
}
