//! The file splitter: a mapped file's line-aligned chunks, shared by parser threads.
//!
//! ```text
//!  mapped file ─▶ chunk i (1 MiB, line-aligned) ─▶ the thread that claimed it ─▶ its Input
//!                 (threads claim chunks in file order from one counter)
//! ```
//!
//! Each parser thread owns a [`ChunkSplit`] of one [`FileChunks`] and claims the next chunk from
//! a shared counter, so all threads move through the file, and through event time, together.
//! Three things make the result a function of the file alone, whatever thread parsed what when:
//!
//! - **Barriers split the file at a chunk.** Once barrier `n` is requested at chunk `at`
//!   ([`FileChunks::request`]), a thread injects it before it parses any chunk from `at` on, so
//!   the checkpoint's position is "chunks `..at`" on every input.
//! - **Event time follows the file's order** ([`FileClock`]): before a thread pushes chunk `i`,
//!   its input's watermark moves to the largest timestamp of chunks `..i`, so every row is judged
//!   late or not exactly as a single reader of the file would judge it.
//! - **Line numbers**: no thread knows where its chunk starts, so chunk `i`'s lines are numbered
//!   from `i << 32 | 1`; once every chunk's line count is known they are rebased
//!   ([`FileChunks::lines_before_each`], [`rebase_line`]).

use arrow_array::RecordBatch;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use super::{Counted, Halt, Split, Step};
use crate::error::{Error, Result};
use crate::source::MappedFile;

/// A mapped file's chunks, and what the threads that parse them share.
pub struct FileChunks<'a> {
    file: &'a MappedFile,
    chunk_bytes: usize,
    chunks: usize,
    claims: Mutex<Claims>,
    /// A thread failed: the others stop at their next step.
    failed: AtomicBool,
    counts: Vec<ChunkCounts>,
    clock: FileClock,
}

/// Lines, rows and malformed lines of one chunk, known once it is parsed.
#[derive(Debug, Default)]
struct ChunkCounts {
    lines: AtomicU64,
    rows: AtomicU64,
    malformed: AtomicU64,
}

/// The next chunk to hand out, and the barrier requested, if any.
struct Claims {
    next: usize,
    barrier: Option<(u64, usize)>,
    /// The barrier after which every thread stops.
    last: Option<u64>,
}

impl<'a> FileChunks<'a> {
    /// The chunks of `chunk_bytes` (at least 1) of `file`, handed out from chunk `first`.
    pub fn new(file: &'a MappedFile, chunk_bytes: usize, first: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        let chunks = file.chunk_count(chunk_bytes);
        Self {
            file,
            chunk_bytes,
            chunks,
            claims: Mutex::new(Claims {
                next: first,
                barrier: None,
                last: None,
            }),
            failed: AtomicBool::new(false),
            counts: (0..chunks).map(|_| ChunkCounts::default()).collect(),
            clock: FileClock::new(first, i64::MIN),
        }
    }

    /// The number of chunks.
    pub fn len(&self) -> usize {
        self.chunks
    }

    /// Whether the file has no chunk (it is empty).
    pub fn is_empty(&self) -> bool {
        self.chunks == 0
    }

    /// The chunk size asked for.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_bytes
    }

    /// The file.
    pub fn file(&self) -> &MappedFile {
        self.file
    }

    /// Continues a run restored at its first chunk: the lines, rows and malformed lines before
    /// it count towards line numbers and totals (booked on the chunk before, which this run does
    /// not parse), and event time resumes from `max_ts`, the largest timestamp before it.
    pub fn resume(&mut self, lines: u64, rows: u64, malformed: u64, max_ts: i64) {
        let first = self.claims.get_mut().expect("claims lock").next;
        if let Some(c) = first.checked_sub(1).and_then(|i| self.counts.get(i)) {
            c.lines.store(lines, Ordering::Relaxed);
            c.rows.store(rows, Ordering::Relaxed);
            c.malformed.store(malformed, Ordering::Relaxed);
        }
        self.clock = FileClock::new(first, max_ts);
    }

    /// A split for one parser thread; `halt` ends it between chunks.
    pub fn split<'s>(&'s self, halt: Option<&'s dyn Halt>) -> ChunkSplit<'s, 'a> {
        ChunkSplit {
            chunks: self,
            halt,
            seen: 0,
            pending: None,
            current: 0,
        }
    }

    /// Requests barrier `epoch` before the first chunk not yet handed out; returns that chunk.
    /// One barrier at a time: request the next only once this one has completed.
    pub fn request(&self, epoch: u64) -> usize {
        let mut g = self.claims.lock().expect("claims lock");
        g.barrier = Some((epoch, g.next));
        g.next
    }

    /// Like [`FileChunks::request`], for the run's last barrier: every thread stops once it has
    /// injected it, so the checkpoint holds everything the run read.
    pub fn request_last(&self, epoch: u64) -> usize {
        let mut g = self.claims.lock().expect("claims lock");
        g.barrier = Some((epoch, g.next));
        g.last = Some(epoch);
        g.next
    }

    /// Stops every thread at its next step, and ends every wait: a thread failed.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.clock.stop();
    }

    /// Whether a thread failed (the run stops; its error says why).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The largest timestamp of the rows before chunk `i`, once every chunk before it has been
    /// parsed (at a completed barrier at `i`): what a run restored there resumes from.
    pub fn max_ts_before(&self, i: usize) -> i64 {
        self.clock.before(i)
    }

    /// The byte offset where chunk `i` starts (the file's length past the end).
    pub fn chunk_start(&self, i: usize) -> usize {
        self.file
            .chunk(i, self.chunk_bytes)
            .map_or(self.file.bytes().len(), |r| r.start)
    }

    /// Sums of the per-chunk counts over chunks `0..i`: (lines, rows, malformed).
    pub fn counts_before(&self, i: usize) -> (u64, u64, u64) {
        self.counts[..i.min(self.chunks)]
            .iter()
            .fold((0, 0, 0), |acc, c| {
                (
                    acc.0 + c.lines.load(Ordering::Relaxed),
                    acc.1 + c.rows.load(Ordering::Relaxed),
                    acc.2 + c.malformed.load(Ordering::Relaxed),
                )
            })
    }

    /// The number of lines before each chunk, for [`rebase_line`] once every chunk is parsed.
    pub fn lines_before_each(&self) -> Vec<u64> {
        let mut acc = 0u64;
        self.counts
            .iter()
            .map(|c| {
                let before = acc;
                acc += c.lines.load(Ordering::Relaxed);
                before
            })
            .collect()
    }

    /// The real line number of `e`'s line if it is a malformed line of a strict run, numbered
    /// `chunk << 32 | line-in-chunk`: counted from the file, since the chunks after the failing
    /// one may not have been parsed.
    pub fn rebase_error(&self, e: Error) -> Error {
        match e {
            Error::Malformed { line, reason, text } => {
                let start = self.chunk_start((line >> 32) as usize);
                let before = memchr::memchr_iter(b'\n', &self.file.bytes()[..start]).count();
                Error::Malformed {
                    line: before as u64 + (line & 0xFFFF_FFFF),
                    reason,
                    text,
                }
            }
            e => e,
        }
    }
}

/// The real line number of a line numbered `chunk << 32 | line-in-chunk` (1-based), given the
/// number of lines before each chunk.
pub fn rebase_line(encoded: u64, lines_before: &[u64]) -> u64 {
    let chunk = (encoded >> 32) as usize;
    lines_before.get(chunk).copied().unwrap_or(0) + (encoded & 0xFFFF_FFFF)
}

/// One parser thread's share of a [`FileChunks`]: the chunks it claims.
pub struct ChunkSplit<'s, 'a> {
    chunks: &'s FileChunks<'a>,
    halt: Option<&'s dyn Halt>,
    /// The last barrier this thread injected.
    seen: u64,
    /// A chunk claimed together with a barrier, to be read after it.
    pending: Option<usize>,
    /// The chunk handed out last.
    current: usize,
}

impl Split for ChunkSplit<'_, '_> {
    fn next(&mut self) -> Result<Step<'_>> {
        let c = self.chunks;
        let i = match self.pending.take() {
            Some(i) => i,
            None => {
                if c.failed() {
                    return Err(Error::Stopped("another parser thread failed"));
                }
                if self.halt.is_some_and(|h| h.is_requested()) {
                    return Ok(Step::End);
                }
                let mut g = c.claims.lock().expect("claims lock");
                let i = g.next;
                g.next += 1;
                match g.barrier {
                    Some((epoch, at)) if i >= at && self.seen < epoch => {
                        self.seen = epoch;
                        let last = g.last == Some(epoch);
                        if !last {
                            self.pending = Some(i);
                        }
                        return Ok(Step::Barrier { epoch, last });
                    }
                    _ => i,
                }
            }
        };
        let Some(range) = c.file.chunk(i, c.chunk_bytes) else {
            return Ok(Step::End);
        };
        self.current = i;
        Ok(Step::Lines {
            bytes: &c.file.bytes()[range],
            first_line: Some((i as u64) << 32 | 1),
            // Every chunk's rows leave the parser with it: a batch never mixes two chunks,
            // whose event times are judged from different points.
            flush: true,
        })
    }

    fn parsed(&mut self, counted: Counted, batches: &mut Vec<RecordBatch>) -> Result<Option<i64>> {
        let c = &self.chunks.counts[self.current];
        c.lines.store(counted.lines, Ordering::Relaxed);
        c.rows.store(counted.rows, Ordering::Relaxed);
        c.malformed.store(counted.malformed, Ordering::Relaxed);
        // Event time has reached, in file order, the largest timestamp before this chunk,
        // whichever threads parsed those chunks: the rows of this one are judged from there.
        match self
            .chunks
            .clock
            .publish(self.current, super::max_timestamp(batches))
        {
            Some(before) => Ok(Some(before)),
            None => Err(Error::Stopped("another parser thread failed")),
        }
    }
}

/// Event time in file order, for parser threads that parse a file's chunks in parallel.
///
/// A thread publishes its chunk's largest timestamp once it is parsed and the chunk before is
/// published, so threads wait only for a slower neighbour's parse, never for a push (no deadlock
/// with backpressure or barriers).
struct FileClock {
    state: Mutex<ClockState>,
    published: Condvar,
}

struct ClockState {
    /// The first chunk of this run; `base` is the largest timestamp before it.
    first: usize,
    base: i64,
    /// `prefix[k]`: the largest timestamp of chunks `..=first + k`.
    prefix: Vec<i64>,
    stopped: bool,
}

impl FileClock {
    fn new(first: usize, base: i64) -> Self {
        Self {
            state: Mutex::new(ClockState {
                first,
                base,
                prefix: Vec::new(),
                stopped: false,
            }),
            published: Condvar::new(),
        }
    }

    /// Records chunk `i`'s largest timestamp once chunk `i - 1`'s is known, and returns the
    /// largest timestamp before chunk `i`; `None` if the run stopped meanwhile.
    fn publish(&self, i: usize, chunk_max: i64) -> Option<i64> {
        let mut g = self.state.lock().expect("clock lock");
        while g.first + g.prefix.len() < i && !g.stopped {
            g = self.published.wait(g).expect("clock lock");
        }
        if g.stopped {
            return None;
        }
        debug_assert_eq!(g.first + g.prefix.len(), i, "chunk {i} published twice");
        let before = g.prefix.last().copied().unwrap_or(g.base);
        g.prefix.push(before.max(chunk_max));
        self.published.notify_all();
        Some(before)
    }

    /// The largest timestamp before chunk `i`, over the chunks published so far.
    fn before(&self, i: usize) -> i64 {
        let g = self.state.lock().expect("clock lock");
        match i.checked_sub(g.first + 1) {
            None => g.base,
            Some(k) => g.prefix[..g.prefix.len().min(k + 1)]
                .last()
                .copied()
                .unwrap_or(g.base),
        }
    }

    /// Wakes and ends every wait: a thread failed.
    fn stop(&self) {
        self.state.lock().expect("clock lock").stopped = true;
        self.published.notify_all();
    }
}
