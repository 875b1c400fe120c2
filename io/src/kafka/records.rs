//! What weir writes to Kafka: result records, their headers, and the progress record.
//!
//! A result record: key = the row's key columns (`10.0.0.1`; several keys joined by `|`), value
//! = one JSON object `{"window_start":…,"window_end":…,"client":…,"count":…}` (window bounds in
//! epoch milliseconds) or, on request, the same row as a CSV line. Headers:
//!
//! | header         | value (decimal ASCII)                                            |
//! |----------------|------------------------------------------------------------------|
//! | `weir-epoch`   | the checkpoint epoch, i.e. the transaction, the record belongs to |
//! | `weir-attempt` | the run's restart counter (grows with every start of the job)     |
//!
//! The progress record is not a record: it is the committed offset of the job's group on
//! partition 0 of [`PROGRESS_TOPIC`], sent with `send_offsets_to_transaction`, so it commits
//! exactly when the transaction does. Offset = the epoch; metadata = [`Progress`] as JSON.
//!
//! The headers let an auditor resolve the committed output on a broker that shows records of
//! aborted transactions to `read_committed` readers (tansu 0.4): epoch `e` is committed when
//! `e` ≤ the progress offset, by the attempt [`committed_attempts`] finds in the job's commit
//! markers, and every record of epoch `e` from another attempt belongs to an aborted
//! transaction.

use serde::{Deserialize, Serialize};

/// Header naming the epoch (transaction) of a result record.
pub const EPOCH_HEADER: &str = "weir-epoch";
/// Header naming the attempt (restart counter) that wrote a result record.
pub const ATTEMPT_HEADER: &str = "weir-attempt";
/// The one-partition topic whose committed offsets (one per job group) record progress.
pub const PROGRESS_TOPIC: &str = "weir-progress";
/// The one-partition topic of commit markers: one record per transaction, in the transaction.
pub const COMMITS_TOPIC: &str = "weir-commits";

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

/// The commit marker: a record on [`COMMITS_TOPIC`] (key = the job's group) written inside
/// every transaction. It is not the decision (the progress offset is); it tells an auditor
/// which attempt committed which epoch on a broker that shows aborted records and loses offset
/// metadata (tansu 0.4): attempts run one after another and a later attempt never writes an
/// epoch already committed, so epoch `e` was committed by the highest attempt with a marker for
/// `e` (see [`committed_attempts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMarker {
    /// The job's group.
    pub job: String,
    /// The epoch of the transaction.
    pub epoch: u64,
    /// The attempt that wrote it.
    pub attempt: u64,
    /// The checkpoint manifest's hash.
    pub manifest: String,
    /// Whether the epoch ends a bounded run.
    pub finished: bool,
}

/// `epoch → attempt that committed it` for every epoch up to `last` (the progress offset), from
/// all of a job's markers, those of aborted transactions included.
pub fn committed_attempts(
    markers: impl IntoIterator<Item = CommitMarker>,
    last: u64,
) -> std::collections::BTreeMap<u64, u64> {
    let mut by_epoch = std::collections::BTreeMap::new();
    for m in markers.into_iter().filter(|m| m.epoch <= last) {
        let a = by_epoch.entry(m.epoch).or_insert(m.attempt);
        *a = (*a).max(m.attempt);
    }
    by_epoch
}

/// The default job name (transactional id and group) of a pipeline from `input` to `output`:
/// `weir-` and 16 hex digits of a hash of both names, stable across runs and versions.
pub fn default_job_id(input: &str, output: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{input} -> {output}").as_bytes());
    format!("weir-{h:016x}")
}

/// Parses a decimal header value.
pub fn header_u64(v: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(v?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_resolve_the_committing_attempt() {
        let m = |epoch, attempt| CommitMarker {
            job: "j".into(),
            epoch,
            attempt,
            manifest: String::new(),
            finished: false,
        };
        // Attempt 1 committed 1..=4 and wrote 5 (aborted: killed); attempt 2 wrote 5 and 6
        // (both aborted); attempt 3 committed 5 and 6 and wrote 7 (aborted).
        let all = vec![
            m(1, 1),
            m(2, 1),
            m(3, 1),
            m(4, 1),
            m(5, 1),
            m(5, 2),
            m(6, 2),
            m(5, 3),
            m(6, 3),
            m(7, 3),
        ];
        let got = committed_attempts(all, 6);
        let want: std::collections::BTreeMap<u64, u64> =
            [(1, 1), (2, 1), (3, 1), (4, 1), (5, 3), (6, 3)].into();
        assert_eq!(got, want);
    }
}
