//! Backpressure, failure and shutdown: a slow consumer throttles producers, and a panicking
//! worker ends the run with an error instead of a hang.
//!
//! Tests wait for events (a channel message, a full results channel and a producer thread the
//! kernel reports asleep), never for a fixed time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_engine::{count, AggregateExpr, AggregateFunction, EngineError, GroupsAccumulator, Job};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("k", DataType::Int64, false),
    ]))
}

/// A batch of `n` rows, all in the window starting at `window * 1000`.
fn batch(window: i64, n: usize) -> RecordBatch {
    let ts: Vec<i64> = (0..n as i64).map(|i| window * 1_000 + i % 1_000).collect();
    let k: Vec<i64> = (0..n as i64).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(TimestampMillisecondArray::from(ts)) as ArrayRef,
            Arc::new(Int64Array::from(k)),
        ],
    )
    .unwrap()
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("the run hung")
}

/// The producer thread's name, by which [`wait_for_stall`] finds it in `/proc/self/task`.
const PRODUCER: &str = "weir-producer";

/// The scheduler state (`R`, `S`, `D`, …) of this process's thread named [`PRODUCER`], from
/// `/proc/self/task/TID/stat`; `None` if there is no such thread.
fn producer_state() -> Option<char> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != PRODUCER {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // `pid (comm) S …`: the state follows the last parenthesis.
        return stat.rsplit_once(')')?.1.trim_start().chars().next();
    }
    None
}

/// Waits (at most 60 s) until `full()` holds and the producer thread is asleep with `pushed`
/// unchanged over five looks 10 ms apart: it is blocked in `push`, not between two pushes.
/// Returns the count it stalled at.
fn wait_for_stall(pushed: &AtomicU64, full: impl Fn() -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut still) = (u64::MAX, 0);
    loop {
        let now = pushed.load(Ordering::SeqCst);
        if full() && producer_state() == Some('S') && now == last {
            still += 1;
            if still == 5 {
                return now;
            }
        } else {
            still = 0;
        }
        last = now;
        assert!(
            Instant::now() < deadline,
            "the producer never stalled: pushed {now} of 500, state {:?}, results full {}",
            producer_state(),
            full()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "tells a blocked producer thread by its state in /proc/self/task"
)]
fn a_slow_consumer_throttles_the_producer() {
    let spec = Job::builder()
        .parallelism(2)
        .key_by(["k"])
        .tumbling(Duration::from_secs(1))
        .aggregate([count()])
        .queue_capacity(2)
        .results_capacity(2)
        .pin_workers(false)
        .build()
        .unwrap();
    let mut job = spec.start(schema()).unwrap();
    let results = job.take_results().unwrap();
    let mut input = job.input().unwrap();
    let pushed = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&pushed);
    // Every batch is a new window, so every batch makes results; nobody reads them yet.
    let producer = std::thread::Builder::new()
        .name(PRODUCER.into())
        .spawn(move || {
            for w in 0..500 {
                input.push(batch(w, 200)).unwrap();
                progress.fetch_add(1, Ordering::SeqCst);
            }
            input.finish().unwrap();
        })
        .unwrap();
    // The event: the results channel is full and the producer thread sleeps (blocked in
    // `push`) with its count unchanged over a few looks.
    let stalled_at = wait_for_stall(&pushed, || results.is_full());
    // Queues of 2 batches between each stage bound what can be in flight: far fewer than 500.
    assert!(
        stalled_at < 60,
        "the producer was not throttled: pushed {stalled_at} of 500"
    );
    // Not a wait for anything: while nobody reads, no push may complete, however long we look.
    // (It also makes the producer's blocked time, checked below, at least this long.)
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pushed.load(Ordering::SeqCst) - stalled_at <= 1,
        "the producer kept going"
    );

    let received = within(Duration::from_secs(60), move || {
        results.iter().map(|b| b.num_rows()).sum::<usize>()
    });
    producer.join().unwrap();
    let stats = job.join().unwrap();
    assert_eq!(received, 500 * 200);
    assert!(
        stats.input_blocked > Duration::from_millis(100),
        "{:?}",
        stats.input_blocked
    );
    assert!(stats.input_full_events > 0);
}

#[derive(Debug)]
struct Explode;
struct ExplodeAcc;

impl AggregateFunction for Explode {
    fn name(&self) -> &str {
        "explode"
    }
    fn takes_input(&self) -> bool {
        false
    }
    fn return_type(&self, _: Option<&DataType>) -> Result<DataType, String> {
        Ok(DataType::UInt64)
    }
    fn accumulator(&self, _: Option<&DataType>) -> Box<dyn GroupsAccumulator> {
        Box::new(ExplodeAcc)
    }
}

impl GroupsAccumulator for ExplodeAcc {
    fn update(&mut self, _: Option<&ArrayRef>, _: Option<&[u32]>, groups: &[u32], _: usize) {
        if groups.len() > 100 {
            panic!("boom: a big batch");
        }
    }
    fn evaluate(&mut self) -> ArrayRef {
        unreachable!()
    }
    fn size(&self) -> usize {
        0
    }
}

#[test]
fn a_panicking_worker_ends_the_run_with_an_error() {
    let outcome = within(Duration::from_secs(30), || {
        let spec = Job::builder()
            .parallelism(2)
            .key_by(["k"])
            .aggregate([count(), AggregateExpr::new(Arc::new(Explode), None)])
            .queue_capacity(1)
            .pin_workers(false)
            .build()
            .unwrap();
        let mut job = spec.start(schema()).unwrap();
        let results = job.take_results().unwrap();
        std::thread::spawn(move || results.iter().count());
        let mut input = job.input().unwrap();
        let mut push_err = None;
        for w in 0..10_000 {
            if let Err(e) = input.push(batch(w, 1000)) {
                push_err = Some(e);
                break;
            }
        }
        drop(input);
        (push_err, job.join())
    });
    let (push_err, joined) = outcome;
    assert!(
        matches!(push_err, Some(EngineError::Closed)),
        "{push_err:?}"
    );
    match joined {
        Err(EngineError::WorkerPanicked { message, .. }) => {
            assert!(message.contains("boom"), "{message}")
        }
        other => panic!("expected a worker panic, got {other:?}"),
    }
}

#[test]
fn dropping_an_input_without_finish_fails_the_run() {
    let spec = Job::builder()
        .key_by(["k"])
        .aggregate([count()])
        .build()
        .unwrap();
    let mut job = spec.start(schema()).unwrap();
    let results = job.take_results().unwrap();
    std::thread::spawn(move || results.iter().count());
    let mut input = job.input().unwrap();
    input.push(batch(0, 10)).unwrap();
    drop(input);
    let err = within(Duration::from_secs(30), move || job.join()).unwrap_err();
    assert!(err.to_string().contains("without finish"), "{err}");
}

/// The sink fails; then whatever fed the job stops and drops its input unfinished (as weir's
/// Kafka readers do when told another part failed). The job's error must be the sink's, not
/// the dropped input that only echoes it.
#[test]
fn a_failing_sink_is_the_error_even_when_the_input_is_then_dropped() {
    let spec = Job::builder()
        .key_by(["k"])
        .tumbling(Duration::from_secs(1))
        .aggregate([count()])
        .pin_workers(false)
        .build()
        .unwrap();
    let (failed_tx, failed_rx) = mpsc::channel();
    let sink = move |_: RecordBatch| -> Result<(), weir_engine::SinkError> {
        let _ = failed_tx.send(());
        Err("the broker said no".into())
    };
    let mut job = spec.start_with_sink(schema(), Box::new(sink)).unwrap();
    let mut input = job.input().unwrap();
    input.push(batch(0, 10)).unwrap();
    input.push(batch(5, 10)).unwrap(); // the watermark passes window 0: it fires
    failed_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the window never reached the sink");
    drop(input);
    let err = within(Duration::from_secs(30), move || job.join()).unwrap_err();
    assert!(
        matches!(err, EngineError::Sink(_)) && err.to_string().contains("the broker said no"),
        "{err}"
    );
}

#[test]
fn an_idle_input_stops_holding_windows_back() {
    let spec = Job::builder()
        .inputs(2)
        .key_by(["k"])
        .tumbling(Duration::from_secs(1))
        .aggregate([count()])
        .idle_timeout(Duration::from_millis(50))
        .pin_workers(false)
        .build()
        .unwrap();
    let mut job = spec.start(schema()).unwrap();
    let results = job.take_results().unwrap();
    let mut inputs = job.take_inputs();
    let silent = inputs.pop().unwrap();
    let mut busy = inputs.pop().unwrap();
    // Windows 0 and 1; the row in window 1 moves the busy input's watermark past window 0.
    busy.push(batch(0, 10)).unwrap();
    busy.push(batch(1, 10)).unwrap();
    // The silent input has sent nothing: without the idle timeout window 0 would wait for it
    // forever. With it, window 0 fires while both inputs are still open.
    let first = results
        .recv_timeout(Duration::from_secs(10))
        .expect("window 0 fired although one input is idle");
    assert_eq!(first.num_rows(), 10);
    busy.finish().unwrap();
    silent.finish().unwrap();
    assert_eq!(results.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    job.join().unwrap();
}
