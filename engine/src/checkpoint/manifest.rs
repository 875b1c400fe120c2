//! The manifest: the one file that makes a checkpoint folder a checkpoint.
//!
//! It is JSON (readable with `jq`), lists every other file of the checkpoint with its length and
//! checksum, and likewise every file outside the folder that the checkpoint relies on
//! (`external`: e.g. the committed output parts, shared by successive checkpoints), carries the
//! sources' positions and the sink's state as opaque JSON, and identifies the job (its input
//! file included, [`InputFile`]) so a checkpoint is never restored into a different one or onto
//! a changed input. Its last field, `checksum`,
//! is the XXH3-64 of the file as written with that field's 16 hex digits replaced by zeros, so a
//! damaged manifest is caught even when it still parses.
//!
//! It is committed last ([`commit_manifest`]): write `MANIFEST.tmp`, fsync it, rename it to
//! `MANIFEST`, fsync the folder. Before the rename the checkpoint does not exist; after it, the
//! manifest is complete, because its data was durable before the name was.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::error::{CheckpointError, Result};
use super::input::{InputChanges, InputFile};
use super::storage::Storage;

/// The manifest format this build writes and reads. 2 added `external` and `job.input_file`: a
/// version 1 manifest cannot vouch for its output parts nor its input, so it is not read. 3
/// added `job.key_groups` (and state files of version 2, split by key group): a version 2
/// checkpoint cannot be restored at another parallelism, so it is not read either.
pub const MANIFEST_VERSION: u32 = 3;
/// The committed manifest's file name.
pub const MANIFEST: &str = "MANIFEST";
/// The manifest's name until it is committed.
pub const MANIFEST_TMP: &str = "MANIFEST.tmp";

/// What makes two runs the same job, as far as restoring state is concerned. Filled by the
/// caller; this layer only compares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// The input (a path, a topic), as the user named it.
    pub input: String,
    /// The tumbling window length.
    pub window_ms: i64,
    /// The key columns, in order.
    pub keys: Vec<String>,
    /// The aggregates, e.g. `count(*)`, `sum(bytes)`, in order.
    pub aggregates: Vec<String>,
    /// The number of partition workers when the checkpoint was taken: how many state files it
    /// has. Not part of the job's identity: a checkpoint restores at any parallelism up to
    /// `key_groups`.
    pub parallelism: usize,
    /// The number of key groups (max parallelism): fixed at the job's first start, state is
    /// split by it. (Absent, as 0, only in manifests older than version 3, which are refused.)
    #[serde(default)]
    pub key_groups: usize,
    /// The input file's length, time, inode and sampled checksums, when the input is a file:
    /// compared by [`JobIdentity::input_changes`], not [`JobIdentity::differences`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file: Option<InputFile>,
}

/// One field in which a checkpoint's job differs from the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDiff {
    /// The field, e.g. `window`.
    pub field: &'static str,
    /// Its value in the checkpoint.
    pub checkpoint: String,
    /// Its value in the current job.
    pub current: String,
}

impl fmt::Display for IdentityDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (checkpoint) vs {} (this job)",
            self.field, self.checkpoint, self.current
        )
    }
}

impl JobIdentity {
    /// The fields in which `self` (the checkpoint's job) differs from `current`; empty when they
    /// are the same job.
    pub fn differences(&self, current: &JobIdentity) -> Vec<IdentityDiff> {
        let mut out = Vec::new();
        let mut check = |field, a: String, b: String| {
            if a != b {
                out.push(IdentityDiff {
                    field,
                    checkpoint: a,
                    current: b,
                });
            }
        };
        check(
            "input",
            format!("{:?}", self.input),
            format!("{:?}", current.input),
        );
        check(
            "window",
            format!("{} ms", self.window_ms),
            format!("{} ms", current.window_ms),
        );
        check(
            "keys",
            format!("{:?}", self.keys),
            format!("{:?}", current.keys),
        );
        check(
            "aggregates",
            format!("{:?}", self.aggregates),
            format!("{:?}", current.aggregates),
        );
        check(
            "key groups",
            self.key_groups.to_string(),
            current.key_groups.to_string(),
        );
        let kind = |f: &Option<InputFile>| match f {
            Some(_) => "a file".to_string(),
            None => "not a file".to_string(),
        };
        check(
            "input kind",
            kind(&self.input_file),
            kind(&current.input_file),
        );
        out
    }

    /// How the input file changed since `self` (the checkpoint's job) was recorded, when both
    /// are files; empty otherwise (see [`InputFile::changes`]).
    pub fn input_changes(&self, current: &JobIdentity) -> InputChanges {
        match (&self.input_file, &current.input_file) {
            (Some(a), Some(b)) => a.changes(b),
            _ => InputChanges {
                changes: Vec::new(),
                samples_compared: None,
            },
        }
    }
}

/// A file of the checkpoint as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the checkpoint folder (names ending in `.state` are state files); for an
    /// external file, its path relative to the checkpoint root, `/`-separated.
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
    /// Its XXH3-64 (for a state file: its trailer, the checksum of header and payload).
    pub xxh3: u64,
}

/// The contents of a `MANIFEST`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub format_version: u32,
    /// The job that wrote it.
    pub job: JobIdentity,
    /// The checkpoint's epoch (barrier number); also in the folder's name.
    pub epoch: u64,
    /// When it was committed, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Every other file of the checkpoint.
    pub files: Vec<FileEntry>,
    /// Files outside the checkpoint's folder that it relies on, named relative to the root
    /// (e.g. `output/part-000000003`): verified like `files` before it is restored.
    pub external: Vec<FileEntry>,
    /// The sources' positions at the barrier; opaque to this layer.
    pub sources: serde_json::Value,
    /// The sink's transaction state at the barrier; opaque to this layer.
    pub sink: serde_json::Value,
}

#[derive(Serialize)]
struct SealedRef<'a> {
    #[serde(flatten)]
    manifest: &'a Manifest,
    checksum: &'a str,
}

#[derive(Deserialize)]
struct Sealed {
    #[serde(flatten)]
    manifest: Manifest,
    checksum: String,
}

const ZEROS: &str = "0000000000000000";

impl Manifest {
    /// The manifest as written to disk: pretty JSON with its checksum last.
    pub fn to_bytes(&self) -> Vec<u8> {
        let sealed = SealedRef {
            manifest: self,
            checksum: ZEROS,
        };
        let mut bytes = serde_json::to_vec_pretty(&sealed).expect("a manifest always serializes");
        bytes.push(b'\n');
        let at = rfind(&bytes, ZEROS.as_bytes()).expect("the checksum field was just written");
        let hex = format!("{:016x}", xxh3_64(&bytes));
        bytes[at..at + 16].copy_from_slice(hex.as_bytes());
        bytes
    }

    /// Parses and verifies a manifest read from `path` (which only names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let bad = |reason: String| CheckpointError::BadManifest {
            path: path.to_path_buf(),
            reason,
        };
        let sealed: Sealed =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let valid_hex = sealed.checksum.len() == 16
            && sealed
                .checksum
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_hex {
            return Err(bad(format!(
                "checksum {:?} is not 16 hex digits",
                sealed.checksum
            )));
        }
        let stored = u64::from_str_radix(&sealed.checksum, 16).expect("checked hex");
        let at = rfind(bytes, sealed.checksum.as_bytes())
            .ok_or_else(|| bad("checksum not found where it is written".into()))?;
        let mut zeroed = bytes.to_vec();
        zeroed[at..at + 16].copy_from_slice(ZEROS.as_bytes());
        let computed = xxh3_64(&zeroed);
        if computed != stored {
            return Err(CheckpointError::ChecksumMismatch {
                path: path.to_path_buf(),
                stored,
                computed,
            });
        }
        if sealed.manifest.format_version != MANIFEST_VERSION {
            return Err(bad(format!(
                "unsupported format version {} (this build reads {MANIFEST_VERSION})",
                sealed.manifest.format_version
            )));
        }
        Ok(sealed.manifest)
    }
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Commits `manifest` into the checkpoint folder `dir`: `MANIFEST.tmp`, fsync, rename to
/// `MANIFEST`, fsync `dir`. Every file it lists must already be durable, entries included.
pub fn commit_manifest<S: Storage>(storage: &S, dir: &Path, manifest: &Manifest) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP);
    let path = dir.join(MANIFEST);
    storage
        .write_file(&tmp, &manifest.to_bytes())
        .map_err(CheckpointError::io("write", &tmp))?;
    storage
        .sync_file(&tmp)
        .map_err(CheckpointError::io("fsync", &tmp))?;
    storage
        .rename(&tmp, &path)
        .map_err(CheckpointError::io("rename", &tmp))?;
    storage
        .sync_dir(dir)
        .map_err(CheckpointError::io("fsync folder", dir))
}

/// Reads and verifies the manifest of the checkpoint folder `dir`; `Ok(None)` when it has none
/// (the checkpoint never completed).
pub fn read_manifest<S: Storage>(storage: &S, dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    match storage.read(&path) {
        Ok(bytes) => Manifest::from_bytes(&bytes, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::io("read", &path)(e)),
    }
}
