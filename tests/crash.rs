//! Crash and recovery of `weir replay --checkpoint-dir`, with real processes killed by SIGKILL.
//!
//! A generated log is replayed with a 100 ms checkpoint interval (slowed by a test hook so runs
//! last long enough to be interrupted); the process is killed at seeded random moments and
//! restarted until it completes. The output must be byte-for-byte the output of an
//! uninterrupted run, and equal an independent reference: nothing lost, nothing twice.
//! `WEIR_CRASH_KILLS` sets the number of kills (default 20; scripts/crash-test.sh runs 200).
//!
//! The tests act on what they can see of a run, never after a fixed time: a kill aimed after a
//! checkpoint waits for its `MANIFEST` to appear (the last file a checkpoint writes), and a run
//! that must hold the folder's lock is known to hold it once it has completed a checkpoint.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn replay_args<'a>(log: &'a str, out: &'a str, dir: &'a str) -> Vec<&'a str> {
    vec![
        "replay",
        log,
        "--output-format",
        "csv",
        "-o",
        out,
        "-p",
        "2",
        "--parse-threads",
        "1",
        "--max-out-of-orderness",
        "2s",
        "--checkpoint-dir",
        dir,
        "--checkpoint-interval",
        "100ms",
        "--chunk-bytes",
        "65536",
        "--test-chunk-delay",
        "3ms",
        "-q",
    ]
}

/// SIGKILLs `child` and reaps it; its exit status says whether the signal ended it or it had
/// exited by itself just before.
fn kill(child: &mut Child) -> std::process::ExitStatus {
    child.kill().unwrap(); // SIGKILL; a process that exited but is not yet reaped ignores it
    child.wait().unwrap()
}

#[test]
fn killed_and_resumed_any_number_of_times_gives_the_uninterrupted_output() {
    let kills: usize = std::env::var("WEIR_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let tmp = tempdir();
    let log = tmp.path().join("access.log");
    run_ok(&[
        "gen",
        "--lines",
        "120000",
        "--clients",
        "2000",
        "--rate",
        "2000",
        "--seed",
        "11",
        "--out-of-order",
        "1s",
        "--malformed",
        "0.01",
        "-o",
        log.to_str().unwrap(),
    ]);
    let log_s = log.to_str().unwrap();

    // The uninterrupted run.
    let clean_out = tmp.path().join("clean.csv");
    let clean_dir = tmp.path().join("clean-ck");
    run_ok(&replay_args(
        log_s,
        clean_out.to_str().unwrap(),
        clean_dir.to_str().unwrap(),
    ));
    let clean = std::fs::read(&clean_out).unwrap();

    // The interrupted one.
    let out = tmp.path().join("out.csv");
    let dir = tmp.path().join("ck");
    let args = replay_args(log_s, out.to_str().unwrap(), dir.to_str().unwrap());
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let (mut killed, mut after_checkpoint) = (0, 0);
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
            let delay = Duration::from_millis(20 + (seed >> 33) % 400);
            if killed % 3 == 2 {
                // Aimed: at a seeded moment up to 100 ms after this run's next checkpoint, so
                // that some kills surely follow a checkpoint however slow the machine is.
                let newest = complete_checkpoints(&dir).pop();
                if until_checkpoints(&mut child, &dir, 1, newest.as_ref()) {
                    std::thread::sleep(delay / 4);
                }
            } else {
                // Anywhere: at a seeded random moment from the start (the moment is the point).
                std::thread::sleep(delay);
            }
            let status = match child.try_wait().unwrap() {
                Some(status) => status,
                None => kill(&mut child),
            };
            if status.signal() == Some(9) {
                killed += 1;
                after_checkpoint += usize::from(!complete_checkpoints(&dir).is_empty());
                if out.exists() {
                    // Killed after the final checkpoint: the output, once visible, is whole.
                    assert!(
                        std::fs::read(&out).unwrap() == clean,
                        "a partial output became visible"
                    );
                }
                continue;
            }
            // It ended by itself before the kill: it must have succeeded. Start over so that
            // every kill lands in a running job.
            let res = wait_at_most(child, COMMAND_LIMIT, &format!("run {runs}"));
            assert!(
                status.success(),
                "run {runs}: {}",
                String::from_utf8_lossy(&res.stderr)
            );
            std::fs::remove_file(&out).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            continue;
        }
        let res = wait_at_most(child, COMMAND_LIMIT, &format!("run {runs}"));
        assert!(
            res.status.success(),
            "run {runs}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        break;
    }
    assert!(
        after_checkpoint >= kills / 3,
        "only {after_checkpoint} of {killed} kills came after a checkpoint: recovery was hardly \
         tested"
    );
    eprintln!("{killed} kills in {runs} runs, {after_checkpoint} after a checkpoint");
    let got = std::fs::read(&out).unwrap();
    assert!(
        got == clean,
        "after {killed} kills the output differs from the uninterrupted run's"
    );
    let (expected, _) = reference(&std::fs::read(&log).unwrap(), 5_000, 0);
    assert_counts_eq(&parse_csv(&got, 5_000), &expected, "against the reference");
}

#[test]
fn corrupt_newest_checkpoint_falls_back_and_other_jobs_are_refused() {
    let tmp = tempdir();
    let log = tmp.path().join("a.log");
    run_ok(&[
        "gen",
        "--lines",
        "150000",
        "--clients",
        "300",
        "--seed",
        "2",
        "-o",
        log.to_str().unwrap(),
    ]);
    let out = tmp.path().join("out.csv");
    let dir = tmp.path().join("ck");
    let (l, o, d) = (
        log.to_str().unwrap(),
        out.to_str().unwrap(),
        dir.to_str().unwrap(),
    );
    // Interrupt a run that has committed a few checkpoints: killed once its second one is
    // complete.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(replay_args(l, o, d))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        until_checkpoints(&mut child, &dir, 2, None),
        "the run ended before its second checkpoint"
    );
    assert_eq!(
        kill(&mut child).signal(),
        Some(9),
        "the run ended by itself"
    );
    let chks: Vec<_> = complete_checkpoints(&dir)
        .into_iter()
        .filter(|p| p.join("worker-0.state").exists())
        .collect();
    assert!(
        chks.len() >= 2,
        "need two committed checkpoints, have {chks:?}"
    );
    let newest = chks.last().unwrap();
    let state = newest.join("worker-0.state");
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&state, &bytes).unwrap();

    // Another job (other window) on the same folder is refused, naming what differs.
    let mut other = replay_args(l, o, d);
    other.extend(["--window", "10s"]);
    let res = output(weir().args(&other), "another job on the folder");
    assert_eq!(res.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("window"),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );

    // The same job resumes from the previous checkpoint, saying which file was corrupt.
    let mut args = replay_args(l, o, d);
    args.retain(|a| *a != "-q");
    let res = run_ok(&args);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("worker-0.state") && err.contains("checksum"),
        "{err}"
    );
    assert!(err.contains("resuming from checkpoint"), "{err}");
    let (expected, _) = reference(&std::fs::read(&log).unwrap(), 5_000, 0);
    assert_counts_eq(
        &parse_csv(&std::fs::read(&out).unwrap(), 5_000),
        &expected,
        "after fallback",
    );
}

#[test]
fn a_second_process_on_the_same_folder_fails_at_once() {
    let tmp = tempdir();
    let log = tmp.path().join("a.log");
    run_ok(&[
        "gen",
        "--lines",
        "40000",
        "--clients",
        "300",
        "--seed",
        "2",
        "-o",
        log.to_str().unwrap(),
    ]);
    let dir = tmp.path().join("ck");
    let (l, d) = (log.to_str().unwrap(), dir.to_str().unwrap());
    let o1 = tmp.path().join("1.csv");
    let mut first = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(replay_args(l, o1.to_str().unwrap(), d))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first run holds the folder's lock once it has completed a checkpoint (it locks the
    // folder before writing anything in it). Stopped there, it holds it as long as the test
    // needs, however slow or fast the machine.
    assert!(
        until_checkpoints(&mut first, &dir, 1, None),
        "the first run ended before its first checkpoint"
    );
    signal(first.id(), "-STOP");
    let o2 = tmp.path().join("2.csv");
    let res = output(
        weir().args(replay_args(l, o2.to_str().unwrap(), d)),
        "the second run",
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended while stopped"
    );
    assert_eq!(kill(&mut first).signal(), Some(9));
    assert_eq!(
        res.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("LOCK"),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}
