//! The baseline weir must beat: a single-threaded, hand-written loop over the same file, the way
//! one would write this job without an engine. It maps the file, finds the client and the
//! timestamp of each line with `memchr`, counts `(window, client)` in a `HashMap`, and writes
//! the same CSV as `weir replay --output-format csv` (unsorted). Malformed lines are counted.
//!
//! ```text
//! cargo run --release -p weir-bench --bin baseline -- FILE [WINDOW_MS] > /dev/null
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

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

/// `dd/Mon/yyyy:HH:MM:SS +hhmm` (28 bytes after `[`) to epoch milliseconds.
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().expect("usage: baseline FILE [WINDOW_MS]");
    let window: i64 = args.get(1).map_or(5_000, |w| w.parse().expect("WINDOW_MS"));
    let start = Instant::now();
    let file = std::fs::File::open(path).expect("open");
    // SAFETY: read-only map of a file nobody writes during the benchmark.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
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
            .entry((ts - ts.rem_euclid(window), &line[..sp]))
            .or_default() += 1;
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "window_start,window_end,client,count").unwrap();
    for ((w, client), n) in &counts {
        out.write_all(format!("{w},{},", w + window).as_bytes())
            .unwrap();
        out.write_all(client).unwrap();
        writeln!(out, ",{n}").unwrap();
    }
    out.flush().unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "baseline: {lines} lines, {malformed} malformed, {} results in {secs:.2} s: {:.0} lines/s",
        counts.len(),
        lines as f64 / secs
    );
}
