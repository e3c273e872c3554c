//! The nfsbridge Samba VFS module: the `extern "C"` entry points smbd calls.
//!
//! smbd `dlopen`s this library and calls `samba_init_module`, which registers the module
//! through the C shim (`c-shim/`). The shim owns Samba's VFS table and calls back into the
//! functions of [`RUST_OPS`]; each one runs inside [`guard::call`], so a panic fails only
//! that request. Only `samba_init_module` is exported from the shared object.
use std::ffi::{c_char, c_int, c_void};

use nfsbridge::config::{FaultInjection, ModuleConfig, OPTIONS};
use nfsbridge::lease::protocol::Provisional;
use nfsbridge::lease::table::{Caching, GrantKind, InodeKey};

mod acl;
mod dirdeleg;
mod dirlease;
mod failover;
mod ffi;
mod guard;
mod lease;
mod log;
mod recall;
mod samba;

use samba::{c_text, status, File};

/// This smbd process's monotonic clock: the time since the module first asked. The pure
/// tables (grace periods, idle namespace marks) take their times as `Duration`s on it.
pub(crate) fn process_time() -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// NT_STATUS_UNSUCCESSFUL, returned if registration itself panics.
const NT_STATUS_UNSUCCESSFUL: u32 = status::UNSUCCESSFUL;

static RUST_OPS: ffi::nfsb_rust_ops = ffi::nfsb_rust_ops {
    connect: Some(connect),
    free_state: Some(free_state),
    acl_bridge_enabled: Some(acl_bridge_enabled),
    smb_overrides_posix_mirror: Some(smb_overrides_posix_mirror),
    fget_nt_acl: Some(fget_nt_acl),
    fset_nt_acl: Some(fset_nt_acl),
    leases_enabled: Some(leases_enabled),
    directory_delegations: Some(directory_delegations),
    handle_lease_delegations: Some(handle_lease_delegations),
    bridge_socket: Some(bridge_socket),
    bridge_open: Some(bridge_open),
    bridge_grant: Some(bridge_grant),
    bridge_close: Some(bridge_close),
    bridge_expire_parked: Some(bridge_expire_parked),
    bridge_readable: Some(bridge_readable),
    bridge_broken: Some(bridge_broken),
    bridge_has_queued_requests: Some(bridge_has_queued_requests),
    bridge_disconnect: Some(bridge_disconnect),
    bridge_break_signal: Some(bridge_break_signal),
    bridge_signals_handled: Some(bridge_signals_handled),
    bridge_break_signalled: Some(bridge_break_signalled),
    bridge_break_signals_lost: Some(bridge_break_signals_lost),
    break_answered: Some(break_answered),
    acl_state_changed: Some(acl_state_changed),
};

/// What the module keeps for one tree connect, owned by the shim's handle data.
struct Share {
    service: String,
    /// The share's path (connectpath), as the lease bridge's share roots name it.
    path: String,
    config: ModuleConfig,
    /// The share's device when the ACL state cache may trust its ctimes (a local file system;
    /// see `nfsbridge::acl::statecache`).
    ctime_trusted_dev: Option<u64>,
}

/// smbd's entry point for a shared module (looked up by this exact name).
///
/// # Safety
/// Called by smbd once per process, on its main thread, with a talloc context we do not use.
#[no_mangle]
pub unsafe extern "C" fn samba_init_module(_ctx: *mut c_void) -> u32 {
    guard::install_panic_hook();
    log::install();
    guard::call("samba_init_module", NT_STATUS_UNSUCCESSFUL, || {
        dirlease::register();
        dirdeleg::register();
        // SAFETY: RUST_OPS is a static, so it outlives the process as nfsb_register requires.
        let status = unsafe { ffi::nfsb_register(&RUST_OPS) };
        failover::register();
        recall::register();
        if status != 0 {
            tracing::error!("registering the nfsbridge VFS module failed: NTSTATUS {status:#010x}");
        }
        status
    })
}

/// Tree connect, after the next module connected: validate this share's options.
unsafe extern "C" fn connect(
    handle: *mut ffi::nfsb_handle,
    service: *const c_char,
    user: *const c_char,
    state: *mut *mut c_void,
) -> c_int {
    guard::call("connect", libc::EIO, || {
        // SAFETY: the shim passes smbd's NUL-terminated service and user names, valid for
        // the duration of the call.
        let (service, user) = unsafe { (c_text(service), c_text(user)) };
        // SAFETY: handle is the live vfs handle of this connect; connectpath is smbd's string,
        // valid during the call and copied at once.
        let path = unsafe { c_text(ffi::nfsb_handle_connectpath(handle)) };
        let config = match ModuleConfig::from_lookup(|name| option(handle, name)) {
            Ok(config) => config,
            Err(err) => {
                tracing::error!("refusing tree connect to share [{service}] ({path}): {err}");
                return libc::EINVAL;
            }
        };
        if config.fault_injection == FaultInjection::PanicInConnect {
            panic!("fault injection: 'nfsbridge:fault injection = panic in connect' on share [{service}]");
        }
        if config.acls {
            // New files and directories created over SMB get the ACL Windows would give them
            // (smbd computes it from the parent's inheritable ACEs and calls fset_nt_acl).
            set_parameter(handle, "inherit acls", "yes");
        }
        if config.leases {
            // Every SMB open of a file shares the bridge's one description, so OFD lock owners
            // would merge; process-associated locks keep each smbd's locks apart as plain
            // Samba's OFD locks do (docs/lease-bridge.md, byte-range locks).
            set_parameter(handle, "smbd force process locks", "yes");
        }
        // SAFETY: handle is the live vfs handle of this connect.
        let next_is_default = unsafe { ffi::nfsb_handle_next_is_default(handle) };
        let ctime_trusted_dev = if config.acls && next_is_default { samba::ctime_trusted_dev(&path) } else { None };
        tracing::info!(
            "connect: share [{service}] path {path} user {user}; options: {config}; ACL state cache {}",
            match (ctime_trusted_dev, config.acls, next_is_default) {
                (Some(_), _, _) => "on",
                (None, false, _) => "off (acls = no)",
                (None, true, false) => "off (another module is stacked below nfsbridge)",
                (None, true, true) => "off (not a local file system with trusted ctimes)",
            }
        );
        let share = Box::new(Share { service, path, config, ctime_trusted_dev });
        // SAFETY: state points to the shim's local variable; ownership of the box passes to
        // the shim, which hands it back exactly once through free_state.
        unsafe { *state = Box::into_raw(share).cast() };
        0
    })
}

/// Releases the [`Share`] that connect stored.
unsafe extern "C" fn free_state(state: *mut c_void) {
    guard::call("disconnect", (), || {
        // SAFETY: state came from Box::into_raw in connect and the shim frees it only once.
        let share = unsafe { Box::from_raw(state.cast::<Share>()) };
        tracing::debug!("disconnect: share [{}]", share.service);
    })
}

fn set_parameter(handle: *mut ffi::nfsb_handle, name: &str, value: &str) {
    let (c_name, c_value) = (std::ffi::CString::new(name).unwrap(), std::ffi::CString::new(value).unwrap());
    // SAFETY: handle is the live handle of the connect in progress; both strings are
    // NUL-terminated and copied by lp_do_parameter.
    if !unsafe { ffi::nfsb_handle_set_parameter(handle, c_name.as_ptr(), c_value.as_ptr()) } {
        tracing::warn!("could not set '{name} = {value}' for this share");
    }
}

/// The share state that connect stored.
///
/// # Safety
/// `state` is the pointer connect returned, and the share is still connected.
unsafe fn share<'a>(state: *mut c_void) -> &'a Share {
    // SAFETY: guaranteed by the caller; Share is only read after connect.
    unsafe { &*state.cast::<Share>() }
}

unsafe extern "C" fn acl_bridge_enabled(state: *mut c_void) -> bool {
    // SAFETY: the shim passes the state connect stored.
    guard::call("acl_bridge_enabled", false, || unsafe { share(state) }.config.acls)
}

unsafe extern "C" fn smb_overrides_posix_mirror(state: *mut c_void) -> bool {
    guard::call("smb_overrides_posix_mirror", false, || {
        // SAFETY: the shim passes the state connect stored.
        let config = &unsafe { share(state) }.config;
        config.acls && config.posix_mirror
    })
}

unsafe extern "C" fn fget_nt_acl(
    handle: *mut ffi::nfsb_handle,
    state: *mut c_void,
    fsp: *mut ffi::nfsb_fsp,
    security_info: u32,
    result: *mut ffi::nfsb_sd_result,
) -> u32 {
    guard::call("fget_nt_acl", status::INTERNAL_ERROR, || {
        // SAFETY: the shim passes this call's live handle, state and fsp.
        let (share, file) = unsafe { (share(state), File::new(handle, fsp)) };
        match acl::get_nt_acl(&file, &share.config, share.ctime_trusted_dev, security_info) {
            Ok(sd) => samba::deliver_sd(result, &sd),
            Err(err) => {
                tracing::error!("[{}] {}: reading the ACL failed: {}", share.service, file.name(), err.message);
                err.status
            }
        }
    })
}

unsafe extern "C" fn fset_nt_acl(
    handle: *mut ffi::nfsb_handle,
    state: *mut c_void,
    fsp: *mut ffi::nfsb_fsp,
    security_info_sent: u32,
    sd: *const u8,
    sd_len: usize,
) -> u32 {
    guard::call("fset_nt_acl", status::INTERNAL_ERROR, || {
        // SAFETY: the shim passes this call's live handle, state and fsp, and the marshalled
        // descriptor, readable for sd_len bytes during the call.
        let (share, file, sd) = unsafe { (share(state), File::new(handle, fsp), std::slice::from_raw_parts(sd, sd_len)) };
        match acl::set_nt_acl(&file, &share.config, share.ctime_trusted_dev, security_info_sent, sd) {
            Ok(()) => status::OK,
            Err(err) => {
                tracing::error!("[{}] {}: setting the ACL failed: {}", share.service, file.name(), err.message);
                err.status
            }
        }
    })
}

unsafe extern "C" fn leases_enabled(state: *mut c_void) -> bool {
    // SAFETY: the shim passes the state connect stored.
    guard::call("leases_enabled", false, || unsafe { share(state) }.config.leases)
}

unsafe extern "C" fn directory_delegations(state: *mut c_void) -> bool {
    // SAFETY: the shim passes the state connect stored.
    guard::call("directory_delegations", false, || unsafe { share(state) }.config.directory_delegations)
}

unsafe extern "C" fn handle_lease_delegations(state: *mut c_void) -> bool {
    // SAFETY: the shim passes the state connect stored.
    guard::call("handle_lease_delegations", false, || {
        let config = &unsafe { share(state) }.config;
        config.directory_delegations && config.handle_lease_delegations
    })
}

unsafe extern "C" fn bridge_socket(state: *mut c_void, connect: bool) -> c_int {
    guard::call("bridge_socket", -1, || {
        // SAFETY: the shim passes the state connect stored.
        let path = &unsafe { share(state) }.config.lease_bridge_socket;
        if connect {
            lease::socket(path)
        } else {
            lease::connected_socket(path)
        }
    })
}

unsafe extern "C" fn bridge_open(
    state: *mut c_void,
    reference: c_int,
    dev: u64,
    ino: u64,
    want_write: bool,
    nonblocking: bool,
    request: *const ffi::nfsb_create_request,
) -> c_int {
    guard::call("bridge_open", ffi::NFSB_BRIDGE_UNREACHABLE, || {
        // SAFETY: the shim passes the state connect stored, and a create request that is NULL
        // or valid for the call (a lease key NULL or 16 readable bytes, NUL-terminated
        // addresses when `requested` is not 0).
        let (share, provisional) = unsafe {
            let provisional = request.as_ref().filter(|r| r.requested != 0).map(|r| {
                let kind = if r.lease_key.is_null() {
                    GrantKind::Oplock
                } else {
                    GrantKind::Lease(std::ptr::read(r.lease_key.cast::<[u8; 16]>()))
                };
                Provisional {
                    kind,
                    requested: Caching::from_lease_state(r.requested),
                    client_address: c_text(r.client_address),
                    server_address: c_text(r.server_address),
                }
            });
            (share(state), provisional)
        };
        let inode = InodeKey { dev, ino };
        lease::open(&share.config.lease_bridge_socket, &share.path, reference, inode, want_write, nonblocking, provisional)
    })
}

unsafe extern "C" fn bridge_grant(
    state: *mut c_void,
    fd: c_int,
    lease_key: *const u8,
    lease_state: u32,
    client_address: *const c_char,
    server_address: *const c_char,
) -> u32 {
    guard::call("bridge_grant", 0, || {
        // SAFETY: the shim passes the state connect stored, NUL-terminated addresses and a
        // lease key that is NULL or 16 readable bytes, all valid during the call.
        let (share, client, server, key) = unsafe {
            let key = (!lease_key.is_null()).then(|| std::ptr::read(lease_key.cast::<[u8; 16]>()));
            (share(state), c_text(client_address), c_text(server_address), key)
        };
        let granted = Caching::from_lease_state(lease_state);
        lease::grant(&share.config.lease_bridge_socket, &share.path, fd, key, granted, &client, &server)
            .to_lease_state()
    })
}

unsafe extern "C" fn bridge_close(fd: c_int) -> u32 {
    guard::call("bridge_close", 0, || lease::close(fd))
}

unsafe extern "C" fn bridge_expire_parked() -> u32 {
    guard::call("bridge_expire_parked", 0, lease::expire_parked)
}

unsafe extern "C" fn bridge_readable() -> bool {
    guard::call("bridge_readable", false, lease::readable)
}

unsafe extern "C" fn bridge_has_queued_requests() -> bool {
    guard::call("bridge_has_queued_requests", false, lease::has_queued_requests)
}

unsafe extern "C" fn bridge_broken() -> bool {
    guard::call("bridge_broken", true, lease::is_broken)
}

unsafe extern "C" fn bridge_disconnect() {
    guard::call("bridge_disconnect", (), lease::disconnect)
}

unsafe extern "C" fn bridge_break_signal() -> c_int {
    guard::call("bridge_break_signal", -1, nfsbridge::lease::signals::lease_break_signal)
}

unsafe extern "C" fn bridge_signals_handled() {
    guard::call("bridge_signals_handled", (), lease::signals_handled)
}

unsafe extern "C" fn bridge_break_signalled(bridge_fd: c_int) {
    guard::call("bridge_break_signalled", (), || lease::break_signalled(bridge_fd))
}

unsafe extern "C" fn bridge_break_signals_lost() {
    guard::call("bridge_break_signals_lost", (), lease::break_signals_lost)
}

unsafe extern "C" fn break_answered(token: u64, lease_state: u32) {
    guard::call("break_answered", (), || lease::break_answered(token, lease_state))
}

unsafe extern "C" fn acl_state_changed(dev: u64, ino: u64) {
    guard::call("acl_state_changed", (), || {
        samba::with_state_cache(|cache| cache.forget(dev, ino));
    })
}

/// The raw smb.conf value of `nfsbridge:<name>`, if set.
fn option(handle: *mut ffi::nfsb_handle, name: &str) -> Option<String> {
    debug_assert!(OPTIONS.iter().any(|o| o.name == name));
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: handle is live for the connect call; the returned pointer is Samba's
    // configuration string (or NULL), copied before anything can reload the configuration.
    unsafe {
        let value = ffi::nfsb_handle_option(handle, name.as_ptr());
        (!value.is_null()).then(|| c_text(value))
    }
}
