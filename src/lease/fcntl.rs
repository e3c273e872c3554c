//! The kernel lease calls: `fcntl(F_SETLEASE, F_GETLEASE, F_SETSIG, F_SETOWN, F_SETDELEG)`.
//!
//! This is one of the two modules of the crate allowed `unsafe` (`src/lib.rs` denies it
//! everywhere else): no safe syscall crate wraps these commands (rustix 1.1.6, nix 0.32 and
//! uapi 0.2.14 were checked), so each is one `libc::fcntl` call with an integer argument (or,
//! for `F_SETDELEG`, a pointer to an 8-byte struct on our stack). Every function borrows the
//! descriptor, so it is open for the whole call; none keeps a pointer past its call.
//!
//! Man pages: fcntl(2) ("Leases", "Managing signals"); `F_SETDELEG` is Linux 6.19's
//! `include/uapi/linux/fcntl.h`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::kernel::{LeaseType, F_UNLCK};

/// `F_LINUX_SPECIFIC_BASE + 16` (Linux 6.19): a delegation, broken also by unlink, rename,
/// link and setattr, and on directories by changes inside them. An unknown command (EINVAL)
/// on older kernels.
pub const F_SETDELEG: i32 = F_LINUX_SPECIFIC_BASE + 16;
/// `F_LINUX_SPECIFIC_BASE + 15` (Linux 6.19): the delegation on a description, as
/// `F_GETLEASE` (during a break: the type the holder must go down to).
pub const F_GETDELEG: i32 = F_LINUX_SPECIFIC_BASE + 15;

/// `<uapi/linux/fcntl.h>`: the base of the Linux-only fcntl commands (F_SETLEASE is +0).
pub const F_LINUX_SPECIFIC_BASE: i32 = 1024;

/// `<asm-generic/fcntl.h>` (x86, arm, riscv, ...): set the signal sent for I/O and leases.
/// The libc crate defines it only for some targets.
pub const F_SETSIG: i32 = 10;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn raw_lease(lease: Option<LeaseType>) -> libc::c_int {
    lease.map_or(F_UNLCK, LeaseType::to_raw)
}

/// `F_SETLEASE`: takes `Some(lease)` on the open file description behind `fd`, or gives the
/// lease up (`None`, `F_UNLCK`). EAGAIN when another open of the file conflicts (any other
/// open for a write lease, a writer for a read lease, or a read lease on a writable
/// description); during a break, setting the break target (or less) completes it.
pub fn set_lease(fd: BorrowedFd<'_>, lease: Option<LeaseType>) -> io::Result<()> {
    // SAFETY: F_SETLEASE takes an int argument; `fd` is a borrowed, open descriptor.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, raw_lease(lease)) })?;
    Ok(())
}

/// Takes (or lowers to) `lease` on the description behind `fd` with its break signalled as
/// `signo` to this process. The signal is set again each time: the kernel clears a
/// description's `F_SETSIG` and `F_SETOWN` whenever a lease on it is given up, so a lease
/// taken again after a release would otherwise signal a plain SIGIO without `si_fd`.
pub fn take_lease(fd: BorrowedFd<'_>, lease: LeaseType, signo: i32) -> io::Result<()> {
    set_signal(fd, signo)?;
    set_lease(fd, Some(lease))
}

/// `F_GETLEASE`: the lease on the description behind `fd`. During a pending break it is the
/// type the holder must go down to (`None`: give it up), not the type held.
pub fn get_lease(fd: BorrowedFd<'_>) -> io::Result<Option<LeaseType>> {
    // SAFETY: F_GETLEASE takes no argument; `fd` is a borrowed, open descriptor.
    let raw = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) })?;
    LeaseType::from_raw(raw).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// `F_SETSIG` to `signo` and `F_SETOWN` to this process: a lease break on the description
/// behind `fd` then queues `signo` to us with `si_fd` set to the descriptor the lease was
/// taken through (a realtime signal queues once per break; SIGIO without `si_fd` means the
/// queue overflowed). Both settings belong to the open file description, so every process
/// holding a dup of it must leave them alone. Giving a lease up (`F_UNLCK`, by the holder or
/// by the kernel at lease-break-time) clears both: see [`take_lease`].
pub fn set_signal(fd: BorrowedFd<'_>, signo: i32) -> io::Result<()> {
    // SAFETY: F_SETSIG takes an int argument (the signal number); `fd` is borrowed and open.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, signo) })?;
    // SAFETY: getpid has no preconditions; F_SETOWN takes an int argument (a pid).
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, libc::getpid()) })?;
    Ok(())
}

/// `F_SETOWN` to `pid`: the description's break signal (the number `F_SETSIG` set, `si_fd`
/// still the descriptor the lease was taken through) goes to that process from now on, until
/// the next `F_SETOWN`, the next lease taken on the description (`F_SETLEASE` makes its
/// caller the owner), or the lease's release. Recorded with our credentials, which the kernel
/// checks when it sends the signal (root may signal any process).
pub fn set_owner(fd: BorrowedFd<'_>, pid: i32) -> io::Result<()> {
    // SAFETY: F_SETOWN takes an int argument (a pid); `fd` is borrowed and open.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, pid) })?;
    Ok(())
}

/// Linux 6.19's `struct delegation` (`d_flags` must be 0, `d_type` is F_RDLCK, F_WRLCK or
/// F_UNLCK, `__pad` must be 0).
#[repr(C)]
struct Delegation {
    d_flags: u32,
    d_type: u16,
    pad: u16,
}

/// `F_SETDELEG`: takes (or with `None` gives up) a delegation on the description behind `fd`,
/// regular file or directory. EINVAL on kernels before 6.19 ([`delegations_supported`]).
pub fn set_delegation(fd: BorrowedFd<'_>, delegation: Option<LeaseType>) -> io::Result<()> {
    let argument = Delegation {
        d_flags: 0,
        d_type: raw_lease(delegation) as u16,
        pad: 0,
    };
    // SAFETY: F_SETDELEG reads one `struct delegation` (8 bytes, the layout above) through the
    // pointer during the call only; `argument` lives on our stack across the call; `fd` is open.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), F_SETDELEG, &argument as *const Delegation) })?;
    Ok(())
}

/// Whether this kernel knows `F_SETDELEG`, probed by giving up a delegation on `fd` (a no-op
/// when none is held): EINVAL means the command is unknown. Any other answer (success, EAGAIN
/// for "nothing to give up") means it exists.
pub fn delegations_supported(fd: BorrowedFd<'_>) -> bool {
    match set_delegation(fd, None) {
        Err(error) => error.raw_os_error() != Some(libc::EINVAL),
        Ok(()) => true,
    }
}
