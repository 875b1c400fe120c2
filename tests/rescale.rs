//! Rescaling a checkpointed `weir replay`: a run killed (SIGKILL, real processes) after one of
//! its checkpoints resumes at another `-p`, its state moved to the new workers by key group
//! (issue 12), and the output is byte for byte that of an uninterrupted run, and equals an
//! independent reference count. The key groups themselves are fixed at a job's first start.
//!
//! The kills wait for what the run shows: the `MANIFEST` of a checkpoint newer than the ones
//! before (the last file a checkpoint writes), never a fixed time.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

/// A checkpointed replay at `-p p`, slowed so that it lives through several checkpoints; two
/// parser threads (two inputs, so rows are sorted within a window and the bytes written do not
/// depend on `-p`).
fn replay_args<'a>(log: &'a str, out: &'a str, dir: &'a str, p: &'a str) -> Vec<&'a str> {
    vec![
        "replay",
        log,
        "--output-format",
        "csv",
        "-o",
        out,
        "-p",
        p,
        "--parse-threads",
        "2",
        "--max-out-of-orderness",
        "1s",
        "--checkpoint-dir",
        dir,
        "--checkpoint-interval",
        "100ms",
        "--chunk-bytes",
        "65536",
        "--test-chunk-delay",
        "20ms",
        "-q",
    ]
}

fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs `args` until it has completed a checkpoint newer than any in `dir` now, then SIGKILLs
/// it; checks that the newest checkpoint then holds the state of `workers` workers (a run that
/// ended writes a last checkpoint without state, which would test nothing). Panics if the run
/// ends by itself first.
fn kill_after_next_checkpoint(args: &[&str], dir: &Path, workers: usize, what: &str) {
    let newest = complete_checkpoints(dir).pop();
    let mut child = start(args);
    assert!(
        until_checkpoints(&mut child, dir, 1, newest.as_ref()),
        "{what}: the run ended before a new checkpoint"
    );
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{what}: the run ended by itself");
    let newest = complete_checkpoints(dir).pop().unwrap();
    for w in 0..workers {
        assert!(
            newest.join(format!("worker-{w}.state")).exists(),
            "{what}: {newest:?} has no state of worker {w}"
        );
    }
    assert!(
        !newest.join(format!("worker-{workers}.state")).exists(),
        "{what}: {newest:?} has more than {workers} workers"
    );
}

fn gen_log(dir: &Path) -> std::path::PathBuf {
    let log = dir.join("access.log");
    run_ok(&[
        "gen",
        "--lines",
        "120000",
        "--clients",
        "2000",
        "--rate",
        "2000",
        "--seed",
        "12",
        "--out-of-order",
        "1s",
        "-o",
        log.to_str().unwrap(),
    ]);
    log
}

#[test]
fn resumed_at_2_then_4_then_2_workers_gives_the_uninterrupted_output() {
    let tmp = tempdir();
    let log = gen_log(tmp.path());
    let l = log.to_str().unwrap();

    let clean_out = tmp.path().join("clean.csv");
    let clean_dir = tmp.path().join("clean-ck");
    run_ok(&replay_args(
        l,
        clean_out.to_str().unwrap(),
        clean_dir.to_str().unwrap(),
        "2",
    ));
    let clean = std::fs::read(&clean_out).unwrap();

    let out = tmp.path().join("out.csv");
    let dir = tmp.path().join("ck");
    let (o, d) = (out.to_str().unwrap(), dir.to_str().unwrap());
    kill_after_next_checkpoint(&replay_args(l, o, d, "2"), &dir, 2, "-p 2");
    kill_after_next_checkpoint(&replay_args(l, o, d, "4"), &dir, 4, "-p 4");
    let mut last = replay_args(l, o, d, "2");
    last.retain(|a| *a != "-q");
    let res = run_ok(&last);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");

    let got = std::fs::read(&out).unwrap();
    let (expected, _) = reference(&std::fs::read(&log).unwrap(), 5_000, 0);
    assert_counts_eq(&parse_csv(&got, 5_000), &expected, "against the reference");
    assert!(
        got == clean,
        "the output of the run rescaled 2 -> 4 -> 2 differs from the uninterrupted run's"
    );
}

#[test]
fn a_resume_with_other_key_groups_is_refused() {
    let tmp = tempdir();
    let log = gen_log(tmp.path());
    let out = tmp.path().join("out.csv");
    let dir = tmp.path().join("ck");
    let (l, o, d) = (
        log.to_str().unwrap(),
        out.to_str().unwrap(),
        dir.to_str().unwrap(),
    );
    let with_groups = |p: &'static str, groups: Option<&'static str>| {
        let mut args = replay_args(l, o, d, p);
        if let Some(g) = groups {
            args.extend(["--key-groups", g]);
        }
        args
    };
    kill_after_next_checkpoint(&with_groups("2", Some("64")), &dir, 2, "--key-groups 64");

    // The default (128) is another number of key groups: refused, saying what and how.
    let res = output(weir().args(with_groups("3", None)), "other key groups");
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("key groups 64 (checkpoint) vs 128 (this job)"),
        "{err}"
    );
    assert!(err.contains("--fresh starts over"), "{err}");

    // More workers than key groups is a usage error before anything is read.
    let res = output(weir().args(with_groups("8", Some("4"))), "-p 8 of 4 groups");
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--parallelism 8 is more than --key-groups 4"),
        "{err}"
    );

    // The same key groups resume, at another parallelism, to the reference counts.
    run_ok(&with_groups("3", Some("64")));
    let (expected, _) = reference(&std::fs::read(&log).unwrap(), 5_000, 0);
    assert_counts_eq(
        &parse_csv(&std::fs::read(&out).unwrap(), 5_000),
        &expected,
        "resumed at -p 3",
    );
}
