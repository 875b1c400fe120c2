//! Parsing alone: bytes of a log in memory → Arrow batches on one thread, in 1 MiB chunks cut at
//! line starts (as a file source hands them out), the batches counted and dropped.

use std::hint::black_box;

use arrow_array::RecordBatch;
use weir_io::parse::{LineParser, ParseOptions};

/// Parses all of `bytes` with `opts`; returns the rows parsed (so nothing is optimised away).
pub fn parse_all(bytes: &[u8], opts: &ParseOptions) -> usize {
    let mut parser = LineParser::new(opts.clone());
    let mut rows = 0;
    let mut emit = |b: RecordBatch| rows += black_box(b).num_rows();
    let mut start = 0;
    while start < bytes.len() {
        let nominal = (start + (1 << 20)).min(bytes.len());
        let end = memchr::memchr(b'\n', &bytes[nominal..]).map_or(bytes.len(), |i| nominal + i + 1);
        // Not strict: a malformed line is counted, never an error.
        let _ = parser.parse(&bytes[start..end], 1, &mut emit);
        start = end;
    }
    parser.flush(&mut emit);
    rows
}
