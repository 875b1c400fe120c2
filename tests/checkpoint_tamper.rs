//! Everything a checkpoint relies on is verified before a run resumes from it.
//!
//! - **The results file** (`DIR/output/results`, the output written in place; each checkpoint
//!   commits it up to a length, with the checksum of those bytes): a byte flipped in, or a tail
//!   cut from, its committed bytes after a run was killed (SIGKILL, a real process) is named on
//!   resume; the run falls back to an older checkpoint when one commits less than the damage,
//!   and otherwise refuses, saying that `--fresh` starts over. The final output is never
//!   silently wrong: it is compared with `common::reference` of the log.
//! - **The input**: a log changed since the checkpoint (same size; one byte changed with its
//!   modification time put back; only touched; replaced by a copy) is refused, naming what
//!   changed, for the file output and for the Kafka output of `weir replay FILE --to`.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// The replay every test interrupts: 100 ms checkpoints, 64 KiB chunks, each chunk slowed by
/// 5 ms (a test hook), so that a run of 100,000 lines lasts well over a second.
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
        "--checkpoint-dir",
        dir,
        "--checkpoint-interval",
        "100ms",
        "--chunk-bytes",
        "65536",
        "--test-chunk-delay",
        "5ms",
    ]
}

/// 100,000 lines, 300 clients at 500 lines/s: 200 s of event time, so every epoch of a
/// checkpointed run fires windows and commits rows.
fn gen_log(path: &Path, seed: &str) {
    run_ok(&[
        "gen",
        "--lines",
        "100000",
        "--clients",
        "300",
        "--rate",
        "500",
        "--seed",
        seed,
        "-o",
        path.to_str().unwrap(),
    ]);
}

/// The epochs of the complete checkpoints (those with a `MANIFEST`) in `dir`, oldest first.
fn complete_checkpoints(dir: &Path) -> Vec<u64> {
    let mut epochs: Vec<u64> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("MANIFEST").exists())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    epochs.sort_unstable();
    epochs
}

/// How many bytes of the results file checkpoint `epoch` in `dir` commits (its manifest's
/// `sink.results.len`).
fn committed_len(dir: &Path, epoch: u64) -> u64 {
    let manifest = dir.join(format!("chk-{epoch:09}")).join("MANIFEST");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    m["sink"]["results"]["len"].as_u64().unwrap()
}

/// Runs `weir args` and kills it with SIGKILL once `dir` holds `n` complete checkpoints (the
/// event a test acts on). A run
/// that ends before fails the test with its stderr (a Kafka job without a broker says to start
/// one).
fn kill_after_checkpoints(args: &[&str], dir: &Path, n: usize) {
    let mut child = weir()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = || complete_checkpoints(dir).len() >= n;
    let deadline = Instant::now() + COMMAND_LIMIT;
    while !ready() {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run ended before {n} checkpoints were complete ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no {n} checkpoints in {dir:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// A checkpointed replay of a fresh log, killed with SIGKILL once three checkpoints are complete.
struct Killed {
    tmp: tempfile::TempDir,
    log: PathBuf,
    out: PathBuf,
    dir: PathBuf,
}

impl Killed {
    fn new(seed: &str) -> Self {
        let tmp = tempdir();
        let log = tmp.path().join("access.log");
        gen_log(&log, seed);
        let (out, dir) = (tmp.path().join("out.csv"), tmp.path().join("ck"));
        let k = Self { tmp, log, out, dir };
        kill_after_checkpoints(&k.args(), &k.dir, 3);
        assert!(!k.out.exists(), "the run was killed before its end");
        k
    }

    fn args(&self) -> Vec<&str> {
        replay_args(
            self.log.to_str().unwrap(),
            self.out.to_str().unwrap(),
            self.dir.to_str().unwrap(),
        )
    }

    fn results(&self) -> PathBuf {
        self.dir.join("output").join("results")
    }

    /// Runs the same command again (plus `extra`).
    fn resume(&self, extra: &[&str]) -> (Output, String) {
        let mut args = self.args();
        args.extend(extra);
        let res = output(weir().args(&args), "the resumed run");
        let err = String::from_utf8_lossy(&res.stderr).into_owned();
        (res, err)
    }

    /// Asserts the output holds exactly the reference counts of the log as it is now.
    fn check_output(&self, ctx: &str) {
        let (expected, _) = reference(&fs::read(&self.log).unwrap(), 5_000, 0);
        let got = parse_csv(&fs::read(&self.out).unwrap(), 5_000);
        assert_counts_eq(&got, &expected, ctx);
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte changed, halfway between `from` and `to`.
    Flip,
    /// Everything from 7 bytes before `to` on cut off.
    Cut,
}

/// Damages `path` within its bytes `from..to`.
fn damage(path: &Path, how: Damage, from: u64, to: u64) {
    assert!(
        to > from + 16,
        "{path:?}: {from}..{to} holds no rows to damage"
    );
    match how {
        Damage::Flip => {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .unwrap();
            let at = (from + to) / 2;
            let mut b = [0u8; 1];
            f.seek(SeekFrom::Start(at)).unwrap();
            std::io::Read::read_exact(&mut f, &mut b).unwrap();
            b[0] ^= 0x01;
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&b).unwrap();
        }
        Damage::Cut => {
            let f = OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(to - 7).unwrap();
        }
    }
}

/// The results only the newest checkpoint commits are damaged: that checkpoint is skipped,
/// naming the results file, and the run resumes from the one before, which writes them again.
#[test]
fn damaged_results_of_the_newest_checkpoint_fall_back_to_the_previous_one() {
    for (how, seed) in [(Damage::Flip, "21"), (Damage::Cut, "22")] {
        let k = Killed::new(seed);
        let complete = complete_checkpoints(&k.dir);
        let newest = *complete.last().unwrap();
        let previous = complete[complete.len() - 2];
        let (from, to) = (
            committed_len(&k.dir, previous),
            committed_len(&k.dir, newest),
        );
        damage(&k.results(), how, from, to);

        let (res, err) = k.resume(&[]);
        assert!(res.status.success(), "{how:?}: {err}");
        assert!(
            err.contains("skipped checkpoint")
                && err.contains("output/results")
                && err.contains(&format!("resuming from checkpoint {previous} ")),
            "{how:?}: the fallback must name the results file and resume from {previous}:\n{err}"
        );
        k.check_output(&format!(
            "{how:?} of checkpoint {newest}'s results, after the fallback"
        ));
    }
}

/// The results every checkpoint commits are damaged: none can be restored. The run refuses,
/// names the results file with what it expected and found, says that `--fresh` starts over,
/// and leaves the folder as it was; `--fresh` then gives the right output.
#[test]
fn results_every_checkpoint_commits_damaged_are_refused_and_fresh_starts_over() {
    for (how, seed, found) in [
        (Damage::Flip, "23", "checksum"),
        (Damage::Cut, "24", "bytes"),
    ] {
        let k = Killed::new(seed);
        let before = complete_checkpoints(&k.dir);
        damage(&k.results(), how, 0, committed_len(&k.dir, before[0]));

        let (res, err) = k.resume(&[]);
        assert_eq!(res.status.code(), Some(1), "{how:?}: {err}");
        assert!(
            err.contains("output/results") && err.contains(found),
            "{how:?}: the refusal must name the results file and what was found:\n{err}"
        );
        assert!(
            err.contains("--fresh starts over"),
            "{how:?}: the refusal must say how to start over:\n{err}"
        );
        assert!(!k.out.exists(), "{how:?}: a refused run wrote the output");
        assert_eq!(
            complete_checkpoints(&k.dir),
            before,
            "{how:?}: a refused run changed the checkpoints"
        );

        let (res, err) = k.resume(&["--fresh"]);
        assert!(res.status.success(), "{how:?} --fresh: {err}");
        k.check_output(&format!("{how:?} of the first results, then --fresh"));
    }
}

/// A run that completed left its final checkpoint and published its results as the output
/// (a rename: the checkpoints keep no second copy). Run again, it says the output is in place;
/// once the output is damaged, it names it and refuses rather than pass it off as the run's,
/// and `--fresh` writes it again.
#[test]
fn an_output_damaged_after_the_run_completed_is_named() {
    let tmp = tempdir();
    let log = tmp.path().join("access.log");
    gen_log(&log, "25");
    let (out, dir) = (tmp.path().join("out.csv"), tmp.path().join("ck"));
    let (l, o, d) = (
        log.to_str().unwrap(),
        out.to_str().unwrap(),
        dir.to_str().unwrap(),
    );
    run_ok(&replay_args(l, o, d));
    let complete = complete_checkpoints(&dir);
    assert!(complete.len() >= 2, "{complete:?}");
    assert!(!dir.join("output").join("results").exists(), "renamed");
    let res = run_ok(&replay_args(l, o, d));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("is final") && err.contains("in place"),
        "{err}"
    );

    let len = fs::metadata(&out).unwrap().len();
    damage(&out, Damage::Flip, 0, len);
    let res = output(
        weir().args(replay_args(l, o, d)),
        "the run after the damage",
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("out.csv") && err.contains("checksum") && err.contains("--fresh"),
        "the damaged output must be named:\n{err}"
    );
    let mut fresh = replay_args(l, o, d);
    fresh.push("--fresh");
    run_ok(&fresh);
    let (expected, _) = reference(&fs::read(&log).unwrap(), 5_000, 0);
    assert_counts_eq(
        &parse_csv(&fs::read(&out).unwrap(), 5_000),
        &expected,
        "after --fresh",
    );
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Changes one digit of the first line's client address in place (same size, same inode) and
/// puts the modification time back, so that only the bytes tell: the first 4 KiB of the input
/// are always among the sampled blocks.
fn change_first_line(log: &Path) -> u64 {
    let t = mtime(log);
    let bytes = fs::read(log).unwrap();
    let at = bytes.iter().position(u8::is_ascii_digit).unwrap();
    let digit = b'1' + (bytes[at] - b'0') % 8;
    let mut f = OpenOptions::new().write(true).open(log).unwrap();
    f.seek(SeekFrom::Start(at as u64)).unwrap();
    f.write_all(&[digit]).unwrap();
    drop(f);
    set_mtime(log, t);
    assert_eq!(mtime(log), t);
    at as u64
}

/// A byte of the input changed in place with its modification time put back: refused, naming
/// the bytes that differ (and not the time, which is the same), saying `--fresh` starts over.
#[test]
fn an_input_changed_in_place_with_its_mtime_put_back_is_refused() {
    let k = Killed::new("31");
    let before = complete_checkpoints(&k.dir);
    change_first_line(&k.log);

    let (res, err) = k.resume(&[]);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bytes at offset 0..4096 differ"),
        "the refusal must name the bytes that differ:\n{err}"
    );
    assert!(!err.contains("modification time"), "{err}");
    assert!(err.contains("--fresh starts over"), "{err}");
    assert!(!k.out.exists());
    assert_eq!(complete_checkpoints(&k.dir), before);

    let (res, err) = k.resume(&["--fresh"]);
    assert!(res.status.success(), "--fresh: {err}");
    k.check_output("the changed input, with --fresh");
}

/// A byte changed in the middle of the input, inside a block the checkpoint sampled (read from
/// its manifest) and before its position, mtime put back: refused, naming that block.
#[test]
fn a_changed_sampled_block_in_the_middle_is_named() {
    let k = Killed::new("32");
    let newest = *complete_checkpoints(&k.dir).last().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(k.dir.join(format!("chk-{newest:09}")).join("MANIFEST")).unwrap(),
    )
    .unwrap();
    let position = manifest["sources"]["offset"].as_u64().unwrap();
    let blocks = manifest["job"]["input_file"]["blocks"].as_array().unwrap();
    let offsets: Vec<u64> = blocks
        .iter()
        .map(|b| b["offset"].as_u64().unwrap())
        .collect();
    let middle = *offsets
        .iter()
        .filter(|&&o| o > 4096 && o + 4096 < position)
        .nth(2)
        .expect("sampled blocks inside the checkpointed prefix");
    let t = mtime(&k.log);
    let at = middle + 100;
    let byte = fs::read(&k.log).unwrap()[at as usize] ^ 0x01;
    let mut f = OpenOptions::new().write(true).open(&k.log).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte]).unwrap();
    drop(f);
    set_mtime(&k.log, t);

    let (res, err) = k.resume(&[]);
    assert_eq!(res.status.code(), Some(2), "{err}");
    let named = format!("bytes at offset {middle}..{} differ", middle + 4096);
    assert!(err.contains(&named), "expected {named:?}:\n{err}");
    assert!(err.contains("--fresh starts over"), "{err}");
}

/// Only touched (modification time changed, bytes the same), or replaced by a copy with the
/// same bytes and time (another inode): refused too, as the rest of the file cannot be checked
/// without reading it all; the message says what changed.
#[test]
fn a_touched_or_replaced_input_is_refused() {
    let k = Killed::new("33");
    let t = mtime(&k.log);
    set_mtime(&k.log, t + Duration::from_secs(3600));
    let (res, err) = k.resume(&[]);
    assert_eq!(res.status.code(), Some(2), "touched: {err}");
    assert!(
        err.contains("modification time changed")
            && err.contains("sampled blocks are the same")
            && err.contains("--fresh starts over"),
        "touched: {err}"
    );

    set_mtime(&k.log, t);
    let copy = k.tmp.path().join("copy.log");
    fs::copy(&k.log, &copy).unwrap();
    set_mtime(&copy, t);
    fs::rename(&copy, &k.log).unwrap();
    let (res, err) = k.resume(&[]);
    assert_eq!(res.status.code(), Some(2), "replaced: {err}");
    assert!(
        err.contains("another file") && err.contains("--fresh starts over"),
        "replaced: {err}"
    );
    assert!(!k.out.exists());
}

/// `weir replay FILE --to kafka://…`: the job's identity covers the file too. Killed after
/// two checkpoints, its input changed in place with the time put back: refused, naming the
/// bytes, and saying how such a job starts over (Kafka keeps what it committed).
#[test]
fn a_kafka_file_job_on_a_changed_input_is_refused() {
    use common::kafka::{unique, url};
    let tmp = tempdir();
    let log = tmp.path().join("access.log");
    gen_log(&log, "34");
    let to = url(&unique("tamper-out"));
    let dir = tmp.path().join("ck");
    let args = [
        "replay",
        log.to_str().unwrap(),
        "--to",
        &to,
        "--checkpoint-dir",
        dir.to_str().unwrap(),
        "--checkpoint-interval",
        "100ms",
        "--test-chunk-delay",
        "2ms",
    ];
    kill_after_checkpoints(&args, &dir, 2);
    change_first_line(&log);

    let res = output(weir().args(args), "the resumed Kafka file job");
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(err.contains("bytes at offset 0..4096 differ"), "{err}");
    assert!(err.contains("to start over"), "{err}");
}
