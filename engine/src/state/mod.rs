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
//!
//! At a checkpoint barrier [`WindowStore::snapshot`] freezes the store into the types of
//! [`crate::snapshot`] (sharing pages, see [`crate::pages`]), which encode it; a restored job
//! decodes that payload back here ([`RestoredWorker::decode`]). The payload format is in
//! `engine/CHECKPOINTS.md` ("State payload").

pub(crate) mod keys;
pub(crate) mod regroup;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow_select::take::take;

use crate::aggregate::GroupsAccumulator;
use crate::error::{EngineError, Result};
use crate::keygroup::KeyGroupRange;
use crate::pages::{DecodeError, Reader};
use crate::plan::Plan;
use crate::snapshot::{FrozenStore, FrozenWindow};
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

    /// Appends groups `groups` of `from` (a window of another worker of the same job) as new
    /// groups: their keys and every aggregate's state.
    pub(crate) fn append_groups(
        &mut self,
        from: &WindowState,
        groups: &[u32],
    ) -> Result<(), DecodeError> {
        self.keys.append_from(&from.keys, groups)?;
        for (to, from) in self.accs.iter_mut().zip(&from.accs) {
            to.append_groups(from.as_ref(), groups)?;
        }
        Ok(())
    }

    /// The hash each group's key is routed by, in group order.
    pub(crate) fn key_hashes(&self) -> Vec<u64> {
        self.keys.partition_hashes()
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

    /// Every open window, oldest first, consuming the store.
    pub(crate) fn into_windows(self) -> impl Iterator<Item = (i64, WindowState)> {
        self.windows.into_iter()
    }

    /// A frozen copy of every open window for a checkpoint: O(windows + pages), no element is
    /// copied. Fails if an aggregate cannot be checkpointed (a plan error: the job's fault).
    pub(crate) fn snapshot(&self) -> Result<FrozenStore> {
        let mut windows = Vec::with_capacity(self.windows.len());
        for (&start, w) in &self.windows {
            let accs = w
                .accs
                .iter()
                .map(|a| {
                    a.snapshot().ok_or_else(|| {
                        EngineError::Plan(
                            "an aggregate of this job does not support checkpoints".into(),
                        )
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

/// A worker's state decoded from a snapshot payload.
pub(crate) struct RestoredWorker {
    /// The job's key groups when the snapshot was taken.
    pub key_groups: usize,
    /// The key groups the worker owned: every key of `store` is in one of them.
    pub range: KeyGroupRange,
    pub watermark: i64,
    pub store: WindowStore,
}

/// Bytes before the windows: key groups, first and end group, watermark.
const HEADER: usize = 32;

impl RestoredWorker {
    /// Decodes a payload written by [`WorkerSnapshot::encode`](crate::WorkerSnapshot::encode)
    /// for worker `worker` of `plan`: `u64` key groups, `u64` first and end of the worker's key
    /// group range, `i64` watermark, then the [`FrozenStore`].
    pub(crate) fn decode(plan: &Plan, worker: usize, payload: &[u8]) -> Result<Self> {
        let bad = |why: String| EngineError::Checkpoint {
            what: format!("state of worker {worker}"),
            why,
        };
        if payload.len() < HEADER {
            return Err(bad("shorter than its header".into()));
        }
        let word =
            |i: usize| u64::from_le_bytes(payload[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (key_groups, first, end) = (word(0), word(1), word(2));
        if key_groups == 0 || first >= end || end > key_groups {
            return Err(bad(format!(
                "corrupt state payload: key groups {first}..{end} of {key_groups}"
            )));
        }
        let store =
            WindowStore::restore(plan, &payload[HEADER..]).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            key_groups: key_groups as usize,
            range: KeyGroupRange {
                first: first as usize,
                end: end as usize,
            },
            watermark: word(3) as i64,
            store,
        })
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
    use crate::pages::Out;
    use crate::spec::Job;

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

    /// Rescaling: one worker's state split by key group over 3 workers gives, window by
    /// window and worker after worker, the rows the one worker gives, in the same order (rows
    /// sorted by key: the order agrees with the key groups); and back to 2 workers.
    #[test]
    fn regrouped_state_fires_the_same_rows_in_the_same_order() {
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
                .inputs(2) // sorted rows
                .key_groups(32)
                .key_by(&keys)
                .tumbling(Duration::from_secs(5))
                .aggregate([count(), sum("v"), min("v"), max("v"), mean("v")])
                .build()
                .unwrap();
            let plan = Plan::new(&spec, Arc::clone(&schema)).unwrap();
            let mut one = WindowStore::default();
            let mut reference = WindowStore::default();
            for seed in 0..5 {
                let b = batch(&schema, seed, 3_000);
                fold(&mut one, &plan, &b);
                fold(&mut reference, &plan, &b);
            }
            let expected = fire_all(&mut reference, &plan);
            let restored = |store: WindowStore, worker: usize, p: usize| RestoredWorker {
                key_groups: 32,
                range: KeyGroupRange::of_worker(worker, p, 32),
                watermark: 0,
                store,
            };
            let three = regroup::reassign(&plan, vec![restored(one, 0, 1)], 3, 32).unwrap();
            assert_eq!(three.len(), 3);
            let two = regroup::reassign(&plan, three, 2, 32).unwrap();
            let parts: Vec<Vec<RecordBatch>> = two
                .into_iter()
                .map(|mut w| fire_all(&mut w.store, &plan))
                .collect();
            let mut got = Vec::new();
            for (i, e) in expected.iter().enumerate() {
                let pieces: Vec<&RecordBatch> = parts
                    .iter()
                    .filter_map(|p| {
                        p.iter()
                            .find(|b| b.column(0).slice(0, 1) == e.column(0).slice(0, 1))
                    })
                    .collect();
                got.push(arrow_select::concat::concat_batches(&e.schema(), pieces).unwrap());
                assert_eq!(got[i], *e, "{keys:?}: window {i}");
            }
            assert_eq!(
                parts.iter().map(Vec::len).sum::<usize>(),
                expected.len() * 2,
                "{keys:?}: every window has keys in both workers"
            );
        }
    }

    /// The example of CHECKPOINTS.md, "State payload", byte for byte.
    #[test]
    fn the_payload_is_the_documented_one() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("k", DataType::Utf8, true),
        ]));
        let spec = Job::builder()
            .key_by(["k"])
            .tumbling(Duration::from_secs(5))
            .aggregate([count()])
            .build()
            .unwrap();
        let plan = Plan::new(&spec, Arc::clone(&schema)).unwrap();
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![
                    10_000, 11_000, 12_000, 13_000,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("a"),
                    None,
                    Some("a"),
                ])),
            ],
        )
        .unwrap();
        let mut store = WindowStore::default();
        fold(&mut store, &plan, &b);
        let snapshot = crate::WorkerSnapshot {
            epoch: 1,
            worker: 0,
            key_groups: 128,
            range: KeyGroupRange { first: 0, end: 128 },
            watermark: 10_000,
            pause: Duration::ZERO,
            state: store.snapshot().unwrap(),
        };
        let mut bytes = vec![0u8; snapshot.encoded_len()];
        snapshot.encode(&mut bytes);
        let doc = "
            80 00 00 00 00 00 00 00   00 00 00 00 00 00 00 00   80 00 00 00 00 00 00 00
            10 27 00 00 00 00 00 00   01 00 00 00 00 00 00 00   10 27 00 00 00 00 00 00
            01   01 00 00 00   02 00 00 00 00 00 00 00   01 00 00 00 00 00 00 00   61
            01 00 00 00 00 00 00 00   18 00 00 00 00 00 00 00   02 00 00 00 00 00 00 00
            03 00 00 00 00 00 00 00   01 00 00 00 00 00 00 00";
        let expected: Vec<u8> = doc
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        assert_eq!(bytes, expected);
        let restored = RestoredWorker::decode(&plan, 0, &bytes).unwrap();
        assert_eq!(restored.watermark, 10_000);
        assert_eq!(restored.store.len(), 1);
        assert_eq!(restored.range, KeyGroupRange { first: 0, end: 128 });
        let err = RestoredWorker::decode(&plan, 3, &bytes[..44])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("checkpoint state of worker 3: corrupt state payload: "),
            "{err}"
        );
    }
}
