//! Writing result batches: the seed's print format, CSV, JSON lines and Arrow IPC.
//!
//! A [`BatchWriter`] takes whole result batches (`window_start`, `window_end`, key columns,
//! aggregate columns) and writes them to any `Write`. Rows are formatted column by column
//! through a `ColumnFormatter` chosen once per batch from the column's type, into one reused
//! byte buffer that is written out every 64 KiB and at the end of each batch: no `String` per
//! value, no `format!` on the hot path (integers go through `itoa`).
//!
//! | format  | one result row                                              |
//! |---------|-------------------------------------------------------------|
//! | `print` | `12:00:05 10.0.0.1 42` (window start as `HH:MM:SS`, keys, aggregates) |
//! | `csv`   | `1700000005000,1700000010000,10.0.0.1,42` under a header    |
//! | `jsonl` | `{"window_start":1700000005000,"window_end":…,"client":"10.0.0.1","count":42}` |
//! | `arrow` | the batches themselves, in an Arrow IPC file               |

use std::io::Write;
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use crate::error::{Error, Result};

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// The seed job's `HH:mm:ss key… aggregate…` lines.
    Print,
    /// CSV with a header; timestamps as epoch milliseconds.
    Csv,
    /// One JSON object per line; timestamps as epoch milliseconds.
    Jsonl,
    /// An Arrow IPC file.
    Arrow,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "print" => Ok(Self::Print),
            "csv" => Ok(Self::Csv),
            "jsonl" | "json" => Ok(Self::Jsonl),
            "arrow" | "ipc" => Ok(Self::Arrow),
            _ => Err(format!(
                "unknown output format `{s}` (print, csv, jsonl, arrow)"
            )),
        }
    }
}

/// Writes result batches in one format.
pub trait BatchWriter: Send {
    /// Writes every row of `batch`.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Writes whatever the format needs at the end (the IPC footer) and flushes.
    fn finish(&mut self) -> Result<()>;
}

/// A job's sink writing every result batch with a [`BatchWriter`] (a plain, not checkpointed,
/// output; [`crate::results_file::exactly_once`] is the checkpointed one).
pub struct WriterSink(pub Box<dyn BatchWriter>);

impl weir_engine::ResultSink for WriterSink {
    fn batch(&mut self, batch: RecordBatch) -> std::result::Result<(), weir_engine::SinkError> {
        Ok(self.0.write(&batch)?)
    }

    fn finish(&mut self) -> std::result::Result<(), weir_engine::SinkError> {
        Ok(self.0.finish()?)
    }
}

/// A writer of `format` for batches of `schema` into `out`. `path` names the destination in
/// errors (`-` for stdout); `utc_offset_secs` shifts the `print` format's clock.
pub fn writer(
    format: OutputFormat,
    out: Box<dyn Write + Send>,
    path: PathBuf,
    schema: SchemaRef,
    utc_offset_secs: i32,
) -> Result<Box<dyn BatchWriter>> {
    match format {
        OutputFormat::Arrow => {
            let w = FileWriter::try_new(out, &schema).map_err(|e| arrow_err(&path, e))?;
            Ok(Box::new(IpcWriter { w, path }))
        }
        _ => continue_writer(format, out, path, schema, utc_offset_secs, false),
    }
}

/// Like [`writer`], for output that continues where an earlier run's committed output stopped
/// (a run restored from a checkpoint): a text format skips the CSV header when `started` says
/// output was already written; Arrow IPC cannot be continued and is refused.
pub fn continue_writer(
    format: OutputFormat,
    out: Box<dyn Write + Send>,
    path: PathBuf,
    schema: SchemaRef,
    utc_offset_secs: i32,
    started: bool,
) -> Result<Box<dyn BatchWriter>> {
    if format == OutputFormat::Arrow {
        return Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "an Arrow IPC file cannot be continued across restarts; use csv, jsonl or print \
                 with checkpoints",
            ),
        ));
    }
    Ok(Box::new(TextWriter {
        format,
        out,
        path,
        schema,
        buf: Vec::with_capacity(1 << 17),
        header_done: started,
        utc_offset_ms: i64::from(utc_offset_secs) * 1000,
    }))
}

fn arrow_err(path: &std::path::Path, e: arrow_schema::ArrowError) -> Error {
    Error::io(path, std::io::Error::other(e))
}

struct IpcWriter {
    w: FileWriter<Box<dyn Write + Send>>,
    path: PathBuf,
}

impl BatchWriter for IpcWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.w.write(batch).map_err(|e| arrow_err(&self.path, e))
    }
    fn finish(&mut self) -> Result<()> {
        self.w.finish().map_err(|e| arrow_err(&self.path, e))?;
        self.w
            .get_mut()
            .flush()
            .map_err(|e| Error::io(&self.path, e))
    }
}

struct TextWriter {
    format: OutputFormat,
    out: Box<dyn Write + Send>,
    path: PathBuf,
    schema: SchemaRef,
    buf: Vec<u8>,
    header_done: bool,
    utc_offset_ms: i64,
}

impl TextWriter {
    fn spill(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.buf.clear();
        Ok(())
    }
}

impl BatchWriter for TextWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if !self.header_done {
            self.header_done = true;
            if self.format == OutputFormat::Csv {
                let names: Vec<String> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| csv_field(f.name()))
                    .collect();
                self.buf.extend_from_slice(names.join(",").as_bytes());
                self.buf.push(b'\n');
            }
        }
        let rows = RowRenderer::new(batch, 0);
        for row in 0..batch.num_rows() {
            match self.format {
                OutputFormat::Print => {
                    // Window start as a time of day, then every column after window_end.
                    let start = batch
                        .column(0)
                        .as_primitive::<TimestampMillisecondType>()
                        .value(row);
                    clock(start + self.utc_offset_ms, &mut self.buf);
                    for c in &rows.cols[2..] {
                        self.buf.push(b' ');
                        c.write(row, Style::Plain, &mut self.buf);
                    }
                }
                OutputFormat::Csv => rows.csv(row, &mut self.buf),
                OutputFormat::Jsonl => rows.json(row, &mut self.buf),
                OutputFormat::Arrow => unreachable!("IPC has its own writer"),
            }
            self.buf.push(b'\n');
            if self.buf.len() >= 1 << 16 {
                self.spill()?;
            }
        }
        // Whole batches reach the output as they come: a live `serve` shows each window when
        // it closes, not when 64 KiB have piled up.
        self.spill()
    }

    fn finish(&mut self) -> Result<()> {
        if !self.header_done && self.format == OutputFormat::Csv {
            // An empty result still gets its header, so the file is valid CSV.
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.write(&empty)?;
        }
        self.spill()?;
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// One result row at a time, as a CSV line or a JSON object (no line break), and its key: what
/// the text writers and the Kafka sink's records are made of.
pub struct RowRenderer<'a> {
    cols: Vec<ColumnFormatter<'a>>,
    names: Vec<Vec<u8>>,
    keys: std::ops::Range<usize>,
}

impl<'a> RowRenderer<'a> {
    /// A renderer of `batch`'s rows. Result batches hold `window_start`, `window_end`, then
    /// `key_columns` key columns, then the aggregates.
    pub fn new(batch: &'a RecordBatch, key_columns: usize) -> Self {
        let cols = batch.columns().iter().map(ColumnFormatter::new).collect();
        let names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let mut n = Vec::new();
                json_string(f.name().as_bytes(), &mut n);
                n
            })
            .collect();
        Self {
            cols,
            names,
            keys: 2..2 + key_columns,
        }
    }

    /// Row `row` as a CSV line without its line break.
    pub fn csv(&self, row: usize, buf: &mut Vec<u8>) {
        for (i, c) in self.cols.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            c.write(row, Style::Csv, buf);
        }
    }

    /// Row `row` as a JSON object: `{"window_start":…,"window_end":…,"client":…,"count":…}`.
    pub fn json(&self, row: usize, buf: &mut Vec<u8>) {
        buf.push(b'{');
        for (i, c) in self.cols.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(&self.names[i]);
            buf.push(b':');
            c.write(row, Style::Json, buf);
        }
        buf.push(b'}');
    }

    /// Row `row`'s key columns as plain text, joined by `|`.
    pub fn key(&self, row: usize, buf: &mut Vec<u8>) {
        for (i, c) in self.cols[self.keys.clone()].iter().enumerate() {
            if i > 0 {
                buf.push(b'|');
            }
            c.write(row, Style::Plain, buf);
        }
    }
}

/// `HH:MM:SS` of an epoch-millisecond timestamp.
fn clock(ms: i64, buf: &mut Vec<u8>) {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    for (i, v) in [h, m, s].into_iter().enumerate() {
        if i > 0 {
            buf.push(b':');
        }
        buf.push(b'0' + (v / 10) as u8);
        buf.push(b'0' + (v % 10) as u8);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Csv,
    Json,
}

/// A column, downcast once, that writes one value at a time.
///
/// Result batches hold one window each, so `window_start` and `window_end` repeat on every row:
/// an integer column keeps the text of the last value it wrote and copies it when the next value
/// is the same (half of a CSV row's digits). Nulls are looked up only in a column that has some.
struct ColumnFormatter<'a> {
    values: Values<'a>,
    nulls: Option<&'a arrow_buffer::NullBuffer>,
}

enum Values<'a> {
    Int(Box<dyn Fn(usize) -> i64 + 'a>, std::cell::Cell<LastInt>),
    UInt(Box<dyn Fn(usize) -> u64 + 'a>),
    Float(Box<dyn Fn(usize) -> f64 + 'a>),
    Bytes(Box<dyn Fn(usize) -> &'a [u8] + 'a>),
    Other(&'a ArrayRef),
}

/// The last value an integer column wrote, and its digits (`i64::MIN` has 20 bytes).
#[derive(Clone, Copy)]
struct LastInt {
    value: i64,
    len: u8,
    text: [u8; 20],
}

impl LastInt {
    /// Nothing written yet: a length of 0 matches no value.
    const NONE: LastInt = LastInt {
        value: 0,
        len: 0,
        text: [0; 20],
    };
}

impl<'a> ColumnFormatter<'a> {
    fn new(col: &'a ArrayRef) -> Self {
        macro_rules! prim {
            ($variant:ident, $t:ty, $to:ty $(, $extra:expr)?) => {{
                let p = col.as_primitive::<$t>();
                Values::$variant(Box::new(move |i| p.value(i) as $to) $(, $extra)?)
            }};
        }
        let last = || std::cell::Cell::new(LastInt::NONE);
        let values = match col.data_type() {
            DataType::Int8 => prim!(Int, Int8Type, i64, last()),
            DataType::Int16 => prim!(Int, Int16Type, i64, last()),
            DataType::Int32 => prim!(Int, Int32Type, i64, last()),
            DataType::Int64 => prim!(Int, Int64Type, i64, last()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                prim!(Int, TimestampMillisecondType, i64, last())
            }
            DataType::UInt8 => prim!(UInt, UInt8Type, u64),
            DataType::UInt16 => prim!(UInt, UInt16Type, u64),
            DataType::UInt32 => prim!(UInt, UInt32Type, u64),
            DataType::UInt64 => prim!(UInt, UInt64Type, u64),
            DataType::Float32 => prim!(Float, Float32Type, f64),
            DataType::Float64 => prim!(Float, Float64Type, f64),
            DataType::Utf8 => {
                let s = col.as_string::<i32>();
                Values::Bytes(Box::new(move |i| s.value(i).as_bytes()))
            }
            DataType::LargeUtf8 => {
                let s = col.as_string::<i64>();
                Values::Bytes(Box::new(move |i| s.value(i).as_bytes()))
            }
            DataType::Binary => {
                let s = col.as_binary::<i32>();
                Values::Bytes(Box::new(move |i| s.value(i)))
            }
            _ => Values::Other(col),
        };
        Self {
            values,
            nulls: col.nulls().filter(|n| n.null_count() > 0),
        }
    }

    fn write(&self, row: usize, style: Style, buf: &mut Vec<u8>) {
        if self.nulls.is_some_and(|n| n.is_null(row)) {
            buf.extend_from_slice(match style {
                Style::Plain => b"-",
                Style::Csv => b"",
                Style::Json => b"null",
            });
            return;
        }
        match &self.values {
            Values::Int(f, last) => {
                let v = f(row);
                let mut l = last.get();
                if l.len == 0 || l.value != v {
                    let mut b = itoa::Buffer::new();
                    let text = b.format(v).as_bytes();
                    l.text[..text.len()].copy_from_slice(text);
                    l = LastInt {
                        value: v,
                        len: text.len() as u8,
                        text: l.text,
                    };
                    last.set(l);
                }
                buf.extend_from_slice(&l.text[..usize::from(l.len)]);
            }
            Values::UInt(f) => buf.extend_from_slice(itoa::Buffer::new().format(f(row)).as_bytes()),
            Values::Float(f) => {
                let v = f(row);
                if style == Style::Json && !v.is_finite() {
                    buf.extend_from_slice(b"null");
                } else {
                    let _ = write!(buf, "{v}");
                }
            }
            Values::Bytes(f) => match style {
                Style::Plain => escape_key(f(row), buf),
                Style::Csv => csv_bytes(f(row), buf),
                Style::Json => json_string(f(row), buf),
            },
            Values::Other(a) => {
                let text = format!("{:?}", a.slice(row, 1));
                match style {
                    Style::Json => json_string(text.as_bytes(), buf),
                    _ => csv_bytes(text.as_bytes(), buf),
                }
            }
        }
    }
}

/// The bytes [`csv_bytes`] must escape or quote: those [`escape_key`] rewrites, `,` and `"`.
static CSV_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = needs_escape(b as u8) || b as u8 == b',' || b as u8 == b'"';
        b += 1;
    }
    t
};

/// Whether [`escape_key`] rewrites byte `b`.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == b'\\'
}

/// Writes `v` with control bytes (NUL, line breaks, tabs, DEL, …) as `\xNN`, NGINX's own
/// notation for them in access logs, and `\` as `\\`, so that a key cannot break a
/// line-oriented output (print, CSV) or pass for another key. [`unescape_key`] reverses it.
pub fn escape_key(v: &[u8], buf: &mut Vec<u8>) {
    if !v.iter().any(|&b| needs_escape(b)) {
        buf.extend_from_slice(v);
        return;
    }
    for &b in v {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b if needs_escape(b) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
            }
            b => buf.push(b),
        }
    }
}

/// The bytes [`escape_key`] wrote `s` from; `None` if `s` is not its output (a lone `\`, or
/// `\x` without two hex digits).
pub fn unescape_key(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        match s.get(i + 1)? {
            b'\\' => {
                out.push(b'\\');
                i += 2;
            }
            b'x' => {
                let hex = std::str::from_utf8(s.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A CSV field: escaped as [`escape_key`] does (so no line break is left in it), then quoted
/// when it holds a comma or a quote.
fn csv_bytes(v: &[u8], buf: &mut Vec<u8>) {
    // One table lookup per byte, no early exit: keys are short, and the common case reads them
    // all anyway.
    if !v
        .iter()
        .fold(false, |any, &b| any | CSV_SPECIAL[usize::from(b)])
    {
        buf.extend_from_slice(v);
        return;
    }
    let mut escaped = Vec::with_capacity(v.len() + 8);
    escape_key(v, &mut escaped);
    if !escaped.iter().any(|&b| b == b',' || b == b'"') {
        buf.extend_from_slice(&escaped);
        return;
    }
    buf.push(b'"');
    for &b in &escaped {
        if b == b'"' {
            buf.push(b'"');
        }
        buf.push(b);
    }
    buf.push(b'"');
}

fn csv_field(name: &str) -> String {
    let mut b = Vec::new();
    csv_bytes(name.as_bytes(), &mut b);
    String::from_utf8(b).expect("quoting keeps UTF-8")
}

/// A JSON string literal of `v` (invalid UTF-8 replaced).
fn json_string(v: &[u8], buf: &mut Vec<u8>) {
    let s = String::from_utf8_lossy(v);
    buf.push(b'"');
    for c in s.chars() {
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use arrow_array::{StringArray, TimestampMillisecondArray, UInt64Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn keys_with_control_bytes_are_escaped_and_come_back() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"10.0.0.1", b"10.0.0.1"),
            (b"a\0b", b"a\\x00b"),
            (b"tab\there\nnl\r\x7f", b"tab\\x09here\\x0anl\\x0d\\x7f"),
            (b"back\\slash", b"back\\\\slash"),
            (b"\\x41", b"\\\\x41"),
        ];
        for (raw, want) in cases {
            let mut out = Vec::new();
            escape_key(raw, &mut out);
            assert_eq!(out, want, "{raw:?}");
            assert_eq!(unescape_key(&out).as_deref(), Some(raw));
        }
        for bad in [&b"a\\"[..], b"\\x4", b"\\xzz", b"\\q"] {
            assert_eq!(unescape_key(bad), None, "{bad:?}");
        }
        let mut csv = Vec::new();
        csv_bytes(b"a,\nb", &mut csv);
        assert_eq!(csv, b"\"a,\\x0ab\"");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn batch() -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
            Field::new("client", DataType::Utf8, false),
            Field::new("count", DataType::UInt64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMillisecondArray::from(vec![3_661_000, 3_661_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMillisecondArray::from(vec![3_666_000, 3_666_000])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec!["10.0.0.1", "we\"ird,host"])),
                Arc::new(UInt64Array::from(vec![Some(42), None])),
            ],
        )
        .unwrap()
    }

    fn render(format: OutputFormat, offset: i32) -> String {
        let out = Shared::default();
        let b = batch();
        let mut w = writer(
            format,
            Box::new(out.clone()),
            "-".into(),
            b.schema(),
            offset,
        )
        .unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn print_csv_and_jsonl() {
        assert_eq!(
            render(OutputFormat::Print, 0),
            "01:01:01 10.0.0.1 42\n01:01:01 we\"ird,host -\n"
        );
        assert_eq!(
            render(OutputFormat::Print, -7200),
            "23:01:01 10.0.0.1 42\n23:01:01 we\"ird,host -\n"
        );
        assert_eq!(
            render(OutputFormat::Csv, 0),
            "window_start,window_end,client,count\n3661000,3666000,10.0.0.1,42\n3661000,3666000,\"we\"\"ird,host\",\n"
        );
        assert_eq!(
            render(OutputFormat::Jsonl, 0),
            "{\"window_start\":3661000,\"window_end\":3666000,\"client\":\"10.0.0.1\",\"count\":42}\n\
             {\"window_start\":3661000,\"window_end\":3666000,\"client\":\"we\\\"ird,host\",\"count\":null}\n"
        );
    }

    #[test]
    fn arrow_ipc_round_trips() {
        let out = Shared::default();
        let b = batch();
        let mut w = writer(
            OutputFormat::Arrow,
            Box::new(out.clone()),
            "-".into(),
            b.schema(),
            0,
        )
        .unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        let r = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let back: Vec<RecordBatch> = r.map(|b| b.unwrap()).collect();
        assert_eq!(back, vec![b]);
    }
}
