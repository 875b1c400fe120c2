//! Criterion benchmarks of the engine's hot paths: hash partitioning, and window aggregation
//! per row, each for 1k and 1M distinct keys. Throughput is reported in rows.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir_bench::{key_batches, key_schema};
use weir_engine::{count, Job, Partitioner};

const ROWS: usize = 1 << 20;

fn partitioning(c: &mut Criterion) {
    let mut g = c.benchmark_group("partition");
    g.throughput(Throughput::Elements(ROWS as u64));
    for keys in [1_000u32, 1_000_000] {
        let batches = key_batches(ROWS, keys, 1_000_000, 8192, 1);
        for parts in [2usize, 8] {
            g.bench_with_input(
                BenchmarkId::new(format!("u32/keys={keys}"), parts),
                &parts,
                |b, &parts| {
                    let spec = Job::builder()
                        .parallelism(parts)
                        .key_by(["key"])
                        .aggregate([count()])
                        .build()
                        .unwrap();
                    let mut p = Partitioner::new(&spec, key_schema()).unwrap();
                    b.iter(|| {
                        for batch in &batches {
                            std::hint::black_box(p.split(batch).unwrap());
                        }
                    })
                },
            );
        }
    }
    g.finish();
}

fn window_aggregation(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_aggregate");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    for keys in [1_000u32, 1_000_000] {
        let batches = key_batches(ROWS, keys, 1_000_000, 8192, 1);
        g.bench_function(BenchmarkId::new("count/u32/p=1", keys), |b| {
            let spec = Job::builder()
                .key_by(["key"])
                .tumbling(Duration::from_secs(5))
                .aggregate([count()])
                .build()
                .unwrap();
            b.iter(|| std::hint::black_box(weir_engine::aggregate(batches.clone(), &spec).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, partitioning, window_aggregation);
criterion_main!(benches);
