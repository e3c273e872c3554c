//! Panics never cross into smbd: every `extern "C"` entry point runs its body through
//! [`call`], which turns a panic into that one request's error and a log line.
use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Where the last panic on this thread happened, recorded by the hook for [`call`] to log.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic hook (which writes to smbd's stderr) with one that records the
/// panic's location for the guard's log line.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let text = format!("{} at {}", payload_text(info.payload()), location_text(info.location()));
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
        }));
    });
}

/// Runs `body`; if it panics, logs the panic as the failure of `what` and returns `on_panic`.
pub fn call<R>(what: &str, on_panic: R, body: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| payload_text(payload.as_ref()));
            tracing::error!("{what} failed: internal error (panic caught at the module boundary: {detail}); only this request fails");
            on_panic
        }
    }
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

fn location_text(location: Option<&panic::Location<'_>>) -> String {
    location.map_or_else(|| "unknown location".into(), |l| format!("{}:{}", l.file(), l.line()))
}
