//! Bounded queues between operators, split by role.
//!
//! A [`Producer`] and a [`Consumer`] wrap the two ends of a bounded crossbeam channel of
//! [`Message`]s. A full queue blocks its producer: that is weir's backpressure, and the time a
//! producer spends blocked is measured (it is the first number to look at when a job is slower
//! than its parser). A send to a queue whose consumer is gone gives the message back in a
//! [`Closed`] error, as tokio's `SendError` does, so the caller decides what it was worth.
//!
//! Both ends share a [`QueueStats`]: the producer's stalls (sends that found the queue full, and
//! the time blocked in them) and the fill the two ends last saw. Metrics read it while the job
//! runs; it costs one relaxed store per message.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::message::Message;

/// Capacity, in messages, of the queues when the caller does not choose one. A message is a batch
/// of a few thousand rows, so this bounds a queue to tens of thousands of rows.
pub const DEFAULT_CAPACITY: usize = 16;

/// Creates a bounded queue of `capacity` messages (at least 1).
pub fn bounded(capacity: usize) -> (Producer, Consumer) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let stats = Arc::new(QueueStats {
        capacity: capacity.max(1),
        ..QueueStats::default()
    });
    (
        Producer {
            tx,
            stats: Arc::clone(&stats),
        },
        Consumer { rx, stats },
    )
}

/// What the two ends of one queue share for observers: read it while the job runs.
#[derive(Debug, Default)]
pub struct QueueStats {
    capacity: usize,
    /// Messages in the queue as last seen by either end (after a send or a receive).
    fill: AtomicUsize,
    full_events: AtomicU64,
    blocked_ns: AtomicU64,
}

impl QueueStats {
    /// The queue's capacity, in messages.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Messages waiting, as last seen by the producer (after a send) or the consumer (after a
    /// receive).
    pub fn fill(&self) -> usize {
        self.fill.load(Ordering::Relaxed)
    }

    /// Sends that found the queue full (producer stalls).
    pub fn full_events(&self) -> u64 {
        self.full_events.load(Ordering::Relaxed)
    }

    /// Time the producer spent blocked on the full queue.
    pub fn blocked(&self) -> Duration {
        Duration::from_nanos(self.blocked_ns.load(Ordering::Relaxed))
    }
}

/// The consumer of a queue went away; the message that could not be delivered is returned.
#[derive(Debug)]
pub struct Closed(pub Message);

/// The sending end of a queue.
#[derive(Debug)]
pub struct Producer {
    tx: Sender<Message>,
    stats: Arc<QueueStats>,
}

impl Producer {
    /// Sends `msg`, blocking while the queue is full.
    pub fn send(&mut self, msg: Message) -> Result<(), Closed> {
        let sent = match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(msg)) => Err(Closed(msg)),
            Err(TrySendError::Full(msg)) => {
                let start = Instant::now();
                let sent = self.tx.send(msg).map_err(|e| Closed(e.0));
                let s = &self.stats;
                s.full_events.fetch_add(1, Ordering::Relaxed);
                s.blocked_ns
                    .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                sent
            }
        };
        self.stats.fill.store(self.tx.len(), Ordering::Relaxed);
        sent
    }

    /// Total time this producer spent blocked on a full queue.
    pub fn blocked(&self) -> Duration {
        self.stats.blocked()
    }

    /// How many sends found the queue full.
    pub fn full_events(&self) -> u64 {
        self.stats.full_events()
    }

    /// The queue's shared counters.
    pub fn stats(&self) -> &Arc<QueueStats> {
        &self.stats
    }
}

/// The receiving end of a queue.
#[derive(Debug)]
pub struct Consumer {
    rx: Receiver<Message>,
    stats: Arc<QueueStats>,
}

impl Consumer {
    /// The underlying receiver, for `crossbeam_channel::Select` over several queues.
    pub fn receiver(&self) -> &Receiver<Message> {
        &self.rx
    }

    /// Receives the next message, blocking; `None` when every producer is gone.
    pub fn recv(&self) -> Option<Message> {
        let m = self.rx.recv().ok();
        self.received();
        m
    }

    /// Notes the queue's fill after a message was taken through [`Consumer::receiver`].
    pub fn received(&self) {
        self.stats.fill.store(self.rx.len(), Ordering::Relaxed);
    }

    /// The queue's shared counters.
    pub fn stats(&self) -> &Arc<QueueStats> {
        &self.stats
    }
}
