//! The replay's use of the engine's checkpoint folder ([`weir_engine::checkpoint`]; the on-disk
//! format is written down in `engine/CHECKPOINTS.md`).
//!
//! What a replay checkpoint holds, on top of the worker state files:
//!
//! - `sources` in the manifest: the file position ([`super::SourcePosition`]);
//! - `sink` in the manifest: the sink's record, and `"final": bool`, whether this is the end of
//!   the input (a final checkpoint has no state: the run is complete). A file output records
//!   `"results": {"len": N, "xxh3": X}`, how much of the results file ([`RESULTS`], see
//!   [`weir_io::results_file`]) the checkpoint commits and the checksum of those bytes; a
//!   results file damaged within them makes the checkpoint fail to verify like a damaged state
//!   file, naming the file ([`super::results_intact`]).
//!
//! A checkpoint that cannot be used is refused with a sentence saying how to start over, which
//! the caller words (`--fresh` for a file output, another topic for Kafka).

use weir_engine::checkpoint::{self, CheckpointDir, CheckpointError, JobIdentity, SkipReason};
use weir_engine::WorkerSnapshot;
use weir_io::results_file;

use crate::error::{Error, Result};

/// The results file in the checkpoint root: the output being written, committed by the
/// checkpoints up to the length each records.
pub const RESULTS: &str = "output/results";

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

    /// The results it commits (checked against the results file when it was restored).
    pub fn results(&self) -> Result<results_file::Committed> {
        results_of(&self.inner).map_err(Into::into)
    }
}

/// The results a checkpoint of a file output commits.
pub fn results_of(
    r: &checkpoint::Restored,
) -> std::result::Result<results_file::Committed, CheckpointError> {
    r.manifest
        .sink
        .get("results")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| CheckpointError::BadManifest {
            path: r.path.join(checkpoint::manifest::MANIFEST),
            reason: "records no committed results (written by an older weir?)".into(),
        })
}

/// The result of looking for a checkpoint to restore.
pub struct Found {
    /// The newest valid checkpoint of the job, if any.
    pub checkpoint: Option<Restored>,
    /// Newer checkpoints that were not usable, each naming the file and the reason.
    pub skipped: Vec<String>,
    /// The complete but damaged ones among them (not merely never completed): epoch, and the
    /// damaged file with what is wrong with it.
    pub damaged: Vec<(u64, String)>,
}

impl Found {
    /// The refusal of a folder whose checkpoints are all unusable while one of them was
    /// complete (damaged: restoring none and starting from nothing would silently discard
    /// it), or `None`. `start_over` says how to start over.
    pub fn refusal(&self, dir: &std::path::Path, start_over: &str) -> Option<Error> {
        if self.checkpoint.is_some() || self.damaged.is_empty() {
            return None;
        }
        // One damaged file (an output part) usually fails every checkpoint: name it once.
        let mut reasons: Vec<(&str, Vec<u64>)> = Vec::new();
        for (epoch, reason) in &self.damaged {
            match reasons.iter_mut().find(|(r, _)| r == reason) {
                Some((_, epochs)) => epochs.push(*epoch),
                None => reasons.push((reason, vec![*epoch])),
            }
        }
        let reasons: Vec<String> = reasons
            .iter()
            .map(|(reason, epochs)| {
                let epochs: Vec<String> = epochs.iter().map(u64::to_string).collect();
                let which = if epochs.len() == 1 {
                    format!("checkpoint {}", epochs[0])
                } else {
                    format!("checkpoints {}", epochs.join(", "))
                };
                format!("{reason} ({which})")
            })
            .collect();
        Some(Error::Refused(format!(
            "no checkpoint in {} can be restored: {}. {start_over}",
            dir.display(),
            reasons.join("; ")
        )))
    }
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
            // The user's to act on: another process, another job's checkpoints, a changed input.
            CheckpointError::Locked { .. }
            | CheckpointError::DifferentJob { .. }
            | CheckpointError::InputChanged { .. } => Error::Usage(e.to_string()),
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

    /// The newest checkpoint of `job` whose manifest and files verify and that `accept` takes
    /// (the sink's check of what it committed), and what was skipped. A checkpoint of another
    /// job, or of an input that changed since, is refused: an error naming what differs,
    /// followed by `start_over`.
    pub fn latest_valid(
        &self,
        job: &JobIdentity,
        start_over: &str,
        accept: impl FnMut(&checkpoint::Restored) -> std::result::Result<(), CheckpointError>,
    ) -> Result<Found> {
        let recovery = match self.dir.latest_valid_where(job, accept) {
            Ok(r) => r,
            Err(
                e @ (CheckpointError::DifferentJob { .. } | CheckpointError::InputChanged { .. }),
            ) => return Err(Error::Mismatch(format!("{e}. {start_over}"))),
            Err(e) => return Err(e.into()),
        };
        let skipped = recovery.skipped.iter().map(ToString::to_string).collect();
        let damaged = recovery
            .skipped
            .iter()
            .filter_map(|s| match &s.reason {
                SkipReason::Damaged(e) => Some((s.epoch, e.to_string())),
                _ => None,
            })
            .collect();
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
            damaged,
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

    /// Writes and commits checkpoint `epoch` with the sink's record `sink` (`"final"` is set in
    /// it: whether this checkpoint marks the end of the input).
    pub fn commit(
        &mut self,
        epoch: u64,
        job: &JobIdentity,
        snapshots: &[WorkerSnapshot],
        sources: serde_json::Value,
        mut sink: serde_json::Value,
        is_final: bool,
    ) -> Result<Committed> {
        let mut pending = self.dir.begin(epoch)?;
        let mut bytes = 0;
        for s in snapshots {
            let digest =
                pending.write_state(s.worker, s.encoded_len() as u64, |buf| s.encode(buf))?;
            bytes += digest.len;
        }
        sink["final"] = serde_json::Value::Bool(is_final);
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
