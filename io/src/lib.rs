//! weir-io: weir's inputs and outputs.
//!
//! * [`parse`]: fused, allocation-free access-log parsers (NGINX/Apache combined, common, and the
//!   seed's simple `HH:mm:ss ip`) that turn bytes straight into Arrow `RecordBatch`es.
//! * [`gen`]: deterministic synthetic access logs for tests and benchmarks.
//! * [`source`]: memory-mapped files in line-aligned chunks, and streams (stdin, gzip, sockets)
//!   in chunks of whole lines.
//! * [`sink`]: result writers (the seed's print format, CSV, JSON lines, Arrow IPC).
//! * [`output`]: output files written under a temporary name and renamed into place on success.
//! * [`results_file`]: exactly-once file output, written in place and committed by checkpoints.
//! * [`paths`]: which paths are the same file, so that no output overwrites the input.
//! * [`sigbus`]: a mapped input truncated under weir ends the run with a message naming it.
//! * [`kafka`]: Kafka topics in and out: partition readers, the transactional producer, the
//!   progress record and the output record format.
//! * [`error`]: the crate's one error type.
//!
//! io knows nothing of how windows are kept: it produces and consumes Arrow batches.

pub mod error;
pub mod gen;
pub mod kafka;
pub mod output;
pub mod parse;
pub mod paths;
pub mod results_file;
pub mod sigbus;
pub mod sink;
pub mod source;
pub mod split;
pub mod two_phase;

pub use error::{Error, ParseError, Result};
pub use gen::{generate, GenOptions, GenSummary};
pub use parse::{
    detect_format, parse_all, Columns, LineParser, LogFormat, Malformed, ParseOptions, ParseStats,
};
