//! `weir verify`: an auditor of a pipeline's committed output.
//!
//! It reads the input (a log file or a Kafka topic), recomputes the per-client counts of every
//! tumbling event-time window *independently of the engine* (only the line parser is shared:
//! the question is whether the engine, the sinks and the commit protocol lost, repeated or
//! changed rows, not what a line means), reads the committed output (a CSV or JSON-lines file
//! written by `weir replay`, or a Kafka topic written by a weir job) and reports every
//! difference:
//!
//! | kind         | meaning                                                       |
//! |--------------|---------------------------------------------------------------|
//! | missing      | a (window, client) the input has, absent from the output      |
//! | duplicated   | a (window, client) found more than once                       |
//! | wrong        | found once, with another count than the input's               |
//! | unexpected   | found, but the input has no such (window, client)             |
//! | unreadable   | an output row or record that is not a result row              |
//!
//! Every well-formed input line is counted, however late it is: the check is that of an
//! exactly-once run with no late rows (a run that drops late rows shows them as missing or wrong
//! counts). Malformed input lines are skipped and counted.
//!
//! Kafka output is read `read_committed` from the beginning of every partition up to its end
//! offset at the start of the check: the broker shows such a reader exactly the records of
//! committed transactions. The job's progress (its group's committed offset on
//! `weir-progress`) says whether the job finished; if not, its last windows may be missing for
//! that reason, and the report says so. Nothing is ever committed: the check reads with its
//! own throwaway group, `<group>-verify`.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::RecordBatch;
use clap::Args;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use serde::Deserialize;
use weir_io::kafka::reader::{watermarks, PartitionReader, RecordReader};
use weir_io::kafka::records::{default_job_id, PROGRESS_TOPIC};
use weir_io::kafka::txn::{group_consumer, read_progress};
use weir_io::kafka::{connect, KafkaIoError, KafkaUrl};
use weir_io::parse::timestamp::civil_from_days;
use weir_io::parse::{detect_format, Columns, LineParser, LogFormat, ParseOptions};
use weir_io::source::{open_stream, LineReader};

use crate::error::{opening, Error, Result};
use crate::replay::InputFormat;
use crate::units::{parse_date, parse_duration, thousands};

/// Bytes of input parsed at a time.
const CHUNK_BYTES: usize = 4 << 20;
/// How long a Kafka read may make no progress before the end offset taken at the start before
/// the check gives up (a transaction still open holds `read_committed` readers back).
const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// One poll of a Kafka consumer.
const POLL: Duration = Duration::from_millis(500);

/// Check a pipeline's committed output against its input (exit status 0: clean, 1: not, 2:
/// could not check).
///
/// Recomputes the per-client counts of every window from the input, independently of the
/// engine, and reports missing, duplicated, wrong and unexpected output rows.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  weir replay access.log --output-format csv -o counts.csv
  weir verify --input access.log --output counts.csv
  weir verify --input access.log.gz --output counts.jsonl --window 1m --format combined
  weir verify --input kafka://127.0.0.1:9092/access-log --output kafka://127.0.0.1:9092/counts

Every well-formed input line is counted (no lateness); malformed lines are skipped and counted.
The output is a CSV (window_start,window_end,client,count) or JSON-lines file written by
`weir replay --output-format csv|jsonl`, or a Kafka topic written by a weir job (read
read_committed from the beginning to the end offsets at the start of the check).")]
pub struct VerifyArgs {
    /// The input: an access-log file (`.gz` is decompressed, `-` is stdin) or
    /// kafka://HOST:PORT/TOPIC (every partition, from the beginning to its end offset now; each
    /// message is one line).
    #[arg(long)]
    pub input: String,
    /// The output to check: a results file written by `weir replay --output-format csv|jsonl`
    /// (told apart by its extension .csv/.jsonl/.json, or a first byte `{`) or
    /// kafka://HOST:PORT/TOPIC.
    #[arg(long)]
    pub output: String,
    /// The job's tumbling window size (500ms, 5s, 1m, …).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub window: Duration,
    /// Log format of the input; `auto` detects it from the first lines.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: InputFormat,
    /// Date of the `simple` format's HH:MM:SS times (YYYY-MM-DD, UTC); default today.
    #[arg(long, value_parser = parse_date)]
    pub date: Option<i32>,
    /// The job's group (its progress on Kafka); default: the one the job derives from --input
    /// and --output.
    #[arg(long, value_name = "ID")]
    pub group: Option<String>,
    /// Examples of each kind of difference to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub examples: usize,
}

/// A kind of difference between the expected and the found output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Expected, not found.
    Missing,
    /// Found more than once.
    Duplicated,
    /// Found once with another count.
    Wrong,
    /// Found, not expected.
    Unexpected,
}

impl Kind {
    /// `missing`, `duplicated`, `wrong` or `unexpected`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Duplicated => "duplicated",
            Kind::Wrong => "wrong",
            Kind::Unexpected => "unexpected",
        }
    }

    const ALL: [Kind; 4] = [
        Kind::Missing,
        Kind::Duplicated,
        Kind::Wrong,
        Kind::Unexpected,
    ];
}

/// One (window, client) whose output differs from the input's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// What is wrong.
    pub kind: Kind,
    /// The window's start, epoch milliseconds.
    pub window_start: i64,
    /// The client.
    pub client: String,
    /// The count the input gives (`None`: the input has no such row).
    pub expected: Option<u64>,
    /// The counts of every row found for it, in the order read (empty: none found).
    pub found: Vec<u64>,
}

/// What `weir verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// The input, as given.
    pub input: String,
    /// The output, as given.
    pub output: String,
    /// The window size in milliseconds.
    pub window_ms: i64,
    /// The input's log format (`None`: the input had no lines).
    pub format: Option<LogFormat>,
    /// Input lines read.
    pub lines: u64,
    /// Well-formed input lines (each counted in one expected row).
    pub counted: u64,
    /// Malformed input lines (skipped).
    pub malformed: u64,
    /// The first malformed input lines, with where they are.
    pub malformed_examples: Vec<String>,
    /// Expected rows: distinct (window, client) of the input.
    pub expected_rows: u64,
    /// Expected windows.
    pub expected_windows: u64,
    /// Sum of the expected counts (= `counted`).
    pub expected_requests: u64,
    /// Output rows read and kept (duplicates included).
    pub found_rows: u64,
    /// Sum of the counts of the rows kept.
    pub found_requests: u64,
    /// Output rows or records that are not result rows.
    pub unreadable: u64,
    /// The first unreadable rows, with where they are and why.
    pub unreadable_examples: Vec<String>,
    /// (window, client) expected and not found.
    pub missing: u64,
    /// (window, client) found more than once.
    pub duplicated: u64,
    /// (window, client) found once with another count.
    pub wrong: u64,
    /// (window, client) found and not expected.
    pub unexpected: u64,
    /// Up to `examples_limit` differences of each kind, by kind, window and client.
    pub examples: Vec<Discrepancy>,
    /// How many examples of each kind were kept.
    pub examples_limit: usize,
    /// Remarks worth knowing when reading the result (an unfinished job, …).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Whether the output holds exactly the expected rows, once each, with the right counts.
    pub fn is_clean(&self) -> bool {
        self.missing + self.duplicated + self.wrong + self.unexpected + self.unreadable == 0
    }

    /// The number of differences of `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Missing => self.missing,
            Kind::Duplicated => self.duplicated,
            Kind::Wrong => self.wrong,
            Kind::Unexpected => self.unexpected,
        }
    }
}

/// Recomputes the windows of `args.input`, reads `args.output` and compares them.
pub fn verify(args: &VerifyArgs) -> Result<VerifyReport> {
    let window_ms = args.window.as_millis();
    if window_ms == 0 || !args.window.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(Error::usage(format!(
            "--window must be a positive whole number of milliseconds, not {:?}",
            args.window
        )));
    }
    let window_ms =
        i64::try_from(window_ms).map_err(|_| Error::usage("--window is out of range"))?;
    if args.input == "-" && args.output == "-" {
        return Err(Error::usage(
            "--input and --output cannot both be `-` (stdin)",
        ));
    }
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| default_job_id(&args.input, &args.output));
    let read_group = format!("{group}-verify");
    let input_url = kafka_url(&args.input, "--input")?;
    let output_url = kafka_url(&args.output, "--output")?;

    // Kafka positions are taken once, before anything is read: the job's progress, then the
    // output's end offsets, then the input's, so that the output read derives from input that
    // is read too (a running job's open windows show as missing rows, nothing else).
    let mut notes = Vec::new();
    if let Some(url) = &output_url {
        note_progress(url, &group, &mut notes)?;
    }
    let with_ends = |url: KafkaUrl| end_offsets(&url).map(|ends| (url, ends));
    let output_kafka = output_url.map(with_ends).transpose()?;
    let input_kafka = input_url.map(with_ends).transpose()?;

    // Expected rows.
    let mut expected = Expected::new(
        args.format.log_format(),
        args.date.unwrap_or_else(weir_io::parse::today_utc_days),
        window_ms,
        args.examples,
    );
    match &input_kafka {
        Some((url, ends)) => expected_from_kafka(url, ends, &read_group, &mut expected)?,
        None => expected_from_file(&args.input, &mut expected)?,
    }

    // Found rows.
    let mut found = Found::new(window_ms, args.examples);
    match &output_kafka {
        Some((url, ends)) => found_from_kafka(url, ends, &read_group, &mut found)?,
        None => found_from_file(&args.output, &mut found)?,
    }

    let mut report = VerifyReport {
        input: args.input.clone(),
        output: args.output.clone(),
        window_ms,
        format: expected.format,
        lines: expected.lines,
        counted: expected.counted,
        malformed: expected.malformed,
        malformed_examples: std::mem::take(&mut expected.examples),
        found_rows: found.rows,
        found_requests: found.requests,
        unreadable: found.unreadable,
        unreadable_examples: std::mem::take(&mut found.examples),
        examples_limit: args.examples,
        notes,
        ..VerifyReport::default()
    };
    compare(&expected.counts, &found.counts, &mut report);
    Ok(report)
}

fn kafka_url(s: &str, flag: &str) -> Result<Option<KafkaUrl>> {
    if !KafkaUrl::is_kafka(s) {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| Error::usage(format!("{flag}: {e}")))
}

/// `window start → client → count`.
type Counts = HashMap<i64, HashMap<String, u64>>;
/// `window start → client → the counts of every row found`.
type FoundCounts = HashMap<i64, HashMap<String, Vec<u64>>>;

fn compare(expected: &Counts, found: &FoundCounts, r: &mut VerifyReport) {
    // Every difference as borrowed parts; only the examples kept are copied.
    type Diff<'a> = (Kind, i64, &'a str, Option<u64>, &'a [u64]);
    let mut diffs: Vec<Diff<'_>> = Vec::new();
    for (&w, clients) in expected {
        r.expected_windows += 1;
        let got = found.get(&w);
        for (client, &n) in clients {
            r.expected_rows += 1;
            r.expected_requests += n;
            let kind = match got.and_then(|g| g.get(client)) {
                None => Kind::Missing,
                Some(f) if f.len() > 1 => Kind::Duplicated,
                Some(f) if f[0] != n => Kind::Wrong,
                Some(_) => continue,
            };
            let f = got
                .and_then(|g| g.get(client))
                .map_or(&[][..], Vec::as_slice);
            diffs.push((kind, w, client, Some(n), f));
        }
    }
    for (&w, clients) in found {
        let exp = expected.get(&w);
        for (client, f) in clients {
            if exp.is_none_or(|e| !e.contains_key(client)) {
                diffs.push((Kind::Unexpected, w, client, None, f));
            }
        }
    }
    for d in &diffs {
        match d.0 {
            Kind::Missing => r.missing += 1,
            Kind::Duplicated => r.duplicated += 1,
            Kind::Wrong => r.wrong += 1,
            Kind::Unexpected => r.unexpected += 1,
        }
    }
    diffs.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let mut shown: HashMap<Kind, usize> = HashMap::new();
    for (kind, w, client, expected, found) in diffs {
        let n = shown.entry(kind).or_default();
        if *n < r.examples_limit {
            *n += 1;
            r.examples.push(Discrepancy {
                kind,
                window_start: w,
                client: client.to_owned(),
                expected,
                found: found.to_vec(),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expected rows: the input's lines, parsed by weir's parser, counted here.

struct Expected {
    forced: Option<LogFormat>,
    simple_date_days: i32,
    window_ms: i64,
    parser: Option<LineParser>,
    format: Option<LogFormat>,
    counts: Counts,
    lines: u64,
    counted: u64,
    malformed: u64,
    examples: Vec<String>,
    max_examples: usize,
}

impl Expected {
    fn new(forced: Option<LogFormat>, simple_date_days: i32, window_ms: i64, n: usize) -> Self {
        Self {
            forced,
            simple_date_days,
            window_ms,
            parser: None,
            format: None,
            counts: Counts::new(),
            lines: 0,
            counted: 0,
            malformed: 0,
            examples: Vec::new(),
            max_examples: n,
        }
    }

    /// Counts every line of `chunk` (whole lines). `where_is(n)` says where line `n` of the
    /// chunk (1-based) is in the input, for malformed examples. The first chunk decides the
    /// format unless it was given; `name` names the input for that error.
    fn feed(&mut self, chunk: &[u8], name: &str, where_is: &dyn Fn(u64) -> String) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        if self.parser.is_none() {
            let format = match self.forced {
                Some(f) => f,
                None => detect_format(chunk).ok_or_else(|| {
                    Error::Io(weir_io::Error::UnknownFormat {
                        path: PathBuf::from(name),
                    })
                })?,
            };
            let mut opts = ParseOptions::new(format).with_columns(Columns::ts_client());
            opts.simple_date_days = self.simple_date_days;
            self.parser = Some(LineParser::new(opts));
            self.format = Some(format);
        }
        let parser = self.parser.as_mut().expect("created above");
        let counts = &mut self.counts;
        let window_ms = self.window_ms;
        let mut emit = |b: RecordBatch| count_batch(counts, window_ms, &b);
        parser
            .parse(chunk, 1, &mut emit)
            .expect("a lenient parser does not fail");
        parser.flush(&mut emit);
        let stats = parser.take_stats();
        self.lines += stats.lines;
        self.counted += stats.rows;
        self.malformed += stats.malformed;
        for m in stats.examples {
            if self.examples.len() < self.max_examples {
                self.examples
                    .push(format!("{}: {}: {:?}", where_is(m.line), m.reason, m.text));
            }
        }
        Ok(())
    }
}

/// Adds the rows of a parsed batch (`ts`, `client`) to `counts`.
fn count_batch(counts: &mut Counts, window_ms: i64, batch: &RecordBatch) {
    let ts = batch
        .column_by_name("ts")
        .expect("the projection has ts")
        .as_primitive::<TimestampMillisecondType>();
    let client = batch
        .column_by_name("client")
        .expect("the projection has client")
        .as_string::<i32>();
    let window = |i: usize| ts.value(i).div_euclid(window_ms) * window_ms;
    let rows = batch.num_rows();
    let mut i = 0;
    while i < rows {
        // Rows mostly come in time order: one window lookup per run of rows of a window.
        let w = window(i);
        let clients = counts.entry(w).or_default();
        while i < rows && window(i) == w {
            let c = client.value(i);
            match clients.get_mut(c) {
                Some(n) => *n += 1,
                None => {
                    clients.insert(c.to_owned(), 1);
                }
            }
            i += 1;
        }
    }
}

fn expected_from_file(path: &str, exp: &mut Expected) -> Result<()> {
    let mut lines = LineReader::new(open_file(path, "a log file")?, path, CHUNK_BYTES);
    let mut line = 1u64;
    while let Some(chunk) = lines.next_chunk()? {
        let (before, first) = (exp.lines, line);
        exp.feed(chunk, path, &|n| format!("line {}", first + n - 1))?;
        line += exp.lines - before;
    }
    Ok(())
}

/// Opens `path` (`-`: stdin; `.gz`: decompressed), which must be `what`, not a directory.
fn open_file(path: &str, what: &str) -> Result<Box<dyn Read + Send>> {
    if path != "-" && std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(Error::usage(format!("{path}: is a directory, not {what}")));
    }
    open_stream(Path::new(path)).map_err(opening)
}

fn expected_from_kafka(
    url: &KafkaUrl,
    ends: &[(i64, i64)],
    read_group: &str,
    exp: &mut Expected,
) -> Result<()> {
    let name = url.to_string();
    let mut buf = Vec::with_capacity(CHUNK_BYTES + (64 << 10));
    for (p, &(low, end)) in ends.iter().enumerate() {
        if end <= low {
            continue;
        }
        let p = p as i32;
        let mut reader = PartitionReader::open(url, p, None, read_group)?;
        let mut progress_at = Instant::now();
        while reader.position() < end {
            buf.clear();
            let run = reader.read(&mut buf, CHUNK_BYTES, POLL)?;
            if run.lines == 0 {
                if progress_at.elapsed() > STALL_TIMEOUT {
                    return Err(Error::from(stalled(url, &[(p, reader.position(), end)])));
                }
                continue;
            }
            progress_at = Instant::now();
            // Lines at or past the end taken at the start are not part of the check.
            let keep = (end - run.first).clamp(0, run.lines as i64) as usize;
            let bytes = match keep {
                0 => 0,
                k if k < run.lines as usize => memchr::memchr_iter(b'\n', &buf)
                    .nth(k - 1)
                    .map_or(buf.len(), |i| i + 1),
                _ => buf.len(),
            };
            let first = run.first;
            exp.feed(&buf[..bytes], &name, &|n| {
                format!(
                    "{} partition {p} offset {}",
                    url.topic,
                    first + n as i64 - 1
                )
            })?;
            if keep < run.lines as usize {
                break;
            }
        }
    }
    Ok(())
}

/// The `(low, high)` offsets of every partition of `url`'s topic, which must exist.
fn end_offsets(url: &KafkaUrl) -> Result<Vec<(i64, i64)>> {
    let partitions = topic_partitions(url)?;
    let consumer: BaseConsumer = url.client_config().create().map_err(|e| {
        Error::from(KafkaIoError::call(
            &url.brokers,
            "cannot create a client",
            e,
        ))
    })?;
    (0..partitions as i32)
        .map(|p| watermarks(&consumer, url, p).map_err(Error::from))
        .collect()
}

fn topic_partitions(url: &KafkaUrl) -> Result<usize> {
    connect(url)?.ok_or_else(|| {
        Error::from(KafkaIoError::NoTopic {
            addr: url.brokers.clone(),
            topic: url.topic.clone(),
        })
    })
}

fn stalled(url: &KafkaUrl, parts: &[(i32, i64, i64)]) -> KafkaIoError {
    let at: Vec<String> = parts
        .iter()
        .map(|(p, pos, end)| format!("partition {p} at offset {pos} of {end}"))
        .collect();
    KafkaIoError::Protocol {
        addr: url.brokers.clone(),
        what: format!(
            "{}: no progress for {} s reading read_committed up to the end offsets taken at the \
             start ({}): a transaction is probably still open (is a job still writing?)",
            url.topic,
            STALL_TIMEOUT.as_secs(),
            at.join(", ")
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Found rows: the output, read here.

struct Found {
    window_ms: i64,
    counts: FoundCounts,
    rows: u64,
    requests: u64,
    unreadable: u64,
    examples: Vec<String>,
    max_examples: usize,
    checked_first: bool,
}

/// A result row as read.
struct Row {
    start: i64,
    end: Option<i64>,
    client: String,
    count: u64,
}

impl Found {
    fn new(window_ms: i64, n: usize) -> Self {
        Self {
            window_ms,
            counts: FoundCounts::new(),
            rows: 0,
            requests: 0,
            unreadable: 0,
            examples: Vec::new(),
            max_examples: n,
            checked_first: false,
        }
    }

    /// Adds one output row read at `at` (`OUT line 7`, `topic partition 0 offset 12`).
    fn add(
        &mut self,
        row: std::result::Result<Row, String>,
        at: &dyn Fn() -> String,
    ) -> Result<()> {
        let row = match row {
            Ok(r) => r,
            Err(why) => {
                self.bad(at(), &why);
                return Ok(());
            }
        };
        if let Some(end) = row.end {
            if end - row.start != self.window_ms {
                if !self.checked_first {
                    // The first row already disagrees: the wrong --window, not a wrong row.
                    return Err(Error::usage(format!(
                        "{}: its windows are {} long but --window is {}: pass the job's --window",
                        at(),
                        human_ms(end - row.start),
                        human_ms(self.window_ms)
                    )));
                }
                self.bad(
                    at(),
                    &format!(
                        "window_end - window_start is {} ms, not the window's {} ms",
                        end - row.start,
                        self.window_ms
                    ),
                );
                return Ok(());
            }
        }
        self.checked_first = true;
        self.rows += 1;
        self.requests += row.count;
        self.counts
            .entry(row.start)
            .or_default()
            .entry(row.client)
            .or_default()
            .push(row.count);
        Ok(())
    }

    fn bad(&mut self, at: String, why: &str) {
        self.unreadable += 1;
        if self.examples.len() < self.max_examples {
            self.examples.push(format!("{at}: {why}"));
        }
    }
}

/// The column layouts of a results CSV.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CsvLayout {
    /// `window_start,window_end,client,count` (`weir replay --output-format csv`).
    StartEndClientCount,
    /// `window_start,client,count` (the expected files shipped with the test logs).
    StartClientCount,
}

fn found_from_file(path: &str, found: &mut Found) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, open_file(path, "a results file")?);
    let io = |e| Error::Io(weir_io::Error::io(Path::new(path), e));
    if reader.fill_buf().map_err(io)?.starts_with(b"ARROW1") {
        return Err(Error::usage(format!(
            "{path}: an Arrow IPC file: verify reads the results of `weir replay \
             --output-format csv` or `jsonl`"
        )));
    }
    let stem = path.strip_suffix(".gz").unwrap_or(path);
    let json = if stem.ends_with(".jsonl") || stem.ends_with(".json") {
        true
    } else if stem.ends_with(".csv") {
        false
    } else {
        let head = reader.fill_buf().map_err(io)?;
        head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    };
    let mut layout: Option<CsvLayout> = None;
    let mut line = Vec::new();
    let mut no = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            return Ok(());
        }
        no += 1;
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = || format!("{path} line {no}");
        let Ok(text) = std::str::from_utf8(l) else {
            found.bad(at(), "not UTF-8");
            continue;
        };
        if json {
            found.add(json_row(text), &at)?;
            continue;
        }
        let lay = match layout {
            Some(lay) => lay,
            None => {
                let first = text.split(',').next().unwrap_or_default();
                if first.trim().parse::<i64>().is_err() {
                    // A header.
                    layout = Some(match text.trim() {
                        "window_start,window_end,client,count" => CsvLayout::StartEndClientCount,
                        "window_start,client,count" => CsvLayout::StartClientCount,
                        other => {
                            return Err(Error::usage(format!(
                                "{path}: {other:?} is not the header of weir's CSV \
                                 results (window_start,window_end,client,count): verify reads \
                                 the `--output-format csv` or `jsonl` results of jobs keyed by \
                                 client only"
                            )))
                        }
                    });
                    continue;
                }
                let lay = guess_layout(text, found.window_ms);
                layout = Some(lay);
                lay
            }
        };
        found.add(csv_row(text, lay), &at)?;
    }
}

/// The layout of a CSV without header, from its first row: four columns when the second is
/// the first plus the window.
fn guess_layout(text: &str, window_ms: i64) -> CsvLayout {
    let mut f = text.split(',');
    let start = f.next().and_then(|s| s.trim().parse::<i64>().ok());
    let end = f.next().and_then(|s| s.trim().parse::<i64>().ok());
    let more = f.count() >= 2;
    match (start, end) {
        (Some(s), Some(e)) if more && e - s == window_ms => CsvLayout::StartEndClientCount,
        _ => CsvLayout::StartClientCount,
    }
}

/// One CSV row. The client is the field between the numbers, unquoted if quoted (so a
/// client holding a comma reads right either way).
fn csv_row(text: &str, layout: CsvLayout) -> std::result::Result<Row, String> {
    let num = |s: &str, what: &str| -> std::result::Result<i64, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    };
    let (start, rest) = text
        .split_once(',')
        .ok_or("not a CSV row of window_start,…,client,count")?;
    let start = num(start, "window_start")?;
    let (end, rest) = match layout {
        CsvLayout::StartEndClientCount => {
            let (e, rest) = rest.split_once(',').ok_or("too few columns")?;
            (Some(num(e, "window_end")?), rest)
        }
        CsvLayout::StartClientCount => (None, rest),
    };
    let (client, count) = rest.rsplit_once(',').ok_or("too few columns")?;
    let count = u64::try_from(num(count, "count")?).map_err(|_| "negative count".to_owned())?;
    let client = unquote(client)?;
    // weir's CSV escapes control bytes and backslashes in keys (`weir_io::sink::escape_key`).
    let client = match weir_io::sink::unescape_key(client.as_bytes()) {
        Some(raw) => String::from_utf8_lossy(&raw).into_owned(),
        None => return Err(format!("the client {client:?} has a broken \\ escape")),
    };
    Ok(Row {
        start,
        end,
        client,
        count,
    })
}

/// A CSV field's value: `"a,""b"""` → `a,"b"`; an unquoted field as it is.
fn unquote(field: &str) -> std::result::Result<String, String> {
    let Some(inner) = field.strip_prefix('"') else {
        return Ok(field.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| format!("unterminated quoted field {field:?}"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return Err(format!("stray quote in field {field:?}"));
        }
        out.push(c);
    }
    Ok(out)
}

/// A JSON result row, as `weir replay --output-format jsonl` and the Kafka sink write it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    window_start: i64,
    #[serde(default)]
    window_end: Option<i64>,
    client: String,
    count: u64,
}

fn json_row(text: &str) -> std::result::Result<Row, String> {
    let r: JsonRow = serde_json::from_str(text).map_err(|e| {
        format!("not a JSON result row {{window_start, window_end, client, count}} ({e})")
    })?;
    Ok(Row {
        start: r.window_start,
        end: r.window_end,
        client: r.client,
        count: r.count,
    })
}

/// Notes whether the job of `group` finished, from its progress (the group's committed offset
/// on the progress topic): a job still running, or stopped, has not delivered its last windows.
fn note_progress(url: &KafkaUrl, group: &str, notes: &mut Vec<String>) -> Result<()> {
    connect(url)?; // a dead broker is named within seconds
    let consumer = group_consumer(&url.brokers, group)?;
    let (progress, _) = read_progress(&consumer, &url.brokers, group, &[])?;
    match progress {
        None => notes.push(format!(
            "group {group:?} has no committed progress on {PROGRESS_TOPIC} at {}: the job has \
             not committed yet, or its --group is another",
            url.brokers
        )),
        Some(p) if !p.finished => notes.push(format!(
            "the job's progress (group {group}, epoch {}) does not say the run finished: it \
             may still be running or have stopped, and rows of later windows may be missing \
             for that reason",
            p.epoch
        )),
        Some(_) => {}
    }
    Ok(())
}

/// Reads every partition of the output topic up to `ends` (taken at the start), `read_committed`.
fn found_from_kafka(
    url: &KafkaUrl,
    ends: &[(i64, i64)],
    read_group: &str,
    found: &mut Found,
) -> Result<()> {
    for (p, &(low, end)) in ends.iter().enumerate() {
        if end <= low {
            continue;
        }
        let p = p as i32;
        let mut reader = RecordReader::open(url, p, read_group, true, Some(end))?;
        // The first error stops the checks; the rest of the partition is read unchecked.
        let mut failed: Option<Error> = None;
        reader.read_to_end(&mut |m| {
            if failed.is_some() {
                return;
            }
            let offset = m.offset();
            let at = || format!("{} partition {p} offset {offset}", url.topic);
            failed = found.add(record_row(m.key(), m.payload()), &at).err();
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// A result record: key = client, value = a JSON row (or a CSV line without header).
fn record_row(key: Option<&[u8]>, value: Option<&[u8]>) -> std::result::Result<Row, String> {
    let value = value.ok_or("a record without a value")?;
    let text = std::str::from_utf8(value).map_err(|_| "a value that is not UTF-8".to_owned())?;
    let text = text.trim_end_matches(['\n', '\r']);
    let row = if text.trim_start().starts_with('{') {
        json_row(text)?
    } else {
        csv_row(text, CsvLayout::StartEndClientCount)?
    };
    if let Some(key) = key {
        if key != row.client.as_bytes() {
            return Err(format!(
                "the key {:?} is not the value's client {:?}",
                String::from_utf8_lossy(key),
                row.client
            ));
        }
    }
    Ok(row)
}

// ---------------------------------------------------------------------------------------------
// The report.

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "weir verify: {} -> {}, {} windows by client",
            self.input,
            self.output,
            human_ms(self.window_ms)
        )?;
        writeln!(
            f,
            "input:      {} lines ({}): {} counted, {} malformed (skipped)",
            thousands(self.lines),
            self.format.map_or("empty", |f| f.name()),
            thousands(self.counted),
            thousands(self.malformed)
        )?;
        writeln!(
            f,
            "expected:   {} rows in {} windows, {} requests",
            thousands(self.expected_rows),
            thousands(self.expected_windows),
            thousands(self.expected_requests)
        )?;
        write!(
            f,
            "found:      {} rows, {} requests",
            thousands(self.found_rows),
            thousands(self.found_requests)
        )?;
        writeln!(f)?;
        if self.is_clean() {
            writeln!(
                f,
                "result:     clean: every expected row found once with the right count, \
                 nothing else"
            )?;
        } else {
            writeln!(
                f,
                "result:     NOT CLEAN: {} missing, {} duplicated, {} wrong, {} unexpected, {} \
                 unreadable",
                thousands(self.missing),
                thousands(self.duplicated),
                thousands(self.wrong),
                thousands(self.unexpected),
                thousands(self.unreadable)
            )?;
        }
        for kind in Kind::ALL {
            let n = self.count(kind);
            if n == 0 {
                continue;
            }
            let what = match kind {
                Kind::Missing => "expected, not found",
                Kind::Duplicated => "found more than once",
                Kind::Wrong => "found once with another count",
                Kind::Unexpected => "found, not expected",
            };
            writeln!(f, "{} rows ({what}): {}", kind.name(), thousands(n))?;
            let shown: Vec<&Discrepancy> =
                self.examples.iter().filter(|d| d.kind == kind).collect();
            for d in &shown {
                let expected = d.expected.map_or("none".to_owned(), |e| e.to_string());
                let found = match d.found.len() {
                    0 => "none".to_owned(),
                    1 => d.found[0].to_string(),
                    k => {
                        let all: Vec<String> = d.found.iter().map(u64::to_string).collect();
                        format!("{k} times ({})", all.join(", "))
                    }
                };
                writeln!(
                    f,
                    "  window {} ({})  client {}  expected {expected}, found {found}",
                    utc(d.window_start),
                    d.window_start,
                    d.client
                )?;
            }
            if (shown.len() as u64) < n {
                writeln!(f, "  … and {} more", thousands(n - shown.len() as u64))?;
            }
        }
        if self.unreadable > 0 {
            writeln!(f, "unreadable output rows: {}", thousands(self.unreadable))?;
            for e in &self.unreadable_examples {
                writeln!(f, "  {e}")?;
            }
        }
        if !self.malformed_examples.is_empty() {
            writeln!(f, "first malformed input lines:")?;
            for e in &self.malformed_examples {
                writeln!(f, "  {e}")?;
            }
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// `2024-05-12T00:00:05Z` (with milliseconds when there are any).
fn utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, frac) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
    }
}

/// `5 s`, `250 ms`, `1 min`.
fn human_ms(ms: i64) -> String {
    if ms != 0 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms != 0 && ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows() {
        let r = csv_row("5000,10000,10.0.0.1,7", CsvLayout::StartEndClientCount).unwrap();
        assert_eq!(
            (r.start, r.end, r.client.as_str(), r.count),
            (5000, Some(10000), "10.0.0.1", 7)
        );
        let r = csv_row("5000,\"a,\"\"b\"\"\",3", CsvLayout::StartEndClientCount);
        assert!(r.is_err(), "the end column is the quoted field");
        let r = csv_row(
            "5000,10000,\"a,\"\"b\"\"\",3",
            CsvLayout::StartEndClientCount,
        )
        .unwrap();
        assert_eq!(r.client, "a,\"b\"");
        let r = csv_row("5000,x,y,3", CsvLayout::StartClientCount).unwrap();
        assert_eq!((r.end, r.client.as_str()), (None, "x,y"));
        assert!(csv_row("5000,10000,c,-1", CsvLayout::StartEndClientCount).is_err());
        assert!(csv_row("5000,10000,\"c,1", CsvLayout::StartEndClientCount).is_err());
        assert_eq!(
            guess_layout("5000,10000,c,1", 5000),
            CsvLayout::StartEndClientCount
        );
        assert_eq!(guess_layout("5000,c,1", 5000), CsvLayout::StartClientCount);
    }

    #[test]
    fn json_and_record_rows() {
        let v = br#"{"window_start":0,"window_end":5000,"client":"::1","count":2}"#;
        let r = record_row(Some(b"::1"), Some(v)).unwrap();
        assert_eq!((r.start, r.client.as_str(), r.count), (0, "::1", 2));
        assert!(record_row(Some(b"::2"), Some(v)).is_err());
        assert!(record_row(None, None).is_err());
        let r = record_row(Some(b"c"), Some(b"0,5000,c,4\n")).unwrap();
        assert_eq!(r.count, 4);
        assert!(json_row(
            r#"{"window_start":0,"window_end":5000,"client":"c","status":200,"count":1}"#
        )
        .is_err());
    }

    #[test]
    fn compare_kinds() {
        let mut exp = Counts::new();
        let mut found = FoundCounts::new();
        for (c, n) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
            exp.entry(0).or_default().insert(c.into(), n);
        }
        found.entry(0).or_default().insert("a".into(), vec![1]);
        found.entry(0).or_default().insert("b".into(), vec![2, 2]);
        found.entry(0).or_default().insert("c".into(), vec![30]);
        found.entry(5000).or_default().insert("a".into(), vec![1]);
        let mut r = VerifyReport {
            examples_limit: 10,
            ..VerifyReport::default()
        };
        compare(&exp, &found, &mut r);
        assert_eq!(
            (r.missing, r.duplicated, r.wrong, r.unexpected),
            (1, 1, 1, 1)
        );
        assert_eq!(
            (r.expected_rows, r.expected_requests, r.expected_windows),
            (4, 10, 1)
        );
        assert!(!r.is_clean());
        let kinds: Vec<Kind> = r.examples.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, Kind::ALL);
        let text = r.to_string();
        assert!(
            text.contains("NOT CLEAN: 1 missing, 1 duplicated, 1 wrong, 1 unexpected"),
            "{text}"
        );
        assert!(
            text.contains("client b  expected 2, found 2 times (2, 2)"),
            "{text}"
        );
        assert!(
            text.contains("window 1970-01-01T00:00:05Z (5000)  client a  expected none, found 1"),
            "{text}"
        );
    }

    #[test]
    fn times() {
        assert_eq!(utc(1_715_472_005_000), "2024-05-12T00:00:05Z");
        assert_eq!(utc(-500), "1969-12-31T23:59:59.500Z");
        assert_eq!(human_ms(5000), "5 s");
        assert_eq!(human_ms(60_000), "1 min");
        assert_eq!(human_ms(250), "250 ms");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
