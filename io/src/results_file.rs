//! Exactly-once file output written in place: one results file grows epoch by epoch, each
//! checkpoint records how much of it is committed, and recovery cuts off the rest.
//!
//! ```text
//!   DIR/output/results   epochs 1..=n, committed up to the length checkpoint n records,
//!                        then epoch n+1's results as they are written
//!   OUTPUT               at the end: the same file, renamed (a copy only across file systems
//!                        or onto a device)
//! ```
//!
//! The protocol, for checkpoint *n*: once barrier *n* has passed the result writer, the length
//! written so far and the XXH3-64 of those bytes ([`ResultsFile::mark`], kept up to date as
//! bytes are written) are what checkpoint *n* records ([`Committed`]); [`ResultsFile::sync`]
//! makes the data durable (`fdatasync`: only the blocks appended since the last one reach the
//! disk, and the writer goes on appending meanwhile); then the checkpoint's manifest is
//! committed. Recovery from checkpoint *n* ([`ResultsFile::resume`]) verifies the first
//! `len` bytes against the checksum, so a damaged results file is named instead of
//! continued, and truncates what follows: those bytes were written after barrier *n* and are
//! written again by the replay from there. Nothing is copied at a checkpoint and nothing at the
//! end ([`publish`] renames), so the cost of exactly-once output does not grow with
//! the size of the output.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use weir_engine::checkpoint::{FsStorage, Storage};
use weir_engine::{ResultSink, SinkError};

use crate::error::{Error, Result};
use crate::output::OutputFile;
use crate::sink::BatchWriter;
use crate::two_phase::{SinkEvent, TwoPhaseSink};

/// What a checkpoint records of the results file: the committed length and the XXH3-64 of the
/// bytes up to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Bytes committed.
    pub len: u64,
    /// XXH3-64 of those bytes.
    pub xxh3: u64,
}

/// The two halves of the exactly-once file output ([`crate::two_phase`]): results written by
/// `writer` into `results`, epochs from `epoch` on, committed up to `committed` already; at the
/// end they become `output`.
pub fn exactly_once<S: Storage + Clone>(
    writer: Box<dyn BatchWriter>,
    results: ResultsFile<S>,
    output: PathBuf,
    committed: Committed,
    epoch: u64,
) -> (ResultsSink<S>, ResultsCommitter<S>) {
    let (events_tx, events) = crossbeam_channel::unbounded();
    let sink = ResultsSink {
        writer,
        results: results.clone(),
        epoch,
        events: events_tx,
    };
    let committer = ResultsCommitter {
        results,
        output,
        events,
        prepared: committed,
    };
    (sink, committer)
}

/// The writing half, on the job's result thread: results appended to the results file, marked
/// where each checkpoint's barrier and the end of the input pass.
pub struct ResultsSink<S: Storage = FsStorage> {
    writer: Box<dyn BatchWriter>,
    results: ResultsFile<S>,
    /// The open epoch.
    epoch: u64,
    events: Sender<SinkEvent<Committed>>,
}

impl<S: Storage + Clone + Send> ResultSink for ResultsSink<S> {
    fn batch(&mut self, batch: RecordBatch) -> std::result::Result<(), SinkError> {
        Ok(self.writer.write(&batch)?)
    }

    fn checkpoint(&mut self, epoch: u64) -> std::result::Result<(), SinkError> {
        let _ = self
            .events
            .send(SinkEvent::Ready(epoch, self.results.mark()));
        self.epoch = epoch + 1;
        Ok(())
    }

    fn finish(&mut self) -> std::result::Result<(), SinkError> {
        self.writer.finish()?;
        let _ = self
            .events
            .send(SinkEvent::Finished(self.epoch, self.results.mark()));
        Ok(())
    }
}

/// The committing half, the coordinator's: an epoch is prepared by making the results up to
/// its mark durable, and the manifest records the mark; the final epoch's commit publishes the
/// results as the output.
pub struct ResultsCommitter<S: Storage = FsStorage> {
    results: ResultsFile<S>,
    output: PathBuf,
    events: Receiver<SinkEvent<Committed>>,
    prepared: Committed,
}

impl<S: Storage + Clone> TwoPhaseSink for ResultsCommitter<S> {
    type Mark = Committed;

    fn events(&self) -> Receiver<SinkEvent<Committed>> {
        self.events.clone()
    }

    fn prepare(&mut self, _epoch: u64, mark: Committed) -> Result<serde_json::Value> {
        // fdatasync: what the epoch appended (and whatever of the next one is already written;
        // recovery cuts that off).
        self.results.sync()?;
        self.prepared = mark;
        Ok(serde_json::json!({ "results": mark }))
    }

    fn commit(
        &mut self,
        _epoch: u64,
        _manifest: &str,
        _positions: &serde_json::Value,
        finished: bool,
        _last: bool,
    ) -> Result<()> {
        // The manifest is the commit; at the end the results become the output.
        if finished {
            publish(
                &self.results.storage,
                self.results.path(),
                self.prepared,
                &self.output,
            )?;
        }
        Ok(())
    }
}

struct Inner<A> {
    file: A,
    len: u64,
    hash: Xxh3Default,
}

/// The results file of a checkpointed run; see the module doc. Cloning shares it.
///
/// Its file operations go through a [`Storage`]: the real file system ([`FsStorage`], the
/// default), or the engine's fault-injecting model, which crashes them as it crashes the
/// checkpoints (tests/ of this module).
pub struct ResultsFile<S: Storage = FsStorage> {
    storage: S,
    path: PathBuf,
    inner: Arc<Mutex<Inner<S::Appender>>>,
}

impl<S: Storage + Clone> Clone for ResultsFile<S> {
    fn clone(&self) -> Self {
        Self {
            storage: self.storage.clone(),
            path: self.path.clone(),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Storage> std::fmt::Debug for ResultsFile<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResultsFile({})", self.path.display())
    }
}

impl ResultsFile {
    /// [`ResultsFile::create_in`] the file system.
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_in(FsStorage, path)
    }

    /// [`ResultsFile::resume_in`] the file system.
    pub fn resume(path: &Path, at: Committed) -> Result<Self> {
        Self::resume_in(FsStorage, path, at)
    }

    /// [`ResultsFile::check_in`] the file system.
    pub fn check(path: &Path, at: Committed) -> Result<()> {
        Self::check_in(&FsStorage, path, at)
    }
}

impl<S: Storage + Clone> ResultsFile<S> {
    /// Starts an empty results file at `path` (any file there is replaced), its folder created
    /// if needed.
    pub fn create_in(storage: S, path: &Path) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        storage.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        storage
            .write_file(path, &[])
            .map_err(|e| Error::io(path, e))?;
        // The file's name, and its folder's, are durable before any checkpoint can refer to
        // it: a crash must not keep a manifest and lose the entry of the results it commits.
        storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
            storage.sync_dir(up).map_err(|e| Error::io(up, e))?;
        }
        Self::with(storage, path, 0, Xxh3Default::new())
    }

    /// Reopens the results file at `path` to continue after a checkpoint that committed `at`:
    /// checks its first `at.len` bytes against `at.xxh3` ([`Error::DamagedPart`] naming it
    /// when they differ or are missing), then cuts off everything after them, durably.
    pub fn resume_in(storage: S, path: &Path, at: Committed) -> Result<Self> {
        let hash = verify_prefix(&storage, path, at)?;
        let io = |e| Error::io(path, e);
        storage.set_len(path, at.len).map_err(io)?;
        storage.sync_file(path).map_err(io)?;
        Self::with(storage, path, at.len, hash)
    }

    /// Whether the file at `path` begins with the committed bytes `at` (a resume would accept
    /// it); the error names what differs.
    pub fn check_in(storage: &S, path: &Path, at: Committed) -> Result<()> {
        verify_prefix(storage, path, at).map(drop)
    }

    fn with(storage: S, path: &Path, len: u64, hash: Xxh3Default) -> Result<Self> {
        let file = storage.open_append(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            storage,
            path: path.to_owned(),
            inner: Arc::new(Mutex::new(Inner { file, len, hash })),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A `Write` that appends to the file (unbuffered: each write goes to the file, so
    /// [`ResultsFile::mark`] covers everything written before it).
    pub fn writer(&self) -> ResultsWriter<S> {
        ResultsWriter(self.clone())
    }

    /// The length written so far and the checksum of those bytes: what a checkpoint whose
    /// barrier has passed the writer records.
    pub fn mark(&self) -> Committed {
        let g = self.inner.lock().expect("results lock");
        Committed {
            len: g.len,
            xxh3: g.hash.digest(),
        }
    }

    /// Makes everything written so far durable (fsync of the file; the writer's lock is not
    /// taken, so the writer goes on appending meanwhile).
    pub fn sync(&self) -> Result<()> {
        self.storage
            .sync_file(&self.path)
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Makes the results at `path`, committed up to `done`, the file `output`, without a copy
/// where it can: a second name for the results file next to the output (a hard link), renamed
/// onto the output, the output's folder synced, and only then the results' name removed. At no
/// point does a crash leave neither name durable (a plain rename across folders could, under
/// the storage model's torn folder entries), so a run found final on restart publishes again
/// from the results file if the output is not there. Where a link cannot be made (another file
/// system) or the output is not a regular file (a device such as /dev/stdout), the results are
/// copied, checking `done` on the way.
pub fn publish<S: Storage>(storage: &S, path: &Path, done: Committed, output: &Path) -> Result<()> {
    let target = fs::canonicalize(output).unwrap_or_else(|_| output.to_owned());
    let regular = fs::metadata(&target).map_or(true, |m| m.is_file());
    let folder = |p: &Path| -> PathBuf {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    };
    if regular {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let link = folder(&target).join(format!(".{name}.weir-publish"));
        // A link left by a publish that crashed: the results file still has its own name.
        let _ = storage.remove_file(&link);
        if storage.hard_link(path, &link).is_ok() {
            let dir = folder(&target);
            storage
                .rename(&link, &target)
                .map_err(|e| Error::io(&target, e))?;
            storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            storage.remove_file(path).map_err(|e| Error::io(path, e))?;
            let dir = folder(path);
            return storage.sync_dir(&dir).map_err(|e| Error::io(&dir, e));
        }
    }
    let bytes = storage.read(path).map_err(|e| Error::io(path, e))?;
    check_bytes(&bytes, path, done)?;
    let mut out = OutputFile::create(output)?;
    out.write_all(&bytes).map_err(|e| Error::io(output, e))?;
    out.commit()?;
    storage.remove_file(path).map_err(|e| Error::io(path, e))
}

/// Checks that the file at `path` begins with the committed bytes `at`; returns their hash
/// state, to go on from.
fn verify_prefix<S: Storage>(storage: &S, path: &Path, at: Committed) -> Result<Xxh3Default> {
    let bytes = storage.read(path).map_err(|e| Error::io(path, e))?;
    let prefix = &bytes[..bytes.len().min(at.len as usize)];
    let mut hash = Xxh3Default::new();
    hash.update(prefix);
    let found = (prefix.len() as u64, hash.digest());
    if found != (at.len, at.xxh3) {
        return Err(Error::DamagedPart {
            path: path.to_owned(),
            expected: (at.len, at.xxh3),
            found,
        });
    }
    Ok(hash)
}

/// Checks that `bytes` (the whole file at `path`) are exactly the committed `done`.
fn check_bytes(bytes: &[u8], path: &Path, done: Committed) -> Result<()> {
    let found = (bytes.len() as u64, xxhash_rust::xxh3::xxh3_64(bytes));
    if found != (done.len, done.xxh3) {
        return Err(Error::DamagedPart {
            path: path.to_owned(),
            expected: (done.len, done.xxh3),
            found,
        });
    }
    Ok(())
}

/// Appends to a [`ResultsFile`], keeping its length and checksum.
pub struct ResultsWriter<S: Storage = FsStorage>(ResultsFile<S>);

impl<S: Storage> Write for ResultsWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut g = self.0.inner.lock().expect("results lock");
        let n = g.file.write(buf)?;
        g.len += n as u64;
        g.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.inner.lock().expect("results lock").file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-results-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn resume_keeps_the_committed_bytes_and_cuts_the_rest() {
        let dir = scratch("resume");
        let path = dir.join("output").join("results");
        let results = ResultsFile::create(&path).unwrap();
        let mut w = results.writer();
        w.write_all(b"epoch one\n").unwrap();
        let one = results.mark();
        results.sync().unwrap();
        assert_eq!(
            one,
            Committed {
                len: 10,
                xxh3: xxhash_rust::xxh3::xxh3_64(b"epoch one\n")
            }
        );
        w.write_all(b"epoch two, never committed\n").unwrap();
        drop((w, results));

        let results = ResultsFile::resume(&path, one).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"epoch one\n");
        results.writer().write_all(b"epoch two\n").unwrap();
        let two = results.mark();
        assert_eq!(
            two.xxh3,
            xxhash_rust::xxh3::xxh3_64(b"epoch one\nepoch two\n")
        );
        ResultsFile::check(&path, one).unwrap();

        let out = dir.join("out.csv");
        publish(&FsStorage, &path, two, &out).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"epoch one\nepoch two\n");
        assert!(!path.exists());
    }

    #[test]
    fn a_damaged_or_short_prefix_is_named_and_left_alone() {
        let dir = scratch("damaged");
        let path = dir.join("results");
        let results = ResultsFile::create(&path).unwrap();
        results.writer().write_all(b"0123456789").unwrap();
        let at = results.mark();
        drop(results);
        fs::write(&path, b"0123X56789").unwrap();
        let e = ResultsFile::resume(&path, at).unwrap_err().to_string();
        assert!(e.contains("results") && e.contains("checksum"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"0123X56789", "not truncated");
        fs::write(&path, b"01234").unwrap();
        let e = ResultsFile::check(&path, at).unwrap_err().to_string();
        assert!(e.contains("5 bytes") && e.contains("cut short"), "{e}");
    }

    #[test]
    fn publish_onto_a_device_copies_and_checks() {
        let dir = scratch("device");
        let path = dir.join("results");
        let results = ResultsFile::create(&path).unwrap();
        results.writer().write_all(b"rows\n").unwrap();
        let done = results.mark();
        drop(results);
        publish(&FsStorage, &path, done, Path::new("/dev/null")).unwrap();
        assert!(!path.exists());
    }
}
