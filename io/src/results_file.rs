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
//! end ([`ResultsFile::publish`] renames), so the cost of exactly-once output does not grow with
//! the size of the output.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use weir_engine::{ResultSink, SinkError};

use crate::error::{Error, Result};
use crate::output::{sync_dir, OutputFile};
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
pub fn exactly_once(
    writer: Box<dyn BatchWriter>,
    results: ResultsFile,
    output: PathBuf,
    committed: Committed,
    epoch: u64,
) -> (ResultsSink, ResultsCommitter) {
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
pub struct ResultsSink {
    writer: Box<dyn BatchWriter>,
    results: ResultsFile,
    /// The open epoch.
    epoch: u64,
    events: Sender<SinkEvent<Committed>>,
}

impl ResultSink for ResultsSink {
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
pub struct ResultsCommitter {
    results: ResultsFile,
    output: PathBuf,
    events: Receiver<SinkEvent<Committed>>,
    prepared: Committed,
}

impl TwoPhaseSink for ResultsCommitter {
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
            ResultsFile::publish(self.results.path(), self.prepared, &self.output)?;
        }
        Ok(())
    }
}

struct Inner {
    file: File,
    len: u64,
    hash: Xxh3Default,
}

/// The results file of a checkpointed run; see the module doc. Cloning shares it.
#[derive(Clone)]
pub struct ResultsFile {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
    /// A second descriptor of the file, so that `sync` never waits for the writer's lock.
    syncer: Arc<File>,
}

impl std::fmt::Debug for ResultsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResultsFile({})", self.path.display())
    }
}

impl ResultsFile {
    /// Starts an empty results file at `path` (any file there is replaced), its folder created
    /// if needed.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Self::with(path, file, 0, Xxh3Default::new())
    }

    /// Reopens the results file at `path` to continue after a checkpoint that committed `at`:
    /// checks its first `at.len` bytes against `at.xxh3` ([`Error::DamagedPart`] naming it
    /// when they differ or are missing), then cuts off everything after them, durably.
    pub fn resume(path: &Path, at: Committed) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let hash = verify_prefix(&mut file, path, at)?;
        file.set_len(at.len).map_err(|e| Error::io(path, e))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        file.seek(SeekFrom::Start(at.len))
            .map_err(|e| Error::io(path, e))?;
        Self::with(path, file, at.len, hash)
    }

    /// Whether the file at `path` begins with the committed bytes `at` (a resume would accept
    /// it); the error names what differs.
    pub fn check(path: &Path, at: Committed) -> Result<()> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        verify_prefix(&mut file, path, at).map(drop)
    }

    fn with(path: &Path, file: File, len: u64, hash: Xxh3Default) -> Result<Self> {
        let syncer = file.try_clone().map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            inner: Arc::new(Mutex::new(Inner { file, len, hash })),
            syncer: Arc::new(syncer),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A `Write` that appends to the file (unbuffered: each write goes to the file, so
    /// [`ResultsFile::mark`] covers everything written before it).
    pub fn writer(&self) -> ResultsWriter {
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

    /// Makes everything written so far durable (`fdatasync`), without stopping the writer.
    pub fn sync(&self) -> Result<()> {
        self.syncer
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Makes the complete results the file at `output`: a rename (and an fsync of its folder)
    /// when `output` is, or will be, a regular file on the same file system; otherwise a copy,
    /// checked against `done` as it is made, through an [`OutputFile`]. The results file is
    /// gone afterwards.
    pub fn publish(path: &Path, done: Committed, output: &Path) -> Result<()> {
        let target = fs::canonicalize(output).unwrap_or_else(|_| output.to_owned());
        let regular = fs::metadata(&target).map_or(true, |m| m.is_file());
        if regular && fs::rename(path, &target).is_ok() {
            return match target.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(dir) => sync_dir(dir),
                None => sync_dir(Path::new(".")),
            };
        }
        let mut out = OutputFile::create(output)?;
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        copy_checked(&mut file, path, done, &mut out, output)?;
        out.commit()?;
        fs::remove_file(path).map_err(|e| Error::io(path, e))
    }
}

/// Hashes the first `at.len` bytes of `file`; an error naming `path` when they are not there or
/// do not match. Returns the hash state after them (to continue appending).
fn verify_prefix(file: &mut File, path: &Path, at: Committed) -> Result<Xxh3Default> {
    let mut hash = Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = at.len;
    let mut read = 0u64;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hash.update(&buf[..n]);
        left -= n as u64;
        read += n as u64;
    }
    let found = (read, hash.digest());
    if found != (at.len, at.xxh3) {
        return Err(Error::DamagedPart {
            path: path.to_owned(),
            expected: (at.len, at.xxh3),
            found,
        });
    }
    Ok(hash)
}

/// Copies `file` into `out`, checking that it holds exactly `done`.
fn copy_checked(
    file: &mut File,
    path: &Path,
    done: Committed,
    out: &mut impl Write,
    output: &Path,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut hash = Xxh3Default::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::io(output, e))?;
        len += n as u64;
    }
    let found = (len, hash.digest());
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
pub struct ResultsWriter(ResultsFile);

impl Write for ResultsWriter {
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
        ResultsFile::publish(&path, two, &out).unwrap();
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
        ResultsFile::publish(&path, done, Path::new("/dev/null")).unwrap();
        assert!(!path.exists());
    }
}
