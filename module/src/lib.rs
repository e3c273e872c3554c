//! The nfsbridge Samba VFS module: the `extern "C"` entry points smbd calls.
//!
//! smbd `dlopen`s this library and calls `samba_init_module`, which registers the module
//! through the C shim (`c-shim/`). The shim owns Samba's VFS table and calls back into the
//! functions of [`RUST_OPS`]; each one runs inside [`guard::call`], so a panic fails only
//! that request. Only `samba_init_module` is exported from the shared object.
use std::ffi::{c_char, c_int, c_void, CStr};

use nfsbridge::config::{FaultInjection, ModuleConfig, OPTIONS};

mod ffi;
mod guard;
mod log;

/// NT_STATUS_UNSUCCESSFUL, returned if registration itself panics.
const NT_STATUS_UNSUCCESSFUL: u32 = 0xC000_0001;

static RUST_OPS: ffi::nfsb_rust_ops = ffi::nfsb_rust_ops {
    connect: Some(connect),
    free_state: Some(free_state),
};

/// What the module keeps for one tree connect, owned by the shim's handle data.
struct Share {
    service: String,

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
        // SAFETY: RUST_OPS is a static, so it outlives the process as nfsb_register requires.
        let status = unsafe { ffi::nfsb_register(&RUST_OPS) };
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
        // SAFETY: handle is the live vfs handle of this connect; the option strings are
        // static C strings built below.
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
        tracing::info!("connect: share [{service}] path {path} user {user}; options: {config}");
        let share = Box::new(Share { service });
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

/// Copies a C string from smbd.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string valid for the call.
unsafe fn c_text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}
