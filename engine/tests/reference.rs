//! The engine against a plain `HashMap` oracle.
//!
//! Every test builds rows in the test, computes the expected windows with a straightforward
//! per-row loop (no code shared with the engine), runs the engine with several parallelisms and
//! batch sizes, and compares the two as sets of `(window_start, key, aggregates)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType, UInt64Type};
use arrow_array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use proptest::prelude::*;
use weir_engine::{count, max, mean, min, sum, EngineError, Job, JobSpec, WatermarkStrategy};

/// One input row: event time, a key, a value.
#[derive(Debug, Clone)]
struct Row {
    ts: i64,
    key: i64,
    value: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyType {
    Str,
    Int,
    TwoColumns,
}

fn schema(kt: KeyType) -> SchemaRef {
    let ts = Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    );
    let v = Field::new("v", DataType::Int64, false);
    Arc::new(Schema::new(match kt {
        KeyType::Str => vec![ts, Field::new("k", DataType::Utf8, false), v],
        KeyType::Int => vec![ts, Field::new("k", DataType::Int64, false), v],
        KeyType::TwoColumns => vec![
            ts,
            Field::new("k", DataType::Utf8, false),
            Field::new("k2", DataType::Int64, false),
            v,
        ],
    }))
}

fn keys(kt: KeyType) -> Vec<&'static str> {
    match kt {
        KeyType::TwoColumns => vec!["k", "k2"],
        _ => vec!["k"],
    }
}

fn batches(rows: &[Row], kt: KeyType, batch_size: usize) -> Vec<RecordBatch> {
    rows.chunks(batch_size.max(1))
        .map(|chunk| {
            let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(
                chunk.iter().map(|r| r.ts).collect::<Vec<_>>(),
            ));
            let v: ArrayRef = Arc::new(Int64Array::from(
                chunk.iter().map(|r| r.value).collect::<Vec<_>>(),
            ));
            let skey: ArrayRef = Arc::new(StringArray::from(
                chunk
                    .iter()
                    .map(|r| format!("key-{}", r.key))
                    .collect::<Vec<_>>(),
            ));
            let ikey: ArrayRef = Arc::new(Int64Array::from(
                chunk.iter().map(|r| r.key).collect::<Vec<_>>(),
            ));
            let cols = match kt {
                KeyType::Str => vec![ts, skey, v],
                KeyType::Int => vec![ts, ikey, v],
                KeyType::TwoColumns => {
                    // Second key column: key / 3, so (k, k2) is still one-to-one with the key.
                    let k2: ArrayRef = Arc::new(Int64Array::from(
                        chunk.iter().map(|r| r.key / 3).collect::<Vec<_>>(),
                    ));
                    vec![ts, skey, k2, v]
                }
            };
            RecordBatch::try_new(schema(kt), cols).unwrap()
        })
        .collect()
}

/// Aggregates of one (window, key): count, sum, min, max.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Agg {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
}

type Table = HashMap<(i64, i64), Agg>;

/// The oracle: a per-row loop. `bound` is `None` for batch mode (nothing late), else the
/// out-of-orderness bound of a single input; returns the table and the number of late rows.
fn oracle(rows: &[Row], size: i64, bound: Option<i64>) -> (Table, u64) {
    let mut t = Table::new();
    let mut max_ts = i64::MIN;
    let mut late = 0;
    for r in rows {
        let start = r.ts.div_euclid(size) * size;
        if let Some(b) = bound {
            let wm = max_ts.saturating_sub(b);
            if start + size <= wm {
                late += 1;
                max_ts = max_ts.max(r.ts);
                continue;
            }
            max_ts = max_ts.max(r.ts);
        }
        let e = t.entry((start, r.key)).or_insert(Agg {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
        });
        e.count += 1;
        e.sum += r.value;
        e.min = e.min.min(r.value);
        e.max = e.max.max(r.value);
    }
    (t, late)
}

fn spec(kt: KeyType, parallelism: usize, size: i64, wm: WatermarkStrategy) -> JobSpec {
    Job::builder()
        .parallelism(parallelism)
        .event_time("ts")
        .key_by(keys(kt))
        .tumbling(Duration::from_millis(size as u64))
        .watermark(wm)
        .aggregate([count(), sum("v"), min("v"), max("v"), mean("v")])
        .pin_workers(false)
        .build()
        .unwrap()
}

/// Runs the streaming job over `rows` through one input; returns the result table, late rows and
/// the results in delivery order (window starts).
fn run(
    rows: &[Row],
    kt: KeyType,
    p: usize,
    batch: usize,
    size: i64,
    wm: WatermarkStrategy,
) -> (Table, u64, Vec<i64>) {
    let spec = spec(kt, p, size, wm);
    let mut job = spec.start(schema(kt)).unwrap();
    let results = job.take_results().unwrap();
    let reader = std::thread::spawn(move || results.iter().collect::<Vec<_>>());
    let mut input = job.input().unwrap();
    for b in batches(rows, kt, batch) {
        input.push(b).unwrap();
    }
    input.finish().unwrap();
    let stats = job.join().unwrap();
    let out = reader.join().unwrap();
    assert_eq!(stats.rows_in, rows.len() as u64);
    assert_eq!(stats.worker_rows.iter().sum::<u64>(), rows.len() as u64);
    let (t, order) = to_table(&out, kt);
    assert_eq!(stats.result_rows, t.len() as u64);
    (t, stats.late_rows, order)
}

fn to_table(out: &[RecordBatch], kt: KeyType) -> (Table, Vec<i64>) {
    let mut t = Table::new();
    let mut order = Vec::new();
    for b in out {
        let starts = b.column(0).as_primitive::<TimestampMillisecondType>();
        let ends = b.column(1).as_primitive::<TimestampMillisecondType>();
        let key_at = |i: usize| -> i64 {
            match kt {
                KeyType::Int => b.column(2).as_primitive::<Int64Type>().value(i),
                _ => b.column(2).as_string::<i32>().value(i)[4..]
                    .parse()
                    .unwrap(),
            }
        };
        let a = if kt == KeyType::TwoColumns { 3 } else { 2 };
        let counts = b.column(a + 1).as_primitive::<UInt64Type>();
        let sums = b.column(a + 2).as_primitive::<Int64Type>();
        let mins = b.column(a + 3).as_primitive::<Int64Type>();
        let maxs = b.column(a + 4).as_primitive::<Int64Type>();
        let means = b.column(a + 5).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let start = starts.value(i);
            assert_eq!(ends.value(i) - start, ends.value(0) - starts.value(0));
            if kt == KeyType::TwoColumns {
                assert_eq!(
                    b.column(3).as_primitive::<Int64Type>().value(i),
                    key_at(i) / 3
                );
            }
            let agg = Agg {
                count: counts.value(i),
                sum: sums.value(i),
                min: mins.value(i),
                max: maxs.value(i),
            };
            let m = means.value(i);
            assert!((m - agg.sum as f64 / agg.count as f64).abs() < 1e-6);
            assert!(
                t.insert((start, key_at(i)), agg).is_none(),
                "duplicate result row"
            );
            order.push(start);
        }
    }
    (t, order)
}

/// Deterministic pseudo-random rows: `n` rows over `keys` keys, time advancing by `step` ms on
/// average and jumping back up to `disorder` ms.
fn gen(n: usize, keys: i64, step: i64, disorder: i64, seed: u64, start: i64) -> Vec<Row> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut t = start;
    (0..n)
        .map(|_| {
            t += (next() % (2 * step as u64 + 1)) as i64;
            let back = if disorder > 0 {
                (next() % (disorder as u64 + 1)) as i64
            } else {
                0
            };
            Row {
                ts: t - back,
                key: (next() % keys as u64) as i64,
                value: (next() % 1000) as i64 - 300,
            }
        })
        .collect()
}

#[test]
fn matches_oracle_across_parallelism_batch_size_and_key_types() {
    let rows = gen(20_000, 500, 3, 0, 7, 1_700_000_000_000);
    let (expected, _) = oracle(&rows, 5_000, Some(0));
    for kt in [KeyType::Str, KeyType::Int, KeyType::TwoColumns] {
        for p in [1, 2, 3, 8] {
            for batch in [1, 7, 8192] {
                if batch == 1 && p > 3 {
                    continue; // 20k single-row batches × 8 workers adds nothing but time
                }
                let (got, late, order) =
                    run(&rows, kt, p, batch, 5_000, WatermarkStrategy::Ascending);
                assert_eq!(late, 0);
                assert_eq!(got, expected, "{kt:?} p={p} batch={batch}");
                assert!(
                    order.windows(2).all(|w| w[0] <= w[1]),
                    "windows out of order"
                );
            }
        }
    }
}

#[test]
fn out_of_order_within_the_bound_loses_nothing() {
    let rows = gen(30_000, 200, 2, 1_500, 11, 1_000_000);
    let (expected, late) = oracle(&rows, 1_000, Some(1_500));
    assert_eq!(late, 0);
    for p in [1, 3] {
        for batch in [7, 8192] {
            let (got, late, _) = run(
                &rows,
                KeyType::Int,
                p,
                batch,
                1_000,
                WatermarkStrategy::BoundedOutOfOrderness(1_500),
            );
            assert_eq!(late, 0);
            assert_eq!(got, expected, "p={p} batch={batch}");
        }
    }
}

#[test]
fn late_rows_are_counted_exactly_and_left_out() {
    // Disorder up to 3 s against a 1 s bound: some rows come after their window fired.
    let rows = gen(30_000, 50, 2, 3_000, 3, 0);
    let (expected, expected_late) = oracle(&rows, 1_000, Some(1_000));
    assert!(
        expected_late > 100,
        "the input must have late rows: {expected_late}"
    );
    for p in [1, 2, 8] {
        for batch in [1, 7, 8192] {
            let (got, late, _) = run(
                &rows,
                KeyType::Str,
                p,
                batch,
                1_000,
                WatermarkStrategy::BoundedOutOfOrderness(1_000),
            );
            assert_eq!(late, expected_late, "p={p} batch={batch}");
            assert_eq!(got, expected, "p={p} batch={batch}");
        }
    }
}

#[test]
fn late_side_output_holds_exactly_the_late_rows() {
    let rows = gen(5_000, 20, 2, 3_000, 5, 0);
    let (_, expected_late) = oracle(&rows, 1_000, Some(0));
    let spec = Job::builder()
        .parallelism(2)
        .key_by(["k"])
        .tumbling(Duration::from_secs(1))
        .aggregate([count()])
        .late_output(true)
        .pin_workers(false)
        .build()
        .unwrap();
    let mut job = spec.start(schema(KeyType::Int)).unwrap();
    let results = job.take_results().unwrap();
    let late = job.take_late_records().unwrap();
    let r = std::thread::spawn(move || results.iter().count());
    let l = std::thread::spawn(move || late.iter().map(|b| b.num_rows() as u64).sum::<u64>());
    let mut input = job.input().unwrap();
    for b in batches(&rows, KeyType::Int, 100) {
        input.push(b).unwrap();
    }
    input.finish().unwrap();
    let stats = job.join().unwrap();
    r.join().unwrap();
    assert_eq!(stats.late_rows, expected_late);
    assert_eq!(l.join().unwrap(), expected_late);
    assert_eq!(stats.late_by_window.values().sum::<u64>(), expected_late);
}

#[test]
fn exact_boundaries_and_negative_timestamps() {
    let rows: Vec<Row> = [
        -10_001, -10_000, -5_001, -5_000, -1, 0, 4_999, 5_000, 9_999, 10_000,
    ]
    .iter()
    .enumerate()
    .map(|(i, &ts)| Row {
        ts,
        key: (i % 2) as i64,
        value: i as i64,
    })
    .collect();
    let (expected, _) = oracle(&rows, 5_000, Some(0));
    for p in [1, 2] {
        for batch in [1, 3, 100] {
            let (got, late, _) = run(
                &rows,
                KeyType::Int,
                p,
                batch,
                5_000,
                WatermarkStrategy::Ascending,
            );
            assert_eq!(late, 0);
            assert_eq!(got, expected);
        }
    }
    // Spot checks against hand-computed windows.
    assert_eq!(expected[&(-15_000, 0)].count, 1); // -10_001
    assert_eq!(expected[&(-10_000, 1)].count, 1); // -10_000
    assert_eq!(
        expected[&(-5_000, 1)].count + expected[&(-5_000, 0)].count,
        2
    ); // -5_000, -1
    assert_eq!(expected[&(10_000, 1)].count, 1);
}

#[test]
fn empty_input_and_one_row() {
    let (got, late, _) = run(
        &[],
        KeyType::Str,
        2,
        10,
        5_000,
        WatermarkStrategy::Ascending,
    );
    assert!(got.is_empty());
    assert_eq!(late, 0);
    let one = [Row {
        ts: 123,
        key: 9,
        value: -4,
    }];
    let (got, _, _) = run(
        &one,
        KeyType::Str,
        3,
        10,
        5_000,
        WatermarkStrategy::Ascending,
    );
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[&(0, 9)],
        Agg {
            count: 1,
            sum: -4,
            min: -4,
            max: -4
        }
    );
}

#[test]
fn one_shot_aggregate_matches_oracle_with_nothing_late() {
    // Heavy disorder: a streaming job would drop rows, the batch API must count them all.
    let rows = gen(10_000, 100, 2, 5_000, 13, 0);
    let (expected, _) = oracle(&rows, 1_000, None);
    let spec = spec(KeyType::Str, 3, 1_000, WatermarkStrategy::Ascending);
    let out = weir_engine::aggregate(batches(&rows, KeyType::Str, 333), &spec).unwrap();
    let (got, order) = to_table(&out, KeyType::Str);
    assert_eq!(got, expected);
    assert!(order.windows(2).all(|w| w[0] <= w[1]));
    assert!(weir_engine::aggregate(Vec::new(), &spec)
        .unwrap()
        .is_empty());
}

#[test]
fn schema_mistakes_name_the_column() {
    let s = schema(KeyType::Str);
    let err = |spec: JobSpec| spec.start(Arc::clone(&s)).unwrap_err().to_string();
    let base = || Job::builder().key_by(["k"]).aggregate([count()]);
    let e = err(base().key_by(["nope"]).build().unwrap());
    assert!(e.contains("`nope`"), "{e}");
    let e = err(base().event_time("k").build().unwrap());
    assert!(e.contains("`k`") && e.contains("Timestamp"), "{e}");
    let e = err(base().aggregate([sum("k")]).build().unwrap());
    assert!(e.contains("`k`") && e.contains("numeric"), "{e}");
    let e = err(base().aggregate([sum("missing")]).build().unwrap());
    assert!(e.contains("`missing`"), "{e}");
    assert!(
        Job::builder().aggregate([count()]).build().is_err(),
        "no key"
    );
    assert!(Job::builder()
        .key_by(["k"])
        .parallelism(0)
        .aggregate([count()])
        .build()
        .is_err());

    // A pushed batch of another schema is refused, naming the column.
    let spec = base().build().unwrap();
    let mut job = spec.start(Arc::clone(&s)).unwrap();
    let mut input = job.input().unwrap();
    let wrong = batches(
        &[Row {
            ts: 1,
            key: 1,
            value: 1,
        }],
        KeyType::Int,
        1,
    )
    .remove(0);
    let e = input.push(wrong).unwrap_err();
    assert!(
        matches!(e, EngineError::Plan(_)) && e.to_string().contains("`k`"),
        "{e}"
    );
    input.finish().unwrap();
    job.join().unwrap();
}

#[test]
fn several_inputs_combine_watermarks_by_minimum() {
    // Input 0 races ahead in time; input 1 stays behind. With min-combining nothing of input 1
    // is late even though input 0's timestamps are far ahead.
    let spec = Job::builder()
        .parallelism(2)
        .inputs(2)
        .key_by(["k"])
        .tumbling(Duration::from_secs(1))
        .aggregate([count()])
        .pin_workers(false)
        .build()
        .unwrap();
    let mut job = spec.start(schema(KeyType::Int)).unwrap();
    let results = job.take_results().unwrap();
    let reader = std::thread::spawn(move || results.iter().collect::<Vec<_>>());
    let mut inputs = job.take_inputs();
    let fast: Vec<Row> = (0..1000)
        .map(|i| Row {
            ts: 100_000 + i * 10,
            key: i % 7,
            value: 1,
        })
        .collect();
    let slow: Vec<Row> = (0..1000)
        .map(|i| Row {
            ts: i * 10,
            key: i % 5,
            value: 1,
        })
        .collect();
    for b in batches(&fast, KeyType::Int, 64) {
        inputs[0].push(b).unwrap();
    }
    for b in batches(&slow, KeyType::Int, 64) {
        inputs[1].push(b).unwrap();
    }
    for i in inputs {
        i.finish().unwrap();
    }
    let stats = job.join().unwrap();
    let out = reader.join().unwrap();
    assert_eq!(stats.late_rows, 0);
    let mut all = fast.clone();
    all.extend(slow);
    let (expected, _) = oracle(&all, 1_000, None);
    let counts: u64 = out
        .iter()
        .map(|b| {
            b.column(3)
                .as_primitive::<UInt64Type>()
                .iter()
                .flatten()
                .sum::<u64>()
        })
        .sum();
    assert_eq!(counts, 2_000);
    assert_eq!(stats.result_rows, expected.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Results do not depend on parallelism or batch size, and equal the oracle, for random
    /// inputs with random disorder and bounds (late rows included).
    #[test]
    fn independent_of_parallelism_and_batch_size(
        n in 0usize..3_000,
        keys in 1i64..300,
        step in 0i64..50,
        disorder in 0i64..3_000,
        bound in 0i64..2_000,
        size in 1i64..5_000,
        seed in any::<u64>(),
        p in 1usize..6,
        batch in 1usize..600,
        start in -1_000_000i64..1_000_000,
    ) {
        let rows = gen(n, keys, step, disorder, seed, start);
        let (expected, expected_late) = oracle(&rows, size, Some(bound));
        let (got, late, order) = run(&rows, KeyType::Int, p, batch, size, WatermarkStrategy::BoundedOutOfOrderness(bound));
        prop_assert_eq!(late, expected_late);
        prop_assert_eq!(got, expected);
        prop_assert!(order.windows(2).all(|w| w[0] <= w[1]));
    }
}

#[test]
fn nulls_in_values_and_keys() {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(TimestampMillisecondArray::from(vec![1, 2, 3, 4])),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(1), None])),
            Arc::new(Int64Array::from(vec![Some(5), Some(6), None, None])),
        ],
    )
    .unwrap();
    let spec = Job::builder()
        .key_by(["k"])
        .aggregate([count(), sum("v"), max("v")])
        .build()
        .unwrap();
    let out = weir_engine::aggregate(vec![batch], &spec).unwrap();
    assert_eq!(out.len(), 1);
    let b = &out[0];
    assert_eq!(b.num_rows(), 2);
    let k = b.column(2).as_primitive::<Int64Type>();
    let c = b.column(3).as_primitive::<UInt64Type>();
    let s = b.column(4).as_primitive::<Int64Type>();
    for i in 0..2 {
        if k.is_null(i) {
            assert_eq!((c.value(i), s.value(i)), (2, 6));
        } else {
            assert_eq!((k.value(i), c.value(i), s.value(i)), (1, 2, 5));
        }
    }
}
