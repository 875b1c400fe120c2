//! Kafka in, Kafka out, exactly once, against the real broker started by `scripts/kafka.sh`
//! (or `WEIR_KAFKA`).
//!
//! The committed output of topic B is read here with this file's own consumer code and compared
//! with an independent reference count of the log (tests/common). On a broker that shows
//! records of aborted transactions to `read_committed` readers (tansu 0.4; `WEIR_KAFKA_FULL_TXN`
//! unset), the output is resolved from the `weir-epoch` / `weir-attempt` headers and the job's
//! committed progress (the progress group's offset metadata): per epoch only the attempt that
//! committed it counts. Any (window, client) seen twice after that is a duplicate and fails.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn broker() -> String {
    std::env::var("WEIR_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn full_txn() -> bool {
    std::env::var("WEIR_KAFKA_FULL_TXN").is_ok_and(|v| v == "1")
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn url(topic: &str) -> String {
    format!("kafka://{}/{topic}", broker())
}

fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer")
}

/// `epoch → attempt that committed it`, and the last committed epoch: the epoch is the
/// progress group's committed offset; the attempt is the highest one among the job's commit
/// markers for that epoch (attempts run one after another, and none writes an epoch that an
/// earlier attempt committed).
fn committed_attempts(group: &str) -> (BTreeMap<u64, u64>, u64) {
    let c = consumer(group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("weir-progress", 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let e = got.find_partition("weir-progress", 0).expect("progress");
    let Offset::Offset(last) = e.offset() else {
        panic!("group {group} committed no progress");
    };
    let last = last as u64;
    let mut by_epoch = BTreeMap::new();
    read_partition("weir-commits", 0, false, &mut |m| {
        if m.key() != Some(group.as_bytes()) {
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let (epoch, attempt) = (v["epoch"].as_u64().unwrap(), v["attempt"].as_u64().unwrap());
        if epoch <= last {
            let a = by_epoch.entry(epoch).or_insert(attempt);
            *a = (*a).max(attempt);
        }
    });
    assert_eq!(
        by_epoch.len() as u64,
        last,
        "a commit marker for every committed epoch"
    );
    (by_epoch, last)
}

/// Calls `f` with every record of `topic`'s `partition` up to its current end.
fn read_partition(
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

/// The committed output of `topic`: counts, and the (window, client) pairs seen more than once.
fn read_output(topic: &str, group: &str) -> (Counts, Vec<(i64, String)>) {
    let c = consumer(&unique("meta"));
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let resolve = (!full_txn()).then(|| committed_attempts(group));
    let mut counts = Counts::new();
    let mut doubled = Vec::new();
    for p in 0..partitions {
        read_partition(topic, p, true, &mut |m| {
            if let Some((attempts, last)) = &resolve {
                let headers = m.headers().expect("weir-epoch / weir-attempt headers");
                let mut epoch = None;
                let mut attempt = None;
                for h in headers.iter() {
                    let v: Option<u64> = h
                        .value
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                    match h.key {
                        "weir-epoch" => epoch = v,
                        "weir-attempt" => attempt = v,
                        _ => {}
                    }
                }
                let (epoch, attempt) = (epoch.unwrap(), attempt.unwrap());
                if epoch > *last || attempts.get(&epoch) != Some(&attempt) {
                    return; // a record of an aborted transaction
                }
            }
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

fn gen_log(dir: &std::path::Path, lines: &str, seed: &str) -> std::path::PathBuf {
    let log = dir.join("access.log");
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
        "--malformed",
        "0.01",
        "-o",
        log.to_str().unwrap(),
    ]);
    log
}

fn run_args<'a>(a: &'a str, b: &'a str, dir: &'a str, group: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--from",
        a,
        "--to",
        b,
        "--checkpoint-dir",
        dir,
        "--group",
        group,
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

fn check(b_topic: &str, group: &str, log: &std::path::Path, ctx: &str) {
    let (got, doubled) = read_output(b_topic, group);
    assert!(doubled.is_empty(), "{ctx}: doubled rows: {doubled:?}");
    let (expected, _) = reference(&std::fs::read(log).unwrap(), 5_000, 0);
    assert_counts_eq(&got, &expected, ctx);
}

#[test]
fn bounded_run_commits_exactly_the_reference_counts() {
    let tmp = tempdir();
    let log = gen_log(tmp.path(), "30000", "3");
    let (a, b, group) = (unique("e2e-in"), unique("e2e-out"), unique("e2e-job"));
    let (ua, ub) = (url(&a), url(&b));
    run_ok(&[
        "produce",
        log.to_str().unwrap(),
        "--to",
        &ua,
        "--partitions",
        "3",
    ]);
    let dir = tmp.path().join("ck");
    let res = run_ok(&run_args(&ua, &ub, dir.to_str().unwrap(), &group));
    assert!(res.status.success());
    check(&b, &group, &log, "bounded run");

    // Running it again finds the job finished and writes nothing more.
    let mut again = run_args(&ua, &ub, dir.to_str().unwrap(), &group);
    again.retain(|a| *a != "-q");
    let res = run_ok(&again);
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("finished"),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    check(&b, &group, &log, "after a second run");
}

#[test]
fn killed_at_random_moments_and_restarted_loses_and_doubles_nothing() {
    let kills: usize = std::env::var("WEIR_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let tmp = tempdir();
    let log = gen_log(tmp.path(), "60000", "5");
    let (a, b, group) = (unique("crash-in"), unique("crash-out"), unique("crash-job"));
    let (ua, ub) = (url(&a), url(&b));
    run_ok(&[
        "produce",
        log.to_str().unwrap(),
        "--to",
        &ua,
        "--partitions",
        "4",
    ]);
    let dir = tmp.path().join("ck");
    let mut args = run_args(&ua, &ub, dir.to_str().unwrap(), &group);
    args.retain(|a| *a != "-q");
    // Slow reads so a run lasts long enough to be killed many times; a pause in the commit
    // window (checkpoint durable, transaction not yet committed) so that some kills land there.
    args.extend(["--test-read-delay", "60ms", "--test-commit-delay", "60ms"]);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let (mut killed, mut resumed, mut in_commit_window) = (0, 0, 0);
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs < kills * 10 + 50, "no progress after {runs} runs");
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if killed < kills {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // A run needs about a second to connect and commit its first epoch; kill anywhere
            // from before that to a few epochs later.
            std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 3000));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                let out = child.wait_with_output().unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
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
        let res = child.wait_with_output().unwrap();
        assert!(
            res.status.success(),
            "run {runs}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
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
    check(&b, &group, &log, &format!("after {killed} kills"));
}

#[test]
fn a_dead_broker_is_named_within_seconds() {
    let tmp = tempdir();
    let started = Instant::now();
    let out = weir()
        .args([
            "run",
            "--from",
            "kafka://127.0.0.1:1/in",
            "--to",
            "kafka://127.0.0.1:1/out",
            "--checkpoint-dir",
            tmp.path().join("ck").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(err.contains("scripts/kafka.sh start"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
