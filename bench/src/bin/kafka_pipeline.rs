//! Kafka → Kafka on the local Apache Kafka broker (`scripts/kafka.sh start`, or `WEIR_KAFKA`):
//!
//! 1. throughput of a bounded `weir run` (`stop_at_end`, `-p 2`, 1 s checkpoints) with
//!    exactly-once delivery, against at-least-once and against **the limit** (a plain
//!    consumer): the pieces of `weir::bench::kafka`, which `weir bench --kafka HOST:PORT` runs
//!    too (that is the one to use for throughput alone), printed here with CPU times.
//! 2. peak memory: one more exactly-once run in a child process (this binary again), its peak
//!    resident set (VmHWM) read from /proc; and the broker's VmHWM since it started.
//! 3. end-to-end latency: lines produced live with the current time as event time, an unbounded
//!    exactly-once run, and a `read_committed` reader of the output noting when each window's
//!    first result becomes visible. Latency = that moment − the window's end (the arrival of its
//!    last possible line); p50 and p99 over every window, with 1 s and 200 ms checkpoints. The
//!    latency runs use 1 s windows, to measure five times as many windows per minute: a window's
//!    size does not enter its latency (watermark past its end, then the next checkpoint's commit).
//!
//! `kafka_pipeline [LINES] [ROUNDS] [LIVE_SECS]` (defaults 1000000, 3, 120: LIVE_SECS of live
//! lines per latency run, about LIVE_SECS - 2 windows measured).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir::bench::kafka::{bounded, now_ms, read_to_end, unique, url};
use weir::io::kafka::load::load_lines;
use weir::io::kafka::txn::Delivery;
use weir::io::kafka::{client_config, ensure_topic, KafkaUrl};
use weir::io::{generate, GenOptions};
use weir::kafka_run::source::Source;
use weir::kafka_run::{run, KafkaRunConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let broker = std::env::var("WEIR_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    if args.peek().is_some_and(|a| a == RSS_CHILD) {
        // The child of `peak_rss`: one bounded exactly-once run of INPUT in DIR, named ID.
        let input: KafkaUrl = args.nth(1).expect("INPUT").parse().expect("INPUT");
        let (dir, id) = (args.next().expect("DIR"), args.next().expect("ID"));
        let cfg = bounded(&broker, &input, dir.as_ref(), &id, Delivery::ExactlyOnce, 2);
        let s = run(&cfg, &|_| {}).unwrap();
        println!("{}", s.parse.lines);
        return;
    }
    let lines: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("LINES"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let live = Duration::from_secs(args.next().map_or(120, |a| a.parse().expect("LIVE_SECS")));
    let tag = unique();
    let tmp = std::env::temp_dir().join(format!("weir-kafka-bench-{tag}"));
    std::fs::create_dir_all(&tmp).unwrap();

    // The input: a generated log loaded once into a 4-partition topic.
    let log = tmp.join("access.log");
    let opts = GenOptions {
        lines,
        clients: 100_000,
        rate: 20_000.0,
        seed: 7,
        ..GenOptions::default()
    };
    generate(&opts, &mut std::fs::File::create(&log).unwrap()).unwrap();
    let input = url(&broker, &format!("bench-in-{tag}"));
    let t = Instant::now();
    let reader = std::io::BufReader::new(std::fs::File::open(&log).unwrap());
    load_lines(reader, &input, 4, None, &|e| weir::io::Error::io(&log, e)).unwrap();
    println!(
        "loaded {lines} lines into {input} in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let broker_pid = broker_pid();
    for round in 0..rounds {
        let cpu = Cpu::now(broker_pid.as_deref());
        let secs = read_to_end(&input, lines).unwrap().as_secs_f64();
        println!(
            "round {round} {:>13}: {secs:.2} s, {:.0} lines/s; {}",
            "limit",
            lines as f64 / secs,
            cpu.since()
        );
        times.entry("limit").or_default().push(secs);
        for (name, delivery) in [
            ("exactly-once", Delivery::ExactlyOnce),
            ("at-least-once", Delivery::AtLeastOnce),
        ] {
            let id = format!("{tag}-{round}-{name}");
            let cfg = bounded(&broker, &input, &tmp, &id, delivery, 2);
            let cpu = Cpu::now(broker_pid.as_deref());
            let s = run(&cfg, &|_| {}).unwrap();
            assert_eq!(s.parse.lines, lines, "{name}: every line read");
            let secs = s.elapsed.as_secs_f64();
            println!(
                "round {round} {name:>13}: {secs:.2} s, {:.0} lines/s, {} records, {} commits; {}",
                lines as f64 / secs,
                s.records,
                s.commits,
                cpu.since()
            );
            times.entry(name).or_default().push(secs);
        }
    }
    let mut median = |name: &str| {
        let v = times.get_mut(name).unwrap();
        v.sort_by(f64::total_cmp);
        lines as f64 / v[v.len() / 2]
    };
    let (limit, eo, alo) = (
        median("limit"),
        median("exactly-once"),
        median("at-least-once"),
    );
    println!(
        "throughput (median of {rounds}): limit {limit:.0} lines/s, exactly-once {eo:.0} lines/s \
         ({:.2}x the limit), at-least-once {alo:.0} lines/s (exactly-once {:.2}x at-least-once)",
        eo / limit,
        eo / alo
    );

    peak_rss(&input, &tmp, &format!("{tag}-rss"));

    for interval in [Duration::from_secs(1), Duration::from_millis(200)] {
        latency(&broker, &tmp, interval, live);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The argument that makes this binary the child of [`peak_rss`].
const RSS_CHILD: &str = "--rss-child";

/// Peak resident memory of one bounded exactly-once run in a child process, and of the broker
/// since it started (its pid from `scripts/kafka.sh`'s run folder).
fn peak_rss(input: &KafkaUrl, dir: &std::path::Path, id: &str) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg(RSS_CHILD)
        .arg(input.to_string())
        .arg(dir)
        .arg(id)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        peak = peak.max(vm_hwm_kib(&status).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "the measured run failed: {exit}");
    println!(
        "peak RSS (VmHWM): one exactly-once run in its own process {} MiB",
        peak / 1024
    );
    let broker = broker_pid().and_then(|pid| vm_hwm_kib(&format!("/proc/{pid}/status")));
    match broker {
        Some(kib) => println!(
            "peak RSS (VmHWM): the broker since it started {} MiB",
            kib / 1024
        ),
        None => println!("peak RSS of the broker: unknown (not started by scripts/kafka.sh)"),
    }
}

/// The pid of the broker `scripts/kafka.sh` started, if it runs here.
fn broker_pid() -> Option<String> {
    let cache = std::env::var("WEIR_CACHE_DIR").map_or_else(
        |_| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/weir"),
        std::path::PathBuf::from,
    );
    let pid = std::fs::read_to_string(cache.join("run/broker.pid")).ok()?;
    let pid = pid.trim().to_owned();
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// CPU time (user + system) of this process and of the broker at a moment, to say where a
/// run's CPU went: the two share this machine's cores.
struct Cpu {
    me: f64,
    broker: Option<(String, f64)>,
}

impl Cpu {
    fn now(broker: Option<&str>) -> Self {
        Cpu {
            me: cpu_secs("self").unwrap_or(0.0),
            broker: broker.and_then(|pid| Some((pid.to_owned(), cpu_secs(pid)?))),
        }
    }

    /// "cpu: this process X s, broker Y s" since [`Cpu::now`].
    fn since(&self) -> String {
        let me = cpu_secs("self").unwrap_or(0.0) - self.me;
        match &self.broker {
            Some((pid, b)) => format!(
                "cpu: weir {me:.2} s, broker {:.2} s",
                cpu_secs(pid).unwrap_or(*b) - b
            ),
            None => format!("cpu: weir {me:.2} s"),
        }
    }
}

/// utime + stime of `/proc/PID/stat`, in seconds (clock ticks of 1/100 s, as on Linux x86).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The `VmHWM` (peak resident set) line of a `/proc/PID/status` file, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Live lines in, unbounded exactly-once run, window visibility out.
fn latency(broker: &str, tmp: &std::path::Path, interval: Duration, live: Duration) {
    let id = format!("bench-lat-{}", unique());
    let input = url(broker, &format!("{id}-in"));
    let output = url(broker, &format!("{id}-out"));
    ensure_topic(&input, 1).unwrap();
    ensure_topic(&output, 1).unwrap();
    let mut cfg = KafkaRunConfig::new(Source::Kafka(input.clone()), output.clone(), tmp.join(&id));
    cfg.group = id.clone();
    cfg.transactional_id = id;
    cfg.interval = interval;
    cfg.job.parallelism = 2;
    cfg.job.window = Duration::from_secs(1);
    let stop = Arc::new(AtomicBool::new(false));
    cfg.stop = Some(stop.clone());
    let job = std::thread::spawn(move || run(&cfg, &|_| {}).unwrap());

    // The reader of committed results: first visibility of each window.
    let seen_stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let output = output.clone();
        let stop = seen_stop.clone();
        std::thread::spawn(move || {
            let c: BaseConsumer = client_config(&output.brokers)
                .set("group.id", "weir-bench-latency")
                .set("isolation.level", "read_committed")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&output.topic, 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let mut first: BTreeMap<i64, i64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                    let v: serde_json::Value =
                        serde_json::from_slice(m.payload().unwrap()).unwrap();
                    let end = v["window_end"].as_i64().unwrap();
                    first.entry(end).or_insert_with(now_ms);
                }
            }
            first
        })
    };

    // Live lines: every 10 ms, 100 lines stamped now (10,000 lines/s) for `live`.
    let producer: BaseProducer = client_config(&input.brokers)
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < live {
        let opts = GenOptions {
            lines: 100,
            clients: 1000,
            rate: 1e6,
            seed: seq,
            start_ms: now_ms(),
            ..GenOptions::default()
        };
        let mut buf = Vec::new();
        generate(&opts, &mut buf).unwrap();
        for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            producer
                .send(BaseRecord::<(), [u8]>::to(&input.topic).payload(line))
                .unwrap();
        }
        producer.poll(Duration::ZERO);
        seq += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let _ = job.join();
    seen_stop.store(true, Ordering::Relaxed);
    let first = reader.join().unwrap();
    // Windows that closed while lines were flowing (not the first, partial one, nor the last,
    // fired by the stop).
    let mut lat: Vec<i64> = first
        .iter()
        .skip(1)
        .take(first.len().saturating_sub(2))
        .map(|(end, seen)| seen - end)
        .collect();
    lat.sort_unstable();
    if lat.is_empty() {
        println!("latency, interval {interval:?}: no window closed");
        return;
    }
    let pct = |p: usize| lat[(lat.len() * p).div_ceil(100).max(1) - 1];
    println!(
        "latency from window end to committed result, checkpoint interval {interval:?}: p50 {} ms, p99 {} ms, max {} ms over {} windows",
        pct(50),
        pct(99),
        lat[lat.len() - 1],
        lat.len()
    );
}
