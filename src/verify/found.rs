//! The rows found: what the output holds, read from a CSV or JSON-lines file or from a Kafka topic (`read_committed`).

use super::*;

pub(super) struct Found {
    pub(super) window_ms: i64,
    pub(super) counts: FoundCounts,
    pub(super) rows: u64,
    pub(super) requests: u64,
    pub(super) unreadable: u64,
    pub(super) examples: Vec<String>,
    pub(super) max_examples: usize,
    pub(super) checked_first: bool,
}

/// A result row as read.
pub(super) struct Row {
    pub(super) start: i64,
    pub(super) end: Option<i64>,
    pub(super) client: String,
    pub(super) count: u64,
}

impl Found {
    pub(super) fn new(window_ms: i64, n: usize) -> Self {
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
pub(super) enum CsvLayout {
    /// `window_start,window_end,client,count` (`weir replay --output-format csv`).
    StartEndClientCount,
    /// `window_start,client,count` (the expected files shipped with the test logs).
    StartClientCount,
}

pub(super) fn found_from_file(path: &str, found: &mut Found) -> Result<()> {
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
pub(super) fn guess_layout(text: &str, window_ms: i64) -> CsvLayout {
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
pub(super) fn csv_row(text: &str, layout: CsvLayout) -> std::result::Result<Row, String> {
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

pub(super) fn json_row(text: &str) -> std::result::Result<Row, String> {
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
pub(super) fn note_progress(url: &KafkaUrl, group: &str, notes: &mut Vec<String>) -> Result<()> {
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
pub(super) fn found_from_kafka(
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
pub(super) fn record_row(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> std::result::Result<Row, String> {
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
}
