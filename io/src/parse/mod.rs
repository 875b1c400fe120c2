//! Fused, allocation-free access-log parsers: bytes in, Arrow [`RecordBatch`]es out.
//!
//! # Formats
//!
//! * [`LogFormat::Combined`]: NGINX's default and Apache's `combined`:
//!   `client ident user [dd/Mon/yyyy:HH:MM:SS ±hhmm] "request" status bytes "referer" "ua"`.
//! * [`LogFormat::Common`]: the Common Log Format, the same without referer and user agent.
//! * [`LogFormat::Simple`]: the seed job's `HH:MM:SS client`; the date comes from
//!   [`ParseOptions::simple_date_days`].
//!
//! [`detect_format`] guesses the format from the first lines by majority vote.
//!
//! # What makes a line malformed
//!
//! Exactly this: it has no non-empty first field, or no valid timestamp after it. For the CLF
//! formats the first `[` after the first field must start a valid `[dd/Mon/yyyy:HH:MM:SS ±hhmm]`
//! (see [`timestamp`]); for the simple format the line must start with a valid `HH:MM:SS`, one
//! space and a non-empty client. Everything else is tolerated: a broken request, a missing
//! status or user agent only makes those columns null, and the line still counts. Lines end at
//! `\n`; one `\r` before it is removed; a last line without `\n` is a line; the empty piece after
//! a final `\n` is not a line, but an empty line anywhere else is a malformed one (it has no first
//! field).
//!
//! A malformed line is never a panic and never a silent skip: it is counted in [`ParseStats`]
//! with its 1-based line number, and the first [`MAX_EXAMPLES`] are kept as examples. With
//! [`ParseOptions::strict`] the first one is returned as [`ParseError::Malformed`] instead.
//!
//! # The byte-level algorithm (CLF formats)
//!
//! ```text
//!  ┌ pos                ┌ memchr2(' ', '\n')   ┌ memchr2('[', '\n')                 ┌ memchr('\n')
//!  172.71.172.86 - - [29/Jan/2025:00:00:13 +0000] "GET /geju.php HTTP/1.1" 301 575 "-" "ua"⏎
//!  └── client ──┘      └──── 28 fixed bytes ────┘ └─── only parsed when a request column
//!                                                      is projected (see `combined`) ───┘
//! ```
//!
//! 1. Find the end of the first field: the first space (or newline: then the line has no
//!    timestamp). The client is `chunk[pos..space]`, verbatim. The space is near, so the
//!    search looks at words of 8 bytes before it calls `memchr2` (`scan.rs`).
//! 2. Find the first `[` after it, stopping at a newline: one compare when the ident and user
//!    fields are the usual `- -`, `memchr2` otherwise.
//! 3. Parse the 28-byte timestamp by position. [`ClfClock`] compares it to the previous line's
//!    and reuses the result when the second, or the day, is the same.
//! 4. Find the newline after the timestamp; the next line starts after it.
//!
//! With the projection `ts + client` ([`Columns::ts_client`]) that is all the parser does per
//! line: a short word-by-word search, a 6-byte compare, one vectorised `memchr` for the newline,
//! which covers most of the bytes, plus a 26-byte compare. The request fields are parsed between steps 3 and 4 only
//! when one of their columns is projected.
//!
//! # Allocation policy
//!
//! A [`LineParser`] owns one set of column buffers (`Vec`s of values and offsets, see
//! `columns.rs`) sized for [`ParseOptions::batch_rows`] rows and reused across every chunk it
//! parses. Per line it only appends to them: no `String`, no `Vec`, no `RecordBatch` per line.
//! When `batch_rows` rows are buffered they are moved (not copied) into Arrow arrays, one
//! `RecordBatch` is emitted, and fresh buffers are allocated with the capacity the last batch
//! needed: a handful of allocations per batch. A batch is also cut early when its string columns
//! reach 1 GiB, so that Arrow's `i32` offsets cannot overflow whatever the line lengths. The only
//! per-line allocations are on cold paths: the text of the first five malformed examples, and
//! the repair of a batch holding invalid UTF-8.
//!
//! Chunks must start at a line start; a file is parsed in parallel by splitting it at newlines
//! and giving each split its own `LineParser`, then merging their stats with
//! [`ParseStats::merge`].

mod columns;
mod combined;
mod detect;
mod scan;
mod simple;
pub mod timestamp;

use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::{RecordBatch, RecordBatchOptions};
use arrow_schema::SchemaRef;
use memchr::{memchr, memchr2};

pub use columns::Columns;
pub use detect::{detect_format, DETECT_LINES};

use crate::error::ParseError;
use columns::ColumnBuffers;
use combined::parse_after_timestamp;
use scan::memchr2_near;
use simple::split_simple_line;
use timestamp::{ClfClock, CLF_TIMESTAMP_LEN, MS_PER_DAY};

/// An access-log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// NGINX/Apache combined: CLF plus quoted referer and user agent.
    Combined,
    /// The Common Log Format (CLF).
    Common,
    /// The seed's `HH:MM:SS client`.
    Simple,
}

impl LogFormat {
    /// The format's name: `combined`, `common` or `simple`.
    pub const fn name(self) -> &'static str {
        match self {
            LogFormat::Combined => "combined",
            LogFormat::Common => "common",
            LogFormat::Simple => "simple",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// Parses `combined`, `common` (or `clf`) and `simple`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "combined" => Ok(LogFormat::Combined),
            "common" | "clf" => Ok(LogFormat::Common),
            "simple" => Ok(LogFormat::Simple),
            _ => Err(format!(
                "unknown log format {s:?} (expected combined, common or simple)"
            )),
        }
    }
}

/// How a [`LineParser`] parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// The line format.
    pub format: LogFormat,
    /// The columns to produce; intersected with what the format has ([`Columns::available`]).
    pub columns: Columns,
    /// Rows per emitted batch (at least 1).
    pub batch_rows: usize,
    /// Whether the first malformed line is an error rather than a counted line.
    pub strict: bool,
    /// The simple format's date, in days since 1970-01-01 (UTC).
    pub simple_date_days: i32,
    /// Lines longer than this (line ending excluded) are malformed ([`OVERLONG`]).
    pub max_line_bytes: usize,
}

/// Default rows per batch.
pub const DEFAULT_BATCH_ROWS: usize = 8192;
/// Default longest line: far above any real access-log line (a few hundred bytes; 8 KB attack
/// lines), far below what would strain memory when a stream buffers a line whole.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

impl ParseOptions {
    /// Options for `format`: all columns, [`DEFAULT_BATCH_ROWS`], not strict, and today (UTC) as
    /// the simple format's date.
    pub fn new(format: LogFormat) -> Self {
        ParseOptions {
            format,
            columns: Columns::ALL,
            batch_rows: DEFAULT_BATCH_ROWS,
            strict: false,
            simple_date_days: today_utc_days(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// These options with `columns` as the projection.
    pub fn with_columns(mut self, columns: Columns) -> Self {
        self.columns = columns;
        self
    }
}

impl Default for ParseOptions {
    /// [`ParseOptions::new`] with [`LogFormat::Combined`].
    fn default() -> Self {
        ParseOptions::new(LogFormat::Combined)
    }
}

/// Today's date in days since the epoch, UTC.
pub fn today_utc_days() -> i32 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    ms.div_euclid(MS_PER_DAY) as i32
}

/// A malformed line kept as an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// 1-based line number in the input.
    pub line: u64,
    /// Why the line was rejected.
    pub reason: &'static str,
    /// The line (without its line ending), decoded lossily and cut to [`EXAMPLE_BYTES`] bytes.
    pub text: String,
}

/// How many malformed lines [`ParseStats`] keeps as examples.
pub const MAX_EXAMPLES: usize = 5;
/// How many bytes of a malformed line an example keeps.
pub const EXAMPLE_BYTES: usize = 200;

/// Why a line is malformed: it starts with a space or is empty.
pub const EMPTY_FIRST_FIELD: &str = "empty first field";
/// Why a line is malformed: no `[` after the first field.
pub const NO_TIMESTAMP: &str = "no [timestamp] after the first field";
/// Why a line is malformed: the first `[` does not start a valid timestamp.
pub const BAD_TIMESTAMP: &str = "invalid [dd/Mon/yyyy:HH:MM:SS +hhmm] timestamp";
/// Why a line is malformed: it is longer than [`ParseOptions::max_line_bytes`] (a stream keeps
/// only its beginning, see [`crate::source::LineReader`]).
pub const OVERLONG: &str = "over-long line (longer than --max-line-bytes)";

/// What a parse saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Lines read, malformed ones included.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Rows produced (lines that were not malformed).
    pub rows: u64,
    /// Malformed lines.
    pub malformed: u64,
    /// The first [`MAX_EXAMPLES`] malformed lines, in line order.
    pub examples: Vec<Malformed>,
}

impl ParseStats {
    /// Adds `other`'s counts to these, keeping the first [`MAX_EXAMPLES`] examples of both in
    /// line order (for the splits of one file parsed in parallel).
    pub fn merge(&mut self, other: &ParseStats) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.rows += other.rows;
        self.malformed += other.malformed;
        self.examples.extend(other.examples.iter().cloned());
        self.examples.sort_by_key(|m| m.line);
        self.examples.truncate(MAX_EXAMPLES);
    }
}

/// `line` without one trailing `\r`.
#[inline]
pub(crate) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Cut a batch early when its string columns hold this many bytes (Arrow offsets are `i32`).
const MAX_BATCH_STRING_BYTES: usize = 1 << 30;

/// A streaming access-log parser: feed it chunks of whole lines, get Arrow batches.
///
/// ```
/// use weir_io::parse::{Columns, LineParser, LogFormat, ParseOptions};
/// let mut parser = LineParser::new(
///     ParseOptions::new(LogFormat::Combined).with_columns(Columns::ts_client()),
/// );
/// let log = b"::1 - - [01/Jan/1970:00:00:01 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"x\"\n \"curl\"\n";
/// let mut batches = Vec::new();
/// parser.parse(log, 1, &mut |b| batches.push(b)).unwrap();
/// parser.flush(&mut |b| batches.push(b));
/// assert_eq!(batches[0].num_rows(), 1);
/// assert_eq!(parser.stats().malformed, 1);
/// assert_eq!(parser.stats().examples[0].line, 2);
/// ```
#[derive(Debug)]
pub struct LineParser {
    opts: ParseOptions,
    /// `opts.columns` ∩ what the format has.
    columns: Columns,
    schema: SchemaRef,
    cols: ColumnBuffers,
    clock: ClfClock,
    stats: ParseStats,
    /// Whether any column after the timestamp is projected.
    need_request: bool,
    need_ts: bool,
    need_client: bool,
}

impl LineParser {
    /// A parser with empty buffers for `opts.batch_rows` rows.
    pub fn new(mut opts: ParseOptions) -> Self {
        opts.batch_rows = opts.batch_rows.max(1);
        let columns = opts.columns & Columns::available(opts.format);
        LineParser {
            schema: columns.schema(),
            cols: ColumnBuffers::new(columns, opts.batch_rows),
            clock: ClfClock::new(),
            stats: ParseStats::default(),
            need_request: columns.intersects(Columns::REQUEST),
            need_ts: columns.contains(Columns::TS),
            need_client: columns.contains(Columns::CLIENT),
            columns,
            opts,
        }
    }

    /// The schema of the emitted batches: the projected columns the format has, in the order
    /// ts, client, method, path, status, bytes, referer, user_agent.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The projected columns the format has.
    pub fn columns(&self) -> Columns {
        self.columns
    }

    /// The options this parser was built with.
    pub fn options(&self) -> &ParseOptions {
        &self.opts
    }

    /// Counts and examples of everything parsed so far.
    pub fn stats(&self) -> &ParseStats {
        &self.stats
    }

    /// Takes the stats, leaving zeros (for a parser reused across inputs).
    pub fn take_stats(&mut self) -> ParseStats {
        std::mem::take(&mut self.stats)
    }

    /// Parses every line of `chunk`, which starts at a line start (a last line without `\n` is a
    /// line too). `first_line` is the 1-based number of the chunk's first line, for messages.
    /// Emits a batch each time `batch_rows` rows are buffered; the rest stay buffered for the
    /// next chunk or [`LineParser::flush`].
    ///
    /// Fails only in strict mode, with [`ParseError::Malformed`] for the first malformed line;
    /// the lines before it are counted and buffered.
    pub fn parse(
        &mut self,
        chunk: &[u8],
        first_line: u64,
        emit: &mut dyn FnMut(RecordBatch),
    ) -> Result<(), ParseError> {
        self.stats.bytes += chunk.len() as u64;
        let mut line_no = first_line;
        let result = match self.opts.format {
            LogFormat::Combined | LogFormat::Common => self.parse_clf(chunk, &mut line_no, emit),
            LogFormat::Simple => self.parse_simple(chunk, &mut line_no, emit),
        };
        self.stats.lines += line_no - first_line;
        result
    }

    /// Emits the buffered rows as one batch, if there are any.
    pub fn flush(&mut self, emit: &mut dyn FnMut(RecordBatch)) {
        if self.cols.rows > 0 {
            self.emit_batch(emit);
        }
    }

    /// The CLF loop; `line_no` ends one past the last line parsed.
    fn parse_clf(
        &mut self,
        chunk: &[u8],
        line_no: &mut u64,
        emit: &mut dyn FnMut(RecordBatch),
    ) -> Result<(), ParseError> {
        let len = chunk.len();
        let tail = self.opts.format == LogFormat::Combined;
        let mut pos = 0;
        let mut batch_bytes = 0usize;
        while pos < len {
            // 1. The first field ends at the first space; a newline first means no timestamp.
            let client_end = match memchr2_near(b' ', b'\n', &chunk[pos..]) {
                Some(i) if i > 0 && chunk[pos + i] == b' ' => pos + i,
                found => {
                    let end = found.map_or(len, |i| pos + i);
                    let reason =
                        if chunk.get(end) == Some(&b' ') || strip_cr(&chunk[pos..end]).is_empty() {
                            EMPTY_FIRST_FIELD
                        } else {
                            NO_TIMESTAMP
                        };
                    pos = self.malformed(chunk, pos, pos, *line_no, reason)?;
                    *line_no += 1;
                    continue;
                }
            };
            // 2. The first `[` after it, on the same line: nearly always after empty ident and
            // user fields (` - - [`), which one compare checks.
            let near = chunk[client_end..].starts_with(b" - - [").then_some(5);
            let bracket = match near.or_else(|| memchr2(b'[', b'\n', &chunk[client_end..])) {
                Some(i) if chunk[client_end + i] == b'[' => client_end + i,
                _ => {
                    pos = self.malformed(chunk, pos, client_end, *line_no, NO_TIMESTAMP)?;
                    *line_no += 1;
                    continue;
                }
            };
            // 3. The fixed-width timestamp (a newline inside it makes it invalid).
            let Some(ts) = self.clock.parse(&chunk[bracket..]) else {
                pos = self.malformed(chunk, pos, bracket, *line_no, BAD_TIMESTAMP)?;
                *line_no += 1;
                continue;
            };
            // 4. The end of the line.
            let ts_end = bracket + CLF_TIMESTAMP_LEN;
            let nl = memchr(b'\n', &chunk[ts_end..]).map_or(len, |i| ts_end + i);
            if nl - pos > self.opts.max_line_bytes {
                pos = self.malformed(chunk, pos, nl, *line_no, OVERLONG)?;
                *line_no += 1;
                continue;
            }

            if self.need_ts {
                self.cols.ts.push(ts);
            }
            if self.need_client {
                self.cols.client.push(&chunk[pos..client_end]);
            }
            if self.need_request {
                self.push_request(strip_cr(&chunk[ts_end..nl]), tail);
            }
            let next = (nl + 1).min(len);
            batch_bytes += next - pos;
            pos = next;
            *line_no += 1;
            self.end_row(&mut batch_bytes, emit);
        }
        Ok(())
    }

    /// The simple-format loop; `line_no` ends one past the last line parsed.
    fn parse_simple(
        &mut self,
        chunk: &[u8],
        line_no: &mut u64,
        emit: &mut dyn FnMut(RecordBatch),
    ) -> Result<(), ParseError> {
        let len = chunk.len();
        let day_ms = self.opts.simple_date_days as i64 * MS_PER_DAY;
        let mut pos = 0;
        let mut batch_bytes = 0usize;
        while pos < len {
            let nl = memchr(b'\n', &chunk[pos..]).map_or(len, |i| pos + i);
            if nl - pos > self.opts.max_line_bytes {
                pos = self.malformed(chunk, pos, nl, *line_no, OVERLONG)?;
                *line_no += 1;
                continue;
            }
            let line = strip_cr(&chunk[pos..nl]);
            match split_simple_line(line) {
                Ok((secs, client)) => {
                    if self.need_ts {
                        self.cols.ts.push(day_ms + secs as i64 * 1000);
                    }
                    if self.need_client {
                        self.cols.client.push(client);
                    }
                    let next = (nl + 1).min(len);
                    batch_bytes += next - pos;
                    pos = next;
                    *line_no += 1;
                    self.end_row(&mut batch_bytes, emit);
                }
                Err(reason) => {
                    let reason = if line.first().is_none_or(|&b| b == b' ') {
                        EMPTY_FIRST_FIELD
                    } else {
                        reason
                    };
                    pos = self.malformed(chunk, pos, pos, *line_no, reason)?;
                    *line_no += 1;
                }
            }
        }
        Ok(())
    }

    /// Appends the projected request-derived columns of one line.
    #[inline]
    fn push_request(&mut self, after_ts: &[u8], tail: bool) {
        let f = parse_after_timestamp(after_ts, tail);
        let c = self.columns;
        let cols = &mut self.cols;
        if c.contains(Columns::METHOD) {
            cols.method.push_opt(f.method);
        }
        if c.contains(Columns::PATH) {
            cols.path.push_opt(f.path);
        }
        if c.contains(Columns::STATUS) {
            cols.status.push_opt(f.status);
        }
        if c.contains(Columns::BYTES) {
            cols.bytes.push_opt(f.bytes);
        }
        if c.contains(Columns::REFERER) {
            cols.referer.push_opt(f.referer);
        }
        if c.contains(Columns::USER_AGENT) {
            cols.user_agent.push_opt(f.user_agent);
        }
    }

    /// Counts the row just appended and emits a batch when one is full.
    #[inline]
    fn end_row(&mut self, batch_bytes: &mut usize, emit: &mut dyn FnMut(RecordBatch)) {
        self.cols.rows += 1;
        self.stats.rows += 1;
        if self.cols.rows >= self.opts.batch_rows
            || (*batch_bytes >= MAX_BATCH_STRING_BYTES
                && self.cols.string_bytes() >= MAX_BATCH_STRING_BYTES)
        {
            *batch_bytes = 0;
            self.emit_batch(emit);
        }
    }

    /// Records the malformed line starting at `start` (its newline is searched from `from`) and
    /// returns where the next line starts; in strict mode returns the error instead.
    #[cold]
    #[inline(never)]
    fn malformed(
        &mut self,
        chunk: &[u8],
        start: usize,
        from: usize,
        line_no: u64,
        reason: &'static str,
    ) -> Result<usize, ParseError> {
        let end = memchr(b'\n', &chunk[from..]).map_or(chunk.len(), |i| from + i);
        // An over-long line is reported as such, whatever else is wrong with its beginning.
        let reason = if end - start > self.opts.max_line_bytes {
            OVERLONG
        } else {
            reason
        };
        let text = || {
            let line = strip_cr(&chunk[start..end]);
            String::from_utf8_lossy(&line[..line.len().min(EXAMPLE_BYTES)]).into_owned()
        };
        self.stats.malformed += 1;
        if self.opts.strict {
            return Err(ParseError::Malformed {
                line: line_no,
                reason,
                text: text(),
            });
        }
        if self.stats.examples.len() < MAX_EXAMPLES {
            self.stats.examples.push(Malformed {
                line: line_no,
                reason,
                text: text(),
            });
        }
        Ok((end + 1).min(chunk.len()))
    }

    /// Moves the buffered rows into a batch and emits it.
    fn emit_batch(&mut self, emit: &mut dyn FnMut(RecordBatch)) {
        let rows = self.cols.rows;
        let arrays = self.cols.finish(self.opts.batch_rows);
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .expect("column buffers match the schema by construction");
        emit(batch);
    }
}

/// Parses a whole input in one go: every batch and the stats. Convenience over [`LineParser`].
///
/// ```
/// use weir_io::parse::{parse_all, LogFormat, ParseOptions};
/// let (batches, stats) = parse_all(b"12:00:01 10.0.0.1\n12:00:02 ::1\n", ParseOptions::new(LogFormat::Simple)).unwrap();
/// assert_eq!((stats.lines, stats.rows, stats.malformed), (2, 2, 0));
/// assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
/// ```
pub fn parse_all(
    bytes: &[u8],
    opts: ParseOptions,
) -> Result<(Vec<arrow_array::RecordBatch>, ParseStats), ParseError> {
    let mut parser = LineParser::new(opts);
    let mut batches = Vec::new();
    parser.parse(bytes, 1, &mut |b| batches.push(b))?;
    parser.flush(&mut |b| batches.push(b));
    Ok((batches, parser.take_stats()))
}

#[cfg(test)]
mod tests;
