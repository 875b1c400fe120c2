//! Ending a run from outside, cleanly: SIGINT / SIGTERM, or a library caller.
//!
//! ```text
//!  SIGINT ─▶ signal thread ─▶ Stop::request ─▶ flag set, `woken()` disconnects
//!                │                                 │
//!                │                pipelines notice it where they can stop cleanly (between
//!                │                chunks, in their waits), stop reading, fire or checkpoint
//!                │                what they hold, and return their summary: exit status 0
//!  SIGINT again ─┴─▶ "exiting at once: <what is dropped>" ─▶ exit status 130 (143 for SIGTERM)
//! ```
//!
//! A [`Stop`] is a flag plus a channel: threads that poll look at [`Stop::is_requested`];
//! threads that block waiting select on [`Stop::woken`], which disconnects when the stop is
//! requested, so they wake at once instead of polling. The signals are delivered by
//! `signal-hook` to a thread of weir's own (the handler itself only writes to a pipe), where
//! printing and exiting are safe. While a run stops, it keeps [`Stop::set_dropping`] up to date
//! with what an immediate exit would lose, which is what the second signal prints.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};

/// A request to end a run cleanly. Cheap to clone; all clones are the same request.
#[derive(Clone, Debug)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    requested: AtomicBool,
    /// The signal that asked for the stop (0: none, or a caller).
    signal: AtomicI32,
    /// Dropped on request, which disconnects `woken`.
    wake: Mutex<Option<Sender<()>>>,
    woken: Receiver<()>,
    /// What exiting at once would lose now.
    dropping: Mutex<String>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    /// A stop not yet requested.
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Self {
            inner: Arc::new(Inner {
                requested: AtomicBool::new(false),
                signal: AtomicI32::new(0),
                wake: Mutex::new(Some(tx)),
                woken: rx,
                dropping: Mutex::new("the results not yet written".into()),
            }),
        }
    }

    /// Asks the run to end cleanly; later calls do nothing.
    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.wake.lock().expect("stop lock").take();
    }

    /// Whether the stop was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// A channel that never receives and disconnects when the stop is requested: select on it
    /// to wake from a blocking wait.
    pub fn woken(&self) -> &Receiver<()> {
        &self.inner.woken
    }

    /// Who asked: `SIGINT`, `SIGTERM`, or "a stop request" (a library caller).
    pub fn cause(&self) -> &'static str {
        signal_name(self.inner.signal.load(Ordering::SeqCst))
    }

    /// Records what exiting at once would lose now (printed by a second signal), e.g. "the
    /// results of the windows still open".
    pub fn set_dropping(&self, what: impl Into<String>) {
        *self.inner.dropping.lock().expect("stop lock") = what.into();
    }

    fn dropping(&self) -> String {
        self.inner.dropping.lock().expect("stop lock").clone()
    }

    /// Makes SIGINT and SIGTERM request this stop: the first prints `weir: SIGINT: <doing>`
    /// and requests it; a second exits the process at once with status 128 + the signal
    /// (130, 143), saying what that drops. Call once, from the binary.
    pub fn on_signals(&self, doing: &str) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let stop = self.clone();
        let doing = doing.to_owned();
        std::thread::Builder::new()
            .name("weir-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let name = signal_name(sig);
                    if !stop.is_requested() {
                        stop.inner.signal.store(sig, Ordering::SeqCst);
                        eprintln!("weir: {name}: {doing} (send it again to exit at once)");
                        stop.request();
                    } else {
                        eprintln!(
                            "weir: {name} again: exiting at once; dropped: {}",
                            stop.dropping()
                        );
                        std::process::exit(128 + sig);
                    }
                }
            })?;
        Ok(())
    }
}

impl weir_io::split::Halt for Stop {
    fn is_requested(&self) -> bool {
        Stop::is_requested(self)
    }

    fn woken(&self) -> &Receiver<()> {
        Stop::woken(self)
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a stop request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_wakes_every_waiter_once_and_for_all() {
        let stop = Stop::new();
        assert!(!stop.is_requested());
        let waiter = {
            let stop = stop.clone();
            std::thread::spawn(move || stop.woken().recv().is_err())
        };
        stop.request();
        assert!(waiter.join().unwrap(), "woken by the disconnection");
        assert!(stop.is_requested());
        stop.request();
        assert!(stop.woken().try_recv().is_err());
        assert_eq!(stop.cause(), "a stop request");
    }
}
