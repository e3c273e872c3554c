//! Thin, safe file I/O for the ACL bridge: the NFSv4 ACL xattr, the POSIX ACL xattrs, stat,
//! chmod and chown, and a tree walk that never follows symbolic links.
//!
//! # One inode per file
//!
//! A file is opened once with `O_PATH | O_NOFOLLOW` ([`FileHandle`]) and every later call
//! goes to that inode (`fstat`, `fchownat(AT_EMPTY_PATH)`, and xattrs and chmod through
//! `/proc/self/fd/N`), so a path swapped for a symlink halfway through cannot redirect a
//! chmod or an xattr write (this tool runs as root over trees users can write to). An
//! `O_PATH` open reads no data, so it breaks no SMB lease or kernel oplock held on the file.
//!
//! # Default xattr names
//!
//! Chosen so that a share that used Samba's `vfs_nfs4acl_xattr` keeps its ACLs:
//!
//! | `--encoding` | layout | default xattr |
//! |---|---|---|
//! | `ndr` (default) | Samba `nfs4acl.idl` | `security.nfs4acl_ndr` |
//! | `xdr` | Samba/TrueNAS `nfsacl41i` | `security.nfs4acl_xdr` |
//! | `nfs` | NFSv4.1 `nfsacl41` (Samba `nfs4acl_xattr:version = 41`) | `system.nfs4_acl` |
//! | `nfs40` | NFSv4.0 `nfsace4<>` (Samba `version = 40`) | `system.nfs4_acl` |
//!
//! `system.nfs4_acl` exists only on NFS client mounts and file systems that implement it;
//! on ext4 or xfs pass `--xattr` with a `security.` or `user.` name.
//!
//! # Write order ([`AclStore::write`])
//!
//! Nothing ever grants more than the old or the new ACL, not even for a moment, and an
//! interrupted write errs on the narrow side:
//!
//! 1. With an owner or group change: first the access ACL `u::---,g::---,o::---` (mode bits
//!    000: nobody but root gets in), then the chown. Otherwise the old `user::` entry would
//!    apply to the new owner (chown first) or the new one to the old owner (ACL first).
//! 2. The default ACL (directories): set, or removed when the ACL has no inheritable ACEs.
//! 3. The access ACL, in one `setxattr`: the kernel sets the mode's rwx bits from it in the
//!    same step (and keeps no xattr for a three-entry ACL), so there is no window in which
//!    the ACL and the mode disagree.
//! 4. The mode, only when setuid/setgid/sticky differ from the plan.
//! 5. The NFSv4 ACL xattr, last. Until then smbd still reads the old ACL, but smbd runs as
//!    the user and is bound by the new POSIX ACL, which never grants more than the new ACL.
//!    If this last step fails, the kernel already enforces the new (narrower-or-equal)
//!    mirror, and `check` reports the mismatch; writing the xattr first would instead leave
//!    the old, possibly wider, POSIX ACL in force over NFS after a failure.
//!
//! The stored ACL is always read before a write (see the CLI), so an xattr name the file
//! system does not support fails before anything changes.
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, XattrFlags, CWD};

use super::bridge::{FileAclState, FileMeta, WritePlan};
use super::nfs4::Nfs4Encoding;
use super::posix::xattr::XATTR_NAME_DEFAULT;
use super::posix::{AclKind, PosixAcl};

/// Where and how the NFSv4 ACL is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub encoding: Nfs4Encoding,
    pub xattr_name: String,
}

impl StoreConfig {
    /// `xattr_name` `None` picks [`default_xattr_name`].
    pub fn new(encoding: Nfs4Encoding, xattr_name: Option<&str>) -> Self {
        StoreConfig {
            encoding,
            xattr_name: xattr_name.map_or_else(|| default_xattr_name(encoding).to_string(), str::to_string),
        }
    }
}

impl Default for StoreConfig {
    /// `ndr` in `security.nfs4acl_ndr`, as Samba's `vfs_nfs4acl_xattr` by default.
    fn default() -> Self {
        StoreConfig::new(Nfs4Encoding::Ndr, None)
    }
}

/// The xattr Samba's `vfs_nfs4acl_xattr` uses for an encoding by default (see the module
/// docs).
pub fn default_xattr_name(encoding: Nfs4Encoding) -> &'static str {
    match encoding {
        Nfs4Encoding::Ndr => "security.nfs4acl_ndr",
        Nfs4Encoding::Xdr => "security.nfs4acl_xdr",
        Nfs4Encoding::Nfs40 | Nfs4Encoding::Nfs41 => "system.nfs4_acl",
    }
}

/// An I/O failure on one file: the path, what was being done, and why.
#[derive(Debug)]
pub struct StoreError {
    pub path: PathBuf,
    pub action: String,
    pub cause: StoreCause,
}

#[derive(Debug)]
pub enum StoreCause {
    Io(io::Error),
    /// The bytes read are not what the xattr should hold.
    Invalid(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            StoreCause::Io(error) => write!(f, "{}: {}: {error}", self.path.display(), self.action),
            StoreCause::Invalid(why) => write!(f, "{}: {}: {why}", self.path.display(), self.action),
        }
    }
}

impl std::error::Error for StoreError {}

/// One file, pinned by an `O_PATH | O_NOFOLLOW` descriptor. Never a symbolic link.
#[derive(Debug)]
pub struct FileHandle {
    fd: OwnedFd,
    path: PathBuf,
    is_dir: bool,
}

fn io_error(path: &Path, action: impl Into<String>, error: impl Into<io::Error>) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        action: action.into(),
        cause: StoreCause::Io(error.into()),
    }
}

impl FileHandle {
    /// Opens `path` without following a final symlink; a symlink is refused.
    pub fn open(path: &Path) -> Result<FileHandle, StoreError> {
        Self::open_in(CWD, path, path.to_path_buf())
    }

    /// Opens `name` inside the directory `dir`; `path` is what messages call it.
    pub fn open_at(dir: BorrowedFd<'_>, name: &OsStr, path: PathBuf) -> Result<FileHandle, StoreError> {
        Self::open_in(dir, name, path)
    }

    fn open_in(dir: BorrowedFd<'_>, name: impl AsRef<OsStr>, path: PathBuf) -> Result<FileHandle, StoreError> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(dir, name.as_ref(), flags, Mode::empty()).map_err(|e| io_error(&path, "opening", e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&path, "stat", e))?;
        let file_type = FileType::from_raw_mode(stat.st_mode);
        if file_type == FileType::Symlink {
            return Err(StoreError {
                path,
                action: "opening".into(),
                cause: StoreCause::Invalid("is a symbolic link; ACLs are not followed through links".into()),
            });
        }
        Ok(FileHandle {
            fd,
            path,
            is_dir: file_type == FileType::Directory,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// `/proc/self/fd/N`: path-based calls on it reach this inode and no other.
    fn proc_path(&self) -> CString {
        CString::new(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).expect("no NUL in a number")
    }

    pub fn stat(&self) -> Result<FileMeta, StoreError> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| io_error(&self.path, "stat", e))?;
        Ok(FileMeta {
            uid: stat.st_uid,
            gid: stat.st_gid,
            mode: stat.st_mode & 0o7777,
            is_dir: FileType::from_raw_mode(stat.st_mode) == FileType::Directory,
        })
    }

    /// The xattr's value, `None` when the file has no such xattr.
    pub fn get_xattr(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let action = || format!("reading xattr {name}");
        let proc_path = self.proc_path();
        // The value can change size between the query and the read: retry on ERANGE.
        for _ in 0..8 {
            let size = match rustix::fs::getxattr_query(proc_path.as_c_str(), name) {
                Ok(size) => size,
                Err(rustix::io::Errno::NODATA) => return Ok(None),
                Err(e) => return Err(io_error(&self.path, action(), e)),
            };
            let mut value = vec![0u8; size];
            if size == 0 {
                return Ok(Some(value));
            }
            match rustix::fs::getxattr(proc_path.as_c_str(), name, &mut value[..]) {
                Ok(read) => {
                    value.truncate(read);
                    return Ok(Some(value));
                }
                Err(rustix::io::Errno::RANGE) => continue,
                Err(rustix::io::Errno::NODATA) => return Ok(None),
                Err(e) => return Err(io_error(&self.path, action(), e)),
            }
        }
        Err(io_error(
            &self.path,
            action(),
            io::Error::other("the value kept changing size while being read"),
        ))
    }

    pub fn set_xattr(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        rustix::fs::setxattr(self.proc_path().as_c_str(), name, value, XattrFlags::empty())
            .map_err(|e| io_error(&self.path, format!("writing xattr {name}"), e))
    }

    /// Removes the xattr; a missing one is not an error.
    pub fn remove_xattr(&self, name: &str) -> Result<(), StoreError> {
        match rustix::fs::removexattr(self.proc_path().as_c_str(), name) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(io_error(&self.path, format!("removing xattr {name}"), e)),
        }
    }

    /// A POSIX ACL xattr, decoded; `None` when absent or empty.
    pub fn get_posix_acl(&self, kind: AclKind) -> Result<Option<PosixAcl>, StoreError> {
        let name = kind.xattr_name();
        let Some(bytes) = self.get_xattr(name)? else {
            return Ok(None);
        };
        let acl = PosixAcl::from_xattr(&bytes).map_err(|e| StoreError {
            path: self.path.clone(),
            action: format!("reading xattr {name}"),
            cause: StoreCause::Invalid(e.to_string()),
        })?;
        Ok((!acl.entries.is_empty()).then_some(acl))
    }

    pub fn set_posix_acl(&self, kind: AclKind, acl: &PosixAcl) -> Result<(), StoreError> {
        self.set_xattr(kind.xattr_name(), &acl.to_xattr())
    }

    /// chmod (0o7777 bits).
    pub fn chmod(&self, mode: u32) -> Result<(), StoreError> {
        rustix::fs::chmodat(
            CWD,
            self.proc_path().as_c_str(),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| io_error(&self.path, format!("chmod {:04o}", mode & 0o7777), e))
    }

    /// chown of this inode (never of a link target).
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), StoreError> {
        let owner = rustix::fs::Uid::from_raw(uid);
        let group = rustix::fs::Gid::from_raw(gid);
        rustix::fs::chownat(&self.fd, c"", Some(owner), Some(group), AtFlags::EMPTY_PATH)
            .map_err(|e| io_error(&self.path, format!("chown {uid}:{gid}"), e))
    }

    /// A directory stream on this inode (reopened through `/proc/self/fd`, so it is the
    /// same directory even if its name was swapped meanwhile).
    pub fn read_dir(&self) -> Result<Dir, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(self.proc_path().as_c_str(), flags, Mode::empty())
            .map_err(|e| io_error(&self.path, "opening directory", e))?;
        Dir::new(fd).map_err(|e| io_error(&self.path, "reading directory", e))
    }
}

/// Reads and writes one configuration's NFSv4 xattr plus the POSIX side.
#[derive(Debug, Clone)]
pub struct AclStore {
    pub config: StoreConfig,
}

/// What [`AclStore::write`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// The POSIX ACLs, mode and ownership only (repair from the stored ACL).
    PosixMirror,
    /// Everything, the NFSv4 xattr last.
    Everything,
}

impl AclStore {
    pub fn new(config: StoreConfig) -> Self {
        AclStore { config }
    }

    /// stat, the stored NFSv4 xattr and both POSIX ACLs.
    pub fn read(&self, file: &FileHandle) -> Result<FileAclState, StoreError> {
        let meta = file.stat()?;
        let stored = file.get_xattr(&self.config.xattr_name)?;
        let access = file.get_posix_acl(AclKind::Access)?;
        let default = if meta.is_dir {
            file.get_posix_acl(AclKind::Default)?
        } else {
            None
        };
        Ok(FileAclState {
            meta,
            stored,
            access,
            default,
        })
    }

    /// Carries out `plan` in the order of the module docs.
    pub fn write(&self, file: &FileHandle, plan: &WritePlan, scope: WriteScope) -> Result<(), StoreError> {
        if let Some((uid, gid)) = plan.chown {
            file.set_posix_acl(AclKind::Access, &PosixAcl::from_mode(0))?;
            file.chown(uid, gid)?;
        }
        if file.is_dir() {
            match &plan.default {
                Some(default) => file.set_posix_acl(AclKind::Default, default)?,
                None => file.remove_xattr(XATTR_NAME_DEFAULT)?,
            }
        }
        file.set_posix_acl(AclKind::Access, &plan.access)?;
        let now = file.stat()?;
        if now.mode != plan.mode {
            file.chmod(plan.mode)?;
        }
        if scope == WriteScope::Everything {
            file.set_xattr(&self.config.xattr_name, &plan.xattr)?;
        }
        Ok(())
    }
}

/// Files of a tree, depth first, streaming: one open directory per level and nothing else
/// is held, so a tree of any size walks in constant memory per level. Symbolic links are
/// never followed (nor yielded); [`TreeWalk::skipped_links`] counts them. Errors are yielded
/// in place of the file they concern and the walk goes on.
pub struct TreeWalk {
    root: Option<PathBuf>,
    stack: Vec<(Dir, PathBuf)>,
    deferred: Option<StoreError>,
    skipped_links: u64,
}

impl TreeWalk {
    pub fn new(root: &Path) -> Self {
        TreeWalk {
            root: Some(root.to_path_buf()),
            stack: Vec::new(),
            deferred: None,
            skipped_links: 0,
        }
    }

    pub fn skipped_links(&self) -> u64 {
        self.skipped_links
    }

    fn descend(&mut self, handle: &FileHandle) -> Result<(), StoreError> {
        if handle.is_dir() {
            let dir = handle.read_dir()?;
            self.stack.push((dir, handle.path().to_path_buf()));
        }
        Ok(())
    }

    fn next_entry(&mut self) -> Option<Result<FileHandle, StoreError>> {
        loop {
            let (dir, dir_path) = self.stack.last_mut()?;
            let entry = match dir.read() {
                None => {
                    self.stack.pop();
                    continue;
                }
                Some(Err(e)) => {
                    let error = io_error(dir_path, "reading directory", e);
                    self.stack.pop();
                    return Some(Err(error));
                }
                Some(Ok(entry)) => entry,
            };
            let name: &CStr = entry.file_name();
            let name_bytes = name.to_bytes();
            if name_bytes == b"." || name_bytes == b".." {
                continue;
            }
            if entry.file_type() == FileType::Symlink {
                self.skipped_links += 1;
                continue;
            }
            let name = OsStr::from_bytes(name_bytes).to_os_string();
            let path = dir_path.join(&name);
            let dir_fd = match dir.fd() {
                Ok(fd) => fd,
                Err(e) => return Some(Err(io_error(dir_path, "reading directory", e))),
            };
            match FileHandle::open_at(dir_fd, &name, path) {
                // DT_UNKNOWN file systems: the type shows only on open.
                Err(StoreError {
                    cause: StoreCause::Invalid(_),
                    ..
                }) if is_link_at(dir_fd, &name) => {
                    self.skipped_links += 1;
                    continue;
                }
                result => return Some(result),
            }
        }
    }
}

fn is_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
}

impl Iterator for TreeWalk {
    type Item = Result<FileHandle, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.deferred.take() {
            return Some(Err(error));
        }
        let item = match self.root.take() {
            Some(root) => FileHandle::open(&root),
            None => self.next_entry()?,
        };
        // Descend into a directory as it is yielded; if it cannot be listed, the error
        // (naming it) is the next item.
        if let Ok(handle) = &item {
            if let Err(error) = self.descend(handle) {
                self.deferred = Some(error);
            }
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::acl::bridge::{Bridge, CheckReport, Ownership};
    use crate::acl::nfs4::text;
    use crate::acl::posix::Tag;

    fn store() -> AclStore {
        AclStore::new(StoreConfig::default())
    }

    #[test]
    fn defaults_follow_samba_nfs4acl_xattr() {
        assert_eq!(StoreConfig::default().xattr_name, "security.nfs4acl_ndr");
        assert_eq!(
            StoreConfig::new(Nfs4Encoding::Xdr, None).xattr_name,
            "security.nfs4acl_xdr"
        );
        assert_eq!(
            StoreConfig::new(Nfs4Encoding::Nfs41, None).xattr_name,
            "system.nfs4_acl"
        );
        assert_eq!(
            StoreConfig::new(Nfs4Encoding::Ndr, Some("user.acl")).xattr_name,
            "user.acl"
        );
    }

    #[test]
    fn a_written_plan_reads_back_coherent_from_disk() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = FileHandle::open(&path).unwrap();
        let store = store();
        let state = store.read(&file).unwrap();
        assert_eq!(state.stored, None);

        let bridge = Bridge::new(store.config.encoding);
        let acl = text::parse("A::OWNER@:rwatTnNcCoy,A::4242:rwatncy,A:g:GROUP@:rtncy").unwrap();
        let plan = bridge.plan_write(&state.meta, &acl, Ownership::default()).unwrap();
        store.write(&file, &plan, WriteScope::Everything).unwrap();

        let state = store.read(&file).unwrap();
        assert_eq!(state.stored.as_deref(), Some(&plan.xattr[..]));
        assert_eq!(state.meta.mode, plan.mode);
        let access = state.access.clone().expect("named entries need an access ACL xattr");
        assert_eq!(access.perms_of(Tag::User(4242)), plan.access.perms_of(Tag::User(4242)));
        assert_eq!(bridge.check(&state).unwrap(), CheckReport::Coherent);
    }

    #[test]
    fn chmod_and_chown_reach_the_pinned_inode() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = FileHandle::open(&path).unwrap();
        // Renamed away and replaced by a symlink: calls still go to the opened file.
        let moved = temp.path().join("moved");
        std::fs::rename(&path, &moved).unwrap();
        let decoy = temp.path().join("decoy");
        std::fs::write(&decoy, b"y").unwrap();
        symlink(&decoy, &path).unwrap();
        // (chown first: it clears setuid, as the kernel does on every chown of a file.)
        file.chown(4242, 4343).unwrap();
        file.chmod(0o4750).unwrap();
        let meta = file.stat().unwrap();
        assert_eq!((meta.uid, meta.gid, meta.mode), (4242, 4343, 0o4750));
        use std::os::unix::fs::MetadataExt;
        let moved_meta = std::fs::metadata(&moved).unwrap();
        assert_eq!((moved_meta.uid(), moved_meta.mode() & 0o7777), (4242, 0o4750));
        let decoy_meta = std::fs::metadata(&decoy).unwrap();
        assert_ne!(decoy_meta.uid(), 4242, "the symlink's target is untouched");
        assert_ne!(decoy_meta.mode() & 0o7777, 0o4750);
    }

    #[test]
    fn symlinks_are_refused_and_never_followed() {
        let temp = tempfile::tempdir().unwrap();
        let target = temp.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let link = temp.path().join("link");
        symlink(&target, &link).unwrap();
        let error = FileHandle::open(&link).unwrap_err();
        assert!(
            error.to_string().contains("link") && error.to_string().contains("symbolic link"),
            "{error}"
        );

        let mut walk = TreeWalk::new(temp.path());
        let paths: Vec<PathBuf> = walk.by_ref().map(|item| item.unwrap().path().to_path_buf()).collect();
        assert_eq!(paths, vec![temp.path().to_path_buf(), target.clone()]);
        assert_eq!(walk.skipped_links(), 1);
    }

    #[test]
    fn missing_files_are_named_and_corrupt_stored_acls_refused() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("missing");
        let error = FileHandle::open(&missing).unwrap_err();
        assert!(error.to_string().starts_with(&missing.display().to_string()), "{error}");

        let path = temp.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = FileHandle::open(&path).unwrap();
        // Garbage in the NFSv4 xattr (a scratch trusted.* name, to touch nothing real).
        file.set_xattr("trusted.nfsbridge_test", b"\x01\x02").unwrap();
        let store = AclStore::new(StoreConfig::new(Nfs4Encoding::Ndr, Some("trusted.nfsbridge_test")));
        let state = store.read(&file).unwrap();
        let error = Bridge::new(Nfs4Encoding::Ndr).check(&state).unwrap_err();
        assert!(error.to_string().contains("does not decode"), "{error}");
        file.remove_xattr("trusted.nfsbridge_test").unwrap();
        file.remove_xattr("trusted.nfsbridge_test").unwrap();
    }
}
