//! The fields of a combined or common (CLF) line that follow the timestamp.
//!
//! ```text
//! client ident user [dd/Mon/yyyy:HH:MM:SS ±hhmm] "METHOD TARGET PROTO" status bytes "referer" "ua"
//! └──────── found by the fast path ───────────┘ └──────────── parsed here (on request) ────────┘
//! ```
//!
//! Parsing goes left to right and stops at the first thing that does not fit; every field it did
//! not reach is null. Nothing here can make a line malformed: a line with a valid client and
//! timestamp is always counted, whatever its request looks like (attack traffic sends raw TLS
//! handshakes as the "request").
//!
//! * A quoted field ends at the first `"` not escaped by a backslash (Apache writes `\"`; NGINX
//!   writes `\x22`, which needs no special care). Values are kept verbatim, escapes included.
//! * `method` and `path` are the first two space-separated tokens of the request; both are null
//!   unless both are non-empty (NGINX logs an empty request as `"-"`).
//! * `status` is a decimal number ≤ 65,535, `bytes` a decimal `u64` or `-` (null). A status that is
//!   not a number ends the parse; a bytes field that is neither a number nor `-` does too.

use memchr::memchr;

/// The fields after the timestamp; `None` where absent or unparsable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RequestFields<'a> {
    pub(crate) method: Option<&'a [u8]>,
    pub(crate) path: Option<&'a [u8]>,
    pub(crate) status: Option<u16>,
    pub(crate) bytes: Option<u64>,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) user_agent: Option<&'a [u8]>,
    /// How far the structure held, for format detection.
    pub(crate) depth: Depth,
}

/// How much of the CLF structure after the timestamp a line has.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Depth {
    /// Not even a quoted request.
    #[default]
    Nothing,
    /// A quoted request.
    Request,
    /// Request, status and bytes: a common log line, and nothing after it.
    Common,
    /// Request, status and bytes, then something that is not two quoted fields.
    CommonThenJunk,
    /// Request, status, bytes, referer and user agent: a combined log line.
    Combined,
}

/// Splits `"value" rest` into `value` and `rest`; `None` without a closing quote.
#[inline]
fn quoted(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = s.strip_prefix(b"\"")?;
    let mut from = 0;
    loop {
        let q = from + memchr(b'"', &body[from..])?;
        // A quote preceded by an odd number of backslashes is escaped.
        let backslashes = body[..q].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some((&body[..q], &body[q + 1..]));
        }
        from = q + 1;
    }
}

/// Splits at the first space: the token before it and the rest after it (empty at the end).
#[inline]
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b' ', s) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// A decimal number of at most 20 digits that fits in `u64`.
#[inline]
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d >= 10 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Parses what follows the timestamp's `]` (a trailing `\r` already removed). `tail`: also parse
/// referer and user agent (the combined format).
pub(crate) fn parse_after_timestamp(rest: &[u8], tail: bool) -> RequestFields<'_> {
    let mut f = RequestFields::default();
    let Some((request, rest)) = rest.strip_prefix(b" ").and_then(quoted) else {
        return f;
    };
    f.depth = Depth::Request;
    let (method, target) = token(request);
    let (path, _protocol) = token(target);
    if !method.is_empty() && !path.is_empty() {
        f.method = Some(method);
        f.path = Some(path);
    }

    let Some(rest) = rest.strip_prefix(b" ") else {
        return f;
    };
    let (status, rest) = token(rest);
    let Some(status) = parse_decimal(status).and_then(|s| u16::try_from(s).ok()) else {
        return f;
    };
    f.status = Some(status);
    let (bytes, rest) = token(rest);
    match bytes {
        b"-" => {}
        b => match parse_decimal(b) {
            Some(n) => f.bytes = Some(n),
            None => return f,
        },
    }
    f.depth = if rest.is_empty() {
        Depth::Common
    } else {
        Depth::CommonThenJunk
    };
    // Referer and user agent, each a quoted field after one space. `token` consumed the space
    // after `bytes`, so `rest` starts at the referer's quote.
    let Some((referer, rest)) = quoted(rest) else {
        return f;
    };
    let Some((user_agent, _)) = rest.strip_prefix(b" ").and_then(quoted) else {
        if tail {
            f.referer = Some(referer);
        }
        return f;
    };
    f.depth = Depth::Combined;
    if tail {
        f.referer = Some(referer);
        f.user_agent = Some(user_agent);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_combined_tail() {
        let f = parse_after_timestamp(
            br#" "GET /a?b=c HTTP/1.1" 200 512 "http://x/" "curl/8.0 \"q\"""#,
            true,
        );
        assert_eq!(f.method, Some(&b"GET"[..]));
        assert_eq!(f.path, Some(&b"/a?b=c"[..]));
        assert_eq!(f.status, Some(200));
        assert_eq!(f.bytes, Some(512));
        assert_eq!(f.referer, Some(&b"http://x/"[..]));
        assert_eq!(f.user_agent, Some(&br#"curl/8.0 \"q\""#[..]));
        assert_eq!(f.depth, Depth::Combined);
    }

    #[test]
    fn common_tail_and_dash_bytes() {
        let f = parse_after_timestamp(br#" "HEAD / HTTP/1.0" 304 -"#, true);
        assert_eq!(f.status, Some(304));
        assert_eq!(f.bytes, None);
        assert_eq!(f.referer, None);
        assert_eq!(f.depth, Depth::Common);
    }

    #[test]
    fn broken_requests_null_what_follows() {
        // Raw bytes as the request: no method/path, but status and bytes still parse.
        let f = parse_after_timestamp(b" \"\\x16\\x03\\x01\" 400 157 \"-\" \"-\"", true);
        assert_eq!((f.method, f.path, f.status), (None, None, Some(400)));
        assert_eq!(f.depth, Depth::Combined);
        // A stray quote inside the request: the request ends early, the rest is null.
        let f = parse_after_timestamp(br#" "GET /a"b HTTP/1.1" 200 5 "-" "ua""#, true);
        assert_eq!((f.method, f.path), (Some(&b"GET"[..]), Some(&b"/a"[..])));
        assert_eq!((f.status, f.bytes, f.user_agent), (None, None, None));
        // No closing quote at all.
        let f = parse_after_timestamp(br#" "GET /a HTTP/1.1 200 5"#, true);
        assert_eq!(f, RequestFields::default());
        // "-" request, status out of range.
        let f = parse_after_timestamp(br#" "-" 70000 5"#, true);
        assert_eq!((f.method, f.status, f.depth), (None, None, Depth::Request));
        // Missing user agent: referer kept, depth says "not combined".
        let f = parse_after_timestamp(br#" "GET / HTTP/1.1" 200 5 "ref""#, true);
        assert_eq!((f.referer, f.user_agent), (Some(&b"ref"[..]), None));
        assert_eq!(f.depth, Depth::CommonThenJunk);
        // Nothing after the timestamp.
        assert_eq!(parse_after_timestamp(b"", true), RequestFields::default());
    }

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1x"), None);
        assert_eq!(parse_decimal(b"-1"), None);
    }
}
