//! Serving TCP connections like the seed's `socketTextStream`: the pipeline behind `weir serve`.
//!
//! ```text
//!                  ┌─ free input? ─ no ──▶ "weir: too many connections …" to the client, closed
//!  acceptor ─ accept                                      (counted as refused)
//!                  └─ yes ─▶ connection thread: read (--read-timeout) ─▶ format of its first
//!                            lines ─▶ parse ─▶ Input k ───┐
//!  pool of --max-connections inputs; a free one is idle   ├─▶ workers ─▶ sink (results as
//!  (holds no window back) until a connection takes it ────┘             windows close)
//! ```
//!
//! The job has a fixed number of inputs, so the server keeps a pool of `max_connections` of
//! them. A connection takes a free input for its lifetime, which gives it its own watermark; when
//! it ends, the input says it is idle ([`Input::idle`]: it holds no window back, and its
//! watermark starts over for the next connection) and goes back to the pool. A connection that
//! takes an input marks it active at once ([`Input::active`]), so it holds windows back from the
//! moment it is accepted; one that goes quiet stops holding them back after `idle_timeout` (the
//! engine's idleness), and one that sends nothing for `read_timeout` is closed. A connection
//! beyond the cap is accepted and closed with a one-line reason rather than left in the listen
//! backlog: a client in the backlog waits with no word and, once the backlog (128) is full, new
//! ones time out.
//!
//! One connection's bad input never ends the server: the format is detected from each
//! connection's first lines (unless configured), and a connection whose first lines are not a
//! known format, whose format lacks a key column, or (with `strict`) that sends a malformed
//! line, is told why and closed, and counted. Only a failure of the job itself (its output)
//! ends the server with an error.
//!
//! A [`Stop`] ends the server cleanly: no more connections are accepted, the open ones are shut
//! down for reading (a line cut in the middle is dropped), every window fires and is written,
//! and [`serve`] returns its summary. A socket cannot be rewound: runs from a socket cannot be
//! replayed from a checkpoint.
//!
//! [`Input::idle`]: weir_engine::Input::idle
//! [`Input::active`]: weir_engine::Input::active

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use weir_engine::Input;
use weir_io::parse::{detect_format, LineParser, LogFormat, ParseStats};
use weir_io::source::LineReader;
use weir_io::split::socket::SocketSplit;
use weir_io::split::Driver;

use crate::error::{Error, Result};
use crate::replay::{
    check_paths, describe_malformed, job_builder, job_outputs, parse_options, JobOptions,
    ParseConfig, RunSummary, Started,
};
use crate::stop::Stop;
use crate::units::thousands;

/// Everything `weir serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on, e.g. `127.0.0.1:9999`.
    pub listen: String,
    /// How to read lines; a `None` format is detected per connection.
    pub parse: ParseConfig,
    /// What to compute and where to put it.
    pub job: JobOptions,
    /// Serve the first connection only, and end when it closes (every window fires).
    pub once: bool,
    /// Connections served at once; more are told so and closed.
    pub max_connections: usize,
    /// A connection that sends nothing for this long stops holding windows back.
    pub idle_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    pub read_timeout: Duration,
    /// Ends the server cleanly when requested.
    pub stop: Option<Stop>,
}

impl ServeConfig {
    /// Defaults: detected formats, 5 s windows by client to stdout, 64 connections, 2 s idle
    /// timeout, 5 min read timeout, serve until stopped.
    pub fn new(listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            parse: ParseConfig::default(),
            job: JobOptions::default(),
            once: false,
            max_connections: 64,
            idle_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(300),
            stop: None,
        }
    }
}

/// How the connections of a server ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Connections served (each took an input).
    pub accepted: u64,
    /// Closed by the client (or by the server's stop) after a normal run.
    pub closed: u64,
    /// Closed by the server for bad input: not a known format, a format without a key column,
    /// or a malformed line with `strict`.
    pub bad_input: u64,
    /// Closed by the server after `read_timeout` without data.
    pub timed_out: u64,
    /// Ended by a read error (a reset, say).
    pub failed: u64,
    /// Told "too many connections" and closed, not served.
    pub refused: u64,
}

/// What a server did.
#[derive(Debug, Clone)]
pub struct ServeSummary {
    /// Lines, rows and the job's counters of all connections together; `format` is the one
    /// most connections sent (`parse.examples` is empty: see `malformed_examples`).
    pub run: RunSummary,
    /// How the connections ended.
    pub connections: ConnectionCounts,
    /// Connections per detected format.
    pub formats: BTreeMap<&'static str, u64>,
    /// The first malformed lines, each with the peer that sent it.
    pub malformed_examples: Vec<String>,
    /// What ended the server early (`SIGINT`, …), if anything did.
    pub stopped_by: Option<&'static str>,
}

/// How one connection ended.
enum Outcome {
    Closed,
    BadInput,
    TimedOut,
    Failed,
}

impl Outcome {
    /// The kind of error this ending counts as in the metrics, if it is one.
    fn error_kind(&self) -> Option<&'static str> {
        match self {
            Outcome::Closed => None,
            Outcome::BadInput => Some("connection_bad_input"),
            Outcome::TimedOut => Some("connection_timed_out"),
            Outcome::Failed => Some("connection_failed"),
        }
    }
}

/// What a connection thread reports when its connection has ended.
struct Report {
    id: u64,
    peer: SocketAddr,
    outcome: Outcome,
    format: Option<LogFormat>,
    stats: ParseStats,
    /// The job failed under this connection: the server must stop.
    fatal: Option<Error>,
}

/// The reports of the connections that have ended, added up.
#[derive(Default)]
struct Tally {
    counts: ConnectionCounts,
    formats: BTreeMap<&'static str, u64>,
    parse: ParseStats,
    examples: Vec<String>,
}

impl Tally {
    /// Adds a connection's report (forgetting its socket); returns the job's failure if the
    /// connection saw one.
    fn record(&mut self, r: Report, open: &Mutex<HashMap<u64, TcpStream>>) -> Option<Error> {
        let c = &mut self.counts;
        match r.outcome {
            Outcome::Closed => c.closed += 1,
            Outcome::BadInput => c.bad_input += 1,
            Outcome::TimedOut => c.timed_out += 1,
            Outcome::Failed => c.failed += 1,
        }
        if let Some(f) = r.format {
            *self.formats.entry(f.name()).or_default() += 1;
        }
        open.lock().expect("open lock").remove(&r.id);
        for m in describe_malformed(&r.stats.examples) {
            if self.examples.len() < weir_io::parse::MAX_EXAMPLES {
                self.examples.push(format!("{} {m}", r.peer));
            }
        }
        let mut stats = r.stats;
        stats.examples.clear();
        self.parse.merge(&stats);
        r.fatal
    }
}

/// What the acceptor and the connection threads share.
struct Shared<'a> {
    cfg: &'a ServeConfig,
    say: &'a (dyn Fn(&str) + Sync),
    job_schema: arrow_schema::SchemaRef,
    /// Inputs not taken by a connection (all idle).
    free: (Sender<Input>, Receiver<Input>),
    /// A clone of each open connection's socket, to shut it down when the server stops.
    open: Mutex<HashMap<u64, TcpStream>>,
    /// The server is stopping: accept nothing more, drop a cut last line.
    closing: AtomicBool,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Lines read from every connection (for the second signal's message).
    lines: AtomicU64,
    reports: Sender<Report>,
}

/// Binds `cfg.listen` and serves connections; `on_listening` is told the bound address (useful
/// with port 0) and `say` gets one line per connection event. Returns when `cfg.stop` is
/// requested, or when the one connection closes with `cfg.once`, or with the job's error.
pub fn serve(
    cfg: &ServeConfig,
    say: &(dyn Fn(&str) + Sync),
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ServeSummary> {
    check_paths(None, &job_outputs(&cfg.job), None)?;
    if cfg.max_connections == 0 {
        return Err(Error::usage("--max-connections must be at least 1"));
    }
    let listener = TcpListener::bind(&cfg.listen).map_err(|source| Error::Net {
        addr: cfg.listen.clone(),
        what: "cannot listen (is the port in use, or the address not local?)",
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Net {
        addr: cfg.listen.clone(),
        what: "cannot read the bound address",
        source,
    })?;
    let started_at = Instant::now();

    // The job's rows have the key columns whatever the format: a connection whose format lacks
    // one is refused. Combined has every column.
    let job_format = cfg.parse.format.unwrap_or(LogFormat::Combined);
    let opts = parse_options(&cfg.parse, job_format, &cfg.job.keys)?;
    let n = if cfg.once { 1 } else { cfg.max_connections };
    let spec = job_builder(&cfg.job, n)
        .idle_timeout(cfg.idle_timeout)
        .build()?;
    let mut started = Started::start_live(&cfg.job, &spec, &opts)?;
    crate::metrics::watch_job(&started.job, &cfg.job, |k| format!("conn-{k}"));
    let (reports_tx, reports) = crossbeam_channel::unbounded();
    let shared = Shared {
        cfg,
        say,
        job_schema: weir_io::parse::LineParser::new(opts).schema(),
        free: crossbeam_channel::bounded(n),
        open: Mutex::new(HashMap::new()),
        closing: AtomicBool::new(false),
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        lines: AtomicU64::new(0),
        reports: reports_tx,
    };
    let mut fatal: Option<Error> = None;
    for mut input in started.job.take_inputs() {
        // A free input holds nothing back.
        if let Err(e) = input.idle() {
            fatal.get_or_insert(e.into());
        }
        shared.free.0.send(input).expect("room for every input");
    }
    on_listening(local);

    let mut tally = Tally::default();
    let never = crossbeam_channel::never();
    let stop_woken = cfg.stop.as_ref().map_or(&never, Stop::woken);
    std::thread::scope(|s| {
        let acceptor = s.spawn(|| accept_loop(s, &listener, &shared));
        // Serve until stopped, until the one connection ends (`once`), or until the job fails.
        let mut done = 0u64;
        while fatal.is_none() {
            crossbeam_channel::select! {
                recv(reports) -> r => {
                    let r = r.expect("the server holds a sender");
                    done += 1;
                    if let Some(e) = tally.record(r, &shared.open) {
                        fatal = Some(e);
                    }
                    if cfg.once {
                        break;
                    }
                },
                recv(stop_woken) -> _ => break,
            }
        }
        // Stop accepting, then end the open connections and wait for their reports.
        if let Some(stop) = &cfg.stop {
            stop.set_dropping(format!(
                "the results of the windows still open ({} lines read)",
                thousands(shared.lines.load(Ordering::Relaxed))
            ));
        }
        shared.closing.store(true, Ordering::SeqCst);
        wake(local);
        let _ = acceptor.join();
        for conn in shared.open.lock().expect("open lock").values() {
            let _ = conn.shutdown(Shutdown::Read);
        }
        while done < shared.accepted.load(Ordering::SeqCst) {
            let r = reports.recv().expect("the server holds a sender");
            done += 1;
            if let Some(e) = tally.record(r, &shared.open) {
                fatal.get_or_insert(e);
            }
        }
    });

    // Every input is back in the pool: end them all, so that every window fires.
    let inputs: Vec<Input> = shared.free.1.try_iter().collect();
    let finished = match fatal {
        Some(e) => Err(e),
        None => inputs
            .into_iter()
            .try_for_each(Input::finish)
            .map_err(Error::from),
    };
    let job = Error::settle(finished.err(), started.join())?;
    let mut counts = tally.counts;
    counts.accepted = shared.accepted.load(Ordering::SeqCst);
    counts.refused = shared.refused.load(Ordering::SeqCst);
    // The format most connections sent (ties: combined, common, simple).
    let format = [LogFormat::Combined, LogFormat::Common, LogFormat::Simple]
        .into_iter()
        .filter(|f| tally.formats.contains_key(f.name()))
        .max_by_key(|f| (tally.formats[f.name()], std::cmp::Reverse(*f as u8)))
        .unwrap_or(job_format);
    Ok(ServeSummary {
        run: RunSummary {
            format,
            parse: tally.parse,
            job,
            elapsed: started_at.elapsed(),
            input_bytes: None,
        },
        connections: counts,
        formats: tally.formats,
        malformed_examples: tally.examples,
        stopped_by: cfg
            .stop
            .as_ref()
            .filter(|s| s.is_requested())
            .map(Stop::cause),
    })
}

/// Accepts connections until the server is closing: each takes a free input and gets a thread
/// of its own; one beyond the cap is told so and closed. With `once`, accepts one only.
fn accept_loop<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    listener: &TcpListener,
    shared: &'scope Shared<'scope>,
) {
    let mut next_id = 0u64;
    loop {
        let (conn, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                if shared.closing.load(Ordering::SeqCst) {
                    return;
                }
                // Out of file descriptors, a connection reset before it was accepted: the
                // listener itself is fine.
                (shared.say)(&format!("cannot accept a connection: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(input) = shared.free.1.try_recv() else {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            crate::metrics::error(
                "connection_refused",
                &format!("{peer}: too many connections"),
            );
            let cap = shared.free.0.capacity().unwrap_or(0);
            (shared.say)(&format!(
                "{peer}: refused: too many connections (the limit is {cap}, --max-connections)"
            ));
            tell(
                &conn,
                &format!("weir: too many connections (the limit is {cap}); try again later"),
            );
            continue;
        };
        let id = next_id;
        next_id += 1;
        if let Ok(clone) = conn.try_clone() {
            shared.open.lock().expect("open lock").insert(id, clone);
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        (shared.say)(&format!("connection from {peer}"));
        s.spawn(move || {
            let report = serve_connection(shared, id, conn, peer, input);
            let _ = shared.reports.send(report);
        });
        if shared.cfg.once {
            return;
        }
    }
}

/// Reads one connection into `input` until it closes, times out or sends bad input; gives the
/// input back to the pool, idle.
fn serve_connection(
    shared: &Shared<'_>,
    id: u64,
    conn: TcpStream,
    peer: SocketAddr,
    mut input: Input,
) -> Report {
    let mut report = Report {
        id,
        peer,
        outcome: Outcome::Closed,
        format: None,
        stats: ParseStats::default(),
        fatal: None,
    };
    if let Err(e) = input.active() {
        report.fatal = Some(e.into());
        return report;
    }
    let _ = conn.set_read_timeout(Some(shared.cfg.read_timeout));
    let lines = LineReader::new(&conn, peer.to_string(), 1 << 16)
        .with_max_line(shared.cfg.parse.max_line_bytes);
    let mut split = SocketSplit::new(lines, &shared.closing, &shared.lines);
    let read = read_connection(shared, &mut split, &mut input, &mut report);
    let closing = shared.closing.load(Ordering::SeqCst);
    let why = match read {
        Ok(()) if split.was_cut() => {
            "closed by the server's stop (an unfinished last line dropped)".to_string()
        }
        Ok(()) if closing => "closed by the server's stop".to_string(),
        Ok(()) => "closed by the client".to_string(),
        Err(Failure::Job(e)) => {
            report.fatal = Some(e);
            "closed: the job has stopped".to_string()
        }
        Err(Failure::TimedOut) => {
            report.outcome = Outcome::TimedOut;
            format!(
                "closed: nothing received for {:?} (--read-timeout)",
                shared.cfg.read_timeout
            )
        }
        Err(Failure::Read(e)) => {
            report.outcome = Outcome::Failed;
            format!("closed: {e}")
        }
        Err(Failure::BadInput(why)) => {
            report.outcome = Outcome::BadInput;
            tell(&conn, &format!("weir: {why}; closing the connection"));
            format!("closed for bad input: {why}")
        }
    };
    let _ = conn.shutdown(Shutdown::Both);
    if report.fatal.is_none() {
        if let Err(e) = input.idle() {
            report.fatal = Some(e.into());
        }
    }
    // The pool has room for every input.
    let _ = shared.free.0.send(input);
    if let Some(kind) = report.outcome.error_kind() {
        crate::metrics::error(kind, &format!("{peer}: {why}"));
    }
    // Said once the input is free again: a client that sees it can connect and be served.
    let format = report
        .format
        .map_or(String::new(), |f| format!(" ({})", f.name()));
    (shared.say)(&format!(
        "{peer}: {} lines{format}, {why}",
        thousands(report.stats.lines)
    ));
    report
}

/// Why a connection's reading stopped early.
enum Failure {
    /// Not a known format, a format without a key column, a malformed line with `strict`: the
    /// client is told why.
    BadInput(String),
    /// Nothing came for the read timeout.
    TimedOut,
    /// The socket failed (a reset, say).
    Read(std::io::Error),
    /// The job failed: the server must stop.
    Job(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(weir_io::Error::Io { source, .. }) => match source.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Failure::TimedOut,
                _ => Failure::Read(source),
            },
            Error::Io(malformed @ weir_io::Error::Malformed { .. }) => {
                Failure::BadInput(malformed.to_string())
            }
            e => Failure::Job(e),
        }
    }
}

impl From<weir_io::Error> for Failure {
    fn from(e: weir_io::Error) -> Self {
        Error::from(e).into()
    }
}

/// Reads a connection to its end into `input`, parsing its lines in the format of its first
/// lines (or the configured one). The rows read before a failure are pushed all the same (a
/// client that goes away loses nothing it sent whole); the counters go into `report`.
fn read_connection(
    shared: &Shared<'_>,
    split: &mut SocketSplit<'_>,
    input: &mut Input,
    report: &mut Report,
) -> Result<(), Failure> {
    let cfg = shared.cfg;
    let Some(first) = split.first()? else {
        return Ok(()); // closed before a line
    };
    let f = match cfg.parse.format.or_else(|| detect_format(first)) {
        Some(f) => f,
        None => {
            let first = first.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(&first[..first.len().min(80)]);
            return Err(Failure::BadInput(format!(
                "not an access log in a known format (combined, common, simple): its first line \
                 is {first:?}"
            )));
        }
    };
    let opts = parse_options(&cfg.parse, f, &cfg.job.keys)
        .map_err(|e| Failure::BadInput(e.to_string()))?;
    let parser = LineParser::new(opts);
    if parser.schema() != shared.job_schema {
        return Err(Failure::BadInput(format!(
            "the {} format does not have the columns of --key {}",
            f.name(),
            cfg.job.keys.join(",")
        )));
    }
    report.format = Some(f);
    let meter = crate::metrics::meter(input.index());
    let mut driver = Driver::new(parser).with_meter(meter.driver());
    let read = driver.run(split, input).map(drop);
    // After a failure, rows still buffered go in before the input is handed back.
    let flushed = match &read {
        Ok(()) => Ok(()),
        Err(_) => driver.flush(input),
    };
    report.stats = driver.into_stats();
    if let Err(e) = flushed {
        report.fatal.get_or_insert(e.into());
    }
    Ok(read?)
}

/// Writes a one-line reason to a client (best effort) before the connection is closed.
fn tell(conn: &TcpStream, line: &str) {
    let mut conn = conn;
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = writeln!(conn, "{line}");
    let _ = conn.shutdown(Shutdown::Write);
}

/// Wakes the acceptor blocked in `accept` by connecting to the listener (on loopback when it
/// listens on every address); it then sees that the server is closing.
fn wake(local: SocketAddr) {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let _ = TcpStream::connect_timeout(&SocketAddr::new(ip, local.port()), Duration::from_secs(5));
}
