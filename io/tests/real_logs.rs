//! The parser on two logs written by real web servers (see `shared/data/real/README.md`): the
//! counted/malformed numbers of the README table, and the per-(5 s window, client) counts of the
//! `.expected.csv` files, computed here from the parsed columns.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use weir_io::parse::{detect_format, Columns, LineParser, LogFormat, ParseOptions, ParseStats};

const ROOTLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/real/rootly_apache_access"
);
const ERDDAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/real/erddap_nginx_2024-05"
);

/// Parses `bytes` in `splits` pieces cut at line starts, each with its own parser (as a parallel
/// reader would), and returns `window start → client → count` and the merged stats.
fn window_counts(
    bytes: &[u8],
    columns: Columns,
    splits: usize,
) -> (BTreeMap<(i64, String), u64>, ParseStats) {
    let format = detect_format(&bytes[..bytes.len().min(8192)]).expect("format detected");
    assert_eq!(format, LogFormat::Combined);
    let mut counts = BTreeMap::new();
    let mut stats = ParseStats::default();
    let mut start = 0;
    let mut first_line = 1;
    for i in 1..=splits {
        // Cut near i/splits of the file, just after a newline.
        let end = if i == splits {
            bytes.len()
        } else {
            let target = bytes.len() * i / splits;
            bytes[target..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| target + p + 1)
        };
        let opts = ParseOptions {
            batch_rows: 1000,
            ..ParseOptions::new(format).with_columns(columns)
        };
        let mut parser = LineParser::new(opts);
        let mut batches = Vec::new();
        parser
            .parse(&bytes[start..end], first_line, &mut |b| batches.push(b))
            .unwrap();
        parser.flush(&mut |b| batches.push(b));
        for batch in &batches {
            let ts = batch
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            let client = batch.column_by_name("client").unwrap().as_string::<i32>();
            for (t, c) in ts.values().iter().zip(client.iter()) {
                let window = t.div_euclid(5000) * 5000;
                *counts.entry((window, c.unwrap().to_owned())).or_insert(0) += 1;
            }
        }
        let s = parser.take_stats();
        first_line += s.lines;
        stats.merge(&s);
        start = end;
    }
    (counts, stats)
}

/// The expected CSV, parsed: `window_start_epoch_ms,client,count`.
fn expected(path: &str) -> BTreeMap<(i64, String), u64> {
    let text = std::fs::read_to_string(format!("{path}.expected.csv")).unwrap();
    text.lines()
        .map(|l| {
            let mut f = l.rsplitn(2, ',');
            let count = f.next().unwrap().parse().unwrap();
            let rest = f.next().unwrap();
            let (w, c) = rest.split_once(',').unwrap();
            ((w.parse().unwrap(), c.to_owned()), count)
        })
        .collect()
}

fn check(path: &str, rows: u64, malformed: u64) {
    let bytes = std::fs::read(format!("{path}.log")).unwrap();
    let want = expected(path);
    for (columns, splits) in [
        (Columns::ts_client(), 1),
        (Columns::ALL, 1),
        (Columns::ts_client(), 7),
    ] {
        let (got, stats) = window_counts(&bytes, columns, splits);
        assert_eq!(
            (stats.rows, stats.malformed),
            (rows, malformed),
            "{columns:?} in {splits}"
        );
        assert_eq!(stats.lines, rows + malformed);
        assert_eq!(stats.bytes, bytes.len() as u64);
        assert_eq!(got.len(), want.len());
        assert_eq!(got, want, "{columns:?} in {splits}");
    }
    // The CSV's byte order of clients within a window is the order of the BTreeMap's keys too,
    // so the rendered text matches the file exactly.
    let (got, _) = window_counts(&bytes, Columns::ts_client(), 3);
    let rendered: String = got
        .iter()
        .map(|((w, c), n)| format!("{w},{c},{n}\n"))
        .collect();
    assert_eq!(
        rendered,
        std::fs::read_to_string(format!("{path}.expected.csv")).unwrap()
    );
}

#[test]
fn rootly_apache_access() {
    check(ROOTLY, 4_775, 0);
}

#[test]
fn erddap_nginx() {
    check(ERDDAP, 10_479, 5_796);
}

#[test]
fn erddap_examples_are_orphan_fragments() {
    let bytes = std::fs::read(format!("{ERDDAP}.log")).unwrap();
    let (_, stats) = window_counts(&bytes, Columns::ts_client(), 1);
    assert_eq!(stats.examples.len(), 5);
    // Line 19 of the file is ` "curl/7.54.0"` (see the README).
    assert_eq!(stats.examples[0].line, 19);
    assert_eq!(stats.examples[0].text, " \"curl/7.54.0\"");
}
