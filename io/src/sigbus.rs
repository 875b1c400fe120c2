//! A log truncated under weir: the SIGBUS guard of mapped inputs.
//!
//! weir maps its input file and parses the mapped bytes in place; that is what lets a replay
//! run at GB/s. If another process truncates the file meanwhile, the pages past its new end are
//! gone, and reading one is not an error that a `read` could return: the kernel sends SIGBUS,
//! whose default action kills the process with no message ("Bus error", status 135), leaving
//! whatever output it was writing.
//!
//! Two ways out were weighed. Reading files with `read()` into buffers instead of mapping them
//! turns truncation into a short read, but copies every byte once more and gives up the
//! zero-copy chunking the parallel parsers rely on (a chunk's end is found by looking past it),
//! on every run, to cover a mistake. weir keeps the mapping and catches the signal instead:
//!
//! ```text
//!   MappedFile::open ──▶ register (start, end, "weir: error: PATH: the file was truncated…")
//!   OutputFile::create ─▶ register DIR/.NAME.weir-tmp-PID for removal
//!
//!   SIGBUS at address a ──▶ a inside a registered mapping?
//!        yes: unlink every registered temporary output, write(2) the mapping's message, _exit(1)
//!        no:  put back the handler that was there before and return: the access faults again
//!             and that handler (Rust's stack-overflow guard, or the default action) takes it
//! ```
//!
//! The handler calls only async-signal-safe functions (`unlink`, `write`, `_exit`, `sigaction`,
//! `raise`) and reads only atomics and data prepared at registration: the message naming the
//! file is formatted when the file is mapped, not when it faults. The registries are fixed
//! arrays of atomic pointers ([`SLOTS`] each; a mapping registered past that still works, it
//! only dies without the message). An entry is freed when it is unregistered unless a handler
//! is running at that moment (then it is leaked: the handler may be reading it): with
//! sequentially consistent counters either the handler sees the slot empty or the unregistering
//! thread sees the handler.
//!
//! The process exits with status 1 (a runtime error), the file named. Its output files are
//! removed, so nothing that looks complete is left; results already written to stdout stay
//! there, cut short. Linux and macOS only; elsewhere a truncated input still kills the process.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};

/// Entries per registry.
pub const SLOTS: usize = 64;

struct Mapping {
    start: usize,
    end: usize,
    message: Box<[u8]>,
}

static MAPPINGS: [AtomicPtr<Mapping>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
static REMOVALS: [AtomicPtr<std::ffi::CString>; SLOTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];
/// Handlers currently running (see the module doc).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Puts `entry` in a free slot of `table`; `None` (and the entry freed) when all are taken.
fn register<T>(table: &'static [AtomicPtr<T>; SLOTS], entry: T) -> Option<usize> {
    install();
    let p = Box::into_raw(Box::new(entry));
    for (i, slot) in table.iter().enumerate() {
        if slot
            .compare_exchange(std::ptr::null_mut(), p, SeqCst, SeqCst)
            .is_ok()
        {
            return Some(i);
        }
    }
    // SAFETY: `p` came from `Box::into_raw` above and was published in no slot.
    drop(unsafe { Box::from_raw(p) });
    None
}

fn unregister<T>(table: &'static [AtomicPtr<T>; SLOTS], slot: usize) {
    let p = table[slot].swap(std::ptr::null_mut(), SeqCst);
    if !p.is_null() && RUNNING.load(SeqCst) == 0 {
        // SAFETY: `p` came from `Box::into_raw` in `register` and is in no slot any more; no
        // handler is running, and one that starts from now on finds the slot empty (both
        // operations are SeqCst: see the module doc), so nothing else can reach it.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// A mapped input watched for truncation; unregistered when dropped (before the unmapping).
#[derive(Debug)]
pub(crate) struct MapGuard(Option<usize>);

impl MapGuard {
    /// Watches `bytes` (a mapping of `path`): a fault inside it ends the process naming `path`.
    pub(crate) fn new(bytes: &[u8], path: &Path) -> Self {
        let start = bytes.as_ptr() as usize;
        let message = format!(
            "weir: error: {}: the file was truncated while weir was reading it (another process \
             shortened or replaced it); the run was stopped and its unfinished output files \
             removed. A log that may change can be replayed through stdin: weir replay - < FILE\n",
            path.display()
        );
        Self(register(
            &MAPPINGS,
            Mapping {
                start,
                end: start + bytes.len(),
                message: message.into_bytes().into_boxed_slice(),
            },
        ))
    }
}

impl Drop for MapGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            unregister(&MAPPINGS, slot);
        }
    }
}

/// A file to remove if the process dies of a truncated input; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct RemoveOnFatal(Option<usize>);

impl RemoveOnFatal {
    /// Registers `path` (made absolute, in case the process changes folder).
    pub(crate) fn new(path: &Path) -> Self {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        #[cfg(unix)]
        let c = {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
        };
        #[cfg(not(unix))]
        let c: Option<std::ffi::CString> = None;
        Self(c.and_then(|c| register(&REMOVALS, c)))
    }
}

impl Drop for RemoveOnFatal {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            unregister(&REMOVALS, slot);
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod handler {
    use super::*;

    /// The SIGBUS action in place before ours, put back for faults that are not ours.
    static PREVIOUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

    pub(super) fn install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: a zeroed `sigaction` is a valid empty action; the fields are then set to a
            // handler of the SA_SIGINFO signature, and `sigemptyset` initialises the mask.
            // `sigaction` reads `new` and writes the old action into `old`, both valid here.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_sigbus as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &new, &mut old) == 0 {
                    let _ = PREVIOUS.set(old);
                }
            }
        });
    }

    #[cfg(target_os = "linux")]
    unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
        // SAFETY: the caller passes the siginfo_t the kernel gave a SA_SIGINFO handler.
        unsafe { (*info).si_addr() as usize }
    }

    #[cfg(target_os = "macos")]
    unsafe fn fault_address(info: *const libc::siginfo_t) -> usize {
        // SAFETY: the caller passes the siginfo_t the kernel gave a SA_SIGINFO handler.
        unsafe { (*info).si_addr as usize }
    }

    extern "C" fn on_sigbus(
        _sig: libc::c_int,
        info: *mut libc::siginfo_t,
        _ctx: *mut libc::c_void,
    ) {
        RUNNING.fetch_add(1, SeqCst);
        // SAFETY: the kernel passes a valid siginfo_t to a SA_SIGINFO handler.
        let (addr, sent) = unsafe { (fault_address(info), (*info).si_code <= 0) };
        if !sent {
            for slot in &MAPPINGS {
                let p = slot.load(SeqCst);
                // SAFETY: a published entry is freed only while no handler runs (module doc),
                // and RUNNING counts this one.
                if let Some(m) = unsafe { p.as_ref() } {
                    if (m.start..m.end).contains(&addr) {
                        fatal(&m.message);
                    }
                }
            }
        }
        // Not a mapped input (or sent by kill): the previous action takes it. The faulting
        // access runs again on return; a sent signal is raised again (it stays blocked until
        // this handler returns).
        if let Some(prev) = PREVIOUS.get() {
            // SAFETY: `prev` is the action `sigaction` returned at installation.
            unsafe { libc::sigaction(libc::SIGBUS, prev, std::ptr::null_mut()) };
        }
        RUNNING.fetch_sub(1, SeqCst);
        if sent {
            // SAFETY: raise is async-signal-safe and takes any signal number.
            unsafe { libc::raise(libc::SIGBUS) };
        }
    }

    /// Removes the registered temporary outputs, prints `message` and exits with status 1.
    fn fatal(message: &[u8]) -> ! {
        for slot in &REMOVALS {
            let p = slot.load(SeqCst);
            // SAFETY: as for mappings: not freed while RUNNING counts this handler.
            if let Some(path) = unsafe { p.as_ref() } {
                // SAFETY: a NUL-terminated path; unlink is async-signal-safe.
                unsafe { libc::unlink(path.as_ptr()) };
            }
        }
        // SAFETY: write and _exit are async-signal-safe; the buffer is valid for its length.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(1)
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
use handler::install;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn install() {}
