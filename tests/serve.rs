//! End-to-end tests of `weir serve` as a server that stays up, and of SIGINT/SIGTERM ending a
//! run cleanly, on real processes and real sockets.
//!
//! - `serve_*`: bad, empty, idle, silent and surplus connections never end or block the
//!   server; connections are read at once, each with its own watermark.
//! - `signal_*`: the first SIGINT/SIGTERM ends `serve`, `replay -`, a checkpointed replay and
//!   `weir run` with everything written (or checkpointed), exit status 0; a second one exits at
//!   once saying what it dropped.
//!
//! Every count is checked against `common::reference` over the lines the test sent; the tests
//! act on what weir says (a line on stderr or stdout, a file appearing), not after sleeps.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// 2024-05-12, the day of the simple format's lines (`--date 2024-05-12`).
const DAY: i64 = 19_855;
const WINDOW: i64 = 5_000;
/// How long a test waits for something weir should do at once before it fails.
const LIMIT: Duration = Duration::from_secs(60);

/// A simple-format line at `sec` seconds after 12:00:00 from `client`.
fn line(sec: u32, client: &str) -> String {
    let t = 12 * 3600 + sec;
    format!(
        "{:02}:{:02}:{:02} {client}\n",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The window start (ms) of `line(sec, …)`.
fn window_of(sec: u32) -> i64 {
    let ms = (DAY * 86_400 + 12 * 3600 + i64::from(sec)) * 1000;
    ms.div_euclid(WINDOW) * WINDOW
}

/// `weir serve` on a free port with CSV to stdout and `extra` flags; returns the run and its
/// address (from its first stderr line).
fn serve(extra: &[&str]) -> (Watched, String) {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--output-format",
        "csv",
        "--date",
        "2024-05-12",
    ];
    args.extend(extra);
    let mut run = Watched::spawn(&args);
    let l = run.until_err("the address", LIMIT, |l| l.contains("listening on"));
    let addr = l.rsplit(' ').next().unwrap().to_string();
    (run, addr)
}

fn connect(addr: &str) -> TcpStream {
    let c = TcpStream::connect(addr).expect("the server accepts connections");
    c.set_read_timeout(Some(LIMIT)).unwrap();
    c
}

/// Reads what the server sends until it closes the connection (panics after [`LIMIT`]).
fn read_to_close(c: &mut TcpStream) -> String {
    let mut s = Vec::new();
    match c.read_to_end(&mut s) {
        Ok(_) => {}
        // A reset after the server closed a connection it did not read to the end.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// Sends `text` and closes the sending side; returns once the server has read it all and
/// closed the connection.
fn send_all(addr: &str, text: &str) {
    let mut c = connect(addr);
    c.write_all(text.as_bytes()).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    read_to_close(&mut c);
}

/// Asserts a clean end (exit 0) and that the CSV on stdout counts exactly `sent`.
#[track_caller]
fn assert_counts(status: ExitStatus, err: &str, out: &str, sent: &str, ctx: &str) {
    assert_eq!(status.code(), Some(0), "{ctx}: {status}; stderr:\n{err}");
    let (expected, malformed) = reference(sent.as_bytes(), WINDOW, DAY);
    assert_eq!(malformed, 0, "{ctx}: the test sends well-formed lines");
    let got = parse_csv(out.as_bytes(), WINDOW);
    assert_counts_eq(&got, &expected, &format!("{ctx} (stderr:\n{err})"));
}

/// Before: the first connection that closed without a line, or whose first line was not a known
/// format, ended the server (`--format auto`, the default).
#[test]
fn serve_a_bad_or_empty_connection_does_not_end_the_server() {
    let (mut run, addr) = serve(&[]);
    // Connects and closes at once.
    drop(connect(&addr));
    // Garbage first: told why, and closed.
    let mut bad = connect(&addr);
    let bad_peer = bad.local_addr().unwrap().to_string();
    bad.write_all(b"hello\nthis is not a log\n").unwrap();
    let told = read_to_close(&mut bad);
    assert!(told.contains("not an access log"), "told: {told:?}");
    // The server goes on: a combined log, then simple lines.
    let tmp = tempdir();
    let log = tmp.path().join("c.log");
    run_ok(&[
        "gen",
        "--lines",
        "2000",
        "--clients",
        "40",
        "--rate",
        "200",
        "-o",
        log.to_str().unwrap(),
    ]);
    let combined = std::fs::read_to_string(&log).unwrap();
    send_all(&addr, &combined);
    let simple: String = (0..30)
        .map(|s| line(s, &format!("10.0.0.{}", s % 4)))
        .collect();
    send_all(&addr, &simple);
    run.until_err("the simple connection's end", LIMIT, |l| {
        l.contains("30 lines (simple)")
    });
    run.signal("-INT");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(
        status,
        &err,
        &out,
        &format!("{combined}{simple}"),
        "after bad connections",
    );
    assert!(
        err.lines()
            .any(|l| l.contains(&bad_peer) && l.contains("closed for bad input")),
        "the bad connection is named: {err}"
    );
    assert!(err.contains("1 closed for bad input"), "{err}");
    assert!(err.contains("formats: combined 1, simple 1"), "{err}");
}

/// With `--strict`, a malformed line closes its connection (told why), not the server.
#[test]
fn serve_a_malformed_line_with_strict_closes_only_its_connection() {
    let (mut run, addr) = serve(&["--format", "simple", "--strict"]);
    let mut bad = connect(&addr);
    bad.write_all(format!("{}not a line\n", line(1, "10.0.0.1")).as_bytes())
        .unwrap();
    let told = read_to_close(&mut bad);
    assert!(told.contains("line 2: malformed"), "told: {told:?}");
    let good: String = (2..9).map(|s| line(s, "10.0.0.2")).collect();
    send_all(&addr, &good);
    run.until_err("the good connection's end", LIMIT, |l| {
        l.contains("7 lines (simple)")
    });
    run.signal("-INT");
    let (status, err, out) = run.finish(LIMIT);
    // The bad connection's well-formed first line counts.
    assert_counts(
        status,
        &err,
        &out,
        &format!("{}{good}", line(1, "10.0.0.1")),
        "strict",
    );
    assert!(err.contains("1 closed for bad input"), "{err}");
}

/// Before: connections were read one after another, so an open, idle one kept every other
/// client waiting (and their windows from firing).
#[test]
fn serve_reads_connections_at_once_and_an_idle_one_stops_holding_windows_back() {
    let (mut run, addr) = serve(&["--format", "simple", "--idle-timeout", "300ms"]);
    // Connected, and silent: it holds windows back from the start of time until it has been
    // silent for the idle timeout.
    let mut idle = connect(&addr);
    run.until_err("the first connection", LIMIT, |l| {
        l.contains("connection from")
    });
    // Another client, while the first stays open: its lines move its own watermark to
    // 12:00:12, and the windows up to 12:00:10 fire.
    let mut busy = connect(&addr);
    let busy_lines: String = (2..=12).map(|s| line(s, "10.0.0.2")).collect();
    busy.write_all(busy_lines.as_bytes()).unwrap();
    let w5 = window_of(5).to_string();
    run.until_out("the window 12:00:05 to fire", LIMIT, |l| l.starts_with(&w5));
    // Both are still open; the idle one speaks, in the window still open.
    let late_enough = line(13, "10.0.0.1");
    idle.write_all(late_enough.as_bytes()).unwrap();
    drop(idle);
    drop(busy);
    run.until_err("both connections' ends", LIMIT, {
        let mut ended = 0;
        move |l| {
            ended += usize::from(l.contains(" lines (simple), closed"));
            ended == 2
        }
    });
    run.signal("-TERM");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(
        status,
        &err,
        &out,
        &format!("{busy_lines}{late_enough}"),
        "two connections",
    );
    assert!(err.contains("0 late"), "{err}");
}

/// Before: one connection at a time, and past the listen backlog (~130) new ones timed out.
/// 150 connections open at once: a window fires only once every one of them has been read.
#[test]
fn serve_reads_150_connections_at_once() {
    const N: usize = 150;
    let (mut run, addr) = serve(&[
        "--format",
        "simple",
        "--max-connections",
        "200",
        "--idle-timeout",
        "1h",
    ]);
    let mut conns: Vec<TcpStream> = (0..N).map(|_| connect(&addr)).collect();
    // Every connection holds windows back from the moment it is accepted.
    let mut accepted = 0;
    run.until_err("every connection accepted", LIMIT, |l| {
        accepted += usize::from(l.contains("connection from"));
        accepted == N
    });
    let mut sent = String::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let mut text = String::new();
        for s in 0..5 {
            text.push_str(&line(s, &format!("10.1.{}.{}", i / 200, i % 200)));
        }
        text.push_str(&line(6, "10.9.9.9"));
        c.write_all(text.as_bytes()).unwrap();
        sent.push_str(&text);
    }
    // The first window fires with every connection still open: all of them were read.
    let (expected, _) = reference(sent.as_bytes(), WINDOW, DAY);
    let w0 = window_of(0);
    let first: usize = expected.keys().filter(|(w, _)| *w == w0).count();
    let w0s = w0.to_string();
    let mut rows = 0;
    run.until_out("the first window's rows", LIMIT, |l| {
        rows += usize::from(l.starts_with(&w0s));
        rows == first
    });
    drop(conns);
    run.until_err("every connection's end", LIMIT, {
        let mut ended = 0;
        move |l| {
            ended += usize::from(l.contains(" lines (simple), closed"));
            ended == N
        }
    });
    run.signal("-INT");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(status, &err, &out, &sent, "150 connections");
    assert!(
        err.contains("150 connections: 150 closed normally"),
        "{err}"
    );
}

/// Before: a connection over the cap waited in the backlog, without a word.
#[test]
fn serve_refuses_connections_over_the_cap_with_a_reason_and_serves_again_when_one_ends() {
    let (mut run, addr) = serve(&["--format", "simple", "--max-connections", "2"]);
    let a = connect(&addr);
    let mut b = connect(&addr);
    let mut accepted = 0;
    run.until_err("two connections", LIMIT, |l| {
        accepted += usize::from(l.contains("connection from"));
        accepted == 2
    });
    let mut over = connect(&addr);
    let told = read_to_close(&mut over);
    assert!(told.contains("too many connections"), "told: {told:?}");
    drop(a);
    run.until_err("the first connection's end", LIMIT, |l| {
        l.contains("closed by the client")
    });
    // A slot is free again.
    let text: String = (0..12).map(|s| line(s, "10.0.0.7")).collect();
    send_all(&addr, &text);
    // Its rows are in the job before `b` moves time on: otherwise they could come in after
    // `b`'s line had fired their window (a slow reader of one socket, not a fault of weir's).
    run.until_err("the new connection's end", LIMIT, |l| {
        l.contains("12 lines (simple), closed by the client")
    });
    b.write_all(line(13, "10.0.0.8").as_bytes()).unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    read_to_close(&mut b);
    run.until_err("the last connection's end", LIMIT, |l| {
        l.contains("1 lines (simple), closed by the client")
    });
    run.signal("-INT");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(
        status,
        &err,
        &out,
        &format!("{text}{}", line(13, "10.0.0.8")),
        "cap of 2",
    );
    assert!(err.contains("1 refused"), "{err}");
}

/// Before: a silent connection was kept forever (and blocked every other).
#[test]
fn serve_closes_a_connection_silent_for_the_read_timeout() {
    let (mut run, addr) = serve(&["--format", "simple", "--read-timeout", "300ms"]);
    let mut silent = connect(&addr);
    silent.write_all(line(0, "10.0.0.1").as_bytes()).unwrap();
    read_to_close(&mut silent);
    run.until_err("the timeout", LIMIT, |l| l.contains("--read-timeout"));
    let text: String = (1..9).map(|s| line(s, "10.0.0.2")).collect();
    send_all(&addr, &text);
    run.until_err("the second connection's end", LIMIT, |l| {
        l.contains("8 lines (simple)")
    });
    run.signal("-INT");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(
        status,
        &err,
        &out,
        &format!("{}{text}", line(0, "10.0.0.1")),
        "after a timeout",
    );
    assert!(err.contains("1 timed out"), "{err}");
}

/// `weir gen` lines: `n` simple-format lines at 100 lines/s from 2024-05-12 00:00:00, 20
/// clients.
fn gen_simple(n: u64) -> String {
    let out = run_ok(&[
        "gen",
        "--lines",
        &n.to_string(),
        "--clients",
        "20",
        "--rate",
        "100",
        "--format",
        "simple",
    ]);
    String::from_utf8(out.stdout).unwrap()
}

/// `text` and then one line in a window of its own, later; and the start of the last window of
/// `text`. Once a row of that window is written, every line before the marker has been read.
fn with_marker(text: &str) -> (String, String) {
    let (counts, _) = reference(text.as_bytes(), WINDOW, DAY);
    let last = counts.keys().map(|(w, _)| *w).max().unwrap();
    (format!("{text}23:59:59 10.255.255.255\n"), last.to_string())
}

/// Before: SIGTERM killed the server, and the windows still open were lost (1,000 lines read,
/// none of the last window's rows written).
#[test]
fn signal_term_ends_serve_writing_every_open_window() {
    let (mut run, addr) = serve(&[]);
    let (text, last) = with_marker(&gen_simple(1000));
    let mut conn = connect(&addr);
    conn.write_all(text.as_bytes()).unwrap();
    run.until_out("the rows of the log's last window", LIMIT, |l| {
        l.starts_with(&last)
    });
    // The connection is still open, the marker's window too.
    run.signal("-TERM");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(status, &err, &out, &text, "serve, SIGTERM");
    assert!(err.contains("stopped by SIGTERM"), "{err}");
    drop(conn);
}

/// Before: SIGINT killed `weir replay -` and the windows still open were lost.
#[test]
fn signal_int_ends_replay_from_stdin_writing_every_open_window() {
    let mut run = Watched::spawn(&[
        "replay",
        "-",
        "--date",
        "2024-05-12",
        "--output-format",
        "csv",
    ]);
    let (text, last) = with_marker(&gen_simple(1000));
    let mut stdin = run.stdin();
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    run.until_out("the rows of the log's last window", LIMIT, |l| {
        l.starts_with(&last)
    });
    // Stdin is still open.
    run.signal("-INT");
    let (status, err, out) = run.finish(LIMIT);
    assert_counts(status, &err, &out, &text, "replay -, SIGINT");
    assert!(err.contains("stopped by SIGINT after 1,001 lines"), "{err}");
    drop(stdin);
}

/// A second signal does not wait for a stop that cannot finish (here, output nobody reads):
/// it exits at once with 128 + the signal, saying what it dropped.
#[test]
fn signal_a_second_one_exits_at_once_saying_what_was_dropped() {
    let tmp = tempdir();
    let log = tmp.path().join("big.log");
    // ~100k result rows: far more than a pipe holds.
    run_ok(&[
        "gen",
        "--lines",
        "300000",
        "--clients",
        "30000",
        "--rate",
        "10000",
        "-o",
        log.to_str().unwrap(),
    ]);
    let mut child = weir()
        .args(["replay", "-", "--output-format", "csv"])
        .stdin(std::fs::File::open(&log).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = Lines::of(child.stderr.take().unwrap());
    // Output has begun (so the signals are handled); then nobody reads it. The header is read
    // on a thread of its own, so that a run that writes nothing fails the test within LIMIT.
    let pipe = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(pipe);
        let mut header = String::new();
        stdout.read_line(&mut header).unwrap();
        tx.send((header, stdout)).unwrap();
    });
    let Ok((header, stdout)) = rx.recv_timeout(LIMIT) else {
        child.kill().unwrap();
        panic!("no header on stdout within {LIMIT:?}");
    };
    assert!(header.starts_with("window_start"), "{header}");
    let pid = child.id();
    signal(pid, "-INT");
    let mut wait_for = |what: &str| {
        if let Err(e) = err.until(Instant::now() + LIMIT, |l| l.contains(what)) {
            panic!("waiting for {what:?}: {e:?}; stderr:\n{}", err.text);
        }
    };
    wait_for("SIGINT: no more input is read");
    signal(pid, "-INT");
    wait_for("exiting at once; dropped: ");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", err.text);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{}", err.text);
    drop(stdout);
}

/// The committed checkpoints in `dir`, by epoch.
fn committed(dir: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("MANIFEST").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Before: SIGINT killed a checkpointed replay where it stood. Now it takes a last checkpoint
/// and exits 0; the same command resumes from that checkpoint and the output is exact.
#[test]
fn signal_int_ends_a_checkpointed_replay_at_a_checkpoint_that_a_rerun_resumes() {
    let tmp = tempdir();
    let log = tmp.path().join("access.log");
    run_ok(&[
        "gen",
        "--lines",
        "60000",
        "--clients",
        "300",
        "--rate",
        "1000",
        "-o",
        log.to_str().unwrap(),
    ]);
    let (out, ck) = (tmp.path().join("counts.csv"), tmp.path().join("ck"));
    let args = [
        "replay",
        log.to_str().unwrap(),
        "--output-format",
        "csv",
        "-o",
        out.to_str().unwrap(),
        "--checkpoint-dir",
        ck.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
        "--chunk-bytes",
        "65536",
        "-p",
        "2",
    ];
    let mut slow = args.to_vec();
    slow.extend(["--test-chunk-delay", "20ms"]);
    let run = Watched::spawn(&slow);
    let deadline = Instant::now() + LIMIT;
    while committed(&ck).is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(run.child.id(), "-INT");
    let (status, err, _) = run.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    let stopped = err
        .lines()
        .find_map(|l| {
            l.split("stopped by SIGINT at checkpoint ")
                .nth(1)
                .map(|r| r.split(',').next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("no stop message: {err}"));
    assert!(
        !out.exists(),
        "the output appears only when the run completes"
    );

    let again = run_ok(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(&format!("resuming from checkpoint {stopped} ")),
        "the rerun resumes where the stop left: {err}"
    );
    let (expected, _) = reference(&std::fs::read(&log).unwrap(), WINDOW, 0);
    let got = parse_csv(&std::fs::read(&out).unwrap(), WINDOW);
    assert_counts_eq(&got, &expected, "stopped by SIGINT, then resumed");
}

/// Before: SIGINT killed `weir run` in the middle of an epoch. Now the run commits a last epoch
/// and exits 0; the same job resumes from it, and its output is exactly once.
#[test]
fn signal_int_ends_weir_run_at_a_committed_epoch_that_a_rerun_resumes() {
    let p = kafka::Pipeline::new("sigint", "30000", "11", "4");
    let bounded = p.run_args();
    let mut args: Vec<&str> = bounded
        .iter()
        .copied()
        .filter(|a| *a != "--stop-at-end" && *a != "-q")
        .collect();
    args.extend(["--test-read-delay", "40ms", "--test-commit-delay", "20ms"]);
    let mut run = Watched::spawn(&args);
    assert!(
        run.until(kafka::commit_windows_with_records(2)),
        "the run ended before its second commit window: {}",
        run.text()
    );
    signal(run.child.id(), "-INT");
    let (status, err, _) = run.finish(LIMIT);
    assert_eq!(status.code(), Some(0), "{err}");
    let epoch = err
        .lines()
        .find_map(|l| {
            l.split("stopped by SIGINT at epoch ")
                .nth(1)
                .map(|r| r.split(' ').next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("no stop message: {err}"));
    let mut rerun: Vec<&str> = bounded.iter().copied().filter(|a| *a != "-q").collect();
    rerun.retain(|a| !a.is_empty());
    let again = run_ok(&rerun);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(&format!("resuming from epoch {epoch}:")),
        "the rerun resumes where the stop left: {err}"
    );
    p.check("stopped by SIGINT, then resumed");
}
