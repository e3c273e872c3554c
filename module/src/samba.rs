//! Safe wrappers over the shim's primitives: one file of a share, Samba's identity mapping,
//! and NTSTATUS values. Every `unsafe` block of the ACL bridge lives here.
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::thread::LocalKey;
use std::ffi::{c_char, CStr, CString};
use std::time::{Duration, Instant};

use nfsbridge::acl::idcache::{IdCache, IdCacheTimes};
use nfsbridge::acl::idmap::{IdMap, IdMapError, UnixId};
use nfsbridge::acl::statecache::{trusts_ctime, Stamp, StateCache};
use nfsbridge::acl::sid::Sid;

use crate::ffi;

/// NTSTATUS values the module returns itself.
pub mod status {
    pub const OK: u32 = 0;
    pub const UNSUCCESSFUL: u32 = 0xC000_0001;
    pub const INVALID_SECURITY_DESCR: u32 = 0xC000_0079;
    pub const INVALID_OWNER: u32 = 0xC000_005A;
    pub const INVALID_PRIMARY_GROUP: u32 = 0xC000_005B;
    pub const NONE_MAPPED: u32 = 0xC000_0073;
    pub const INTERNAL_DB_CORRUPTION: u32 = 0xC000_00E4;
    pub const INTERNAL_ERROR: u32 = 0xC000_00E5;
    pub const NOT_SUPPORTED: u32 = 0xC000_00BB;
}

/// An errno value from the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub fn ntstatus(self) -> u32 {
        // SAFETY: a pure table lookup in Samba.
        unsafe { ffi::nfsb_ntstatus_from_errno(self.0) }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

fn errno_result(err: i32) -> Result<(), Errno> {
    if err == 0 {
        Ok(())
    } else {
        Err(Errno(err))
    }
}

/// What the ACL bridge knows of a file from a fresh stat.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub is_dir: bool,
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
}

impl FileInfo {
    /// What must be unchanged for a cached read of the file's ACL xattrs to stand.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            dev: self.dev,
            ino: self.ino,
            ctime_sec: self.ctime_sec,
            ctime_nsec: self.ctime_nsec,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// One file (files_struct) of a share, during one VFS call.
///
/// # Invariants
/// `handle` and `fsp` are the live pointers smbd passed to the current callback; a `File`
/// never outlives that callback.
pub struct File {
    handle: *mut ffi::nfsb_handle,
    fsp: *mut ffi::nfsb_fsp,
}

impl File {
    /// # Safety
    /// `handle` and `fsp` must be the pointers of the VFS call in progress.
    pub unsafe fn new(handle: *mut ffi::nfsb_handle, fsp: *mut ffi::nfsb_fsp) -> Self {
        File { handle, fsp }
    }

    /// A fresh stat of the file (smbd's cached one is updated too).
    pub fn info(&self) -> Option<FileInfo> {
        let mut info = ffi::nfsb_file_info {
            uid: 0,
            gid: 0,
            mode: 0,
            is_dir: false,
            dev: 0,
            ino: 0,
            ctime_sec: 0,
            ctime_nsec: 0,
        };
        // SAFETY: fsp is live (type invariant); info is a valid out pointer.
        let valid = unsafe { ffi::nfsb_fsp_info(self.fsp, &mut info) };
        valid.then_some(FileInfo {
            uid: info.uid,
            gid: info.gid,
            mode: info.mode,
            is_dir: info.is_dir,
            dev: info.dev,
            ino: info.ino,
            ctime_sec: info.ctime_sec,
            ctime_nsec: info.ctime_nsec,
        })
    }

    /// The file's name for log lines.
    pub fn name(&self) -> String {
        // SAFETY: fsp is live; the shim returns a NUL-terminated string owned by smbd.
        unsafe { c_text(ffi::nfsb_fsp_name(self.fsp)) }
    }

    /// The xattr's value, or `None` when the file has no such xattr.
    pub fn xattr(&self, name: &str) -> Result<Option<Vec<u8>>, Errno> {
        let name = c_name(name);
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: handle/fsp are live; buf is writable for buf.len() bytes.
            let got = unsafe { ffi::nfsb_next_fgetxattr(self.handle, self.fsp, name.as_ptr(), buf.as_mut_ptr(), buf.len()) };
            if got == -i64::from(libc::ENODATA) {
                return Ok(None);
            }
            if got == -i64::from(libc::ERANGE) {
                // The value grew between calls: ask for its size and retry.
                // SAFETY: size query with a null buffer of length 0.
                let size = unsafe { ffi::nfsb_next_fgetxattr(self.handle, self.fsp, name.as_ptr(), std::ptr::null_mut(), 0) };
                if size < 0 {
                    return Err(Errno(-size as i32));
                }
                buf.resize(size as usize + 1, 0);
                continue;
            }
            if got < 0 {
                return Err(Errno(-got as i32));
            }
            buf.truncate(got as usize);
            return Ok(Some(buf));
        }
    }

    pub fn set_xattr(&self, name: &str, value: &[u8], as_root: bool) -> Result<(), Errno> {
        let name = c_name(name);
        // SAFETY: handle/fsp are live; value is readable for its length.
        errno_result(unsafe { ffi::nfsb_next_fsetxattr(self.handle, self.fsp, name.as_ptr(), value.as_ptr(), value.len(), as_root) })
    }

    /// Removes the xattr; a missing one is not an error.
    pub fn remove_xattr(&self, name: &str, as_root: bool) -> Result<(), Errno> {
        let name = c_name(name);
        // SAFETY: handle/fsp are live.
        match errno_result(unsafe { ffi::nfsb_next_fremovexattr(self.handle, self.fsp, name.as_ptr(), as_root) }) {
            Err(Errno(e)) if e == libc::ENODATA => Ok(()),
            other => other,
        }
    }

    pub fn chmod(&self, mode: u32, as_root: bool) -> Result<(), Errno> {
        // SAFETY: handle/fsp are live.
        errno_result(unsafe { ffi::nfsb_next_fchmod(self.handle, self.fsp, mode, as_root) })
    }

    /// chown; `None` leaves that id as it is.
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>, as_root: bool) -> Result<(), Errno> {
        // SAFETY: handle/fsp are live.
        errno_result(unsafe {
            ffi::nfsb_next_fchown(self.handle, self.fsp, uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX), as_root)
        })
    }

    /// The uid smbd acts as for the current request.
    pub fn current_uid(&self) -> u32 {
        // SAFETY: handle is live.
        unsafe { ffi::nfsb_handle_current_uid(self.handle) }
    }
}

/// Root's privileges for the lifetime of the value, so that a batch of privileged calls pays
/// for one switch: the thread's permitted capabilities made effective with the user's ids
/// kept (smbd's become_root / unbecome_root where the kernel refuses that; see the shim).
/// Dropped even when a panic unwinds.
///
/// # Invariants
/// Created and dropped on smbd's main thread within one call into the module (a VFS call, or
/// the lease code answering a break from the main loop); never nested.
pub struct Privileged(());

impl Privileged {
    pub fn enter() -> Self {
        // SAFETY: only raises this thread's effective capabilities (or switches smbd's
        // security context); Drop restores them.
        unsafe { ffi::nfsb_privilege_raise() };
        Privileged(())
    }
}

impl Drop for Privileged {
    fn drop(&mut self) {
        // SAFETY: paired with the raise in enter() (type invariant).
        unsafe { ffi::nfsb_privilege_drop() };
    }
}

thread_local! {
    /// Samba's identity-mapping answers, for this smbd process: VFS calls run on smbd's main
    /// thread only. See [`nfsbridge::acl::idcache`] for what is kept and for how long.
    static ID_CACHE: RefCell<IdCache> = RefCell::new(IdCache::default());
    /// The ACL xattrs of the files this smbd process read last, see
    /// [`nfsbridge::acl::statecache`].
    static STATE_CACHE: RefCell<StateCache> = RefCell::new(StateCache::default());
}

/// Runs `f` on one of the process's caches; `None` if it is not reachable (thread exit, or a
/// call re-entered the module while it was borrowed).
fn with_cache<C: 'static, T>(cache: &'static LocalKey<RefCell<C>>, f: impl FnOnce(&mut C) -> T) -> Option<T> {
    cache.try_with(|cache| cache.try_borrow_mut().ok().map(|mut cache| f(&mut cache))).ok().flatten()
}

/// The turn of smbd's event loop this call runs in, `None` when it cannot be told (the ACL
/// state cache keeps a read of a file changed in the last seconds for its turn only).
pub fn loop_turn() -> Option<u64> {
    // SAFETY: no arguments; reads the shim's counter and tevent's current trace callback.
    let turn = unsafe { ffi::nfsb_loop_turn() };
    (turn != 0).then_some(turn)
}

/// Runs `f` on the process's ACL state cache; `None` if it is not reachable.
pub fn with_state_cache<T>(f: impl FnOnce(&mut StateCache) -> T) -> Option<T> {
    with_cache(&STATE_CACHE, f)
}

/// The device of `path` if it is on a file system whose ctimes the ACL state cache may trust
/// ([`nfsbridge::acl::statecache::trusts_ctime`]); `None` otherwise or when it cannot be told.
pub fn ctime_trusted_dev(path: &str) -> Option<u64> {
    let path = CString::new(path).ok()?;
    // SAFETY: an all-zero statfs and stat are valid values of these plain C structs.
    let (mut fs, mut st): (libc::statfs, libc::stat) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: path is NUL-terminated; fs and st are valid out pointers for the calls.
    let ok = unsafe { libc::statfs(path.as_ptr(), &mut fs) == 0 && libc::stat(path.as_ptr(), &mut st) == 0 };
    // f_type is a signed word on some targets; the magic numbers are 32-bit.
    (ok && trusts_ctime(fs.f_type as u64 & 0xFFFF_FFFF)).then_some(st.st_dev)
}

/// Samba's own identity mapping: passdb, idmap and winbind as smbd is configured.
///
/// Answers are remembered for the life of the value (one VFS call), since one call maps the
/// same few SIDs and ids several times and each Samba lookup goes through its caches' tdbs;
/// and across calls in the process-wide [`IdCache`] for the share's `idmap cache time`
/// (with Samba's `idmap negative cache time` for "no mapping", if shorter).
pub struct SambaIdMap {
    times: IdCacheTimes,
    /// When the call began: answers looked up during it count as looked up then.
    now: Instant,
    sids: RefCell<HashMap<Sid, Result<UnixId, IdMapError>>>,
    users: RefCell<HashMap<u32, Result<Sid, IdMapError>>>,
    groups: RefCell<HashMap<u32, Result<Sid, IdMapError>>>,
}

impl SambaIdMap {
    /// A map for one VFS call of a share whose `idmap cache time` is `cache_seconds`.
    pub fn new(cache_seconds: u64) -> Self {
        let times = if cache_seconds == 0 {
            IdCacheTimes::OFF
        } else {
            // SAFETY: reads one of Samba's global parameters.
            let negative = unsafe { ffi::nfsb_idmap_negative_cache_time() };
            IdCacheTimes::new(Duration::from_secs(cache_seconds), Duration::from_secs(u64::from(negative)))
        };
        SambaIdMap {
            times,
            now: Instant::now(),
            sids: RefCell::default(),
            users: RefCell::default(),
            groups: RefCell::default(),
        }
    }

    /// The answer for one key: from this call's `memo`, else from the process's cache
    /// (`cached`), else from Samba (`lookup`), remembered in both (`remember` for the cache).
    fn answer<K: Eq + Hash, V: Clone>(
        memo: &RefCell<HashMap<K, Result<V, IdMapError>>>,
        key: K,
        cached: impl FnOnce(&mut IdCache) -> Option<Result<V, IdMapError>>,
        remember: impl FnOnce(&mut IdCache, &Result<V, IdMapError>),
        lookup: impl FnOnce() -> Result<V, IdMapError>,
    ) -> Result<V, IdMapError> {
        if let Some(answer) = memo.borrow().get(&key) {
            return answer.clone();
        }
        let answer = with_cache(&ID_CACHE, cached).flatten().unwrap_or_else(|| {
            let answer = lookup();
            with_cache(&ID_CACHE, |cache| remember(cache, &answer));
            answer
        });
        memo.borrow_mut().insert(key, answer.clone());
        answer
    }

    fn lookup_sid(sid: &Sid) -> Result<UnixId, IdMapError> {
        let raw = to_raw_sid(sid);
        let mut id = 0u32;
        // SAFETY: raw is a valid nfsb_sid for the call; id is a valid out pointer.
        let kind = unsafe { ffi::nfsb_sid_to_unixid(&raw, &mut id) };
        match kind as u32 {
            ffi::NFSB_ID_TYPE_UID => Ok(UnixId::Uid(id)),
            ffi::NFSB_ID_TYPE_GID => Ok(UnixId::Gid(id)),
            ffi::NFSB_ID_TYPE_BOTH => Ok(UnixId::Both(id)),
            _ => Err(IdMapError::SidNotMapped(sid.clone())),
        }
    }

    fn lookup_uid(uid: u32) -> Result<Sid, IdMapError> {
        let mut raw = empty_raw_sid();
        // SAFETY: raw is a valid out pointer for the call.
        unsafe { ffi::nfsb_uid_to_sid(uid, &mut raw) };
        from_raw_sid(&raw).ok_or(IdMapError::UidNotMapped(uid))
    }

    fn lookup_gid(gid: u32) -> Result<Sid, IdMapError> {
        let mut raw = empty_raw_sid();
        // SAFETY: as in lookup_uid.
        unsafe { ffi::nfsb_gid_to_sid(gid, &mut raw) };
        from_raw_sid(&raw).ok_or(IdMapError::GidNotMapped(gid))
    }
}

impl IdMap for SambaIdMap {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        let (now, times) = (self.now, &self.times);
        Self::answer(
            &self.sids,
            sid.clone(),
            |cache| cache.sid_to_unix(sid, now, times),
            |cache, answer| cache.put_sid(sid, answer, now, times),
            || Self::lookup_sid(sid),
        )
    }

    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        let (now, times) = (self.now, &self.times);
        Self::answer(
            &self.users,
            uid,
            |cache| cache.uid_to_sid(uid, now, times),
            |cache, answer| cache.put_uid(uid, answer, now, times),
            || Self::lookup_uid(uid),
        )
    }

    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        let (now, times) = (self.now, &self.times);
        Self::answer(
            &self.groups,
            gid,
            |cache| cache.gid_to_sid(gid, now, times),
            |cache, answer| cache.put_gid(gid, answer, now, times),
            || Self::lookup_gid(gid),
        )
    }
}

const MAX_SUB_AUTHS: usize = ffi::NFSB_SID_MAX_SUB_AUTHS as usize;

fn empty_raw_sid() -> ffi::nfsb_sid {
    ffi::nfsb_sid { sid_rev_num: 0, num_auths: 0, id_auth: [0; 6], sub_auths: [0; MAX_SUB_AUTHS] }
}

fn to_raw_sid(sid: &Sid) -> ffi::nfsb_sid {
    let mut raw = empty_raw_sid();
    let subs = sid.sub_authorities();
    raw.sid_rev_num = Sid::REVISION;
    // A Sid has at most 15 sub-authorities and a 48-bit authority (its invariants).
    raw.num_auths = subs.len() as i8;
    raw.id_auth.copy_from_slice(&sid.authority().to_be_bytes()[2..]);
    raw.sub_auths[..subs.len()].copy_from_slice(subs);
    raw
}

/// `None` for what is not a revision-1 SID (Samba's zeroed SID when a lookup failed).
fn from_raw_sid(raw: &ffi::nfsb_sid) -> Option<Sid> {
    let count = usize::try_from(raw.num_auths).ok().filter(|&n| n <= MAX_SUB_AUTHS)?;
    if raw.sid_rev_num != Sid::REVISION {
        return None;
    }
    let mut authority = [0u8; 8];
    authority[2..].copy_from_slice(&raw.id_auth);
    Sid::new(u64::from_be_bytes(authority), &raw.sub_auths[..count]).ok()
}

/// Hands fget_nt_acl's security descriptor to smbd.
pub fn deliver_sd(result: *mut ffi::nfsb_sd_result, bytes: &[u8]) -> u32 {
    // SAFETY: result is the live result slot of the fget_nt_acl call in progress; the shim
    // copies the bytes into smbd's talloc context.
    unsafe { ffi::nfsb_sd_result_set(result, bytes.as_ptr(), bytes.len()) }
}

fn c_name(name: &str) -> CString {
    CString::new(name).unwrap_or_else(|_| CString::new(name.replace('\0', "")).expect("NULs removed"))
}

/// Copies a C string from smbd.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string valid for the call.
pub unsafe fn c_text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}
