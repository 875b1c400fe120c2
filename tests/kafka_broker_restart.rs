//! The broker is restarted in the middle of a run: nothing is lost or doubled.
//!
//! The shared development broker keeps its data in memory, so this test starts its own on
//! 127.0.0.1:9192 with `WEIR_KAFKA_STORAGE=s3 scripts/kafka.sh start`: the same tansu, its data in
//! files behind the small S3-compatible store of scripts/s3store.py, so a restarted broker comes
//! back with its topics, committed offsets and transactions. `weir run` is reading and committing
//! when `scripts/kafka.sh restart` stops the broker (TERM, then KILL: tansu ignores TERM) and
//! starts it again; the run rides it out or fails with an error, and is restarted until it
//! completes; the committed output must equal the reference. Own test binary: it points the
//! tests' Kafka helpers at its own broker.

mod common;

use std::process::Command;
use std::time::Instant;

use common::kafka::*;

/// The port of this test's broker (its object store listens on the next one).
const PORT: &str = "9192";

/// `scripts/kafka.sh CMD` for this test's broker.
fn kafka_sh(cmd: &str) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(cmd)
        .env("WEIR_KAFKA_PORT", PORT)
        .env("WEIR_KAFKA_STORAGE", "s3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/kafka.sh {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stops this test's broker and its store however the test ends.
struct Stop;
impl Drop for Stop {
    fn drop(&mut self) {
        kafka_sh("stop");
    }
}

/// The pid in `scripts/kafka.sh status`.
fn broker_pid() -> String {
    let out = String::from_utf8(kafka_sh("status").stdout).unwrap();
    let pid = out.split("(pid ").nth(1).and_then(|s| s.split(')').next());
    pid.unwrap_or_else(|| panic!("no pid in {out:?}"))
        .to_owned()
}

#[test]
fn a_broker_restart_mid_run_neither_loses_nor_doubles() {
    if std::env::var("WEIR_KAFKA").is_ok() {
        eprintln!("skipped: WEIR_KAFKA names an external broker, which this test cannot restart");
        return;
    }
    // Every helper of tests/common/kafka.rs talks to this test's broker (one test per binary, so
    // nothing else reads the variable meanwhile).
    std::env::set_var("WEIR_KAFKA_PORT", PORT);
    kafka_sh("start");
    let _stop = Stop;
    let before = broker_pid();

    let p = Pipeline::new("restart", "60000", "9", "3");
    p.survive("restart", || {
        let restart = Instant::now();
        kafka_sh("restart");
        assert_ne!(broker_pid(), before, "the broker was not restarted");
        eprintln!("restarted in {:.1} s", restart.elapsed().as_secs_f64());
    });
}
