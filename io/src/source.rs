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
//!
//! Which one a path gets ([`open_input`]) depends on the file, examined once it is open (not by
//! its name, and without opening it twice: a pipe would lose what the first open read):
//!
//! | the path is                                     | read as                            |
//! |-------------------------------------------------|------------------------------------|
//! | `-`                                             | a stream: stdin                    |
//! | a regular file starting with the gzip magic, or named `*.gz` | a stream, decompressed |
//! | any other regular file                          | mapped, in chunks                  |
//! | a pipe (`<(…)`, a FIFO), a character device, a socket | a stream (gzip if it starts so) |
//! | a folder                                        | an error                           |
//!
//! A mapped file that another process truncates while it is read ends the run with a message
//! naming it ([`crate::sigbus`]) instead of a bare SIGBUS.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::paths::FileKind;
use crate::sigbus::MapGuard;

/// Default size of a file chunk: big enough to amortise per-chunk work, small enough that
/// parallel parsers stay close together in the file (and in event time).
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// A read-only memory-mapped file.
#[derive(Debug)]
pub struct MappedFile {
    // Declared before `map`, so dropped first: unregistered before the unmapping.
    _guard: Option<MapGuard>,
    map: Option<Mmap>,
    path: PathBuf,
    file: File,
}

impl MappedFile {
    /// Maps `path`. Errors name the path: missing, a directory, not a regular file (a pipe or a
    /// device cannot be mapped: [`Error::NotRegular`]), unreadable.
    pub fn open(path: &Path) -> Result<Self> {
        // Examined before it is opened: opening a FIFO blocks until something writes to it.
        if let Ok(meta) = std::fs::metadata(path) {
            if FileKind::of(&meta) != FileKind::Regular {
                return Err(Self::refusal(path, FileKind::of(&meta)));
            }
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        Self::map(file, &meta, path)
    }

    /// Maps an open `file` whose metadata is `meta`.
    fn map(file: File, meta: &std::fs::Metadata, path: &Path) -> Result<Self> {
        match FileKind::of(meta) {
            FileKind::Regular => {}
            kind => return Err(Self::refusal(path, kind)),
        }
        let map = if meta.len() == 0 {
            None // mapping an empty file fails on some systems; there is nothing to map
        } else {
            // SAFETY: the map is read-only and private to this process. Another process that
            // rewrites the file while it is mapped makes reads return changed bytes; one that
            // truncates it makes reads past the new end fault (SIGBUS), which the guard
            // registered below turns into an error message naming the file and exit status 1
            // (`crate::sigbus`). A log still being appended to should be piped through stdin.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        #[cfg(unix)]
        if let Some(m) = &map {
            // Sequential reads of the whole file: ask for read-ahead. Advice only; ignore errors.
            let _ = m.advise(memmap2::Advice::Sequential);
        }
        Ok(Self {
            _guard: map.as_deref().map(|b| MapGuard::new(b, path)),
            map,
            path: path.to_owned(),
            file,
        })
    }

    fn refusal(path: &Path, kind: FileKind) -> Error {
        match kind {
            FileKind::Directory => is_a_directory(path),
            kind => Error::NotRegular {
                path: path.to_owned(),
                kind,
            },
        }
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
/// socket or a pipe, lines are handed on as soon as they arrive.
///
/// Memory is bounded: a partial line is buffered up to `max_line` bytes
/// ([`crate::parse::DEFAULT_MAX_LINE_BYTES`] unless [`LineReader::with_max_line`] says
/// otherwise). A longer one is handed on as its first `max_line + 1` bytes and a `\n` (so the
/// parser sees, counts and reports it as [`crate::parse::OVERLONG`] at its own line number), and
/// the rest of it is read and dropped up to its newline. A 1 GiB line costs `max_line` bytes of
/// buffer, not 1 GiB.
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Bytes `[0, filled)` of `buf` hold data; `[0, consumed)` were returned already.
    filled: usize,
    consumed: usize,
    read_bytes: usize,
    max_line: usize,
    /// The rest of an over-long line is being dropped, up to its newline.
    skipping: bool,
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
            max_line: crate::parse::DEFAULT_MAX_LINE_BYTES,
            skipping: false,
            eof: false,
            path: path.into(),
        }
    }

    /// Buffers partial lines up to `max_line` bytes (see the type's doc).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line.max(1);
        self
    }

    /// The chunk the last [`LineReader::next_chunk`] returned (empty before the first).
    pub fn current(&self) -> &[u8] {
        &self.buf[..self.consumed]
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
            if self.filled > self.max_line {
                // The partial line (all of `buf[..filled]`: it starts at 0) is over-long: hand
                // on its beginning as a line of `max_line + 1` bytes, drop the rest as it comes.
                self.buf.truncate(self.max_line + 1);
                self.buf.push(b'\n');
                self.filled = self.buf.len();
                self.consumed = self.filled;
                self.skipping = !self.eof;
                return Ok(Some(&self.buf[..self.consumed]));
            }
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
            let mut new = self.filled..self.filled + n;
            if self.skipping {
                // Nothing is buffered (`filled` is 0): drop up to the over-long line's end.
                match memchr::memchr(b'\n', &self.buf[new.clone()]) {
                    Some(i) => {
                        self.buf.copy_within(new.start + i + 1..new.end, 0);
                        new = 0..n - i - 1;
                        self.skipping = false;
                    }
                    None => continue,
                }
            }
            self.filled = new.end;
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[new.clone()]) {
                self.consumed = new.start + i + 1;
                return Ok(Some(&self.buf[..self.consumed]));
            }
        }
    }
}

/// An input opened for reading: mapped (a regular file) or streamed (see the module doc).
pub enum LogInput {
    /// A regular, uncompressed file: parsed in parallel chunks.
    Mapped(MappedFile),
    /// Stdin, gzip, a pipe, a device: read in order, once.
    Stream(Box<dyn Read + Send>),
}

/// Opens `path` as [`open_stream`] would, but maps a regular uncompressed file.
pub fn open_input(path: &Path) -> Result<LogInput> {
    if path.as_os_str() == "-" {
        return Ok(LogInput::Stream(Box::new(std::io::stdin())));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    match FileKind::of(&meta) {
        FileKind::Directory => Err(is_a_directory(path)),
        FileKind::Regular => {
            let mut magic = [0u8; 2];
            let n = read_at_start(&file, &mut magic).map_err(|e| Error::io(path, e))?;
            if is_gzip(path, &magic[..n]) {
                Ok(LogInput::Stream(gzip(Box::new(file))))
            } else {
                Ok(LogInput::Mapped(MappedFile::map(file, &meta, path)?))
            }
        }
        _ => Ok(LogInput::Stream(sniffed(file, path)?)),
    }
}

/// Opens a stream: `-` is stdin; a path ending in `.gz` or starting with the gzip magic bytes is
/// decompressed on the fly (multi-member files too); anything else is read as is. Pipes and
/// devices work: the magic bytes are read once and put back in front, never rewound.
pub fn open_stream(path: &Path) -> Result<Box<dyn Read + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if file.metadata().map_err(|e| Error::io(path, e))?.is_dir() {
        return Err(is_a_directory(path));
    }
    sniffed(file, path)
}

/// `file` from its current position, decompressed if it is gzip (by name or first bytes).
fn sniffed(mut file: File, path: &Path) -> Result<Box<dyn Read + Send>> {
    let mut magic = [0u8; 2];
    let mut n = 0;
    // A pipe may hand over one byte at a time.
    while n < magic.len() {
        match file.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let whole: Box<dyn Read + Send> =
        Box::new(std::io::Cursor::new(magic).take(n as u64).chain(file));
    Ok(if is_gzip(path, &magic[..n]) {
        gzip(whole)
    } else {
        whole
    })
}

fn gzip(r: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
    Box::new(flate2::read::MultiGzDecoder::new(
        std::io::BufReader::with_capacity(1 << 16, r),
    ))
}

/// Reads the first bytes of a regular file without moving its position.
fn read_at_start(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, 0)
    }
    #[cfg(not(unix))]
    {
        use std::io::Seek;
        let mut f = file;
        let n = f.read(buf)?;
        f.rewind()?;
        Ok(n)
    }
}

fn is_a_directory(path: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory, not a log file",
        ),
    )
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
    fn an_over_long_line_is_cut_and_the_rest_dropped() {
        // Line 2 is 5,000 bytes; the reader keeps 101 of them and a newline, drops the rest.
        let long = "x".repeat(5000);
        let text = format!("a 1\n{long}\nbb 2\n{long}");
        let want = format!("a 1\n{}\nbb 2\n{}\n", &long[..101], &long[..101]);
        for step in [1, 7, 100, 10_000] {
            for read in [1, 64, 4096] {
                let mut r =
                    LineReader::new(Trickle(text.as_bytes(), step), "-", read).with_max_line(100);
                let mut joined = Vec::new();
                while let Some(c) = r.next_chunk().unwrap() {
                    joined.extend_from_slice(c);
                    assert!(r.buf.len() <= 102 + read, "buffer grew to {}", r.buf.len());
                }
                assert_eq!(
                    String::from_utf8(joined).unwrap(),
                    want,
                    "step {step} read {read}"
                );
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
