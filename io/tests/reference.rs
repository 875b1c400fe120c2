//! The fused parser against a naive reference on seeded random lines.
//!
//! The reference below is written separately and slowly on purpose: it splits the input into
//! lines with `split`, cuts fields with iterator searches, parses numbers through `str`, and
//! counts days by walking the calendar year by year. It shares no code with `weir_io::parse`.
//! Both must agree on the number of lines and malformed lines, and on every row's columns.

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMillisecondType, UInt16Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use proptest::prelude::*;
use weir_io::parse::{Columns, LineParser, LogFormat, ParseOptions};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One parsed row, every column as an owned value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    ts: i64,
    client: String,
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    bytes: Option<u64>,
    referer: Option<String>,
    user_agent: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The reference.

fn leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_len(y: i64, m: i64) -> i64 {
    match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 by walking years and months.
fn walk_days(y: i64, m: i64, d: i64) -> i64 {
    let mut days = 0;
    let mut year = 1970;
    while year < y {
        days += if leap(year) { 366 } else { 365 };
        year += 1;
    }
    while year > y {
        year -= 1;
        days -= if leap(year) { 366 } else { 365 };
    }
    for month in 1..m {
        days += month_len(y, month);
    }
    days + d - 1
}

/// All-ASCII-digit text as a number.
fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `num` of a byte range, for text that may not be UTF-8.
fn num_at(b: &[u8], from: usize, to: usize) -> Option<i64> {
    num(std::str::from_utf8(&b[from..to]).ok()?)
}

/// `[dd/Mon/yyyy:HH:MM:SS ±hhmm]` at the start of `b`, in ms.
fn ref_timestamp(b: &[u8]) -> Option<i64> {
    let s = b.get(..28)?;
    let fixed = [
        (0, b'['),
        (3, b'/'),
        (7, b'/'),
        (12, b':'),
        (15, b':'),
        (18, b':'),
        (21, b' '),
        (27, b']'),
    ];
    if fixed.iter().any(|&(i, c)| s[i] != c) {
        return None;
    }
    let day = num_at(s, 1, 3)?;
    let month = MONTHS.iter().position(|m| m.as_bytes() == &s[4..7])? as i64 + 1;
    let year = num_at(s, 8, 12)?;
    let (h, mi, sec) = (num_at(s, 13, 15)?, num_at(s, 16, 18)?, num_at(s, 19, 21)?);
    let sign = match s[22] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (oh, om) = (num_at(s, 23, 25)?, num_at(s, 25, 27)?);
    if day < 1
        || day > month_len(year, month)
        || h > 23
        || mi > 59
        || sec > 60
        || oh > 23
        || om > 59
    {
        return None;
    }
    let local = walk_days(year, month, day) * 86_400 + h * 3600 + mi * 60 + sec;
    Some((local - sign * (oh * 3600 + om * 60)) * 1000)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A quoted field at the start of `s`: (value, rest after the closing quote). A quote counts as
/// closing when an even number of backslashes precede it.
fn ref_quoted(s: &[u8]) -> Option<(&[u8], &[u8])> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut backslashes = 0;
    for (i, &b) in s.iter().enumerate().skip(1) {
        if b == b'"' && backslashes % 2 == 0 {
            return Some((&s[1..i], &s[i + 1..]));
        }
        backslashes = if b == b'\\' { backslashes + 1 } else { 0 };
    }
    None
}

/// Request-derived fields of a CLF line after its timestamp.
fn ref_tail(mut s: &[u8], row: &mut Row, combined: bool) {
    let Some(rest) = s.strip_prefix(b" ") else {
        return;
    };
    let Some((request, rest)) = ref_quoted(rest) else {
        return;
    };
    let words: Vec<&[u8]> = request.splitn(3, |&b| b == b' ').collect();
    if words.len() >= 2 && !words[0].is_empty() && !words[1].is_empty() {
        row.method = Some(lossy(words[0]));
        row.path = Some(lossy(words[1]));
    }
    let Some(rest) = rest.strip_prefix(b" ") else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b' ');
    let status = parts.next().unwrap_or(b"");
    let Some(status) = std::str::from_utf8(status)
        .ok()
        .and_then(num)
        .filter(|&v| v <= 65_535)
    else {
        return;
    };
    row.status = Some(status as u16);
    let bytes = parts.next().unwrap_or(b"");
    if bytes != b"-" {
        match std::str::from_utf8(bytes)
            .ok()
            .filter(|t| t.len() <= 20)
            .and_then(|t| t.parse::<u64>().ok())
        {
            Some(v) if bytes.iter().all(u8::is_ascii_digit) => row.bytes = Some(v),
            _ => return,
        }
    }
    s = parts.next().unwrap_or(b"");
    if !combined {
        return;
    }
    let Some((referer, rest)) = ref_quoted(s) else {
        return;
    };
    row.referer = Some(lossy(referer));
    if let Some((ua, _)) = rest.strip_prefix(b" ").and_then(ref_quoted) {
        row.user_agent = Some(lossy(ua));
    }
}

/// The reference parse: (rows, lines, malformed).
fn reference(input: &[u8], format: LogFormat, simple_day: i64) -> (Vec<Row>, u64, u64) {
    let mut pieces: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if pieces.last() == Some(&&b""[..]) {
        pieces.pop();
    }
    let mut rows = Vec::new();
    let mut malformed = 0;
    for piece in &pieces {
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        let parsed = match format {
            LogFormat::Simple => ref_simple(line, simple_day),
            _ => ref_clf(line, format == LogFormat::Combined),
        };
        match parsed {
            Some(row) => rows.push(row),
            None => malformed += 1,
        }
    }
    (rows, pieces.len() as u64, malformed)
}

fn ref_clf(line: &[u8], combined: bool) -> Option<Row> {
    let space = line.iter().position(|&b| b == b' ')?;
    let client = &line[..space];
    if client.is_empty() {
        return None;
    }
    let bracket = space + line[space..].iter().position(|&b| b == b'[')?;
    let ts = ref_timestamp(&line[bracket..])?;
    let mut row = Row {
        ts,
        client: lossy(client),
        method: None,
        path: None,
        status: None,
        bytes: None,
        referer: None,
        user_agent: None,
    };
    ref_tail(&line[bracket + 28..], &mut row, combined);
    Some(row)
}

fn ref_simple(line: &[u8], day: i64) -> Option<Row> {
    let text = line.get(..8)?;
    let t = std::str::from_utf8(text).ok()?;
    let f: Vec<&str> = t.split(':').collect();
    if f.len() != 3 || f.iter().any(|p| p.len() != 2) {
        return None;
    }
    let (h, m, s) = (num(f[0])?, num(f[1])?, num(f[2])?);
    if h > 23 || m > 59 || s > 60 || line.get(8) != Some(&b' ') {
        return None;
    }
    let client = line[9..].split(|&b| b == b' ').next().unwrap_or(b"");
    if client.is_empty() {
        return None;
    }
    Some(Row {
        ts: day * 86_400_000 + (h * 3600 + m * 60 + s) * 1000,
        client: lossy(client),
        method: None,
        path: None,
        status: None,
        bytes: None,
        referer: None,
        user_agent: None,
    })
}

// ---------------------------------------------------------------------------------------------
// The parser under test, with every output column turned back into rows.

fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let s = |name: &str, i: usize| {
            b.column_by_name(name).and_then(|c| {
                let c = c.as_string::<i32>();
                c.is_valid(i).then(|| c.value(i).to_owned())
            })
        };
        for i in 0..b.num_rows() {
            let ts = b
                .column_by_name("ts")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            out.push(Row {
                ts: ts.value(i),
                client: s("client", i).unwrap(),
                method: s("method", i),
                path: s("path", i),
                status: b.column_by_name("status").and_then(|c| {
                    let c = c.as_primitive::<UInt16Type>();
                    c.is_valid(i).then(|| c.value(i))
                }),
                bytes: b.column_by_name("bytes").and_then(|c| {
                    let c = c.as_primitive::<UInt64Type>();
                    c.is_valid(i).then(|| c.value(i))
                }),
                referer: s("referer", i),
                user_agent: s("user_agent", i),
            });
        }
    }
    out
}

/// Parses `input` cut into chunks at the given line-start indices, with one parser, tiny batches.
fn fused(input: &[u8], opts: ParseOptions, cuts: &[usize]) -> (Vec<Row>, u64, u64) {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            input
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&s| s < input.len())
        .collect();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c % (starts.len() + 1)).collect();
    bounds.push(0);
    bounds.push(starts.len());
    bounds.sort_unstable();
    bounds.dedup();
    let mut parser = LineParser::new(opts);
    let mut batches = Vec::new();
    for w in bounds.windows(2) {
        let from = starts.get(w[0]).copied().unwrap_or(input.len());
        let to = starts.get(w[1]).copied().unwrap_or(input.len());
        parser
            .parse(&input[from..to], w[0] as u64 + 1, &mut |b| batches.push(b))
            .unwrap();
    }
    parser.flush(&mut |b| batches.push(b));
    let stats = parser.stats();
    assert_eq!(stats.rows + stats.malformed, stats.lines);
    assert_eq!(stats.bytes, input.len() as u64);
    (rows_of(&batches), stats.lines, stats.malformed)
}

// ---------------------------------------------------------------------------------------------
// Random lines.

/// One CLF-ish line built from random numbers: valid most of the time, broken in many ways.
fn clf_line(shape: u8, r: [u32; 8], junk: &[u8]) -> Vec<u8> {
    let mut line = Vec::new();
    match r[0] % 9 {
        0 => {}
        1 => line.extend_from_slice(b"::1"),
        2 => line.extend_from_slice(b"2001:db8::a"),
        3 => line.extend_from_slice(b"host.example.org"),
        4 => line.extend(
            junk.iter()
                .copied()
                .filter(|&b| b != b' ' && b != b'\n')
                .take(6),
        ),
        5 => line.extend_from_slice("café".as_bytes()),
        _ => line.extend_from_slice(
            format!(
                "{}.{}.{}.{}",
                r[1] >> 24,
                (r[1] >> 16) & 255,
                (r[1] >> 8) & 255,
                r[1] & 255
            )
            .as_bytes(),
        ),
    }
    if shape.is_multiple_of(11) {
        // An orphan fragment or a line of junk.
        return if r[2].is_multiple_of(2) {
            b" \"curl/7.54.0\"".to_vec()
        } else {
            junk.to_vec()
        };
    }
    line.extend_from_slice(if r[7].is_multiple_of(5) {
        b" - frank "
    } else {
        b" - - "
    });
    // The timestamp: mostly valid ranges, sometimes one step out of range.
    let month = if r[3].is_multiple_of(40) {
        "Foo"
    } else {
        MONTHS[(r[3] % 12) as usize]
    };
    let year = match r[4] % 10 {
        0 => 1900 + r[4] % 200,
        1 => r[4] % 10_000,
        _ => 2020 + r[4] % 6,
    };
    let ts = format!(
        "[{:02}/{}/{:04}:{:02}:{:02}:{:02} {}{:02}{:02}]",
        r[2] % 32,
        month,
        year,
        r[5] % 25,
        (r[5] >> 8) % 61,
        (r[5] >> 16) % 62,
        if r[6].is_multiple_of(3) { '-' } else { '+' },
        (r[6] >> 4) % 25,
        if r[6].is_multiple_of(7) {
            (r[6] >> 12) % 61
        } else {
            0
        },
    );
    let mut ts = ts.into_bytes();
    if r[7].is_multiple_of(13) && !junk.is_empty() {
        let i = (r[7] >> 8) as usize % ts.len();
        ts[i] = junk[0];
    }
    if shape % 11 == 1 {
        ts.remove(0); // no bracket
    }
    if shape % 11 == 2 {
        ts.truncate((r[7] >> 16) as usize % ts.len()); // cut short at the end of the line
    }
    line.extend_from_slice(&ts);
    // What follows the timestamp.
    let request = match r[1] % 6 {
        0 => "\"-\"".to_owned(),
        1 => "\"\\x16\\x03\\x01\"".to_owned(),
        2 => format!("\"GET /a{}\"b HTTP/1.1\"", r[2] % 10),
        _ => format!("\"POST /p/{} HTTP/1.1\"", r[3] % 1000),
    };
    let status = match r[2] % 7 {
        0 => "-".to_owned(),
        1 => "99999".to_owned(),
        _ => (r[5] % 600).to_string(),
    };
    let size = match r[3] % 5 {
        0 => "-".to_owned(),
        1 => "18446744073709551616".to_owned(),
        _ => (r[6] as u64 * 1000).to_string(),
    };
    match shape % 5 {
        0 => line.extend_from_slice(format!(" {request} {status} {size}").as_bytes()),
        1 | 2 => line.extend_from_slice(
            format!(
                " {request} {status} {size} \"https://r/{}\" \"UA \\\"q\\\" {}\"",
                r[4] % 9,
                r[0] % 9
            )
            .as_bytes(),
        ),
        3 => {
            line.push(b' ');
            line.extend_from_slice(junk);
        }
        _ => {}
    }
    line
}

fn simple_line(shape: u8, r: [u32; 8], junk: &[u8]) -> Vec<u8> {
    let mut line = format!(
        "{:02}:{:02}:{:02}",
        r[0] % 25,
        (r[0] >> 8) % 61,
        (r[0] >> 16) % 62
    )
    .into_bytes();
    match shape % 8 {
        0 => line.insert(0, b' '),
        1 => line.truncate((r[1] % 8) as usize),
        2 => line.extend_from_slice(junk),
        _ => {}
    }
    line.push(b' ');
    match r[2] % 5 {
        0 => {}
        1 => line.extend_from_slice(b"::1 trailing"),
        2 => line.extend_from_slice(junk),
        _ => line.extend_from_slice(format!("10.0.{}.{}", r[3] % 256, r[4] % 256).as_bytes()),
    }
    line
}

type LineSpec = (u8, [u32; 8], Vec<u8>, u8);

fn line_specs() -> impl Strategy<Value = Vec<LineSpec>> {
    prop::collection::vec(
        (
            any::<u8>(),
            any::<[u32; 8]>(),
            prop::collection::vec(any::<u8>(), 0..24),
            0u8..8,
        ),
        0..120,
    )
}

/// Joins lines with `\n`, `\r\n` or an empty line between them, with or without a final newline.
fn join(lines: &[(Vec<u8>, u8)], final_newline: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (line, ending)) in lines.iter().enumerate() {
        out.extend_from_slice(line);
        if i + 1 == lines.len() && !final_newline {
            break;
        }
        match ending {
            0 => out.extend_from_slice(b"\r\n"),
            1 => out.extend_from_slice(b"\n\n"),
            _ => out.push(b'\n'),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn clf_matches_reference(
        specs in line_specs(),
        final_newline in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        batch_rows in 1usize..40,
        combined in any::<bool>(),
    ) {
        let lines: Vec<(Vec<u8>, u8)> =
            specs.iter().map(|(s, r, j, e)| (clf_line(*s, *r, j), *e)).collect();
        let input = join(&lines, final_newline);
        let format = if combined { LogFormat::Combined } else { LogFormat::Common };
        let (want, lines, malformed) = reference(&input, format, 0);
        for columns in [Columns::ALL, Columns::ts_client()] {
            let opts = ParseOptions { batch_rows, ..ParseOptions::new(format).with_columns(columns) };
            let (got, got_lines, got_malformed) = fused(&input, opts, &cuts);
            prop_assert_eq!((got_lines, got_malformed), (lines, malformed));
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                if columns == Columns::ALL {
                    prop_assert_eq!(g, w);
                } else {
                    prop_assert_eq!((g.ts, &g.client), (w.ts, &w.client));
                }
            }
        }
    }

    #[test]
    fn simple_matches_reference(
        specs in line_specs(),
        final_newline in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
        day in -1000i32..30_000,
    ) {
        let lines: Vec<(Vec<u8>, u8)> =
            specs.iter().map(|(s, r, j, e)| (simple_line(*s, *r, j), *e)).collect();
        let input = join(&lines, final_newline);
        let (want, lines, malformed) = reference(&input, LogFormat::Simple, day as i64);
        let opts = ParseOptions { batch_rows: 7, simple_date_days: day, ..ParseOptions::new(LogFormat::Simple) };
        let (got, got_lines, got_malformed) = fused(&input, opts, &cuts);
        prop_assert_eq!((got_lines, got_malformed), (lines, malformed));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_match_reference(
        input in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\n'), Just(b' '), Just(b'['), Just(b'"')], 0..600),
        format in prop_oneof![Just(LogFormat::Combined), Just(LogFormat::Common), Just(LogFormat::Simple)],
    ) {
        let (want, lines, malformed) = reference(&input, format, 0);
        let opts = ParseOptions { simple_date_days: 0, ..ParseOptions::new(format) };
        let (got, got_lines, got_malformed) = fused(&input, opts, &[]);
        prop_assert_eq!((got_lines, got_malformed), (lines, malformed));
        prop_assert_eq!(got, want);
    }
}

#[test]
fn the_generators_produce_both_kinds_of_line() {
    // Guards against a generator that only ever produces malformed (or only valid) lines, which
    // would make the properties above vacuous.
    let mut valid = 0;
    let mut bad = 0;
    for i in 0..2000u32 {
        let r = [
            i.wrapping_mul(2_654_435_761),
            i,
            i * 7,
            i * 13,
            i * 3,
            i * 0x9E37,
            i * 31,
            i * 17,
        ];
        let line = clf_line(i as u8, r, b"x\xff");
        match ref_clf(&line, true) {
            Some(_) => valid += 1,
            None => bad += 1,
        }
    }
    assert!(valid > 500 && bad > 200, "valid {valid}, malformed {bad}");
}
