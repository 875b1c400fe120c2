//! The broker stops answering in the middle of a run and comes back: nothing is lost or doubled.
//!
//! The broker process started by `scripts/kafka.sh` is frozen with SIGSTOP for a few seconds
//! while `weir run` is reading and committing (sockets stay open, no request is answered, as
//! with a broker that hangs or a network partition), then resumed with SIGCONT. The run rides
//! it out or fails with an error; either way it is restarted until it completes, and the
//! committed output must equal the reference. (A restart of the broker is in
//! tests/kafka_broker_restart.rs.) Own test binary, so the frozen broker does not stall the other
//! Kafka tests.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::*;

fn broker_pid() -> Option<i32> {
    if std::env::var("WEIR_KAFKA").is_ok() {
        return None; // an external broker: not ours to freeze
    }
    let cache = std::env::var("WEIR_CACHE_DIR").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir"),
        std::path::PathBuf::from,
    );
    let pid = std::fs::read_to_string(cache.join("run/tansu.pid"))
        .expect("no ~/.cache/weir/run/tansu.pid: start the broker with scripts/kafka.sh start");
    Some(pid.trim().parse().unwrap())
}

fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Resumes the broker even if the test fails while it is frozen.
struct Thaw(i32);
impl Drop for Thaw {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

#[test]
fn a_broker_outage_mid_run_neither_loses_nor_doubles() {
    let Some(pid) = broker_pid() else {
        eprintln!("skipped: WEIR_KAFKA names an external broker");
        return;
    };
    let p = Pipeline::new("outage", "40000", "9", "3");
    let mut args = p.run_args();
    args.extend(["--test-read-delay", "40ms"]);
    let mut child = spawn(&args);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the outage"
    );
    {
        signal(pid, "-STOP");
        let _thaw = Thaw(pid);
        std::thread::sleep(Duration::from_secs(5));
    }
    let started = Instant::now();
    let mut res = wait_at_most(child, COMMAND_LIMIT, "the run through the outage");
    let mut runs = 1;
    while !res.status.success() {
        // The outage outlasted a transactional call: the run stopped with an error; restarting
        // recovers from the last commit.
        eprintln!(
            "run {runs} failed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        runs += 1;
        assert!(runs <= 5, "no successful run after the outage");
        res = output(weir().args(&args), &format!("run {runs}"));
    }
    eprintln!(
        "completed {:.1} s after the outage in {runs} run(s)",
        started.elapsed().as_secs_f64()
    );
    p.check("after a broker outage");
}
