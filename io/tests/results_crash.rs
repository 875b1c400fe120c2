//! The exactly-once results file under crashes, on the engine's fault-injecting storage model.
//!
//! A run writes rows epoch by epoch through the two real halves of the file sink
//! (`results_file::exactly_once`), committing each epoch as the coordinator does: the sink
//! marks the epoch, the committer prepares it (fsync of the results), a manifest recording the
//! mark is made durable, the committer commits; at the end the results are published. The
//! storage crashes at every one of the run's operations in turn, in each crash mode (only what
//! was synced survives; everything survives; a seeded mix per page and per folder entry). A
//! second run on what the crash left recovers from the durable manifest, as `weir replay
//! --checkpoint-dir` does, and finishes. Its output must be every row exactly once, counted
//! independently of the sink, and recovery must never find the committed results damaged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use weir_engine::checkpoint::{CrashMode, FaultyStorage, Storage};
use weir_engine::ResultSink;
use weir_io::results_file::{exactly_once, publish, Committed, ResultsFile, ResultsWriter};
use weir_io::sink::BatchWriter;
use weir_io::two_phase::{SinkEvent, TwoPhaseSink};

const ROOT: &str = "/weir-model";
const EPOCHS: u64 = 4;
const ROWS: i64 = 3;

fn path(name: &str) -> PathBuf {
    Path::new(ROOT).join(name)
}

/// Writes each row's value on a line of its own.
struct Lines(ResultsWriter<FaultyStorage>);

impl BatchWriter for Lines {
    fn write(&mut self, batch: &RecordBatch) -> weir_io::Result<()> {
        use std::io::Write;
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("one Int64 column");
        for v in values.values() {
            writeln!(self.0, "{v}").map_err(|e| weir_io::Error::io(path("output/results"), e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> weir_io::Result<()> {
        Ok(())
    }
}

/// The rows of epoch `epoch`: `epoch * 100 + i`.
fn rows(epoch: u64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let values = (0..ROWS)
        .map(|i| epoch as i64 * 100 + i)
        .collect::<Vec<_>>();
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
}

/// What the durable manifest says: the last committed epoch, its results mark, whether final.
#[derive(Clone, Copy)]
struct Manifest {
    epoch: u64,
    results: Committed,
    is_final: bool,
}

fn read_manifest(storage: &FaultyStorage) -> Option<Manifest> {
    let bytes = storage.read(&path("MANIFEST")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a manifest is whole");
    Some(Manifest {
        epoch: v["epoch"].as_u64().unwrap(),
        results: serde_json::from_value(v["results"].clone()).unwrap(),
        is_final: v["final"].as_bool().unwrap(),
    })
}

/// Makes a manifest durable as the checkpoint folder does: temp file, fsync, rename, fsync dir.
fn write_manifest(
    storage: &FaultyStorage,
    epoch: u64,
    record: &serde_json::Value,
    is_final: bool,
) -> std::io::Result<()> {
    let m = serde_json::json!({ "epoch": epoch, "results": record["results"], "final": is_final });
    let tmp = path("MANIFEST.tmp");
    storage.write_file(&tmp, m.to_string().as_bytes())?;
    storage.sync_file(&tmp)?;
    storage.rename(&tmp, &path("MANIFEST"))?;
    storage.sync_dir(Path::new(ROOT))
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Runs the job from what `storage` holds (its durable manifest, if any) to the end. A crash
/// of the storage fails it; a damaged committed prefix is a `DamagedPart` error.
fn run(storage: &FaultyStorage) -> Result<(), Failure> {
    let manifest = read_manifest(storage);
    if let Some(m) = manifest.filter(|m| m.is_final) {
        // Complete: publish the results if the crash came before that.
        if storage.read(&path("output/results")).is_ok() {
            publish(storage, &path("output/results"), m.results, &path("out"))?;
        }
        return Ok(());
    }
    let (first, at) = manifest.map_or((1, Committed::default()), |m| (m.epoch + 1, m.results));
    let results = match manifest {
        Some(_) => ResultsFile::resume_in(storage.clone(), &path("output/results"), at)?,
        None => ResultsFile::create_in(storage.clone(), &path("output/results"))?,
    };
    let writer = Box::new(Lines(results.writer()));
    let (mut sink, mut committer) = exactly_once(writer, results, path("out"), at, first);
    let events = committer.events();
    for epoch in first..=EPOCHS {
        sink.batch(rows(epoch))?;
        sink.checkpoint(epoch)?;
        let Ok(SinkEvent::Ready(n, mark)) = events.try_recv() else {
            panic!("no Ready event for epoch {epoch}");
        };
        assert_eq!(n, epoch);
        let record = committer.prepare(epoch, mark)?;
        write_manifest(storage, epoch, &record, false)?;
        committer.commit(epoch, "", &serde_json::Value::Null, false, false)?;
    }
    sink.finish()?;
    let Ok(SinkEvent::Finished(n, mark)) = events.try_recv() else {
        panic!("no Finished event");
    };
    let record = committer.prepare(n, mark)?;
    write_manifest(storage, n, &record, true)?;
    committer.commit(n, "", &serde_json::Value::Null, true, false)?;
    Ok(())
}

/// Every row of every epoch once, in order: computed from `rows`' rule, not from the sink.
fn expected() -> String {
    (1..=EPOCHS)
        .flat_map(|e| (0..ROWS).map(move |i| format!("{}\n", e as i64 * 100 + i)))
        .collect()
}

#[test]
fn a_crash_at_any_operation_loses_and_duplicates_no_row() {
    let clean = FaultyStorage::new(ROOT);
    run(&clean).expect("a run without a crash");
    let ops = clean.ops();
    let out = clean.read(&path("out")).expect("published");
    assert_eq!(std::str::from_utf8(&out).unwrap(), expected());
    assert!(ops > 20, "the run is made of many operations ({ops})");

    let mut crashes = 0;
    for k in 0..ops {
        for mode in [
            CrashMode::LoseUnsynced,
            CrashMode::KeepUnsynced,
            CrashMode::Torn(k as u64 * 7919 + 1),
        ] {
            let storage = FaultyStorage::new(ROOT);
            storage.set_countdown(Some(k));
            let crashed = run(&storage).is_err();
            assert!(
                crashed && storage.crashed(),
                "operation {k} did not crash the run"
            );
            crashes += 1;
            let after = storage.crash(mode);
            if let Err(e) = run(&after) {
                panic!("recovery after a crash at operation {k} ({mode:?}) failed: {e}");
            }
            let out = after
                .read(&path("out"))
                .unwrap_or_else(|e| panic!("no output after a crash at {k} ({mode:?}): {e}"));
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                expected(),
                "the output after a crash at operation {k} ({mode:?})"
            );
        }
    }
    assert_eq!(crashes, ops * 3);
}

/// A crash while recovering from a crash (at every operation of the recovery, after a crash at
/// every operation of the first run) is recovered from as well.
#[test]
fn a_crash_during_recovery_is_recovered_from_too() {
    let clean = FaultyStorage::new(ROOT);
    run(&clean).unwrap();
    let ops = clean.ops();
    let mut pairs = 0;
    for k in 0..ops {
        let first = FaultyStorage::new(ROOT);
        first.set_countdown(Some(k));
        assert!(run(&first).is_err());
        let mode = CrashMode::Torn(k as u64 + 11);
        for j in 0.. {
            let second = first.crash(mode);
            second.set_countdown(Some(j));
            if run(&second).is_ok() {
                break; // the recovery is shorter than j operations
            }
            pairs += 1;
            let third = second.crash(CrashMode::Torn(j as u64 * 31 + k as u64));
            if let Err(e) = run(&third) {
                panic!("recovery after crashes at {k} then {j} failed: {e}");
            }
            let out = third.read(&path("out")).unwrap();
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                expected(),
                "crashes at {k} then {j}"
            );
        }
    }
    assert!(pairs > ops, "recoveries were crashed ({pairs} pairs)");
}
