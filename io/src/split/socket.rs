//! A socket connection, read on the connection's own thread: the split of `weir serve`.
//!
//! Lines are handed on as soon as they arrive (one `read` per step), and every step pushes its
//! rows: a client that sends a line and waits sees its window fire on time. A read that times
//! out is an error (the connection is closed); a server that is closing shuts its connections
//! down for reading, and a last line cut in the middle by that is dropped, not parsed.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Counted, Split, Step};
use crate::error::Result;
use crate::source::LineReader;

/// One connection's lines, numbered from line 1.
pub struct SocketSplit<'a> {
    lines: LineReader<&'a TcpStream>,
    /// The first chunk was read ahead by [`SocketSplit::first`] and not handed out yet.
    peeked: bool,
    closing: &'a AtomicBool,
    cut: bool,
    read: &'a AtomicU64,
}

impl<'a> SocketSplit<'a> {
    /// Reads `lines`; `closing` is the server's stop (a cut last line is dropped once it is
    /// set); `read` counts the lines parsed, across connections.
    pub fn new(
        lines: LineReader<&'a TcpStream>,
        closing: &'a AtomicBool,
        read: &'a AtomicU64,
    ) -> Self {
        Self {
            lines,
            peeked: false,
            closing,
            cut: false,
            read,
        }
    }

    /// Reads the first chunk ahead (to detect the log format from it) without handing it out:
    /// the first [`Split::next`] returns it. `None` if the connection closed before a line.
    pub fn first(&mut self) -> Result<Option<&[u8]>> {
        if !self.peeked {
            if self.lines.next_chunk()?.is_none() {
                return Ok(None);
            }
            self.peeked = true;
        }
        Ok(Some(self.lines.current()))
    }

    /// Whether the split ended on a last line cut by the server's stop (dropped).
    pub fn was_cut(&self) -> bool {
        self.cut
    }
}

impl Split for SocketSplit<'_> {
    fn next(&mut self) -> Result<Step<'_>> {
        let chunk = if std::mem::take(&mut self.peeked) {
            self.lines.current()
        } else {
            match self.lines.next_chunk()? {
                Some(chunk) => chunk,
                None => return Ok(Step::End),
            }
        };
        if !chunk.ends_with(b"\n") && self.closing.load(Ordering::SeqCst) {
            self.cut = true;
            return Ok(Step::End);
        }
        Ok(Step::Lines {
            bytes: chunk,
            first_line: None,
            flush: true,
        })
    }

    fn parsed(
        &mut self,
        counted: Counted,
        _batches: &mut Vec<arrow_array::RecordBatch>,
    ) -> Result<Option<i64>> {
        self.read.fetch_add(counted.lines, Ordering::Relaxed);
        Ok(None)
    }
}
