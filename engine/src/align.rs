//! Checkpoint barrier alignment, shared by the partition workers and the result collector.
//!
//! ```text
//!   input 0: … a b |n| c d …      held after |n|: c, d wait in its queue
//!   input 1: … e f g h |n| …      read until |n| arrives here too
//!   input 2: (ended)              an ended input never holds a barrier back
//!                  ──▶ aligned: release every input, act on n (snapshot, forward, commit)
//! ```
//!
//! A reader that has seen barrier *n* on one input stops reading that input until *n* has
//! arrived on every input that has not ended. Everything it read before releasing is then
//! exactly what came before *n* on every input, and nothing after *n* has been read: the state
//! at the barrier belongs to checkpoint *n* alone (DESIGN.md §3). [`BarrierAligner`] keeps that
//! book for one reader; the reader asks it which inputs to read ([`BarrierAligner::open`]),
//! tells it what came ([`BarrierAligner::hold`], [`BarrierAligner::end`]) and, after each
//! message, whether a barrier is complete ([`BarrierAligner::release`]).
//!
//! Inputs deliver barriers in the same order, so the inputs held at any time all hold the same
//! epoch. Each step costs O(inputs).

/// The barrier alignment of one reader over `n` inputs.
#[derive(Debug, Clone)]
pub(crate) struct BarrierAligner {
    /// Per input: the barrier it delivered and is held at, if any.
    held: Vec<Option<u64>>,
    /// Per input: whether it has ended.
    ended: Vec<bool>,
}

impl BarrierAligner {
    /// An aligner over `inputs` inputs, none held, none ended.
    pub(crate) fn new(inputs: usize) -> Self {
        Self {
            held: vec![None; inputs],
            ended: vec![false; inputs],
        }
    }

    /// Whether every input has ended: the reader is done.
    pub(crate) fn all_ended(&self) -> bool {
        self.ended.iter().all(|&e| e)
    }

    /// The inputs to read now: neither ended nor held at a barrier, in index order.
    pub(crate) fn open(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.held.len()).filter(|&i| !self.ended[i] && self.held[i].is_none())
    }

    /// Input `i` delivered barrier `epoch`: it is held (left out of [`BarrierAligner::open`])
    /// until the barrier is released.
    pub(crate) fn hold(&mut self, i: usize, epoch: u64) {
        self.held[i] = Some(epoch);
    }

    /// Input `i` ended: from now on it counts as having delivered every barrier.
    pub(crate) fn end(&mut self, i: usize) {
        self.ended[i] = true;
    }

    /// If the barrier held first (lowest input index) has arrived on every input that has not
    /// ended, releases every input and returns its epoch; otherwise changes nothing.
    pub(crate) fn release(&mut self) -> Option<u64> {
        let epoch = self.held.iter().flatten().next().copied()?;
        let aligned = self
            .held
            .iter()
            .zip(&self.ended)
            .all(|(h, &e)| e || *h == Some(epoch));
        if !aligned {
            return None;
        }
        self.held.iter_mut().for_each(|h| *h = None);
        Some(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(a: &BarrierAligner) -> Vec<usize> {
        a.open().collect()
    }

    #[test]
    fn one_input_releases_at_once() {
        let mut a = BarrierAligner::new(1);
        assert_eq!(a.release(), None);
        a.hold(0, 1);
        assert_eq!(open(&a), Vec::<usize>::new());
        assert_eq!(a.release(), Some(1));
        assert_eq!(open(&a), vec![0]);
        assert_eq!(
            a.release(),
            None,
            "a released barrier is not released twice"
        );
    }

    #[test]
    fn an_input_is_held_until_the_barrier_arrived_on_every_input() {
        let mut a = BarrierAligner::new(3);
        assert_eq!(open(&a), vec![0, 1, 2]);
        a.hold(1, 7);
        assert_eq!(a.release(), None);
        assert_eq!(open(&a), vec![0, 2], "the held input is not read");
        a.hold(0, 7);
        assert_eq!(a.release(), None);
        assert_eq!(open(&a), vec![2]);
        a.hold(2, 7);
        assert_eq!(open(&a), Vec::<usize>::new());
        assert_eq!(a.release(), Some(7));
        assert_eq!(open(&a), vec![0, 1, 2], "every input is read again");

        // The next barrier aligns the same way.
        a.hold(2, 8);
        a.hold(0, 8);
        assert_eq!(a.release(), None);
        a.hold(1, 8);
        assert_eq!(a.release(), Some(8));
    }

    #[test]
    fn ended_inputs_never_hold_a_barrier_back() {
        let mut a = BarrierAligner::new(3);
        a.end(2);
        assert_eq!(open(&a), vec![0, 1]);
        a.hold(0, 1);
        assert_eq!(a.release(), None);
        // The last live input ends instead of delivering the barrier: aligned.
        a.end(1);
        assert_eq!(a.release(), Some(1));
        assert_eq!(open(&a), vec![0]);
        assert!(!a.all_ended());
        a.end(0);
        assert!(a.all_ended());
        assert_eq!(open(&a), Vec::<usize>::new());
        assert_eq!(a.release(), None);
    }

    #[test]
    fn different_epochs_do_not_align() {
        // Cannot happen when inputs send barriers in order; if it did, nothing is released.
        let mut a = BarrierAligner::new(2);
        a.hold(0, 1);
        a.hold(1, 2);
        assert_eq!(a.release(), None);
        assert_eq!(open(&a), Vec::<usize>::new());
    }

    #[test]
    fn no_inputs_is_done_and_never_aligns() {
        let mut a = BarrierAligner::new(0);
        assert!(a.all_ended());
        assert_eq!(a.release(), None);
    }
}
