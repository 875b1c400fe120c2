//! Kafka → Kafka on the local broker (`scripts/kafka.sh start`, or `WEIR_KAFKA`):
//!
//! 1. throughput of a bounded `weir run` (`stop_at_end`) with exactly-once delivery against
//!    at-least-once (same job, same checkpoints, no transactions), alternating in one process so
//!    both see the same machine; each run gets a fresh output topic, group and checkpoint folder.
//! 2. end-to-end latency: lines produced live with the current time as event time, an unbounded
//!    exactly-once run, and a `read_committed` reader of the output noting when each window's
//!    first result becomes visible. Latency = that moment − the window's end (the arrival of its
//!    last possible line).
//!
//! `kafka_pipeline [LINES] [ROUNDS] [LIVE_SECS]` (defaults 1000000, 3, 60: LIVE_SECS of live
//! lines per latency run, i.e. about LIVE_SECS / 5 - 1 windows measured).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weir::io::kafka::load::load_lines;
use weir::io::kafka::txn::Delivery;
use weir::io::kafka::{client_config, ensure_topic, KafkaUrl};
use weir::io::{generate, GenOptions};
use weir::kafka_run::source::Source;
use weir::kafka_run::{run, KafkaRunConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("LINES"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let live = Duration::from_secs(args.next().map_or(60, |a| a.parse().expect("LIVE_SECS")));
    let broker = std::env::var("WEIR_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
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
    load_lines(reader, &input, 4, &|e| weir::io::Error::io(&log, e)).unwrap();
    println!(
        "loaded {lines} lines into {input} in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for (name, delivery) in [
            ("exactly-once", Delivery::ExactlyOnce),
            ("at-least-once", Delivery::AtLeastOnce),
        ] {
            let id = format!("bench-{tag}-{round}-{name}");
            let mut cfg = KafkaRunConfig::new(
                Source::Kafka(input.clone()),
                url(&broker, &format!("{id}-out")),
                tmp.join(&id),
            );
            cfg.group = id.clone();
            cfg.transactional_id = id;
            cfg.delivery = delivery;
            cfg.stop_at_end = true;
            cfg.job.parallelism = 2;
            cfg.interval = Duration::from_secs(1);
            let s = run(&cfg, &|_| {}).unwrap();
            assert_eq!(s.parse.lines, lines, "{name}: every line read");
            let secs = s.elapsed.as_secs_f64();
            println!(
                "round {round} {name:>13}: {secs:.2} s, {:.0} lines/s, {} records, {} commits",
                lines as f64 / secs,
                s.records,
                s.commits
            );
            times.entry(name).or_default().push(secs);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let eo = median(times.get_mut("exactly-once").unwrap());
    let alo = median(times.get_mut("at-least-once").unwrap());
    println!(
        "throughput (median of {rounds}): exactly-once {:.0} lines/s, at-least-once {:.0} lines/s, ratio {:.2}",
        lines as f64 / eo,
        lines as f64 / alo,
        eo / alo
    );

    for interval in [Duration::from_secs(1), Duration::from_millis(200)] {
        latency(&broker, &tmp, interval, live);
    }
    let _ = std::fs::remove_dir_all(&tmp);
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
    println!(
        "latency from window end to committed result, checkpoint interval {interval:?}: median {} ms, p90 {} ms, max {} ms over {} windows",
        lat[lat.len() / 2],
        lat[lat.len() * 9 / 10],
        lat[lat.len() - 1],
        lat.len()
    );
}

fn url(broker: &str, topic: &str) -> KafkaUrl {
    KafkaUrl {
        brokers: broker.to_owned(),
        topic: topic.to_owned(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn unique() -> String {
    format!("{}-{}", std::process::id(), now_ms())
}
