//! `tracing` events go to Samba's debug system, class "nfsbridge", so that smb.conf's
//! `log level = 1 nfsbridge:10` controls them like any other Samba debug class.
//!
//! Levels: ERROR → 0 (DBG_ERR), WARN → 1 (DBG_WARNING), INFO → 3 (DBG_NOTICE),
//! DEBUG → 5 (DBG_INFO), TRACE → 10 (DBG_DEBUG).
use std::ffi::{c_int, CString};
use std::fmt::Write as _;
use std::sync::Once;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::ffi;

/// Makes [`SambaDebug`] the process's tracing subscriber (once per smbd process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if another subscriber is already global; then that one gets our events.
        let _ = tracing::subscriber::set_global_default(SambaDebug);
    });
}

pub fn samba_level(level: &Level) -> c_int {
    match *level {
        Level::ERROR => ffi::NFSB_DBGLVL_ERR as c_int,
        Level::WARN => ffi::NFSB_DBGLVL_WARNING as c_int,
        Level::INFO => ffi::NFSB_DBGLVL_NOTICE as c_int,
        Level::DEBUG => ffi::NFSB_DBGLVL_INFO as c_int,
        Level::TRACE => ffi::NFSB_DBGLVL_DEBUG as c_int,
    }
}

/// A subscriber with no spans: each event becomes one Samba debug message.
struct SambaDebug;

impl Subscriber for SambaDebug {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Samba's levels change at run time (smbcontrol debug), so ask every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // SAFETY: nfsb_debug_enabled only reads Samba's debug level table.
        unsafe { ffi::nfsb_debug_enabled(samba_level(metadata.level())) }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut text = MessageText::default();
        event.record(&mut text);
        let location = format!("{}:{}", metadata.file().unwrap_or("?"), metadata.line().unwrap_or(0));
        let [location, function, message] =
            [location.as_str(), metadata.target(), text.0.as_str()].map(c_string);
        // SAFETY: the three pointers are NUL-terminated strings that outlive the call; the shim
        // copies what it prints.
        unsafe {
            ffi::nfsb_debug(samba_level(metadata.level()), location.as_ptr(), function.as_ptr(), message.as_ptr())
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The event's message followed by its other fields as ` name=value`.
#[derive(Default)]
struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let mut message = format!("{value:?}");
            message.push_str(&self.0);
            self.0 = message;
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// Samba's debug functions take C strings: an interior NUL becomes a visible escape.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).expect("NULs were replaced")
}
