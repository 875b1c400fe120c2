//! Window state of one partition worker.
//!
//! ```text
//!   WindowStore
//!   └─ BTreeMap<window start, WindowState>       (ordered: windows fire oldest first)
//!        └─ WindowState
//!             ├─ KeyInterner      key → group id (dense, in order of first appearance)
//!             └─ [GroupsAccumulator; aggregates]   per-group state in flat vectors
//! ```
//!
//! A window's state is created by its first row and dropped when it fires: the whole window goes
//! out as one `RecordBatch` (`window_start`, `window_end`, keys, aggregates) built in bulk from
//! the interner and the accumulators. Nothing here is shared between workers.

pub(crate) mod keys;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray};

use crate::aggregate::GroupsAccumulator;
use crate::error::Result;
use crate::plan::Plan;
use keys::KeyInterner;

/// The state of one window.
pub(crate) struct WindowState {
    keys: KeyInterner,
    accs: Vec<Box<dyn GroupsAccumulator>>,
}

impl WindowState {
    fn new(plan: &Plan) -> Self {
        Self {
            keys: KeyInterner::new(&plan.key_kind),
            accs: plan.new_accumulators(),
        }
    }

    /// Folds the selected rows of `batch` (all of them when `rows` is `None`) into this window.
    /// `groups` is scratch space.
    pub(crate) fn update(
        &mut self,
        plan: &Plan,
        key_cols: &[ArrayRef],
        batch: &RecordBatch,
        rows: Option<&[u32]>,
        groups: &mut Vec<u32>,
    ) -> Result<()> {
        groups.clear();
        self.keys.intern(key_cols, rows, groups)?;
        let n = self.keys.len();
        for (acc, input) in self.accs.iter_mut().zip(&plan.agg_inputs) {
            acc.update(input.map(|i| batch.column(i)), rows, groups, n);
        }
        Ok(())
    }

    /// Approximate bytes held.
    pub(crate) fn size(&self) -> usize {
        self.keys.size() + self.accs.iter().map(|a| a.size()).sum::<usize>()
    }

    /// The window's results.
    fn emit(mut self, plan: &Plan, start: i64) -> Result<RecordBatch> {
        let n = self.keys.len();
        let end = plan.windows.end_of(start);
        let tz = plan.ts_timezone.clone();
        let mut cols: Vec<ArrayRef> =
            Vec::with_capacity(2 + plan.key_indices.len() + self.accs.len());
        cols.push(Arc::new(
            TimestampMillisecondArray::from(vec![start; n]).with_timezone_opt(tz.clone()),
        ));
        cols.push(Arc::new(
            TimestampMillisecondArray::from(vec![end; n]).with_timezone_opt(tz),
        ));
        cols.extend(self.keys.emit()?);
        cols.extend(self.accs.iter_mut().map(|a| a.evaluate()));
        Ok(RecordBatch::try_new(Arc::clone(&plan.output_schema), cols)?)
    }
}

/// Every open window of one worker.
#[derive(Default)]
pub(crate) struct WindowStore {
    windows: BTreeMap<i64, WindowState>,
}

impl WindowStore {
    /// The state of the window starting at `start`, created if needed.
    pub(crate) fn window_mut(&mut self, plan: &Plan, start: i64) -> &mut WindowState {
        self.windows
            .entry(start)
            .or_insert_with(|| WindowState::new(plan))
    }

    /// Fires, oldest first, every window that ends at or before `watermark`.
    pub(crate) fn fire(
        &mut self,
        plan: &Plan,
        watermark: i64,
        mut emit: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        while let Some(entry) = self.windows.first_entry() {
            if plan.windows.end_of(*entry.key()) > watermark {
                break;
            }
            let (start, state) = entry.remove_entry();
            emit(state.emit(plan, start)?)?;
        }
        Ok(())
    }

    /// Number of open windows.
    pub(crate) fn len(&self) -> usize {
        self.windows.len()
    }
}
