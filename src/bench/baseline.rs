//! The yardstick: a single-threaded, hand-written loop over the same file, the way one would
//! write this job without an engine. It maps the file, finds the client and the timestamp of
//! each line with `memchr`, counts `(window, client)` in a `HashMap`, and writes the same CSV as
//! `weir replay --output-format csv` (unsorted). Malformed lines are counted, not shown.
//!
//! `weir bench` runs it as a child process (`weir bench --baseline-child FILE`), alternating with
//! the `weir replay` runs it is compared with, so both pay for a process start and a map of the
//! file; `target/release/baseline FILE` (crate weir-bench) runs the same function.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// What the baseline counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineCount {
    /// Lines read.
    pub lines: u64,
    /// Lines without a client or a valid timestamp.
    pub malformed: u64,
    /// `(window, client)` rows written.
    pub results: usize,
}

fn num(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// `dd/Mon/yyyy:HH:MM:SS +hhmm` (the bytes after `[`) to epoch milliseconds.
fn timestamp(t: &[u8]) -> Option<i64> {
    if t.len() < 26 || t[2] != b'/' || t[6] != b'/' || t[11] != b':' || t[20] != b' ' {
        return None;
    }
    let month = MONTHS.iter().position(|m| &t[3..6] == *m)? as i64 + 1;
    let days = days_from_civil(num(&t[7..11])?, month, num(&t[0..2])?);
    let secs = days * 86_400 + num(&t[12..14])? * 3600 + num(&t[15..17])? * 60 + num(&t[18..20])?;
    let off = num(&t[22..24])? * 3600 + num(&t[24..26])? * 60;
    let off = if t[21] == b'-' { -off } else { off };
    Some((secs - off) * 1000)
}

/// Counts the requests per client per `window_ms` window of the combined or common log at
/// `path` and writes `window_start,window_end,client,count` rows (with a header) to `out`.
pub fn count_file(path: &Path, window_ms: i64, out: &mut impl Write) -> io::Result<BaselineCount> {
    let file = std::fs::File::open(path)?;
    // SAFETY: a read-only map of a file that nothing writes while the benchmark runs (it
    // generated the file itself, or was handed one by its user for that purpose).
    let map = unsafe { memmap2::Mmap::map(&file) }?;
    let data: &[u8] = &map;
    let mut counts: HashMap<(i64, &[u8]), u64> = HashMap::new();
    let (mut lines, mut malformed) = (0u64, 0u64);
    let mut pos = 0;
    while pos < data.len() {
        let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
        let line = &data[pos..end];
        pos = end + 1;
        lines += 1;
        let Some(sp) = memchr::memchr(b' ', line).filter(|&i| i > 0) else {
            malformed += 1;
            continue;
        };
        let ts = memchr::memchr(b'[', &line[sp..]).and_then(|i| timestamp(&line[sp + i + 1..]));
        let Some(ts) = ts else {
            malformed += 1;
            continue;
        };
        *counts
            .entry((ts - ts.rem_euclid(window_ms), &line[..sp]))
            .or_default() += 1;
    }
    writeln!(out, "window_start,window_end,client,count")?;
    for ((w, client), n) in &counts {
        write!(out, "{w},{},", w + window_ms)?;
        out.write_all(client)?;
        writeln!(out, ",{n}")?;
    }
    out.flush()?;
    Ok(BaselineCount {
        lines,
        malformed,
        results: counts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_window_and_client() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(
            &log,
            "1.2.3.4 - - [12/May/2024:00:00:01 +0000] \"GET / HTTP/1.1\" 200 1\n\
             1.2.3.4 - - [12/May/2024:00:00:04 +0000] \"GET / HTTP/1.1\" 200 1\n\
             5.6.7.8 - - [12/May/2024:02:00:06 +0200] \"GET / HTTP/1.1\" 200 1\n\
             garbage\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let c = count_file(&log, 5_000, &mut out).unwrap();
        assert_eq!((c.lines, c.malformed, c.results), (4, 1, 2));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("1715472000000,1715472005000,1.2.3.4,2\n"),
            "{text}"
        );
        assert!(
            text.contains("1715472005000,1715472010000,5.6.7.8,1\n"),
            "{text}"
        );
    }
}
