//! Deterministic synthetic access logs, for tests and benchmarks.
//!
//! [`generate`] writes `lines` lines in one of the three [`LogFormat`]s. The same [`GenOptions`]
//! always give the same bytes: all randomness comes from one seeded [`SplitMix64`] stream, and
//! nothing depends on the clock, the platform or the thread.
//!
//! # What the lines look like
//!
//! * **Clients** follow a Zipf-like popularity over `clients` ranks: rank `⌊N^u⌋` for `u`
//!   uniform in `[0, 1)`, which is the continuous Zipf law with exponent 1 (rank 1 is drawn
//!   about `ln 2 / ln N` of the time) at the cost of one `exp` instead of a CDF table that would
//!   not fit in memory for millions of clients. Each rank maps to a fixed address through a hash:
//!   an `ipv6` share of the ranks (3 % by default) IPv6 (`2001:db8:…`), 0.5 % host names, the
//!   rest IPv4.
//! * **Event time** advances at `rate` lines per second from `start_ms`. Each valid line steps back
//!   by a uniform jitter in `[0, out_of_order_ms]`; after truncation to whole seconds the written
//!   time is clamped so that it is never more than `out_of_order_ms` behind the largest time
//!   written before it (the bound a watermark with that out-of-orderness relies on).
//! * **Requests** are drawn from fixed lists of methods, paths (with numeric ids), statuses,
//!   sizes (`-` for a 304), referers and user agents; all timestamps are written in `+0000`.
//! * **Line length**: the lists above give combined lines of about 180 bytes. With `line_bytes`
//!   set, valid lines carry a tracking parameter (`&sid=` and hex digits) at the end of their
//!   path, as real logs often do, of a random length whose mean keeps the running mean line
//!   length at `line_bytes` (lines vary around it; the mean over the file lands within a byte).
//! * **Malformed lines**, a `malformed` fraction of them, are broken in ways the parser must
//!   reject: orphan fragments (` "curl/7.54.0"`), an empty first field, an invalid or missing
//!   timestamp (simple format: an invalid time, an empty client). [`GenSummary::malformed`] counts
//!   them exactly.
//!
//! Lines are formatted by hand (digits written directly) into one reused buffer that is handed to
//! the writer in 1 MiB pieces, so the writer needs no buffering of its own.

use std::io::{self, Write};

use crate::parse::timestamp::{civil_from_days, MONTH_NAMES, MS_PER_DAY};
use crate::parse::LogFormat;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Number of lines, malformed ones included.
    pub lines: u64,
    /// Number of distinct client ranks (at least 1).
    pub clients: u64,
    /// Lines per second of event time (> 0).
    pub rate: f64,
    /// Seed of the random stream.
    pub seed: u64,
    /// Line format.
    pub format: LogFormat,
    /// Largest step back in event time, in milliseconds (0: timestamps never decrease).
    pub out_of_order_ms: u64,
    /// Fraction of malformed lines, in `[0, 1]`.
    pub malformed: f64,
    /// Event time of the first line, milliseconds since the epoch.
    pub start_ms: i64,
    /// Share of client ranks whose address is IPv6, in `[0, 0.995]` (the default 0.03).
    pub ipv6: f64,
    /// Mean line length to pad valid lines to (see the module doc); `None`: no padding.
    pub line_bytes: Option<u64>,
}

impl Default for GenOptions {
    /// 1,000 combined lines from 1,000 clients at 1,000 lines/s, in order, none malformed,
    /// starting 2024-05-12 00:00:00 UTC, seed 1.
    fn default() -> Self {
        GenOptions {
            lines: 1_000,
            clients: 1_000,
            rate: 1_000.0,
            seed: 1,
            format: LogFormat::Combined,
            out_of_order_ms: 0,
            malformed: 0.0,
            start_ms: 1_715_472_000_000,
            ipv6: 0.03,
            line_bytes: None,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenSummary {
    /// Lines written.
    pub lines: u64,
    /// Malformed lines among them.
    pub malformed: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Smallest and largest event time written on a valid line (ms; 0 when there is none).
    pub min_ts_ms: i64,
    /// See `min_ts_ms`.
    pub max_ts_ms: i64,
}

/// A small, fast, seedable PRNG (SplitMix64): good enough for test data, not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A number in `0..n` (`n` > 0), by multiply-shift (bias below 2⁻³² for small `n`).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A float uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64's finaliser: a bijective 64-bit mix.
#[inline]
const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const METHODS: [(&str, u64); 5] = [
    ("GET", 850),
    ("POST", 100),
    ("HEAD", 30),
    ("PUT", 12),
    ("DELETE", 8),
];
/// Path pieces: prefix, whether a numeric id follows, suffix.
const PATHS: [(&str, bool, &str); 12] = [
    ("/", false, ""),
    ("/index.html", false, ""),
    ("/api/v1/items/", true, ""),
    ("/api/v1/users/", true, "/orders?page=2"),
    ("/static/js/app.", true, ".js"),
    ("/images/logo.png", false, ""),
    ("/search?q=weir+", true, "&lang=en"),
    ("/login", false, ""),
    ("/wp-login.php", false, ""),
    ("/favicon.ico", false, ""),
    ("/robots.txt", false, ""),
    ("/erddap/tabledap/allDatasets.csv?datasetID", false, ""),
];
const STATUSES: [(u16, u64); 7] = [
    (200, 780),
    (304, 80),
    (404, 60),
    (301, 30),
    (302, 25),
    (500, 15),
    (403, 10),
];
const REFERERS: [&str; 4] = [
    "-",
    "https://www.google.com/",
    "https://example.com/index.html",
    "https://news.ycombinator.com/item?id=4242",
];
const USER_AGENTS: [&str; 7] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "curl/7.54.0",
    "python-requests/2.28.1",
    "Go-http-client/1.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const HOST_DOMAINS: [&str; 3] = ["example.net", "dialup.example.org", "crawl.example.com"];

/// Picks from a weighted table.
fn weighted<T: Copy>(rng: &mut SplitMix64, table: &[(T, u64)]) -> T {
    let total: u64 = table.iter().map(|&(_, w)| w).sum();
    let mut x = rng.below(total);
    for &(v, w) in table {
        if x < w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// Appends the decimal digits of `v`.
#[inline]
fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `v` in lower-case hex without leading zeros.
fn put_hex(buf: &mut Vec<u8>, v: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let d = (v >> shift) & 0xf;
        if d != 0 || started || shift == 0 {
            buf.push(HEX[d as usize]);
            started = true;
        }
    }
}

/// How client ranks map to addresses: a seed's salt and the per-mille shares of the kinds.
#[derive(Debug, Clone, Copy)]
struct Clients {
    salt: u64,
    /// Ranks whose hash mod 1000 is below this are IPv6; the next 5 are host names.
    ipv6_permille: u64,
}

/// Appends the address of client `rank`: fixed for a given seed and IPv6 share.
fn put_client(buf: &mut Vec<u8>, rank: u64, clients: Clients) {
    let h = mix64(rank ^ clients.salt);
    let v6 = clients.ipv6_permille;
    match h % 1000 {
        k if k < v6 => {
            buf.extend_from_slice(b"2001:db8:");
            put_hex(buf, (h >> 16) as u16);
            buf.push(b':');
            put_hex(buf, (h >> 32) as u16);
            buf.extend_from_slice(b"::");
            put_hex(buf, (h >> 48) as u16);
        }
        k if k < v6 + 5 => {
            buf.extend_from_slice(b"host-");
            put_u64(buf, rank);
            buf.push(b'.');
            buf.extend_from_slice(HOST_DOMAINS[(h >> 20) as usize % HOST_DOMAINS.len()].as_bytes());
        }
        _ => {
            // First octet 1..=223 (no 0.x, no multicast), the others anything.
            put_u64(buf, (h >> 10) % 223 + 1);
            for shift in [24, 32, 40] {
                buf.push(b'.');
                put_u64(buf, (h >> shift) & 0xff);
            }
        }
    }
}

/// Formats whole seconds as `dd/Mon/yyyy:HH:MM:SS +0000` (26 bytes), remembering the last one.
struct TimeFormatter {
    sec: i64,
    text: [u8; 26],
}

impl TimeFormatter {
    fn new() -> Self {
        TimeFormatter {
            sec: i64::MIN,
            text: [0; 26],
        }
    }

    fn format(&mut self, sec: i64) -> &[u8; 26] {
        if sec != self.sec {
            let days = sec.div_euclid(86_400);
            let of_day = sec.rem_euclid(86_400) as u32;
            let (y, m, d) = civil_from_days(days);
            let y = y.clamp(0, 9999) as u32;
            let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
            let t = &mut self.text;
            t[0..2].copy_from_slice(&two(d));
            t[2] = b'/';
            t[3..6].copy_from_slice(MONTH_NAMES[m as usize - 1]);
            t[6] = b'/';
            t[7..9].copy_from_slice(&two(y / 100));
            t[9..11].copy_from_slice(&two(y % 100));
            t[11] = b':';
            t[12..14].copy_from_slice(&two(of_day / 3600));
            t[14] = b':';
            t[15..17].copy_from_slice(&two(of_day / 60 % 60));
            t[17] = b':';
            t[18..20].copy_from_slice(&two(of_day % 60));
            t[20..26].copy_from_slice(b" +0000");
            self.sec = sec;
        }
        &self.text
    }
}

/// Flush the line buffer to the writer at this size.
const WRITE_CHUNK: usize = 1 << 20;

/// Writes `opts.lines` synthetic lines to `w`. Deterministic: the same options give the same
/// bytes.
pub fn generate(opts: &GenOptions, w: &mut impl Write) -> io::Result<GenSummary> {
    let mut rng = SplitMix64::new(opts.seed);
    let addresses = Clients {
        salt: mix64(opts.seed ^ 0x5EED_C11E),
        ipv6_permille: (opts.ipv6.clamp(0.0, 0.995) * 1000.0).round() as u64,
    };
    let mut padding = opts.line_bytes.map(|target| Padding {
        target,
        lines: 0,
        bytes: 0,
    });
    let clients = opts.clients.max(1);
    let ln_clients = (clients as f64).ln();
    let ms_per_line = if opts.rate > 0.0 {
        1000.0 / opts.rate
    } else {
        0.0
    };
    let malformed = opts.malformed.clamp(0.0, 1.0);
    let mut clock = TimeFormatter::new();
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK + 16 * 1024);
    let mut summary = GenSummary::default();
    let mut max_written_ms = i64::MIN;
    let mut min_written_ms = i64::MAX;

    for i in 0..opts.lines {
        let base_ms = opts.start_ms + (i as f64 * ms_per_line) as i64;
        let bad = malformed > 0.0 && rng.unit() < malformed;

        // Event time, whole seconds, never more than `out_of_order_ms` behind the maximum.
        let jitter = if opts.out_of_order_ms > 0 {
            rng.below(opts.out_of_order_ms + 1) as i64
        } else {
            0
        };
        let mut sec = (base_ms - jitter).div_euclid(1000);
        if max_written_ms != i64::MIN {
            let floor_ms = max_written_ms - opts.out_of_order_ms as i64;
            if sec * 1000 < floor_ms {
                sec = (floor_ms + 999).div_euclid(1000);
            }
        }

        let rank = ((ln_clients * rng.unit()).exp() as u64).clamp(1, clients) - 1;
        let start = buf.len();
        if bad {
            summary.malformed += 1;
            write_malformed(
                &mut buf,
                &mut rng,
                opts.format,
                rank,
                addresses,
                clock.format(sec),
            );
        } else {
            let path_end = write_line(
                &mut buf,
                &mut rng,
                opts.format,
                rank,
                addresses,
                clock.format(sec),
            );
            if let (Some(p), Some(end)) = (&mut padding, path_end) {
                p.pad(&mut buf, start, end, &mut rng);
            }
            max_written_ms = max_written_ms.max(sec * 1000);
            min_written_ms = min_written_ms.min(sec * 1000);
        }
        summary.bytes += (buf.len() - start) as u64;
        summary.lines += 1;
        if buf.len() >= WRITE_CHUNK {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    w.flush()?;
    if max_written_ms != i64::MIN {
        summary.min_ts_ms = min_written_ms;
        summary.max_ts_ms = max_written_ms;
    }
    Ok(summary)
}

/// [`generate`] into memory.
pub fn generate_vec(opts: &GenOptions) -> (Vec<u8>, GenSummary) {
    let mut out = Vec::new();
    let summary = generate(opts, &mut out).expect("writing to a Vec cannot fail");
    (out, summary)
}

/// Appends one valid line; returns the offset in `buf` where its path ends (`None`: the simple
/// format has no path).
fn write_line(
    buf: &mut Vec<u8>,
    rng: &mut SplitMix64,
    format: LogFormat,
    rank: u64,
    clients: Clients,
    time: &[u8; 26],
) -> Option<usize> {
    if format == LogFormat::Simple {
        buf.extend_from_slice(&time[12..20]);
        buf.push(b' ');
        put_client(buf, rank, clients);
        buf.push(b'\n');
        return None;
    }
    put_client(buf, rank, clients);
    buf.extend_from_slice(b" - - [");
    buf.extend_from_slice(time);
    buf.extend_from_slice(b"] \"");
    buf.extend_from_slice(weighted(rng, &METHODS).as_bytes());
    buf.push(b' ');
    let (prefix, id, suffix) = PATHS[rng.below(PATHS.len() as u64) as usize];
    buf.extend_from_slice(prefix.as_bytes());
    if id {
        put_u64(buf, rng.below(100_000));
    }
    buf.extend_from_slice(suffix.as_bytes());
    let path_end = buf.len();
    buf.extend_from_slice(b" HTTP/1.1\" ");
    let status = weighted(rng, &STATUSES);
    put_u64(buf, status as u64);
    buf.push(b' ');
    if status == 304 {
        buf.push(b'-');
    } else {
        // Sizes spread over orders of magnitude: 10^(1..6) times a mantissa.
        let magnitude = 10u64.pow(1 + rng.below(5) as u32);
        put_u64(buf, magnitude + rng.below(magnitude * 9));
    }
    if format == LogFormat::Combined {
        buf.extend_from_slice(b" \"");
        buf.extend_from_slice(REFERERS[rng.below(REFERERS.len() as u64) as usize].as_bytes());
        buf.extend_from_slice(b"\" \"");
        let ua = USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize];
        buf.extend_from_slice(ua.as_bytes());
        buf.push(b'"');
    }
    buf.push(b'\n');
    Some(path_end)
}

/// Pads valid lines so that the running mean line length stays at a target ([`GenOptions::line_bytes`]).
struct Padding {
    target: u64,
    /// Valid lines written so far and their bytes.
    lines: u64,
    bytes: u64,
}

impl Padding {
    /// Inserts a tracking parameter at `path_end` of the line `buf[start..]` that was just
    /// written: a random length, on average what brings the running mean to the target.
    fn pad(&mut self, buf: &mut Vec<u8>, start: usize, path_end: usize, rng: &mut SplitMix64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let natural = (buf.len() - start) as u64;
        let want = (self.target * (self.lines + 1)).saturating_sub(self.bytes + natural);
        let n = if want > 0 {
            rng.below(2 * want + 1) as usize
        } else {
            0
        };
        // `?sid=` or `&sid=` and at least one digit; a shorter draw adds nothing (the running
        // mean makes up for it on the next lines).
        if n >= 6 {
            let sep = if buf[start..path_end].contains(&b'?') {
                b'&'
            } else {
                b'?'
            };
            let mut tag = Vec::with_capacity(n);
            tag.push(sep);
            tag.extend_from_slice(b"sid=");
            let mut bits = rng.next_u64();
            for i in 0..n - 5 {
                if i % 16 == 15 {
                    bits = rng.next_u64();
                }
                tag.push(HEX[(bits & 0xf) as usize]);
                bits >>= 4;
            }
            buf.splice(path_end..path_end, tag);
        }
        self.lines += 1;
        self.bytes += (buf.len() - start) as u64;
    }
}

/// Appends one line the parser must reject.
fn write_malformed(
    buf: &mut Vec<u8>,
    rng: &mut SplitMix64,
    format: LogFormat,
    rank: u64,
    clients: Clients,
    time: &[u8; 26],
) {
    let kind = rng.below(4);
    if format == LogFormat::Simple {
        match kind {
            // A leading space: no time at the start.
            0 => {
                buf.push(b' ');
                buf.extend_from_slice(&time[12..20]);
                buf.push(b' ');
                put_client(buf, rank, clients);
            }
            // No client.
            1 => {
                buf.extend_from_slice(&time[12..20]);
                buf.push(b' ');
            }
            // Hour 24.
            2 => {
                buf.extend_from_slice(b"24");
                buf.extend_from_slice(&time[14..20]);
                buf.push(b' ');
                put_client(buf, rank, clients);
            }
            _ => buf.extend_from_slice(b"-- connection reset --"),
        }
        buf.push(b'\n');
        return;
    }
    match kind {
        // An orphan fragment: the tail of a line split by a stray newline.
        0 => {
            buf.extend_from_slice(b" \"");
            let ua = USER_AGENTS[rng.below(USER_AGENTS.len() as u64) as usize];
            buf.extend_from_slice(ua.as_bytes());
            buf.extend_from_slice(b"\"\n");
        }
        // An empty first field on an otherwise valid line.
        1 => {
            let start = buf.len();
            write_line(buf, rng, format, rank, clients, time);
            let end = start + buf[start..].iter().position(|&b| b == b' ').unwrap_or(0);
            buf.drain(start..end);
        }
        // An invalid month.
        2 => {
            let start = buf.len();
            write_line(buf, rng, format, rank, clients, time);
            let lb = start + buf[start..].iter().position(|&b| b == b'[').unwrap_or(0);
            buf[lb + 4..lb + 7].copy_from_slice(b"Xyz");
        }
        // No brackets around the timestamp.
        _ => {
            put_client(buf, rank, clients);
            buf.extend_from_slice(b" - - ");
            buf.extend_from_slice(time);
            buf.extend_from_slice(b" \"GET / HTTP/1.1\" 200 1\n");
        }
    }
}

/// The day number (days since the epoch) of `ms`, for the simple format's date.
pub fn day_of(ms: i64) -> i32 {
    ms.div_euclid(MS_PER_DAY) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_all, Columns, ParseOptions};
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;

    fn opts(format: LogFormat) -> GenOptions {
        GenOptions {
            lines: 20_000,
            clients: 500,
            rate: 2_000.0,
            seed: 7,
            format,
            out_of_order_ms: 2_000,
            malformed: 0.05,
            // 01:00 UTC: the simple format has no date, so stay clear of midnight.
            start_ms: 1_715_475_600_000,
            ipv6: 0.03,
            line_bytes: None,
        }
    }

    #[test]
    fn deterministic() {
        let (a, sa) = generate_vec(&opts(LogFormat::Combined));
        let (b, sb) = generate_vec(&opts(LogFormat::Combined));
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(sa.bytes, a.len() as u64);
        let (c, _) = generate_vec(&GenOptions {
            seed: 8,
            ..opts(LogFormat::Combined)
        });
        assert_ne!(a, c);
    }

    /// Parses generated output and checks it against the summary and the options.
    fn check(format: LogFormat) {
        let o = opts(format);
        let (bytes, summary) = generate_vec(&o);
        assert_eq!(
            bytes.iter().filter(|&&b| b == b'\n').count() as u64,
            o.lines
        );
        let mut popts = ParseOptions::new(format).with_columns(Columns::ts_client());
        popts.simple_date_days = day_of(o.start_ms);
        let (batches, stats) = parse_all(&bytes, popts).unwrap();
        assert_eq!(stats.lines, o.lines);
        assert_eq!(stats.malformed, summary.malformed);
        assert_eq!(stats.rows, o.lines - summary.malformed);
        // The fraction is close to the requested one: 5 % of 20,000 has a standard deviation of
        // about 31 lines.
        let frac = summary.malformed as f64 / o.lines as f64;
        assert!(
            (frac - o.malformed).abs() < 0.01,
            "malformed fraction {frac}"
        );

        let mut max = i64::MIN;
        let mut late = 0;
        let mut clients = std::collections::HashMap::new();
        for batch in &batches {
            let ts = batch.column(0).as_primitive::<TimestampMillisecondType>();
            for (t, c) in ts
                .values()
                .iter()
                .zip(batch.column(1).as_string::<i32>().iter())
            {
                assert!(
                    *t >= max.saturating_sub(o.out_of_order_ms as i64),
                    "{t} is more than the bound behind {max}"
                );
                late += (*t < max) as u32;
                max = max.max(*t);
                *clients.entry(c.unwrap().to_owned()).or_insert(0u32) += 1;
            }
        }
        assert_eq!(max, summary.max_ts_ms);
        // Out-of-order lines exist, and time advanced at the rate (±1 s of jitter and rounding).
        assert!(late > 100, "{late} out-of-order lines");
        let span = o.lines as f64 / o.rate * 1000.0;
        assert!((summary.max_ts_ms - o.start_ms - span as i64).abs() <= 2_000);
        // Zipf-like: the most popular client is far above the mean, the set is large.
        let top = *clients.values().max().unwrap() as f64;
        let mean = stats.rows as f64 / clients.len() as f64;
        assert!(top > 10.0 * mean, "top {top}, mean {mean}");
        assert!(clients.len() > 200);
        if format != LogFormat::Simple {
            let v6 = clients.keys().filter(|c| c.contains(':')).count();
            assert!(v6 > 0, "no IPv6 client among {}", clients.len());
        }
    }

    #[test]
    fn combined_parses_back() {
        check(LogFormat::Combined);
    }

    #[test]
    fn common_parses_back() {
        check(LogFormat::Common);
    }

    #[test]
    fn simple_parses_back() {
        check(LogFormat::Simple);
    }

    #[test]
    fn in_order_without_jitter() {
        let o = GenOptions {
            out_of_order_ms: 0,
            malformed: 0.0,
            ..opts(LogFormat::Combined)
        };
        let (bytes, summary) = generate_vec(&o);
        let (batches, stats) = parse_all(&bytes, ParseOptions::default()).unwrap();
        assert_eq!((stats.malformed, summary.malformed), (0, 0));
        let mut prev = i64::MIN;
        for b in &batches {
            for &t in b
                .column(0)
                .as_primitive::<TimestampMillisecondType>()
                .values()
            {
                assert!(t >= prev);
                prev = t;
            }
        }
        // All columns are present on generated lines.
        assert_eq!(batches[0].column(7).null_count(), 0);
    }

    /// `ipv6` and `line_bytes` give what they say, counted independently of the generator (the
    /// parser reads the file back), and leave the lines valid.
    #[test]
    fn ipv6_share_and_padded_line_length() {
        let o = GenOptions {
            lines: 50_000,
            clients: 20_000,
            ipv6: 0.10,
            line_bytes: Some(210),
            ..opts(LogFormat::Combined)
        };
        let (bytes, summary) = generate_vec(&o);
        let popts = ParseOptions::new(LogFormat::Combined).with_columns(Columns::ts_client());
        let (batches, stats) = parse_all(&bytes, popts).unwrap();
        assert_eq!(stats.malformed, summary.malformed);
        let mut distinct = std::collections::HashSet::new();
        for b in &batches {
            for c in b.column(1).as_string::<i32>().iter() {
                distinct.insert(c.unwrap().to_owned());
            }
        }
        let v6 = distinct.iter().filter(|c| c.contains(':')).count() as f64;
        let share = v6 / distinct.len() as f64;
        assert!((share - 0.10).abs() < 0.015, "IPv6 share {share}");
        // The mean over valid lines is the target; malformed lines (5 %) are not padded.
        let valid: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| l.windows(5).any(|w| w == b"&sid=" || w == b"?sid="))
            .collect();
        assert!(
            valid.len() as u64 > o.lines / 4,
            "{} padded lines",
            valid.len()
        );
        let mean = bytes.len() as f64 / o.lines as f64;
        assert!((195.0..=215.0).contains(&mean), "mean line {mean}");
        let (unpadded, _) = generate_vec(&GenOptions {
            line_bytes: None,
            ..o.clone()
        });
        assert!(unpadded.len() < bytes.len());
    }

    #[test]
    fn decimal_and_hex_writers() {
        let mut b = Vec::new();
        for v in [0, 7, 10, 99, 12345, u64::MAX] {
            b.clear();
            put_u64(&mut b, v);
            assert_eq!(b, v.to_string().as_bytes());
        }
        for v in [0u16, 1, 0xab, 0x1000, 0xffff] {
            b.clear();
            put_hex(&mut b, v);
            assert_eq!(b, format!("{v:x}").as_bytes());
        }
    }
}
