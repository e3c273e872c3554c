//! The module's half of the failover controls (`docs/failover.md`): the grace periods the
//! bridge announces, and its release requests, which the shim carries out
//! (`c-shim/nfsbridge_failover.c`). Called from `lease.rs` right after connecting to the
//! bridge and whenever its socket is readable, and from the shim's create path.
use std::ffi::{c_char, CStr, CString};
use std::sync::{Mutex, MutexGuard};

use nfsbridge::lease::client::{BridgeClient, FailoverRequest};
use nfsbridge::lease::failover::{GraceTable, ReleaseScope};

use crate::{ffi, guard, lease, process_time};

/// The grace periods in force, on this process's clock (`process_time()`).
static GRACE: Mutex<Option<GraceTable>> = Mutex::new(None);

static OPS: ffi::nfsb_failover_ops = ffi::nfsb_failover_ops {
    grace_remaining_ms: Some(grace_remaining_ms),
};

/// Hands the shim its callbacks (once, at module load).
pub fn register() {
    // SAFETY: OPS is a static, so it outlives the process as the shim requires.
    unsafe { ffi::nfsb_failover_register(&OPS) };
}

fn grace() -> MutexGuard<'static, Option<GraceTable>> {
    GRACE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Just connected to the bridge: learn the grace periods in force before the first open.
pub fn connected(client: &mut BridgeClient) {
    match client.grace_query() {
        Ok(entries) => {
            if !entries.is_empty() {
                tracing::info!("grace periods in force: {entries:?}");
            }
            grace()
                .get_or_insert_with(GraceTable::new)
                .replace(&entries, process_time());
        }
        Err(err) => tracing::warn!("cannot ask the lease bridge for grace periods: {err}"),
    }
}

/// Carries out the failover requests the bridge sent (after `take_break_requests`). Returns
/// the devices of the file systems the bridge asked to release, whose parked opens the caller
/// gives up (`lease.rs` owns them).
pub fn handle_requests(client: &mut BridgeClient) -> Vec<u64> {
    let mut file_systems = Vec::new();
    for request in client.take_failover_requests() {
        match request {
            FailoverRequest::Grace(entries) => {
                tracing::info!("grace periods now: {entries:?}");
                grace()
                    .get_or_insert_with(GraceTable::new)
                    .replace(&entries, process_time());
                // SAFETY: on smbd's main loop; the shim only schedules the waiting opens'
                // retries, it calls nothing back.
                unsafe { ffi::nfsb_failover_grace_changed() };
            }
            FailoverRequest::Release { request_id, scope } => {
                if let ReleaseScope::FileSystem { dev, .. } = &scope {
                    file_systems.push(*dev);
                }
                let releasing = release(&scope);
                if let Err(err) = client.release_answer(request_id, releasing) {
                    tracing::warn!("cannot answer the lease bridge's release request: {err}");
                }
            }
        }
    }
    file_systems
}

/// Whether this smbd's client is in `scope` (the shim then ends the connection).
fn release(scope: &ReleaseScope) -> bool {
    match scope {
        ReleaseScope::ServerAddress(address) => {
            let Ok(address) = CString::new(address.as_str()) else {
                return false;
            };
            // SAFETY: on smbd's main loop; the string is NUL-terminated and lives during the
            // call. The shim only schedules the exit, it calls nothing back.
            unsafe { ffi::nfsb_failover_release_address(address.as_ptr()) }
        }
        // SAFETY: on smbd's main loop; the shim only schedules the exit.
        ReleaseScope::FileSystem { dev, .. } => unsafe { ffi::nfsb_failover_release_fs(*dev) },
    }
}

unsafe extern "C" fn grace_remaining_ms(
    share_path: *const c_char,
    server_address: *const c_char,
) -> u64 {
    guard::call("grace_remaining_ms", 0, || {
        // Grace updates read while the module waited for another reply are queued in the
        // client: apply them first.
        lease::drain_failover_requests();
        // SAFETY: the shim passes two NUL-terminated strings valid during the call.
        let (share_path, server_address) = unsafe {
            (
                CStr::from_ptr(share_path).to_string_lossy(),
                CStr::from_ptr(server_address).to_string_lossy(),
            )
        };
        let guard = grace();
        let Some(table) = guard.as_ref() else {
            return 0;
        };
        table
            .remaining(&share_path, &server_address, process_time())
            .map_or(0, |left| left.as_millis().max(1) as u64)
    })
}
