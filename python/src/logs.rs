//! Access logs: [`replay`] (a log through a windowed count, as `weir replay` does) and
//! [`NativeLogReader`] (the parsed log as record batches, read lazily).
//!
//! Both read through [`LogFile`]: weir-io's [`open_input`] maps a regular file and streams
//! anything else (gzip, a pipe, a device), and one [`LineParser`] parses it chunk by chunk in
//! file order. One parser and one engine input make every run give the same answer, late rows
//! included, whatever the parallelism of the workers behind it; parsing is the part that stays
//! on one core.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use weir_io::parse::{detect_format, Columns, LineParser, LogFormat, ParseOptions, ParseStats};
use weir_io::source::{open_input, LineReader, LogInput, MappedFile, DEFAULT_CHUNK_BYTES};

use crate::aggregate::{stats_dict, JobArgs};
use crate::arrow::ArrowStream;
use crate::errors::{Error, Result};

/// How much of a file format detection looks at.
const DETECT_BYTES: usize = 1 << 16;

enum Source {
    Mapped { file: MappedFile, next: usize },
    Stream(Box<LineReader<Box<dyn Read + Send>>>),
}

/// A log being parsed, chunk by chunk, in file order.
struct LogFile {
    source: Source,
    parser: LineParser,
    /// The first chunk of a stream, read to detect the format and not parsed yet.
    first: Option<Vec<u8>>,
    done: bool,
}

impl LogFile {
    /// Opens `path`; `format` `None` detects it from the first lines.
    fn open(
        path: &Path,
        format: Option<LogFormat>,
        columns: Columns,
        strict: bool,
        batch_rows: usize,
    ) -> Result<Self> {
        let (source, first, sample_format) = match open_input(path)? {
            LogInput::Mapped(file) => {
                let data = file.bytes();
                let f = format.or_else(|| detect_format(&data[..data.len().min(DETECT_BYTES)]));
                (Source::Mapped { file, next: 0 }, None, f)
            }
            LogInput::Stream(reader) => {
                let mut lines = Box::new(
                    LineReader::new(reader, path, DEFAULT_CHUNK_BYTES)
                        .with_max_line(weir_io::parse::DEFAULT_MAX_LINE_BYTES),
                );
                let first = lines.next_chunk()?.map(<[u8]>::to_vec);
                let f = format.or_else(|| detect_format(first.as_deref().unwrap_or_default()));
                (Source::Stream(lines), first, f)
            }
        };
        let format = sample_format.ok_or_else(|| weir_io::Error::UnknownFormat {
            path: path.to_owned(),
        })?;
        let mut opts = ParseOptions::new(format).with_columns(columns);
        opts.strict = strict;
        opts.batch_rows = batch_rows.max(1);
        Ok(Self {
            source,
            parser: LineParser::new(opts),
            first,
            done: false,
        })
    }

    fn format(&self) -> LogFormat {
        self.parser.options().format
    }

    fn schema(&self) -> SchemaRef {
        self.parser.schema()
    }

    /// Parses the next chunk, emitting full batches; at the end flushes the rest and returns
    /// `false`.
    fn step(&mut self, emit: &mut dyn FnMut(RecordBatch)) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let first_line = self.parser.stats().lines + 1;
        let parsed = match &mut self.source {
            Source::Mapped { file, next } => match file.chunk(*next, DEFAULT_CHUNK_BYTES) {
                Some(range) => {
                    *next += 1;
                    Some(self.parser.parse(&file.bytes()[range], first_line, emit))
                }
                None => None,
            },
            Source::Stream(lines) => match self.first.take() {
                Some(chunk) => Some(self.parser.parse(&chunk, first_line, emit)),
                None => match lines.next_chunk()? {
                    Some(chunk) => Some(self.parser.parse(chunk, first_line, emit)),
                    None => None,
                },
            },
        };
        match parsed {
            Some(r) => {
                r?;
                Ok(true)
            }
            None => {
                self.parser.flush(emit);
                self.done = true;
                Ok(false)
            }
        }
    }
}

fn parse_format(format: Option<&str>) -> Result<Option<LogFormat>> {
    match format {
        None | Some("auto") => Ok(None),
        Some(f) => f.parse().map(Some).map_err(Error::Usage),
    }
}

/// The parser columns named, `ts` always first.
fn parse_columns(names: &[String]) -> Result<Columns> {
    let mut cols = Columns::NONE;
    for n in names {
        cols |= Columns::from_name(n).ok_or_else(|| {
            Error::Usage(format!(
                "`{n}` is not a column of the access log (ts, client, method, path, status, bytes, referer, user_agent)"
            ))
        })?;
    }
    Ok(cols)
}

fn parse_stats_into(d: &Bound<'_, PyDict>, format: LogFormat, s: &ParseStats) -> PyResult<()> {
    let py = d.py();
    d.set_item("format", format.name())?;
    d.set_item("lines", s.lines)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("rows", s.rows)?;
    d.set_item("malformed", s.malformed)?;
    let examples = PyList::empty(py);
    for m in &s.examples {
        let e = PyDict::new(py);
        e.set_item("line", m.line)?;
        e.set_item("reason", m.reason)?;
        e.set_item("text", &m.text)?;
        examples.append(e)?;
    }
    d.set_item("malformed_examples", examples)?;
    Ok(())
}

/// Counts rows per window and key of the log at `path`, as `weir replay` does. Returns the
/// result batches (oldest window first) and the run's counters.
#[pyfunction]
#[pyo3(signature = (path, format, window_ms, keys, max_out_of_orderness_ms = None, parallelism = None, strict = false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn replay<'py>(
    py: Python<'py>,
    path: PathBuf,
    format: Option<String>,
    window_ms: u64,
    keys: Vec<String>,
    max_out_of_orderness_ms: Option<u64>,
    parallelism: Option<usize>,
    strict: bool,
) -> PyResult<(ArrowStream, Bound<'py, PyDict>)> {
    let format = parse_format(format.as_deref())?;
    if keys.iter().any(|k| k == "ts") {
        return Err(Error::Usage("`ts` is the event time and cannot be a key".into()).into());
    }
    let columns = Columns::TS | parse_columns(&keys)?;
    let spec = JobArgs {
        time: "ts".into(),
        keys: keys.clone(),
        window_ms,
        aggs: vec![("count".into(), None, None)],
        parallelism,
        max_out_of_orderness_ms,
    }
    .spec()?;
    let run = py.detach(move || -> Result<_> {
        let mut log = LogFile::open(&path, format, columns, strict, 1 << 16)?;
        let have = Columns::available(log.format());
        if let Some(k) = keys
            .iter()
            .find(|k| !have.contains(Columns::from_name(k).unwrap_or(Columns::NONE)))
        {
            return Err(Error::Usage(format!(
                "key `{k}`: the {} format has no such column",
                log.format()
            )));
        }
        let schema = log.schema();
        let output_schema = spec.output_schema(&schema)?;
        let results = Arc::new(Mutex::new(Vec::new()));
        let sink_results = Arc::clone(&results);
        let sink = move |b: RecordBatch| -> Result<(), weir_engine::SinkError> {
            sink_results
                .lock()
                .map_err(|_| "results lock poisoned")?
                .push(b);
            Ok(())
        };
        let mut job = spec.start_with_sink(schema, Box::new(sink))?;
        let mut input = job
            .input()
            .ok_or_else(|| Error::Usage("internal: a started job has no input".into()))?;
        let mut batches = Vec::new();
        let fed = (|| -> Result<()> {
            loop {
                let more = log.step(&mut |b| batches.push(b))?;
                for b in batches.drain(..) {
                    input.push(b)?;
                }
                if !more {
                    return Ok(());
                }
            }
        })();
        let job_stats = match fed {
            Ok(()) => {
                input.finish()?;
                job.join()?
            }
            Err(e) => {
                // The run is incomplete: stop the job (its error, if any, only echoes ours).
                drop(input);
                let _ = job.join();
                return Err(e);
            }
        };
        let out = std::mem::take(
            &mut *results
                .lock()
                .map_err(|_| Error::Usage("internal: results lock poisoned".into()))?,
        );
        Ok((
            output_schema,
            out,
            log.format(),
            log.parser.take_stats(),
            job_stats,
        ))
    })?;
    let (schema, batches, format, parse_stats, job_stats) = run;
    let d = stats_dict(py, &job_stats)?;
    parse_stats_into(&d, format, &parse_stats)?;
    Ok((ArrowStream::new(schema, batches), d))
}

/// The parsed log, batch by batch (`weir.parse` wraps it in a `weir.LogReader`).
#[pyclass(module = "weir._native", frozen)]
pub struct NativeLogReader {
    inner: Mutex<(LogFile, VecDeque<RecordBatch>)>,
    schema: SchemaRef,
    format: LogFormat,
}

/// Opens the log at `path` for [`NativeLogReader`].
#[pyfunction]
#[pyo3(signature = (path, columns, format = None, strict = false, batch_rows = 65536))]
pub(crate) fn open_log(
    py: Python<'_>,
    path: PathBuf,
    columns: Vec<String>,
    format: Option<String>,
    strict: bool,
    batch_rows: usize,
) -> PyResult<NativeLogReader> {
    let format = parse_format(format.as_deref())?;
    let columns = parse_columns(&columns)?;
    let log = py.detach(|| LogFile::open(&path, format, columns, strict, batch_rows))?;
    Ok(NativeLogReader {
        schema: log.schema(),
        format: log.format(),
        inner: Mutex::new((log, VecDeque::new())),
    })
}

impl NativeLogReader {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, (LogFile, VecDeque<RecordBatch>)>> {
        self.inner
            .lock()
            .map_err(|_| Error::Usage("the reader's lock was poisoned by an earlier panic".into()))
    }
}

#[pymethods]
impl NativeLogReader {
    /// The next batch as a one-batch stream, or `None` at the end of the log.
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<ArrowStream>> {
        let next = py.detach(|| -> Result<Option<RecordBatch>> {
            let mut guard = self.lock()?;
            let (log, queue) = &mut *guard;
            while queue.is_empty() {
                if !log.step(&mut |b| queue.push_back(b))? {
                    break;
                }
            }
            Ok(queue.pop_front())
        })?;
        Ok(next.map(|b| ArrowStream::new(Arc::clone(&self.schema), vec![b])))
    }

    /// The schema of the batches, as an empty stream.
    #[getter]
    fn schema(&self) -> ArrowStream {
        ArrowStream::new(Arc::clone(&self.schema), Vec::new())
    }

    /// The log format parsed.
    #[getter]
    fn format(&self) -> &'static str {
        self.format.name()
    }

    /// Lines, rows and malformed lines parsed so far, with the first malformed examples.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.lock()?.0.parser.stats().clone();
        let d = PyDict::new(py);
        parse_stats_into(&d, self.format, &stats)?;
        Ok(d)
    }

    /// Whether the whole log has been parsed.
    #[getter]
    fn done(&self) -> PyResult<bool> {
        let g = self.lock()?;
        Ok(g.0.done && g.1.is_empty())
    }
}
