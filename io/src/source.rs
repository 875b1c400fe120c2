//! Where log bytes come from: memory-mapped files cut into line-aligned chunks, and streams
//! (stdin, gzip, sockets) read into chunks of whole lines.
//!
//! Both hand the parser `&[u8]` chunks that start at a line start and end at a line end (or at
//! the end of input), so the parser never sees half a line:
//!
//! ```text
//!   file:   |----chunk 0----|----chunk 1----|----chunk 2--|   nominal boundaries i·C,
//!           |--lines 0..k--|---lines k..m----|---m..end----|  moved to the next line start
//!
//!   stream: read() ─▶ [ complete lines | partial line ] ─▶ chunk = complete lines;
//!                                       └─ carried to the front of the next read
//! ```
//!
//! File chunks can be computed independently by any thread from the chunk index alone
//! ([`MappedFile::chunk`]), so parallel parsers need no coordination beyond a shared counter.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

/// Default size of a file chunk: big enough to amortise per-chunk work, small enough that
/// parallel parsers stay close together in the file (and in event time).
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// A read-only memory-mapped file.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<Mmap>,
    path: PathBuf,
    file: File,
}

impl MappedFile {
    /// Maps `path`. Errors name the path: missing, a directory, unreadable.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a directory, not a log file",
                ),
            ));
        }
        let map = if meta.len() == 0 {
            None // mapping an empty file fails on some systems; there is nothing to map
        } else {
            // SAFETY: the map is read-only and private to this process. Another process that
            // truncates or rewrites the file while it is mapped makes reads return changed bytes
            // or fault (SIGBUS); weir replays logs that are no longer written to, and documents
            // that a log still being appended to should be piped through stdin instead.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        #[cfg(unix)]
        if let Some(m) = &map {
            // Sequential reads of the whole file: ask for read-ahead. Advice only; ignore errors.
            let _ = m.advise(memmap2::Advice::Sequential);
        }
        Ok(Self {
            map,
            path: path.to_owned(),
            file,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file that is mapped: its metadata and contents are those of the mapped bytes,
    /// whatever the path names since.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Number of chunks of `chunk_bytes` (the last may be short).
    pub fn chunk_count(&self, chunk_bytes: usize) -> usize {
        self.bytes().len().div_ceil(chunk_bytes.max(1))
    }

    /// The byte range of chunk `index`: every line that *starts* in
    /// `[index·chunk_bytes, (index+1)·chunk_bytes)`. Empty when one long line covers the whole
    /// nominal range; `None` past the end of the file.
    pub fn chunk(&self, index: usize, chunk_bytes: usize) -> Option<Range<usize>> {
        let data = self.bytes();
        let c = chunk_bytes.max(1);
        let nominal = index.checked_mul(c)?;
        if nominal >= data.len() {
            return None;
        }
        let start = line_start_at_or_after(data, nominal);
        let end = line_start_at_or_after(data, nominal.saturating_add(c).min(data.len()));
        Some(start..end.max(start))
    }
}

/// The first line start at or after `pos`: `pos` itself when a line starts there.
fn line_start_at_or_after(data: &[u8], pos: usize) -> usize {
    if pos == 0 || pos >= data.len() {
        return pos.min(data.len());
    }
    if data[pos - 1] == b'\n' {
        return pos;
    }
    match memchr::memchr(b'\n', &data[pos..]) {
        Some(i) => pos + i + 1,
        None => data.len(),
    }
}

/// Reads a stream into chunks of whole lines.
///
/// Each call to [`LineReader::next_chunk`] performs one `read` of up to `read_bytes` and returns
/// every complete line buffered so far, keeping a trailing partial line for the next call: on a
/// socket or a pipe, lines are handed on as soon as they arrive. A partial line longer than the
/// buffer grows it (8 KB attack lines are fine; memory follows the longest line).
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Bytes `[0, filled)` of `buf` hold data; `[0, consumed)` were returned already.
    filled: usize,
    consumed: usize,
    read_bytes: usize,
    eof: bool,
    path: PathBuf,
}

impl<R: Read> LineReader<R> {
    /// A reader of `reader` (named `path` in errors) reading up to `read_bytes` at a time.
    pub fn new(reader: R, path: impl Into<PathBuf>, read_bytes: usize) -> Self {
        Self {
            reader,
            buf: Vec::new(),
            filled: 0,
            consumed: 0,
            read_bytes: read_bytes.max(1),
            eof: false,
            path: path.into(),
        }
    }

    /// The next chunk of complete lines (the last one may lack its `\n`), or `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        // Move the carried partial line to the front.
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        loop {
            if self.eof {
                if self.filled == 0 {
                    return Ok(None);
                }
                self.consumed = self.filled;
                return Ok(Some(&self.buf[..self.filled]));
            }
            if self.buf.len() < self.filled + self.read_bytes {
                self.buf.resize(self.filled + self.read_bytes, 0);
            }
            let n = loop {
                match self.reader.read(&mut self.buf[self.filled..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(&self.path, e)),
                }
            };
            if n == 0 {
                self.eof = true;
                continue;
            }
            let new = self.filled..self.filled + n;
            self.filled += n;
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[new.clone()]) {
                self.consumed = new.start + i + 1;
                return Ok(Some(&self.buf[..self.consumed]));
            }
        }
    }
}

/// Opens a stream: `-` is stdin; a path ending in `.gz` or starting with the gzip magic bytes is
/// decompressed on the fly (multi-member files too); anything else is read as is.
pub fn open_stream(path: &Path) -> Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map_err(|e| Error::io(path, e))?.is_dir() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory, not a log file",
            ),
        ));
    }
    let mut magic = [0u8; 2];
    let got = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    use std::io::Seek;
    file.rewind().map_err(|e| Error::io(path, e))?;
    if is_gzip(path, &magic[..got]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::with_capacity(1 << 16, file),
        )))
    } else {
        Ok(Box::new(file))
    }
}

/// Whether `path` names gzip data, by extension or by its first bytes.
pub fn is_gzip(path: &Path, first_bytes: &[u8]) -> bool {
    path.extension().is_some_and(|e| e == "gz") || first_bytes.starts_with(&[0x1f, 0x8b])
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn file_chunks_cover_every_line_once() {
        let dir = std::env::temp_dir().join(format!("weir-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut text = Vec::new();
        for i in 0..1000 {
            // Lines of varied length, some longer than a chunk.
            text.extend(std::iter::repeat_n(b'x', (i * 37) % 300));
            text.push(b'\n');
        }
        text.extend_from_slice(b"last line without newline");
        std::fs::write(&path, &text).unwrap();
        let f = MappedFile::open(&path).unwrap();
        for c in [1usize, 7, 64, 250, 4096, 1 << 20] {
            let mut joined = Vec::new();
            let mut i = 0;
            while let Some(r) = f.chunk(i, c) {
                let bytes = &f.bytes()[r.clone()];
                assert!(
                    r.is_empty() || r.start == 0 || f.bytes()[r.start - 1] == b'\n',
                    "chunk starts mid-line"
                );
                joined.extend_from_slice(bytes);
                i += 1;
            }
            assert_eq!(i, f.chunk_count(c));
            assert_eq!(joined, text, "chunk size {c}");
        }
        assert!(MappedFile::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("directory"));
        std::fs::write(dir.join("empty.log"), b"").unwrap();
        assert_eq!(
            MappedFile::open(&dir.join("empty.log"))
                .unwrap()
                .chunk(0, 10),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reader that returns at most `step` bytes per read, like a socket.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn stream_chunks_are_whole_lines() {
        let text = b"a 1\nbb 22\n\nccc 333\r\nlast";
        for step in [1, 2, 3, 5, 100] {
            for read in [1, 4, 1024] {
                let mut r = LineReader::new(Trickle(text, step), "-", read);
                let mut joined = Vec::new();
                while let Some(c) = r.next_chunk().unwrap() {
                    assert!(c.ends_with(b"\n") || c.ends_with(b"last"), "{c:?}");
                    joined.extend_from_slice(c);
                }
                assert_eq!(&joined[..], &text[..]);
            }
        }
    }

    #[test]
    fn gzip_is_detected_and_decoded() {
        let dir = std::env::temp_dir().join(format!("weir-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("no-extension");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"line one\nline two\n").unwrap();
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        let mut s = String::new();
        open_stream(&path).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "line one\nline two\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
