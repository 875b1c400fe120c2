//! weir's own Rust `aggregate` on the benchmark's table: the baseline for the Python binding's
//! overhead. `bench_aggregate.py` writes the table to an Arrow IPC file and runs this on it:
//!
//! ```sh
//! cargo run --release --manifest-path python/Cargo.toml --example bench_aggregate -- FILE [RUNS]
//! ```
//!
//! Prints one JSON line: rows, result rows and the best time of `RUNS` (default 5) after one
//! warm-up run, for a count per 5 s window and `client` with one worker per core, exactly what
//! `weir.aggregate(table, time="ts", keys="client")` asks for.

use std::fs::File;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use weir_engine::{aggregate, count, Job};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: bench_aggregate FILE.arrow [RUNS]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let reader = arrow_ipc::reader::FileReader::try_new(File::open(&path)?, None)?;
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let spec = Job::builder()
        .parallelism(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .event_time("ts")
        .key_by(["client"])
        .tumbling(Duration::from_secs(5))
        .aggregate([count()])
        .build()?;
    let mut best = f64::INFINITY;
    let mut result_rows = 0;
    for run in 0..=runs {
        let t0 = Instant::now();
        let out = aggregate(batches.clone(), &spec)?;
        let secs = t0.elapsed().as_secs_f64();
        result_rows = out.iter().map(RecordBatch::num_rows).sum::<usize>();
        if run > 0 {
            best = best.min(secs);
        }
    }
    println!(
        "{{\"rows\": {rows}, \"batches\": {}, \"result_rows\": {result_rows}, \"best_s\": {best}}}",
        batches.len()
    );
    Ok(())
}
