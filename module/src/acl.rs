//! The ACL bridge inside smbd: `fget_nt_acl` / `fset_nt_acl` through the ACL core.
//!
//! The security descriptor is stored as an NFSv4 ACL in the share's ACL xattr and mirrored
//! into the POSIX ACL and mode that the kernel and nfsd enforce. Which ACL a file has now
//! when its POSIX side was changed outside SMB (chmod, setfacl, NFS SETATTR) is the coherence
//! rule of [`nfsbridge::acl::bridge`], shared with the `nfsbridge acl` CLI; this file only adds
//! smbd's I/O, Samba's identity mapping and the SMB presentation of POSIX-derived rights.
use nfsbridge::acl::bridge::{
    already_written, AccessChange, Bridge, BridgeError, FileAclState, FileMeta, Origin, Ownership, WritePlan,
};
use nfsbridge::acl::idmap::IdMap;
use nfsbridge::acl::mapping::{nfs4_to_sd, sd_to_nfs4, FileContext, MappingOptions, Nfs4Acls, NullDacl};
use nfsbridge::acl::nfs4::{Nfs4AceType, Nfs4Acl, Nfs4Encoding};
use nfsbridge::acl::posix::{widen_for_smb, PosixAcl};
use nfsbridge::acl::sd::{binary, control, SecurityDescriptor};
use nfsbridge::acl::statecache::AclXattrs;
use nfsbridge::config::{AclEncoding, ModuleConfig};

use std::time::SystemTime;

use crate::samba::{loop_turn, status, with_state_cache, Errno, File, FileInfo, Privileged, SambaIdMap};

const POSIX_ACCESS: &str = "system.posix_acl_access";
const POSIX_DEFAULT: &str = "system.posix_acl_default";

// security_info bits (MS-DTYP 2.4.7 SECURITY_INFORMATION).
const SECINFO_OWNER: u32 = 0x1;
const SECINFO_GROUP: u32 = 0x2;
const SECINFO_DACL: u32 = 0x4;
const SECINFO_SACL: u32 = 0x8;

/// The control bits that belong to the DACL / the SACL of a descriptor.
const DACL_BITS: u16 = control::DACL_PRESENT | control::DACL_AUTO_INHERITED | control::DACL_PROTECTED | control::DACL_DEFAULTED;
const SACL_BITS: u16 = control::SACL_PRESENT | control::SACL_AUTO_INHERITED | control::SACL_PROTECTED | control::SACL_DEFAULTED;

/// Why an ACL request failed: the NTSTATUS for the client and the log line's text.
#[derive(Debug)]
pub struct AclFailure {
    pub status: u32,
    pub message: String,
}

fn failure(status: u32, message: impl Into<String>) -> AclFailure {
    AclFailure { status, message: message.into() }
}

fn io_failure(what: &str, err: Errno) -> AclFailure {
    failure(err.ntstatus(), format!("{what}: {err}"))
}

fn encoding(config: &ModuleConfig) -> Nfs4Encoding {
    match config.acl_encoding {
        AclEncoding::Ndr => Nfs4Encoding::Ndr,
        AclEncoding::Xdr => Nfs4Encoding::Xdr,
        // Samba's nfs4acl_xattr writes the NFSv4.1 layout for `encoding = nfs` by default.
        AclEncoding::Nfs => Nfs4Encoding::Nfs41,
    }
}

/// The file's ACL as it stands now (per the bridge's coherence rule), and what it was derived
/// from: the stored xattr and the POSIX state (a set compares its plan with them, and
/// restores the POSIX state if a write fails half-way).
struct CurrentAcl {
    info: FileInfo,
    acl: Nfs4Acl,
    disk: FileAclState,
}

fn read_posix(file: &File, name: &str) -> Result<Option<PosixAcl>, AclFailure> {
    match file.xattr(name) {
        Ok(Some(bytes)) => PosixAcl::from_xattr(&bytes)
            .map(Some)
            .map_err(|e| failure(status::INTERNAL_DB_CORRUPTION, format!("{name} is corrupt: {e}"))),
        Ok(None) => Ok(None),
        // No POSIX ACL support on this file system: the mode is all there is.
        Err(Errno(e)) if e == libc::EOPNOTSUPP => Ok(None),
        Err(err) => Err(io_failure(&format!("reading {name}"), err)),
    }
}

fn bridge_failure(err: BridgeError) -> AclFailure {
    let status = match err {
        BridgeError::StoredAclCorrupt { .. } | BridgeError::PosixInvalid { .. } => status::INTERNAL_DB_CORRUPTION,
        BridgeError::Unencodable { .. } => status::NOT_SUPPORTED,
    };
    failure(status, err.to_string())
}

/// `whole`: the caller needs the file's DACL as it stands (a get, or a set that keeps the
/// DACL). A set that replaces the DACL only needs the stored SACL and the POSIX state to
/// restore on failure, and skips the coherence comparison (a POSIX mirror computation).
/// `turn`: the loop turn whose snapshot a get may share ([`read_acl_xattrs`]); `None` for a set.
fn current_acl(
    file: &File,
    config: &ModuleConfig,
    whole: bool,
    cache_dev: Option<u64>,
    turn: Option<u64>,
) -> Result<CurrentAcl, AclFailure> {
    // Taken before the stat: the state cache's racy-timestamp rule compares the file's ctime
    // with the moment the read began.
    let began = SystemTime::now();
    let info = file.info().ok_or_else(|| failure(status::INTERNAL_ERROR, "smbd has no valid stat for the file"))?;
    let AclXattrs { stored, access, default, .. } = read_acl_xattrs(file, config, info, cache_dev, began, turn)?;
    let bridge = Bridge::new(encoding(config));
    let with_xattr = |what: BridgeError| {
        let mut f = bridge_failure(what);
        f.message = format!("{} ({}): {}", config.acl_xattr, config.acl_encoding.keyword(), f.message);
        f
    };
    let disk = FileAclState { meta: meta(info), stored, access, default };
    let acl = match (&disk.stored, config.posix_mirror) {
        // Without the mirror the stored ACL is the whole truth (as with vfs_nfs4acl_xattr).
        (Some(bytes), false) => bridge.decode_stored(bytes).map_err(with_xattr)?,
        (Some(bytes), true) if !whole => bridge.decode_stored(bytes).map_err(with_xattr)?,
        (None, _) if !whole => Nfs4Acl::default(),
        _ => {
            let effective = bridge.effective_nfs4(&disk).map_err(with_xattr)?;
            let mut acl = effective.acl;
            match effective.origin {
                Origin::Stored => {}
                Origin::PosixOnly => widen_for_smb(&mut acl, info.is_dir),
                Origin::Rebuilt { access, default_changed } => {
                    tracing::info!(
                        "{}: permissions changed outside SMB ({access:?}{}); presenting the ACL they now mean",
                        file.name(),
                        if default_changed { ", default ACL changed" } else { "" }
                    );
                    if access == AccessChange::Entries {
                        widen_for_smb(&mut acl, info.is_dir);
                    }
                }
            }
            acl
        }
    };
    Ok(CurrentAcl { info, acl, disk })
}

/// The file's NFSv4 ACL xattr and POSIX ACLs: from the process's state cache when a fresh
/// stat (`info`, taken after `began`) proves that they cannot have changed since they were
/// cached, or they were read in this same loop `turn` of smbd's (one request: smbd's access
/// checks read a directory's ACL up to three times while creating one file in it) and the stat
/// is unchanged ([`nfsbridge::acl::statecache`]); else read (and cached) now. `cache_dev`: the
/// device whose ctimes the cache may trust (the share's, when it is a local file system).
fn read_acl_xattrs(
    file: &File,
    config: &ModuleConfig,
    info: FileInfo,
    cache_dev: Option<u64>,
    began: SystemTime,
    turn: Option<u64>,
) -> Result<AclXattrs, AclFailure> {
    let cacheable = cache_dev == Some(info.dev);
    let stamp = info.stamp();
    if cacheable {
        if let Some(hit) =
            with_state_cache(|cache| cache.get(&stamp, &config.acl_xattr, began, turn).cloned()).flatten()
        {
            return Ok(hit);
        }
    }
    let stored = file
        .xattr(&config.acl_xattr)
        .map_err(|err| io_failure(&format!("reading {}", config.acl_xattr), err))?;
    let access = read_posix(file, POSIX_ACCESS)?;
    let default = if info.is_dir { read_posix(file, POSIX_DEFAULT)? } else { None };
    let xattrs = AclXattrs { xattr_name: config.acl_xattr.clone(), stored, access, default };
    if cacheable {
        with_state_cache(|cache| cache.put(stamp, began, turn, xattrs.clone()));
    }
    Ok(xattrs)
}

fn meta(info: FileInfo) -> FileMeta {
    FileMeta { uid: info.uid, gid: info.gid, mode: info.mode, is_dir: info.is_dir }
}

fn context(info: FileInfo) -> FileContext {
    FileContext { uid: info.uid, gid: info.gid, is_directory: info.is_dir }
}

fn to_sd(current: &CurrentAcl, idmap: &dyn IdMap) -> Result<SecurityDescriptor, AclFailure> {
    let acls = Nfs4Acls::from_combined(&current.acl);
    nfs4_to_sd(&acls, &context(current.info), idmap, &MappingOptions::default())
        .map(|m| m.sd)
        .map_err(|e| failure(status::NONE_MAPPED, format!("cannot present the ACL as a security descriptor: {e}")))
}

/// Keeps only the parts of `sd` that `security_info` asks for.
fn select_parts(mut sd: SecurityDescriptor, security_info: u32) -> SecurityDescriptor {
    if security_info & SECINFO_OWNER == 0 {
        sd.owner = None;
    }
    if security_info & SECINFO_GROUP == 0 {
        sd.group = None;
    }
    if security_info & SECINFO_DACL == 0 {
        sd.dacl = None;
        sd.control &= !DACL_BITS;
    }
    if security_info & SECINFO_SACL == 0 {
        sd.sacl = None;
        sd.control &= !SACL_BITS;
    }
    sd
}

/// SMB_VFS_FGET_NT_ACL: the self-relative security descriptor of `file`.
pub fn get_nt_acl(file: &File, config: &ModuleConfig, cache_dev: Option<u64>, security_info: u32) -> Result<Vec<u8>, AclFailure> {
    let current = current_acl(file, config, true, cache_dev, loop_turn())?;
    let sd = select_parts(to_sd(&current, &SambaIdMap::new(config.idmap_cache_time))?, security_info);
    binary::encode(&sd).map_err(|e| failure(status::INTERNAL_ERROR, format!("cannot encode the security descriptor: {e}")))
}

/// SMB_VFS_FSET_NT_ACL: store `sd_bytes` (the parts in `security_info_sent`) as the file's
/// NFSv4 ACL and mirror it.
pub fn set_nt_acl(
    file: &File,
    config: &ModuleConfig,
    cache_dev: Option<u64>,
    security_info_sent: u32,
    sd_bytes: &[u8],
) -> Result<(), AclFailure> {
    let new = binary::decode(sd_bytes)
        .map_err(|e| failure(status::INVALID_SECURITY_DESCR, format!("malformed security descriptor from the client: {e}")))?;
    let replaces_dacl = security_info_sent & SECINFO_DACL != 0;
    // No snapshot of the turn: what a set keeps and restores is read now (or settled).
    let mut current = current_acl(file, config, !replaces_dacl, cache_dev, None)?;
    let idmap = SambaIdMap::new(config.idmap_cache_time);
    if replaces_dacl {
        // Only the stored SACL survives; do not map DACL ACEs that are about to be replaced.
        current.acl.aces.retain(|ace| matches!(ace.ace_type, Nfs4AceType::Audit | Nfs4AceType::Alarm));
    }
    // What the set keeps of the current ACL, as a descriptor. When nothing is kept (the DACL
    // is replaced and there is no stored SACL) there is nothing to map, and no idmap lookup
    // for the file's owner and group SIDs (each a passdb lookup as root in Samba).
    let mut sd = if replaces_dacl && current.acl.aces.is_empty() {
        SecurityDescriptor::new()
    } else {
        to_sd(&current, &idmap)?
    };
    // Owner and group: what the client sent, else the file's own ids (resolve_owner), never a
    // round trip of the file's ids through their SIDs.
    sd.owner = if security_info_sent & SECINFO_OWNER != 0 { new.owner.clone() } else { None };
    sd.group = if security_info_sent & SECINFO_GROUP != 0 { new.group.clone() } else { None };
    if security_info_sent & SECINFO_DACL != 0 {
        sd.dacl = new.dacl.clone();
        sd.control = (sd.control & !DACL_BITS) | (new.control & DACL_BITS) | control::DACL_PRESENT;
    }
    if security_info_sent & SECINFO_SACL != 0 {
        sd.sacl = new.sacl.clone();
        sd.control = (sd.control & !SACL_BITS) | (new.control & SACL_BITS);
    }

    // OWNER@/GROUP@ in the stored ACL mean the file's owner after this call, so the ACEs are
    // mapped against the new owner; everything is mapped and planned before anything is
    // written, so a refused descriptor changes nothing.
    let info = current.info;
    let owner = resolve_owner(&mut sd, &idmap, info, file)?;
    let after = FileInfo { uid: owner.uid, gid: owner.gid, ..info };
    // A NULL DACL grants everyone everything: store that explicitly rather than "no ACL".
    let options = MappingOptions { null_dacl: NullDacl::EveryoneFullAccess, ..MappingOptions::default() };
    let mapped = sd_to_nfs4(&sd, &context(after), &idmap, &options)
        .map_err(|e| failure(status::NONE_MAPPED, format!("the security descriptor cannot be stored: {e}")))?;
    let acl = mapped
        .acls
        .to_combined()
        .map_err(|e| failure(status::INVALID_SECURITY_DESCR, format!("the security descriptor cannot be stored: {e}")))?
        .unwrap_or_default();
    let plan = Bridge::new(encoding(config))
        .plan_write(&meta(after), &acl, Ownership::default())
        .map_err(bridge_failure)?;
    for narrowed in &plan.narrowed {
        tracing::debug!("{}: POSIX mirror narrower than the Windows ACL: {:?}", file.name(), narrowed);
    }
    let chown = owner.uid != info.uid || owner.gid != info.gid;
    // Whatever happens next, no later read may take the file's xattrs from before this call.
    with_state_cache(|cache| cache.forget(info.dev, info.ino));
    if chown {
        change_owner(file, info, &owner)?;
    }
    // What the file already holds is not written again (a client re-applying the ACL it
    // read, smbd applying the same inherited ACL); with a chown the POSIX side always is.
    let done = already_written(&plan, &current.disk);
    let write_posix = config.posix_mirror && (chown || !done.posix);
    if !write_posix && done.xattr {
        return Ok(());
    }
    // security.* and POSIX ACL xattrs need privilege; smbd has checked WRITE_DAC.
    let _privileged = Privileged::enter();
    if write_posix {
        write_mirror(file, &plan, &current)?;
    }
    if !done.xattr {
        if let Err(err) = file.set_xattr(&config.acl_xattr, &plan.xattr, false) {
            // Put the kernel back where it was, so it never enforces an ACL SMB does not show.
            if write_posix {
                restore_posix(file, &current);
            }
            return Err(io_failure(&format!("writing {}", config.acl_xattr), err));
        }
    }
    Ok(())
}

/// Applies an owner/group change smbd has authorised (it checks WRITE_OWNER before passing
/// SECINFO_OWNER/GROUP). As in Windows, WRITE_OWNER lets a user set any primary group and
/// take ownership for themselves, but not give a file away: those two are done as root, any
/// other owner change as the user, so that the kernel decides (INVALID_OWNER when it refuses).
fn change_owner(file: &File, info: FileInfo, owner: &Owner) -> Result<(), AclFailure> {
    let uid = (owner.uid != info.uid).then_some(owner.uid);
    let gid = (owner.gid != info.gid).then_some(owner.gid);
    let as_root = uid.is_none_or(|uid| uid == file.current_uid());
    file.chown(uid, gid, as_root).map_err(|err| {
        let status = match (err.0, uid) {
            (libc::EPERM, Some(_)) => status::INVALID_OWNER,
            (libc::EPERM, None) => status::INVALID_PRIMARY_GROUP,
            _ => err.ntstatus(),
        };
        failure(status, format!("changing owner/group to {}:{} failed: {err}", owner.uid, owner.gid))
    })
}

struct Owner {
    uid: u32,
    gid: u32,
}

/// The uid/gid the descriptor's owner and group SIDs stand for. An SID kept as the file's
/// current id (below) is replaced in `sd` by that id's SID, so the mapping sees one owner.
fn resolve_owner(sd: &mut SecurityDescriptor, idmap: &dyn IdMap, info: FileInfo, file: &File) -> Result<Owner, AclFailure> {
    // Like Samba with `force unknown acl user` (which vfs_nfs4acl_xattr sets): an owner or
    // group SID with no Unix id keeps the file's current one. smbd sends the creator's primary
    // group (often "Domain Users", unmapped) when it applies an inherited ACL to a new file.
    // The ACEs themselves are never treated this way: an unmappable SID in an ACE is an error.
    let sid_failure = |what: &str, e: nfsbridge::acl::idmap::IdMapError| failure(status::NONE_MAPPED, format!("{what}: {e}"));
    let uid = match sd.owner.as_ref().map(|sid| (sid.clone(), idmap.sid_to_unix(sid).ok().and_then(|id| id.as_uid()))) {
        Some((_, Some(uid))) => uid,
        Some((sid, None)) => {
            tracing::info!("{}: owner SID {sid} maps to no Unix user; keeping uid {}", file.name(), info.uid);
            sd.owner = Some(idmap.uid_to_sid(info.uid).map_err(|e| sid_failure("file owner", e))?);
            info.uid
        }
        None => info.uid,
    };
    let gid = match sd.group.as_ref().map(|sid| (sid.clone(), idmap.sid_to_unix(sid).ok().and_then(|id| id.as_gid()))) {
        Some((_, Some(gid))) => gid,
        Some((sid, None)) => {
            tracing::info!("{}: group SID {sid} maps to no Unix group; keeping gid {}", file.name(), info.gid);
            sd.group = Some(idmap.gid_to_sid(info.gid).map_err(|e| sid_failure("file group", e))?);
            info.gid
        }
        None => info.gid,
    };
    Ok(Owner { uid, gid })
}

/// Writes the planned POSIX mirror: default ACL (directories), access ACL, then the mode
/// (setting the access ACL already set the rwx bits; chmod keeps setuid/setgid/sticky exact).
/// The NFSv4 xattr is written after this, by the caller.
/// Called with root's privileges ([`Privileged`]).
fn write_mirror(file: &File, plan: &WritePlan, before: &CurrentAcl) -> Result<(), AclFailure> {
    let undo = |what: String, err: Errno| {
        restore_posix(file, before);
        io_failure(&what, err)
    };
    if before.info.is_dir {
        let written = match (&plan.default, &before.disk.default) {
            (Some(default), _) => file.set_xattr(POSIX_DEFAULT, &default.to_xattr(), false),
            (None, Some(_)) => file.remove_xattr(POSIX_DEFAULT, false),
            (None, None) => Ok(()),
        };
        written.map_err(|err| undo(format!("writing {POSIX_DEFAULT}"), err))?;
    }
    // Setting the access ACL sets the mode's permission bits too; chmod is needed only when
    // the setuid/setgid/sticky bits change (plan_write drops set-id bits on a chown).
    file.set_xattr(POSIX_ACCESS, &plan.access.to_xattr(), false)
        .map_err(|err| undo(format!("writing {POSIX_ACCESS}"), err))?;
    let special = 0o7000;
    if plan.mode & special != before.info.mode & special || plan.mode & 0o777 != plan.access.mode_bits() {
        file.chmod(plan.mode, false).map_err(|err| undo("chmod".into(), err))?;
    }
    Ok(())
}

/// Best effort: puts back the POSIX ACLs and mode read before a failed write. Called with
/// root's privileges ([`Privileged`]).
fn restore_posix(file: &File, before: &CurrentAcl) {
    let mut errors = Vec::new();
    let access = before.disk.access.clone().unwrap_or_else(|| PosixAcl::from_mode(before.info.mode));
    if let Err(e) = file.set_xattr(POSIX_ACCESS, &access.to_xattr(), false) {
        errors.push(format!("{POSIX_ACCESS}: {e}"));
    }
    if before.info.is_dir {
        let restored = match &before.disk.default {
            Some(default) => file.set_xattr(POSIX_DEFAULT, &default.to_xattr(), false),
            None => file.remove_xattr(POSIX_DEFAULT, false),
        };
        if let Err(e) = restored {
            errors.push(format!("{POSIX_DEFAULT}: {e}"));
        }
    }
    if let Err(e) = file.chmod(before.info.mode, false) {
        errors.push(format!("chmod: {e}"));
    }
    if !errors.is_empty() {
        tracing::error!("{}: could not restore the POSIX permissions after a failed ACL write: {}", file.name(), errors.join("; "));
    }
}
