//! The module's half of the delegation recall (`c-shim/nfsbridge_recall.c`): which
//! delegations and leases a file has, from `/proc/locks`, and the share's recall timeout.
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use nfsbridge::lease::proc_locks::holders_on;

use crate::{ffi, guard};

static OPS: ffi::nfsb_recall_ops = ffi::nfsb_recall_ops {
    holders_on: Some(holders),
    timeout_secs: Some(timeout_secs),
};

/// Hands the shim its callbacks (once, at module load).
pub fn register() {
    // SAFETY: OPS is a static, so it outlives the process as the shim requires.
    unsafe { ffi::nfsb_recall_register(&OPS) };
}

/// NFSB_DELEG_* and NFSB_LEASE_HELD bits for the file (`st_dev`, `st_ino`).
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
        let holders = holders_on(&text, major, minor, ino);
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
