//! The inputs of a Kafka-output job: the partitions of a topic, or a plain log file read as one
//! partition whose offsets are byte offsets (`weir replay FILE --to kafka://…`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use weir_io::kafka::reader::{PartitionReader, Run};
use weir_io::kafka::KafkaUrl;
use weir_io::source::MappedFile;

/// Where a job's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A topic: one line per record, one engine input per partition.
    Kafka(KafkaUrl),
    /// A plain (not compressed) log file: one input, positions are byte offsets.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Kafka(u) => u.fmt(f),
            Source::File(p) => p.display().fmt(f),
        }
    }
}

/// One input of the job, positioned.
pub(crate) enum Reader {
    /// A topic partition.
    Kafka(PartitionReader),
    /// The file.
    File(FileReader),
}

impl Reader {
    /// The partition (0 for the file).
    pub(crate) fn partition(&self) -> i32 {
        match self {
            Reader::Kafka(r) => r.partition(),
            Reader::File(_) => 0,
        }
    }

    /// The next offset to read: a Kafka offset or a byte offset.
    pub(crate) fn position(&self) -> i64 {
        match self {
            Reader::Kafka(r) => r.position(),
            Reader::File(r) => r.pos as i64,
        }
    }

    /// A Kafka partition's end offset now (asks the broker); `None` for the file, or when the
    /// broker does not answer.
    pub(crate) fn end_offset(&self) -> Option<i64> {
        match self {
            Reader::Kafka(r) => r.end_offset().ok(),
            Reader::File(_) => None,
        }
    }

    /// Lines before [`Reader::position`] (files; 0 for Kafka, whose offsets number the lines).
    pub(crate) fn lines_before(&self) -> u64 {
        match self {
            Reader::Kafka(_) => 0,
            Reader::File(r) => r.line - 1,
        }
    }

    /// Appends the next lines to `buf`: see [`PartitionReader::read`]. For a file, `first` is
    /// the 1-based line number of the first line.
    pub(crate) fn read(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        wait: Duration,
    ) -> weir_io::Result<Run> {
        match self {
            Reader::Kafka(r) => Ok(r.read(buf, max, wait)?),
            Reader::File(r) => Ok(r.read(buf, max)),
        }
    }
}

/// A mapped log file read in runs of whole lines.
pub(crate) struct FileReader {
    file: MappedFile,
    pos: usize,
    line: u64,
}

impl FileReader {
    /// `file` from byte `pos`, which starts line `lines_before + 1`.
    pub(crate) fn new(file: MappedFile, pos: usize, lines_before: u64) -> Self {
        Self {
            file,
            pos,
            line: lines_before + 1,
        }
    }

    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Run {
        let data = &self.file.bytes()[self.pos..];
        let take = if data.len() <= max {
            data.len()
        } else {
            // Whole lines only; a line longer than `max` is taken whole.
            match memchr::memrchr(b'\n', &data[..max]) {
                Some(i) => i + 1,
                None => memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1),
            }
        };
        let chunk = &data[..take];
        buf.extend_from_slice(chunk);
        if !chunk.is_empty() && !chunk.ends_with(b"\n") {
            buf.push(b'\n');
        }
        let lines = memchr::memchr_iter(b'\n', chunk).count() as u64
            + u64::from(!chunk.is_empty() && !chunk.ends_with(b"\n"));
        let run = Run {
            first: self.line as i64,
            lines,
            caught_up: self.pos + take == self.file.bytes().len(),
        };
        self.pos += take;
        self.line += lines;
        run
    }
}
