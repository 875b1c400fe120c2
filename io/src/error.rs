//! The one error type of weir-io.
//!
//! Every variant names the thing at fault (a path, a 1-based line number, a byte offset) so that a
//! message printed by the CLI is enough to find the problem without a debugger. The enum is
//! `#[non_exhaustive]`: sources and sinks add variants as they arrive (Kafka, IPC, sockets), and
//! callers outside this crate must keep a wildcard arm.
//!
//! Malformed log lines are normally *not* errors: they are counted in
//! [`ParseStats`](crate::parse::ParseStats). Only a parser in strict mode turns the first one into
//! [`Error::Malformed`].

use std::path::PathBuf;

/// Errors of weir-io's parsers, sources and sinks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A log line that has no non-empty first field or no valid timestamp, reported as an error
    /// because the parser runs in strict mode. The user has to fix the input (or drop `strict`).
    #[error("line {line}: malformed log line ({reason}): {text:?}")]
    Malformed {
        /// 1-based line number in the input.
        line: u64,
        /// Why the line was rejected (a short, fixed phrase).
        reason: &'static str,
        /// The line itself, decoded lossily and cut to 200 bytes.
        text: String,
    },
    /// An I/O error while reading or writing `path` (`-` for stdin/stdout).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or `-`) being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `path` is not a regular file (a pipe, a device, a socket) where one is needed: it can be
    /// read once, in order, but not mapped or rewound.
    #[error("{}: is {}, not a regular file: it can only be read once, from start to end", path.display(), kind.describe())]
    NotRegular {
        /// The input.
        path: PathBuf,
        /// What it is instead.
        kind: crate::paths::FileKind,
    },
    /// Committed results whose length or XXH3-64 is not what their checkpoint recorded: they
    /// were damaged after they were written, and the output is not made from them.
    #[error("{}: damaged: {}; the output was not written", path.display(), part_damage(*expected, *found))]
    DamagedPart {
        /// The part.
        path: PathBuf,
        /// Length and XXH3-64 recorded by the checkpoint.
        expected: (u64, u64),
        /// Length and XXH3-64 of the file as it is.
        found: (u64, u64),
    },
    /// The log format of `path` could not be recognised from its first lines; pass it explicitly.
    #[error(
        "{}: cannot detect the log format from the first lines (combined, common or simple); \
         name it with --format combined, --format common or --format simple",
        path.display()
    )]
    UnknownFormat {
        /// The input whose format is unknown (`-` for stdin).
        path: PathBuf,
    },
    /// A Kafka broker refused, failed or could not be reached; the message names the address.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaIoError),
    /// The engine refused a source's rows or barrier (it failed, or was closed under it).
    #[error(transparent)]
    Engine(#[from] weir_engine::EngineError),
    /// This source stopped because another part of its run failed, whose error says why.
    #[error("stopped: {0}")]
    Stopped(&'static str),
}

fn part_damage(expected: (u64, u64), found: (u64, u64)) -> String {
    if found.0 != expected.0 {
        let how = if found.0 < expected.0 {
            "cut short"
        } else {
            "grown"
        };
        format!(
            "{} bytes, the checkpoint recorded {} ({how})",
            found.0, expected.0
        )
    } else {
        format!(
            "checksum XXH3-64 {:016x}, the checkpoint recorded {:016x} (same length, {} bytes)",
            found.1, expected.1, found.0
        )
    }
}

/// The error of a parse. It is the crate's one [`Error`] type: the alias only makes signatures
/// read as in the parser's documentation (`ParseError::Malformed { .. }` works as a pattern).
pub type ParseError = Error;

/// `Result` with weir-io's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
