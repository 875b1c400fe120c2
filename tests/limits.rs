//! Resource bounds of `weir replay`: an over-long line is counted and reported, not held in
//! memory whole; absurd parallelism is a usage error, not gigabytes of queues or an abort.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

/// Bytes of the over-long line's path: far past the default --max-line-bytes (64 KiB).
const LONG: usize = 200 << 20;

/// A generated log with one line of ~200 MB inserted as line 1001: a well-formed combined line
/// (client, timestamp, request) whose path is 200 MB long, so only its length makes it
/// malformed. Returns the gzip file and the log without that line (for the reference).
fn log_with_a_long_line(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let plain = dir.join("plain.log");
    run_ok(&[
        "gen",
        "--lines",
        "20000",
        "--clients",
        "300",
        "--seed",
        "4",
        "-o",
        plain.to_str().unwrap(),
    ]);
    let text = std::fs::read(&plain).unwrap();
    let split = text
        .split_inclusive(|&b| b == b'\n')
        .take(1000)
        .map(<[u8]>::len)
        .sum::<usize>();
    let first = String::from_utf8_lossy(&text[..split]);
    let last = first.lines().last().unwrap();
    let stamp = &last[last.find('[').unwrap()..=last.find(']').unwrap()];
    let gz = dir.join("long.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&text[..split]).unwrap();
    write!(enc, "10.9.9.9 - - {stamp} \"GET /").unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..LONG >> 20 {
        enc.write_all(&block).unwrap();
    }
    enc.write_all(b" HTTP/1.1\" 200 5 \"-\" \"x\"\n").unwrap();
    enc.write_all(&text[split..]).unwrap();
    enc.finish().unwrap();
    (gz, text)
}

/// Runs `weir` with `args` to its end, sampling its peak resident memory (VmHWM) meanwhile.
fn run_with_peak_rss(args: &[&str]) -> (std::process::Output, u64) {
    let child = weir()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        while let Ok(text) = std::fs::read_to_string(&status) {
            if text.contains("State:\tZ") {
                break;
            }
            let kib = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    let out = wait_at_most(child, COMMAND_LIMIT, "weir replay of the long line");
    (out, sampler.join().unwrap() * 1024)
}

#[test]
fn an_over_long_line_is_reported_and_never_buffered_whole() {
    let dir = tempdir();
    let (gz, text) = log_with_a_long_line(dir.path());
    let (out, peak) = run_with_peak_rss(&[
        "replay",
        gz.to_str().unwrap(),
        "--output-format",
        "csv",
        "--max-out-of-orderness",
        "1h",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let (expected, malformed) = reference(&text, 5_000, 0);
    assert_counts_eq(&parse_csv(&out.stdout, 5_000), &expected, "the other lines");
    assert!(
        err.contains(&format!("{} malformed", malformed + 1)),
        "the long line is counted as malformed: {err}"
    );
    assert!(
        err.contains("line 1001") && err.contains("over-long"),
        "the long line is reported with its line number and why: {err}"
    );
    // A sampler that never saw the run (it ended before the first look) would pass the bound
    // below without checking anything.
    assert!(peak > 0, "no sample of the run's peak memory was taken");
    assert!(
        peak < (LONG / 2) as u64,
        "peak memory {} MiB for a {} MiB line: it was buffered",
        peak >> 20,
        LONG >> 20
    );
    eprintln!("peak RSS {} MiB for a {} MiB line", peak >> 20, LONG >> 20);
}

#[test]
fn absurd_parallelism_is_a_usage_error() {
    let dir = tempdir();
    let log = dir.path().join("a.log");
    std::fs::write(
        &log,
        "10.0.0.1 - - [12/May/2024:00:00:01 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"x\"\n",
    )
    .unwrap();
    for args in [
        &["-p", "10000"][..],
        &["-p", "99999999999"],
        &["-p", "0"],
        &["--parse-threads", "100000"],
        &["--parse-threads", "0"],
    ] {
        let out = output(
            weir().arg("replay").arg(&log).args(args),
            &format!("weir replay {args:?}"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("out of range"), "{args:?}: {err}");
    }
}
