//! The ACL bridge inside smbd: `fget_nt_acl` / `fset_nt_acl` through the ACL core.
//!
//! The security descriptor is stored as an NFSv4 ACL in the share's ACL xattr and mirrored
//! into the POSIX ACL and mode that the kernel and nfsd enforce. When the POSIX side was
//! changed outside SMB (chmod, setfacl, NFS SETATTR), what SMB sees follows it: a mode change
//! is applied to the stored ACL (RFC 8881 §6.4: named entries kept), any other change is
//! presented as the NFSv4 ACL nfsd would show for the POSIX ACL.
use nfsbridge::acl::idmap::IdMap;
use nfsbridge::acl::mapping::{nfs4_to_sd, sd_to_nfs4, FileContext, MappingOptions, Nfs4Acls, NullDacl};
use nfsbridge::acl::nfs4::{Nfs4Acl, Nfs4Encoding};
use nfsbridge::acl::posix::{apply_mode, mirror, posix_to_nfs4_for_smb, with_permission_bits, PosixAcl, Tag};
use nfsbridge::acl::sd::{binary, control, SecurityDescriptor};
use nfsbridge::config::{AclEncoding, ModuleConfig};

use crate::samba::{status, Errno, File, FileInfo, SambaIdMap};

const POSIX_ACCESS: &str = "system.posix_acl_access";
const POSIX_DEFAULT: &str = "system.posix_acl_default";

// security_info bits (MS-DTYP 2.4.7 SECURITY_INFORMATION).
const SECINFO_OWNER: u32 = 0x1;
const SECINFO_GROUP: u32 = 0x2;
const SECINFO_DACL: u32 = 0x4;
const SECINFO_SACL: u32 = 0x8;

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

/// The file's ACL as it stands now, and where it came from.
struct CurrentAcl {
    info: FileInfo,
    acl: Nfs4Acl,
    access: PosixAcl,
    default: Option<PosixAcl>,
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

fn current_acl(file: &File, config: &ModuleConfig) -> Result<CurrentAcl, AclFailure> {
    let info = file.info().ok_or_else(|| failure(status::INTERNAL_ERROR, "smbd has no valid stat for the file"))?;
    let stored = match file.xattr(&config.acl_xattr) {
        Ok(Some(bytes)) => Some(encoding(config).decode(&bytes).map_err(|e| {
            failure(
                status::INTERNAL_DB_CORRUPTION,
                format!("the NFSv4 ACL in {} ({} encoding) is corrupt: {e}", config.acl_xattr, config.acl_encoding.keyword()),
            )
        })?),
        Ok(None) => None,
        Err(err) => return Err(io_failure(&format!("reading {}", config.acl_xattr), err)),
    };
    let access = read_posix(file, POSIX_ACCESS)?.unwrap_or_else(|| PosixAcl::from_mode(info.mode));
    let default = if info.is_dir { read_posix(file, POSIX_DEFAULT)? } else { None };
    let acl = match stored {
        Some(stored) if config.posix_mirror => reconcile(file, info, stored, &access, default.as_ref())?,
        Some(stored) => stored,
        None => from_posix(info, &access, default.as_ref())?,
    };
    Ok(CurrentAcl { info, acl, access, default })
}

fn from_posix(info: FileInfo, access: &PosixAcl, default: Option<&PosixAcl>) -> Result<Nfs4Acl, AclFailure> {
    posix_to_nfs4_for_smb(access, default, info.is_dir)
        .map_err(|e| failure(status::INTERNAL_DB_CORRUPTION, format!("the POSIX ACL cannot be presented: {e}")))
}

/// The stored ACL if the POSIX state is still its mirror; otherwise what the POSIX state
/// says, keeping as much of the stored ACL as a chmod allows.
fn reconcile(
    file: &File,
    info: FileInfo,
    stored: Nfs4Acl,
    access: &PosixAcl,
    default: Option<&PosixAcl>,
) -> Result<Nfs4Acl, AclFailure> {
    let expected = mirror(&stored, info.uid, info.gid, info.is_dir);
    let default_same = !info.is_dir || same_acl(expected.default.as_ref(), default);
    if same_acl(Some(&expected.access), Some(access)) && default_same {
        return Ok(stored);
    }
    if default_same && same_named_entries(&expected.access, access) {
        tracing::info!(
            "{}: mode changed outside SMB (mirror {:o}, now {:o}); applying it to the stored ACL",
            file.name(),
            expected.mode,
            info.mode & 0o777
        );
        return Ok(apply_mode(&stored, info.mode & 0o777, info.is_dir));
    }
    tracing::info!("{}: POSIX ACL changed outside SMB; presenting it instead of the stored ACL", file.name());
    from_posix(info, access, default)
}

fn same_acl(a: Option<&PosixAcl>, b: Option<&PosixAcl>) -> bool {
    let canonical = |acl: Option<&PosixAcl>| {
        acl.map(|acl| {
            let mut acl = acl.clone();
            acl.sort_canonical();
            acl
        })
    };
    canonical(a) == canonical(b)
}

/// Equal named user/group entries: only what chmod touches (owner, mask or group, other)
/// may differ.
fn same_named_entries(a: &PosixAcl, b: &PosixAcl) -> bool {
    let named = |acl: &PosixAcl| {
        let mut sorted = acl.clone();
        sorted.sort_canonical();
        sorted.entries.retain(|e| matches!(e.tag, Tag::User(_) | Tag::Group(_)));
        sorted.entries
    };
    named(a) == named(b)
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
        sd.control &= !(control::DACL_PRESENT | control::DACL_AUTO_INHERITED | control::DACL_PROTECTED | control::DACL_DEFAULTED);
    }
    if security_info & SECINFO_SACL == 0 {
        sd.sacl = None;
        sd.control &= !(control::SACL_PRESENT | control::SACL_AUTO_INHERITED | control::SACL_PROTECTED | control::SACL_DEFAULTED);
    }
    sd
}

/// SMB_VFS_FGET_NT_ACL: the self-relative security descriptor of `file`.
pub fn get_nt_acl(file: &File, config: &ModuleConfig, security_info: u32) -> Result<Vec<u8>, AclFailure> {
    let current = current_acl(file, config)?;
    let sd = select_parts(to_sd(&current, &SambaIdMap)?, security_info);
    binary::encode(&sd).map_err(|e| failure(status::INTERNAL_ERROR, format!("cannot encode the security descriptor: {e}")))
}

/// SMB_VFS_FSET_NT_ACL: store `sd_bytes` (the parts in `security_info_sent`) as the file's
/// NFSv4 ACL and mirror it.
pub fn set_nt_acl(file: &File, config: &ModuleConfig, security_info_sent: u32, sd_bytes: &[u8]) -> Result<(), AclFailure> {
    let new = binary::decode(sd_bytes)
        .map_err(|e| failure(status::INVALID_SECURITY_DESCR, format!("malformed security descriptor from the client: {e}")))?;
    let current = current_acl(file, config)?;
    let idmap = SambaIdMap;
    let mut sd = to_sd(&current, &idmap)?;
    if security_info_sent & SECINFO_OWNER != 0 && new.owner.is_some() {
        sd.owner = new.owner.clone();
    }
    if security_info_sent & SECINFO_GROUP != 0 && new.group.is_some() {
        sd.group = new.group.clone();
    }
    const DACL_BITS: u16 = control::DACL_PRESENT | control::DACL_AUTO_INHERITED | control::DACL_PROTECTED | control::DACL_DEFAULTED;
    const SACL_BITS: u16 = control::SACL_PRESENT | control::SACL_AUTO_INHERITED | control::SACL_PROTECTED | control::SACL_DEFAULTED;
    if security_info_sent & SECINFO_DACL != 0 {
        sd.dacl = new.dacl.clone();
        sd.control = (sd.control & !DACL_BITS) | (new.control & DACL_BITS) | control::DACL_PRESENT;
    }
    if security_info_sent & SECINFO_SACL != 0 {
        sd.sacl = new.sacl.clone();
        sd.control = (sd.control & !SACL_BITS) | (new.control & SACL_BITS);
    }

    // Owner and group first: OWNER@/GROUP@ in the stored ACL mean the file's owner after
    // this call, so map the ACEs against the new owner.
    let info = current.info;
    let owner = resolve_owner(&mut sd, &idmap, info, file)?;
    if owner.uid != info.uid || owner.gid != info.gid {
        let uid = (owner.uid != info.uid).then_some(owner.uid);
        let gid = (owner.gid != info.gid).then_some(owner.gid);
        file.chown(uid, gid).map_err(|err| {
            let status = if err.0 == libc::EPERM && uid.is_some() {
                status::INVALID_OWNER
            } else if err.0 == libc::EPERM {
                status::INVALID_PRIMARY_GROUP
            } else {
                err.ntstatus()
            };
            failure(status, format!("changing owner/group to {}:{} failed: {err}", owner.uid, owner.gid))
        })?;
    }
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
    let bytes = encoding(config)
        .encode(&acl)
        .map_err(|e| failure(status::NOT_SUPPORTED, format!("the ACL cannot be written in the {} encoding: {e}", config.acl_encoding.keyword())))?;

    if config.posix_mirror {
        write_mirror(file, after, &acl, &current)?;
    }
    if let Err(err) = file.set_xattr(&config.acl_xattr, &bytes, true) {
        // Put the kernel back where it was, so it never enforces an ACL SMB does not show.
        if config.posix_mirror {
            restore_posix(file, &current);
        }
        return Err(io_failure(&format!("writing {}", config.acl_xattr), err));
    }
    Ok(())
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

/// Writes the POSIX mirror of `acl`: access ACL, default ACL (directories), mode.
fn write_mirror(file: &File, info: FileInfo, acl: &Nfs4Acl, before: &CurrentAcl) -> Result<(), AclFailure> {
    let mirrored = mirror(acl, info.uid, info.gid, info.is_dir);
    for narrowed in &mirrored.narrowed {
        tracing::debug!("{}: POSIX mirror narrower than the Windows ACL: {:?}", file.name(), narrowed);
    }
    file.set_xattr(POSIX_ACCESS, &mirrored.access.to_xattr(), true)
        .map_err(|err| io_failure(&format!("writing {POSIX_ACCESS}"), err))?;
    if info.is_dir {
        let written = match &mirrored.default {
            Some(default) => file.set_xattr(POSIX_DEFAULT, &default.to_xattr(), true),
            None => file.remove_xattr(POSIX_DEFAULT, true),
        };
        if let Err(err) = written {
            restore_posix(file, before);
            return Err(io_failure(&format!("writing {POSIX_DEFAULT}"), err));
        }
    }
    // Setting the access ACL already set the permission bits; chmod keeps them exact (and
    // the setuid/setgid/sticky bits as they were).
    file.chmod(with_permission_bits(before.info.mode, mirrored.mode), true).map_err(|err| {
        restore_posix(file, before);
        io_failure("chmod", err)
    })
}

/// Best effort: puts back the POSIX ACLs and mode read before a failed write.
fn restore_posix(file: &File, before: &CurrentAcl) {
    let mut errors = Vec::new();
    if let Err(e) = file.set_xattr(POSIX_ACCESS, &before.access.to_xattr(), true) {
        errors.push(format!("{POSIX_ACCESS}: {e}"));
    }
    if before.info.is_dir {
        let restored = match &before.default {
            Some(default) => file.set_xattr(POSIX_DEFAULT, &default.to_xattr(), true),
            None => file.remove_xattr(POSIX_DEFAULT, true),
        };
        if let Err(e) = restored {
            errors.push(format!("{POSIX_DEFAULT}: {e}"));
        }
    }
    if let Err(e) = file.chmod(before.info.mode, true) {
        errors.push(format!("chmod: {e}"));
    }
    if !errors.is_empty() {
        tracing::error!("{}: could not restore the POSIX permissions after a failed ACL write: {}", file.name(), errors.join("; "));
    }
}
