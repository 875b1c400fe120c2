//! Window assigners: which window a timestamp belongs to.
//!
//! Only tumbling windows exist today. They are aligned to the epoch, half-open
//! (`[start, start + size)`), and negative timestamps fall in the window below them (floor
//! division), so a window never straddles zero differently from any other boundary. Sliding and
//! session windows are meant to come in through this seam.

use std::time::Duration;

/// Tumbling (fixed, non-overlapping) event-time windows of `size` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingWindows {
    size_ms: i64,
}

impl TumblingWindows {
    /// Windows of `size` (at least one millisecond; sub-millisecond parts are dropped).
    ///
    /// # Panics
    /// If `size` is below one millisecond or above `i64::MAX` milliseconds.
    pub fn new(size: Duration) -> Self {
        Self::try_new(size).expect("window size must be between 1 ms and i64::MAX ms")
    }

    /// Like [`TumblingWindows::new`], `None` for an unusable size.
    pub fn try_new(size: Duration) -> Option<Self> {
        let ms = i64::try_from(size.as_millis()).ok()?;
        (ms >= 1).then_some(Self { size_ms: ms })
    }

    /// Window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// Start of the window holding `ts` (epoch milliseconds). Saturates at `i64::MIN` for the
    /// first partial window of the range.
    #[inline]
    pub fn start_of(&self, ts: i64) -> i64 {
        ts.saturating_sub(ts.rem_euclid(self.size_ms))
    }

    /// End (exclusive) of the window that starts at `start`, saturating at `i64::MAX`.
    #[inline]
    pub fn end_of(&self, start: i64) -> i64 {
        start.saturating_add(self.size_ms)
    }

    /// The first window end strictly after `wm`: the watermark value at which the next window
    /// can fire.
    #[inline]
    pub fn next_end_after(&self, wm: i64) -> i64 {
        self.end_of(self.start_of(wm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_negative_timestamps() {
        let w = TumblingWindows::new(Duration::from_secs(5));
        assert_eq!(w.start_of(0), 0);
        assert_eq!(w.start_of(4_999), 0);
        assert_eq!(w.start_of(5_000), 5_000);
        assert_eq!(w.start_of(-1), -5_000);
        assert_eq!(w.start_of(-5_000), -5_000);
        assert_eq!(w.start_of(-5_001), -10_000);
        assert_eq!(w.next_end_after(4_999), 5_000);
        assert_eq!(w.next_end_after(5_000), 10_000);
        // Within one window of i64::MIN the start saturates instead of overflowing.
        assert_eq!(w.start_of(i64::MIN), i64::MIN);
        assert_eq!(w.end_of(i64::MAX - 1), i64::MAX);
    }

    #[test]
    fn rejects_zero_size() {
        assert!(TumblingWindows::try_new(Duration::from_micros(10)).is_none());
    }
}
