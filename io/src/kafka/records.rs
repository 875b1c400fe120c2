//! What weir writes to Kafka: result records and the progress record.
//!
//! A result record: key = the row's key columns (`10.0.0.1`; several keys joined by `|`), value
//! = one JSON object `{"window_start":…,"window_end":…,"client":…,"count":…}` (window bounds in
//! epoch milliseconds) or, on request, the same row as a CSV line. No headers: which records are
//! committed is the broker's business (`read_committed` readers see exactly those).
//!
//! The progress record is not a record: it is the committed offset of the job's group on
//! partition 0 of [`PROGRESS_TOPIC`], sent with `send_offsets_to_transaction`, so it commits
//! exactly when the transaction does. Offset = the epoch; metadata = [`Progress`] as JSON.

use serde::{Deserialize, Serialize};

/// The one-partition topic whose committed offsets (one per job group) record progress.
pub const PROGRESS_TOPIC: &str = "weir-progress";
/// The value format of result records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueFormat {
    /// A JSON object per row.
    #[default]
    Json,
    /// A CSV line per row (no header).
    Csv,
}

impl std::str::FromStr for ValueFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" | "jsonl" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            _ => Err(format!("{s}: not a record value format (json, csv)")),
        }
    }
}

/// The metadata of the progress group's committed offset: which job, which epoch, which local
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The job (its transactional id).
    pub job: String,
    /// The committed epoch (also the offset).
    pub epoch: u64,
    /// XXH3-64 of the checkpoint's manifest, in hex: the local checkpoint that belongs to it.
    pub manifest: String,
    /// Whether this epoch ended a bounded run: every window has been delivered.
    #[serde(default)]
    pub finished: bool,
}

/// The default job name (transactional id and group) of a pipeline from `input` to `output`:
/// `weir-` and 16 hex digits of a hash of both names, stable across runs and versions.
pub fn default_job_id(input: &str, output: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{input} -> {output}").as_bytes());
    format!("weir-{h:016x}")
}
