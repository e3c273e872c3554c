//! Lease break signals read from a `signalfd` instead of a signal handler.
//!
//! The second module of the crate allowed `unsafe` (see `src/lib.rs`): `pthread_sigmask` and
//! `signalfd` take `sigset_t` pointers and no safe crate wraps them. The records read from the
//! signalfd are decoded from bytes (the fixed 128-byte `struct signalfd_siginfo` ABI), without
//! `unsafe`.
//!
//! The bridge blocks its signals in the main thread before anything else runs (blocked signals
//! are inherited by every thread started later), so they are only ever consumed through the
//! signalfd in its poll loop: no handler, no async-signal-safety to get wrong.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// The realtime signal the bridge asks the kernel to send on a lease break (`F_SETSIG`).
/// Not SIGRTMIN+1, which smbd uses for its own kernel oplocks; the bridge is its own process,
/// but keeping the numbers apart keeps `/proc/<pid>/status` and traces unambiguous.
pub fn lease_break_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

/// A set of signals (`sigset_t`).
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    pub fn new(signals: &[i32]) -> io::Result<SignalSet> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the whole sigset_t it is pointed at.
        if unsafe { libc::sigemptyset(set.as_mut_ptr()) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialised by sigemptyset just above.
        let mut set = unsafe { set.assume_init() };
        for &signo in signals {
            // SAFETY: `set` is an initialised sigset_t we own; sigaddset checks `signo`.
            if unsafe { libc::sigaddset(&mut set, signo) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(SignalSet(set))
    }

    /// Blocks these signals in the calling thread (and so in every thread it starts later).
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: `self.0` is an initialised sigset_t; a null old-set pointer is allowed.
        let error =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if error != 0 {
            return Err(io::Error::from_raw_os_error(error));
        }
        Ok(())
    }

    /// A non-blocking, close-on-exec signalfd for these signals (which must be blocked).
    pub fn signalfd(&self) -> io::Result<OwnedFd> {
        // SAFETY: -1 asks for a new descriptor; `self.0` is an initialised sigset_t read only
        // during the call.
        let fd = unsafe { libc::signalfd(-1, &self.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The fields of one `struct signalfd_siginfo` the bridge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    pub code: i32,
    /// `ssi_fd`: for a lease break signal set with F_SETSIG, the descriptor the lease was
    /// taken through. Meaningless for other signals.
    pub fd: i32,
}

/// `sizeof(struct signalfd_siginfo)`, fixed by the kernel ABI.
const SIGINFO_LEN: usize = 128;

impl SignalInfo {
    /// Decodes one record: `ssi_signo` (u32) at 0, `ssi_errno` at 4, `ssi_code` at 8,
    /// `ssi_pid` at 12, `ssi_uid` at 16, `ssi_fd` (i32) at 20.
    fn from_bytes(record: &[u8; SIGINFO_LEN]) -> SignalInfo {
        let field = |at: usize| {
            i32::from_ne_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
        };
        SignalInfo {
            signo: field(0),
            code: field(8),
            fd: field(20),
        }
    }
}

/// Reads every signal pending on a non-blocking signalfd (an empty list when none is).
pub fn read_signals(signalfd: impl AsFd) -> io::Result<Vec<SignalInfo>> {
    const _: () = assert!(std::mem::size_of::<libc::signalfd_siginfo>() == SIGINFO_LEN);
    let mut signals = Vec::new();
    let mut buffer = [0u8; SIGINFO_LEN * 32];
    loop {
        let read = match rustix::io::read(signalfd.as_fd(), &mut buffer) {
            Ok(read) => read,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        };
        for record in buffer[..read].chunks_exact(SIGINFO_LEN) {
            let record: &[u8; SIGINFO_LEN] = record.try_into().expect("chunks of SIGINFO_LEN");
            signals.push(SignalInfo::from_bytes(record));
        }
        if read < buffer.len() {
            break;
        }
    }
    Ok(signals)
}
