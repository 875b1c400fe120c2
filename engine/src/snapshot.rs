//! What a worker hands over at an aligned checkpoint barrier, and how it comes back.
//!
//! At barrier *n*, once every input has delivered it, a worker freezes its window state
//! ([`WorkerSnapshot`]: page pointers only, so the pause does not grow with the state) and sends
//! it on the job's snapshot channel before forwarding the barrier. Whoever receives it (weir's
//! checkpoint writer) encodes it off the worker thread, into a memory-mapped file for instance,
//! with [`WorkerSnapshot::encode`]. [`JobSpec::start_restored`](crate::JobSpec::start_restored)
//! starts a job from those bytes.
//!
//! ```text
//! payload:  i64 worker watermark | u64 windows | per window: i64 start, keys, aggregates
//! ```

use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::plan::Plan;
use crate::state::encode::Out;
use crate::state::{FrozenStore, WindowStore};

/// The frozen state of one worker at one checkpoint barrier.
pub struct WorkerSnapshot {
    /// The checkpoint.
    pub epoch: u64,
    /// The worker (partition) index.
    pub worker: usize,
    /// The worker's watermark at the barrier: windows ending at or before it have fired.
    pub watermark: i64,
    /// How long the worker stopped to take the snapshot.
    pub pause: Duration,
    pub(crate) state: FrozenStore,
}

impl std::fmt::Debug for WorkerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSnapshot")
            .field("epoch", &self.epoch)
            .field("worker", &self.worker)
            .field("watermark", &self.watermark)
            .field("pause", &self.pause)
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}

impl WorkerSnapshot {
    /// Exact bytes [`WorkerSnapshot::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        8 + self.state.encoded_len()
    }

    /// Writes the snapshot into `out`, which must be [`WorkerSnapshot::encoded_len`] bytes.
    pub fn encode(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.encoded_len(), "buffer of the wrong size");
        let mut w = Out::new(out);
        w.bytes(&self.watermark.to_le_bytes());
        self.state.encode(&mut w);
    }
}

/// A worker's state decoded from a snapshot payload.
pub(crate) struct RestoredWorker {
    pub watermark: i64,
    pub store: WindowStore,
}

/// Decodes a payload written by [`WorkerSnapshot::encode`] for `plan`.
pub(crate) fn decode(plan: &Plan, worker: usize, payload: &[u8]) -> Result<RestoredWorker> {
    let bad =
        |why: String| EngineError::Execution(format!("checkpoint state of worker {worker}: {why}"));
    if payload.len() < 8 {
        return Err(bad("shorter than its header".into()));
    }
    let (wm, rest) = payload.split_at(8);
    let store = WindowStore::restore(plan, rest).map_err(|e| bad(e.to_string()))?;
    Ok(RestoredWorker {
        watermark: i64::from_le_bytes(wm.try_into().expect("8 bytes")),
        store,
    })
}
