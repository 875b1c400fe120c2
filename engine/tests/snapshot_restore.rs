//! Barrier snapshots at the engine level: a run "crashed" after checkpoint n and restarted from
//! its snapshots, at the same parallelism or another (rescaling by key group), produces,
//! together with what the first run delivered before n, exactly the results of an
//! uninterrupted run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType, UInt64Type};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_engine::{
    count, sum, Job, JobSpec, ResultSink, SinkError, WatermarkStrategy, WorkerSnapshot,
};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// Rows with disorder up to 1.5 s against a 1 s bound: some are late.
fn batches() -> Vec<RecordBatch> {
    let mut s = 0x1234_5678_u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..200)
        .map(|b| {
            let ts: Vec<i64> = (0..500)
                .map(|i| (b * 500 + i) * 2 - (next() % 1500) as i64)
                .collect();
            let k: Vec<i64> = (0..500).map(|_| (next() % 300) as i64).collect();
            let v: Vec<i64> = (0..500).collect();
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(TimestampMillisecondArray::from(ts)) as ArrayRef,
                    Arc::new(Int64Array::from(k)),
                    Arc::new(Int64Array::from(v)),
                ],
            )
            .unwrap()
        })
        .collect()
}

#[derive(Debug)]
enum Event {
    Rows(Vec<(i64, i64, u64, i64)>),
    Checkpoint(u64),
}

struct Recorder(Arc<Mutex<Vec<Event>>>);

impl ResultSink for Recorder {
    fn batch(&mut self, b: RecordBatch) -> Result<(), SinkError> {
        let starts = b.column(0).as_primitive::<TimestampMillisecondType>();
        let keys = b.column(2).as_primitive::<Int64Type>();
        let counts = b.column(3).as_primitive::<UInt64Type>();
        let sums = b.column(4).as_primitive::<Int64Type>();
        let rows = (0..b.num_rows())
            .map(|i| {
                (
                    starts.value(i),
                    keys.value(i),
                    counts.value(i),
                    sums.value(i),
                )
            })
            .collect();
        self.0.lock().unwrap().push(Event::Rows(rows));
        Ok(())
    }
    fn checkpoint(&mut self, epoch: u64) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(Event::Checkpoint(epoch));
        Ok(())
    }
}

fn spec(p: usize, checkpoints: bool) -> JobSpec {
    spec_with_groups(p, 16, checkpoints)
}

fn spec_with_groups(p: usize, key_groups: usize, checkpoints: bool) -> JobSpec {
    Job::builder()
        .parallelism(p)
        .key_groups(key_groups)
        .key_by(["k"])
        .tumbling(Duration::from_secs(1))
        .watermark(WatermarkStrategy::BoundedOutOfOrderness(1_000))
        .aggregate([count(), sum("v")])
        .pin_workers(false)
        .checkpoints(checkpoints)
        .build()
        .unwrap()
}

type Rows = BTreeMap<(i64, i64), (u64, i64)>;

fn rows_of(events: &[Event]) -> Rows {
    let mut out = Rows::new();
    for e in events {
        if let Event::Rows(rows) = e {
            for &(w, k, c, s) in rows {
                assert!(
                    out.insert((w, k), (c, s)).is_none(),
                    "duplicate result ({w}, {k})"
                );
            }
        }
    }
    out
}

#[test]
fn restore_after_any_checkpoint_gives_the_uninterrupted_result() {
    let data = batches();
    let every = 20; // a barrier after every 20 batches
    for p in [1, 3] {
        // The uninterrupted run, taking snapshots and remembering where each barrier was.
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut job = spec(p, true)
            .start_with_sink(schema(), Box::new(Recorder(Arc::clone(&events))))
            .unwrap();
        let rx = job.take_snapshots().expect("built with checkpoints");
        let mut input = job.input().unwrap();
        let mut positions = BTreeMap::new(); // epoch -> (batches pushed, max timestamp)
        for (i, b) in data.iter().enumerate() {
            input.push(b.clone()).unwrap();
            if (i + 1) % every == 0 {
                let epoch = ((i + 1) / every) as u64;
                input.barrier(epoch).unwrap();
                positions.insert(epoch, (i + 1, input.max_timestamp()));
            }
        }
        input.finish().unwrap();
        let full_stats = job.join().unwrap();
        let snapshots: Vec<WorkerSnapshot> = rx.try_iter().collect();
        assert_eq!(snapshots.len(), positions.len() * p);
        assert_eq!(full_stats.snapshots, (positions.len() * p) as u64);
        assert!(full_stats.late_rows > 0, "the data must have late rows");
        let events = std::mem::take(&mut *events.lock().unwrap());
        let expected = rows_of(&events);

        for (&epoch, &(pushed, max_ts)) in &positions {
            // What the first run had delivered when checkpoint `epoch` completed.
            let cut = events
                .iter()
                .position(|e| matches!(e, Event::Checkpoint(n) if *n == epoch))
                .expect("the checkpoint reached the sink");
            let before = &events[..cut];

            // Encode this checkpoint's snapshots and restart from them.
            let mut states: Vec<Vec<u8>> = vec![Vec::new(); p];
            for s in snapshots.iter().filter(|s| s.epoch == epoch) {
                let mut buf = vec![0u8; s.encoded_len()];
                s.encode(&mut buf);
                states[s.worker] = buf;
            }
            let slices: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
            // The same parallelism, and others (fewer and more workers, 16 at most: the key
            // groups).
            for p2 in [p, 1, 2, 5, 16] {
                let after = Arc::new(Mutex::new(Vec::new()));
                let mut job = spec(p2, false)
                    .start_restored(schema(), Box::new(Recorder(Arc::clone(&after))), &slices)
                    .unwrap();
                let mut input = job.input().unwrap();
                input.advance_to(max_ts).unwrap();
                for b in &data[pushed..] {
                    input.push(b.clone()).unwrap();
                }
                input.finish().unwrap();
                job.join().unwrap();

                let mut combined = rows_of(before);
                for (k, v) in rows_of(&after.lock().unwrap()) {
                    assert!(
                        combined.insert(k, v).is_none(),
                        "p={p} -> {p2} epoch={epoch}: {k:?} delivered twice"
                    );
                }
                assert_eq!(
                    combined, expected,
                    "p={p} -> {p2}: restored from checkpoint {epoch}"
                );
            }
        }
    }
}

/// The snapshots of one checkpoint of a run at parallelism `p` with `key_groups`, encoded.
fn encoded_checkpoint(p: usize, key_groups: usize) -> Vec<Vec<u8>> {
    let mut job = spec_with_groups(p, key_groups, true)
        .start_with_sink(schema(), Box::new(Recorder(Arc::default())))
        .unwrap();
    let rx = job.take_snapshots().unwrap();
    let mut input = job.input().unwrap();
    for b in &batches()[..10] {
        input.push(b.clone()).unwrap();
    }
    input.barrier(1).unwrap();
    input.finish().unwrap();
    job.join().unwrap();
    let mut states = vec![Vec::new(); p];
    for s in rx.try_iter() {
        let mut buf = vec![0u8; s.encoded_len()];
        s.encode(&mut buf);
        states[s.worker] = buf;
    }
    states
}

#[test]
fn restoring_with_other_key_groups_is_refused() {
    let states = encoded_checkpoint(2, 16);
    let slices: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
    let err = spec_with_groups(2, 32, false)
        .start_restored(schema(), Box::new(Recorder(Arc::default())), &slices)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("taken with 16 key groups and this job has 32"),
        "{err}"
    );
}

#[test]
fn states_out_of_their_workers_order_are_refused() {
    let mut states = encoded_checkpoint(2, 16);
    states.swap(0, 1);
    let slices: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
    let err = spec(3, false)
        .start_restored(schema(), Box::new(Recorder(Arc::default())), &slices)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds key groups 8..16 where worker 0 of 2 owns key groups 0..8"),
        "{err}"
    );
}

#[test]
fn more_workers_than_key_groups_is_a_plan_error() {
    let err = Job::builder()
        .parallelism(5)
        .key_groups(4)
        .key_by(["k"])
        .aggregate([count()])
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the job's 4 key groups"), "{err}");
}

#[test]
fn a_corrupt_state_is_an_error_not_a_panic() {
    let err = spec(1, false)
        .start_restored(
            schema(),
            Box::new(Recorder(Arc::default())),
            &[&[1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]],
        )
        .unwrap_err();
    assert!(err.to_string().contains("worker 0"), "{err}");
}
