//! Kafka in, Kafka out, exactly once, against the Apache Kafka broker started by
//! `scripts/kafka.sh` (or `WEIR_KAFKA`).
//!
//! The committed output of topic B is read by a plain `read_committed` consumer (tests/common/
//! kafka.rs, not weir's code), compared with an independent reference count of the log
//! (tests/common), and audited by `weir verify`. Any (window, client) seen twice is a duplicate
//! and fails.

mod common;

use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;

#[test]
fn bounded_run_commits_exactly_the_reference_counts() {
    let p = Pipeline::new("e2e", "30000", "3", "3");
    run_ok(&p.run_args());
    p.check("bounded run");

    // Running it again finds the job finished and writes nothing more.
    let mut again = p.run_args();
    again.retain(|a| *a != "-q");
    let res = run_ok(&again);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("finished"), "{err}");
    p.check("after a second run");
}

/// A bounded run ends with barriers still being requested: once every partition is at its end,
/// the readers finish one after another (a test hook staggers them by 100 ms) while barriers
/// come every 5 ms, so a barrier is injected by some readers after others have finished. The
/// run must commit that epoch with the finished readers' final positions and complete (it used
/// to wait forever for their positions).
#[test]
fn a_bounded_run_ends_while_barriers_are_requested() {
    let p = Pipeline::new("end", "20000", "9", "4");
    let mut args = p.run_args();
    let interval = args
        .iter()
        .position(|a| *a == "--checkpoint-interval")
        .unwrap();
    args[interval + 1] = "5ms";
    args.extend(["--test-finish-stagger", "100ms"]);
    let res = wait_at_most(spawn(&args), Duration::from_secs(60), "the bounded run");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    p.check("staggered end");
}

/// A job resumes each partition at the offset its checkpoint holds, which is usually inside a
/// record batch. 3,000 records sent within one linger go to the broker as one batch (or a few);
/// a reader positioned anywhere in them, including inside the last batch, must read exactly
/// the records from there to the end.
#[test]
fn a_reader_positioned_inside_a_record_batch_reads_on_to_the_end() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use weir_io::kafka::reader::PartitionReader;

    const N: i64 = 3000;
    let topic = unique("batch");
    let url: weir_io::kafka::KafkaUrl = self::url(&topic).parse().unwrap();
    weir_io::kafka::ensure_topic(&url, 1).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("linger.ms", "1000")
        .create()
        .unwrap();
    for i in 0..N {
        let line = format!("line {i}");
        producer
            .send(BaseRecord::<(), _>::to(&topic).payload(&line).partition(0))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    for start in [0, 1, N / 2, N - 2, N - 1] {
        let mut reader = PartitionReader::open(&url, 0, Some(start), "batch-test").unwrap();
        assert_eq!(reader.end_offset().unwrap(), N);
        let (mut buf, mut lines) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        while reader.position() < N {
            assert!(
                Instant::now() < deadline,
                "from offset {start}: still at offset {} of {N} after 30 s",
                reader.position()
            );
            buf.clear();
            let run = reader
                .read(&mut buf, 1 << 16, Duration::from_millis(50))
                .unwrap();
            for (i, line) in buf
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                lines.push((
                    run.first + i as i64,
                    String::from_utf8_lossy(line).into_owned(),
                ));
            }
        }
        let want: Vec<(i64, String)> = (start..N).map(|i| (i, format!("line {i}"))).collect();
        assert_eq!(lines, want, "from offset {start}");
    }
}

/// A second run with the job's transactional id takes it over (as when a run thought dead on
/// another machine comes back): its `init_transactions` fences the first run, then it refuses to
/// go on, having no checkpoint of the job in its own folder. The fenced run must stop, at its
/// next transactional call, with an error that says it was fenced and names the transactional
/// id (not a timeout), and running it again from its folder must complete the job with nothing
/// lost or doubled.
#[test]
fn a_fenced_run_stops_and_the_output_stays_exactly_once() {
    let p = Pipeline::new("fence", "60000", "11", "3");
    let mut args = p.run_args();
    args.retain(|a| *a != "-q");
    args.extend(["--test-read-delay", "40ms"]);
    let mut first = spawn(&args);
    // The event: the job's progress offset is committed on the broker (the run prints no line
    // for a commit without `--test-commit-delay`, which would change what is tested here).
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_epoch(&p.group).is_none() {
        if first.try_wait().unwrap().is_some() {
            let res = wait_at_most(first, COMMAND_LIMIT, "the first run");
            panic!(
                "the run ended before its first commit: {}",
                String::from_utf8_lossy(&res.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no commit within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        first.try_wait().unwrap().is_none(),
        "the run ended before the takeover"
    );

    let other = tempdir();
    let mut second = args.clone();
    let dir = second
        .iter()
        .position(|a| *a == "--checkpoint-dir")
        .unwrap();
    second[dir + 1] = other.path().to_str().unwrap();
    let usurper = output(weir().args(&second), "the second run");
    let said = String::from_utf8_lossy(&usurper.stderr);
    assert_eq!(usurper.status.code(), Some(2), "{said}");
    assert!(said.contains("checkpoints are in another folder"), "{said}");

    let fenced = wait_at_most(first, Duration::from_secs(120), "the fenced run");
    let said = String::from_utf8_lossy(&fenced.stderr);
    assert!(!fenced.status.success(), "the fenced run went on: {said}");
    assert!(
        said.contains("fenced") && said.contains(&format!("{:?}", p.group)),
        "the fenced run did not say it was fenced, naming the transactional id: {said}"
    );
    eprintln!(
        "the fenced run said: {}",
        said.trim_end().lines().last().unwrap()
    );

    let res = wait_at_most(
        spawn(&p.run_args()),
        COMMAND_LIMIT,
        "the run after the takeover",
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    p.check("after a takeover");
}

/// `weir run` is killed with SIGKILL at seeded random moments: every fourth time inside a
/// commit window (its checkpoint durable, its transaction holding records but not committed),
/// every fourth time at a moment after its first commit, the others anywhere; and restarted
/// each time. A plain `read_committed` consumer must then read exactly the
/// reference counts, and the topic must hold records that it did not show: those of the
/// transactions the kills left open, which the next run's `init_transactions` aborted.
#[test]
fn killed_at_random_moments_and_restarted_loses_and_doubles_nothing() {
    let kills: usize = std::env::var("WEIR_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let p = Pipeline::new("crash", "60000", "5", "4");
    let mut args = p.run_args();
    args.retain(|a| *a != "-q");
    // Slow reads so a run lasts long enough to be killed many times; a pause in the commit
    // window (checkpoint durable, transaction not yet committed) so that kills can land there:
    // every fourth kill is aimed at one, the others fall at seeded random moments.
    args.extend(["--test-read-delay", "60ms", "--test-commit-delay", "60ms"]);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let (mut killed, mut resumed, mut in_commit_window) = (0, 0, 0);
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs < kills * 10 + 50, "no progress after {runs} runs");
        let mut run = Watched::spawn(&args);
        if killed < kills {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let in_time = match killed % 4 {
                // Inside the first, second or third commit window of a transaction with
                // records (so there are aborted records to see).
                3 => run.until(commit_windows_with_records(1 + (seed >> 40) as usize % 3)),
                // At a seeded moment up to a second after the run's first commit, so that the
                // job surely has committed epochs to resume from however slow the machine is.
                1 => {
                    run.until(|l| l.contains("committed epoch")) && {
                        std::thread::sleep(Duration::from_millis((seed >> 33) % 1000));
                        run.child.try_wait().unwrap().is_none()
                    }
                }
                // Anywhere: a run needs about a second to connect and commit its first epoch;
                // kill at a seeded moment from before that to a few epochs later (the moment is
                // the point, not a wait for something).
                _ => {
                    std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 3000));
                    run.child.try_wait().unwrap().is_none()
                }
            };
            if in_time {
                let err = run.kill(); // SIGKILL
                killed += 1;
                resumed += usize::from(err.contains("resuming from epoch"));
                in_commit_window += usize::from(
                    err.lines()
                        .last()
                        .is_some_and(|l| l.contains("commit window")),
                );
                continue;
            }
        }
        // Enough kills, or the run ended before the kill: the input is consumed.
        let (status, err, _) = run.finish(COMMAND_LIMIT);
        assert!(status.success(), "run {runs}: {err}");
        break;
    }
    assert!(
        killed >= kills.min(5),
        "only {killed} kills landed before the input was consumed"
    );
    assert!(
        resumed * 2 >= killed,
        "only {resumed} of {killed} killed runs had resumed from a checkpoint"
    );
    assert!(in_commit_window > 0, "no kill landed in a commit window");
    eprintln!("{killed} kills ({resumed} in resumed runs, {in_commit_window} in a commit window)");
    p.check(&format!("after {killed} kills"));
    let (written, committed) = (count_records(&p.b, false), count_records(&p.b, true));
    assert!(
        written > committed,
        "the kills in commit windows left no aborted record: {written} records written, \
         {committed} committed"
    );
    eprintln!(
        "{} records of aborted transactions in the topic, none of them read",
        written - committed
    );
}

/// A run paused (SIGSTOP) inside a transaction that holds records, for longer than its
/// `--transaction-timeout`: the broker aborts the transaction (the test waits for that: the
/// output's last stable offset catches up with its high watermark). On SIGCONT the run must
/// notice and stop with an error that says what happened, or recover; run again until it
/// completes, the output is exactly the reference.
#[test]
fn a_run_paused_past_its_transaction_timeout_leaves_the_output_exactly_once() {
    let p = Pipeline::new("paused", "40000", "13", "3");
    let mut args = p.run_args();
    args.retain(|a| *a != "-q");
    args.extend([
        "--test-read-delay",
        "40ms",
        "--test-commit-delay",
        "20ms",
        "--transaction-timeout",
        "3s",
    ]);
    let mut run = Watched::spawn(&args);
    assert!(
        run.until(commit_windows_with_records(2)),
        "the run ended before its second commit window: {}",
        run.text()
    );
    let pid = run.child.id();
    signal(pid, "-STOP");
    let paused = Instant::now();
    assert!(
        !no_open_transaction(&p.b),
        "the paused run's transaction is not open"
    );
    while !no_open_transaction(&p.b) {
        if paused.elapsed() > Duration::from_secs(60) {
            signal(pid, "-CONT");
            panic!("the broker did not abort the paused run's transaction within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the broker aborted the transaction {:.1} s into the pause",
        paused.elapsed().as_secs_f64()
    );
    signal(pid, "-CONT");
    let (status, said, _) = run.finish(COMMAND_LIMIT);
    eprintln!("the paused run ended with {status}: {said}");
    if !status.success() {
        let last = said.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains("past its transaction timeout of 3.0 s")
                && last.contains(&format!("{:?}", p.group)),
            "the paused run stopped without saying its transaction timed out: {said}"
        );
        run_ok(&p.run_args());
    }
    p.check("after a pause past the transaction timeout");
}

#[test]
fn a_dead_broker_is_named_within_seconds() {
    let tmp = tempdir();
    let started = Instant::now();
    let out = output(
        weir().args([
            "run",
            "--from",
            "kafka://127.0.0.1:1/in",
            "--to",
            "kafka://127.0.0.1:1/out",
            "--checkpoint-dir",
            tmp.path().join("ck").to_str().unwrap(),
        ]),
        "weir run against a dead broker",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("scripts/kafka.sh start"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the dead broker was named after {:?}, not within 5 s",
        started.elapsed()
    );
}
