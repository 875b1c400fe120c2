//! Watermarks: how far event time has advanced, per input and per worker.
//!
//! ```text
//!   input 0 ──wm 12_000──┐
//!   input 1 ──wm  9_000──┼──▶ worker watermark = min = 9_000 ──▶ fires windows ending ≤ 9_000
//!   input 2 ──(idle)─────┘    (an idle input is left out of the min while others advance)
//! ```
//!
//! An input is idle when it says so ([`Message::Idle`](crate::message::Message::Idle): its
//! source has gone, e.g. a connection closed, and the input waits for the next one) or, with an
//! idle timeout, when it has sent nothing for that long. An input that said it is idle starts
//! its watermark over when it becomes active again, as a new source would.
//!
//! A watermark `w` promises that no row of a window ending at or before `w` follows. With
//! ascending timestamps `w` is the largest timestamp seen; with a bound `b` on out-of-orderness
//! it is that minus `b` (Flink's `BoundedOutOfOrdernessWatermarks`, whose `-1` is folded into
//! the half-open window ends here). A row whose window ends at or before its worker's watermark
//! is *late*: its window has already fired.
//!
//! Lateness depends only on which window boundary the watermark has passed, so an input slices
//! its batches where its watermark crosses a boundary and sends a watermark after each slice
//! ([`InputWatermark::advance`]). The rows of one input are therefore judged exactly as if the
//! watermark advanced row by row, whatever the batch size or the parallelism.
//!
//! A row is late when its window ends at or before its *own input's* watermark, or at or before
//! its worker's (the window has fired: an idle input's rows can be behind it). The first rule
//! makes lateness a function of each input's order alone: which rows are late does not depend on
//! how the inputs of a worker interleave, so a replay of one file judges the same rows late
//! whatever its parallelism. (A worker's watermark never passes an input's, except an idle or
//! ended one's, so in every other case the second rule adds nothing.)

use std::time::{Duration, Instant};

use crate::window::TumblingWindows;

/// How an input derives its watermark from the timestamps it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatermarkStrategy {
    /// Timestamps arrive in order: the watermark is the largest one seen (Flink's
    /// `assignAscendingTimestamps`). Rows that step back behind a fired window are late.
    #[default]
    Ascending,
    /// Timestamps may arrive up to this many milliseconds out of order.
    BoundedOutOfOrderness(i64),
    /// No watermark until end of input: every window fires at the end, nothing is late (batch
    /// mode, used by the one-shot API).
    EndOfInput,
}

impl WatermarkStrategy {
    /// A bounded out-of-orderness strategy from a duration.
    pub fn bounded(bound: Duration) -> Self {
        Self::BoundedOutOfOrderness(i64::try_from(bound.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The watermark generator of one input.
#[derive(Debug, Clone)]
pub struct InputWatermark {
    strategy: WatermarkStrategy,
    windows: TumblingWindows,
    max_ts: i64,
    current: i64,
    /// The watermark value at which the next window can fire.
    next_end: i64,
}

impl InputWatermark {
    /// A generator that has seen nothing yet.
    pub fn new(strategy: WatermarkStrategy, windows: TumblingWindows) -> Self {
        Self {
            strategy,
            windows,
            max_ts: i64::MIN,
            current: i64::MIN,
            next_end: i64::MIN,
        }
    }

    /// The current watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The largest timestamp seen.
    pub fn max_timestamp(&self) -> i64 {
        self.max_ts
    }

    /// Starts over as if nothing had been seen (the input's next rows come from a new source).
    pub fn restart(&mut self) {
        self.max_ts = i64::MIN;
        self.current = i64::MIN;
        self.next_end = i64::MIN;
    }

    /// Observes `ts` in order and returns the end (exclusive) of the first run of rows after
    /// which the watermark crosses a window boundary, with the new watermark; `None` when the
    /// rest of `ts` crosses none. Call it again on the remaining rows.
    #[inline]
    pub fn advance(&mut self, ts: &[i64]) -> Option<(usize, i64)> {
        let bound = match self.strategy {
            WatermarkStrategy::Ascending => 0,
            WatermarkStrategy::BoundedOutOfOrderness(b) => b,
            WatermarkStrategy::EndOfInput => return None,
        };
        let mut max = self.max_ts;
        // The largest timestamp at which the watermark stays below `next_end`.
        let threshold = self.next_end.saturating_add(bound);
        for (i, &t) in ts.iter().enumerate() {
            if t > max {
                max = t;
                if max >= threshold {
                    self.max_ts = max;
                    self.current = max.saturating_sub(bound);
                    self.next_end = self.windows.next_end_after(self.current);
                    return Some((i + 1, self.current));
                }
            }
        }
        self.max_ts = max;
        self.current = self.current.max(max.saturating_sub(bound));
        None
    }
}

/// The watermark of a worker: the minimum over its inputs, leaving out inputs that have ended or
/// said they are idle and, while some other input is active, inputs silent for longer than the
/// idle timeout.
#[derive(Debug)]
pub struct CombinedWatermark {
    inputs: Vec<InputState>,
    idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct InputState {
    wm: i64,
    ended: bool,
    /// Said it is idle, and has sent nothing since.
    idle: bool,
    last_active: Instant,
}

impl CombinedWatermark {
    /// `n` inputs at the minimum watermark.
    pub fn new(n: usize, idle_timeout: Option<Duration>) -> Self {
        let now = Instant::now();
        Self {
            inputs: vec![
                InputState {
                    wm: i64::MIN,
                    ended: false,
                    idle: false,
                    last_active: now
                };
                n
            ],
            idle_timeout,
        }
    }

    /// Input `i` sent something (data or control) at `now`: it is active.
    pub fn touch(&mut self, i: usize, now: Instant) {
        self.inputs[i].last_active = now;
        self.inputs[i].idle = false;
    }

    /// Input `i` said it is idle: it holds nothing back until it sends again, and then starts
    /// from the minimum watermark, as a new source.
    pub fn idle(&mut self, i: usize) {
        self.inputs[i].idle = true;
        self.inputs[i].wm = i64::MIN;
    }

    /// The watermark input `i` sent last (`i64::MIN` after it said it is idle).
    pub fn of(&self, i: usize) -> i64 {
        self.inputs[i].wm
    }

    /// Input `i` reached watermark `wm`.
    pub fn update(&mut self, i: usize, wm: i64) {
        let s = &mut self.inputs[i];
        s.wm = s.wm.max(wm);
    }

    /// Input `i` ended: it no longer holds anything back.
    pub fn end(&mut self, i: usize) {
        self.inputs[i].ended = true;
        self.inputs[i].wm = i64::MAX;
    }

    /// Whether every input has ended.
    pub fn all_ended(&self) -> bool {
        self.inputs.iter().all(|s| s.ended)
    }

    /// The combined watermark at `now`.
    ///
    /// As in Flink's watermark valve, an input that becomes idle stops counting while another
    /// is still active. When every live input has gone quiet, the one active last was the only
    /// active input when the others went idle, so its watermark stands: the result depends on
    /// the order in which inputs fell silent, not on when this is asked. Inputs that said they
    /// are idle are left out altogether; when every input that has not ended said so, nothing
    /// moves (`i64::MIN`) until one sends again.
    pub fn current(&self, now: Instant) -> i64 {
        if self.inputs.iter().all(|s| s.ended || s.idle) && self.inputs.iter().any(|s| s.idle) {
            return i64::MIN;
        }
        let live = self.inputs.iter().filter(|s| !s.ended && !s.idle);
        let Some(timeout) = self.idle_timeout else {
            return live.map(|s| s.wm).min().unwrap_or(i64::MAX);
        };
        let is_idle = |s: &InputState| now.duration_since(s.last_active) > timeout;
        if let Some(m) = live.clone().filter(|s| !is_idle(s)).map(|s| s.wm).min() {
            return m;
        }
        match live.clone().map(|s| s.last_active).max() {
            Some(last) => live
                .filter(|s| s.last_active == last)
                .map(|s| s.wm)
                .min()
                .unwrap_or(i64::MAX),
            None => i64::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w5() -> TumblingWindows {
        TumblingWindows::new(Duration::from_secs(5))
    }

    #[test]
    fn ascending_cuts_where_a_boundary_is_crossed() {
        let mut wm = InputWatermark::new(WatermarkStrategy::Ascending, w5());
        let ts = [1_000, 4_999, 3_000, 5_000, 6_000, 12_000, 11_000];
        // First row: watermark goes from MIN to 1000, crossing every boundary below it.
        assert_eq!(wm.advance(&ts), Some((1, 1_000)));
        assert_eq!(wm.advance(&ts[1..]), Some((3, 5_000)));
        assert_eq!(wm.advance(&ts[4..]), Some((2, 12_000)));
        assert_eq!(wm.advance(&ts[6..]), None);
        assert_eq!(wm.current(), 12_000);
    }

    #[test]
    fn bounded_lags_by_the_bound() {
        let mut wm = InputWatermark::new(WatermarkStrategy::BoundedOutOfOrderness(2_000), w5());
        assert_eq!(wm.advance(&[1_000]), Some((1, -1_000)));
        // -1_000 → 4_999 crosses the window end at 0.
        assert_eq!(wm.advance(&[6_999]), Some((1, 4_999)));
        assert_eq!(wm.advance(&[6_000, 6_500]), None);
        assert_eq!(wm.current(), 4_999);
        assert_eq!(wm.advance(&[7_000]), Some((1, 5_000)));
    }

    #[test]
    fn combined_is_min_and_skips_ended_and_idle() {
        let t0 = Instant::now();
        let mut c = CombinedWatermark::new(2, Some(Duration::from_millis(100)));
        c.touch(0, t0);
        c.touch(1, t0);
        c.update(0, 10);
        c.update(1, 5);
        assert_eq!(c.current(t0), 5);
        c.update(1, 3); // never backwards
        assert_eq!(c.current(t0), 5);
        let later = t0 + Duration::from_millis(200);
        c.touch(0, later);
        assert_eq!(c.current(later), 10, "input 1 is idle");
        let quiet = later + Duration::from_millis(500);
        assert_eq!(
            c.current(quiet),
            10,
            "all quiet: the input active last stands"
        );
        c.end(0);
        assert_eq!(c.current(later), 5, "only input 1 left");
        c.end(1);
        assert!(c.all_ended());
        assert_eq!(c.current(later), i64::MAX);
    }

    #[test]
    fn an_input_that_says_it_is_idle_holds_nothing_back_and_starts_over() {
        let t0 = Instant::now();
        let mut c = CombinedWatermark::new(3, None);
        for i in 0..3 {
            c.touch(i, t0);
        }
        c.update(0, 10);
        c.update(1, 20);
        c.idle(2);
        assert_eq!(c.current(t0), 10, "input 2 is idle: left out at once");
        c.idle(0);
        assert_eq!(c.current(t0), 20);
        c.idle(1);
        assert_eq!(c.current(t0), i64::MIN, "all idle: nothing moves");
        c.touch(0, t0);
        assert_eq!(
            c.current(t0),
            i64::MIN,
            "active again, from the start of time"
        );
        c.update(0, 5);
        assert_eq!(c.current(t0), 5, "its old watermark (10) is gone");
        c.end(0);
        assert_eq!(c.current(t0), i64::MIN, "ended, the others idle");
        let mut w = InputWatermark::new(WatermarkStrategy::Ascending, w5());
        assert_eq!(w.advance(&[12_000]), Some((1, 12_000)));
        w.restart();
        assert_eq!(w.advance(&[3_000]), Some((1, 3_000)), "starts over");
    }
}
