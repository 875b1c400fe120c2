//! The seed's simple format: `HH:MM:SS client`, one event per line, e.g. `12:00:01 10.0.0.1`.
//!
//! The line carries only the time of day; the date comes from
//! [`ParseOptions::simple_date_days`](super::ParseOptions::simple_date_days). The time must be
//! exactly eight bytes followed by one space; the client is the token after that space, up to
//! the next space or the end of the line. A line is malformed when the time is invalid or the
//! client is empty.

use memchr::memchr;

use super::timestamp::parse_time_of_day;

/// Why a simple line is malformed.
pub(crate) const BAD_TIME: &str = "no valid HH:MM:SS time of day at the start";
/// Why a simple line is malformed.
pub(crate) const EMPTY_CLIENT: &str = "empty client after the time of day";

/// Splits one simple line (no `\n`, a trailing `\r` removed) into seconds since midnight and the
/// client.
#[inline]
pub(crate) fn split_simple_line(line: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let secs = parse_time_of_day(line).ok_or(BAD_TIME)?;
    match line.get(8) {
        Some(b' ') => {}
        None => return Err(EMPTY_CLIENT),
        Some(_) => return Err(BAD_TIME),
    }
    let rest = &line[9..];
    let client = &rest[..memchr(b' ', rest).unwrap_or(rest.len())];
    if client.is_empty() {
        return Err(EMPTY_CLIENT);
    }
    Ok((secs, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_lines() {
        assert_eq!(
            split_simple_line(b"12:00:01 10.0.0.1"),
            Ok((43_201, &b"10.0.0.1"[..]))
        );
        assert_eq!(
            split_simple_line(b"00:00:00 ::1 extra"),
            Ok((0, &b"::1"[..]))
        );
        assert_eq!(split_simple_line(b"12:00:01 "), Err(EMPTY_CLIENT));
        assert_eq!(split_simple_line(b"12:00:01  x"), Err(EMPTY_CLIENT));
        assert_eq!(split_simple_line(b"12:00:01"), Err(EMPTY_CLIENT));
        assert_eq!(split_simple_line(b"12:00:01x 1.2.3.4"), Err(BAD_TIME));
        assert_eq!(split_simple_line(b" 12:00:01 1.2.3.4"), Err(BAD_TIME));
        assert_eq!(split_simple_line(b"25:00:01 1.2.3.4"), Err(BAD_TIME));
        assert_eq!(split_simple_line(b""), Err(BAD_TIME));
    }
}
