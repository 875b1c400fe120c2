//! The broker stops answering in the middle of a transaction and comes back: nothing is lost or
//! doubled.
//!
//! This test's own broker (127.0.0.1:9194, started by `scripts/kafka.sh`) is frozen with SIGSTOP
//! for 5 s while `weir run` is inside a transaction that holds records (sockets stay open, no
//! request is answered, as with a broker that hangs or a network partition), then resumed with
//! SIGCONT. The run rides it out or fails with an error; either way it is restarted until it
//! completes, and what a plain `read_committed` consumer reads must equal the reference count.
//! (A broker killed and restarted is tests/kafka_broker_restart.rs.)

mod common;

use std::time::Duration;

use common::kafka::*;
use common::signal;

/// Resumes the broker even if the test fails while it is frozen.
struct Thaw(u32);
impl Drop for Thaw {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

#[test]
fn a_broker_outage_mid_transaction_neither_loses_nor_doubles() {
    let broker = OwnBroker::start(9194);
    let p = Pipeline::new("outage", "40000", "9", "3");
    p.survive("outage", 3, || {
        let pid = broker.pid();
        signal(pid, "-STOP");
        let _thaw = Thaw(pid);
        // The outage's length, chosen, not a wait for anything: the run meets a broker that
        // answers nothing for 5 s, then one that answers again.
        std::thread::sleep(Duration::from_secs(5));
    });
}
