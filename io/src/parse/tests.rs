//! Behaviour of [`LineParser`] on hand-written inputs: line numbering, line endings, projection,
//! batching, strict mode and stats merging.

use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMillisecondType, UInt16Type, UInt64Type};
use arrow_array::Array;

const LINE: &str =
    "10.0.0.1 - - [01/Jan/2020:00:00:05 +0000] \"GET /x HTTP/1.1\" 200 42 \"-\" \"ua\"";
/// 2020-01-01T00:00:00Z in ms.
const JAN_1_2020: i64 = 1_577_836_800_000;

fn parse(input: &[u8], opts: ParseOptions) -> (Vec<RecordBatch>, ParseStats) {
    parse_all(input, opts).unwrap()
}

fn ts_client(batches: &[RecordBatch]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in batches {
        let ts = b.column(0).as_primitive::<TimestampMillisecondType>();
        let client = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((ts.value(i), client.value(i).to_owned()));
        }
    }
    out
}

#[test]
fn line_endings_and_line_numbers() {
    let input = format!("{LINE}\r\n\n \"curl/7.54.0\"\r\n{LINE}\n\r\nnope\n{LINE}");
    let (batches, stats) = parse(input.as_bytes(), ParseOptions::default());
    assert_eq!(stats.lines, 7);
    assert_eq!(stats.rows, 3);
    assert_eq!(stats.malformed, 4);
    assert_eq!(stats.bytes, input.len() as u64);
    let lines: Vec<u64> = stats.examples.iter().map(|m| m.line).collect();
    assert_eq!(lines, [2, 3, 5, 6]);
    assert_eq!(stats.examples[0].reason, EMPTY_FIRST_FIELD);
    assert_eq!(stats.examples[1].text, " \"curl/7.54.0\"");
    assert_eq!(stats.examples[2].reason, EMPTY_FIRST_FIELD);
    assert_eq!(stats.examples[3].reason, NO_TIMESTAMP);
    // The CRLF line's user agent has no `\r`.
    let ua = batches[0].column(7).as_string::<i32>();
    assert_eq!(ua.value(0), "ua");
    assert_eq!(
        ts_client(&batches),
        vec![(JAN_1_2020 + 5000, "10.0.0.1".into()); 3]
    );
}

#[test]
fn trailing_newline_is_not_a_line() {
    for (input, lines) in [
        ("", 0),
        ("\n", 1),
        ("\n\n", 2),
        ("x\n", 1),
        ("x", 1),
        ("x\n\n", 2),
    ] {
        let (_, stats) = parse(input.as_bytes(), ParseOptions::default());
        assert_eq!(stats.lines, lines, "{input:?}");
        assert_eq!(stats.malformed, lines, "{input:?}");
    }
}

#[test]
fn malformed_reasons() {
    let cases = [
        ("1.2.3.4", NO_TIMESTAMP),
        ("1.2.3.4 - - 01/Jan/2020:00:00:05 +0000", NO_TIMESTAMP),
        ("1.2.3.4 - - [01/Jan/2020:00:00:05 +0000", BAD_TIMESTAMP),
        ("1.2.3.4 - - [01/Jan/2020:00:00:05 +0000\n]", BAD_TIMESTAMP),
        ("1.2.3.4 - [x] [01/Jan/2020:00:00:05 +0000]", BAD_TIMESTAMP),
        (" - - [01/Jan/2020:00:00:05 +0000]", EMPTY_FIRST_FIELD),
        ("\r", EMPTY_FIRST_FIELD),
    ];
    for (line, reason) in cases {
        let (_, stats) = parse(line.as_bytes(), ParseOptions::default());
        assert_eq!(stats.examples[0].reason, reason, "{line:?}");
    }
    // Only five examples are kept, the first five.
    let input = "bad\n".repeat(9);
    let (_, stats) = parse(input.as_bytes(), ParseOptions::default());
    assert_eq!(stats.malformed, 9);
    let lines: Vec<u64> = stats.examples.iter().map(|m| m.line).collect();
    assert_eq!(lines, [1, 2, 3, 4, 5]);
    // Long lines are cut to 200 bytes in examples.
    let long = format!("x{}", " ".repeat(8000));
    let (_, stats) = parse(long.as_bytes(), ParseOptions::default());
    assert_eq!(stats.examples[0].text.len(), EXAMPLE_BYTES);
}

#[test]
fn timestamp_offset_is_applied() {
    let line = LINE.replace("+0000", "-0700");
    let (batches, _) = parse(line.as_bytes(), ParseOptions::default());
    assert_eq!(ts_client(&batches)[0].0, JAN_1_2020 + 5000 + 7 * 3_600_000);
}

#[test]
fn hostile_lines_still_count() {
    let long_path = "/a".repeat(4000);
    let lines = [
        // Raw TLS bytes as the request.
        b"::1 - - [01/Jan/2020:00:00:05 +0000] \"\x16\x03\x01\x02\x00\x01\" 400 157 \"-\" \"-\"".to_vec(),
        // Broken quoting.
        br#"h.example.org - - [01/Jan/2020:00:00:05 +0000] "GET /a"b HTTP/1.1" 200 5 "-" "ua""#.to_vec(),
        // Nothing after the timestamp.
        b"2001:db8::1 - - [01/Jan/2020:00:00:05 +0000]".to_vec(),
        // Non-ASCII in the client and the path, and an 8 KB line.
        format!("caf\u{e9}.example - - [01/Jan/2020:00:00:05 +0000] \"GET {long_path} HTTP/1.1\" 200 1 \"-\" \"\u{1f600}\"").into_bytes(),
        // Invalid UTF-8 in the client.
        b"\xff\xfe - - [01/Jan/2020:00:00:05 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"x\"".to_vec(),
    ];
    let input = lines.join(&b'\n');
    let (batches, stats) = parse(&input, ParseOptions::default());
    assert_eq!((stats.rows, stats.malformed), (5, 0));
    let b = &batches[0];
    let client = b.column(1).as_string::<i32>();
    assert_eq!(client.value(0), "::1");
    assert_eq!(client.value(2), "2001:db8::1");
    assert_eq!(client.value(3), "caf\u{e9}.example");
    assert_eq!(client.value(4), "\u{fffd}\u{fffd}");
    let method = b.column(2).as_string::<i32>();
    let path = b.column(3).as_string::<i32>();
    let status = b.column(4).as_primitive::<UInt16Type>();
    let bytes = b.column(5).as_primitive::<UInt64Type>();
    let ua = b.column(7).as_string::<i32>();
    assert!(method.is_null(0) && path.is_null(0));
    assert_eq!((status.value(0), bytes.value(0)), (400, 157));
    assert_eq!((method.value(1), path.value(1)), ("GET", "/a"));
    assert!(status.is_null(1) && bytes.is_null(1) && ua.is_null(1));
    assert!(method.is_null(2) && status.is_null(2) && ua.is_null(2));
    assert_eq!(path.value(3), long_path);
    assert_eq!(ua.value(3), "\u{1f600}");
}

#[test]
fn projection_builds_only_requested_columns() {
    let cols = Columns::TS | Columns::STATUS | Columns::USER_AGENT;
    let mut parser = LineParser::new(ParseOptions::default().with_columns(cols));
    let names: Vec<String> = parser
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["ts", "status", "user_agent"]);
    let mut out = Vec::new();
    parser
        .parse(LINE.as_bytes(), 1, &mut |b| out.push(b))
        .unwrap();
    parser.flush(&mut |b| out.push(b));
    assert_eq!(out[0].num_columns(), 3);
    assert_eq!(out[0].column(1).as_primitive::<UInt16Type>().value(0), 200);
    assert_eq!(out[0].schema(), parser.schema());

    // Common has no referer/user agent; simple only ts and client.
    let p = LineParser::new(ParseOptions::new(LogFormat::Common));
    assert_eq!(p.schema().fields().len(), 6);
    let p = LineParser::new(ParseOptions::new(LogFormat::Simple));
    assert_eq!(p.schema().fields().len(), 2);

    // No column at all still counts rows.
    let (batches, stats) = parse(
        format!("{LINE}\n{LINE}\n").as_bytes(),
        ParseOptions::default().with_columns(Columns::NONE),
    );
    assert_eq!(stats.rows, 2);
    assert_eq!(batches[0].num_rows(), 2);
    assert_eq!(batches[0].num_columns(), 0);
}

#[test]
fn batches_of_batch_rows_across_chunks() {
    let opts = ParseOptions {
        batch_rows: 3,
        ..ParseOptions::default()
    };
    let mut parser = LineParser::new(opts);
    let mut sizes = Vec::new();
    let chunk = format!("{LINE}\n{LINE}\n");
    for i in 0..4 {
        parser
            .parse(chunk.as_bytes(), 1 + 2 * i, &mut |b| {
                sizes.push(b.num_rows())
            })
            .unwrap();
    }
    assert_eq!(sizes, [3, 3]);
    parser.flush(&mut |b| sizes.push(b.num_rows()));
    assert_eq!(sizes, [3, 3, 2]);
    parser.flush(&mut |b| sizes.push(b.num_rows()));
    assert_eq!(sizes.len(), 3, "an empty flush emits nothing");
    assert_eq!(parser.stats().lines, 8);
}

#[test]
fn strict_mode_fails_on_the_first_malformed_line() {
    let opts = ParseOptions {
        strict: true,
        ..ParseOptions::default()
    };
    let input = format!("{LINE}\n{LINE}\n \"curl\"\n{LINE}\n");
    match parse_all(input.as_bytes(), opts) {
        Err(ParseError::Malformed { line, reason, text }) => {
            assert_eq!(
                (line, reason, text.as_str()),
                (3, EMPTY_FIRST_FIELD, " \"curl\"")
            );
        }
        other => panic!("expected a malformed-line error, got {other:?}"),
    }
}

#[test]
fn simple_format() {
    let mut opts = ParseOptions::new(LogFormat::Simple);
    opts.simple_date_days = 18_262; // 2020-01-01
    let input = b"00:00:05 10.0.0.1\r\n00:00:06 ::1 extra\n\n 00:00:07 x\n25:00:00 y\n00:00:08\n00:00:09 h.example";
    let (batches, stats) = parse(input, opts);
    assert_eq!((stats.lines, stats.rows, stats.malformed), (7, 3, 4));
    assert_eq!(
        ts_client(&batches),
        [
            (JAN_1_2020 + 5000, "10.0.0.1".to_owned()),
            (JAN_1_2020 + 6000, "::1".to_owned()),
            (JAN_1_2020 + 9000, "h.example".to_owned()),
        ]
    );
    let reasons: Vec<_> = stats.examples.iter().map(|m| (m.line, m.reason)).collect();
    assert_eq!(
        reasons,
        [
            (3, EMPTY_FIRST_FIELD),
            (4, EMPTY_FIRST_FIELD),
            (5, simple::BAD_TIME),
            (6, simple::EMPTY_CLIENT)
        ]
    );
}

#[test]
fn chunked_parse_and_merge_equal_one_pass() {
    let mut input = String::new();
    for i in 0..50 {
        if i % 7 == 3 {
            input.push_str(" \"orphan\"\n");
        } else {
            input.push_str(&LINE.replace("10.0.0.1", &format!("10.0.0.{i}")));
            input.push('\n');
        }
    }
    let bytes = input.as_bytes();
    let (whole_batches, whole) = parse(bytes, ParseOptions::default());

    // Split at arbitrary line starts, parse each split with its own parser, merge.
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&s| s < bytes.len())
        .collect();
    let cuts = [0, 5, 6, 20, 37, starts.len()];
    let mut merged = ParseStats::default();
    let mut rows = Vec::new();
    for w in cuts.windows(2) {
        let from = starts[w[0]];
        let to = starts.get(w[1]).copied().unwrap_or(bytes.len());
        let (b, s) = {
            let mut p = LineParser::new(ParseOptions::default());
            let mut out = Vec::new();
            p.parse(&bytes[from..to], w[0] as u64 + 1, &mut |b| out.push(b))
                .unwrap();
            p.flush(&mut |b| out.push(b));
            (out, p.take_stats())
        };
        rows.extend(ts_client(&b));
        merged.merge(&s);
    }
    assert_eq!(merged, whole);
    assert_eq!(rows, ts_client(&whole_batches));
}

#[test]
fn log_format_names() {
    for f in [LogFormat::Combined, LogFormat::Common, LogFormat::Simple] {
        assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
    }
    assert_eq!("CLF".parse::<LogFormat>(), Ok(LogFormat::Common));
    assert!("json".parse::<LogFormat>().is_err());
}

#[test]
fn over_long_lines_are_malformed_in_every_format() {
    let long_path = "p".repeat(300);
    let long_clf = format!(
        "10.0.0.2 - - [01/Jan/2020:00:00:06 +0000] \"GET /{long_path} HTTP/1.1\" 200 1 \"-\" \"ua\""
    );
    let input = format!("{LINE}\n{long_clf}\nno timestamp {long_path}\n{LINE}\n");
    let opts = ParseOptions {
        max_line_bytes: 200,
        ..ParseOptions::default()
    };
    let (batches, stats) = parse(input.as_bytes(), opts.clone());
    assert_eq!(stats.lines, 4);
    assert_eq!(stats.rows, 2);
    assert_eq!(stats.malformed, 2);
    let why: Vec<(u64, &str)> = stats.examples.iter().map(|m| (m.line, m.reason)).collect();
    assert_eq!(why, [(2, OVERLONG), (3, OVERLONG)]);
    assert_eq!(ts_client(&batches).len(), 2);
    // The same lines are fine under the default limit.
    let (_, stats) = parse(input.as_bytes(), ParseOptions::default());
    assert_eq!((stats.rows, stats.malformed), (3, 1));

    let simple = format!("12:00:01 10.0.0.1\n12:00:02 {}\n", "h".repeat(300));
    let opts = ParseOptions {
        max_line_bytes: 200,
        ..ParseOptions::new(LogFormat::Simple)
    };
    let (_, stats) = parse(simple.as_bytes(), opts);
    assert_eq!((stats.rows, stats.malformed), (1, 1));
    assert_eq!(stats.examples[0].reason, OVERLONG);
}
