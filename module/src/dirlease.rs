//! The module's half of the namespace watch (issue 7; `c-shim/nfsbridge_dirlease.c` is the
//! other): one fanotify group per smbd process, a mark on every directory the shim asks for
//! (reference-counted), and the events turned into changes made outside smbd. Decoding, the
//! table and the break rules are in `nfsbridge::dirlease` (pure, unit-tested); here are the
//! system calls. smbd is single threaded: the mutex only makes the state a safe static, and
//! it is never held while the shim is called back.
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nfsbridge::dirlease::{self, mask, DelegationSupport, DirHandle, DirKey, Mode, Watches};

use crate::samba::Privileged;
use crate::{ffi, guard, process_time};

static OPS: ffi::nfsb_dirlease_ops = ffi::nfsb_dirlease_ops {
    socket: Some(socket),
    watch: Some(watch),
    unwatch: Some(unwatch),
    readable: Some(readable),
    directory_break: Some(directory_break),
    unlinked_break: Some(unlinked_break),
};

/// Hands the shim our operations (once, at module load).
pub fn register() {
    // SAFETY: OPS is a static with every entry set; the shim keeps the pointer for the life of
    // the process and calls the entries from smbd's main thread only.
    unsafe { ffi::nfsb_dirlease_register(&OPS) };
}

/// How many processes' "is it an smbd?" answers are kept.
const PID_CACHE: usize = 256;
/// How long a directory's mark stays after its last open closed (Watches::expire), and how
/// many such idle marks one smbd keeps at most.
const IDLE_LINGER: Duration = Duration::from_secs(30);
const MAX_IDLE: usize = 64;

struct Watcher {
    group: Option<OwnedFd>,
    /// Each watched directory's descriptor (an O_PATH reference; the mark is removed through it).
    watches: Watches<OwnedFd>,
    pids: BTreeMap<i32, bool>,
    /// When idle marks were last looked at (on `process_time()`).
    last_expiry: Duration,
}

static WATCHER: Mutex<Watcher> = Mutex::new(Watcher {
    group: None,
    watches: Watches::new(),
    pids: BTreeMap::new(),
    last_expiry: Duration::ZERO,
});

fn watcher() -> std::sync::MutexGuard<'static, Watcher> {
    WATCHER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether this kernel has `F_SETDELEG` for the file system of `dir` (giving up a delegation
/// nobody holds is EINVAL only where the command does not exist, or where the file system
/// takes no leases at all, as FUSE and virtiofs: so the probe uses the share's directory, not
/// `/`). The directory is opened for reading: fcntl refuses lease commands on O_PATH.
pub(crate) fn kernel_has_delegations(dir: &CStr) -> bool {
    std::fs::File::open(std::ffi::OsStr::from_bytes(dir.to_bytes()))
        .map(|d| nfsbridge::lease::fcntl::delegations_supported(d.as_fd()))
        .unwrap_or(false)
}

fn fanotify_group() -> io::Result<OwnedFd> {
    let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
    // SAFETY: fanotify_init takes two flag words and returns a new descriptor or -1; no memory
    // is passed.
    let fd = unsafe { libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fanotify_init just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

unsafe extern "C" fn socket(probe_dir: *const c_char, handle_leases: bool) -> c_int {
    guard::call("dirlease_socket", -1, || {
        let mut w = watcher();
        if let Some(group) = &w.group {
            return group.as_raw_fd();
        }
        // SAFETY: the shim passes a NUL-terminated path that lives across the call.
        let support = if crate::dirdeleg::prepared() {
            DelegationSupport::Used
        } else if kernel_has_delegations(unsafe { CStr::from_ptr(probe_dir) }) {
            DelegationSupport::NotUsed
        } else {
            DelegationSupport::Missing
        };
        match fanotify_group() {
            Ok(group) => {
                let mode = if support == DelegationSupport::Used { Mode::Delegations } else { Mode::Fanotify };
                tracing::info!("{}", mode.describe(support, handle_leases));
                let fd = group.as_raw_fd();
                w.group = Some(group);
                fd
            }
            Err(err) => {
                tracing::warn!("{} ({err})", Mode::Unavailable.describe(support, handle_leases));
                -1
            }
        }
    })
}

/// The directory's file handle as fanotify reports it (fsid from statfs, handle from
/// name_to_handle_at).
fn dir_handle(dir: &OwnedFd) -> io::Result<DirHandle> {
    const MAX_HANDLE: usize = 128; // MAX_HANDLE_SZ
    #[repr(C)]
    struct Handle {
        handle_bytes: u32,
        handle_type: c_int,
        f_handle: [u8; MAX_HANDLE],
    }
    let mut handle = Handle { handle_bytes: MAX_HANDLE as u32, handle_type: 0, f_handle: [0; MAX_HANDLE] };
    let mut mount_id: c_int = 0;
    // SAFETY: `handle` is a struct file_handle with room for MAX_HANDLE_SZ bytes, as
    // handle_bytes says; mount_id is a c_int; both live across the call; the path is a C
    // string literal; `dir` is open.
    let rc = unsafe {
        libc::name_to_handle_at(dir.as_raw_fd(), c"".as_ptr(), (&mut handle as *mut Handle).cast(), &mut mount_id, libc::AT_EMPTY_PATH)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs writes one struct statfs into `fs`, which lives across the call.
    if unsafe { libc::fstatfs(dir.as_raw_fd(), &mut fs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsid_t is two ints (8 bytes, no padding); reading it as bytes is what the kernel
    // copies into fanotify's fsid field.
    let fsid: [u8; 8] = unsafe { std::mem::transmute(fs.f_fsid) };
    let len = (handle.handle_bytes as usize).min(MAX_HANDLE);
    Ok(DirHandle { fsid, handle_type: handle.handle_type, handle: handle.f_handle[..len].to_vec() })
}

fn mark(group: RawFd, flags: u32, dir: &OwnedFd) -> io::Result<()> {
    // Through the magic link: fanotify_mark resolves a path, and an O_PATH descriptor is
    // accepted only that way.
    let path = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap();
    // SAFETY: plain flag and mask words, AT_FDCWD and a C string that lives across the call.
    let rc = unsafe {
        libc::fanotify_mark(group, flags | libc::FAN_MARK_ONLYDIR, mask::NAMESPACE, libc::AT_FDCWD, path.as_ptr())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the directory at `path` (`O_DIRECTORY | O_CLOEXEC` and `flags`) and checks that it is
/// still the one smbd opened (`key`: dev, ino); ESTALE when it was renamed or replaced since.
/// The caller holds whatever privilege the open needs.
pub(crate) fn open_directory(path: &CStr, key: DirKey, flags: c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a C string that lives across the call; the result is a new
    // descriptor or -1.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this descriptor; nothing else owns it.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))?;
    if (meta.dev(), meta.ino()) != key {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(dir)
}

fn add_watch(w: &mut Watcher, key: DirKey, path: &CStr) -> io::Result<()> {
    if w.watches.retain(key) {
        return Ok(()); // the common case: no system call
    }
    let group = w.group.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?.as_raw_fd();
    // A new mark: the directory is opened and marked with root's access (fanotify checks read
    // access to what it marks; smbd may reach it only through the ACL bridge's root retries).
    let _root = Privileged::enter();
    let dir = open_directory(path, key, libc::O_PATH)?;
    let handle = dir_handle(&dir)?;
    mark(group, libc::FAN_MARK_ADD, &dir)?;
    w.watches.insert(key, handle, dir);
    Ok(())
}

unsafe extern "C" fn watch(dev: u64, ino: u64, path: *const c_char) -> c_int {
    guard::call("dirlease_watch", libc::EIO, || {
        // SAFETY: the shim passes a NUL-terminated path that lives across the call.
        let path = unsafe { CStr::from_ptr(path) };
        let mut w = watcher();
        match add_watch(&mut w, (dev, ino), path) {
            Ok(()) => {
                tracing::debug!("namespace watch: watching {} ({} directories)", path.to_string_lossy(), w.watches.len());
                0
            }
            Err(err) => {
                tracing::warn!("namespace watch: cannot watch {}: {err}", path.to_string_lossy());
                err.raw_os_error().unwrap_or(libc::EIO)
            }
        }
    })
}

unsafe extern "C" fn unwatch(dev: u64, ino: u64) {
    guard::call("dirlease_unwatch", (), || {
        let mut w = watcher();
        let now = process_time();
        w.watches.release((dev, ino), now);
        expire_idle(&mut w, now);
    })
}

/// Removes the marks that have been idle for IDLE_LINGER (looked at once a second at most).
fn expire_idle(w: &mut Watcher, now: Duration) {
    if now.saturating_sub(w.last_expiry) < Duration::from_secs(1) && w.watches.len() <= MAX_IDLE {
        return;
    }
    w.last_expiry = now;
    let gone = w.watches.expire(now, IDLE_LINGER, MAX_IDLE);
    if gone.is_empty() {
        return;
    }
    let Some(group) = w.group.as_ref().map(|g| g.as_raw_fd()) else { return };
    let _root = Privileged::enter();
    for dir in gone {
        // ENOENT when the directory was removed (its marks went with it).
        let _ = mark(group, libc::FAN_MARK_REMOVE, &dir);
    }
}

/// Whether `pid` runs the smbd binary (dev, ino of /proc/self/exe; this process included): a
/// namespace change it made was made by an smbd, which breaks directory leases itself, and a
/// directory delegation it holds is given back for smbd's announced changes. A process that is
/// gone, or pid 0 (not visible to us, e.g. nfsd threads get their own), is not an smbd.
pub(crate) fn runs_smbd(pid: i32) -> bool {
    static SMBD_EXE: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    if pid <= 0 {
        return false;
    }
    if pid == std::process::id() as i32 {
        return true;
    }
    let exe = |path: &str| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let smbd_exe = *SMBD_EXE.get_or_init(|| exe("/proc/self/exe"));
    // Another user's process: reading its exe link takes root's capabilities.
    let theirs = {
        let _root = Privileged::enter();
        exe(&format!("/proc/{pid}/exe"))
    };
    theirs.is_some() && theirs == smbd_exe
}

/// runs_smbd with a small cache of the smbds seen (fanotify reports a pid per event).
fn is_smbd(pids: &mut BTreeMap<i32, bool>, pid: i32) -> bool {
    if let Some(&known) = pids.get(&pid) {
        return known;
    }
    let smbd = runs_smbd(pid);
    if pids.len() >= PID_CACHE {
        pids.clear(); // pids are reused: a small cache, emptied rather than aged
    }
    if smbd {
        pids.insert(pid, true); // only smbds are cached: short-lived local processes are not
    }
    smbd
}

unsafe extern "C" fn readable() {
    guard::call("dirlease_readable", (), || {
        let changes = {
            let mut w = watcher();
            let Some(group) = w.group.as_ref().map(|g| g.as_raw_fd()) else { return };
            let mut changes = Vec::new();
            let mut buf = vec![0u8; 16384];
            loop {
                // SAFETY: reads at most buf.len() bytes into `buf`, which lives across the call.
                let n = unsafe { libc::read(group, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break; // EAGAIN: all read
                }
                let events = match dirlease::decode_events(&buf[..n as usize]) {
                    Ok(events) => events,
                    Err(err) => {
                        tracing::error!("namespace watch: undecodable fanotify events ({err:?}): breaking every watched lease");
                        vec![dirlease::Event { mask: mask::Q_OVERFLOW, pid: 0, dir: None, name: None }]
                    }
                };
                let Watcher { watches, pids, .. } = &mut *w;
                changes.extend(dirlease::changes(&events, watches, |pid| is_smbd(pids, pid)));
            }
            changes
        };
        for change in changes {
            let name = change.name.as_ref().and_then(|n| CString::new(n.as_bytes()).ok());
            tracing::debug!("namespace watch: {:?} in {:?} changed outside smbd (mask {:#x})", change.name, change.dir, change.mask);
            // SAFETY: the shim's callback; `name` (or NULL) lives across the call; the watcher's
            // lock is not held, so the shim may call back into it.
            unsafe { ffi::nfsb_dirlease_changed(change.dir.0, change.dir.1, name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr())) };
        }
    })
}

unsafe extern "C" fn directory_break(state: u32) -> u32 {
    guard::call("dirlease_directory_break", ffi::NFSB_DIRLEASE_NO_BREAK, || {
        dirlease::directory_lease_break(state).unwrap_or(ffi::NFSB_DIRLEASE_NO_BREAK)
    })
}

unsafe extern "C" fn unlinked_break(state: u32) -> u32 {
    guard::call("dirlease_unlinked_break", ffi::NFSB_DIRLEASE_NO_BREAK, || {
        dirlease::unlinked_lease_break(state).unwrap_or(ffi::NFSB_DIRLEASE_NO_BREAK)
    })
}
