//! The replay's use of the engine's checkpoint folder ([`weir_engine::checkpoint`]; the on-disk
//! format is written down in `engine/CHECKPOINTS.md`).
//!
//! What a replay checkpoint holds, on top of the worker state files:
//!
//! - `sources` in the manifest: the file position ([`super::SourcePosition`]);
//! - `sink` in the manifest: `{"final": bool, "output": {...}}`, the output part of the epoch, and
//!   whether this is the end of the input (a final checkpoint has no state: the run is complete
//!   and only the output may still have to be assembled).

use weir_engine::checkpoint::{self, CheckpointDir, CheckpointError, JobIdentity};
use weir_engine::WorkerSnapshot;

use crate::error::{Error, Result};

/// A checkpoint loaded and verified.
pub struct Restored {
    /// Its epoch.
    pub epoch: u64,
    /// Whether it marks the end of the input.
    pub is_final: bool,
    /// The source position it recorded.
    pub sources: serde_json::Value,
    inner: checkpoint::Restored,
}

impl Restored {
    /// The fingerprint of its manifest ([`manifest_hash`]).
    pub fn manifest_hash(&self) -> String {
        manifest_hash(&self.inner.manifest)
    }

    /// Its folder.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// Each worker's state payload, in worker order.
    pub fn states(&self) -> Vec<&[u8]> {
        self.inner.states().map(|s| &s[..]).collect()
    }
}

/// The result of looking for a checkpoint to restore.
pub struct Found {
    /// The newest valid checkpoint of the job, if any.
    pub checkpoint: Option<Restored>,
    /// Newer checkpoints that were not usable, each naming the file and the reason.
    pub skipped: Vec<String>,
}

/// A checkpoint just committed to disk.
pub struct Committed {
    /// Bytes of state written.
    pub bytes: u64,
    /// Its manifest's fingerprint ([`manifest_hash`]).
    pub manifest: String,
}

/// The fingerprint of a manifest: XXH3-64 of its bytes, in hex. A Kafka sink records it with
/// each committed transaction, tying the broker's progress to one local checkpoint.
pub fn manifest_hash(m: &checkpoint::Manifest) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&m.to_bytes()))
}

/// The checkpoint folder of one replay job, locked for this process.
pub struct CheckpointStore {
    dir: CheckpointDir,
}

impl From<CheckpointError> for Error {
    fn from(e: CheckpointError) -> Self {
        match e {
            // The user's to act on: another process, or another job's checkpoints.
            CheckpointError::Locked { .. } | CheckpointError::DifferentJob { .. } => {
                Error::Usage(e.to_string())
            }
            e => Error::Checkpoint(e),
        }
    }
}

impl CheckpointStore {
    /// Opens (creating) the folder and takes its lock; a second process fails at once.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        Ok(Self {
            dir: CheckpointDir::open(dir)?,
        })
    }

    /// The newest checkpoint of `job` whose manifest and files verify, and what was skipped.
    /// A checkpoint of another job is an error naming what differs.
    pub fn latest_valid(&self, job: &JobIdentity) -> Result<Found> {
        let recovery = self.dir.latest_valid(job)?;
        let skipped = recovery.skipped.iter().map(ToString::to_string).collect();
        let checkpoint = recovery.restored.map(|r| Restored {
            epoch: r.epoch,
            is_final: r
                .manifest
                .sink
                .get("final")
                .and_then(|f| f.as_bool())
                .unwrap_or(false),
            sources: r.manifest.sources.clone(),
            inner: r,
        });
        Ok(Found {
            checkpoint,
            skipped,
        })
    }

    /// Continues after checkpoint `epoch` (0: from scratch): folders of newer, uncommitted or
    /// abandoned checkpoints are removed so that new epochs can be written.
    pub fn continue_after(&self, epoch: u64) -> Result<()> {
        self.dir.discard_newer_than(epoch)?;
        Ok(())
    }

    /// The epochs of every checkpoint folder, complete or not, oldest first.
    pub fn epochs(&self) -> Result<Vec<u64>> {
        Ok(self.dir.epochs()?)
    }

    /// The folder of checkpoint `epoch`.
    pub fn folder(&self, epoch: u64) -> std::path::PathBuf {
        self.dir.folder(epoch)
    }

    /// Writes and commits checkpoint `epoch`.
    pub fn commit(
        &mut self,
        epoch: u64,
        job: &JobIdentity,
        snapshots: &[WorkerSnapshot],
        sources: serde_json::Value,
        output: serde_json::Value,
        is_final: bool,
    ) -> Result<Committed> {
        let mut pending = self.dir.begin(epoch)?;
        let mut bytes = 0;
        for s in snapshots {
            let digest =
                pending.write_state(s.worker, s.encoded_len() as u64, |buf| s.encode(buf))?;
            bytes += digest.len;
        }
        let sink = serde_json::json!({ "final": is_final, "output": output });
        let done = pending.commit(job, sources, sink)?;
        Ok(Committed {
            bytes,
            manifest: manifest_hash(&done.manifest),
        })
    }

    /// Keeps the newest `keep` complete checkpoints.
    pub fn retain(&mut self, keep: usize) -> Result<()> {
        self.dir.retain(keep.max(1))?;
        Ok(())
    }
}
