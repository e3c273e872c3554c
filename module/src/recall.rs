//! The module's half of the delegation recall (`c-shim/nfsbridge_recall.c`): which
//! delegations and leases a file or directory has, from `/proc/locks`, the share's recall
//! timeout, and the recall of a directory's delegation (a thread that waits for it).
use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nfsbridge::lease::proc_locks::holders_on_except;

use crate::{ffi, guard};

static OPS: ffi::nfsb_recall_ops = ffi::nfsb_recall_ops {
    holders_on: Some(holders),
    timeout_secs: Some(timeout_secs),
    recall_directory: Some(recall_directory),
};

/// Hands the shim its callbacks (once, at module load).
pub fn register() {
    // SAFETY: OPS is a static, so it outlives the process as the shim requires.
    unsafe { ffi::nfsb_recall_register(&OPS) };
}

/// NFSB_DELEG_* and NFSB_LEASE_HELD bits for the file or directory (`st_dev`, `st_ino`); the
/// delegations smbd processes hold (on directories) are left out.
unsafe extern "C" fn holders(dev: u64, ino: u64) -> u32 {
    guard::call("holders_on", ffi::NFSB_DELEG_NONE, || {
        static UNREADABLE_LOGGED: AtomicBool = AtomicBool::new(false);
        let text = match std::fs::read_to_string("/proc/locks") {
            Ok(text) => text,
            Err(err) => {
                if !UNREADABLE_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!("cannot read /proc/locks ({err}): SMB changes to files that nfsd or a local process has delegated wait in the kernel, as on plain Samba");
                }
                return ffi::NFSB_DELEG_NONE;
            }
        };
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        let holders = holders_on_except(&text, major, minor, ino, crate::dirlease::runs_smbd);
        let mut bits = if holders.lease { ffi::NFSB_LEASE_HELD } else { ffi::NFSB_DELEG_NONE };
        if let Some(d) = holders.delegation {
            bits |= ffi::NFSB_DELEG_HELD;
            if d.breaking {
                bits |= ffi::NFSB_DELEG_BREAKING;
            }
        }
        bits
    })
}

unsafe extern "C" fn timeout_secs(state: *mut c_void) -> u32 {
    // SAFETY: the shim passes the state connect stored, for a share still connected.
    guard::call("recall_timeout", 0, || unsafe { crate::share(state) }.config.recall_timeout_secs)
}

/// Starts the recall of the delegations on the directory `fd` refers to (any descriptor of it,
/// `O_PATH` included) without blocking smbd: no open breaks a directory's read delegation, only
/// a change does, and the changer waits in the kernel until the holders have given theirs back.
/// So a thread of its own makes the one change that alters nothing but the ctime, a chown to
/// (-1, -1), and waits there (at most the holder's lease time: nfsd's, or the kernel's
/// `lease-break-time` for a local holder, then the kernel revokes it). The SMB create that is
/// about to change the directory anyway is deferred meanwhile. 0, or an errno value.
unsafe extern "C" fn recall_directory(fd: c_int) -> c_int {
    guard::call("recall_directory", libc::EIO, || {
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of the caller's open directory (which
        // lives across the call); the copy is the thread's own.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if copy < 0 {
            return io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        }
        // SAFETY: fcntl just returned this descriptor; nothing else owns it.
        let dir = unsafe { OwnedFd::from_raw_fd(copy) };
        let spawned = std::thread::Builder::new().name("nfsb-recall".into()).spawn(move || {
            // Its result is not logged (Samba's logging belongs to the main thread): a failed
            // chown recalls nothing, and the create's own timeout ends its wait.
            // SAFETY: `dir` is open for the call; the empty path names it (AT_EMPTY_PATH); -1
            // changes neither owner nor group, so no privilege is needed.
            unsafe { libc::fchownat(dir.as_raw_fd(), c"".as_ptr(), u32::MAX, u32::MAX, libc::AT_EMPTY_PATH) };
        });
        match spawned {
            Ok(_) => 0,
            Err(err) => {
                tracing::warn!("cannot start the recall of a directory's delegation: {err}");
                err.raw_os_error().unwrap_or(libc::EAGAIN)
            }
        }
    })
}
