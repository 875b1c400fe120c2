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

//!
//! By concern: [`expected`] recomputes the expected counts from the input, [`found`] reads the
//! rows the output holds (files and Kafka), [`report`] compares them and writes the report.

mod expected;
mod found;
mod report;

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::RecordBatch;
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
use crate::units::thousands;

use expected::*;
use found::*;
use report::*;
pub use report::{Discrepancy, Kind, VerifyReport};

/// Bytes of input parsed at a time.
pub(super) const CHUNK_BYTES: usize = 4 << 20;
/// How long a Kafka read may make no progress before the end offset taken at the start before
/// the check gives up (a transaction still open holds `read_committed` readers back).
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// One poll of a Kafka consumer.
pub(super) const POLL: Duration = Duration::from_millis(500);

/// What `weir verify` checks: the input, the output, and how the job read the one into the
/// other. The command line's `weir verify` flags map onto it one to one.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The input: an access-log file (`.gz` is decompressed, `-` is stdin) or
    /// kafka://HOST:PORT/TOPIC (every partition, from the beginning to its end offset now; each
    /// message is one line).
    pub input: String,
    /// The output to check: a results file written by `weir replay --output-format csv|jsonl`
    /// (told apart by its extension .csv/.jsonl/.json, or a first byte `{`) or
    /// kafka://HOST:PORT/TOPIC.
    pub output: String,
    /// The job's tumbling window size.
    pub window: Duration,
    /// Log format of the input; `None` detects it from the first lines.
    pub format: Option<LogFormat>,
    /// Date of the `simple` format's HH:MM:SS times, in days since the epoch; default today.
    pub date: Option<i32>,
    /// The job's group (its progress on Kafka); default: the one the job derives from `input`
    /// and `output`.
    pub group: Option<String>,
    /// Examples of each kind of difference to show.
    pub examples: usize,
}

impl VerifyConfig {
    /// A check of `output` against `input` with the defaults of `weir verify`: 5 s windows,
    /// the format detected, 10 examples.
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            window: Duration::from_secs(5),
            format: None,
            date: None,
            group: None,
            examples: 10,
        }
    }
}

/// Recomputes the windows of `args.input`, reads `args.output` and compares them.
pub fn verify(args: &VerifyConfig) -> Result<VerifyReport> {
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
        args.format,
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
pub(super) type Counts = HashMap<i64, HashMap<String, u64>>;
/// `window start → client → the counts of every row found`.
pub(super) type FoundCounts = HashMap<i64, HashMap<String, Vec<u64>>>;

/// The `(low, high)` offsets of every partition of `url`'s topic, which must exist.
pub(super) fn end_offsets(url: &KafkaUrl) -> Result<Vec<(i64, i64)>> {
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

pub(super) fn topic_partitions(url: &KafkaUrl) -> Result<usize> {
    connect(url)?.ok_or_else(|| {
        Error::from(KafkaIoError::NoTopic {
            addr: url.brokers.clone(),
            topic: url.topic.clone(),
        })
    })
}

pub(super) fn stalled(url: &KafkaUrl, parts: &[(i32, i64, i64)]) -> KafkaIoError {
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
