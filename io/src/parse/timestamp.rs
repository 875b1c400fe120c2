//! Access-log timestamps: `[dd/Mon/yyyy:HH:MM:SS ±hhmm]` and the simple format's `HH:MM:SS`.
//!
//! The CLF timestamp has a fixed width of 28 bytes, brackets included:
//!
//! ```text
//!  0         1         2
//!  0123456789012345678901234567
//!  [10/Oct/2000:13:55:36 -0700]
//!   dd mmm yyyy hh mm ss ±hhmm
//! ```
//!
//! so it is parsed by position, without searching. Every byte is checked (digits are digits,
//! separators are where they belong) and every field is range-checked: the month is one of the
//! twelve English abbreviations (case-sensitive, as servers write them), the day exists in that
//! month (so `30/Feb` is rejected rather than silently becoming 2 March), hour < 24, minute < 60,
//! second ≤ 60 (a leap second counts as the first second of the next minute), and the offset is
//! `+` or `-` followed by hours < 24 and minutes < 60. The result is milliseconds since the Unix
//! epoch in UTC: the line's own offset is subtracted (`-0700` is seven hours *behind* UTC, so
//! seven hours are added).
//!
//! Consecutive lines nearly always share the date, and often the whole second, so
//! [`ClfClock`] remembers the last 26 bytes between the brackets and the last 11 date bytes and
//! skips the work they would repeat: a memcmp instead of a calendar computation.
//!
//! The calendar conversion ([`days_from_civil`], [`civil_from_days`]) is the proleptic Gregorian
//! calendar, computed in 400-year eras (146,097 days each), with the year shifted to start in
//! March so that the leap day is the last day of the shifted year.

/// Milliseconds in one day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of the proleptic Gregorian date `year-month-day`.
///
/// `month` is 1..=12 and `day` 1..=31; the result for a day past the month's end is the
/// corresponding day of the next month (callers validate with [`days_in_month`] first).
///
/// ```
/// use weir_io::parse::timestamp::days_from_civil;
/// assert_eq!(days_from_civil(1970, 1, 1), 0);
/// assert_eq!(days_from_civil(2000, 3, 1), 11_017);
/// assert_eq!(days_from_civil(1969, 12, 31), -1);
/// ```
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    // Shift the year to start on 1 March: January and February belong to the previous year.
    let y = if month <= 2 {
        year as i64 - 1
    } else {
        year as i64
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let shifted_month = (month as i64 + 9) % 12; // March = 0 .. February = 11
                                                 // Days from 1 March to the first of the shifted month: months alternate 31/30 days with a
                                                 // period of five months (153 days), which the linear formula reproduces exactly.
    let day_of_year = (153 * shifted_month + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719,468 days separate 0000-03-01 (era 0, day 0) from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of `days` since 1970-01-01; the inverse of
/// [`days_from_civil`].
///
/// ```
/// use weir_io::parse::timestamp::civil_from_days;
/// assert_eq!(civil_from_days(0), (1970, 1, 1));
/// assert_eq!(civil_from_days(-1), (1969, 12, 31));
/// assert_eq!(civil_from_days(11_016), (2000, 2, 29));
/// ```
pub const fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146_096
                                        // Years of 365 days, corrected for the leap days of every 4th, 100th and 400th year.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year as i32, month as u32, day as u32)
}

/// Whether `year` is a Gregorian leap year.
pub const fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in `month` (1..=12) of `year`; 0 for a month out of range.
pub const fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// The English three-letter month abbreviations as they appear in access logs.
pub const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Width of a CLF timestamp, brackets included.
pub const CLF_TIMESTAMP_LEN: usize = 28;

/// The value of one ASCII digit, or `None`.
#[inline(always)]
fn digit(b: u8) -> Option<u32> {
    let d = b.wrapping_sub(b'0');
    if d < 10 {
        Some(d as u32)
    } else {
        None
    }
}

/// The value of two ASCII digits, or `None`.
#[inline(always)]
fn two_digits(hi: u8, lo: u8) -> Option<u32> {
    Some(digit(hi)? * 10 + digit(lo)?)
}

/// Month number (1..=12) of a three-letter English abbreviation.
#[inline]
fn month_number(name: &[u8]) -> Option<u32> {
    // Pack the three bytes into one integer: a single compare per candidate.
    let key = u32::from_be_bytes([0, name[0], name[1], name[2]]);
    const fn pack(n: &[u8; 3]) -> u32 {
        u32::from_be_bytes([0, n[0], n[1], n[2]])
    }
    const PACKED: [u32; 12] = {
        let mut out = [0u32; 12];
        let mut i = 0;
        while i < 12 {
            out[i] = pack(MONTH_NAMES[i]);
            i += 1;
        }
        out
    };
    PACKED.iter().position(|&p| p == key).map(|i| i as u32 + 1)
}

/// Parses `dd/Mon/yyyy` (11 bytes) into days since the epoch.
#[inline]
fn parse_date(b: &[u8; 11]) -> Option<i64> {
    if b[2] != b'/' || b[6] != b'/' {
        return None;
    }
    let day = two_digits(b[0], b[1])?;
    let month = month_number(&b[3..6])?;
    let year = (two_digits(b[7], b[8])? * 100 + two_digits(b[9], b[10])?) as i32;
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `HH:MM:SS` (8 bytes) into seconds since midnight (0..=86_400, a leap second included).
#[inline]
pub fn parse_time_of_day(b: &[u8]) -> Option<u32> {
    let b: &[u8; 8] = b.get(..8)?.try_into().ok()?;
    if b[2] != b':' || b[5] != b':' {
        return None;
    }
    let h = two_digits(b[0], b[1])?;
    let m = two_digits(b[3], b[4])?;
    let s = two_digits(b[6], b[7])?;
    if h >= 24 || m >= 60 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Parses the `HH:MM:SS ±hhmm` part (14 bytes) into seconds since midnight, local time, minus
/// the offset: seconds since midnight UTC of the line's date (possibly negative or ≥ 86,400).
#[inline]
fn parse_time_and_offset(b: &[u8; 14]) -> Option<i64> {
    let local = parse_time_of_day(&b[..8])? as i64;
    if b[8] != b' ' {
        return None;
    }
    let sign = match b[9] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let oh = two_digits(b[10], b[11])?;
    let om = two_digits(b[12], b[13])?;
    if oh >= 24 || om >= 60 {
        return None;
    }
    Some(local - sign * (oh as i64 * 3600 + om as i64 * 60))
}

/// Parses a whole CLF timestamp `[dd/Mon/yyyy:HH:MM:SS ±hhmm]` (exactly
/// [`CLF_TIMESTAMP_LEN`] bytes; anything after them is ignored) into milliseconds since the
/// epoch, UTC. No cache: [`ClfClock`] is the fast version of the same function.
///
/// ```
/// use weir_io::parse::timestamp::parse_clf_timestamp;
/// assert_eq!(parse_clf_timestamp(b"[01/Jan/1970:00:00:00 +0000]"), Some(0));
/// // 13:55:36 at UTC-7 is 20:55:36 UTC.
/// assert_eq!(parse_clf_timestamp(b"[10/Oct/2000:13:55:36 -0700]"), Some(971_211_336_000));
/// assert_eq!(parse_clf_timestamp(b"[10/Oct/2000:24:00:00 +0000]"), None);
/// ```
pub fn parse_clf_timestamp(b: &[u8]) -> Option<i64> {
    ClfClock::new().parse(b)
}

/// A CLF timestamp parser that remembers the previous line's timestamp.
///
/// Keeps two caches: the 26 bytes between the brackets with their result (a line in the same
/// second as the previous one costs one compare), and the 11 date bytes with their day number
/// (a line on the same day skips the calendar). The caches hold only valid inputs.
#[derive(Debug, Clone)]
pub struct ClfClock {
    /// The bytes between the brackets of the last valid timestamp, and its value.
    last_inner: [u8; 26],
    last_ms: i64,
    /// The `dd/Mon/yyyy` bytes of the last valid date, and its day number.
    last_date: [u8; 11],
    last_days: i64,
    /// Whether the caches hold anything yet.
    primed: bool,
}

impl Default for ClfClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ClfClock {
    /// An empty clock.
    pub const fn new() -> Self {
        ClfClock {
            last_inner: [0; 26],
            last_ms: 0,
            last_date: [0; 11],
            last_days: 0,
            primed: false,
        }
    }

    /// Parses the timestamp at the start of `b` (which must begin with `[`): milliseconds since
    /// the epoch, UTC, or `None` when `b` is shorter than [`CLF_TIMESTAMP_LEN`] or the timestamp
    /// is invalid.
    #[inline]
    pub fn parse(&mut self, b: &[u8]) -> Option<i64> {
        let b: &[u8; CLF_TIMESTAMP_LEN] = b.get(..CLF_TIMESTAMP_LEN)?.try_into().ok()?;
        if b[0] != b'[' || b[27] != b']' {
            return None;
        }
        let inner: &[u8; 26] = b[1..27].try_into().ok()?;
        if self.primed && *inner == self.last_inner {
            return Some(self.last_ms);
        }
        self.parse_slow(inner)
    }

    /// The part of [`ClfClock::parse`] that runs when the second changed.
    #[inline(never)]
    fn parse_slow(&mut self, inner: &[u8; 26]) -> Option<i64> {
        let date: &[u8; 11] = inner[..11].try_into().ok()?;
        if inner[11] != b':' {
            return None;
        }
        let days = if self.primed && *date == self.last_date {
            self.last_days
        } else {
            parse_date(date)?
        };
        let secs = parse_time_and_offset(inner[12..26].try_into().ok()?)?;
        let ms = days * MS_PER_DAY + secs * 1000;
        self.last_inner = *inner;
        self.last_ms = ms;
        self.last_date = *date;
        self.last_days = days;
        self.primed = true;
        Some(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days since the epoch by walking whole years and months: slow and obviously right.
    fn naive_days(year: i32, month: u32, day: u32) -> i64 {
        let mut days = 0i64;
        if year >= 1970 {
            for y in 1970..year {
                days += if is_leap_year(y) { 366 } else { 365 };
            }
        } else {
            for y in year..1970 {
                days -= if is_leap_year(y) { 366 } else { 365 };
            }
        }
        for m in 1..month {
            days += days_in_month(year, m) as i64;
        }
        days + day as i64 - 1
    }

    #[test]
    fn calendar_matches_naive_walk() {
        for year in [
            -400, -1, 0, 1, 1600, 1899, 1900, 1969, 1970, 1972, 2000, 2024, 2100, 9999,
        ] {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    let d = days_from_civil(year, month, day);
                    assert_eq!(d, naive_days(year, month, day), "{year}-{month}-{day}");
                    assert_eq!(civil_from_days(d), (year, month, day));
                }
            }
        }
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2000));
        assert!(is_leap_year(2024));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2100));
        assert!(parse_clf_timestamp(b"[29/Feb/2024:00:00:00 +0000]").is_some());
        assert!(parse_clf_timestamp(b"[29/Feb/2000:00:00:00 +0000]").is_some());
        assert!(parse_clf_timestamp(b"[29/Feb/1900:00:00:00 +0000]").is_none());
        assert!(parse_clf_timestamp(b"[29/Feb/2023:00:00:00 +0000]").is_none());
        assert!(parse_clf_timestamp(b"[31/Apr/2023:00:00:00 +0000]").is_none());
        assert!(parse_clf_timestamp(b"[00/Jan/2023:00:00:00 +0000]").is_none());
        assert!(parse_clf_timestamp(b"[32/Jan/2023:00:00:00 +0000]").is_none());
        // 1 March 2024 is 1 day after 29 February.
        let feb29 = parse_clf_timestamp(b"[29/Feb/2024:12:00:00 +0000]").unwrap();
        let mar01 = parse_clf_timestamp(b"[01/Mar/2024:12:00:00 +0000]").unwrap();
        assert_eq!(mar01 - feb29, MS_PER_DAY);
    }

    #[test]
    fn epoch_and_before() {
        assert_eq!(
            parse_clf_timestamp(b"[01/Jan/1970:00:00:00 +0000]"),
            Some(0)
        );
        assert_eq!(
            parse_clf_timestamp(b"[31/Dec/1969:23:59:59 +0000]"),
            Some(-1000)
        );
        // UTC+1 midnight on 1 Jan 1970 is 23:00 UTC the day before.
        assert_eq!(
            parse_clf_timestamp(b"[01/Jan/1970:00:00:00 +0100]"),
            Some(-3_600_000)
        );
        // 1 Jul 1995 00:00:00 -0400 (NASA logs): 04:00 UTC.
        let expected = (naive_days(1995, 7, 1) * 86_400 + 4 * 3600) * 1000;
        assert_eq!(
            parse_clf_timestamp(b"[01/Jul/1995:00:00:00 -0400]"),
            Some(expected)
        );
        assert_eq!(
            parse_clf_timestamp(b"[01/Jan/0000:00:00:00 +0000]"),
            Some(naive_days(0, 1, 1) * MS_PER_DAY)
        );
    }

    #[test]
    fn offsets() {
        let utc = parse_clf_timestamp(b"[10/Oct/2000:20:55:36 +0000]").unwrap();
        assert_eq!(
            parse_clf_timestamp(b"[10/Oct/2000:13:55:36 -0700]"),
            Some(utc)
        );
        assert_eq!(
            parse_clf_timestamp(b"[11/Oct/2000:02:25:36 +0530]"),
            Some(utc)
        );
        assert_eq!(
            parse_clf_timestamp(b"[10/Oct/2000:20:55:36 -0000]"),
            Some(utc)
        );
        // Crossing midnight and the year boundary through the offset.
        assert_eq!(
            parse_clf_timestamp(b"[31/Dec/1999:23:30:00 -0100]"),
            parse_clf_timestamp(b"[01/Jan/2000:00:30:00 +0000]")
        );
        for bad in [
            &b"[10/Oct/2000:13:55:36 0700]x"[..],
            b"[10/Oct/2000:13:55:36 *0700]",
            b"[10/Oct/2000:13:55:36 +2400]",
            b"[10/Oct/2000:13:55:36 +0060]",
            b"[10/Oct/2000:13:55:36 +07a0]",
            b"[10/Oct/2000:13:55:36  0700]",
        ] {
            assert_eq!(
                parse_clf_timestamp(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn month_names() {
        for (i, name) in MONTH_NAMES.iter().enumerate() {
            let mut ts = *b"[15/xxx/2021:00:00:00 +0000]";
            ts[4..7].copy_from_slice(&name[..]);
            let expected = days_from_civil(2021, i as u32 + 1, 15) * MS_PER_DAY;
            assert_eq!(parse_clf_timestamp(&ts), Some(expected));
        }
        for bad in [b"jan", b"JAN", b"Jen", b"Ja1", b"\xffan"] {
            let mut ts = *b"[15/xxx/2021:00:00:00 +0000]";
            ts[4..7].copy_from_slice(bad);
            assert_eq!(parse_clf_timestamp(&ts), None);
        }
    }

    #[test]
    fn bad_digits_and_separators() {
        let good = *b"[10/Oct/2000:13:55:36 -0700]";
        assert!(parse_clf_timestamp(&good).is_some());
        // Every position that holds a digit must reject a non-digit; every separator must be
        // exactly itself.
        for i in 0..good.len() {
            for replacement in [b'x', b' ', b'/', b':', b'\n', 0xff] {
                if replacement == good[i] {
                    continue;
                }
                let mut ts = good;
                ts[i] = replacement;
                // Replacing the offset sign with the other sign stays valid; nothing else does.
                assert_eq!(parse_clf_timestamp(&ts), None, "pos {i} → {replacement:#x}");
            }
        }
        assert_eq!(parse_clf_timestamp(b"[10/Oct/2000:24:00:00 +0000]"), None);
        assert_eq!(parse_clf_timestamp(b"[10/Oct/2000:23:60:00 +0000]"), None);
        assert_eq!(parse_clf_timestamp(b"[10/Oct/2000:23:59:61 +0000]"), None);
        // A leap second is accepted and lands on the next minute's first second.
        assert_eq!(
            parse_clf_timestamp(b"[31/Dec/2016:23:59:60 +0000]"),
            parse_clf_timestamp(b"[01/Jan/2017:00:00:00 +0000]")
        );
        // Too short.
        assert_eq!(parse_clf_timestamp(b"[10/Oct/2000:13:55:36 -0700"), None);
        assert_eq!(parse_clf_timestamp(b""), None);
    }

    #[test]
    fn cache_never_returns_a_stale_value() {
        let mut clock = ClfClock::new();
        let lines: [&[u8]; 7] = [
            b"[10/Oct/2000:13:55:36 -0700]",
            b"[10/Oct/2000:13:55:36 -0700]",
            b"[10/Oct/2000:13:55:37 -0700]",
            b"[10/Oct/2000:13:55:37 +0000]",
            b"[11/Oct/2000:13:55:37 +0000]",
            b"[11/Oct/2000:13:55:3x +0000]",
            b"[11/Oct/2000:13:55:37 +0000]",
        ];
        for line in lines {
            assert_eq!(clock.parse(line), parse_clf_timestamp(line));
        }
    }

    #[test]
    fn time_of_day() {
        assert_eq!(parse_time_of_day(b"00:00:00"), Some(0));
        assert_eq!(parse_time_of_day(b"23:59:59"), Some(86_399));
        assert_eq!(parse_time_of_day(b"12:00:01 x"), Some(43_201));
        assert_eq!(parse_time_of_day(b"24:00:00"), None);
        assert_eq!(parse_time_of_day(b"12-00-01"), None);
        assert_eq!(parse_time_of_day(b"1:00:01"), None);
        assert_eq!(parse_time_of_day(b"12:00:0"), None);
    }
}
