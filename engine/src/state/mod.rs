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

pub(crate) mod arena;
pub(crate) mod encode;
pub(crate) mod keys;
pub(crate) mod paged;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow_select::take::take;

use crate::aggregate::{FrozenState, GroupsAccumulator};
use crate::error::Result;
use crate::plan::Plan;
use encode::{DecodeError, Out, Reader};
use keys::{FrozenKeys, KeyInterner};

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

    /// The window's results: rows in order of first appearance, or by key
    /// ([`Plan::sort_rows`]).
    fn emit(mut self, plan: &Plan, start: i64) -> Result<RecordBatch> {
        let n = self.keys.len();
        let order = plan.sort_rows.then(|| self.keys.sorted_groups());
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
        cols.extend(self.keys.emit(order.as_deref())?);
        let order = order.map(UInt32Array::from);
        for acc in &mut self.accs {
            let values = acc.evaluate();
            cols.push(match &order {
                Some(order) => take(&values, order, None)?,
                None => values,
            });
        }
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

    /// A frozen copy of every open window for a checkpoint: O(windows + pages), no element is
    /// copied. Fails if an aggregate cannot be checkpointed.
    pub(crate) fn snapshot(&self) -> Result<FrozenStore, DecodeError> {
        let mut windows = Vec::with_capacity(self.windows.len());
        for (&start, w) in &self.windows {
            let accs = w
                .accs
                .iter()
                .map(|a| {
                    a.snapshot().ok_or_else(|| {
                        DecodeError("an aggregate of this job does not support checkpoints".into())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            windows.push(FrozenWindow {
                start,
                keys: w.keys.snapshot(),
                accs,
            });
        }
        Ok(FrozenStore { windows })
    }

    /// The store encoded by [`FrozenStore::encode`], for `plan`.
    pub(crate) fn restore(plan: &Plan, payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let n = r.len(8, "window count")?;
        let mut windows = BTreeMap::new();
        for _ in 0..n {
            let start =
                i64::from_le_bytes(r.bytes(8, "window start")?.try_into().expect("8 bytes"));
            let keys = KeyInterner::restore(&plan.key_kind, &mut r)?;
            let mut accs = plan.new_accumulators();
            if r.len(8, "aggregate count")? != accs.len() {
                return Err(DecodeError("aggregate count differs from the job's".into()));
            }
            for acc in &mut accs {
                let len = r.len(1, "aggregate state length")?;
                acc.restore(r.bytes(len, "aggregate state")?)?;
            }
            if windows.insert(start, WindowState { keys, accs }).is_some() {
                return Err(DecodeError(format!("window {start} appears twice")));
            }
        }
        if !r.is_empty() {
            return Err(DecodeError("bytes after the last window".into()));
        }
        Ok(Self { windows })
    }
}

/// Every open window of one worker, frozen at a checkpoint barrier; `Send`, so a background
/// thread can encode it while the worker goes on.
pub(crate) struct FrozenStore {
    windows: Vec<FrozenWindow>,
}

/// One window of a [`FrozenStore`].
struct FrozenWindow {
    start: i64,
    keys: FrozenKeys,
    accs: Vec<Box<dyn FrozenState>>,
}

impl FrozenStore {
    /// Exact bytes [`FrozenStore::encode`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        8 + self
            .windows
            .iter()
            .map(|FrozenWindow { keys: k, accs, .. }| {
                8 + k.encoded_len() + 8 + accs.iter().map(|a| 8 + a.encoded_len()).sum::<usize>()
            })
            .sum::<usize>()
    }

    /// `u64` windows | per window: `i64` start, keys, `u64` aggregates, per aggregate `u64`
    /// length and its state.
    pub(crate) fn encode(&self, out: &mut Out<'_>) {
        out.u64(self.windows.len() as u64);
        for FrozenWindow { start, keys, accs } in &self.windows {
            out.bytes(&start.to_le_bytes());
            keys.encode(out);
            out.u64(accs.len() as u64);
            for a in accs {
                out.u64(a.encoded_len() as u64);
                a.encode(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow_array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::aggregate::{count, max, mean, min, sum};
    use crate::job::Job;

    fn batch(schema: &arrow_schema::SchemaRef, seed: i64, n: i64) -> RecordBatch {
        let ts: Vec<i64> = (0..n).map(|i| (seed * 7 + i * 13) % 20_000).collect();
        let k: Vec<Option<String>> = (0..n)
            .map(|i| ((seed + i) % 17 != 0).then(|| format!("key-{}", (seed * 31 + i * 7) % 900)))
            .collect();
        let v: Vec<i64> = (0..n).map(|i| (seed * 3 + i) % 1000 - 500).collect();
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(ts)),
                Arc::new(StringArray::from(k)),
                Arc::new(Int64Array::from(v)),
            ],
        )
        .unwrap()
    }

    fn fold(store: &mut WindowStore, plan: &Plan, b: &RecordBatch) {
        let ts = plan.timestamps(b);
        let keys = plan.key_columns(b);
        let mut groups = Vec::new();
        for (r, &t) in ts.iter().enumerate() {
            let rows = [r as u32];
            store
                .window_mut(plan, plan.windows.start_of(t))
                .update(plan, &keys, b, Some(&rows), &mut groups)
                .unwrap();
        }
    }

    fn fire_all(store: &mut WindowStore, plan: &Plan) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        store
            .fire(plan, i64::MAX, |b| {
                out.push(b);
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_restored_snapshot_equals_the_state_at_the_snapshot() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ]));
        for keys in [vec!["k"], vec!["v"], vec!["k", "v"]] {
            let spec = Job::builder()
                .key_by(&keys)
                .tumbling(Duration::from_secs(5))
                .aggregate([count(), sum("v"), min("v"), max("v"), mean("v")])
                .build()
                .unwrap();
            let plan = Plan::new(&spec, Arc::clone(&schema)).unwrap();
            let mut live = WindowStore::default();
            let mut reference = WindowStore::default();
            for seed in 0..5 {
                let b = batch(&schema, seed, 3_000);
                fold(&mut live, &plan, &b);
                fold(&mut reference, &plan, &b);
            }
            let frozen = live.snapshot().unwrap();
            // Writes after the snapshot must not show through it.
            for seed in 5..8 {
                fold(&mut live, &plan, &batch(&schema, seed, 3_000));
            }
            let mut bytes = vec![0u8; frozen.encoded_len()];
            let mut out = Out::new(&mut bytes);
            frozen.encode(&mut out);
            assert_eq!(out.written(), bytes.len());
            let mut restored = WindowStore::restore(&plan, &bytes).unwrap();
            assert_eq!(
                fire_all(&mut restored, &plan),
                fire_all(&mut reference, &plan),
                "{keys:?}"
            );

            // A restored store goes on exactly like the live one.
            let mut restored = WindowStore::restore(&plan, &bytes).unwrap();
            for seed in 5..8 {
                fold(&mut restored, &plan, &batch(&schema, seed, 3_000));
            }
            assert_eq!(
                fire_all(&mut restored, &plan),
                fire_all(&mut live, &plan),
                "{keys:?}"
            );

            // Truncations are refused, never a panic.
            for cut in [0, 1, 8, 9, bytes.len() / 2, bytes.len() - 1] {
                assert!(
                    WindowStore::restore(&plan, &bytes[..cut]).is_err(),
                    "cut {cut}"
                );
            }
        }
    }
}
