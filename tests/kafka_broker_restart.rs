//! The broker is killed (SIGKILL) in the middle of a transaction and restarted on its log dirs:
//! nothing is lost or doubled.
//!
//! This test's own broker (127.0.0.1:9192, started by `scripts/kafka.sh`) is killed while
//! `weir run` is inside a transaction that holds records (sent, not yet committed), then
//! `scripts/kafka.sh restart` brings it back on the same log dirs: topics, records, committed
//! offsets and the transaction's state. The run rides it out or stops with an error; it is run
//! again until it completes, and what a plain `read_committed` consumer reads must equal the
//! reference count, with `weir verify` agreeing.

mod common;

use std::time::Instant;

use common::kafka::*;

#[test]
fn a_broker_killed_mid_transaction_and_restarted_neither_loses_nor_doubles() {
    let broker = OwnBroker::start(9192);
    let p = Pipeline::new("restart", "60000", "9", "3");
    p.survive("kill and restart", 3, || {
        let before = broker.pid();
        broker.signal("-KILL");
        let restart = Instant::now();
        broker.sh("restart");
        assert_ne!(broker.pid(), before, "the broker was not restarted");
        eprintln!(
            "the broker was back {:.1} s after SIGKILL",
            restart.elapsed().as_secs_f64()
        );
    });
}
