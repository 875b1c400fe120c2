//! Guessing the log format from the first lines of an input.
//!
//! Each of the first [`DETECT_LINES`] non-empty lines votes for the format it fits:
//!
//! * **combined**: a first field, a valid `[timestamp]`, then `"request" status bytes` and two
//!   more quoted fields (referer, user agent);
//! * **common**: the same up to `bytes`, and nothing after it;
//! * **simple**: `HH:MM:SS client`;
//! * a line with a valid client and timestamp but a request that does not parse votes for "one of
//!   the CLF formats" without choosing;
//! * a malformed line does not vote.
//!
//! The format with most votes wins (ties: combined, then common, then simple). When only
//! undecided CLF lines voted, the answer is combined, which reads common lines too (with null
//! referer and user agent).

use memchr::memchr;

use super::combined::{parse_after_timestamp, Depth};
use super::simple::split_simple_line;
use super::timestamp::{ClfClock, CLF_TIMESTAMP_LEN};
use super::{strip_cr, LogFormat};

/// How many non-empty lines [`detect_format`] looks at, at most.
pub const DETECT_LINES: usize = 20;

/// The format of a CLF-family line, if it is one: `Some(None)` when it has a valid client and
/// timestamp but no recognisable request structure.
fn clf_vote(line: &[u8]) -> Option<Option<LogFormat>> {
    let sp = memchr(b' ', line)?;
    if sp == 0 {
        return None;
    }
    let lb = sp + 1 + memchr(b'[', &line[sp + 1..])?;
    ClfClock::new().parse(&line[lb..])?;
    let fields = parse_after_timestamp(&line[lb + CLF_TIMESTAMP_LEN..], true);
    Some(match fields.depth {
        Depth::Combined => Some(LogFormat::Combined),
        Depth::Common => Some(LogFormat::Common),
        Depth::Nothing | Depth::Request | Depth::CommonThenJunk => None,
    })
}

/// Guesses the format of a log from a sample of its first bytes (a few KiB is plenty; a last,
/// partial line is judged like the others). `None` when no line of the sample fits any format.
///
/// ```
/// use weir_io::parse::{detect_format, LogFormat};
/// let combined = b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n";
/// assert_eq!(detect_format(combined), Some(LogFormat::Combined));
/// assert_eq!(detect_format(b"12:00:01 10.0.0.1\n12:00:02 ::1\n"), Some(LogFormat::Simple));
/// assert_eq!(detect_format(b"hello\n"), None);
/// ```
pub fn detect_format(sample: &[u8]) -> Option<LogFormat> {
    let (mut combined, mut common, mut simple, mut clf) = (0u32, 0u32, 0u32, 0u32);
    let lines = sample
        .split(|&b| b == b'\n')
        .map(strip_cr)
        .filter(|l| !l.is_empty())
        .take(DETECT_LINES);
    for line in lines {
        if split_simple_line(line).is_ok() {
            simple += 1;
            continue;
        }
        match clf_vote(line) {
            Some(Some(LogFormat::Combined)) => combined += 1,
            Some(Some(LogFormat::Common)) => common += 1,
            Some(_) => clf += 1,
            None => {}
        }
    }
    let best = combined.max(common).max(simple);
    if best == 0 {
        return (clf > 0).then_some(LogFormat::Combined);
    }
    Some(if combined == best {
        LogFormat::Combined
    } else if common == best {
        LogFormat::Common
    } else {
        LogFormat::Simple
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMBINED: &str =
        "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n";
    const COMMON: &str =
        "host.example - frank [10/Oct/2000:13:55:36 -0700] \"GET /a HTTP/1.0\" 200 2326\n";

    #[test]
    fn majority_vote_tolerates_junk() {
        let mut s = String::new();
        s.push_str(" \"curl/7.54.0\"\n\n");
        s.push_str(&COMBINED.repeat(3));
        s.push_str("garbage\r\n");
        s.push_str(COMMON);
        assert_eq!(detect_format(s.as_bytes()), Some(LogFormat::Combined));

        let s = format!(
            "{}{}{}",
            COMMON.repeat(3),
            COMBINED,
            COMMON.replace('\n', "\r\n")
        );
        assert_eq!(detect_format(s.as_bytes()), Some(LogFormat::Common));

        let s = format!("12:00:01 10.0.0.1\nbad\n{COMBINED}12:00:03 ::1");
        assert_eq!(detect_format(s.as_bytes()), Some(LogFormat::Simple));
    }

    #[test]
    fn undecided_clf_lines_read_as_combined() {
        let s = b"::1 - - [10/Oct/2000:13:55:36 +0000] \"\\x16\\x03\n";
        assert_eq!(detect_format(s), Some(LogFormat::Combined));
    }

    #[test]
    fn nothing_fits() {
        assert_eq!(detect_format(b""), None);
        assert_eq!(detect_format(b"\n\n\r\n"), None);
        assert_eq!(
            detect_format(b" 12:00:01 1.2.3.4\nx [10/Oct/2000:13:55:36]\n"),
            None
        );
    }

    #[test]
    fn only_the_first_lines_count() {
        let s = format!(
            "{}{}",
            COMMON.repeat(DETECT_LINES),
            COMBINED.repeat(DETECT_LINES + 5)
        );
        assert_eq!(detect_format(s.as_bytes()), Some(LogFormat::Common));
    }
}
