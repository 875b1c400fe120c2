//! Criterion benchmarks of the access-log parser: bytes of a generated log → Arrow batches, on
//! one core. Throughput is reported in input bytes, so criterion prints GB/s.
//!
//! * `parse/combined/ts_client`: the projection a windowed count per client needs, the fast
//!   path (first field, `[`, fixed-width timestamp, newline). The project's target is ≥ 1 GB/s.
//! * `parse/combined/all`: every column, the request fields included.
//! * `parse/common/ts_client`, `parse/simple/ts_client`: the other formats.
//! * `detect/combined`: format detection on a 4 KiB sample.
//! * `gen/combined`: the synthetic log generator itself (100k lines into `io::sink`).
//!
//! The logs are generated in memory with `weir_io::gen` (seed 42, 10k clients, 2 s out of order,
//! 0.1 % malformed lines), about 50 MB each.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::bench::parse::parse_all;
use weir_io::gen::{day_of, generate_vec, GenOptions};
use weir_io::parse::{detect_format, Columns, LogFormat, ParseOptions};

/// Size of each generated log.
const TARGET_BYTES: u64 = 50 << 20;

fn log(format: LogFormat) -> (Vec<u8>, GenOptions) {
    // Bytes per line of each format, roughly, to reach TARGET_BYTES.
    let per_line = match format {
        LogFormat::Combined => 200,
        LogFormat::Common => 90,
        LogFormat::Simple => 22,
    };
    let opts = GenOptions {
        lines: TARGET_BYTES / per_line,
        clients: 10_000,
        rate: 10_000.0,
        seed: 42,
        format,
        out_of_order_ms: 2_000,
        malformed: 0.001,
        start_ms: 1_715_475_600_000,
        ..GenOptions::default()
    };
    (generate_vec(&opts).0, opts)
}

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.sample_size(10);
    let cases = [
        (LogFormat::Combined, "ts_client", Columns::ts_client()),
        (LogFormat::Combined, "all", Columns::ALL),
        (LogFormat::Common, "ts_client", Columns::ts_client()),
        (LogFormat::Simple, "ts_client", Columns::ts_client()),
    ];
    let mut current: Option<(LogFormat, Vec<u8>, GenOptions)> = None;
    for (format, name, columns) in cases {
        if current.as_ref().is_none_or(|(f, _, _)| *f != format) {
            let (bytes, gen) = log(format);
            current = Some((format, bytes, gen));
        }
        let (_, bytes, gen) = current.as_ref().unwrap();
        let opts = ParseOptions {
            simple_date_days: day_of(gen.start_ms),
            ..ParseOptions::new(format).with_columns(columns)
        };
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::new(format.name(), name), |b| {
            b.iter(|| parse_all(bytes, &opts))
        });
    }
    g.finish();
}

fn detection(c: &mut Criterion) {
    let (bytes, _) = log_small();
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("combined", |b| {
        b.iter(|| detect_format(black_box(&bytes[..4096])))
    });
    g.finish();
}

fn log_small() -> (Vec<u8>, GenOptions) {
    let opts = GenOptions {
        lines: 100,
        ..GenOptions::default()
    };
    (generate_vec(&opts).0, opts)
}

fn generation(c: &mut Criterion) {
    let opts = GenOptions {
        lines: 100_000,
        clients: 10_000,
        out_of_order_ms: 2_000,
        malformed: 0.001,
        ..GenOptions::default()
    };
    let bytes = generate_vec(&opts).1.bytes;
    let mut g = c.benchmark_group("gen");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("combined", |b| {
        b.iter(|| weir_io::gen::generate(&opts, &mut std::io::sink()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, parsers, detection, generation);
criterion_main!(benches);
