//! A stream read in order, once (stdin, gzip, a pipe): one split, read on a thread of its own.
//!
//! The reader thread fills buffers of whole lines ([`LineReader`]) while the driver parses the
//! previous one, so a stop is noticed at once even while the stream has nothing to read (a quiet
//! pipe): the reader thread is then left blocked in its read, and ends with the process. Buffers
//! go round between the two threads, so a long stream does not allocate per chunk. Rows wait in
//! the parser for a full batch only while more input is at hand: a quiet stream has its rows
//! pushed, and its windows fire on time.

use std::io::Read;

use crossbeam_channel::{Receiver, Sender};

use super::{Halt, Split, Step};
use crate::error::Result;
use crate::source::LineReader;

/// A stream's chunks of whole lines, numbered from line 1.
pub struct StreamSplit<'h> {
    chunks: Receiver<Result<Vec<u8>>>,
    spare: Sender<Vec<u8>>,
    /// The chunk handed out last (given back to the reader at the next step), or the first
    /// chunk, read ahead with [`StreamSplit::first`] and not yet handed out.
    current: Option<Vec<u8>>,
    handed: bool,
    halt: Option<&'h dyn Halt>,
}

impl<'h> StreamSplit<'h> {
    /// Starts reading `lines` on a thread of its own; `halt` ends the split between chunks and
    /// in its waits.
    pub fn spawn(mut lines: LineReader<Box<dyn Read + Send>>, halt: Option<&'h dyn Halt>) -> Self {
        let (tx, chunks) = crossbeam_channel::bounded(2);
        let (spare, spares) = crossbeam_channel::bounded::<Vec<u8>>(4);
        std::thread::spawn(move || loop {
            let msg = match lines.next_chunk() {
                Ok(Some(c)) => {
                    let mut buf = spares.try_recv().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(c);
                    Ok(buf)
                }
                Ok(None) => return,
                Err(e) => Err(e),
            };
            let failed = msg.is_err();
            if tx.send(msg).is_err() || failed {
                return;
            }
        });
        Self {
            chunks,
            spare,
            current: None,
            handed: true,
            halt,
        }
    }

    /// Reads the first chunk ahead (to detect the log format from it) without handing it out:
    /// the first [`Split::next`] returns it. `None` if the stream is empty or the split was
    /// halted first.
    pub fn first(&mut self) -> Result<Option<&[u8]>> {
        if self.current.is_none() {
            self.current = self.receive()?;
            self.handed = false;
        }
        Ok(self.current.as_deref())
    }

    /// The next chunk; `None` at the end of the stream or once the halt is requested.
    fn receive(&self) -> Result<Option<Vec<u8>>> {
        let never = crossbeam_channel::never();
        let woken = self.halt.map_or(&never, |h| h.woken());
        if self.halt.is_some_and(|h| h.is_requested()) {
            return Ok(None);
        }
        crossbeam_channel::select! {
            recv(self.chunks) -> c => c.ok().transpose(),
            recv(woken) -> _ => Ok(None),
        }
    }
}

impl Split for StreamSplit<'_> {
    fn next(&mut self) -> Result<Step<'_>> {
        if self.handed {
            if let Some(used) = self.current.take() {
                let _ = self.spare.try_send(used);
            }
            self.current = self.receive()?;
        }
        self.handed = true;
        Ok(match &self.current {
            None => Step::End,
            Some(chunk) => Step::Lines {
                bytes: chunk,
                first_line: None,
                // Caught up with the stream: push the rows instead of waiting for more.
                flush: self.chunks.is_empty(),
            },
        })
    }
}
