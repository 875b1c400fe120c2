//! Hostile paths, end to end with the `weir` binary:
//!
//! - `outputs_that_are_the_input_are_refused_and_the_log_survives`: an output (`-o`,
//!   `--late-output`, stdout, the checkpoint folder) that is the input, however it is spelled,
//!   and two outputs that are one file, are usage errors and the log is left byte for byte;
//! - `non_regular_inputs_are_streamed`: pipes, FIFOs, `/dev/stdin` are read like stdin (counts
//!   equal the reference); with `--checkpoint-dir` they are refused saying why;
//! - `a_log_truncated_while_replayed_is_an_error_naming_it`: exit 1 and a message instead of a
//!   bare SIGBUS, and no output file left;
//! - `a_failed_run_leaves_no_output_that_looks_complete`: a truncated gzip or a write error
//!   leaves the output path as it was (written under a temporary name, renamed on success);
//! - `pipe_and_device_outputs_are_written_in_place`: the checkpointed output's rename never
//!   replaces a FIFO (standing in for `/dev/null`, which the old code replaced when run as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A generated combined log of `lines` lines, 5 s windows over a few hundred clients.
fn gen_log(dir: &Path, name: &str, lines: u64) -> PathBuf {
    let log = dir.join(name);
    run_ok(&[
        "gen",
        "--lines",
        &lines.to_string(),
        "--clients",
        "300",
        "--rate",
        "2000",
        "--seed",
        "5",
        "-o",
        log.to_str().unwrap(),
    ]);
    log
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `weir args` within [`COMMAND_LIMIT`]; returns (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = output(weir().args(args), &format!("weir {args:?}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success());
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The reference counts of `log` in 5 s windows.
fn reference_of(log: &[u8]) -> Counts {
    reference(log, 5000, 0).0
}

#[test]
fn outputs_that_are_the_input_are_refused_and_the_log_survives() {
    let tmp = tempdir();
    let d = tmp.path();
    let original = std::fs::read(gen_log(d, "orig.log", 30_000)).unwrap();
    let log = d.join("x.log");
    std::os::unix::fs::symlink(&log, d.join("link.log")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::create_dir(d.join("holder")).unwrap();
    let gz = d.join("x.log.gz");
    std::fs::write(&gz, gzip(&original)).unwrap();
    let in_holder = d.join("holder/in.log");
    let linked = d.join("linked-ck");
    std::fs::create_dir(&linked).unwrap();

    let at = |name: &str| d.join(name).to_str().unwrap().to_owned();
    let (x, link, dotdot, hard) = (s(&log), at("link.log"), at("sub/../x.log"), at("hard.log"));
    let (ck, ck2, ck2_out, holder) = (at("ck"), at("ck2"), at("ck2/out.csv"), at("holder"));
    let (out_csv, out_dotdot, gz_s) = (at("out.csv"), at("sub/../out.csv"), at("x.log.gz"));
    let (in_holder_s, linked_s) = (at("holder/in.log"), at("linked-ck"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["replay", x, "-o", x], "--output"),
        (vec!["replay", x, "-o", &link], "(the same file)"),
        (vec!["replay", x, "-o", &hard], "(the same file)"),
        (vec!["replay", x, "-o", &dotdot], "(the same file)"),
        (
            vec!["replay", x, "-o", "/dev/null", "--late-output", x],
            "--late-output",
        ),
        (vec!["replay", &gz_s, "-o", &gz_s], "x.log.gz"),
        (
            vec![
                "replay",
                x,
                "--output-format",
                "csv",
                "-o",
                x,
                "--checkpoint-dir",
                &ck,
            ],
            "--output",
        ),
        (
            vec![
                "replay",
                &in_holder_s,
                "--output-format",
                "csv",
                "-o",
                &out_csv,
                "--checkpoint-dir",
                &holder,
            ],
            "holds the input",
        ),
        (
            vec![
                "replay",
                x,
                "--output-format",
                "csv",
                "-o",
                &out_csv,
                "--checkpoint-dir",
                &linked_s,
            ],
            "holds the input",
        ),
        (
            vec![
                "replay",
                x,
                "--output-format",
                "csv",
                "-o",
                &ck2_out,
                "--checkpoint-dir",
                &ck2,
            ],
            "is inside --checkpoint-dir",
        ),
        (
            vec!["replay", x, "-o", &out_csv, "--late-output", &out_dotdot],
            "are the same file",
        ),
        // Checked before the broker is contacted (nothing listens on port 1).
        (
            vec![
                "replay",
                &in_holder_s,
                "--to",
                "kafka://127.0.0.1:1/counts",
                "--checkpoint-dir",
                &holder,
            ],
            "holds the input",
        ),
    ];
    for (args, says) in &cases {
        // A fresh copy of the log (and its links) for every case.
        std::fs::write(&log, &original).unwrap();
        std::fs::write(&in_holder, &original).unwrap();
        let _ = std::fs::remove_file(d.join("hard.log"));
        std::fs::hard_link(&log, d.join("hard.log")).unwrap();
        let _ = std::fs::remove_file(linked.join("state"));
        std::fs::hard_link(&log, linked.join("state")).unwrap();
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "weir {args:?}: {err}");
        assert!(err.contains(says), "weir {args:?}: {err}");
        assert_eq!(std::fs::read(&log).unwrap(), original, "weir {args:?}");
        assert_eq!(
            std::fs::read(&in_holder).unwrap(),
            original,
            "weir {args:?}"
        );
        assert_eq!(
            gunzip(&std::fs::read(&gz).unwrap()),
            original,
            "weir {args:?}"
        );
        for never in ["out.csv", "ck", "ck2"] {
            assert!(!d.join(never).exists(), "weir {args:?} created {never}");
        }
    }

    // stdout appended to the log (`weir replay x.log >> x.log`).
    let append = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let out = wait_at_most(
        weir()
            .args(["replay", x])
            .stdout(append)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        COMMAND_LIMIT,
        "weir replay x.log >> x.log",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("stdout is the input"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), original);

    // Two outputs of `serve` that are one file: refused before it listens.
    let same = d.join("serve.csv");
    let out = wait_at_most(
        weir()
            .args(["serve", "--listen", "127.0.0.1:0", "-o", s(&same)])
            .args(["--late-output", s(&same)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(30),
        "weir serve with one file as both outputs",
    );
    assert_eq!(out.status.code(), Some(2));

    // Devices may be both outputs, and distinct files are fine.
    run_ok(&["replay", x, "-o", "/dev/null", "--late-output", "/dev/null"]);
    let counts = d.join("counts.csv");
    run_ok(&["replay", x, "--output-format", "csv", "-o", s(&counts)]);
    assert_counts_eq(
        &parse_csv(&std::fs::read(&counts).unwrap(), 5000),
        &reference_of(&original),
        "distinct output",
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(data), &mut out).unwrap();
    out
}

/// Runs `weir args` with `data` written into `fifo` by another thread; returns its stdout.
fn through_fifo(fifo: &Path, data: Vec<u8>, args: &[&str]) -> Vec<u8> {
    let path = fifo.to_owned();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let _ = std::io::Write::write_all(&mut f, &data);
    });
    let out = run_ok(args);
    writer.join().unwrap();
    out.stdout
}

#[test]
fn non_regular_inputs_are_streamed() {
    let tmp = tempdir();
    let d = tmp.path();
    let log = gen_log(d, "x.log", 30_000);
    let bytes = std::fs::read(&log).unwrap();
    let expected = reference_of(&bytes);
    let csv = ["--output-format", "csv", "-q"];

    // A pipe on /dev/stdin (what `<(…)` gives as /dev/fd/N), with and without --format.
    for format in ["auto", "combined"] {
        let mut child = weir()
            .args(["replay", "/dev/stdin", "--format", format])
            .args(csv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = bytes.clone();
        let w = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &data);
        });
        let out = wait_at_most(child, COMMAND_LIMIT, "replay /dev/stdin");
        w.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_counts_eq(&parse_csv(&out.stdout, 5000), &expected, "/dev/stdin");
    }

    // A FIFO, plain and gzip.
    let fifo = d.join("in.fifo");
    mkfifo(&fifo);
    let out = through_fifo(
        &fifo,
        bytes.clone(),
        &[&["replay", s(&fifo)][..], &csv].concat(),
    );
    assert_counts_eq(&parse_csv(&out, 5000), &expected, "FIFO");
    let out = through_fifo(
        &fifo,
        gzip(&bytes),
        &[&["replay", s(&fifo)][..], &csv].concat(),
    );
    assert_counts_eq(&parse_csv(&out, 5000), &expected, "gzip through a FIFO");

    // `weir verify` reads a pipe too.
    let counts = d.join("counts.csv");
    run_ok(&[&["replay", s(&log), "-o", s(&counts)][..], &csv].concat());
    let out = through_fifo(
        &fifo,
        bytes.clone(),
        &["verify", "--input", s(&fifo), "--output", s(&counts)],
    );
    assert!(String::from_utf8_lossy(&out).contains("clean"));

    // Checkpoints need a file they can rewind: refused at once, with no writer on the FIFO.
    let (code, err) = run(&[
        "replay",
        s(&fifo),
        "--output-format",
        "csv",
        "-o",
        s(&d.join("out.csv")),
        "--checkpoint-dir",
        s(&d.join("ck")),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is a pipe") && err.contains("--checkpoint-dir needs a plain file"),
        "{err}"
    );
    assert!(!d.join("ck").exists());
}

/// Waits until process `pid` has `path` mapped (it is about to read it).
fn wait_until_mapped(pid: u32, path: &Path) {
    let name = path.canonicalize().unwrap();
    let name = name.to_str().unwrap();
    let deadline = Instant::now() + COMMAND_LIMIT;
    loop {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if maps.lines().any(|l| l.ends_with(name)) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never mapped");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "waits for the mapping through /proc/PID/maps"
)]
fn a_log_truncated_while_replayed_is_an_error_naming_it() {
    let tmp = tempdir();
    let d = tmp.path();
    let log = gen_log(d, "x.log", 30_000);
    let len = std::fs::metadata(&log).unwrap().len();
    for checkpoints in [false, true] {
        let out = d.join("out.csv");
        std::fs::write(&out, "an earlier run's output\n").unwrap();
        let mut args = vec![
            "replay",
            s(&log),
            "--output-format",
            "csv",
            "-o",
            s(&out),
            "--parse-threads",
            "1",
            "--chunk-bytes",
            "65536",
            // About 40 chunks to the cut below, 50 ms each: the cut comes first.
            "--test-chunk-delay",
            "50ms",
        ];
        let ck = d.join("ck");
        if checkpoints {
            args.extend(["--checkpoint-dir", s(&ck), "--checkpoint-interval", "100ms"]);
        }
        let child = weir()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Stopped as soon as it maps the log, truncated, then resumed: the cut comes before
        // the run reads far, whatever the machine's load (the chunk delay only slows it).
        wait_until_mapped(child.id(), &log);
        signal(child.id(), "-STOP");
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(len / 2).unwrap();
        signal(child.id(), "-CONT");
        let r = wait_at_most(child, COMMAND_LIMIT, "the truncated replay");
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "checkpoints {checkpoints}: {err}");
        assert!(
            err.contains(s(&log)) && err.contains("truncated"),
            "checkpoints {checkpoints}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "an earlier run's output\n",
            "checkpoints {checkpoints}"
        );
        let mut left = names(d);
        left.retain(|n| n != "ck");
        assert_eq!(left, ["out.csv", "x.log"], "checkpoints {checkpoints}");
        // The next round replays a whole log again.
        std::fs::remove_file(&log).unwrap();
        gen_log(d, "x.log", 30_000);
        let _ = std::fs::remove_dir_all(&ck);
    }
}

/// `weir args` with its file size limited to 50 KiB and SIGXFSZ ignored, so that writing past
/// it fails with EFBIG, like a full disk.
fn run_with_small_disk(args: &[&str]) -> (Option<i32>, String) {
    let out = output(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -f 100 && trap '' XFSZ && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_weir"))
            .args(args),
        "weir with a 50 KiB file size limit",
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failed_run_leaves_no_output_that_looks_complete() {
    let tmp = tempdir();
    let d = tmp.path();
    let work = d.join("work");
    std::fs::create_dir(&work).unwrap();
    let log = gen_log(d, "x.log", 120_000);
    let bytes = std::fs::read(&log).unwrap();
    let gz = gzip(&bytes);
    let cut = d.join("cut.log.gz");
    std::fs::write(&cut, &gz[..gz.len() * 3 / 4]).unwrap();
    let (out, late) = (work.join("out.csv"), work.join("late.csv"));
    let earlier = "an earlier run's output\n";

    // A truncated gzip: the error names it; the outputs are as they were.
    std::fs::write(&out, earlier).unwrap();
    std::fs::write(&late, earlier).unwrap();
    let (code, err) = run(&[
        "replay",
        s(&cut),
        "--output-format",
        "csv",
        "-o",
        s(&out),
        "--late-output",
        s(&late),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cut.log.gz"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), earlier);
    assert_eq!(std::fs::read_to_string(&late).unwrap(), earlier);
    assert_eq!(names(&work), ["late.csv", "out.csv"]);

    // A write error past 50 KiB (the output is ~1 MB): the error names the output; nothing is
    // left at its path. Then the same for `weir gen`.
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&late).unwrap();
    let (code, err) = run_with_small_disk(&["replay", s(&log), "-o", s(&out)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("out.csv"), "{err}");
    assert!(names(&work).is_empty(), "{:?}", names(&work));
    let big = work.join("big.log");
    let (code, err) = run_with_small_disk(&["gen", "--lines", "100000", "-o", s(&big)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("big.log"), "{err}");
    assert!(names(&work).is_empty(), "{:?}", names(&work));

    // And a run that succeeds writes the whole output.
    run_ok(&["replay", s(&log), "--output-format", "csv", "-o", s(&out)]);
    assert_counts_eq(
        &parse_csv(&std::fs::read(&out).unwrap(), 5000),
        &reference_of(&bytes),
        "after the failures",
    );
    assert_eq!(names(&work), ["out.csv"]);
}

#[test]
fn pipe_and_device_outputs_are_written_in_place() {
    let tmp = tempdir();
    let d = tmp.path();
    let log = gen_log(d, "x.log", 30_000);
    let expected = reference_of(&std::fs::read(&log).unwrap());
    let fifo = d.join("out.fifo");
    mkfifo(&fifo);
    for checkpoints in [false, true] {
        let path = fifo.clone();
        let reader = std::thread::spawn(move || std::fs::read(path).unwrap());
        let ck = d.join(format!("ck-{checkpoints}"));
        let mut args = vec!["replay", s(&log), "--output-format", "csv", "-o", s(&fifo)];
        if checkpoints {
            args.extend(["--checkpoint-dir", s(&ck)]);
        }
        run_ok(&args);
        // Still the FIFO (else the reader is left waiting on the one that was replaced).
        assert!(
            is_fifo(&fifo),
            "checkpoints {checkpoints}: the FIFO was replaced"
        );
        let got = reader.join().unwrap();
        assert_counts_eq(
            &parse_csv(&got, 5000),
            &expected,
            &format!("through a FIFO, checkpoints {checkpoints}"),
        );
    }
    let mut left = names(d);
    left.retain(|n| !n.starts_with("ck-"));
    assert_eq!(left, ["out.fifo", "x.log"]);
}
