//! Searches for a byte that is usually only a few bytes away.
//!
//! `memchr2` is built for long haystacks: each call sets up 32-byte vector registers and checks
//! alignment before its loop, about 100 instructions under callgrind for a line's first field,
//! whose end (a space) is 7 to 40 bytes in. [`memchr2_near`] looks at the first bytes eight at
//! a time in a plain `u64` (SWAR: "SIMD within a register") and hands over to `memchr2` only
//! when the byte is further away, so a short search costs a few instructions per 8 bytes and a
//! long one what it cost before.

use memchr::memchr2;

/// Bytes examined word by word before handing over to `memchr2`.
const NEAR: usize = 64;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A word whose bytes are `b`.
const fn splat(b: u8) -> u64 {
    LO * b as u64
}

/// The high bit of each byte of `x` that is zero, and possibly of bytes above the first zero
/// byte (a borrow runs upwards): the lowest set bit is always exact, which is all that the
/// little-endian search below reads.
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The index of the first `a` or `b` in `hay`, as `memchr::memchr2` gives it.
#[inline]
pub(crate) fn memchr2_near(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let (sa, sb) = (splat(a), splat(b));
    let near = hay.len().min(NEAR);
    let mut i = 0;
    while i + 8 <= near {
        let w = u64::from_le_bytes(hay[i..i + 8].try_into().expect("8 bytes"));
        let hit = zero_bytes(w ^ sa) | zero_bytes(w ^ sb);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr2(a, b, &hay[i..]).map(|j| i + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Agrees with `memchr2` on every position of the bytes sought, in haystacks shorter and
    /// longer than the word-by-word part, with bytes that differ from them by one bit (which
    /// a wrong SWAR formula mistakes for them) and high bytes all around.
    #[test]
    fn agrees_with_memchr2() {
        let fillers = [b'x', b' ' ^ 1, b'\n' ^ 0x80, 0xff, 0x00, 0x80, b'!', 0x0b];
        for len in 0..150 {
            for &fill in &fillers {
                let mut hay = vec![fill; len];
                assert_eq!(memchr2_near(b' ', b'\n', &hay), memchr2(b' ', b'\n', &hay));
                for at in 0..len {
                    for &(x, y) in &[(b' ', b'\n'), (b'\n', b' ')] {
                        hay[at] = x;
                        if at + 3 < len {
                            hay[at + 3] = y;
                        }
                        assert_eq!(
                            memchr2_near(b' ', b'\n', &hay),
                            memchr2(b' ', b'\n', &hay),
                            "len {len}, fill {fill:#x}, at {at}"
                        );
                        hay.fill(fill);
                    }
                }
            }
        }
    }
}
