//! What a user reads when the input or a flag is wrong, and keys that could break an output.
//!
//! - a `--strict` failure names the input (file or stdin) and the line;
//! - auto-detection that gives up says how to name the format;
//! - impossible dates and UTC offsets are usage errors;
//! - control bytes and backslashes in a key are escaped in print and CSV output (`\xNN`, `\\`),
//!   and `weir verify` reads them back: the output checks clean against the input.

mod common;

use common::*;

const LINE: &str = "10.0.0.1 - - [12/May/2024:00:00:01 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"x\"";

#[test]
fn strict_errors_name_the_input_and_the_line() {
    let dir = tempdir();
    let log = dir.path().join("access.log");
    std::fs::write(&log, format!("{LINE}\n{LINE}\nnot a log line\n{LINE}\n")).unwrap();
    let out = output(
        weir().args(["replay", log.to_str().unwrap(), "--strict", "-q"]),
        "strict replay",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: line 3:", log.display())),
        "names the file and line 3: {err}"
    );

    let mut child = weir()
        .args(["replay", "-", "--strict", "-q", "--format", "combined"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{LINE}\nnot a log line\n").as_bytes())
        .unwrap();
    drop(stdin);
    let out = wait_at_most(child, COMMAND_LIMIT, "strict replay of stdin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdin: line 2:"),
        "names stdin and line 2: {err}"
    );
}

#[test]
fn unknown_formats_say_how_to_name_one() {
    let dir = tempdir();
    let log = dir.path().join("odd.log");
    std::fs::write(&log, "what is this\nno idea\n").unwrap();
    let out = output(
        weir().args(["replay", log.to_str().unwrap()]),
        "replay of an unknown format",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--format combined"), "{err}");
}

#[test]
fn impossible_dates_and_offsets_are_usage_errors() {
    let dir = tempdir();
    let log = dir.path().join("a.log");
    std::fs::write(&log, format!("{LINE}\n")).unwrap();
    for (flag, value, ok) in [
        ("--date", "2024-02-31", false),
        ("--date", "2023-02-29", false),
        ("--date", "2024-04-31", false),
        ("--date", "2024-02-29", true),
        ("--tz", "+15:00", false),
        ("--tz", "-12:30", false),
        ("--tz", "+14:00", true),
        ("--tz", "-12:00", true),
    ] {
        let out = output(
            weir()
                .args(["replay", log.to_str().unwrap(), "-q", flag])
                .arg(value),
            &format!("{flag} {value}"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(if ok { 0 } else { 2 }),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn control_bytes_in_keys_are_escaped_and_verify_reads_them_back() {
    let dir = tempdir();
    let log = dir.path().join("keys.log");
    // Clients with a NUL, a tab, a DEL and a backslash; each line is its own key.
    let clients: [&[u8]; 5] = [b"10.0.0.1", b"ev\0l", b"t\tab", b"d\x7fel", b"back\\x41"];
    let mut text = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for _ in 0..=i {
            text.extend_from_slice(c);
            text.extend_from_slice(&LINE.as_bytes()[8..]);
            text.push(b'\n');
        }
    }
    std::fs::write(&log, &text).unwrap();
    let print = run_ok(&["replay", log.to_str().unwrap(), "-q"]);
    let shown = String::from_utf8(print.stdout).unwrap();
    for want in [
        "00:00:00 ev\\x00l 2",
        "00:00:00 t\\x09ab 3",
        "00:00:00 d\\x7fel 4",
        "00:00:00 back\\\\x41 5",
    ] {
        assert!(shown.lines().any(|l| l == want), "no {want:?} in:\n{shown}");
    }
    assert!(!shown.bytes().any(|b| b < 0x20 && b != b'\n'), "{shown:?}");

    let csv = dir.path().join("counts.csv");
    run_ok(&[
        "replay",
        log.to_str().unwrap(),
        "-q",
        "--output-format",
        "csv",
        "-o",
        csv.to_str().unwrap(),
    ]);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + clients.len(),
        "one line per row: {rows:?}"
    );
    let out = output(
        weir().args([
            "verify",
            "--input",
            log.to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
        ]),
        "weir verify",
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("result:     clean"), "{report}");
}
