//! Exactly-once file output: results go to a pending part per checkpoint epoch and become
//! visible only when that checkpoint completes.
//!
//! ```text
//!   DIR/pending-000000007   epoch 7's results, being written
//!   DIR/part-000000006      sealed (fsynced) and promoted (renamed) when checkpoint 6 committed
//!   DIR/part-000000005
//!   OUTPUT                  at the end: parts 1..=last concatenated (temp file, fsync, rename)
//! ```
//!
//! The protocol, for checkpoint *n*: [`PartFiles::seal`] closes `pending-n` to writes and starts
//! `pending-(n+1)`; [`SealedPart::sync`] fsyncs it; the checkpoint's manifest is committed; then [`promote`] renames `pending-n`
//! to `part-n` and fsyncs the folder. A crash before the manifest leaves `pending-n` behind, and
//! recovery ([`PartFiles::resume`]) deletes it with every part after the restored epoch; a crash
//! after the manifest but before the rename is finished by recovery promoting `pending-n`. So the
//! visible parts are always exactly those of committed checkpoints, and replaying from checkpoint
//! *n* rewrites epoch *n+1* from scratch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::output::OutputFile;

fn pending_name(epoch: u64) -> String {
    format!("pending-{epoch:09}")
}

fn part_name(epoch: u64) -> String {
    format!("part-{epoch:09}")
}

/// fsyncs a folder, so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// A sealed pending part: its epoch, path and length. Its data is not yet durable: call
/// [`SealedPart::sync`] before committing the checkpoint that makes it visible (the checkpoint
/// coordinator does, off the thread that writes results).
#[derive(Debug)]
pub struct SealedPart {
    /// The checkpoint epoch whose results it holds.
    pub epoch: u64,
    /// `DIR/pending-…`.
    pub path: PathBuf,
    /// Bytes in it.
    pub len: u64,
    file: File,
}

impl SealedPart {
    /// fsyncs the part.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

struct Inner {
    dir: PathBuf,
    epoch: u64,
    file: File,
    path: PathBuf,
    len: u64,
}

/// The pending parts of one output, shared between the writer that fills them (see
/// [`PartFiles::writer`]) and the checkpoint logic that seals them.
#[derive(Clone)]
pub struct PartFiles {
    inner: Arc<Mutex<Inner>>,
}

impl PartFiles {
    /// Opens `dir` (created if missing) to continue after committed checkpoint `committed` (0:
    /// from the start): promotes `pending-committed` if it was left unpromoted, deletes every
    /// other pending part and every part after `committed`, and starts `pending-(committed+1)`.
    pub fn resume(dir: &Path, committed: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if committed > 0 && dir.join(pending_name(committed)).exists() {
            promote(dir, committed)?;
        }
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = match (name.strip_prefix("pending-"), name.strip_prefix("part-")) {
                (Some(_), _) => true,
                (_, Some(n)) => n.parse::<u64>().map_or(true, |n| n > committed),
                _ => false,
            };
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
            file: std::mem::replace(&mut g.file, file),
        };
        g.epoch += 1;
        g.len = 0;
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

/// Makes a sealed part visible: renames `pending-epoch` to `part-epoch` and fsyncs the folder.
/// Idempotent: a part already promoted is left alone.
pub fn promote(dir: &Path, epoch: u64) -> Result<()> {
    let (from, to) = (dir.join(pending_name(epoch)), dir.join(part_name(epoch)));
    if !from.exists() && to.exists() {
        return Ok(());
    }
    fs::rename(&from, &to).map_err(|e| Error::io(&from, e))?;
    sync_dir(dir)
}

/// Concatenates parts `1..=last` of `dir` into `output` through an [`OutputFile`] (temp file,
/// fsync, rename, fsync the folder; a device or pipe is written in place): the output appears
/// whole or not at all. Returns its length.
pub fn concat_into(dir: &Path, last: u64, output: &Path) -> Result<u64> {
    let mut out = OutputFile::create(output)?;
    let mut len = 0;
    for epoch in 1..=last {
        let p = dir.join(part_name(epoch));
        let mut part = File::open(&p).map_err(|e| Error::io(&p, e))?;
        len += io::copy(&mut part, &mut out).map_err(|e| Error::io(&p, e))?;
    }
    out.commit()?;
    Ok(len)
}

/// Writes into the current pending part of a [`PartFiles`].
pub struct PartWriter(PartFiles);

impl Write for PartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.0.inner.lock().expect("part files lock");
        let n = g.file.write(buf)?;
        g.len += n as u64;
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

    #[test]
    fn parts_become_visible_only_when_promoted_and_resume_discards_the_rest() {
        let dir = std::env::temp_dir().join(format!("weir-parts-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let parts = PartFiles::resume(&dir, 0).unwrap();
        let mut w = parts.writer();
        w.write_all(b"one\n").unwrap();
        let s1 = parts.seal().unwrap();
        s1.sync().unwrap();
        assert_eq!((s1.epoch, s1.len), (1, 4));
        w.write_all(b"two\n").unwrap();
        let s2 = parts.seal().unwrap();
        w.write_all(b"three, never committed\n").unwrap();
        promote(&dir, 1).unwrap();
        promote(&dir, 1).unwrap(); // idempotent
        assert!(dir.join("part-000000001").exists());
        assert!(
            s2.path.exists(),
            "epoch 2 sealed but its checkpoint not committed"
        );
        drop((w, parts));

        // Crash, then restore checkpoint 2 (its manifest was committed, the rename was not).
        let parts = PartFiles::resume(&dir, 2).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["part-000000001", "part-000000002", "pending-000000003"]
        );
        parts.writer().write_all(b"four\n").unwrap();
        parts.seal().unwrap();
        promote(&dir, 3).unwrap();
        let out = dir.join("out.csv");
        assert_eq!(concat_into(&dir, 3, &out).unwrap(), 13);
        assert_eq!(read(&out), "one\ntwo\nfour\n");

        // Restoring an older checkpoint drops the later parts.
        drop(parts);
        PartFiles::resume(&dir, 1).unwrap();
        assert!(!dir.join("part-000000002").exists());
        assert!(dir.join("part-000000001").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
