//! Kafka helpers of the end-to-end tests: the broker's address, unique names, and this file's
//! own reader of a job's committed output: a plain `read_committed` librdkafka consumer,
//! independent of weir's code.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

pub fn broker() -> String {
    std::env::var("WEIR_KAFKA").unwrap_or_else(|_| {
        format!(
            "127.0.0.1:{}",
            std::env::var("WEIR_KAFKA_PORT").unwrap_or_else(|_| "9092".into())
        )
    })
}

pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

pub fn url(topic: &str) -> String {
    format!("kafka://{}/{topic}", broker())
}

pub fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer")
}

/// The last epoch the job of `group` committed (its progress offset), if any.
pub fn committed_epoch(group: &str) -> Option<u64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("weir-progress", 0);
    let got = consumer(group)
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match got
        .find_partition("weir-progress", 0)
        .expect("progress")
        .offset()
    {
        Offset::Offset(last) => Some(last as u64),
        _ => None,
    }
}

/// Calls `f` with every record of `topic`'s `partition` up to its current end.
pub fn read_partition(
    topic: &str,
    p: i32,
    read_committed: bool,
    f: &mut dyn FnMut(&rdkafka::message::BorrowedMessage<'_>),
) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("broker.address.family", "v4")
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .unwrap();
    let (_, high) = c
        .fetch_watermarks(topic, p, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pos = c
            .position()
            .unwrap()
            .find_partition(topic, p)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(-1);
        if pos >= high {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} partition {p} stuck at {pos} < {high}"
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => f(&m),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

/// The partition count of `topic`.
pub fn partitions(topic: &str) -> i32 {
    let c = consumer(&unique("meta"));
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0].partitions().len() as i32
}

/// How many records of `topic` a reader sees: every one written (`read_uncommitted`, those of
/// aborted transactions included) or only the committed ones.
pub fn count_records(topic: &str, read_committed: bool) -> u64 {
    let mut n = 0;
    for p in 0..partitions(topic) {
        read_partition(topic, p, read_committed, &mut |_| n += 1);
    }
    n
}

/// The committed output of `topic` as a plain `read_committed` consumer sees it: counts, and
/// the (window, client) pairs seen more than once.
pub fn read_output(topic: &str) -> (Counts, Vec<(i64, String)>) {
    let mut counts = Counts::new();
    let mut doubled = Vec::new();
    for p in 0..partitions(topic) {
        read_partition(topic, p, true, &mut |m| {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let key = (
                v["window_start"].as_i64().unwrap(),
                v["client"].as_str().unwrap().to_owned(),
            );
            assert_eq!(
                m.key(),
                Some(key.1.as_bytes()),
                "the record key is the client"
            );
            if counts
                .insert(key.clone(), v["count"].as_u64().unwrap())
                .is_some()
            {
                doubled.push(key);
            }
        });
    }
    (counts, doubled)
}

/// A job's fixture: a generated log produced into a fresh input topic, a fresh output topic, a
/// fresh job group and a checkpoint folder.
pub struct Pipeline {
    /// Holds the log and the checkpoint folder.
    pub tmp: tempfile::TempDir,
    pub log: std::path::PathBuf,
    /// Input and output topics, and the job's group.
    pub a: String,
    pub b: String,
    pub group: String,
    /// `kafka://…` URLs of `a` and `b`, and the checkpoint folder as a string.
    pub ua: String,
    pub ub: String,
    pub dir: String,
}

impl Pipeline {
    /// `lines` generated lines (500 clients at 500 lines/s, so 30,000 lines span a minute of
    /// event time) from `seed`, produced into `partitions` partitions of a new topic.
    pub fn new(name: &str, lines: &str, seed: &str, partitions: &str) -> Self {
        Self::produced(name, lines, seed, partitions, false)
    }

    /// As [`Pipeline::new`], with the input keyed by client (`weir produce --key-by-client`).
    pub fn new_keyed(name: &str, lines: &str, seed: &str, partitions: &str) -> Self {
        Self::produced(name, lines, seed, partitions, true)
    }

    fn produced(name: &str, lines: &str, seed: &str, partitions: &str, keyed: bool) -> Self {
        let tmp = tempdir();
        let log = tmp.path().join("access.log");
        run_ok(&[
            "gen",
            "--lines",
            lines,
            "--clients",
            "500",
            "--rate",
            "500",
            "--seed",
            seed,
            "-o",
            log.to_str().unwrap(),
        ]);
        let (a, b) = (
            unique(&format!("{name}-in")),
            unique(&format!("{name}-out")),
        );
        let group = unique(&format!("{name}-job"));
        let (ua, ub) = (url(&a), url(&b));
        let mut produce = vec![
            "produce",
            log.to_str().unwrap(),
            "--to",
            &ua,
            "--partitions",
            partitions,
        ];
        if keyed {
            produce.push("--key-by-client");
        }
        run_ok(&produce);
        let dir = tmp.path().join("ck").to_str().unwrap().to_owned();
        Self {
            tmp,
            log,
            a,
            b,
            group,
            ua,
            ub,
            dir,
        }
    }

    /// `weir run A → B`, bounded, 200 ms checkpoints, two workers, quiet.
    pub fn run_args(&self) -> Vec<&str> {
        vec![
            "run",
            "--from",
            &self.ua,
            "--to",
            &self.ub,
            "--checkpoint-dir",
            &self.dir,
            "--group",
            &self.group,
            "--checkpoint-interval",
            "200ms",
            "--stop-at-end",
            "--idle-timeout",
            "1h",
            "-p",
            "2",
            "-q",
        ]
    }

    /// Checks the committed output of B twice, independently: with the tests' own reader
    /// against the reference count of the log, and with `weir verify` (exit 0, clean).
    /// Returns verify's report.
    pub fn check(&self, ctx: &str) -> String {
        let (got, doubled) = read_output(&self.b);
        assert!(doubled.is_empty(), "{ctx}: doubled rows: {doubled:?}");
        let (expected, _) = reference(&std::fs::read(&self.log).unwrap(), 5_000, 0);
        assert_counts_eq(&got, &expected, ctx);

        let out = self.verify();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{ctx}: weir verify: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains("result:     clean"), "{ctx}: {report}");
        report
    }

    /// Runs the job with slowed reads and a pause in each commit window, and calls `disrupt`
    /// (`what` names it) when the run says it entered its `nth` commit window of a transaction
    /// holding records: mid-transaction, records sent, commit not yet sent. The run rides it out
    /// or stops with an error; then it is run again, from its last commit, until it completes
    /// (five runs at most). Then `check`.
    pub fn survive(&self, what: &str, nth: usize, disrupt: impl FnOnce()) {
        let mut args = self.run_args();
        args.retain(|a| *a != "-q");
        args.extend(["--test-read-delay", "40ms", "--test-commit-delay", "20ms"]);
        let mut run = Watched::spawn(&args);
        assert!(
            run.until(commit_windows_with_records(nth)),
            "the run ended before its commit window {nth}: {}",
            run.text()
        );
        disrupt();
        let started = Instant::now();
        let (mut status, mut err, _) = run.finish(COMMAND_LIMIT);
        let mut runs = 1;
        while !status.success() {
            eprintln!("run {runs} failed: {err}");
            runs += 1;
            assert!(runs <= 5, "no successful run after the {what}");
            let res = output(weir().args(&args), &format!("run {runs}"));
            status = res.status;
            err = String::from_utf8_lossy(&res.stderr).into_owned();
        }
        eprintln!(
            "completed {:.1} s after the {what} in {runs} run(s): {err}",
            started.elapsed().as_secs_f64(),
        );
        self.check(&format!("after a broker {what}"));
    }

    /// `weir verify --input A --output B --group G`.
    pub fn verify(&self) -> Output {
        output(
            weir().args([
                "verify",
                "--input",
                &self.ua,
                "--output",
                &self.ub,
                "--group",
                &self.group,
            ]),
            "weir verify",
        )
    }
}

/// A predicate over a run's stderr lines (with `--test-commit-delay`) that holds at the `nth`
/// announced commit window whose transaction holds records.
pub fn commit_windows_with_records(nth: usize) -> impl FnMut(&str) -> bool {
    let mut seen = 0;
    move |line| {
        if line.contains("commit window") && !line.contains("(0 records") {
            seen += 1;
        }
        seen == nth
    }
}

/// A broker of a test's own, on 127.0.0.1:`port`, started by `scripts/kafka.sh` (with
/// `WEIR_KAFKA_PORT`) for tests that freeze, kill or restart it, so that the shared broker and
/// the other tests are left alone. Every helper of this file talks to it once it is started
/// (one such test per binary: nothing else reads the variables meanwhile); it is stopped when
/// dropped, however the test ends.
pub struct OwnBroker {
    port: u16,
}

impl OwnBroker {
    /// Starts a fresh broker on `port` (its controller takes `port + 1`).
    ///
    /// It does so whatever `WEIR_KAFKA` says: these tests freeze and kill their broker, which
    /// they must never do to one they did not start, and an external broker is one they cannot
    /// control. So they neither use it nor skip: they need what `scripts/kafka.sh start` needs
    /// (Java 17+ and Maven, or its cached jars), and fail saying so when it is missing.
    pub fn start(port: u16) -> Self {
        // Before any client exists: nothing else reads the environment meanwhile.
        std::env::remove_var("WEIR_KAFKA");
        std::env::set_var("WEIR_KAFKA_PORT", port.to_string());
        let b = Self { port };
        let out = b.run("start");
        assert!(
            out.status.success(),
            "scripts/kafka.sh start (port {port}) failed. This test starts a broker of its own, \
             even when WEIR_KAFKA names one, as it freezes or kills it; that needs Java 17+ and \
             Maven (see scripts/kafka.sh). Its stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        b
    }

    /// `scripts/kafka.sh CMD` for this broker, within [`COMMAND_LIMIT`].
    fn run(&self, cmd: &str) -> std::process::Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
        output(
            std::process::Command::new("bash")
                .arg(script)
                .arg(cmd)
                .env("WEIR_KAFKA_PORT", self.port.to_string())
                .env_remove("WEIR_KAFKA"),
            &format!("scripts/kafka.sh {cmd} (port {})", self.port),
        )
    }

    /// `scripts/kafka.sh CMD` for this broker; panics with its stderr if it fails.
    pub fn sh(&self, cmd: &str) -> std::process::Output {
        let out = self.run(cmd);
        assert!(
            out.status.success(),
            "scripts/kafka.sh {cmd} (port {}): {}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The broker's process id, from `scripts/kafka.sh status`.
    pub fn pid(&self) -> u32 {
        let out = String::from_utf8(self.sh("status").stdout).unwrap();
        let pid = out.split("(pid ").nth(1).and_then(|s| s.split(')').next());
        pid.and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {out:?}"))
    }

    /// Sends `sig` (`-STOP`, `-CONT`, `-KILL`) to the broker's process.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }
}

impl Drop for OwnBroker {
    /// Stops the broker. A failure is said, not raised: this runs while a failing test unwinds
    /// too, where a second panic would abort and hide the first.
    fn drop(&mut self) {
        let out = self.run("stop");
        if !out.status.success() {
            eprintln!(
                "scripts/kafka.sh stop (port {}) failed: {}",
                self.port,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Whether every partition of `topic` is stable: no transaction holds records open in it (its
/// last stable offset, which a `read_committed` consumer's end-offset query returns, has caught
/// up with its high watermark).
pub fn no_open_transaction(topic: &str) -> bool {
    let committed = consumer(&unique("lso"));
    let uncommitted: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("broker.address.family", "v4")
        .set("group.id", unique("hw"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    (0..partitions(topic)).all(|p| {
        let t = Duration::from_secs(10);
        let (_, stable) = committed.fetch_watermarks(topic, p, t).unwrap();
        let (_, high) = uncommitted.fetch_watermarks(topic, p, t).unwrap();
        stable == high
    })
}
