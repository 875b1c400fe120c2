//! Fuzzes the access-log parser with arbitrary bytes.
//!
//! The first input byte picks the format, the projection, the batch size and where the input is
//! cut into two chunks (at a line start); the rest is the log. Checked on every input:
//!
//! * no panic;
//! * `rows + malformed == lines`, `lines` is the number of `\n`-separated pieces (the empty
//!   piece after a final newline excluded), `bytes` is the input length;
//! * every row is consistent with its line: walking the lines in order, each line whose first
//!   field is non-empty and whose first `[` after it starts a timestamp accepted by the
//!   uncached `parse_clf_timestamp` (simple: `HH:MM:SS client`) yields the next row, with that
//!   client (lossily decoded) and that timestamp; no other line yields a row;
//! * the `ts + client` projection emits exactly the same `ts` and `client` as the full one.

#![no_main]

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, RecordBatch};
use libfuzzer_sys::fuzz_target;
use weir_io::parse::timestamp::{parse_clf_timestamp, parse_time_of_day};
use weir_io::parse::{Columns, LineParser, LogFormat, ParseOptions, ParseStats};

fn run(input: &[u8], opts: ParseOptions, cut: usize) -> (Vec<(i64, String)>, ParseStats) {
    // Move the cut to a line start.
    let cut = match input[..cut.min(input.len())]
        .iter()
        .rposition(|&b| b == b'\n')
    {
        Some(i) => i + 1,
        None => 0,
    };
    let first_lines = input[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
    let mut parser = LineParser::new(opts);
    let mut batches: Vec<RecordBatch> = Vec::new();
    parser
        .parse(&input[..cut], 1, &mut |b| batches.push(b))
        .unwrap();
    assert_eq!(parser.stats().lines, first_lines);
    parser
        .parse(&input[cut..], 1 + first_lines, &mut |b| batches.push(b))
        .unwrap();
    parser.flush(&mut |b| batches.push(b));
    let mut rows = Vec::new();
    for b in &batches {
        assert_eq!(b.schema(), parser.schema());
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let client = b.column_by_name("client").unwrap().as_string::<i32>();
        assert_eq!(ts.null_count() + client.null_count(), 0);
        for i in 0..b.num_rows() {
            rows.push((ts.value(i), client.value(i).to_owned()));
        }
    }
    (rows, parser.take_stats())
}

/// The row a line must produce, if any, by the definition of a malformed line.
fn expected_row(line: &[u8], format: LogFormat) -> Option<(i64, String)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if format == LogFormat::Simple {
        let secs = parse_time_of_day(line)?;
        if line.get(8) != Some(&b' ') {
            return None;
        }
        let client = line[9..].split(|&b| b == b' ').next()?;
        if client.is_empty() {
            return None;
        }
        return Some((
            secs as i64 * 1000,
            String::from_utf8_lossy(client).into_owned(),
        ));
    }
    let sp = line.iter().position(|&b| b == b' ')?;
    if sp == 0 {
        return None;
    }
    let lb = sp + line[sp..].iter().position(|&b| b == b'[')?;
    let ts = parse_clf_timestamp(&line[lb..])?;
    Some((ts, String::from_utf8_lossy(&line[..sp]).into_owned()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let format = [LogFormat::Combined, LogFormat::Common, LogFormat::Simple][ctl as usize % 3];
    let batch_rows = 1 + (ctl as usize >> 2) % 9;
    let cut = (ctl as usize * 7) % (input.len() + 1);
    let base = ParseOptions {
        batch_rows,
        simple_date_days: 0,
        ..ParseOptions::new(format)
    };

    let (rows, stats) = run(input, base.clone(), cut);
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    assert_eq!(stats.lines, pieces.len() as u64);
    assert_eq!(stats.rows + stats.malformed, stats.lines);
    assert_eq!(stats.bytes, input.len() as u64);
    assert_eq!(stats.rows, rows.len() as u64);
    assert_eq!(stats.examples.len() as u64, stats.malformed.min(5));

    let expected: Vec<(i64, String)> = pieces
        .iter()
        .filter_map(|l| expected_row(l, format))
        .collect();
    assert_eq!(rows, expected);

    let (fast, fast_stats) = run(input, base.with_columns(Columns::ts_client()), cut);
    assert_eq!(fast, rows);
    assert_eq!(fast_stats, stats);
});
