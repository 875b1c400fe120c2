//! Bounded queues between operators, split by role.
//!
//! A [`Producer`] and a [`Consumer`] wrap the two ends of a bounded crossbeam channel of
//! [`Message`]s. A full queue blocks its producer: that is weir's backpressure, and the time a
//! producer spends blocked is measured (it is the first number to look at when a job is slower
//! than its parser). A send to a queue whose consumer is gone gives the message back in a
//! [`Closed`] error, as tokio's `SendError` does, so the caller decides what it was worth.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::message::Message;

/// Capacity, in messages, of the queues when the caller does not choose one. A message is a batch
/// of a few thousand rows, so this bounds a queue to tens of thousands of rows.
pub const DEFAULT_CAPACITY: usize = 16;

/// Creates a bounded queue of `capacity` messages (at least 1).
pub fn bounded(capacity: usize) -> (Producer, Consumer) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    (
        Producer {
            tx,
            blocked: Duration::ZERO,
            full_events: 0,
        },
        Consumer { rx },
    )
}

/// The consumer of a queue went away; the message that could not be delivered is returned.
#[derive(Debug)]
pub struct Closed(pub Message);

/// The sending end of a queue.
#[derive(Debug)]
pub struct Producer {
    tx: Sender<Message>,
    blocked: Duration,
    full_events: u64,
}

impl Producer {
    /// Sends `msg`, blocking while the queue is full.
    pub fn send(&mut self, msg: Message) -> Result<(), Closed> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(msg)) => Err(Closed(msg)),
            Err(TrySendError::Full(msg)) => {
                self.full_events += 1;
                let start = Instant::now();
                let sent = self.tx.send(msg).map_err(|e| Closed(e.0));
                self.blocked += start.elapsed();
                sent
            }
        }
    }

    /// Total time this producer spent blocked on a full queue.
    pub fn blocked(&self) -> Duration {
        self.blocked
    }

    /// How many sends found the queue full.
    pub fn full_events(&self) -> u64 {
        self.full_events
    }
}

/// The receiving end of a queue.
#[derive(Debug)]
pub struct Consumer {
    rx: Receiver<Message>,
}

impl Consumer {
    /// The underlying receiver, for `crossbeam_channel::Select` over several queues.
    pub fn receiver(&self) -> &Receiver<Message> {
        &self.rx
    }

    /// Receives the next message, blocking; `None` when every producer is gone.
    pub fn recv(&self) -> Option<Message> {
        self.rx.recv().ok()
    }
}
