//! `weir bench --file FILE`: how close a replay of FILE comes to the speed of reading it.
//!
//! ```text
//!  round r (order reversed every other round):
//!    wc -l FILE                                               ─┐ whole processes,
//!    weir replay FILE --output-format csv -o /dev/null -p N   ─┤ page cache warm
//!    weir replay FILE … -p 1 --parse-threads 1                ─┘ (each run reads all of it)
//!    read floor: N threads count the newlines of the mapped FILE (in process)
//! ```
//!
//! It prints the two ratios issue 13 sets targets for, each the median of per-round ratios of
//! runs made next to each other (which holds up on a shared machine far better than a ratio of
//! medians): `-p N` over `wc -l` (target ≤ 1.2) and `-p 1 --parse-threads 1` over `-p N`
//! (target ≥ 1.6), with the CPU seconds of every run (user + system, from the kernel's account
//! of the finished child) and the peak anonymous memory of the `-p N` replay (`RssAnon`, the
//! mapped file excluded, sampled every 2 ms from `/proc`; target < 256 MiB).
//!
//! The **read floor** says what the machine gives: N threads that only map the file and find
//! its newlines with `memchr` (what every parser thread must do at the least). A replay slower
//! than `wc -l` by much more than the floor is is bound by its own work, not by the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{describe, median, BenchError};

/// One whole-process run: wall time, CPU seconds, peak anonymous memory (KiB, 0 if unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    /// Wall seconds from spawn to exit.
    pub wall: f64,
    /// User + system seconds of the child.
    pub cpu: f64,
    /// Largest `RssAnon` seen, KiB.
    pub peak_anon_kib: u64,
}

/// What `weir bench --file` measured.
#[derive(Debug, Clone)]
pub struct LimitReport {
    /// The file.
    pub file: PathBuf,
    /// Its bytes and lines.
    pub bytes: u64,
    /// Lines (from the read floor's count).
    pub lines: u64,
    /// Parallelism of the fast replay.
    pub parallelism: usize,
    /// Runs of `wc -l`, `-p N`, `-p 1 --parse-threads 1`, in round order.
    pub wc: Vec<Run>,
    /// See `wc`.
    pub fast: Vec<Run>,
    /// See `wc`.
    pub single: Vec<Run>,
    /// Seconds of the in-process read floor, per round.
    pub floor: Vec<f64>,
    /// Median of per-round `fast / wc` wall ratios.
    pub fast_vs_wc: f64,
    /// Median of per-round `single / fast` wall ratios.
    pub speedup: f64,
    /// 1-minute load average before and after.
    pub load: (Vec<f64>, Vec<f64>),
}

/// Runs `command` with stdout and stderr discarded, sampling its `RssAnon` while it runs.
fn run_sampled(command: &mut Command) -> Result<Run, BenchError> {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let described = describe(command);
    let fail = |status: String, stderr: String| BenchError::Child {
        command: described.clone(),
        status,
        stderr,
    };
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| fail("not started".into(), e.to_string()))?;
    let pid = child.id();
    let done = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let status = std::thread::scope(|s| {
        s.spawn(|| {
            let path = format!("/proc/{pid}/status");
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = std::fs::read_to_string(&path).ok().and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("RssAnon:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                }) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let status = wait_with_cpu(&mut child);
        done.store(true, Ordering::Relaxed);
        status
    });
    let wall = start.elapsed().as_secs_f64();
    let (status, cpu) = status.map_err(|e| fail("lost".into(), e.to_string()))?;
    if !status.success() {
        return Err(fail(status.to_string(), "(stderr discarded)".into()));
    }
    Ok(Run {
        wall,
        cpu,
        peak_anon_kib: peak.load(Ordering::Relaxed),
    })
}

/// Waits for `child` and returns its exit status and CPU seconds (user + system), from
/// `wait4`'s resource usage of that child alone.
#[cfg(unix)]
fn wait_with_cpu(
    child: &mut std::process::Child,
) -> std::io::Result<(std::process::ExitStatus, f64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; a zeroed one is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child by its pid, writing into two locals that outlive
        // the call. The child is reaped here, so `child` must not be waited for again.
        let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        if r >= 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        std::process::ExitStatus::from_raw(status),
        secs(usage.ru_utime) + secs(usage.ru_stime),
    ))
}

/// Elsewhere: the exit status, and no CPU time (0).
#[cfg(not(unix))]
fn wait_with_cpu(
    child: &mut std::process::Child,
) -> std::io::Result<(std::process::ExitStatus, f64)> {
    Ok((child.wait()?, 0.0))
}

/// N threads count the newlines of `file`, mapped, 1 MiB chunks taken from a shared counter
/// (as replay's parser threads take them): returns the seconds and the line count.
fn read_floor(file: &Path, threads: usize) -> Result<(f64, u64), BenchError> {
    let t = Instant::now();
    let map = weir_io::source::MappedFile::open(file).map_err(|e| BenchError::Child {
        command: format!("mapping {}", file.display()),
        status: "failed".into(),
        stderr: e.to_string(),
    })?;
    let chunk = weir_io::source::DEFAULT_CHUNK_BYTES;
    let next = AtomicU64::new(0);
    let lines = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(r) = map.chunk(i, chunk) else { break };
                let n = memchr::memchr_iter(b'\n', &map.bytes()[r]).count();
                lines.fetch_add(n as u64, Ordering::Relaxed);
            });
        }
    });
    drop(map);
    Ok((t.elapsed().as_secs_f64(), lines.load(Ordering::Relaxed)))
}

/// Measures `file` over `rounds` rounds at parallelism `p`; `progress` hears of each step.
pub fn run(
    weir_exe: &Path,
    file: &Path,
    p: usize,
    rounds: usize,
    progress: &dyn Fn(String),
) -> Result<LimitReport, BenchError> {
    let bytes = std::fs::metadata(file)
        .map_err(|source| BenchError::Io {
            path: file.to_owned(),
            source,
        })?
        .len();
    let load_start = super::load_average();
    let replay = |threads: usize| super::replay_command(weir_exe, file, threads);
    // Warm-up: the file into the page cache, the binaries into memory.
    progress("warm-up".into());
    run_sampled(Command::new("wc").arg("-l").arg(file))?;
    run_sampled(&mut replay(p))?;
    let (mut wc, mut fast, mut single, mut floor) = (vec![], vec![], vec![], vec![]);
    let mut lines = 0;
    for round in 0..rounds.max(1) {
        let mut order = [0, 1, 2, 3];
        if round % 2 == 1 {
            order.reverse();
        }
        for which in order {
            match which {
                0 => {
                    progress(format!("round {}: wc -l", round + 1));
                    wc.push(run_sampled(Command::new("wc").arg("-l").arg(file))?);
                }
                1 => {
                    progress(format!("round {}: replay -p {p}", round + 1));
                    fast.push(run_sampled(&mut replay(p))?);
                }
                2 => {
                    progress(format!("round {}: replay -p 1", round + 1));
                    single.push(run_sampled(&mut replay(1))?);
                }
                _ => {
                    progress(format!("round {}: read floor", round + 1));
                    let (s, n) = read_floor(file, p)?;
                    floor.push(s);
                    lines = n;
                }
            }
        }
    }
    let ratios = |a: &[Run], b: &[Run]| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a.wall / b.wall).collect()
    };
    Ok(LimitReport {
        file: file.to_owned(),
        bytes,
        lines,
        parallelism: p,
        fast_vs_wc: median(&ratios(&fast, &wc)),
        speedup: median(&ratios(&single, &fast)),
        wc,
        fast,
        single,
        floor,
        load: (load_start, super::load_average()),
    })
}

/// The report as a Markdown table and the two ratios against their targets.
pub fn table(r: &LimitReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let load = |l: &[f64]| l.first().map_or("unknown".into(), |x| format!("{x:.2}"));
    let _ = writeln!(
        s,
        "weir bench --file {}: {} lines, {:.1} MB; weir {}, {} cores, load average {} → {}; {} \
         round(s), medians; whole processes, page cache warm, CSV to /dev/null\n",
        r.file.display(),
        crate::units::thousands(r.lines),
        r.bytes as f64 / 1e6,
        crate::VERSION,
        super::cores(),
        load(&r.load.0),
        load(&r.load.1),
        r.wc.len(),
    );
    s.push_str(
        "| command | wall s | cpu s | GB/s | peak RssAnon MiB |\n|---|---:|---:|---:|---:|\n",
    );
    let p = r.parallelism;
    let rows: [(String, &[Run]); 3] = [
        ("wc -l FILE".into(), &r.wc),
        (
            format!("weir replay FILE --output-format csv -o /dev/null -p {p} --parse-threads {p}"),
            &r.fast,
        ),
        ("same, -p 1 --parse-threads 1".into(), &r.single),
    ];
    for (name, runs) in rows {
        let wall = median(&runs.iter().map(|x| x.wall).collect::<Vec<_>>());
        let cpu = median(&runs.iter().map(|x| x.cpu).collect::<Vec<_>>());
        let peak = runs.iter().map(|x| x.peak_anon_kib).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "| {name} | {wall:.3} | {cpu:.3} | {:.2} | {} |",
            r.bytes as f64 / wall / 1e9,
            if peak == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}", peak as f64 / 1024.0)
            },
        );
    }
    let floor = median(&r.floor);
    let _ = writeln!(
        s,
        "| read floor: {p} threads find the newlines of the mapped file (in process) | {floor:.3} \
         |  | {:.2} |  |",
        r.bytes as f64 / floor / 1e9
    );
    let _ = writeln!(
        s,
        "\n-p {p} / wc -l (paired wall ratio, target ≤ 1.20): {:.2}\n-p 1 / -p {p} (paired wall \
         ratio, target ≥ 1.60): {:.2}",
        r.fast_vs_wc, r.speedup
    );
    for w in [&r.load.0, &r.load.1]
        .into_iter()
        .zip(["at the start", "at the end"])
        .filter_map(|(l, when)| super::load_warning(l, super::cores(), when))
    {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The read floor counts every line, whatever the chunk boundaries and thread count: checked
    /// against a plain byte count of the same file.
    #[test]
    fn read_floor_counts_every_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut text = Vec::new();
        for i in 0..40_000u32 {
            text.extend(std::iter::repeat_n(b'x', (i as usize * 31) % 200));
            text.push(b'\n');
        }
        std::fs::write(&path, &text).unwrap();
        let want = text.iter().filter(|&&b| b == b'\n').count() as u64;
        for threads in [1, 2, 3] {
            assert_eq!(
                read_floor(&path, threads).unwrap().1,
                want,
                "{threads} threads"
            );
        }
    }

    /// A child's wall and CPU time and its exit status come back; a failing child is an error
    /// naming the command.
    #[test]
    fn run_sampled_times_a_child_and_reports_failure() {
        let r = run_sampled(
            Command::new("sh").args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"]),
        )
        .unwrap();
        assert!(r.wall > 0.0 && r.cpu > 0.0, "{r:?}");
        let e = run_sampled(Command::new("sh").args(["-c", "exit 3"])).unwrap_err();
        assert!(e.to_string().contains("exit 3"), "{e}");
    }
}
