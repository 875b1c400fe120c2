//! End-to-end tests of `weir replay`, `weir gen` and `weir serve`, running the built binary.
//!
//! - `real_logs_*`: the two real logs in shared/data/real against their shipped expected CSVs
//!   and against the reference in `common`.
//! - `generated_*`: synthetic logs of every format, malformed lines and disorder included.
//! - `inputs_*`, `outputs_*`: gzip and stdin inputs, the four output formats.
//! - `errors_*`: what a user sees when something is wrong.
//! - `serve_*`: the TCP source.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;

use common::*;

const DAY_2024_05_12: i64 = 19_855;

#[test]
fn real_logs_match_expected_and_reference() {
    for (name, bound) in [
        ("rootly_apache_access", "3s"),
        ("erddap_nginx_2024-05", "0s"),
    ] {
        let log = real(&format!("{name}.log"));
        let expected = expected_csv(&format!("{name}.expected.csv"));
        let (reference, _) = reference(&std::fs::read(&log).unwrap(), 5_000, 0);
        assert_counts_eq(
            &reference,
            &expected,
            "the test's reference vs the shipped CSV",
        );
        for p in ["1", "4"] {
            for threads in ["1", "3"] {
                let out = run_ok(&[
                    "replay",
                    log.to_str().unwrap(),
                    "--output-format",
                    "csv",
                    "-p",
                    p,
                    "--parse-threads",
                    threads,
                    "--max-out-of-orderness",
                    bound,
                    "-q",
                ]);
                assert_counts_eq(
                    &parse_csv(&out.stdout, 5_000),
                    &expected,
                    &format!("{name} p={p} threads={threads}"),
                );
                assert_windows_ascending(&out.stdout);
            }
        }
    }
}

#[test]
fn real_log_summary_counts_lines_and_shows_malformed_line_numbers() {
    let log = real("erddap_nginx_2024-05.log");
    let out = run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "-o",
        "/dev/null",
        "--parse-threads",
        "2",
    ]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("16,275 lines"), "{err}");
    assert!(err.contains("10,479 counted, 5,796 malformed"), "{err}");
    // The first malformed lines, with their numbers in the file.
    let text = std::fs::read_to_string(&log).unwrap();
    let first_bad: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| reference_line(l, 0).is_none())
        .map(|(i, _)| i + 1)
        .take(5)
        .collect();
    for n in first_bad {
        assert!(
            err.contains(&format!("line {n}: ")),
            "line {n} not reported:\n{err}"
        );
    }
}

#[test]
fn real_log_late_rows_with_ascending_watermarks() {
    let dir = tempdir();
    let log = real("rootly_apache_access.log");
    let late_path = dir.path().join("late.csv");
    let out = run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "--output-format",
        "csv",
        "--parse-threads",
        "1",
        "-p",
        "2",
        "--late-output",
        late_path.to_str().unwrap(),
    ]);
    // Reference: a row is late when its window ended at or before the largest earlier timestamp.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut max_ts = i64::MIN;
    let mut late = Counts::new();
    let mut on_time = Counts::new();
    for line in text.lines() {
        let (ts, client) = reference_line(line, 0).unwrap();
        let start = ts.div_euclid(5_000) * 5_000;
        let into = if start + 5_000 <= max_ts {
            &mut late
        } else {
            &mut on_time
        };
        *into.entry((start, client)).or_default() += 1;
        max_ts = max_ts.max(ts);
    }
    let late_rows: u64 = late.values().sum();
    assert_eq!(late_rows, 43, "the data README says 43 lines are late");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("43 late"), "{err}");
    assert_counts_eq(&parse_csv(&out.stdout, 5_000), &on_time, "");
    let late_csv = std::fs::read_to_string(&late_path).unwrap();
    assert_eq!(late_csv.lines().count() as u64, 1 + late_rows, "{late_csv}");
    assert!(late_csv.starts_with("ts,client\n"));
}

/// With several parser threads the file's chunks reach the job in whatever order the threads
/// get to them; lateness must still follow the file's order, so the counts, the late rows and
/// the bytes written are the same on every run and at every parallelism.
#[test]
fn out_of_order_input_gives_one_answer_whatever_the_threads() {
    let dir = tempdir();
    let log = gen(
        dir.path(),
        "ooo.log",
        &[
            "--lines",
            "300000",
            "--clients",
            "4000",
            "--rate",
            "5000",
            "--seed",
            "11",
            "--out-of-order",
            "8s",
            "--malformed",
            "0.001",
        ],
    );
    let bytes = std::fs::read(&log).unwrap();
    for bound in ["0s", "3s"] {
        let bound_ms = bound.trim_end_matches('s').parse::<i64>().unwrap() * 1000;
        let (expected, late, _) = reference_in_order(&bytes, 5_000, bound_ms, 0);
        assert!(late > 10_000, "the log is out of order enough: {late} late");
        let mut first_bytes: Option<Vec<u8>> = None;
        for (p, threads, chunk) in [
            ("1", "1", "1048576"),
            ("2", "2", "65536"),
            ("2", "2", "65536"),
            ("2", "2", "65536"),
            ("3", "4", "16384"),
        ] {
            let ctx =
                format!("bound {bound}, -p {p} --parse-threads {threads} --chunk-bytes {chunk}");
            let out = run_ok(&[
                "replay",
                log.to_str().unwrap(),
                "--output-format",
                "csv",
                "-p",
                p,
                "--parse-threads",
                threads,
                "--chunk-bytes",
                chunk,
                "--max-out-of-orderness",
                bound,
            ]);
            assert_counts_eq(&parse_csv(&out.stdout, 5_000), &expected, &ctx);
            let err = String::from_utf8(out.stderr).unwrap();
            let late_text = format!(" {} late", grouped(late));
            assert!(err.contains(&late_text), "{ctx}: wanted{late_text}: {err}");
            if (p, threads) == ("2", "2") {
                match &first_bytes {
                    None => first_bytes = Some(out.stdout),
                    Some(b) => assert!(*b == out.stdout, "{ctx}: another run wrote other bytes"),
                }
            }
        }
    }
}

fn gen(dir: &std::path::Path, name: &str, args: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut all = vec!["gen", "--output", path.to_str().unwrap()];
    all.extend_from_slice(args);
    run_ok(&all);
    path
}

#[test]
fn generated_logs_in_every_format() {
    let dir = tempdir();
    for format in ["combined", "common", "simple"] {
        let log = gen(
            dir.path(),
            &format!("{format}.log"),
            &[
                "--lines",
                "60000",
                "--clients",
                "3000",
                "--rate",
                "2000",
                "--seed",
                "5",
                "--format",
                format,
                "--out-of-order",
                "2s",
                "--malformed",
                "0.02",
                "--start-ms",
                "1715500800000",
            ],
        );
        let bytes = std::fs::read(&log).unwrap();
        let (expected, malformed) = reference(&bytes, 5_000, DAY_2024_05_12);
        assert!(
            malformed > 600 && malformed < 1800,
            "{format}: {malformed} malformed"
        );
        for p in ["1", "4"] {
            let out = run_ok(&[
                "replay",
                log.to_str().unwrap(),
                "--output-format",
                "csv",
                "-p",
                p,
                "--max-out-of-orderness",
                "2s",
                "--date",
                "2024-05-12",
                "--format",
                "auto",
            ]);
            assert_counts_eq(
                &parse_csv(&out.stdout, 5_000),
                &expected,
                &format!("{format} p={p}"),
            );
            let err = String::from_utf8(out.stderr).unwrap();
            assert!(
                err.contains(&format!("{malformed} malformed").replace("1,", "1,"))
                    || err.contains(&group(malformed)),
                "{err}"
            );
            assert!(err.contains(" 0 late"), "{err}");
        }
    }
}

/// `n` with thousands separators, as weir's summary prints it.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group(n: u64) -> String {
    format!("{} malformed", grouped(n))
}

#[test]
fn inputs_gzip_and_stdin_give_the_same_counts() {
    let dir = tempdir();
    let log = gen(
        dir.path(),
        "a.log",
        &["--lines", "20000", "--clients", "500", "--seed", "9"],
    );
    let bytes = std::fs::read(&log).unwrap();
    let (expected, _) = reference(&bytes, 5_000, 0);
    let gz = dir.path().join("a.log.gz");
    let status = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&log)
        .status()
        .unwrap();
    assert!(status.success());
    let out = run_ok(&[
        "replay",
        gz.to_str().unwrap(),
        "--output-format",
        "csv",
        "-p",
        "2",
    ]);
    assert_counts_eq(&parse_csv(&out.stdout, 5_000), &expected, "");

    let mut child = weir()
        .args(["replay", "-", "--output-format", "csv", "-p", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes).unwrap());
    let out = wait_at_most(child, COMMAND_LIMIT, "weir replay -");
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_counts_eq(&parse_csv(&out.stdout, 5_000), &expected, "");
}

#[test]
fn outputs_print_jsonl_and_arrow() {
    let dir = tempdir();
    let log = real("rootly_apache_access.log");
    let expected = expected_csv("rootly_apache_access.expected.csv");
    let total: u64 = expected.values().sum();

    let print = run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "--max-out-of-orderness",
        "3s",
        "-q",
    ]);
    let print = String::from_utf8(print.stdout).unwrap();
    assert_eq!(print.lines().count(), expected.len());
    let first = expected.iter().next().unwrap();
    let secs = first.0 .0 / 1000 % 86_400;
    let line = format!(
        "{:02}:{:02}:{:02} {} {}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        first.0 .1,
        first.1
    );
    assert_eq!(print.lines().next().unwrap(), line);
    let shifted = run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "--max-out-of-orderness",
        "3s",
        "-q",
        "--tz",
        "-01:00",
    ]);
    let shifted = String::from_utf8(shifted.stdout).unwrap();
    let h = (secs / 3600 + 23) % 24;
    assert!(
        shifted
            .lines()
            .next()
            .unwrap()
            .starts_with(&format!("{h:02}:")),
        "{shifted:.40}"
    );

    let jsonl = run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "--max-out-of-orderness",
        "3s",
        "--output-format",
        "jsonl",
    ]);
    let mut sum = 0;
    for l in String::from_utf8(jsonl.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let key = (
            v["window_start"].as_i64().unwrap(),
            v["client"].as_str().unwrap().to_string(),
        );
        assert_eq!(v["count"].as_u64(), expected.get(&key).copied(), "{l}");
        assert_eq!(v["window_end"].as_i64().unwrap() - key.0, 5_000);
        sum += v["count"].as_u64().unwrap();
    }
    assert_eq!(sum, total);

    let ipc = dir.path().join("out.arrow");
    run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "--max-out-of-orderness",
        "3s",
        "--output-format",
        "arrow",
        "-o",
        ipc.to_str().unwrap(),
    ]);
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&ipc).unwrap(), None).unwrap();
    let mut rows = 0;
    let mut sum = 0;
    for b in reader {
        let b = b.unwrap();
        rows += b.num_rows();
        let counts = b.column_by_name("count").unwrap();
        let counts = counts
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .unwrap();
        sum += counts.values().iter().sum::<u64>();
    }
    assert_eq!((rows, sum), (expected.len(), total));
}

#[test]
fn errors_name_what_is_wrong_with_the_right_exit_status() {
    let dir = tempdir();
    let missing = dir.path().join("nope.log");
    let out = output(weir().args(["replay", missing.to_str().unwrap()]), "weir");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.log"));

    let out = output(
        weir().args(["replay", dir.path().to_str().unwrap()]),
        "weir",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory"));

    let bad_gz = dir.path().join("bad.log.gz");
    std::fs::write(&bad_gz, b"\x1f\x8b\x08\x00garbage that is not deflate").unwrap();
    let out = output(weir().args(["replay", bad_gz.to_str().unwrap()]), "weir");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.log.gz"));

    // On a log that exists, so that the window is what the run refuses.
    let out = output(
        weir()
            .args(["replay", real("erddap_nginx_2024-05.log").to_str().unwrap()])
            .args(["--window", "5 parsecs", "-o", "/dev/null"]),
        "weir",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("5 parsecs"), "{err}");

    let out = output(
        weir().args([
            "replay",
            real("erddap_nginx_2024-05.log").to_str().unwrap(),
            "--key",
            "nope",
        ]),
        "weir",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));

    // --strict: the first malformed line is an error naming its line number (19 in this log).
    for threads in ["1", "2"] {
        let out = output(
            weir().args([
                "replay",
                real("erddap_nginx_2024-05.log").to_str().unwrap(),
                "--strict",
                "-o",
                "/dev/null",
                "--parse-threads",
                threads,
            ]),
            "weir",
        );
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("line 19"), "{err}");
    }

    let unknown = dir.path().join("notes.txt");
    std::fs::write(&unknown, "hello world\nthis is not a log\n").unwrap();
    let out = output(weir().args(["replay", unknown.to_str().unwrap()]), "weir");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("format"));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = output(weir().args(["serve", "--listen", &addr]), "weir");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr));
}

#[test]
fn serve_counts_lines_from_a_socket_as_windows_close() {
    // Every read of the run's pipes has a deadline: a run that says nothing fails the test with
    // what it said instead of hanging it.
    let mut run = Watched::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--once",
        "--format",
        "simple",
        "--date",
        "2024-05-12",
    ]);
    let line = run.until_err("the address it listens on", COMMAND_LIMIT, |l| {
        l.contains("listening on")
    });
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_write_timeout(Some(COMMAND_LIMIT)).unwrap();
    conn.write_all(b"12:00:01 10.0.0.1\n12:00:02 10.0.0.2\n12:00:03 10.0.0.1\n")
        .unwrap();
    conn.write_all(b"12:00:06 10.0.0.3\n").unwrap();
    conn.flush().unwrap();
    // The window 12:00:00-12:00:05 closes with the 12:00:06 line: its results arrive while the
    // connection is still open.
    let mut got = [
        run.until_out("the first row", COMMAND_LIMIT, |_| true),
        run.until_out("the second row", COMMAND_LIMIT, |_| true),
    ];
    got.sort();
    assert_eq!(got, ["12:00:00 10.0.0.1 2", "12:00:00 10.0.0.2 1"]);
    drop(conn);
    let (status, err, out) = run.finish(COMMAND_LIMIT);
    assert!(status.success(), "{err}");
    let rest: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(rest, ["12:00:05 10.0.0.3 1"], "{err}");
}
