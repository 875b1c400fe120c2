//! How long a worker stops at a checkpoint barrier, by state size. One worker holds one open
//! window of `keys` distinct u32 keys (`count()` and their key interner); 200 barriers are
//! injected, each after a batch that touches every page (so each snapshot finds the previous one
//! already copied out: the steady state of a running job). Reports the pause distribution from
//! the workers' own measurement (`WorkerSnapshot::pause`), the size of the encoded state, and how
//! fast the last snapshot is written as a real checkpoint (MiB/s, fsyncs included).
//!
//! ```text
//! cargo run --release -p weir-bench --bin barrier_pause -- [KEYS,...]
//! ```

use std::time::Duration;

use weir_bench::{key_batches, key_schema};
use weir_engine::{count, Job, SinkError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let keys: Vec<u32> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "1000,100000,1000000".into())
        .split(',')
        .map(|k| k.parse().expect("KEYS"))
        .collect();
    println!("barrier pause: one worker, one open window, count() per u32 key, 200 barriers");
    let mut base = None;
    for k in keys {
        // Rows cover every key once (the window then holds k groups), all in one window.
        let fill = key_batches(k as usize * 3, k, u64::MAX / 4, 8192, 3);
        let touch = key_batches(8192, k, u64::MAX / 4, 8192, 4);
        let spec = Job::builder()
            .key_by(["key"])
            .tumbling(Duration::from_secs(3600))
            .aggregate([count()])
            .checkpoints(true)
            .build()
            .expect("valid job");
        let sink = |_b: arrow_array::RecordBatch| -> Result<(), SinkError> { Ok(()) };
        let mut job = spec
            .start_with_sink(key_schema(), Box::new(sink))
            .expect("start");
        let rx = job.take_snapshots().expect("built with checkpoints");
        let mut input = job.input().expect("one input");
        for b in &fill {
            input.push(b.clone()).expect("push");
        }
        let mut encoded = 0;
        let mut pauses = Vec::new();
        let mut last = None;
        for epoch in 1..=200 {
            input.push(touch[0].clone()).expect("push");
            input.barrier(epoch).expect("barrier");
            let s = rx.recv().expect("a snapshot per barrier");
            pauses.push(s.pause);
            encoded = s.encoded_len();
            last = Some(s);
        }
        // Checkpoint write throughput: the last snapshot written as a real checkpoint (state
        // file through a writable mmap, msync, fsync; manifest commit with fsyncs).
        let dir = std::env::temp_dir().join(format!("weir-barrier-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ckdir = weir_engine::checkpoint::CheckpointDir::open(&dir).expect("checkpoint dir");
        let snap = last.expect("200 snapshots");
        let identity = weir_engine::checkpoint::JobIdentity {
            input: "bench".into(),
            window_ms: 3_600_000,
            keys: vec!["key".into()],
            aggregates: vec!["count(*)".into()],
            parallelism: 1,
            key_groups: 128,
            input_file: None,
        };
        let t = std::time::Instant::now();
        let mut pending = ckdir.begin(1).expect("begin");
        pending
            .write_state(0, snap.encoded_len() as u64, |buf| snap.encode(buf))
            .expect("write state");
        pending
            .commit(&identity, serde_json::Value::Null, serde_json::Value::Null)
            .expect("commit");
        let write = t.elapsed();
        drop(ckdir);
        let _ = std::fs::remove_dir_all(&dir);
        input.finish().expect("finish");
        job.join().expect("run");
        pauses.sort();
        let q = |f: f64| pauses[((pauses.len() - 1) as f64 * f) as usize];
        let p99 = q(0.99);
        let ratio = base.map_or(1.0, |b: Duration| p99.as_secs_f64() / b.as_secs_f64());
        base.get_or_insert(p99);
        let mib = encoded as f64 / (1 << 20) as f64;
        println!(
            "{k:>9} keys: pause p50 {:>8.1} µs, p99 {:>8.1} µs, max {:>8.1} µs ({ratio:.2}x the first p99); state {mib:.1} MiB, checkpoint written in {:.1} ms ({:.0} MiB/s)",
            q(0.5).as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            pauses[pauses.len() - 1].as_secs_f64() * 1e6,
            write.as_secs_f64() * 1e3,
            mib / write.as_secs_f64(),
        );
    }
}
