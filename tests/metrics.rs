//! End-to-end tests of `--metrics-listen`: the Prometheus metrics and the live status page of a
//! running `weir serve`, on a real process, real sockets and a real browser.
//!
//! - `metrics_count_what_was_sent`: `/metrics` against an independent count of the lines the
//!   test sent (lines, bytes, malformed lines, late rows per window by a plain reader in file
//!   order, windows that must have fired).
//! - `status_page_shows_the_metrics`: headless Chromium (Debian's `chromium`, installed by
//!   `.ci/run`) loads `/`, runs its script, and the numbers it shows match `/metrics`.
//! - `replay_from_stdin_counts_its_lines`: the same counts for `weir replay -` on a pipe.
//! - `kafka_run_shows_lines_lag_checkpoints_and_commits`: `weir run` on the shared broker: the
//!   lines and bytes of the produced log, consumer lag down to 0, checkpoints and transactions.
//!
//! The tests wait for events (the address on stderr, the counters reaching the lines sent),
//! not for sleeps.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// 2024-05-12, the day of the simple format's lines (`--date 2024-05-12`).
const DAY: i64 = 19_855;
const WINDOW: i64 = 5_000;
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

/// The lines a test sends: 40 s of event time over 5 clients, a step back into fired windows
/// (late rows) after 20 s and again at the end, and a few malformed lines.
fn log() -> String {
    let mut s = String::new();
    for sec in 0..40u32 {
        for c in 0..5 {
            s += &line(sec, &format!("10.0.0.{c}"));
        }
        if sec == 20 {
            s += &line(3, "10.9.9.9");
            s += &line(7, "10.9.9.9");
            s += "not a log line\n";
        }
    }
    s += &line(1, "10.9.9.8");
    s += "12:61:00 10.0.0.1\n";
    s
}

/// `weir serve` with metrics on free ports: (the run, the socket address, the metrics address).
fn serve() -> (Watched, String, String) {
    let mut run = Watched::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--format",
        "simple",
        "--date",
        "2024-05-12",
        "-p",
        "2",
        "--output-format",
        "csv",
    ]);
    let m = run.until_err("the metrics address", LIMIT, |l| l.contains("metrics on"));
    let metrics = m
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("an address")
        .to_string();
    let l = run.until_err("the address", LIMIT, |l| l.contains("listening on"));
    let addr = l.rsplit(' ').next().unwrap().to_string();
    (run, addr, metrics)
}

/// The body of `GET path` on `addr`.
fn get(addr: &str, path: &str) -> String {
    let mut c = TcpStream::connect(addr).expect("the metrics server accepts connections");
    c.set_read_timeout(Some(LIMIT)).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = String::new();
    c.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// The samples of a Prometheus text page: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("a sample");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

/// Waits until `/metrics` satisfies `done`, returning its samples; panics with the last ones
/// after [`LIMIT`].
fn metrics_when(
    run: &mut Watched,
    addr: &str,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let m = samples(&get(addr, "/metrics"));
        if done(&m) {
            return m;
        }
        if Instant::now() > deadline {
            run.fail(&format!("the metrics never got there: {m:#?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the test expects of `log()`, from its own reading of the lines: (lines, bytes,
/// malformed, late rows per window start, windows that must have fired, max timestamp).
struct Expected {
    lines: u64,
    bytes: u64,
    malformed: u64,
    late: BTreeMap<i64, u64>,
    fired: u64,
    max_ts: i64,
}

fn expected(log: &str) -> Expected {
    let mut e = Expected {
        lines: log.lines().count() as u64,
        bytes: log.len() as u64,
        malformed: 0,
        late: BTreeMap::new(),
        fired: 0,
        max_ts: i64::MIN,
    };
    let mut on_time = std::collections::BTreeSet::new();
    for l in log.lines() {
        let Some((ts, _)) = reference_line(l, DAY) else {
            e.malformed += 1;
            continue;
        };
        let start = ts.div_euclid(WINDOW) * WINDOW;
        // Ascending watermarks: a row is late when its window ended at or before the largest
        // timestamp before it.
        if start + WINDOW <= e.max_ts {
            *e.late.entry(start).or_default() += 1;
        } else {
            on_time.insert(start);
        }
        e.max_ts = e.max_ts.max(ts);
    }
    e.fired = on_time.iter().filter(|&&s| s + WINDOW <= e.max_ts).count() as u64;
    e
}

/// Sends `log` on a connection to `addr`, kept open (the job goes on).
fn send(addr: &str, log: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).expect("the server accepts connections");
    c.write_all(log.as_bytes()).unwrap();
    c.flush().unwrap();
    c
}

/// Waits until the job has taken in every line and fired what it must, then returns
/// `/metrics`.
fn settled(run: &mut Watched, addr: &str, e: &Expected) -> BTreeMap<String, f64> {
    let late: u64 = e.late.values().sum();
    metrics_when(run, addr, |m| {
        let get = |k: &str| m.get(k).copied().unwrap_or(-1.0);
        let worker_rows: f64 = (0..2)
            .map(|w| get(&format!("weir_worker_rows_total{{worker=\"{w}\"}}")))
            .sum();
        get("weir_input_lines_total{input=\"conn-0\"}") == e.lines as f64
            && worker_rows == (e.lines - e.malformed) as f64
            && get("weir_late_rows_total") == late as f64
            && get("weir_windows_fired_total") >= e.fired as f64
    })
}

#[test]
fn metrics_count_what_was_sent() {
    let (mut run, addr, maddr) = serve();
    let log = log();
    let e = expected(&log);
    let conn = send(&addr, &log);
    let m = settled(&mut run, &maddr, &e);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:#?}"));
    assert_eq!(
        get("weir_input_lines_total{input=\"conn-0\"}"),
        e.lines as f64
    );
    assert_eq!(
        get("weir_input_bytes_total{input=\"conn-0\"}"),
        e.bytes as f64
    );
    assert_eq!(
        get("weir_input_malformed_total{input=\"conn-0\"}"),
        e.malformed as f64
    );
    assert_eq!(get("weir_malformed_lines_total"), e.malformed as f64);
    assert_eq!(get("weir_rows_total"), (e.lines - e.malformed) as f64);
    let late: u64 = e.late.values().sum();
    assert!(late >= 3, "the log has late rows");
    assert_eq!(get("weir_late_rows_total"), late as f64);
    assert_eq!(
        get("weir_input_late_rows_total{input=\"conn-0\"}"),
        late as f64
    );
    // Windows up to the watermark have fired, none past it (the connection is still open).
    assert_eq!(get("weir_windows_fired_total"), e.fired as f64);
    // The input's watermark is its largest timestamp (ascending), in seconds.
    assert_eq!(
        get("weir_input_watermark_seconds{input=\"conn-0\"}"),
        e.max_ts as f64 / 1e3
    );
    assert!(get("weir_input_watermark_lag_seconds{input=\"conn-0\"}") > 0.0);
    assert_eq!(get("weir_job_parallelism"), 2.0);
    assert_eq!(get("weir_job_window_seconds"), 5.0);
    assert!(get("weir_worker_queue_capacity{worker=\"0\"}") > 0.0);
    // The status JSON is the same snapshot.
    let status = get_json(&maddr);
    assert_eq!(status["totals"]["lines"], e.lines);
    assert_eq!(
        status["late_windows"].as_array().unwrap().len(),
        e.late.len()
    );
    for w in status["late_windows"].as_array().unwrap() {
        let start = w["start_ms"].as_i64().unwrap();
        assert_eq!(w["rows"].as_u64(), e.late.get(&start).copied(), "{w}");
    }
    drop(conn);
    run.signal("-TERM");
    let (status, err, _) = run.finish(LIMIT);
    assert!(status.success(), "{err}");
}

fn get_json(addr: &str) -> serde_json::Value {
    serde_json::from_str(&get(addr, "/status.json")).expect("JSON")
}

/// Headless Chromium: `/usr/bin/chromium` (Debian's package) or `$WEIR_CHROMIUM`.
fn chromium() -> String {
    let path = std::env::var("WEIR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium package (`apt-get install -y chromium`, as \
         .ci/run does) or point WEIR_CHROMIUM at a Chromium"
    );
    path
}

/// The page at `url` after its script has run for a few seconds of virtual time, as HTML.
fn dump_dom(url: &str) -> String {
    let profile = tempdir();
    let out = output(
        Command::new(chromium()).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ]),
        "chromium --dump-dom",
    );
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

/// The text of the element with id `id` in `dom` (the page's elements hold text only).
fn text_of(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(rest[start..start + end].to_string())
}

/// A number as the page shows it (`12,345`).
fn number(dom: &str, id: &str) -> f64 {
    let t = text_of(dom, id).unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    t.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("#{id} is {t:?}"))
}

/// `ms` as the page shows a time: `2024-05-12 12:00:39` (UTC).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (day, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    assert_eq!(day, DAY, "the test's times are on 2024-05-12");
    format!(
        "2024-05-12 {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[test]
fn status_page_shows_the_metrics() {
    chromium();
    let (mut run, addr, maddr) = serve();
    let log = log();
    let e = expected(&log);
    let conn = send(&addr, &log);
    let m = settled(&mut run, &maddr, &e);
    let dom = dump_dom(&format!("http://{maddr}/"));
    // The counters are settled (the connection sends nothing more): the page's poll saw these.
    let after = samples(&get(&maddr, "/metrics"));
    let get = |k: &str| {
        *after
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {after:#?}"))
    };
    for k in [
        "weir_input_lines_total{input=\"conn-0\"}",
        "weir_late_rows_total",
        "weir_windows_fired_total",
    ] {
        assert_eq!(m[k], get(k), "{k} moved while the page loaded");
    }
    let polls: u32 = dom
        .split("data-polls=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the page never polled:\n{dom}"));
    assert!(polls >= 2, "the page refreshed itself {polls} time(s)");
    let checks = [
        ("total-lines", "weir_input_lines_total{input=\"conn-0\"}"),
        ("total-bytes", "weir_input_bytes_total{input=\"conn-0\"}"),
        ("total-malformed", "weir_malformed_lines_total"),
        ("total-late", "weir_late_rows_total"),
        ("total-windows", "weir_windows_fired_total"),
        ("total-results", "weir_result_rows_total"),
        ("total-checkpoints", "weir_checkpoints_total"),
        ("job-parallelism", "weir_job_parallelism"),
        ("input-0-lines", "weir_input_lines_total{input=\"conn-0\"}"),
        (
            "input-0-malformed",
            "weir_input_malformed_total{input=\"conn-0\"}",
        ),
        (
            "input-0-late",
            "weir_input_late_rows_total{input=\"conn-0\"}",
        ),
        ("worker-0-rows", "weir_worker_rows_total{worker=\"0\"}"),
        ("worker-1-rows", "weir_worker_rows_total{worker=\"1\"}"),
        (
            "worker-0-stalls",
            "weir_worker_producer_stalls_total{worker=\"0\"}",
        ),
    ];
    for (id, series) in checks {
        assert_eq!(number(&dom, id), get(series), "#{id} vs {series}");
    }
    assert_eq!(text_of(&dom, "input-0-name").as_deref(), Some("conn-0"));
    assert_eq!(text_of(&dom, "job-window").as_deref(), Some("5.0 s"));
    assert_eq!(text_of(&dom, "job-keys").as_deref(), Some("client"));
    let wm = get("weir_input_watermark_seconds{input=\"conn-0\"}");
    assert_eq!(
        text_of(&dom, "input-0-watermark"),
        Some(utc((wm * 1e3) as i64))
    );
    // Late rows per window, newest first, as the test's own reader counts them.
    for (k, (&start, &rows)) in e.late.iter().rev().enumerate() {
        assert_eq!(text_of(&dom, &format!("late-{k}-start")), Some(utc(start)));
        assert_eq!(number(&dom, &format!("late-{k}-rows")), rows as f64);
    }
    // The throughput chart has a line drawn from the page's own history of polls.
    let chart = dom
        .split("id=\"chart-line\" points=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no chart line:\n{dom}"));
    assert!(!chart.is_empty(), "an empty chart after {polls} polls");
    drop(conn);
    run.signal("-TERM");
    let (status, err, _) = run.finish(LIMIT);
    assert!(status.success(), "{err}");
}

#[test]
fn replay_from_stdin_counts_its_lines() {
    let mut run = Watched::spawn(&[
        "replay",
        "-",
        "--metrics-listen",
        "127.0.0.1:0",
        "--format",
        "simple",
        "--date",
        "2024-05-12",
        "-o",
        "/dev/null",
    ]);
    let m = run.until_err("the metrics address", LIMIT, |l| l.contains("metrics on"));
    let maddr = m
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("an address")
        .to_string();
    let log = log();
    let e = expected(&log);
    let mut stdin = run.stdin();
    stdin.write_all(log.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The pipe stays open: the replay goes on, and its metrics can be read.
    let late: u64 = e.late.values().sum();
    let m = metrics_when(&mut run, &maddr, |m| {
        m.get("weir_input_lines_total{input=\"stdin\"}") == Some(&(e.lines as f64))
            && m.get("weir_late_rows_total") == Some(&(late as f64))
    });
    assert_eq!(m["weir_input_bytes_total{input=\"stdin\"}"], e.bytes as f64);
    assert_eq!(
        m["weir_input_malformed_total{input=\"stdin\"}"],
        e.malformed as f64
    );
    assert_eq!(
        m["weir_input_late_rows_total{input=\"stdin\"}"],
        late as f64
    );
    drop(stdin);
    let (status, err, _) = run.finish(LIMIT);
    assert!(status.success(), "{err}");
    assert!(err.contains(&format!("{} late", late)), "{err}");
}

/// Needs the Kafka broker (`scripts/kafka.sh start`, as `.ci/run` does).
#[test]
fn kafka_run_shows_lines_lag_checkpoints_and_commits() {
    let p = common::kafka::Pipeline::new("metrics", "20000", "5", "2");
    let log = std::fs::read(&p.log).unwrap();
    let (_, malformed) = reference(&log, WINDOW, DAY);
    let lines = log.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut run = Watched::spawn(&[
        "run",
        "--from",
        &p.ua,
        "--to",
        &p.ub,
        "--checkpoint-dir",
        &p.dir,
        "--group",
        &p.group,
        "--checkpoint-interval",
        "200ms",
        "-p",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let m = run.until_err("the metrics address", LIMIT, |l| l.contains("metrics on"));
    let maddr = m
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("an address")
        .to_string();
    let series = |name: &str, part: i32| format!("{name}{{input=\"{}/{part}\"}}", p.a);
    // Every line read, both partitions caught up (lag 0), and a few epochs committed since.
    let m = metrics_when(&mut run, &maddr, |m| {
        let read: f64 = (0..2)
            .map(|q| {
                m.get(&series("weir_input_lines_total", q))
                    .copied()
                    .unwrap_or(0.0)
            })
            .sum();
        let caught_up = (0..2).all(|q| m.get(&series("weir_kafka_consumer_lag", q)) == Some(&0.0));
        read == lines as f64
            && caught_up
            && m.get("weir_kafka_transactions_total{outcome=\"committed\"}") >= Some(&3.0)
    });
    let bytes: f64 = (0..2)
        .map(|q| m[&series("weir_input_bytes_total", q)])
        .sum();
    assert_eq!(bytes, log.len() as f64);
    assert_eq!(m["weir_malformed_lines_total"], malformed as f64);
    assert_eq!(m["weir_kafka_transactions_total{outcome=\"aborted\"}"], 0.0);
    // Every committed transaction is a committed checkpoint, and each was timed.
    let commits = m["weir_kafka_transactions_total{outcome=\"committed\"}"];
    assert!(m["weir_checkpoints_total"] >= commits - 1.0, "{m:#?}");
    // (The histogram is read just after the counters: one more checkpoint may have come.)
    let timed = m["weir_checkpoint_duration_seconds_count"] - m["weir_checkpoints_total"];
    assert!((0.0..=1.0).contains(&timed), "{m:#?}");
    assert!(m["weir_checkpoint_bytes_total"] > 0.0);
    run.signal("-TERM");
    let (status, err, _) = run.finish(LIMIT);
    assert!(status.success(), "{err}");
}
