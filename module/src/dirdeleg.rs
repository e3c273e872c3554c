//! Directory delegations in smbd (issue 7, Linux 6.19+; docs/lease-bridge.md "Directory
//! delegations"): each smbd process holds an `F_SETDELEG` read delegation on every directory
//! its clients hold a directory lease on, and on every directory holding the name of an open
//! whose lease has H, so that a local or NFS create, delete or rename in it waits in the kernel
//! until the SMB client has been sent the break. The decision about a broken delegation is
//! `nfsbridge::dirlease::delegation` (pure); here are the system calls:
//! the shared table every smbd announces its own namespace changes in, the signal handler,
//! the wake-up of the main loop and the late-release timer, taking and giving back.
//!
//! The handler runs in signal context on smbd's main thread (or a pthreadpool thread): it
//! touches only atomics and async-signal-safe system calls (fcntl, capget/capset, write,
//! timer_settime), never the heap or a lock.
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

use nfsbridge::dirlease::delegation::{self, ChangesInProgress, Decision, Delegations, State};
use nfsbridge::lease::fcntl;
use nfsbridge::lease::kernel::LeaseType;

use crate::samba::Privileged;
use crate::{ffi, guard};

static TABLE: Delegations = Delegations::new();
/// The shared table of smbd changes in progress (`delegation::SLOTS` counters), mapped at the
/// first tree connect of a share with directory delegations; null before (or if it failed).
static CHANGES: AtomicPtr<AtomicU32> = AtomicPtr::new(null_mut());
/// Namespace changes this process is making right now (its own change breaking its own
/// delegation must never wait for its own main loop).
static OWN_CHANGES: AtomicU32 = AtomicU32::new(0);
/// Whether smbd's main thread is waiting in its event loop (the shim's tevent trace callback).
static IDLE: AtomicBool = AtomicBool::new(false);
/// The eventfd that wakes the main loop (-1 until the holder side is set up).
static WAKE: AtomicI32 = AtomicI32::new(-1);
/// The late-release timer (a `timer_t`; null until set up).
static TIMER: AtomicPtr<c_void> = AtomicPtr::new(null_mut());
static SIGNO: AtomicI32 = AtomicI32::new(0);
/// Whether this process announces its namespace changes (set by `prepare`).
static PREPARED: AtomicBool = AtomicBool::new(false);

/// Whether a share of this process uses directory delegations (for the mode's log line).
pub fn prepared() -> bool {
    PREPARED.load(Ordering::SeqCst)
}

/// `si_code` of a POSIX timer's signal.
const SI_TIMER: c_int = -2;
/// `CAP_LEASE` (include/uapi/linux/capability.h).
const CAP_LEASE: u32 = 28;

struct Holder {
    /// Each delegated directory's descriptor and how many opens need it.
    dirs: BTreeMap<(u64, u64), (OwnedFd, usize)>,
    /// The holder side (handler, eventfd, timer): None before the first try.
    ready: Option<bool>,
    retake_scheduled: bool,
}

static HOLDER: Mutex<Holder> = Mutex::new(Holder { dirs: BTreeMap::new(), ready: None, retake_scheduled: false });

fn holder() -> std::sync::MutexGuard<'static, Holder> {
    HOLDER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn changes() -> Option<ChangesInProgress<'static>> {
    let base = CHANGES.load(Ordering::SeqCst);
    if base.is_null() {
        return None;
    }
    // SAFETY: CHANGES is set once, to a MAP_SHARED mapping of SLOTS AtomicU32 (u32-aligned, page
    // aligned) that is never unmapped; AtomicU32 has u32's layout.
    ChangesInProgress::new(unsafe { std::slice::from_raw_parts(base, delegation::SLOTS) })
}

/// Maps the shared table at `path` (created if missing, root's, mode 0600). Every smbd of the
/// instance maps the same file from Samba's lock directory.
fn map_changes(path: &CStr) -> io::Result<()> {
    if !CHANGES.load(Ordering::SeqCst).is_null() {
        return Ok(());
    }
    let len = delegation::SLOTS * std::mem::size_of::<AtomicU32>();
    let _root = Privileged::enter();
    // SAFETY: `path` is a C string that lives across the call; the result is a new descriptor
    // or -1.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this descriptor; nothing else owns it.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != 0 {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "not a regular file of root's"));
    }
    if meta.len() < len as u64 {
        // Another smbd may do the same at once: both set the same size, the counters stay 0.
        file.set_len(len as u64)?;
    }
    // SAFETY: a new shared mapping of `len` bytes of the file, which is at least that long; no
    // existing memory is touched.
    let base = unsafe { libc::mmap(null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0) };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if CHANGES.compare_exchange(null_mut(), base.cast(), Ordering::SeqCst, Ordering::SeqCst).is_err() {
        // SAFETY: our own mapping of `len` bytes, not published.
        unsafe { libc::munmap(base, len) };
    }
    Ok(())
}

/// At a tree connect of a share with `nfsbridge:directory delegations = yes`: maps the shared
/// table if the kernel has delegations for the share's file system. Then this process
/// announces its namespace changes, whether or not it holds delegations itself.
unsafe extern "C" fn prepare(table_path: *const c_char, share_dir: *const c_char) -> bool {
    guard::call("dirdeleg_prepare", false, || {
        // SAFETY: the shim passes NUL-terminated strings that live across the call.
        let (table_path, share_dir) = unsafe { (CStr::from_ptr(table_path), CStr::from_ptr(share_dir)) };
        if !crate::dirlease::kernel_has_delegations(share_dir) {
            return false;
        }
        match map_changes(table_path) {
            Ok(()) => {
                PREPARED.store(true, Ordering::SeqCst);
                true
            }
            Err(err) => {
                tracing::warn!(
                    "directory delegations: cannot map {}: {err}; namespace changes are watched by fanotify only",
                    table_path.to_string_lossy()
                );
                false
            }
        }
    })
}

/// Counts the directories `keys` (dev, ino pairs; 0, 0 entries skipped) up (`enter`) or down
/// around one of smbd's namespace changes.
unsafe extern "C" fn namespace_change(keys: *const u64, count: usize, enter: bool) {
    guard::call("dirdeleg_namespace_change", (), || {
        if enter {
            OWN_CHANGES.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(changes) = changes() {
            // SAFETY: the shim passes `count` pairs (2 * count u64) that live across the call.
            let keys = unsafe { std::slice::from_raw_parts(keys, 2 * count) };
            for pair in keys.chunks_exact(2).filter(|pair| pair != &[0, 0]) {
                if enter {
                    changes.enter(pair[0], pair[1]);
                } else {
                    changes.leave(pair[0], pair[1]);
                }
            }
        }
        if !enter {
            let _ = OWN_CHANGES.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    })
}

unsafe extern "C" fn idle(waiting: bool) {
    IDLE.store(waiting, Ordering::SeqCst);
}

/// Root's CAP_LEASE on this thread for the life of the value, with raw system calls only (the
/// signal handler uses it): giving a delegation back on a directory the user does not own
/// takes it, as taking one does.
struct LeaseCapability {
    saved: Option<[libc::c_uint; 6]>,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

impl LeaseCapability {
    fn raise() -> Self {
        let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
        // Two struct __user_cap_data_struct { effective, permitted, inheritable }.
        let mut caps: [libc::c_uint; 6] = [0; 6];
        // SAFETY: capget writes two cap data structs (6 u32) into `caps` and reads the header;
        // both live across the call.
        if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, caps.as_mut_ptr()) } != 0 {
            return LeaseCapability { saved: None };
        }
        let (effective, permitted) = (caps[0], caps[1]);
        let bit = 1 << CAP_LEASE;
        if effective & bit != 0 || permitted & bit == 0 {
            return LeaseCapability { saved: None };
        }
        let saved = caps;
        caps[0] |= bit;
        // SAFETY: as capget, reading the same layout.
        if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, caps.as_ptr()) } != 0 {
            return LeaseCapability { saved: None };
        }
        LeaseCapability { saved: Some(saved) }
    }
}

impl Drop for LeaseCapability {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
            // SAFETY: as in raise().
            if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, saved.as_ptr()) } != 0 {
                // Going on with a capability the user must not have is worse (as the shim's
                // privilege drop).
                // SAFETY: abort has no preconditions.
                unsafe { libc::abort() };
            }
        }
    }
}

/// Gives the delegation on `fd` back (async-signal-safe).
fn give_back(fd: RawFd) -> io::Result<()> {
    let _cap = LeaseCapability::raise();
    // SAFETY: entries are removed from TABLE before their descriptor is closed, and every
    // caller took `fd` from an entry in use.
    fcntl::set_delegation(unsafe { BorrowedFd::borrow_raw(fd) }, None)
}

fn wake() {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`, which lives across the call, to our eventfd.
        let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

fn arm_late_release() {
    let timer = TIMER.load(Ordering::SeqCst);
    if timer.is_null() {
        return;
    }
    let late = delegation::LATE_RELEASE;
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec { tv_sec: late.as_secs() as libc::time_t, tv_nsec: late.subsec_nanos() as libc::c_long },
    };
    // SAFETY: `timer` came from timer_create; `spec` lives across the call.
    let _ = unsafe { libc::timer_settime(timer, 0, &spec, null_mut()) };
}

/// The delegation on `fd` is still held and not broken (`F_GETDELEG` answers read).
fn still_held(fd: RawFd) -> bool {
    #[repr(C)]
    struct Raw {
        flags: u32,
        kind: u16,
        pad: u16,
    }
    let mut raw = Raw { flags: 0, kind: 0, pad: 0 };
    // SAFETY: F_GETDELEG writes one struct delegation (this layout) into `raw`, which lives
    // across the call; `fd` is an entry's open descriptor.
    let rc = unsafe { libc::fcntl(fd, fcntl::F_GETDELEG, &mut raw as *mut Raw) };
    rc == 0 && i32::from(raw.kind) == libc::F_RDLCK
}

fn decide(fd: RawFd) {
    let idle = IDLE.load(Ordering::SeqCst) && OWN_CHANGES.load(Ordering::SeqCst) == 0;
    match TABLE.on_break(fd, idle, |dev, ino| changes().is_some_and(|c| c.busy(dev, ino))) {
        Decision::ReleaseNow => {
            let _ = give_back(fd);
            wake(); // to take it again later
        }
        Decision::BreakFirst => {
            wake();
            arm_late_release();
        }
        Decision::Ignore => {}
    }
}

/// The `siginfo_t` fields read here (the SIGPOLL layout on 64-bit Linux: si_band, then si_fd).
#[repr(C)]
struct PollInfo {
    signo: c_int,
    errno: c_int,
    code: c_int,
    pad: c_int,
    band: libc::c_long,
    fd: c_int,
}

extern "C" fn on_signal(signo: c_int, info: *mut libc::siginfo_t, _context: *mut c_void) {
    // SAFETY: __errno_location has no preconditions; the handler restores errno for the code
    // it interrupted.
    let saved_errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; PollInfo is a
    // prefix of its layout.
    let (code, fd) = unsafe {
        let info = info as *const PollInfo;
        ((*info).code, (*info).fd)
    };
    if signo == libc::SIGIO {
        // The realtime queue overflowed: look at every delegation.
        for entry in TABLE.in_use() {
            if entry.state() == State::Held && !still_held(entry.fd()) {
                decide(entry.fd());
            }
        }
    } else if code == SI_TIMER {
        TABLE.release_late(|entry| {
            let _ = give_back(entry.fd());
        });
        wake();
    } else {
        decide(fd);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

fn install_handler(signo: c_int, only_if_default: bool) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    if only_if_default {
        // SAFETY: reads the current action into `action`, which lives across the call.
        if unsafe { libc::sigaction(signo, std::ptr::null(), &mut action) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN {
            return Ok(()); // smbd (tevent) handles it, and tells us (`signals_lost`)
        }
    }
    action.sa_sigaction = on_signal as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: sa_mask is a sigset_t inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs our handler, which is async-signal-safe (module comment); `action`
    // lives across the call.
    if unsafe { libc::sigaction(signo, &action, null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_up_holder() -> io::Result<RawFd> {
    let signo = delegation::break_signal();
    // SAFETY: eventfd takes an initial value and flags, returns a new descriptor or -1.
    let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if wake < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sigevent is a valid value of this plain C struct.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_SIGNAL;
    event.sigev_signo = signo;
    let mut timer: libc::timer_t = null_mut();
    // SAFETY: `event` and `timer` live across the call; timer_create writes the new timer's id.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: our eventfd, not published.
        unsafe { libc::close(wake) };
        return Err(err);
    }
    install_handler(signo, false)?;
    install_handler(libc::SIGIO, true)?;
    SIGNO.store(signo, Ordering::SeqCst);
    TIMER.store(timer, Ordering::SeqCst);
    WAKE.store(wake, Ordering::SeqCst);
    Ok(wake)
}

/// The holder side of this process (signal handler, late-release timer): the eventfd the shim
/// watches in smbd's event loop, or -1 when delegations cannot be held here.
unsafe extern "C" fn holder_socket() -> c_int {
    guard::call("dirdeleg_holder_socket", -1, || {
        let mut h = holder();
        match h.ready {
            Some(true) => return WAKE.load(Ordering::SeqCst),
            Some(false) => return -1,
            None => {}
        }
        match set_up_holder() {
            Ok(fd) => {
                h.ready = Some(true);
                fd
            }
            Err(err) => {
                h.ready = Some(false);
                tracing::warn!("directory delegations: cannot set up the break signal ({err}); namespace changes are watched by fanotify only");
                -1
            }
        }
    })
}

/// Takes the delegation on `fd` (the signal set again: giving one back clears it).
fn take(fd: BorrowedFd<'_>) -> io::Result<()> {
    let _root = Privileged::enter();
    fcntl::set_signal(fd, SIGNO.load(Ordering::SeqCst))?;
    fcntl::set_delegation(fd, Some(LeaseType::Read))
}

fn add(h: &mut Holder, key: (u64, u64), path: &CStr) -> io::Result<()> {
    if let Some((dir, refs)) = h.dirs.get_mut(&key) {
        *refs += 1;
        if let Some(entry) = TABLE.by_key(key.0, key.1) {
            if entry.state() == State::Released && take(dir.as_fd()).is_ok() {
                entry.transition(State::Released, State::Held);
            }
        }
        return Ok(());
    }
    let dir = {
        let _root = Privileged::enter();
        crate::dirlease::open_directory(path, key, libc::O_RDONLY | libc::O_NOFOLLOW)?
    };
    let entry = TABLE.insert(dir.as_raw_fd(), key.0, key.1).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSPC))?;
    if let Err(err) = take(dir.as_fd()) {
        TABLE.remove(dir.as_raw_fd());
        return Err(err);
    }
    entry.transition(State::Released, State::Held);
    h.dirs.insert(key, (dir, 1));
    Ok(())
}

/// One more open has a directory lease on the directory at `path` (dev/ino), or a lease with H
/// on an entry of it: holds a delegation on it. 0, or an errno value (then fanotify alone
/// watches it).
unsafe extern "C" fn delegate(dev: u64, ino: u64, path: *const c_char) -> c_int {
    guard::call("dirdeleg_delegate", libc::EIO, || {
        // SAFETY: the shim passes a NUL-terminated path that lives across the call.
        let path = unsafe { CStr::from_ptr(path) };
        let mut h = holder();
        match add(&mut h, (dev, ino), path) {
            Ok(()) => {
                tracing::debug!("directory delegations: holding one on {} ({} directories)", path.to_string_lossy(), h.dirs.len());
                0
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => {
                // Expected on a busy process, not an error: logged quietly.
                tracing::debug!(
                    "directory delegations: already {} directories held in this process; {} is watched by fanotify only",
                    delegation::MAX_DELEGATIONS,
                    path.to_string_lossy()
                );
                libc::ENOSPC
            }
            Err(err) => {
                tracing::warn!("directory delegations: cannot hold one on {}: {err}; it is watched by fanotify only", path.to_string_lossy());
                err.raw_os_error().unwrap_or(libc::EIO)
            }
        }
    })
}

/// One open fewer needs it: the delegation goes with the last (closing its descriptor).
unsafe extern "C" fn undelegate(dev: u64, ino: u64) {
    guard::call("dirdeleg_undelegate", (), || {
        let mut h = holder();
        let Some((_, refs)) = h.dirs.get_mut(&(dev, ino)) else { return };
        *refs -= 1;
        if *refs == 0 {
            if let Some((dir, _)) = h.dirs.remove(&(dev, ino)) {
                log_counts(dir.as_raw_fd());
                TABLE.remove(dir.as_raw_fd());
            }
        }
    })
}

fn log_counts(fd: RawFd) {
    if let Some(entry) = TABLE.by_fd(fd) {
        let (dev, ino) = entry.key();
        tracing::debug!(
            "directory delegations: {dev}:{ino} given up; broken {} times by others (leases broken first), {} times by smbd",
            entry.broken_first.load(Ordering::SeqCst),
            entry.released_for_smbd.load(Ordering::SeqCst)
        );
    }
}

fn schedule_retake(h: &mut Holder) {
    if h.retake_scheduled || !TABLE.in_use().any(|e| e.state() == State::Released) {
        return;
    }
    h.retake_scheduled = true;
    // SAFETY: the shim's timer; no pointers passed.
    unsafe { ffi::nfsb_dirlease_retake_later(delegation::RETAKE_AFTER.as_millis() as u32) };
}

/// The eventfd is readable: breaks the leases of every delegation someone else broke (the
/// shim gives each back once smbd has sent the breaks) and plans taking released ones again.
unsafe extern "C" fn readable() {
    guard::call("dirdeleg_readable", (), || {
        let wake = WAKE.load(Ordering::SeqCst);
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into `count`, which lives across the call, from our eventfd.
        let _ = unsafe { libc::read(wake, (&mut count as *mut u64).cast(), 8) };
        let breaking: Vec<(u64, u64)> =
            TABLE.in_use().filter(|e| e.state() == State::Breaking).map(|e| e.key()).collect();
        for (dev, ino) in breaking {
            tracing::debug!("directory delegations: {dev}:{ino} broken by a change outside smbd: breaking the leases it backs before the change");
            // SAFETY: the shim's callback; the holder's lock is not held.
            unsafe { ffi::nfsb_dirlease_delegation_broken(dev, ino) };
        }
        schedule_retake(&mut holder());
    })
}

/// smbd has sent the breaks for dev/ino (the shim's immediate after them): gives the
/// delegation back so the change can go on.
unsafe extern "C" fn release(dev: u64, ino: u64) {
    guard::call("dirdeleg_release", (), || {
        if let Some(entry) = TABLE.by_key(dev, ino) {
            if entry.transition(State::Breaking, State::Released) {
                if let Err(err) = give_back(entry.fd()) {
                    tracing::warn!("directory delegations: cannot give {dev}:{ino} back: {err}");
                }
            }
        }
        schedule_retake(&mut holder());
    })
}

/// Takes released delegations again where the directory (or an entry's H) still has a lease
/// that caches.
unsafe extern "C" fn retake() {
    guard::call("dirdeleg_retake", (), || {
        let mut h = holder();
        h.retake_scheduled = false;
        let mut again = false;
        for (key, (dir, _)) in h.dirs.iter() {
            let Some(entry) = TABLE.by_key(key.0, key.1) else { continue };
            if entry.state() != State::Released {
                continue;
            }
            // SAFETY: the shim's lookup of this process's opens; no pointers passed.
            if !unsafe { ffi::nfsb_dirlease_leased(key.0, key.1) } {
                continue; // taken again when a lease is granted on it
            }
            match take(dir.as_fd()) {
                Ok(()) => {
                    tracing::debug!("directory delegations: {}:{} taken again", key.0, key.1);
                    entry.transition(State::Released, State::Held);
                }
                Err(err) if err.raw_os_error() == Some(libc::EAGAIN) => again = true,
                Err(err) => tracing::debug!("directory delegations: cannot take {}:{} again: {err}", key.0, key.1),
            }
        }
        if again {
            schedule_retake(&mut h);
        }
    })
}

/// The realtime signal queue overflowed and smbd's own SIGIO handler saw it (main loop): every
/// delegation is looked at.
pub fn signals_lost() {
    for entry in TABLE.in_use() {
        if entry.state() == State::Held && !still_held(entry.fd()) {
            decide(entry.fd());
        }
    }
}

/// Hands the shim our operations (once, at module load).
pub fn register() {
    // SAFETY: OPS is a static with every entry set; the shim keeps the pointer for the life of
    // the process and calls the entries from smbd's main thread only.
    unsafe { ffi::nfsb_dirdeleg_register(&OPS) };
}

static OPS: ffi::nfsb_dirdeleg_ops = ffi::nfsb_dirdeleg_ops {
    prepare: Some(prepare),
    namespace_change: Some(namespace_change),
    idle: Some(idle),
    holder_socket: Some(holder_socket),
    delegate: Some(delegate),
    undelegate: Some(undelegate),
    readable: Some(readable),
    release: Some(release),
    retake: Some(retake),
};
