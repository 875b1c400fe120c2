//! Rescaling `weir run` (Kafka in, Kafka out, exactly once) on the real broker: a run killed
//! (SIGKILL) after it committed epochs resumes at another `-p`, its window state moved to the
//! new workers by key group (issue 12). The committed output, read by a plain `read_committed`
//! consumer, equals an independent reference count of the log, nothing doubled, and `weir
//! verify` finds it clean.

mod common;

use common::kafka::*;
use common::*;

/// The run's arguments at `-p p`, slowed so that it lives through several commits, which it
/// announces (`--test-commit-delay`).
fn args_at<'a>(p: &'a Pipeline, workers: &'a str) -> Vec<&'a str> {
    let mut args = p.run_args();
    args.retain(|a| *a != "-q");
    let at = args.iter().position(|a| *a == "-p").unwrap();
    args[at + 1] = workers;
    args.extend(["--test-read-delay", "40ms", "--test-commit-delay", "10ms"]);
    args
}

/// Runs at `-p workers` until the run, resumed from a checkpoint when `resumed`, has committed
/// two epochs of its own, then SIGKILLs it.
fn kill_after_two_commits(p: &Pipeline, workers: &str, resumed: bool) {
    let mut run = Watched::spawn(&args_at(p, workers));
    let mut commits = 0;
    let committed = run.until(|l| {
        commits += usize::from(l.contains("committed epoch"));
        commits == 2
    });
    assert!(
        committed,
        "-p {workers}: the run ended before two commits: {}",
        run.text()
    );
    let err = run.kill();
    assert_eq!(
        err.contains("resuming from epoch"),
        resumed,
        "-p {workers}: {err}"
    );
}

#[test]
fn resumed_at_2_then_4_then_2_workers_commits_exactly_the_reference_counts() {
    let p = Pipeline::new("rescale", "60000", "21", "4");
    kill_after_two_commits(&p, "2", false);
    kill_after_two_commits(&p, "4", true);
    let run = Watched::spawn(&args_at(&p, "2"));
    let (status, err, _) = run.finish(COMMAND_LIMIT);
    assert!(status.success(), "-p 2 to the end: {err}");
    assert!(err.contains("resuming from epoch"), "{err}");
    p.check("rescaled 2 -> 4 -> 2");
}
