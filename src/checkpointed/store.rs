//! The checkpoint folder: state files, manifests, the lock.
//!
//! ```text
//! DIR/LOCK                        held (flock) by the one process running this job
//! DIR/chk-000000042/worker-0.state  WorkerSnapshot payload, written through a writable mmap,
//! DIR/chk-000000042/worker-1.state  msync'd and fsync'd
//! DIR/chk-000000042/MANIFEST      JSON, written last: temp file, fsync, rename, fsync the folder
//! DIR/output/part-…               the exactly-once output (weir_io::parts)
//! ```
//!
//! The manifest names the job (its identity), the epoch, every state file with its length and
//! XXH3-64, the source position and the output part. A folder without a valid manifest is not a
//! checkpoint; a manifest whose files do not match their checksums is reported by file name and
//! skipped in favour of the previous checkpoint.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weir_engine::WorkerSnapshot;
use weir_io::parts::sync_dir;

use crate::error::{Error, Result};

const MANIFEST: &str = "MANIFEST";
const FORMAT_VERSION: u32 = 1;

/// One state file in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// File name in the checkpoint folder.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// XXH3-64 of the contents.
    pub xxh3: u64,
}

/// The manifest of one checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk format version.
    pub version: u32,
    /// The job this checkpoint belongs to.
    pub identity: serde_json::Value,
    /// The checkpoint epoch.
    pub epoch: u64,
    /// Worker state files, in worker order.
    pub files: Vec<FileEntry>,
    /// Where the source stood.
    pub sources: serde_json::Value,
    /// The output part of this epoch.
    pub sink: serde_json::Value,
    /// Whether this is the end of the input: no state, the output is complete.
    pub is_final: bool,
}

/// A checkpoint loaded and verified.
pub struct Restored {
    /// Its manifest.
    pub manifest: Manifest,
    /// Each worker's state payload.
    pub states: Vec<Vec<u8>>,
}

/// The result of looking for a checkpoint to restore.
pub struct Found {
    /// The newest valid checkpoint of the job, if any.
    pub checkpoint: Option<Restored>,
    /// Newer checkpoints that were not usable, each with the reason naming the file.
    pub skipped: Vec<String>,
}

/// The checkpoint folder of one job, locked for this process.
pub struct CheckpointStore {
    dir: PathBuf,
    _lock: File,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(weir_io::Error::io(path, e))
}

fn folder(epoch: u64) -> String {
    format!("chk-{epoch:09}")
}

impl CheckpointStore {
    /// Opens (creating) `dir` and takes its lock; a second process fails at once.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        lock.try_lock().map_err(|_| {
            Error::usage(format!(
                "{}: another weir process is using this checkpoint folder (its LOCK is held)",
                dir.display()
            ))
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// Epochs of the folders that have a manifest file, newest first.
    fn epochs(&self) -> Result<Vec<u64>> {
        let mut epochs: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(|e| io(&self.dir, e))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(epochs)
    }

    /// The newest checkpoint of `identity` whose manifest and files verify; newer ones that do
    /// not are listed in `skipped`. A valid checkpoint of another job is an error naming the
    /// fields that differ.
    pub fn latest_valid(&self, identity: &serde_json::Value) -> Result<Found> {
        let mut skipped = Vec::new();
        for epoch in self.epochs()? {
            let dir = self.dir.join(folder(epoch));
            let mpath = dir.join(MANIFEST);
            if !mpath.exists() {
                continue; // never committed: not a checkpoint
            }
            let manifest: Manifest = match fs::read(&mpath)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(m) => m,
                Err(e) => {
                    skipped.push(format!("{}: unreadable manifest: {e}", mpath.display()));
                    continue;
                }
            };
            if manifest.identity != *identity {
                return Err(Error::usage(format!(
                    "{}: the checkpoint is of a different job ({}); use --fresh to start over, or another --checkpoint-dir",
                    mpath.display(),
                    differences(&manifest.identity, identity)
                )));
            }
            let mut states = Vec::with_capacity(manifest.files.len());
            let mut bad = None;
            for f in &manifest.files {
                let p = dir.join(&f.name);
                match fs::read(&p) {
                    Ok(b) if b.len() as u64 != f.len => {
                        bad = Some(format!(
                            "{}: {} bytes, the manifest says {} (truncated?)",
                            p.display(),
                            b.len(),
                            f.len
                        ))
                    }
                    Ok(b) if xxhash_rust::xxh3::xxh3_64(&b) != f.xxh3 => {
                        bad = Some(format!("{}: checksum mismatch (corrupt)", p.display()))
                    }
                    Ok(b) => states.push(b),
                    Err(e) => bad = Some(format!("{}: {e}", p.display())),
                }
                if bad.is_some() {
                    break;
                }
            }
            match bad {
                Some(why) => skipped.push(why),
                None => {
                    return Ok(Found {
                        checkpoint: Some(Restored { manifest, states }),
                        skipped,
                    })
                }
            }
        }
        Ok(Found {
            checkpoint: None,
            skipped,
        })
    }

    /// Writes checkpoint `epoch` (state files, then the manifest) and returns the state bytes.
    pub fn commit(
        &mut self,
        epoch: u64,
        identity: &serde_json::Value,
        snapshots: &[WorkerSnapshot],
        sources: serde_json::Value,
        sink: serde_json::Value,
        is_final: bool,
    ) -> Result<u64> {
        let dir = self.dir.join(folder(epoch));
        if dir.exists() {
            // Left by a crash before its manifest, or by a run that restored an older one.
            fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let mut files = Vec::with_capacity(snapshots.len());
        let mut bytes = 0;
        for s in snapshots {
            let name = format!("worker-{}.state", s.worker);
            let (len, xxh3) = write_mapped(&dir.join(&name), s)?;
            bytes += len;
            files.push(FileEntry { name, len, xxh3 });
        }
        let manifest = Manifest {
            version: FORMAT_VERSION,
            identity: identity.clone(),
            epoch,
            files,
            sources,
            sink,
            is_final,
        };
        let tmp = dir.join("MANIFEST.tmp");
        let mut f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(&serde_json::to_vec_pretty(&manifest).expect("serialisable"))
            .and_then(|()| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| io(&tmp, e))?;
        sync_dir(&dir)?;
        sync_dir(&self.dir)?;
        Ok(bytes)
    }

    /// Deletes all but the newest `keep` committed checkpoints, and folders older than the
    /// newest committed one that never got a manifest.
    pub fn retain(&mut self, keep: usize) -> Result<()> {
        let epochs = self.epochs()?;
        let committed: Vec<u64> = epochs
            .iter()
            .copied()
            .filter(|e| self.dir.join(folder(*e)).join(MANIFEST).exists())
            .collect();
        let Some(&newest) = committed.first() else {
            return Ok(());
        };
        let kept: Vec<u64> = committed.iter().copied().take(keep.max(1)).collect();
        for e in epochs {
            if e < newest && !kept.contains(&e) {
                let d = self.dir.join(folder(e));
                fs::remove_dir_all(&d).map_err(|err| io(&d, err))?;
            }
        }
        Ok(())
    }
}

/// Writes a snapshot into `path` through a writable memory map, msyncs and fsyncs it; returns
/// its length and XXH3-64.
fn write_mapped(path: &Path, s: &WorkerSnapshot) -> Result<(u64, u64)> {
    let len = s.encoded_len();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    file.set_len(len as u64).map_err(|e| io(path, e))?;
    // SAFETY: the file was just created by this process inside a folder it holds the lock of,
    // and nothing else maps or writes it while this map lives.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(|e| io(path, e))?;
    s.encode(&mut map[..]);
    let sum = xxhash_rust::xxh3::xxh3_64(&map[..]);
    map.flush().map_err(|e| io(path, e))?;
    drop(map);
    file.sync_all().map_err(|e| io(path, e))?;
    Ok((len as u64, sum))
}

/// The top-level fields that differ between two identities, as `key: a vs b`.
fn differences(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return "unrecognised identity".into();
    };
    let mut diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: {v} vs {}",
                b.get(k).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect();
    diffs.extend(
        b.keys()
            .filter(|k| !a.contains_key(*k))
            .map(|k| format!("{k}: new")),
    );
    diffs.join("; ")
}
