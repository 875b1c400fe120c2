//! Helpers shared by the end-to-end tests: running the built `weir` binary, and an independent
//! reference for per-window counts, written from the format's definition with `str` methods and
//! no code from weir.

#![allow(dead_code)]

pub mod kafka;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `(window_start_ms, client) → count`.
pub type Counts = BTreeMap<(i64, String), u64>;

/// The `weir` binary built for these tests.
pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// How long any one command of a test may take before it counts as stuck.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Runs `weir` with `args`; panics with its stderr unless it succeeds within [`COMMAND_LIMIT`].
pub fn run_ok(args: &[&str]) -> Output {
    let out = output(weir().args(args), &format!("weir {args:?}"));
    assert!(
        out.status.success(),
        "weir {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `weir` with `args`, stdout discarded and stderr piped (for [`wait_at_most`] or
/// `wait_with_output`).
pub fn spawn(args: &[&str]) -> Child {
    weir()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir")
}

/// Runs `cmd` to its end, collecting its output, within [`COMMAND_LIMIT`].
pub fn output(cmd: &mut Command, what: &str) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_at_most(child, COMMAND_LIMIT, what)
}

/// Waits for `child` at most `limit` while collecting its piped stdout and stderr; past the
/// limit, kills it and panics with what it wrote, so that a stuck run fails the test with its
/// story instead of hanging CI.
pub fn wait_at_most(mut child: Child, limit: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().expect("kill");
            child.wait().expect("wait");
            panic!(
                "{what}: still running after {limit:?}; killed. Its stderr:\n{}",
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `shared/data/real/NAME` beside the repository.
pub fn real(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/real")
        .join(name)
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn clf_time(s: &str) -> Option<i64> {
    // dd/Mon/yyyy:HH:MM:SS +hhmm
    let (date, rest) = s.split_once(':')?;
    let mut d = date.split('/');
    let day: i64 = d.next()?.parse().ok()?;
    let name = d.next()?;
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == name)? as i64
        + 1;
    let year: i64 = d.next()?.parse().ok()?;
    let (clock, zone) = rest.split_once(' ')?;
    let hms: Vec<i64> = clock
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else { return None };
    let zone = zone.strip_suffix(']')?;
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh: i64 = zone.get(1..3)?.parse().ok()?;
    let zm: i64 = zone.get(3..5)?.parse().ok()?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let secs = days_from_civil(year, mon, day) * 86_400 + h * 3600 + m * 60 + sec
        - sign * (zh * 3600 + zm * 60);
    Some(secs * 1000)
}

/// One parsed line of the reference: `Some((ts_ms, client))`, `None` when malformed.
pub fn reference_line(line: &str, simple_day: i64) -> Option<(i64, String)> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (client, rest) = line.split_once(' ')?;
    if client.is_empty() {
        // The simple format starts with the time; CLF with the client.
        return None;
    }
    if client.len() == 8 && client.as_bytes()[2] == b':' && !rest.contains('[') {
        let hms: Vec<i64> = client
            .split(':')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [h, m, s] = hms[..] else { return None };
        let ip = rest.split(' ').next()?;
        if ip.is_empty() || h > 23 || m > 59 || s > 60 {
            return None;
        }
        return Some((
            (simple_day * 86_400 + h * 3600 + m * 60 + s) * 1000,
            ip.to_string(),
        ));
    }
    let open = rest.find('[')?;
    let ts = clf_time(rest.get(open + 1..open + 28)?)?;
    Some((ts, client.to_string()))
}

/// Reference counts of a log: every well-formed line counted (no lateness) in windows of
/// `window_ms`, plus the number of malformed lines.
pub fn reference(log: &[u8], window_ms: i64, simple_day: i64) -> (Counts, u64) {
    let text = String::from_utf8_lossy(log);
    let mut counts = Counts::new();
    let mut malformed = 0;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    for line in body.split('\n') {
        match reference_line(line, simple_day) {
            Some((ts, client)) => {
                *counts
                    .entry((ts.div_euclid(window_ms) * window_ms, client))
                    .or_default() += 1
            }
            None => malformed += 1,
        }
    }
    (counts, malformed)
}

/// Reference counts of a log read in file order with a watermark that follows it row by row:
/// the largest timestamp so far minus `bound_ms`. A row whose window ended at or before the
/// watermark before it is late. Returns (counts of on-time rows, late rows, malformed lines).
pub fn reference_in_order(
    log: &[u8],
    window_ms: i64,
    bound_ms: i64,
    simple_day: i64,
) -> (Counts, u64, u64) {
    let text = String::from_utf8_lossy(log);
    let (mut counts, mut late, mut malformed) = (Counts::new(), 0, 0);
    let mut max_ts = i64::MIN;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    for line in body.split('\n') {
        let Some((ts, client)) = reference_line(line, simple_day) else {
            malformed += 1;
            continue;
        };
        let start = ts.div_euclid(window_ms) * window_ms;
        if start + window_ms <= max_ts.saturating_sub(bound_ms) {
            late += 1;
        } else {
            *counts.entry((start, client)).or_default() += 1;
        }
        max_ts = max_ts.max(ts);
    }
    (counts, late, malformed)
}

/// Parses weir's CSV output (`window_start,window_end,client,count`), checking each window is
/// `window_ms` long and no (window, client) appears twice.
pub fn parse_csv(csv: &[u8], window_ms: i64) -> Counts {
    let text = std::str::from_utf8(csv).expect("utf-8 csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("window_start,window_end,client,count"));
    let mut counts = Counts::new();
    for l in lines {
        // The client may be quoted; the other fields are numbers.
        let (start, rest) = l.split_once(',').unwrap();
        let (end, rest) = rest.split_once(',').unwrap();
        let (client, count) = rest.rsplit_once(',').unwrap();
        let client = client.trim_matches('"').replace("\"\"", "\"");
        let start: i64 = start.parse().unwrap();
        assert_eq!(end.parse::<i64>().unwrap() - start, window_ms, "{l}");
        let prev = counts.insert((start, client), count.parse().unwrap());
        assert!(prev.is_none(), "duplicate row {l}");
    }
    counts
}

/// The shipped `NAME.expected.csv` (`window_start,client,count`, no header).
pub fn expected_csv(name: &str) -> Counts {
    let text = std::fs::read_to_string(real(name)).unwrap();
    text.lines()
        .map(|l| {
            let (start, rest) = l.split_once(',').unwrap();
            let (client, count) = rest.rsplit_once(',').unwrap();
            (
                (start.parse().unwrap(), client.to_string()),
                count.parse().unwrap(),
            )
        })
        .collect()
}

/// Counts per window start in delivery order must never go back in time.
pub fn assert_windows_ascending(csv: &[u8]) {
    let starts: Vec<i64> = std::str::from_utf8(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "windows out of order"
    );
}

/// Asserts two count tables are equal, showing a few differences rather than both tables.
#[track_caller]
pub fn assert_counts_eq(got: &Counts, expected: &Counts, ctx: &str) {
    if got == expected {
        return;
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, v)| expected.get(*k) != Some(v))
        .take(5)
        .collect();
    panic!(
        "{ctx}: {} rows vs {} expected ({} vs {} counted); expected but not got: {missing:?}; got but not expected: {extra:?}",
        got.len(),
        expected.len(),
        got.values().sum::<u64>(),
        expected.values().sum::<u64>()
    );
}

/// A pipe of a running process, read line by line on a thread of its own as lines come.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    /// Everything read so far.
    pub text: String,
}

impl Lines {
    /// Starts reading `pipe`.
    pub fn of(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self {
            rx,
            text: String::new(),
        }
    }

    /// Reads until a line for which `pred` holds (`Ok` with it), the pipe's end or `deadline`.
    pub fn until(
        &mut self,
        deadline: Instant,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
        loop {
            let line = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))?;
            self.text.push_str(&line);
            self.text.push('\n');
            if pred(&line) {
                return Ok(line);
            }
        }
    }
}

/// A running `weir` whose stderr and stdout are read line by line as they come, so a test can
/// act at a moment the run announces (a commit window, a connection's end) instead of after a
/// sleep. Its stdin is a pipe ([`Watched::stdin`]).
pub struct Watched {
    /// The process.
    pub child: Child,
    err: Lines,
    out: Lines,
}

impl Watched {
    /// Starts `weir` with `args`.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = weir()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let err = Lines::of(child.stderr.take().unwrap());
        let out = Lines::of(child.stdout.take().unwrap());
        Self { child, err, out }
    }

    /// The run's stdin (once).
    pub fn stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().unwrap()
    }

    /// Its stderr so far.
    pub fn text(&self) -> &str {
        &self.err.text
    }

    /// Reads stderr until a line for which `pred` holds (true) or the end of stderr, i.e. of
    /// the run (false). Kills the run and panics if it says nothing for [`COMMAND_LIMIT`].
    pub fn until(&mut self, pred: impl FnMut(&str) -> bool) -> bool {
        use std::sync::mpsc::RecvTimeoutError;
        match self.err.until(Instant::now() + COMMAND_LIMIT, pred) {
            Ok(_) => true,
            Err(RecvTimeoutError::Disconnected) => false,
            Err(RecvTimeoutError::Timeout) => self.fail("the run said nothing"),
        }
    }

    /// Reads stderr until a line for which `pred` holds and returns it; kills the run and panics,
    /// naming `what`, if it ends first or nothing comes within `limit`.
    pub fn until_err(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl FnMut(&str) -> bool,
    ) -> String {
        match self.err.until(Instant::now() + limit, pred) {
            Ok(line) => line,
            Err(e) => self.fail(&format!("waiting for {what} on stderr: {e:?}")),
        }
    }

    /// As [`Watched::until_err`], on stdout.
    pub fn until_out(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl FnMut(&str) -> bool,
    ) -> String {
        match self.out.until(Instant::now() + limit, pred) {
            Ok(line) => line,
            Err(e) => self.fail(&format!("waiting for {what} on stdout: {e:?}")),
        }
    }

    /// Forgets what the run has said so far: the next [`Watched::until_err`] sees only what it
    /// says from now on.
    pub fn drain(&mut self) {
        let _ = self.err.until(Instant::now(), |_| false);
    }

    /// Sends `sig` (`-INT`, `-STOP`, …) to the run.
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// SIGKILLs the run and panics with `why` and its stderr.
    pub fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self
            .err
            .until(Instant::now() + Duration::from_secs(1), |_| false);
        panic!("{why}; weir's stderr:\n{}", self.err.text)
    }

    /// SIGKILLs the run; returns its stderr.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let _ = self.err.until(Instant::now() + COMMAND_LIMIT, |_| false);
        self.err.text
    }

    /// Waits for the run's end (killing it and panicking past `limit`); returns its exit status
    /// and its whole stderr and stdout.
    pub fn finish(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("still running after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for pipe in [&mut self.err, &mut self.out] {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                pipe.until(Instant::now() + COMMAND_LIMIT, |_| false)
            {
                panic!("a pipe of the ended run is still open");
            }
        }
        (status, self.err.text, self.out.text)
    }
}

/// Sends `sig` (`-STOP`, `-CONT`, `-KILL`, …) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The complete checkpoints of `dir` (those with a `MANIFEST`, written last), oldest first.
pub fn complete_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("MANIFEST").exists())
        .collect();
    found.sort();
    found
}

/// Waits until `dir` holds at least `n` complete checkpoints, the newest of them later than
/// `after` (true), or `child` ends (false); panics past [`COMMAND_LIMIT`]. A `MANIFEST` is the
/// last file a checkpoint writes. (Old checkpoints are deleted as new ones complete, so the
/// newest name, not the count, tells a new one.)
pub fn until_checkpoints(child: &mut Child, dir: &Path, n: usize, after: Option<&PathBuf>) -> bool {
    let deadline = Instant::now() + COMMAND_LIMIT;
    loop {
        let found = complete_checkpoints(dir);
        if found.len() >= n && found.last() > after {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} checkpoints after {after:?} in {dir:?} within {COMMAND_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
