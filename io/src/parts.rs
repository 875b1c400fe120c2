//! Exactly-once file output: results go to a pending part per checkpoint epoch; a part is
//! sealed, made durable and given its final name before the checkpoint that lists it commits,
//! and the output is assembled from the parts of the final checkpoint, each one verified.
//!
//! ```text
//!   DIR/pending-000000007   epoch 7's results, being written (hashed as they are written)
//!   DIR/part-000000006      sealed, fsynced, renamed, fsynced folder: checkpoint 6 lists it
//!   DIR/part-000000005      with its length and XXH3-64 (as do later checkpoints)
//!   OUTPUT                  at the end: parts 1..=last concatenated, each verified against its
//!                           digest (temp file, fsync, rename)
//! ```
//!
//! The protocol, for checkpoint *n*: [`PartFiles::seal`] closes `pending-n` to writes, with its
//! length and XXH3-64, and starts `pending-(n+1)`; [`SealedPart::sync`] fsyncs it; [`promote`]
//! renames it to `part-n` and fsyncs the folder; then the checkpoint's manifest is committed,
//! listing parts `1..=n` with their digests. So every part a committed checkpoint lists is
//! durable under its final name, and recovery can verify it. A crash before the manifest leaves
//! `pending-n` or an unlisted `part-n` behind, and recovery ([`PartFiles::resume`]) deletes them
//! with every part after the restored epoch: the parts left are exactly those the restored
//! checkpoint lists, and replaying from checkpoint *n* rewrites epoch *n+1* from scratch.
//! [`concat_into`] checks every part's length and checksum while it copies it, so a part damaged
//! after it was verified never reaches the output.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use xxhash_rust::xxh3::Xxh3Default;

use crate::error::{Error, Result};
use crate::output::OutputFile;

fn pending_name(epoch: u64) -> String {
    format!("pending-{epoch:09}")
}

/// The file name of epoch `epoch`'s committed part: `part-` and at least 9 digits.
pub fn part_name(epoch: u64) -> String {
    format!("part-{epoch:09}")
}

/// The epoch of a part's file name ([`part_name`]).
pub fn parse_part_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("part-")?;
    if digits.len() < 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// fsyncs a folder, so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// What a checkpoint records of one part: its epoch, length and XXH3-64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartDigest {
    /// The epoch whose results it holds.
    pub epoch: u64,
    /// Bytes in it.
    pub len: u64,
    /// XXH3-64 of its bytes.
    pub xxh3: u64,
}

/// A sealed pending part: its epoch, path, length and checksum. Its data is not yet durable:
/// call [`SealedPart::sync`] and [`promote`] before committing the checkpoint that lists it (the
/// checkpoint coordinator does, off the thread that writes results).
#[derive(Debug)]
pub struct SealedPart {
    /// The checkpoint epoch whose results it holds.
    pub epoch: u64,
    /// `DIR/pending-…`.
    pub path: PathBuf,
    /// Bytes in it.
    pub len: u64,
    /// XXH3-64 of the bytes written into it.
    pub xxh3: u64,
    file: File,
}

impl SealedPart {
    /// fsyncs the part.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }

    /// Its epoch, length and checksum.
    pub fn digest(&self) -> PartDigest {
        PartDigest {
            epoch: self.epoch,
            len: self.len,
            xxh3: self.xxh3,
        }
    }
}

struct Inner {
    dir: PathBuf,
    epoch: u64,
    file: File,
    path: PathBuf,
    len: u64,
    hash: Xxh3Default,
}

/// The pending parts of one output, shared between the writer that fills them (see
/// [`PartFiles::writer`]) and the checkpoint logic that seals them.
#[derive(Clone)]
pub struct PartFiles {
    inner: Arc<Mutex<Inner>>,
}

impl PartFiles {
    /// Opens `dir` (created if missing) to continue after committed checkpoint `committed` (0:
    /// from the start): deletes every pending part and every part after `committed`, and starts
    /// `pending-(committed+1)`.
    pub fn resume(dir: &Path, committed: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with("pending-")
                || (name.starts_with("part-")
                    && parse_part_name(&name).is_none_or(|n| n > committed));
            if stale {
                fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
        sync_dir(dir)?;
        let epoch = committed + 1;
        let (file, path) = create_pending(dir, epoch)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_owned(),
                epoch,
                file,
                path,
                len: 0,
                hash: Xxh3Default::new(),
            })),
        })
    }

    /// A `Write` into the current pending part.
    pub fn writer(&self) -> PartWriter {
        PartWriter(self.clone())
    }

    /// Seals the current pending part (no more writes go to it) and starts the next epoch's.
    pub fn seal(&self) -> Result<SealedPart> {
        let mut g = self.inner.lock().expect("part files lock");
        let (file, path) = create_pending(&g.dir, g.epoch + 1)?;
        let sealed = SealedPart {
            epoch: g.epoch,
            path: std::mem::replace(&mut g.path, path),
            len: g.len,
            xxh3: g.hash.digest(),
            file: std::mem::replace(&mut g.file, file),
        };
        g.epoch += 1;
        g.len = 0;
        g.hash.reset();
        Ok(sealed)
    }
}

fn create_pending(dir: &Path, epoch: u64) -> Result<(File, PathBuf)> {
    let path = dir.join(pending_name(epoch));
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok((file, path))
}

/// Gives a sealed and synced part its final name before a checkpoint lists it: renames
/// `pending-epoch` to `part-epoch` and fsyncs the folder. Idempotent: a part already promoted is
/// left alone.
pub fn promote(dir: &Path, epoch: u64) -> Result<()> {
    let (from, to) = (dir.join(pending_name(epoch)), dir.join(part_name(epoch)));
    if !from.exists() && to.exists() {
        return Ok(());
    }
    fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
    sync_dir(dir)
}

/// Concatenates the parts `parts` (epochs 1..=last, in order) of `dir` into `output` through an
/// [`OutputFile`] (temp file, fsync, rename, fsync the folder; a device or pipe is written in
/// place): the output appears whole or not at all. Each part's length and XXH3-64 are checked as
/// it is copied; a part that differs from its digest is an [`Error::DamagedPart`] naming it, and
/// no output is written. Returns the output's length.
pub fn concat_into(dir: &Path, parts: &[PartDigest], output: &Path) -> Result<u64> {
    let mut out = OutputFile::create(output)?;
    let len = copy_verified(dir, parts, &mut out, output)?;
    out.commit()?;
    Ok(len)
}

fn copy_verified(
    dir: &Path,
    parts: &[PartDigest],
    out: &mut impl Write,
    output: &Path,
) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    for expected in parts {
        let p = dir.join(part_name(expected.epoch));
        let mut part = File::open(&p).map_err(|e| Error::io(&p, e))?;
        let mut hash = Xxh3Default::new();
        let mut len = 0u64;
        loop {
            let n = match part.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&p, e)),
            };
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(output, e))?;
            len += n as u64;
        }
        let found = (len, hash.digest());
        if found != (expected.len, expected.xxh3) {
            return Err(Error::DamagedPart {
                path: p,
                expected: (expected.len, expected.xxh3),
                found,
            });
        }
        total += len;
    }
    Ok(total)
}

/// Writes into the current pending part of a [`PartFiles`].
pub struct PartWriter(PartFiles);

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.0.inner.lock().expect("part files lock");
        let n = g.file.write(buf)?;
        g.len += n as u64;
        g.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.inner.lock().expect("part files lock").file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-parts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn parts_are_promoted_before_their_checkpoint_and_resume_discards_the_rest() {
        let dir = scratch("protocol");
        let parts = PartFiles::resume(&dir, 0).unwrap();
        let mut w = parts.writer();
        w.write_all(b"one\n").unwrap();
        let s1 = parts.seal().unwrap();
        s1.sync().unwrap();
        assert_eq!(
            s1.digest(),
            PartDigest {
                epoch: 1,
                len: 4,
                xxh3: xxhash_rust::xxh3::xxh3_64(b"one\n")
            }
        );
        promote(&dir, 1).unwrap();
        promote(&dir, 1).unwrap(); // idempotent
        w.write_all(b"two\n").unwrap();
        let s2 = parts.seal().unwrap();
        s2.sync().unwrap();
        promote(&dir, 2).unwrap();
        w.write_all(b"three, never sealed\n").unwrap();
        drop((w, parts));
        assert_eq!(
            names(&dir),
            ["part-000000001", "part-000000002", "pending-000000003"]
        );

        // Crash before checkpoint 2's manifest: restoring 1 drops part 2 and the pending part.
        let parts = PartFiles::resume(&dir, 1).unwrap();
        assert_eq!(names(&dir), ["part-000000001", "pending-000000002"]);
        parts.writer().write_all(b"four\n").unwrap();
        let s2 = parts.seal().unwrap();
        s2.sync().unwrap();
        promote(&dir, 2).unwrap();
        let out = dir.join("out.csv");
        assert_eq!(
            concat_into(&dir, &[s1.digest(), s2.digest()], &out).unwrap(),
            9
        );
        assert_eq!(read(&out), "one\nfour\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_part_is_named_and_no_output_is_written() {
        let dir = scratch("damaged");
        let parts = PartFiles::resume(&dir, 0).unwrap();
        let mut digests = Vec::new();
        for text in ["a,1\n", "bb,22\n", "ccc,333\n"] {
            parts.writer().write_all(text.as_bytes()).unwrap();
            let s = parts.seal().unwrap();
            s.sync().unwrap();
            promote(&dir, s.epoch).unwrap();
            digests.push(s.digest());
        }
        let out = dir.join("out.csv");
        let part2 = dir.join(part_name(2));
        let damaged = |bytes: &[u8], expect: &str| {
            fs::write(&part2, bytes).unwrap();
            let err = concat_into(&dir, &digests, &out).unwrap_err().to_string();
            assert!(
                err.contains("part-000000002: damaged: ") && err.contains(expect),
                "{err}"
            );
            assert!(!out.exists() && !out.with_extension("weir-tmp").exists());
        };
        damaged(b"bb,23\n", "checksum XXH3-64 ");
        damaged(b"bb,2", "4 bytes, the checkpoint recorded 6 (cut short)");
        damaged(b"bb,22\nx", "7 bytes, the checkpoint recorded 6 (grown)");
        fs::write(&part2, b"bb,22\n").unwrap();
        concat_into(&dir, &digests, &out).unwrap();
        assert_eq!(read(&out), "a,1\nbb,22\nccc,333\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
