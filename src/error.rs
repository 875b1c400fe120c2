//! The error of weir's pipelines, and who has to act on it.

/// An error of a replay or serve run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request cannot work as given (a missing file, a bad flag value): fix the command.
    #[error("{0}")]
    Usage(String),
    /// Reading, parsing or writing failed. (A `weir_io::Error` that wraps an engine or Kafka
    /// error, or says a source stopped, converts into [`Error::Engine`], [`Error::Kafka`] or
    /// [`Error::Stopped`] instead: each failure has one shape.)
    #[error(transparent)]
    Io(weir_io::Error),
    /// A malformed line of a `--strict` run, with the input it is in (the parser knows lines,
    /// not files): see [`Error::in_input`].
    #[error("{input}: {source}")]
    MalformedIn {
        /// The input: its path, or `stdin`.
        input: String,
        /// The parser's error, with the line number.
        #[source]
        source: weir_io::Error,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] weir_engine::EngineError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(weir_engine::checkpoint::CheckpointError),
    /// The checkpoints of a folder are damaged or were tampered with, and none can be restored;
    /// the message names each damaged file and says how to start over.
    #[error("{0}")]
    Refused(String),
    /// The checkpoint folder is not this job's: its checkpoints are of another job (another
    /// window, keys, group), or of an input that has changed since, or its history disagrees
    /// with the broker's. The command is at fault (exit status 2, like [`Error::Usage`]): start
    /// over with `--fresh` or point it at the job's own folder; the message says which.
    #[error("{0}")]
    Mismatch(String),
    /// A Kafka broker refused, failed or could not be reached; the message names the address.
    #[error(transparent)]
    Kafka(#[from] weir_io::kafka::KafkaIoError),
    /// This part of a run stopped because another part failed, whose error says why.
    #[error("stopped: {0}")]
    Stopped(&'static str),
    /// `weir bench` could not complete a measurement.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// A network address could not be used.
    #[error("{addr}: {what}: {source}")]
    Net {
        /// The address.
        addr: String,
        /// What was being done (`cannot listen`, …).
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<weir_io::Error> for Error {
    fn from(e: weir_io::Error) -> Self {
        match e {
            weir_io::Error::Engine(e) => Error::Engine(e),
            weir_io::Error::Kafka(e) => Error::Kafka(e),
            weir_io::Error::Stopped(why) => Error::Stopped(why),
            e => Error::Io(e),
        }
    }
}

impl Error {
    /// The process exit status for this error: 2 when the command line is at fault, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Mismatch(_) => 2,
            Error::Io(weir_io::Error::UnknownFormat { .. }) => 2,
            Error::Engine(weir_engine::EngineError::Plan(_)) => 2,
            _ => 1,
        }
    }

    /// The first of `errors` that does not only echo another's failure, or else the first.
    pub(crate) fn most_telling(errors: impl IntoIterator<Item = Error>) -> Option<Error> {
        let mut best: Option<Error> = None;
        for e in errors {
            if best.as_ref().is_none_or(|b| b.is_echo() && !e.is_echo()) {
                best = Some(e);
            }
        }
        best
    }

    /// The outcome of a run from the errors of the parts that fed its job (readers, parser
    /// threads, connections) and the job's own result: the most telling error of all
    /// ([`Error::most_telling`]), the feeders' first; the job's result if nothing failed.
    pub(crate) fn settle<T>(fed: impl IntoIterator<Item = Error>, joined: Result<T>) -> Result<T> {
        let (joined, job_error) = match joined {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        match Error::most_telling(fed.into_iter().chain(job_error)) {
            Some(e) => Err(e),
            None => Ok(joined.expect("the job succeeded")),
        }
    }

    /// Whether this error only echoes another part's failure: a part stopped because another
    /// failed, or the engine saw an input dropped or was closed under its feeder.
    fn is_echo(&self) -> bool {
        matches!(
            self,
            Error::Stopped(_)
                | Error::Engine(
                    weir_engine::EngineError::InputDropped { .. }
                        | weir_engine::EngineError::Closed
                )
        )
    }

    /// This error, naming `input` if it is a malformed line of a strict run.
    pub fn in_input(self, input: &std::path::Path) -> Self {
        match self {
            Error::Io(source @ weir_io::Error::Malformed { .. }) => Error::MalformedIn {
                input: if input.as_os_str() == "-" {
                    "stdin".into()
                } else {
                    input.display().to_string()
                },
                source,
            },
            other => other,
        }
    }

    pub(crate) fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }
}

/// `Result` with weir's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An input or output that cannot be opened (missing, a directory, no permission) is the
/// command line's fault: a usage error that keeps the path and the cause in its message.
pub(crate) fn opening(e: weir_io::Error) -> Error {
    Error::Usage(e.to_string())
}
