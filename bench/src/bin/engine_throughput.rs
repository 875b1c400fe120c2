//! Throughput of the engine alone: pre-built batches of `u32` keys pushed through `count()` per
//! key in 5 s tumbling windows, for several parallelisms, in one process so the ratios compare
//! like with like.
//!
//! ```text
//! cargo run --release -p weir-bench --bin engine_throughput -- [ROWS] [KEYS] [PARALLELISMS] [INPUTS]
//! cargo run --release -p weir-bench --bin engine_throughput -- 10000000 100000 1,2 1
//! ```

use std::time::{Duration, Instant};

use weir_bench::{key_batches, key_schema};
use weir_engine::{count, Job};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args
        .first()
        .map_or(10_000_000, |a| a.parse().expect("ROWS"));
    let keys: u32 = args.get(1).map_or(100_000, |a| a.parse().expect("KEYS"));
    let ps: Vec<usize> = args
        .get(2)
        .map_or("1,2", String::as_str)
        .split(',')
        .map(|p| p.parse().expect("PARALLELISMS"))
        .collect();
    let inputs: usize = args.get(3).map_or(1, |a| a.parse().expect("INPUTS"));
    let reps = 3;

    // 1M rows per second of event time: 5M rows and all keys in every 5 s window.
    let batches = key_batches(rows, keys, 1_000_000, 8192, 42);
    println!("engine throughput: {rows} rows, {keys} distinct u32 keys, 5 s windows, count(), batches of 8192, {inputs} input(s), best of {reps}");
    let mut base = None;
    for &p in &ps {
        let mut best = Duration::MAX;
        let mut result_rows = 0;
        for _ in 0..reps {
            let spec = Job::builder()
                .parallelism(p)
                .inputs(inputs)
                .event_time("ts")
                .key_by(["key"])
                .tumbling(Duration::from_secs(5))
                .aggregate([count()])
                .build()
                .expect("valid job");
            let sink = |b: arrow_array::RecordBatch| -> Result<(), weir_engine::SinkError> {
                std::hint::black_box(b);
                Ok(())
            };
            let start = Instant::now();
            let mut job = spec
                .start_with_sink(key_schema(), Box::new(sink))
                .expect("start");
            let ins = job.take_inputs();
            let chunk = batches.len().div_ceil(inputs);
            std::thread::scope(|s| {
                for (mut input, part) in ins.into_iter().zip(batches.chunks(chunk)) {
                    s.spawn(move || {
                        for b in part {
                            input.push(b.clone()).expect("push");
                        }
                        input.finish().expect("finish");
                    });
                }
            });
            let stats = job.join().expect("run");
            best = best.min(start.elapsed());
            result_rows = stats.result_rows;
            assert_eq!(stats.rows_in, rows as u64);
        }
        let rate = rows as f64 / best.as_secs_f64();
        let per_worker = rate / p as f64;
        let ratio = base.map_or(1.0, |b: f64| rate / b);
        base.get_or_insert(rate);
        println!(
            "parallelism {p}: {:>7.1} M rows/s total, {:>6.1} M rows/s per worker, {:.2}x parallelism {}; {:.3} s; {result_rows} result rows",
            rate / 1e6,
            per_worker / 1e6,
            ratio,
            ps[0],
            best.as_secs_f64()
        );
    }
}
