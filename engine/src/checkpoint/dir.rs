//! The checkpoint root: one folder per epoch, a lock, recovery and retention.
//!
//! ```text
//! DIR/
//! ├── LOCK                     held (flock-style) by the one process using DIR
//! ├── chk-000000041/           complete: has a MANIFEST
//! │   ├── worker-0.state       one per worker (see `file`)
//! │   ├── worker-1.state
//! │   ├── sink.json            whatever small files the caller adds
//! │   └── MANIFEST             written last (see `manifest`)
//! ├── chk-000000042/           in progress or abandoned: no MANIFEST, so not a checkpoint
//! │   └── worker-0.state
//! └── output/part-000000041    the caller's files that checkpoints rely on (`rely_on`): listed
//!                              in each manifest that relies on them, verified on recovery
//! ```
//!
//! Commit order of [`PendingCheckpoint::commit`]: every file was already written and fsynced;
//! fsync the checkpoint folder (the files' names are durable), fsync the root (the folder's name
//! is durable), then commit the manifest (`MANIFEST.tmp`, fsync, rename, fsync folder). A crash
//! between any two steps leaves the previous checkpoint as the newest one that verifies, or the
//! new one complete.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use super::error::{CheckpointError, Result};
use super::file::{open_state_file, write_state_file, FileDigest, StateFile, StateMeta};
use super::manifest::{
    commit_manifest, read_manifest, FileEntry, JobIdentity, Manifest, MANIFEST, MANIFEST_TMP,
    MANIFEST_VERSION,
};
use super::storage::{FileBytes, FsStorage, Storage};

/// The lock file in the root.
pub const LOCK: &str = "LOCK";
const PREFIX: &str = "chk-";
const STATE_SUFFIX: &str = ".state";

/// The folder name of checkpoint `epoch`: `chk-` and at least 9 digits.
pub fn folder_name(epoch: u64) -> String {
    format!("{PREFIX}{epoch:09}")
}

fn parse_folder(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() < 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of worker `worker`'s state.
pub fn state_file_name(worker: usize) -> String {
    format!("worker-{worker}{STATE_SUFFIX}")
}

fn parse_state_name(name: &str) -> Option<usize> {
    let n = name.strip_prefix("worker-")?.strip_suffix(STATE_SUFFIX)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// The checkpoint root, locked by this process for as long as the value lives.
pub struct CheckpointDir<S: Storage = FsStorage> {
    storage: S,
    root: PathBuf,
    _lock: S::Lock,
}

impl<S: Storage> fmt::Debug for CheckpointDir<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointDir")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl CheckpointDir<FsStorage> {
    /// Opens (creating it if needed) the checkpoint root `root` and takes its lock; fails at once
    /// with [`CheckpointError::Locked`] when another process, or another `CheckpointDir` of this
    /// one, holds it.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(FsStorage, root)
    }
}

impl<S: Storage> CheckpointDir<S> {
    /// [`CheckpointDir::open`] over any storage.
    pub fn open_with(storage: S, root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        storage
            .create_dir_all(&root)
            .map_err(CheckpointError::io("create folder", &root))?;
        let path = root.join(LOCK);
        let lock = storage
            .try_lock(&path)
            .map_err(CheckpointError::io("lock", &path))?
            .ok_or_else(|| CheckpointError::Locked {
                root: root.clone(),
                path,
            })?;
        Ok(Self {
            storage,
            root,
            _lock: lock,
        })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage it works on.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The folder of checkpoint `epoch`.
    pub fn folder(&self, epoch: u64) -> PathBuf {
        self.root.join(folder_name(epoch))
    }

    /// The epochs of every checkpoint folder, complete or not, oldest first.
    pub fn epochs(&self) -> Result<Vec<u64>> {
        let mut epochs: Vec<u64> = self
            .storage
            .list_dir(&self.root)
            .map_err(CheckpointError::io("list", &self.root))?
            .iter()
            .filter_map(|name| parse_folder(name))
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        Ok(epochs)
    }

    /// Starts checkpoint `epoch` by creating its folder. `epoch` must be newer than every folder
    /// in the root, complete or not; after a recovery, [`CheckpointDir::discard_newer_than`]
    /// clears what the crashed run left behind.
    pub fn begin(&self, epoch: u64) -> Result<PendingCheckpoint<'_, S>> {
        if let Some(&existing) = self.epochs()?.last() {
            if existing >= epoch {
                return Err(CheckpointError::EpochNotNewer {
                    path: self.folder(existing),
                    epoch,
                    existing,
                });
            }
        }
        let path = self.folder(epoch);
        self.storage
            .create_dir_all(&path)
            .map_err(CheckpointError::io("create folder", &path))?;
        Ok(PendingCheckpoint {
            dir: self,
            epoch,
            path,
            files: Vec::new(),
            external: Vec::new(),
        })
    }

    /// Deletes every checkpoint folder newer than `epoch` (all of them for 0), complete or not:
    /// after restoring `epoch`, they belong to a history that will be written again. Returns the
    /// folders deleted.
    pub fn discard_newer_than(&self, epoch: u64) -> Result<Vec<PathBuf>> {
        let doomed: Vec<u64> = self.epochs()?.into_iter().filter(|&e| e > epoch).collect();
        self.remove_all(&doomed)
    }

    /// Deletes checkpoint folders: each one's manifest first (made durable, so a crash never
    /// leaves a half-deleted checkpoint that looks complete), then the folder; finally the root
    /// is synced.
    fn remove_all(&self, epochs: &[u64]) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for &epoch in epochs {
            let path = self.folder(epoch);
            let manifest = path.join(MANIFEST);
            match self.storage.remove_file(&manifest) {
                Ok(()) => self
                    .storage
                    .sync_dir(&path)
                    .map_err(CheckpointError::io("fsync folder", &path))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CheckpointError::io("remove", &manifest)(e)),
            }
            self.storage
                .remove_dir_all(&path)
                .map_err(CheckpointError::io("remove folder", &path))?;
            removed.push(path);
        }
        if !removed.is_empty() {
            self.storage
                .sync_dir(&self.root)
                .map_err(CheckpointError::io("fsync folder", &self.root))?;
        }
        Ok(removed)
    }

    /// Finds the newest checkpoint whose manifest and every file verify (its own files and the
    /// external ones it relies on), newest first, skipping (and reporting) incomplete and
    /// damaged ones. A checkpoint written by a different job is refused with
    /// [`CheckpointError::DifferentJob`], and one whose input file changed since with
    /// [`CheckpointError::InputChanged`], rather than skipped.
    pub fn latest_valid(&self, current: &JobIdentity) -> Result<Recovery> {
        self.latest_valid_where(current, |_| Ok(()))
    }

    /// Like [`CheckpointDir::latest_valid`], with a check of the caller's on top: a checkpoint
    /// whose files verify but that `accept` rejects (e.g. the output it committed was damaged
    /// since) is skipped as damaged, and older ones are tried.
    pub fn latest_valid_where(
        &self,
        current: &JobIdentity,
        mut accept: impl FnMut(&Restored) -> Result<()>,
    ) -> Result<Recovery> {
        let mut skipped = Vec::new();
        for epoch in self.epochs()?.into_iter().rev() {
            let path = self.folder(epoch);
            let manifest = match read_manifest(&self.storage, &path) {
                Ok(Some(manifest)) => manifest,
                Ok(None) => {
                    skipped.push(Skipped {
                        epoch,
                        path,
                        reason: SkipReason::Incomplete,
                    });
                    continue;
                }
                Err(e) => {
                    skipped.push(Skipped {
                        epoch,
                        path,
                        reason: SkipReason::Damaged(e),
                    });
                    continue;
                }
            };
            let differences = manifest.job.differences(current);
            if !differences.is_empty() {
                return Err(CheckpointError::DifferentJob {
                    path: path.join(MANIFEST),
                    differences,
                });
            }
            let changes = manifest.job.input_changes(current);
            if !changes.is_empty() {
                return Err(CheckpointError::InputChanged {
                    path: path.join(MANIFEST),
                    changes,
                });
            }
            match self
                .verify(epoch, &path, manifest)
                .and_then(|r| accept(&r).map(|()| r))
            {
                Ok(restored) => {
                    return Ok(Recovery {
                        restored: Some(restored),
                        skipped,
                    })
                }
                Err(e) => skipped.push(Skipped {
                    epoch,
                    path,
                    reason: SkipReason::Damaged(e),
                }),
            }
        }
        Ok(Recovery {
            restored: None,
            skipped,
        })
    }

    /// Checks every file `manifest` lists against it.
    fn verify(&self, epoch: u64, path: &Path, manifest: Manifest) -> Result<Restored> {
        let mismatch = |file: &Path, what: String| CheckpointError::ManifestMismatch {
            path: file.to_path_buf(),
            what,
        };
        if manifest.epoch != epoch {
            let what = format!("says epoch {} in folder of epoch {epoch}", manifest.epoch);
            return Err(mismatch(&path.join(MANIFEST), what));
        }
        let mut states = BTreeMap::new();
        let mut files = BTreeMap::new();
        for entry in &manifest.files {
            let file = path.join(&entry.name);
            if let Err(reason) = check_name(&entry.name) {
                return Err(CheckpointError::BadManifest {
                    path: path.join(MANIFEST),
                    reason: format!("file name {:?}: {reason}", entry.name),
                });
            }
            let listed = FileDigest {
                len: entry.len,
                xxh3: entry.xxh3,
            };
            if entry.name.ends_with(STATE_SUFFIX) {
                let Some(worker) = parse_state_name(&entry.name) else {
                    return Err(mismatch(&file, "not a worker-N.state name".into()));
                };
                let state = open_state_file(&self.storage, &file)?;
                if state.digest() != listed {
                    let what = format!("{:?} on disk, {listed:?} listed", state.digest());
                    return Err(mismatch(&file, what));
                }
                if state.meta() != StateMeta::worker(worker, epoch) {
                    let what = format!("header says {:?}", state.meta());
                    return Err(mismatch(&file, what));
                }
                states.insert(worker, state);
            } else {
                let bytes = self
                    .storage
                    .read(&file)
                    .map_err(CheckpointError::io("read", &file))?;
                if bytes.len() as u64 != entry.len {
                    let what = format!("{} bytes, {} listed", bytes.len(), entry.len);
                    return Err(mismatch(&file, what));
                }
                let computed = xxh3_64(&bytes);
                if computed != entry.xxh3 {
                    return Err(CheckpointError::ChecksumMismatch {
                        path: file,
                        stored: entry.xxh3,
                        computed,
                    });
                }
                files.insert(entry.name.clone(), bytes);
            }
        }
        for entry in &manifest.external {
            if let Err(reason) = check_external_name(&entry.name) {
                return Err(CheckpointError::BadManifest {
                    path: path.join(MANIFEST),
                    reason: format!("external file {:?}: {reason}", entry.name),
                });
            }
            let file = self.root.join(&entry.name);
            let bytes = self
                .storage
                .read(&file)
                .map_err(CheckpointError::io("read", &file))?;
            let found = FileDigest {
                len: bytes.len() as u64,
                xxh3: xxh3_64(&bytes),
            };
            let expected = FileDigest {
                len: entry.len,
                xxh3: entry.xxh3,
            };
            if found != expected {
                return Err(CheckpointError::Damaged {
                    path: file,
                    expected,
                    found,
                });
            }
        }
        let workers = manifest.job.parallelism;
        // No state at all is a checkpoint of an ended job (its final one): nothing to restore
        // into workers, only positions and the sink's record. Otherwise every worker has one.
        if (!states.is_empty() && states.len() != workers)
            || states.keys().next_back().is_some_and(|&w| w >= workers)
        {
            let what = format!(
                "lists workers {:?} for parallelism {workers}",
                states.keys().collect::<Vec<_>>()
            );
            return Err(mismatch(&path.join(MANIFEST), what));
        }
        Ok(Restored {
            epoch,
            path: path.to_path_buf(),
            manifest,
            states,
            files,
        })
    }

    /// Keeps the newest `keep` (at least 1) complete checkpoints and deletes older ones, and
    /// deletes incomplete or damaged folders older than the newest complete one. Folders newer
    /// than the newest complete checkpoint (one in progress) are left alone, and nothing is
    /// deleted until one checkpoint is complete. "Complete" means a manifest that verifies; the
    /// state files are not re-read. Returns the folders deleted.
    pub fn retain(&self, keep: usize) -> Result<Vec<PathBuf>> {
        let keep = keep.max(1);
        let mut complete = Vec::new();
        let epochs = self.epochs()?;
        for &epoch in &epochs {
            match read_manifest(&self.storage, &self.folder(epoch)) {
                Ok(Some(_)) => complete.push(epoch),
                // Incomplete or damaged: not a checkpoint; deleted if older than a complete one.
                Ok(None) => {}
                Err(e @ CheckpointError::Io { .. }) => return Err(e),
                Err(_) => {}
            }
        }
        let Some(&newest) = complete.last() else {
            return Ok(Vec::new());
        };
        let kept = &complete[complete.len().saturating_sub(keep)..];
        let doomed: Vec<u64> = epochs
            .into_iter()
            .filter(|e| *e < newest && !kept.contains(e))
            .collect();
        self.remove_all(&doomed)
    }
}

/// Why a file name cannot be used in a checkpoint folder.
fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("empty or a folder reference");
    }
    if name.contains(['/', '\\', '\0']) {
        return Err("contains a path separator");
    }
    if name == MANIFEST || name == MANIFEST_TMP {
        return Err("reserved for the manifest");
    }
    Ok(())
}

/// Why a path cannot name an external file: it must be relative to the root, `/`-separated,
/// without `.` or `..` components.
fn check_external_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.starts_with('/') || name.contains(['\\', '\0']) {
        return Err("not a relative /-separated path");
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, . or .. component");
    }
    Ok(())
}

/// A checkpoint being written: add files, then [`PendingCheckpoint::commit`]. Dropped without
/// committing, it leaves an incomplete folder that is not a checkpoint and that
/// [`CheckpointDir::retain`] deletes later.
#[derive(Debug)]
pub struct PendingCheckpoint<'a, S: Storage = FsStorage> {
    dir: &'a CheckpointDir<S>,
    epoch: u64,
    path: PathBuf,
    files: Vec<FileEntry>,
    external: Vec<FileEntry>,
}

impl<S: Storage> PendingCheckpoint<'_, S> {
    /// Its epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Its folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn add(&mut self, name: String, reserved_state: bool) -> Result<PathBuf> {
        let path = self.path.join(&name);
        let invalid = |reason| CheckpointError::InvalidName {
            path: path.clone(),
            reason,
        };
        check_name(&name).map_err(invalid)?;
        if !reserved_state && name.ends_with(STATE_SUFFIX) {
            return Err(invalid("names ending in .state are for write_state"));
        }
        if self.files.iter().any(|f| f.name == name) {
            return Err(invalid("written twice"));
        }
        Ok(path)
    }

    fn record(&mut self, path: &Path, digest: FileDigest) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a checked name")
            .to_owned();
        self.files.push(FileEntry {
            name,
            len: digest.len,
            xxh3: digest.xxh3,
        });
    }

    /// Writes `worker-{worker}.state`: `payload_len` bytes that `fill` writes in place into the
    /// mapped file, then msync and fsync.
    pub fn write_state(
        &mut self,
        worker: usize,
        payload_len: u64,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<FileDigest> {
        let path = self.add(state_file_name(worker), true)?;
        let meta = StateMeta::worker(worker, self.epoch);
        let digest = write_state_file(&self.dir.storage, &path, meta, payload_len, fill)?;
        self.record(&path, digest);
        Ok(digest)
    }

    /// Writes a small file `name` holding `bytes`, and fsyncs it.
    pub fn write_file(&mut self, name: &str, bytes: &[u8]) -> Result<FileDigest> {
        let path = self.add(name.to_owned(), false)?;
        let storage = &self.dir.storage;
        storage
            .write_file(&path, bytes)
            .map_err(CheckpointError::io("write", &path))?;
        storage
            .sync_file(&path)
            .map_err(CheckpointError::io("fsync", &path))?;
        let digest = FileDigest {
            len: bytes.len() as u64,
            xxh3: xxh3_64(bytes),
        };
        self.record(&path, digest);
        Ok(digest)
    }

    /// Writes `value` as pretty JSON into the small file `name`, and fsyncs it.
    pub fn write_json<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<FileDigest> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|source| CheckpointError::Json {
            path: self.path.join(name),
            source,
        })?;
        self.write_file(name, &bytes)
    }

    /// Records that the checkpoint relies on the file `name` (relative to the root, outside the
    /// checkpoint folders), whose length and XXH3-64 are `digest`: recovery verifies it like the
    /// checkpoint's own files and skips the checkpoint, naming the file, if it differs. The
    /// caller has made the file durable (its data and its name) and never changes it while a
    /// checkpoint lists it; several checkpoints may rely on one file.
    pub fn rely_on(&mut self, name: &str, digest: FileDigest) -> Result<()> {
        let invalid = |reason| CheckpointError::InvalidName {
            path: self.dir.root.join(name),
            reason,
        };
        check_external_name(name).map_err(invalid)?;
        if self.external.iter().any(|f| f.name == name) {
            return Err(invalid("relied on twice"));
        }
        self.external.push(FileEntry {
            name: name.to_owned(),
            len: digest.len,
            xxh3: digest.xxh3,
        });
        Ok(())
    }

    /// Completes the checkpoint: makes the files' names and the folder's name durable, then
    /// commits the manifest. Once this returns `Ok`, the checkpoint survives a crash.
    pub fn commit(
        self,
        job: &JobIdentity,
        sources: serde_json::Value,
        sink: serde_json::Value,
    ) -> Result<CommittedCheckpoint> {
        let storage = &self.dir.storage;
        let root = &self.dir.root;
        storage
            .sync_dir(&self.path)
            .map_err(CheckpointError::io("fsync folder", &self.path))?;
        storage
            .sync_dir(root)
            .map_err(CheckpointError::io("fsync folder", root))?;
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let manifest = Manifest {
            format_version: MANIFEST_VERSION,
            job: job.clone(),
            epoch: self.epoch,
            created_unix_ms,
            files: self.files,
            external: self.external,
            sources,
            sink,
        };
        commit_manifest(storage, &self.path, &manifest)?;
        Ok(CommittedCheckpoint {
            epoch: self.epoch,
            path: self.path,
            manifest,
        })
    }
}

/// A checkpoint whose manifest is durable.
#[derive(Debug, Clone)]
pub struct CommittedCheckpoint {
    /// Its epoch.
    pub epoch: u64,
    /// Its folder.
    pub path: PathBuf,
    /// What was committed.
    pub manifest: Manifest,
}

/// The result of [`CheckpointDir::latest_valid`].
#[derive(Debug)]
pub struct Recovery {
    /// The newest checkpoint that verified, if any.
    pub restored: Option<Restored>,
    /// Newer checkpoint folders passed over, newest first, and why (print them).
    pub skipped: Vec<Skipped>,
}

/// A checkpoint folder recovery passed over.
#[derive(Debug)]
pub struct Skipped {
    /// Its epoch.
    pub epoch: u64,
    /// Its folder.
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
}

/// Why a checkpoint folder was passed over.
#[derive(Debug)]
#[non_exhaustive]
pub enum SkipReason {
    /// It has no manifest: it was being written when the run stopped.
    Incomplete,
    /// A file is damaged or missing; the error names it.
    Damaged(CheckpointError),
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            SkipReason::Incomplete => write!(
                f,
                "skipped checkpoint {}: never completed (no {MANIFEST})",
                self.path.display()
            ),
            SkipReason::Damaged(e) => {
                write!(f, "skipped checkpoint {}: {e}", self.path.display())
            }
        }
    }
}

/// A checkpoint that verified: its manifest, its workers' state (mapped) and its other files.
pub struct Restored {
    /// Its epoch.
    pub epoch: u64,
    /// Its folder.
    pub path: PathBuf,
    /// Its manifest (sources' positions, sink state, job).
    pub manifest: Manifest,
    states: BTreeMap<usize, StateFile>,
    files: BTreeMap<String, FileBytes>,
}

impl fmt::Debug for Restored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restored")
            .field("epoch", &self.epoch)
            .field("path", &self.path)
            .field("states", &self.states.len())
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Restored {
    /// Worker `worker`'s state; every worker `0..parallelism` has one.
    pub fn state(&self, worker: usize) -> Option<&StateFile> {
        self.states.get(&worker)
    }

    /// The workers' states in worker order.
    pub fn states(&self) -> impl Iterator<Item = &StateFile> {
        self.states.values()
    }

    /// The bytes of the small file `name`.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|b| &b[..])
    }

    /// The small file `name`, parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let path = self.path.join(name);
        let bytes = self
            .file(name)
            .ok_or_else(|| CheckpointError::Missing { path: path.clone() })?;
        serde_json::from_slice(bytes).map_err(|source| CheckpointError::Json { path, source })
    }
}
