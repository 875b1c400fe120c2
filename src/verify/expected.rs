//! The expected counts: the input's lines, parsed by weir's parser, counted here per window and client, from a file or a Kafka topic.

use super::*;

pub(super) struct Expected {
    pub(super) forced: Option<LogFormat>,
    pub(super) simple_date_days: i32,
    pub(super) window_ms: i64,
    pub(super) parser: Option<LineParser>,
    pub(super) format: Option<LogFormat>,
    pub(super) counts: Counts,
    pub(super) lines: u64,
    pub(super) counted: u64,
    pub(super) malformed: u64,
    pub(super) examples: Vec<String>,
    pub(super) max_examples: usize,
}

impl Expected {
    pub(super) fn new(
        forced: Option<LogFormat>,
        simple_date_days: i32,
        window_ms: i64,
        n: usize,
    ) -> Self {
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
pub(super) fn count_batch(counts: &mut Counts, window_ms: i64, batch: &RecordBatch) {
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

pub(super) fn expected_from_file(path: &str, exp: &mut Expected) -> Result<()> {
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
pub(super) fn open_file(path: &str, what: &str) -> Result<Box<dyn Read + Send>> {
    if path != "-" && std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(Error::usage(format!("{path}: is a directory, not {what}")));
    }
    open_stream(Path::new(path)).map_err(opening)
}

pub(super) fn expected_from_kafka(
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
