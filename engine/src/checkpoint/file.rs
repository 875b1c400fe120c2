//! The state file: one worker's state at one epoch, self-describing and checksummed.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "WEIRCKPT"
//!      8     4  format version, u32 LE (2)
//!     12     4  kind, u32 LE (1: worker window state)
//!     16     8  index, u64 LE (the worker)
//!     24     8  epoch, u64 LE
//!     32     8  payload length n, u64 LE
//!     40     n  payload (opaque; 8-byte aligned in the file)
//!   40+n     8  XXH3-64 of bytes [0, 40+n), u64 LE
//! ```
//!
//! The payload is written in place through a writable map, so a state of any size is written
//! without an intermediate buffer; the checksum is computed over the mapped bytes afterwards.
//! Reading checks, in order: the length covers header and trailer, the magic, the version, the
//! length the header implies, the checksum. Any single damaged byte fails one of them (a damaged
//! length fails the length check, anything else the checksum), and every error names the file.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::error::{CheckpointError, Result};
use super::storage::{FileBytes, Storage};

/// The first 8 bytes of every state file.
pub const MAGIC: [u8; 8] = *b"WEIRCKPT";
/// The state file format this build writes and reads. 2: the payload starts with the worker's
/// key groups (CHECKPOINTS.md); a version 1 file cannot be split by key group, so it is not read.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
/// Bytes after the payload (the checksum).
pub const TRAILER_LEN: usize = 8;
/// [`StateMeta::kind`] of a worker's window state.
pub const KIND_WORKER: u32 = 1;

/// What a state file says about itself, besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateMeta {
    /// What the payload is ([`KIND_WORKER`]); opaque to this layer.
    pub kind: u32,
    /// Which one of its kind (the worker index).
    pub index: u64,
    /// The checkpoint it belongs to.
    pub epoch: u64,
}

impl StateMeta {
    /// The state of worker `worker` at `epoch`.
    pub fn worker(worker: usize, epoch: u64) -> Self {
        Self {
            kind: KIND_WORKER,
            index: worker as u64,
            epoch,
        }
    }
}

/// Length and checksum of a written file, as the manifest records them.
///
/// For a state file `xxh3` is its trailer (the XXH3-64 of header and payload); for any other file,
/// the XXH3-64 of its whole contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    /// Bytes in the file.
    pub len: u64,
    /// XXH3-64 checksum.
    pub xxh3: u64,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes a state file of `payload_len` payload bytes, which `fill` writes in place, and makes it
/// durable (msync, fsync) before returning its digest. The file's folder entry is durable only
/// once the folder is synced.
///
/// `fill` gets exactly `payload_len` zeroed bytes.
pub fn write_state_file<S: Storage>(
    storage: &S,
    path: &Path,
    meta: StateMeta,
    payload_len: u64,
    fill: impl FnOnce(&mut [u8]),
) -> Result<FileDigest> {
    let len = payload_len
        .checked_add((HEADER_LEN + TRAILER_LEN) as u64)
        .filter(|&len| usize::try_from(len).is_ok())
        .ok_or_else(|| CheckpointError::Io {
            path: path.to_path_buf(),
            op: "size",
            source: std::io::Error::other(format!("payload of {payload_len} bytes is too large")),
        })?;
    storage
        .create_sized(path, len)
        .map_err(CheckpointError::io("create", path))?;
    let mut xxh3 = 0;
    storage
        .fill_mapped(path, |bytes| {
            let end = bytes.len() - TRAILER_LEN;
            bytes[0..8].copy_from_slice(&MAGIC);
            bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes[12..16].copy_from_slice(&meta.kind.to_le_bytes());
            bytes[16..24].copy_from_slice(&meta.index.to_le_bytes());
            bytes[24..32].copy_from_slice(&meta.epoch.to_le_bytes());
            bytes[32..40].copy_from_slice(&payload_len.to_le_bytes());
            fill(&mut bytes[HEADER_LEN..end]);
            xxh3 = xxh3_64(&bytes[..end]);
            bytes[end..].copy_from_slice(&xxh3.to_le_bytes());
        })
        .map_err(CheckpointError::io("write (map)", path))?;
    storage
        .sync_file(path)
        .map_err(CheckpointError::io("fsync", path))?;
    Ok(FileDigest { len, xxh3 })
}

/// A verified state file, mapped read-only; derefs to its payload.
pub struct StateFile {
    path: PathBuf,
    meta: StateMeta,
    digest: FileDigest,
    bytes: FileBytes,
}

impl StateFile {
    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Kind, index and epoch from its header.
    pub fn meta(&self) -> StateMeta {
        self.meta
    }

    /// Its length and checksum (its trailer).
    pub fn digest(&self) -> FileDigest {
        self.digest
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..self.bytes.len() - TRAILER_LEN]
    }
}

impl Deref for StateFile {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.payload()
    }
}

impl std::fmt::Debug for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFile")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .field("digest", &self.digest)
            .finish()
    }
}

/// Opens a state file and verifies magic, version, lengths and checksum.
pub fn open_state_file<S: Storage>(storage: &S, path: &Path) -> Result<StateFile> {
    let bytes = storage
        .read(path)
        .map_err(CheckpointError::io("read", path))?;
    let (meta, digest) = verify(&bytes, path)?;
    Ok(StateFile {
        path: path.to_path_buf(),
        meta,
        digest,
        bytes,
    })
}

/// Checks the bytes of a state file; `path` only names it in errors.
pub fn verify(bytes: &[u8], path: &Path) -> Result<(StateMeta, FileDigest)> {
    let path = || path.to_path_buf();
    let len = bytes.len() as u64;
    let min = (HEADER_LEN + TRAILER_LEN) as u64;
    if len < min {
        return Err(CheckpointError::Truncated {
            path: path(),
            len,
            expected: min,
        });
    }
    if bytes[0..8] != MAGIC {
        return Err(CheckpointError::BadMagic {
            path: path(),
            found: bytes[0..8].try_into().expect("8 bytes"),
        });
    }
    let version = le_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            path: path(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let expected = le_u64(bytes, 32).saturating_add(min);
    if len < expected {
        return Err(CheckpointError::Truncated {
            path: path(),
            len,
            expected,
        });
    }
    if len > expected {
        return Err(CheckpointError::TooLong {
            path: path(),
            len,
            expected,
        });
    }
    let end = bytes.len() - TRAILER_LEN;
    let stored = le_u64(bytes, end);
    let computed = xxh3_64(&bytes[..end]);
    if stored != computed {
        return Err(CheckpointError::ChecksumMismatch {
            path: path(),
            stored,
            computed,
        });
    }
    let meta = StateMeta {
        kind: le_u32(bytes, 12),
        index: le_u64(bytes, 16),
        epoch: le_u64(bytes, 24),
    };
    Ok((meta, FileDigest { len, xxh3: stored }))
}
