//! The human units of the command line: parsing durations (`5s`, `250ms`, `1m`), UTC offsets
//! (`+02:00`, `-0700`, `UTC`) and dates (`2024-05-12`); printing counts (`1,234,567`).

use std::time::Duration;

use weir_io::parse::timestamp::{days_from_civil, days_in_month};

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 5s, 250ms, 1m)"))?;
    let ms = match unit.trim() {
        "ms" => value,
        "" | "s" => value * 1e3,
        "m" | "min" => value * 60e3,
        "h" => value * 3600e3,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (ms, s, m, h)"
            ))
        }
    };
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_micros((ms * 1e3).round() as u64))
}

/// Parses a UTC offset into seconds: `UTC`, `Z`, `+02:00`, `-0700`, `+5`.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(0);
    }
    let bad = || format!("`{s}` is not a UTC offset (UTC, +02:00, -0700)");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m) = if digits.len() <= 2 {
        (digits.parse::<i32>().map_err(|_| bad())?, 0)
    } else {
        let (h, m) = digits.split_at(digits.len() - 2);
        (
            h.parse::<i32>().map_err(|_| bad())?,
            m.parse::<i32>().map_err(|_| bad())?,
        )
    };
    if h > 23 || m > 59 {
        return Err(bad());
    }
    if h * 60 + m > if sign > 0 { 14 * 60 } else { 12 * 60 } {
        return Err(format!(
            "`{s}` is not a UTC offset in use: offsets run from -12:00 to +14:00"
        ));
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_date(s: &str) -> Result<i32, String> {
    let bad = || format!("`{s}` is not a date (YYYY-MM-DD)");
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let (y, m, d): (i32, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    if d > days_in_month(y, m) {
        return Err(format!(
            "`{s}` is not a date: that month has {} days",
            days_in_month(y, m)
        ));
    }
    // The parser's calendar, so a `--date` and a log line's date agree.
    i32::try_from(days_from_civil(y, m, d)).map_err(|_| bad())
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("UTC").unwrap(), 0);
        assert_eq!(parse_utc_offset("+02:00").unwrap(), 7200);
        assert_eq!(parse_utc_offset("-0700").unwrap(), -25200);
        assert_eq!(parse_utc_offset("+5").unwrap(), 18000);
        assert!(parse_utc_offset("02:00").is_err());
        assert!(parse_utc_offset("+25:00").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2000-03-01").unwrap(), 11_017);
        assert_eq!(parse_date("2024-05-12").unwrap(), 19_855);
        assert_eq!(parse_date("1969-12-31").unwrap(), -1);
        assert!(parse_date("2024-13-01").is_err());
    }
}
