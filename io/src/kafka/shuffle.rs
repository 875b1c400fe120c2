//! The records of a scale-out job's shuffle topic: parsed rows on their way from the member
//! that read them to the member that owns their key groups, and the event time of each
//! upstream partition, carried along.
//!
//! ```text
//!  key "d": rows       value = one Arrow IPC stream (schema + batch): rows of one upstream
//!                      partition whose key groups belong to this shuffle partition
//!  key "w": event time value = JSON {"upstream":u,"max_ts":t,"ended":b}: upstream partition u
//!                      has sent every row up to here, and its largest event time so far is t
//!                      (ended: it will send nothing more)
//! ```
//!
//! Every upstream partition sends its event time to every shuffle partition after its rows at
//! each checkpoint, in the same transaction, so a shuffle partition's reader knows the event
//! time of every upstream partition at every point of its own partition: its watermark is the
//! least of them, whichever member read which upstream partition, and whatever the members
//! joining or leaving.

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use super::reader::RawRecord;

/// The key of a record of rows.
pub const ROWS: &[u8] = b"d";
/// The key of an event-time record.
pub const EVENT_TIME: &[u8] = b"w";

/// What an event-time record says of one upstream partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTime {
    /// The upstream (input) partition.
    pub upstream: i32,
    /// Its largest event time so far (`i64::MIN`: none yet).
    pub max_ts: i64,
    /// It has reached its end: nothing more comes from it.
    pub ended: bool,
}

/// One decoded shuffle record.
#[derive(Debug)]
pub enum ShuffleRecord {
    /// Rows.
    Rows(Vec<RecordBatch>),
    /// An upstream partition's event time.
    Time(UpstreamTime),
}

/// The value of a record of rows: `batch` as one Arrow IPC stream.
pub fn encode_rows(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 512);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema()).map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(out)
}

/// The value of an event-time record.
pub fn encode_time(t: &UpstreamTime) -> Vec<u8> {
    serde_json::to_vec(t).expect("serialisable")
}

/// Decodes a shuffle record; the error says what is wrong with it.
pub fn decode(r: &RawRecord) -> Result<ShuffleRecord, String> {
    match r.key.as_slice() {
        ROWS => {
            let reader = StreamReader::try_new(std::io::Cursor::new(&r.value), None)
                .map_err(|e| format!("rows at offset {}: {e}", r.offset))?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("rows at offset {}: {e}", r.offset))?;
            Ok(ShuffleRecord::Rows(batches))
        }
        EVENT_TIME => serde_json::from_slice(&r.value)
            .map(ShuffleRecord::Time)
            .map_err(|e| format!("event time at offset {}: {e}", r.offset)),
        other => Err(format!(
            "offset {}: key {:?} is neither rows nor event time: not a weir shuffle record",
            r.offset,
            String::from_utf8_lossy(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn rows_and_event_time_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, false),
            Field::new("client", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["a", "b", "a"])),
            ],
        )
        .unwrap();
        let rows = RawRecord {
            offset: 7,
            key: ROWS.to_vec(),
            value: encode_rows(&batch).unwrap(),
        };
        match decode(&rows).unwrap() {
            ShuffleRecord::Rows(b) => assert_eq!(b, vec![batch]),
            other => panic!("{other:?}"),
        }
        let t = UpstreamTime {
            upstream: 3,
            max_ts: 1_700_000_000_000,
            ended: true,
        };
        let time = RawRecord {
            offset: 8,
            key: EVENT_TIME.to_vec(),
            value: encode_time(&t),
        };
        match decode(&time).unwrap() {
            ShuffleRecord::Time(got) => assert_eq!(got, t),
            other => panic!("{other:?}"),
        }
        let foreign = RawRecord {
            offset: 9,
            key: b"x".to_vec(),
            value: vec![],
        };
        let e = decode(&foreign).unwrap_err();
        assert!(
            e.contains("offset 9") && e.contains("not a weir shuffle record"),
            "{e}"
        );
    }
}
