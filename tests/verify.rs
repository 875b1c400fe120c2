//! End-to-end tests of `weir verify` on files, running the built binary (the Kafka ones are with
//! the Kafka tests).
//!
//! - `clean_*`: a log from `weir gen`, replayed to CSV and JSON lines, verifies clean (exit 0).
//! - `tampered_*`: a dropped, duplicated, changed or added output row is reported with its kind,
//!   window, client and counts (exit 1).
//! - `real_*`: the real logs against their shipped expected CSVs, and a replay that drops late
//!   rows caught by the auditor.
//! - `errors_*`: usage errors (exit 2) naming what is wrong.
//! - `library_*`: [`weir::verify::verify`] called directly.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::*;
use weir::units::thousands;
use weir::verify::{verify, Kind, VerifyConfig};

/// A log from `weir gen` in `dir`: 20,000 lines from 300 clients at 2,000 lines/s, i.e. 10 s of
/// event time from 2024-05-12 00:00:00 UTC (two 5 s windows).
fn gen_log(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec![
        "gen",
        "--lines",
        "20000",
        "--clients",
        "300",
        "--rate",
        "2000",
        "--seed",
        "11",
        "--output",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
    path
}

/// `weir replay LOG --output-format FORMAT -o OUT -q` plus `extra`.
fn replay_to(log: &Path, out: &Path, format: &str, extra: &[&str]) {
    let mut args = vec![
        "replay",
        log.to_str().unwrap(),
        "--output-format",
        format,
        "-o",
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
}

/// Runs `weir verify --input IN --output OUT` plus `extra`.
fn verify_cli(input: &Path, counts: &Path, extra: &[&str]) -> Output {
    output(
        weir()
            .args([
                "verify",
                "--input",
                input.to_str().unwrap(),
                "--output",
                counts.to_str().unwrap(),
            ])
            .args(extra),
        "weir verify",
    )
}

/// stdout and stderr of a run, for messages.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn assert_clean(out: &Output) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("result:     clean"), "{t}");
}

/// Asserts a run exits 1 and reports exactly `counts` = (missing, duplicated, wrong,
/// unexpected); returns its text.
#[track_caller]
fn assert_not_clean(out: &Output, counts: (u64, u64, u64, u64)) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let (m, d, w, u) = counts;
    let want = format!("NOT CLEAN: {m} missing, {d} duplicated, {w} wrong, {u} unexpected");
    assert!(t.contains(&want), "expected `{want}` in:\n{t}");
    t
}

/// Asserts a run exits 2 (the check could not be made); returns its text.
#[track_caller]
fn assert_cannot_check(out: &Output) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    t
}

/// The config `weir verify` would make of `argv` (after `verify`): `--input`, `--output` and
/// `--group`, the rest at its defaults.
fn parse_args(argv: &[&str]) -> VerifyConfig {
    let flag = |name: &str| {
        argv.iter()
            .position(|a| *a == name)
            .map(|i| argv[i + 1].to_string())
    };
    let mut cfg = VerifyConfig::new(flag("--input").unwrap(), flag("--output").unwrap());
    cfg.group = flag("--group");
    cfg
}

#[test]
fn clean_csv_and_jsonl_outputs_of_a_generated_log() {
    let dir = tempdir();
    let log = gen_log(dir.path(), "access.log", &["--malformed", "0.01"]);
    let malformed = reference(&std::fs::read(&log).unwrap(), 5_000, 0).1;
    assert!(malformed > 0);
    for (format, name) in [("csv", "out.csv"), ("jsonl", "out.jsonl")] {
        for p in ["1", "3"] {
            let out = dir.path().join(name);
            replay_to(&log, &out, format, &["-p", p]);
            let run = verify_cli(&log, &out, &[]);
            assert_clean(&run);
            let t = text(&run);
            assert!(
                t.contains(&format!(" {} malformed", thousands(malformed))),
                "{t}"
            );
            assert!(t.contains("input:      20,000 lines (combined)"), "{t}");
        }
    }
    // Without its extension, the JSON file is told by its first byte.
    let bare = dir.path().join("out");
    std::fs::copy(dir.path().join("out.jsonl"), &bare).unwrap();
    assert_clean(&verify_cli(&log, &bare, &[]));
    // A CSV without extension too.
    std::fs::copy(dir.path().join("out.csv"), &bare).unwrap();
    assert_clean(&verify_cli(&log, &bare, &[]));
}

#[test]
fn clean_with_other_windows_formats_and_stdin() {
    let dir = tempdir();
    // The simple format with its date, and a one-minute window.
    let log = gen_log(dir.path(), "simple.log", &["--format", "simple"]);
    let out = dir.path().join("out.csv");
    replay_to(
        &log,
        &out,
        "csv",
        &[
            "--window",
            "1m",
            "--date",
            "2024-05-12",
            "--format",
            "simple",
        ],
    );
    assert_clean(&verify_cli(
        &log,
        &out,
        &[
            "--window",
            "1m",
            "--date",
            "2024-05-12",
            "--format",
            "simple",
        ],
    ));
    // The same log read as of another day gives other windows: every row missing or unexpected.
    let run = verify_cli(&log, &out, &["--window", "1m", "--date", "2024-05-13"]);
    let t = text(&run);
    assert_eq!(run.status.code(), Some(1), "{t}");
    assert!(t.contains("NOT CLEAN"), "{t}");

    // The input on stdin.
    let log = gen_log(dir.path(), "access.log", &[]);
    replay_to(&log, &out, "csv", &[]);
    let mut child = weir()
        .args(["verify", "--input", "-", "--output", out.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written by a thread of its own, so that a run that stops reading fails the wait below
    // instead of blocking the test forever.
    let mut stdin = child.stdin.take().unwrap();
    let bytes = std::fs::read(&log).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    assert_clean(&wait_at_most(child, COMMAND_LIMIT, "weir verify --input -"));
    writer
        .join()
        .unwrap()
        .expect("weir verify read its whole stdin");
}

#[test]
fn clean_with_clients_that_need_quoting() {
    let dir = tempdir();
    let log = dir.path().join("odd.log");
    let line = |client: &str, sec: u32| {
        format!("{client} - - [12/May/2024:00:00:{sec:02} +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"x\"\n")
    };
    let mut text = String::new();
    for (client, sec) in [
        ("a,b", 0),
        ("\"q\"", 1),
        ("::1", 2),
        ("a,b", 3),
        ("host.example.com", 6),
        ("x\\y", 7),
    ] {
        text.push_str(&line(client, sec));
    }
    std::fs::write(&log, text).unwrap();
    for (format, name) in [("csv", "out.csv"), ("jsonl", "out.jsonl")] {
        let out = dir.path().join(name);
        replay_to(&log, &out, format, &[]);
        assert_clean(&verify_cli(&log, &out, &[]));
    }
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    assert!(
        csv.contains("\"a,b\",2") && csv.contains("\"\"\"q\"\"\""),
        "{csv}"
    );
}

/// The output's header and rows, as lines.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// (window_start, client, count) of a CSV or JSON row of weir's output.
fn row_fields(line: &str) -> (i64, String, u64) {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        (
            v["window_start"].as_i64().unwrap(),
            v["client"].as_str().unwrap().to_owned(),
            v["count"].as_u64().unwrap(),
        )
    } else {
        let f: Vec<&str> = line.split(',').collect();
        (
            f[0].parse().unwrap(),
            f[2].to_owned(),
            f[3].parse().unwrap(),
        )
    }
}

/// `line` with its count replaced by `count`.
fn with_count(line: &str, count: u64) -> String {
    if line.starts_with('{') {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["count"] = count.into();
        v.to_string()
    } else {
        let (head, _) = line.rsplit_once(',').unwrap();
        format!("{head},{count}")
    }
}

/// `line` with its client replaced by `client`.
fn with_client(line: &str, client: &str) -> String {
    if line.starts_with('{') {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["client"] = client.into();
        v.to_string()
    } else {
        let f: Vec<&str> = line.split(',').collect();
        format!("{},{},{client},{}", f[0], f[1], f[3])
    }
}

#[test]
fn tampered_outputs_are_reported_by_kind() {
    let dir = tempdir();
    let log = gen_log(dir.path(), "access.log", &[]);
    for (format, name) in [("csv", "out.csv"), ("jsonl", "out.jsonl")] {
        let good = dir.path().join(name);
        replay_to(&log, &good, format, &[]);
        let lines = lines_of(&good);
        let first_row = usize::from(format == "csv");
        let victim = first_row + 7;
        let (start, client, count) = row_fields(&lines[victim]);
        let window = format!("({start})  client {client}");
        let bad = dir.path().join(format!("bad.{format}"));

        // One tampering of each kind: what is done, the counts (missing, duplicated, wrong,
        // unexpected) it must give, and the example line the report must show.
        type Case = (Box<dyn Fn(&mut Vec<String>)>, (u64, u64, u64, u64), String);
        let v = lines[victim].clone();
        let cases: [Case; 4] = [
            (
                Box::new(move |l| drop(l.remove(victim))),
                (1, 0, 0, 0),
                format!("{window}  expected {count}, found none"),
            ),
            (
                Box::new({
                    let v = v.clone();
                    move |l| l.push(v.clone())
                }),
                (0, 1, 0, 0),
                format!("{window}  expected {count}, found 2 times ({count}, {count})"),
            ),
            (
                Box::new({
                    let v = v.clone();
                    move |l| l[victim] = with_count(&v, count + 5)
                }),
                (0, 0, 1, 0),
                format!("{window}  expected {count}, found {}", count + 5),
            ),
            (
                Box::new(move |l| l.push(with_client(&v, "203.0.113.250"))),
                (0, 0, 0, 1),
                format!("({start})  client 203.0.113.250  expected none, found {count}"),
            ),
        ];
        for (tamper, counts, example) in cases {
            let mut l = lines.clone();
            tamper(&mut l);
            write_lines(&bad, &l);
            let t = assert_not_clean(&verify_cli(&log, &bad, &[]), counts);
            assert!(t.contains(&example), "{format}: {t}");
        }

        // All four at once, on other rows.
        let mut l = lines.clone();
        let (a, b, c) = (first_row + 1, first_row + 2, first_row + 3);
        l.push(with_client(&lines[a], "203.0.113.251"));
        l.push(lines[b].clone());
        l[c] = with_count(&lines[c], row_fields(&lines[c]).2 + 1);
        l.remove(victim);
        write_lines(&bad, &l);
        assert_not_clean(&verify_cli(&log, &bad, &[]), (1, 1, 1, 1));

        // A row that is not a result row: unreadable, not clean.
        let mut l = lines.clone();
        l.push("garbage".to_owned());
        write_lines(&bad, &l);
        let run = verify_cli(&log, &bad, &[]);
        let t = text(&run);
        assert_eq!(run.status.code(), Some(1), "{t}");
        assert!(t.contains("0 unexpected, 1 unreadable"), "{t}");
        assert!(
            t.contains(&format!("line {}", lines.len() + 1)),
            "names the line: {t}"
        );
    }
}

#[test]
fn tampered_examples_are_limited() {
    let dir = tempdir();
    let log = gen_log(dir.path(), "access.log", &[]);
    let good = dir.path().join("out.csv");
    replay_to(&log, &good, "csv", &[]);
    let lines = lines_of(&good);
    // Keep the header and every other row: about half the rows are missing.
    let kept: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || i % 2 == 1)
        .map(|(_, l)| l.clone())
        .collect();
    let bad = dir.path().join("bad.csv");
    write_lines(&bad, &kept);
    let dropped = (lines.len() - kept.len()) as u64;
    let run = verify_cli(&log, &bad, &["--examples", "3"]);
    let t = assert_not_clean(&run, (dropped, 0, 0, 0));
    assert_eq!(t.matches("found none").count(), 3, "{t}");
    assert!(t.contains(&format!("… and {} more", dropped - 3)), "{t}");
}

#[test]
fn real_logs_verify_against_their_shipped_expected_csvs() {
    for name in ["rootly_apache_access", "erddap_nginx_2024-05"] {
        let log = real(&format!("{name}.log"));
        // `window_start,client,count`, no header.
        let expected = real(&format!("{name}.expected.csv"));
        let first = std::fs::read_to_string(&expected).unwrap();
        assert_eq!(first.lines().next().unwrap().split(',').count(), 3);
        let run = verify_cli(&log, &expected, &[]);
        assert_clean(&run);
        let t = text(&run);
        let rows = first.lines().count();
        assert!(
            t.contains(&format!("expected:   {} rows", thousands(rows as u64))),
            "{t}"
        );
    }
    let t = text(&verify_cli(
        &real("erddap_nginx_2024-05.log"),
        &real("erddap_nginx_2024-05.expected.csv"),
        &[],
    ));
    assert!(t.contains("10,479 counted, 5,796 malformed"), "{t}");
}

#[test]
fn real_log_replay_that_drops_late_rows_is_caught() {
    let dir = tempdir();
    let log = real("rootly_apache_access.log");
    let out = dir.path().join("out.csv");
    // With a 3 s bound nothing is late: clean.
    replay_to(
        &log,
        &out,
        "csv",
        &["--max-out-of-orderness", "3s", "-p", "2"],
    );
    assert_clean(&verify_cli(&log, &out, &[]));
    // With ascending watermarks, 43 lines are late and left out of their windows: 11 rows
    // missing, 32 with too small a count.
    replay_to(&log, &out, "csv", &["-p", "2", "--parse-threads", "1"]);
    let t = assert_not_clean(&verify_cli(&log, &out, &[]), (11, 0, 32, 0));
    assert!(
        t.contains("2,479 rows in 1,029 windows, 4,775 requests"),
        "{t}"
    );
    assert!(t.contains("found:      2,468 rows, 4,732 requests"), "{t}");
}

#[test]
fn errors_are_usage_errors_naming_the_problem() {
    let dir = tempdir();
    let log = gen_log(dir.path(), "access.log", &[]);
    let out = dir.path().join("out.csv");
    replay_to(&log, &out, "csv", &["--window", "10s"]);

    // The wrong --window.
    let t = assert_cannot_check(&verify_cli(&log, &out, &[]));
    assert!(t.contains("--window"), "{t}");
    assert_clean(&verify_cli(&log, &out, &["--window", "10s"]));

    // A missing input, a missing output, a directory.
    let missing = dir.path().join("nope.log");
    for (i, o) in [
        (missing.as_path(), out.as_path()),
        (log.as_path(), missing.as_path()),
        (log.as_path(), dir.path()),
    ] {
        let t = assert_cannot_check(&verify_cli(i, o, &[]));
        assert!(t.contains("nope.log") || t.contains("directory"), "{t}");
    }

    // Output keyed by more than the client.
    let keyed = dir.path().join("keyed.csv");
    replay_to(&log, &keyed, "csv", &["--key", "client,status"]);
    let t = assert_cannot_check(&verify_cli(&log, &keyed, &[]));
    assert!(t.contains("keyed by client only"), "{t}");

    // The print and Arrow formats are not read.
    for (format, name) in [("print", "out.txt"), ("arrow", "out.arrow")] {
        let other = dir.path().join(name);
        replay_to(&log, &other, format, &[]);
        let t = assert_cannot_check(&verify_cli(&log, &other, &[]));
        assert!(t.contains("--output-format csv"), "{format}: {t}");
    }

    // Bad flag values.
    for bad in [
        &["--window", "0s"][..],
        &["--format", "xml"],
        &["--examples", "many"],
    ] {
        assert_cannot_check(&verify_cli(&log, &out, bad));
    }

    // Kafka addresses that are not addresses.
    let run = output(
        weir()
            .args(["verify", "--input", "kafka://127.0.0.1:9092", "--output"])
            .arg(&out),
        "weir",
    );
    let t = assert_cannot_check(&run);
    assert!(t.contains("no topic"), "{t}");
}

#[test]
fn library_report_counts_and_examples() {
    let dir = tempdir();
    let log = gen_log(dir.path(), "access.log", &["--malformed", "0.005"]);
    let good = dir.path().join("out.csv");
    replay_to(&log, &good, "csv", &[]);
    let (log_s, good_s) = (log.to_str().unwrap(), good.to_str().unwrap());

    let args = parse_args(&["--input", log_s, "--output", good_s]);
    assert_eq!(args.window, std::time::Duration::from_secs(5));
    assert_eq!(args.examples, 10);
    let r = verify(&args).unwrap();
    assert!(r.is_clean(), "{r}");
    let (reference, malformed) = reference(&std::fs::read(&log).unwrap(), 5_000, 0);
    assert_eq!(r.malformed, malformed);
    assert_eq!(r.lines, 20_000);
    assert_eq!(r.expected_rows, reference.len() as u64);
    assert_eq!(r.found_rows, r.expected_rows);
    assert_eq!(r.expected_requests, reference.values().sum::<u64>());
    assert_eq!(r.found_requests, r.expected_requests);
    assert!(r.examples.is_empty());
    assert!(!r.malformed_examples.is_empty());

    // Drop the first two rows (sorted by window, then client, in the report).
    let lines = lines_of(&good);
    let bad = dir.path().join("bad.csv");
    let mut l = lines.clone();
    l.drain(1..3);
    write_lines(&bad, &l);
    let args = parse_args(&["--input", log_s, "--output", bad.to_str().unwrap()]);
    let r = verify(&args).unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.count(Kind::Missing), 2);
    assert_eq!(r.examples.len(), 2);
    let mut dropped: Vec<(i64, String, u64)> = lines[1..3].iter().map(|l| row_fields(l)).collect();
    dropped.sort();
    let got: Vec<(i64, String, u64)> = r
        .examples
        .iter()
        .map(|d| {
            assert_eq!((d.kind, d.found.len()), (Kind::Missing, 0));
            (d.window_start, d.client.clone(), d.expected.unwrap())
        })
        .collect();
    assert_eq!(got, dropped);
    assert_eq!(r.found_rows, r.expected_rows - 2);

    // The default group is the job's.
    let args = parse_args(&["--input", log_s, "--output", good_s, "--group", "g1"]);
    assert_eq!(args.group.as_deref(), Some("g1"));
}
