//! What a worker hands over at an aligned checkpoint barrier, and the bytes it becomes.
//!
//! At barrier *n*, once every input has delivered it, a worker freezes its window state
//! ([`WorkerSnapshot`]: page pointers only, so the pause does not grow with the state) and sends
//! it on the job's snapshot channel before forwarding the barrier. Whoever receives it (weir's
//! checkpoint writer) encodes it off the worker thread, into a memory-mapped file for instance,
//! with [`WorkerSnapshot::encode`]. [`JobSpec::start_restored`](crate::JobSpec::start_restored)
//! starts a job from those bytes (the decoding side is `state`: `WindowStore::restore`).
//!
//! ```text
//!   WorkerSnapshot { epoch, worker, key_groups, range, watermark, pause }
//!   └─ FrozenStore
//!        └─ FrozenWindow × open windows, oldest first
//!             ├─ FrozenKeys               the window's keys, in group order
//!             └─ [FrozenState; aggregates]  each accumulator's frozen vectors
//! ```
//!
//! Everything here shares its pages with the worker's live state (`crate::pages`) and is
//! `Send`, so the encoding runs on another thread while the worker goes on. The payload format,
//! byte by byte, is in `engine/CHECKPOINTS.md` ("State payload").

use std::time::Duration;

use crate::aggregate::FrozenState;
use crate::keygroup::KeyGroupRange;
use crate::pages::{ByteArena, Out, PagedVec};

/// The frozen state of one worker at one checkpoint barrier.
pub struct WorkerSnapshot {
    /// The checkpoint.
    pub epoch: u64,
    /// The worker (partition) index.
    pub worker: usize,
    /// The job's number of key groups.
    pub key_groups: usize,
    /// The key groups the worker owns: every key of the state is in one of them.
    pub range: KeyGroupRange,
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
            .field("key_groups", &self.key_groups)
            .field("range", &self.range)
            .field("watermark", &self.watermark)
            .field("pause", &self.pause)
            .field("encoded_len", &self.encoded_len())
            .finish()
    }
}

impl WorkerSnapshot {
    /// Exact bytes [`WorkerSnapshot::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        32 + self.state.encoded_len()
    }

    /// Writes the snapshot into `out`, which must be [`WorkerSnapshot::encoded_len`] bytes.
    pub fn encode(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.encoded_len(), "buffer of the wrong size");
        let mut w = Out::new(out);
        w.u64(self.key_groups as u64);
        w.u64(self.range.first as u64);
        w.u64(self.range.end as u64);
        w.bytes(&self.watermark.to_le_bytes());
        self.state.encode(&mut w);
    }
}

/// Every open window of one worker, frozen at a checkpoint barrier.
pub(crate) struct FrozenStore {
    pub(crate) windows: Vec<FrozenWindow>,
}

/// One window of a [`FrozenStore`].
pub(crate) struct FrozenWindow {
    pub(crate) start: i64,
    pub(crate) keys: FrozenKeys,
    pub(crate) accs: Vec<Box<dyn FrozenState>>,
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

    /// Writes the windows (CHECKPOINTS.md, "State payload").
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

/// The keys of a window frozen at a checkpoint barrier, with the group id of the null key.
pub(crate) enum FrozenKeys {
    /// Integer keys as their 64-bit patterns, in group order.
    Int(PagedVec<u64>, Option<u32>),
    /// Byte-string keys (one string or binary column, or arrow-row encoded rows), in group order.
    Bytes(ByteArena, Option<u32>),
}

impl FrozenKeys {
    /// Exact bytes [`FrozenKeys::encode`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        5 + match self {
            FrozenKeys::Int(v, _) => v.encoded_len(),
            FrozenKeys::Bytes(a, _) => a.encoded_len(),
        }
    }

    /// Writes the keys (CHECKPOINTS.md, "Keys").
    pub(crate) fn encode(&self, out: &mut Out<'_>) {
        let (tag, null) = match self {
            FrozenKeys::Int(_, n) => (0u8, n),
            FrozenKeys::Bytes(_, n) => (1u8, n),
        };
        out.bytes(&[tag]);
        out.bytes(&null.unwrap_or(u32::MAX).to_le_bytes());
        match self {
            FrozenKeys::Int(v, _) => v.encode(out),
            FrozenKeys::Bytes(a, _) => a.encode(out),
        }
    }
}
