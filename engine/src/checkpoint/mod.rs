//! Barrier checkpoints on disk: the storage layer (DESIGN.md §3; format in `CHECKPOINTS.md`).
//!
//! The engine freezes each worker's window state at barrier *n*; a background thread hands the
//! frozen state to this layer as bytes written by a callback, opaque here (their format is
//! `CHECKPOINTS.md`, "State payload"). This layer writes each piece
//! into its own checksummed file, and commits the checkpoint by writing a manifest last. A
//! checkpoint without a valid manifest does not exist.
//!
//! ```text
//!  CheckpointDir::open(DIR)            lock DIR/LOCK (one process per folder)
//!   ├─ begin(n) ─▶ PendingCheckpoint   DIR/chk-00000000n/
//!   │     ├─ write_state(w, len, fill) worker-w.state: header | payload (filled in place, mmap) | xxh3
//!   │     ├─ write_json(name, value)   small files: source positions, sink state, ...
//!   │     ├─ rely_on(name, digest)     a durable file outside the folder (an output part)
//!   │     └─ commit(job, sources, sink) fsync folder, fsync root, MANIFEST.tmp, fsync, rename, fsync
//!   ├─ latest_valid(job) ─▶ Recovery   newest checkpoint that verifies, files and external files
//!   │                                  included; what was skipped and why; another job or a
//!   │                                  changed input file is refused
//!   └─ retain(k)                       delete all but the newest k complete checkpoints
//! ```
//!
//! Modules, bottom up: [`storage`] (the file operations, real and fault-injecting), [`file`](mod@file)
//! (the state file format), [`input`] (the input file's identity: length, time, inode, sampled
//! checksums), [`manifest`] (the manifest and its commit), [`dir`] (the root
//! folder: lock, layout, recovery, retention). The invariant every step keeps: a crash between
//! any two file operations leaves either the previous checkpoint or the new one as the newest
//! that verifies. `tests/checkpoint_crash.rs` checks it at every step against [`FaultyStorage`].
//!
//! Errors are [`CheckpointError`]; each variant carries the path at fault.

pub mod dir;
mod error;
pub mod file;
pub mod input;
pub mod manifest;
pub mod storage;

pub use dir::{
    CheckpointDir, CommittedCheckpoint, PendingCheckpoint, Recovery, Restored, SkipReason, Skipped,
};
pub use error::{CheckpointError, Result};
pub use file::{open_state_file, write_state_file, FileDigest, StateFile, StateMeta};
pub use input::{InputChange, InputChanges, InputFile, SampledBlock};
pub use manifest::{FileEntry, IdentityDiff, JobIdentity, Manifest};
pub use storage::{CrashMode, FaultyStorage, FileBytes, FsStorage, Storage};
