//! What can go wrong reading or writing checkpoints. Every variant names the path at fault.

use std::io;
use std::path::{Path, PathBuf};

use super::file::FileDigest;
use super::input::InputChanges;
use super::manifest::IdentityDiff;

/// Result alias for the checkpoint layer.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// An error of the checkpoint layer.
///
/// Who acts: [`CheckpointError::Locked`], [`CheckpointError::DifferentJob`] and
/// [`CheckpointError::InputChanged`] are the user's to resolve (another run, another job, an
/// input changed under its checkpoints); [`CheckpointError::InvalidName`] and
/// [`CheckpointError::EpochNotNewer`] are the caller's mistakes; [`CheckpointError::Io`] is the
/// machine's; the rest describe a damaged file, which recovery skips.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file operation failed.
    #[error("{}: {op} failed: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operation, e.g. "fsync".
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another process (or another handle in this one) holds the checkpoint folder.
    #[error("checkpoint folder {} is in use by another weir process (lock {} is held)", root.display(), path.display())]
    Locked {
        /// The checkpoint root.
        root: PathBuf,
        /// The lock file.
        path: PathBuf,
    },
    /// A file the manifest lists is not there.
    #[error("{}: missing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A state file shorter than its header and trailer, or than its header says.
    #[error("{}: truncated: {len} bytes, expected {expected}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length it should have.
        expected: u64,
    },
    /// A state file that does not start with `WEIRCKPT`.
    #[error("{}: bad magic {found:02x?}, not a weir state file", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first 8 bytes.
        found: [u8; 8],
    },
    /// A state file of a format version this build does not read.
    #[error("{}: unsupported format version {found} (this build reads {supported})", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A state file longer than its header says.
    #[error("{}: {len} bytes but its header says {expected}: trailing garbage or a corrupt length", path.display())]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length its header implies.
        expected: u64,
    },
    /// The contents do not match the checksum stored with them.
    #[error("{}: checksum mismatch: stored {stored:016x}, computed {computed:016x}", path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The checksum stored in the file or the manifest.
        stored: u64,
        /// The checksum of the bytes read.
        computed: u64,
    },
    /// A file that verifies on its own but is not the one the manifest describes.
    #[error("{}: does not match the manifest: {what}", path.display())]
    ManifestMismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A manifest that does not parse or does not verify.
    #[error("{}: bad manifest: {reason}", path.display())]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint was written by a different job: restoring it would give wrong results.
    #[error("refused {}: the checkpoint is of a different job: {}", path.display(), join(differences))]
    DifferentJob {
        /// The manifest.
        path: PathBuf,
        /// Each field that differs.
        differences: Vec<IdentityDiff>,
    },
    /// The job's input file is not the one the checkpoint was computed from: restoring it would
    /// join state of the old bytes to the new ones.
    #[error("refused {}: the input changed since the checkpoint was taken: {changes}", path.display())]
    InputChanged {
        /// The manifest.
        path: PathBuf,
        /// What changed.
        changes: InputChanges,
    },
    /// A file the checkpoint relies on outside its folder (an output part) whose length or
    /// checksum is not what the manifest recorded.
    #[error("{}: damaged: {}", path.display(), damage(expected, found))]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Length and XXH3-64 the manifest recorded.
        expected: FileDigest,
        /// Length and XXH3-64 of the file as it is.
        found: FileDigest,
    },
    /// A file name the caller chose that cannot be used in a checkpoint folder.
    #[error("{}: invalid checkpoint file name: {reason}", path.display())]
    InvalidName {
        /// The path the name would have.
        path: PathBuf,
        /// Why not.
        reason: &'static str,
    },
    /// [`CheckpointDir::begin`](super::CheckpointDir::begin) with an epoch that is not newer
    /// than every folder already there.
    #[error("{}: epoch {epoch} is not newer than existing checkpoint epoch {existing}; after restoring, call discard_newer_than", path.display())]
    EpochNotNewer {
        /// The existing folder.
        path: PathBuf,
        /// The epoch asked for.
        epoch: u64,
        /// The newest epoch found.
        existing: u64,
    },
    /// A value the caller asked to store as JSON does not serialize, or a JSON file does not
    /// deserialize into the type asked for.
    #[error("{}: JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn damage(expected: &FileDigest, found: &FileDigest) -> String {
    if found.len != expected.len {
        let how = if found.len < expected.len {
            "cut short"
        } else {
            "grown"
        };
        format!(
            "{} bytes, the manifest recorded {} ({how})",
            found.len, expected.len
        )
    } else {
        format!(
            "checksum XXH3-64 {:016x}, the manifest recorded {:016x} (same length, {} bytes)",
            found.xxh3, expected.xxh3, found.len
        )
    }
}

fn join(differences: &[IdentityDiff]) -> String {
    let parts: Vec<String> = differences.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

impl CheckpointError {
    /// The file or folder at fault.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Locked { path, .. }
            | Self::Missing { path }
            | Self::Truncated { path, .. }
            | Self::BadMagic { path, .. }
            | Self::UnsupportedVersion { path, .. }
            | Self::TooLong { path, .. }
            | Self::ChecksumMismatch { path, .. }
            | Self::ManifestMismatch { path, .. }
            | Self::BadManifest { path, .. }
            | Self::DifferentJob { path, .. }
            | Self::InputChanged { path, .. }
            | Self::Damaged { path, .. }
            | Self::InvalidName { path, .. }
            | Self::EpochNotNewer { path, .. }
            | Self::Json { path, .. } => path,
        }
    }

    /// Wraps an I/O error of `op` on `path`; a missing file becomes [`CheckpointError::Missing`].
    pub(crate) fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> Self + 'p {
        move |source| {
            if source.kind() == io::ErrorKind::NotFound {
                Self::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                Self::Io {
                    path: path.to_path_buf(),
                    op,
                    source,
                }
            }
        }
    }
}
