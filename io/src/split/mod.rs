//! The one source driver: every input of a job is read by the same loop.
//!
//! ```text
//!  Split ──next()──▶ Lines ──▶ parse ──▶ Split::parsed (counts, event time) ──▶ push ──┐
//!  (file chunks,     Barrier ─▶ flush, push ─▶ Split::barrier (record position) ─▶ inject
//!   a stream, a      Idle ────▶ flush, push                                           │
//!   socket, a Kafka  End ─────▶ flush, push ─▶ Split::ended (record position) ◀───────┘
//!   partition)
//! ```
//!
//! A [`Split`] is one reader's share of a source: the chunks of a mapped file that one parser
//! thread claims ([`chunks::ChunkSplit`]), a stream read in order ([`stream::StreamSplit`]), a
//! socket connection, a Kafka partition. It hands out whole lines, says where checkpoint barriers
//! go (a file split places them at a chunk; a partition wherever it is when one is requested),
//! and records its position at a barrier. The [`Driver`] owns the parser and does the rest,
//! identically for every source: parse, push, flush before a barrier so that the barrier splits
//! the rows exactly at the recorded position, inject it, and flush at the end.
//!
//! The driver never finishes its [`Input`]: the caller does, or hands it to the next source
//! (a server's next connection). On an error the input is left as it is, so that a caller that
//! drops it unfinished makes the job fail instead of ending as if the input were complete.

pub mod chunks;
pub mod socket;
pub mod stream;

use std::time::Duration;

use arrow_array::RecordBatch;
use weir_engine::Input;

use crate::error::Result;
use crate::parse::{LineParser, ParseStats};

/// What a split has next.
pub enum Step<'a> {
    /// Whole lines to parse (the last may lack its `\n`).
    Lines {
        /// The lines.
        bytes: &'a [u8],
        /// The line number of the first (1-based, or encoded as the split documents), or `None`
        /// to go on from the lines parsed before.
        first_line: Option<u64>,
        /// Push every row of these lines now instead of keeping a partial batch in the parser
        /// for the next lines: the split has caught up with its source (a quiet socket, a
        /// partition's end) or its chunks must not share batches.
        flush: bool,
    },
    /// Inject checkpoint barrier `epoch` here; with `last`, the run stops at it and nothing
    /// after it is read.
    Barrier {
        /// The checkpoint.
        epoch: u64,
        /// Whether the run stops at this barrier.
        last: bool,
    },
    /// Rows already in columns (a shuffle's records, decoded): pushed as they are, then the
    /// input's event time is moved to `advance_to` (the shuffle's watermark) if given.
    Rows {
        /// The rows, in the job's input schema.
        batches: &'a [RecordBatch],
        /// The event time the input has reached once they are pushed.
        advance_to: Option<i64>,
    },
    /// Nothing to read for now (the split waited as long as it waits): push what is buffered.
    Idle,
    /// The split is done.
    End,
}

/// Counts of the lines of one [`Step::Lines`], as the parser saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Lines, malformed ones included.
    pub lines: u64,
    /// Rows produced.
    pub rows: u64,
    /// Malformed lines.
    pub malformed: u64,
}

/// One reader's share of a source: see the module doc.
pub trait Split {
    /// The next step. A split that must wait for data waits here, for a bounded time (then
    /// [`Step::Idle`]), and ends the wait when its run is asked to stop.
    fn next(&mut self) -> Result<Step<'_>>;

    /// The lines of the last [`Step::Lines`] are parsed into `batches`, not yet pushed (the
    /// split may drop rows from them: those a restored run has already counted). Returns the
    /// event time the input must have reached before they are pushed, for a split whose event
    /// time follows a file's order rather than its own reading order
    /// ([`chunks::ChunkSplit`]); `None` otherwise.
    fn parsed(&mut self, counted: Counted, batches: &mut Vec<RecordBatch>) -> Result<Option<i64>> {
        let _ = (counted, batches);
        Ok(None)
    }

    /// Every row before barrier `epoch` is pushed, and the barrier is about to be injected:
    /// where the split stands now is the checkpoint's position for it.
    fn barrier(&mut self, epoch: u64, input: &Input) {
        let _ = (epoch, input);
    }

    /// The split has ended ([`Step::End`]) and every row it read is pushed.
    fn ended(&mut self, input: &Input) {
        let _ = input;
    }
}

/// How a [`Driver::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The split ended.
    End,
    /// The run stopped at the last barrier, this checkpoint (injected).
    AtBarrier(u64),
}

/// A hook called with the bytes of every parsed [`Step::Lines`] (a progress bar).
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Where a driver reports what it read, run of lines by run of lines: metrics (weir's
/// `--metrics-listen`). Called once per [`Step::Lines`], never per line.
pub trait Meter: Sync {
    /// A run of `bytes` bytes was parsed into `counted`.
    fn read(&self, counted: Counted, bytes: u64);
}

/// The loop every source runs: parses what a [`Split`] hands out into an engine [`Input`].
pub struct Driver<'a> {
    parser: LineParser,
    batches: Vec<RecordBatch>,
    progress: Option<Progress<'a>>,
    meter: Option<&'a dyn Meter>,
    pace: Duration,
}

impl<'a> Driver<'a> {
    /// A driver parsing with `parser`.
    pub fn new(parser: LineParser) -> Self {
        Self {
            parser,
            batches: Vec::new(),
            progress: None,
            meter: None,
            pace: Duration::ZERO,
        }
    }

    /// Calls `progress` with the size of every run of lines parsed.
    pub fn with_progress(mut self, progress: Option<Progress<'a>>) -> Self {
        self.progress = progress;
        self
    }

    /// Reports the counts of every run of lines parsed to `meter`.
    pub fn with_meter(mut self, meter: Option<&'a dyn Meter>) -> Self {
        self.meter = meter;
        self
    }

    /// Sleeps `pace` after every run of lines: a throttle for tests and demonstrations that need
    /// a run to last (a crash test kills it midway).
    pub fn with_pace(mut self, pace: Duration) -> Self {
        self.pace = pace;
        self
    }

    /// Drives `split` into `input` until the split ends or the run stops at its last barrier.
    /// Every row read is pushed when it returns `Ok`; the input is not finished.
    pub fn run<S: Split + ?Sized>(&mut self, split: &mut S, input: &mut Input) -> Result<Ended> {
        loop {
            match split.next()? {
                Step::Lines {
                    bytes,
                    first_line,
                    flush,
                } => {
                    let len = bytes.len() as u64;
                    let st = self.parser.stats();
                    let before = (st.lines, st.rows, st.malformed);
                    let first_line = first_line.unwrap_or(before.0 + 1);
                    let batches = &mut self.batches;
                    let parsed = self
                        .parser
                        .parse(bytes, first_line, &mut |b| batches.push(b));
                    if flush {
                        self.parser.flush(&mut |b| batches.push(b));
                    }
                    parsed?;
                    let st = self.parser.stats();
                    let counted = Counted {
                        lines: st.lines - before.0,
                        rows: st.rows - before.1,
                        malformed: st.malformed - before.2,
                    };
                    if let Some(m) = self.meter {
                        m.read(counted, len);
                    }
                    if let Some(ts) = split.parsed(counted, &mut self.batches)? {
                        input.advance_to(ts)?;
                    }
                    self.push(input)?;
                    if let Some(p) = self.progress {
                        p(len);
                    }
                    if !self.pace.is_zero() {
                        std::thread::sleep(self.pace);
                    }
                }
                Step::Barrier { epoch, last } => {
                    self.flush(input)?;
                    split.barrier(epoch, input);
                    input.barrier(epoch)?;
                    if last {
                        return Ok(Ended::AtBarrier(epoch));
                    }
                }
                Step::Rows {
                    batches,
                    advance_to,
                } => {
                    self.flush(input)?;
                    for b in batches {
                        input.push(b.clone())?;
                    }
                    if let Some(ts) = advance_to {
                        input.advance_to(ts)?;
                    }
                }
                Step::Idle => self.flush(input)?,
                Step::End => {
                    self.flush(input)?;
                    split.ended(input);
                    return Ok(Ended::End);
                }
            }
        }
    }

    /// Pushes every row the parser still holds: after a failed [`Driver::run`], for a caller
    /// that keeps what was read before the failure (a server whose client went away).
    pub fn flush(&mut self, input: &mut Input) -> Result<()> {
        let batches = &mut self.batches;
        self.parser.flush(&mut |b| batches.push(b));
        self.push(input)
    }

    fn push(&mut self, input: &mut Input) -> Result<()> {
        for b in self.batches.drain(..) {
            input.push(b)?;
        }
        Ok(())
    }

    /// The parser's counters so far.
    pub fn stats(&self) -> &ParseStats {
        self.parser.stats()
    }

    /// The parser's counters, ending the driver.
    pub fn into_stats(mut self) -> ParseStats {
        self.parser.take_stats()
    }
}

/// The largest event time in `batches` (`i64::MIN` if none): the parser's `ts` column.
pub fn max_timestamp(batches: &[RecordBatch]) -> i64 {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;
    batches
        .iter()
        .filter_map(|b| b.column_by_name("ts"))
        .filter_map(|c| {
            c.as_primitive::<TimestampMillisecondType>()
                .values()
                .iter()
                .max()
                .copied()
        })
        .max()
        .unwrap_or(i64::MIN)
}

/// Asks a split to end early, between reads: a flag for splits that poll, and a channel that
/// disconnects when the end is requested, for splits that block (so that they wake at once).
pub trait Halt: Send + Sync {
    /// Whether the end was requested.
    fn is_requested(&self) -> bool;
    /// Disconnects when the end is requested.
    fn woken(&self) -> &crossbeam_channel::Receiver<()>;
}
