//! The engine alone: pre-built batches of `u32` keys pushed through `count()` per key in 5 s
//! tumbling windows, no parsing and no output. Also the seeded rows every engine benchmark
//! measures (the criterion benches and `barrier_pause` of crate weir-bench use them too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_engine::{count, EngineError, Job, SinkError};

/// Schema of the engine benchmark rows: `ts` (ms), `key` (u32).
pub fn key_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("key", DataType::UInt32, false),
    ]))
}

/// A small, fast, seeded PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `rows` rows in batches of `batch_rows`: uniformly random `u32` keys out of `keys`, event time
/// advancing `rows_per_sec` rows per second from zero, in order.
pub fn key_batches(
    rows: usize,
    keys: u32,
    rows_per_sec: u64,
    batch_rows: usize,
    seed: u64,
) -> Vec<RecordBatch> {
    let mut rng = Rng::new(seed);
    let schema = key_schema();
    let mut out = Vec::with_capacity(rows.div_ceil(batch_rows));
    let mut done = 0usize;
    while done < rows {
        let n = batch_rows.min(rows - done);
        let ts: Vec<i64> = (done..done + n)
            .map(|i| (i as u64 * 1_000 / rows_per_sec) as i64)
            .collect();
        let k: Vec<u32> = (0..n)
            .map(|_| (rng.next_u64() % keys as u64) as u32)
            .collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(ts)),
            Arc::new(UInt32Array::from(k)),
        ];
        out.push(RecordBatch::try_new(Arc::clone(&schema), cols).expect("schema matches"));
        done += n;
    }
    out
}

/// One run of the engine alone: `batches` (of [`key_schema`]) split in order between `inputs`
/// pushing threads, `count()` per key in 5 s windows at `parallelism`, results discarded.
/// Returns the wall time from the job's start to its end and the result rows.
pub fn run_once(
    batches: &[RecordBatch],
    parallelism: usize,
    inputs: usize,
) -> Result<(Duration, u64), EngineError> {
    let spec = Job::builder()
        .parallelism(parallelism)
        .inputs(inputs)
        .event_time("ts")
        .key_by(["key"])
        .tumbling(Duration::from_secs(5))
        .aggregate([count()])
        .build()?;
    let sink = |b: RecordBatch| -> Result<(), SinkError> {
        std::hint::black_box(b);
        Ok(())
    };
    let start = Instant::now();
    let mut job = spec.start_with_sink(key_schema(), Box::new(sink))?;
    let ins = job.take_inputs();
    let chunk = batches.len().div_ceil(inputs).max(1);
    let pushed: Result<(), EngineError> = std::thread::scope(|s| {
        let handles: Vec<_> = ins
            .into_iter()
            .zip(batches.chunks(chunk).chain(std::iter::repeat(&[][..])))
            .map(|(mut input, part)| {
                s.spawn(move || -> Result<(), EngineError> {
                    for b in part {
                        input.push(b.clone())?;
                    }
                    input.finish()
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a pushing thread panicked"))
    });
    pushed?;
    let stats = job.join()?;
    Ok((start.elapsed(), stats.result_rows))
}
