//! The ACL bridge: one file's stored NFSv4 ACL and its POSIX ACL + mode, kept coherent.
//!
//! Pure logic over the models, no I/O: the caller (the `nfsbridge acl` CLI today, the smbd
//! module later) reads a [`FileAclState`] from disk, asks the [`Bridge`] what the file's ACL
//! is ([`Bridge::effective_nfs4`]), what to write for a new ACL ([`Bridge::plan_write`]) or
//! whether the two sides agree ([`Bridge::check`]), and does the I/O itself
//! (`crate::acl::store`).
//!
//! # The coherence rule
//!
//! The stored NFSv4 ACL is authoritative only while the POSIX side is exactly its mirror
//! ([`mirror()`](crate::acl::posix::mirror()) for the file's current owner and group). The POSIX side is
//! what the kernel and nfsd enforce, so a change made there (chmod, setfacl, NFS SETATTR) is
//! honoured, never undone behind the admin's back:
//!
//! | POSIX access ACL + mode | POSIX default ACL (dirs) | effective NFSv4 ACL |
//! |---|---|---|
//! | no stored ACL | — | `posix_to_nfs4(access or mode, default)` |
//! | = mirror | = mirror | the stored ACL |
//! | = mirror after `chmod(mode)` | = mirror | `apply_mode(stored, mode)`: named ACEs kept, narrowed to the mode (RFC 8881 §6.4.1.1) |
//! | = mirror or mirror after chmod | ≠ mirror | as above, with the inheritable ACEs replaced by those of the on-disk default ACL |
//! | anything else (setfacl changed entries) | any | `posix_to_nfs4(access, default)`, keeping the stored AUDIT/ALARM ACEs and ACL flags (they grant nothing) |
//!
//! "mirror after chmod" is the mirror's access ACL with `user::`, `mask::` (or `group::`
//! without a mask) and `other::` set from the mode, which is exactly what the kernel's
//! `posix_acl_chmod` does. Each rebuilt ACL grants, through POSIX, no more than what the
//! kernel enforces now. A stored ACL that does not decode is an error, never a fallback to
//! the POSIX side: the POSIX side may grant rights (WRITE_ACL, DELETE, ...) the lost ACL did
//! not.
use std::fmt;

use super::nfs4::{ace_flags, Nfs4AceType, Nfs4Acl, Nfs4CodecError, Nfs4Encoding};
use super::posix::{
    apply_mode, mirror, posix_to_nfs4, with_permission_bits, Narrowing, Perms, PosixAcl, PosixAclError, Tag,
};

/// setuid, setgid and sticky.
const SPECIAL_BITS: u32 = 0o7000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;

/// What the bridge needs from `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub uid: u32,
    pub gid: u32,
    /// Permission and special bits (0o7777); any file type bits are ignored.
    pub mode: u32,
    pub is_dir: bool,
}

/// A file's ACL state as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAclState {
    pub meta: FileMeta,
    /// The NFSv4 ACL xattr value, `None` when the file has none.
    pub stored: Option<Vec<u8>>,
    /// `system.posix_acl_access`; `None` when absent (the mode alone is the ACL).
    pub access: Option<PosixAcl>,
    /// `system.posix_acl_default`; `None` when absent. Ignored on non-directories.
    pub default: Option<PosixAcl>,
}

/// How the POSIX access ACL + mode relate to the stored ACL's mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessChange {
    /// They are the mirror.
    Unchanged,
    /// They are the mirror after a chmod to the current mode.
    ModeOnly,
    /// Entries differ in a way a chmod cannot explain (setfacl, a chown, an old mirror).
    Entries,
}

/// Where [`Effective::acl`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No stored ACL: what the POSIX ACL and mode mean.
    PosixOnly,
    /// The stored ACL, and the POSIX side is its mirror.
    Stored,
    /// Rebuilt because the POSIX side changed outside SMB (see the module docs).
    Rebuilt {
        access: AccessChange,
        default_changed: bool,
    },
}

/// The file's ACL now, per the coherence rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub acl: Nfs4Acl,
    pub origin: Origin,
    /// The decoded stored ACL, when there is one.
    pub stored: Option<Nfs4Acl>,
}

/// The owner and group a write should also set (a security descriptor's owner/group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Everything to write for a new NFSv4 ACL. The store writes it in the order documented in
/// `crate::acl::store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// The ACL the plan is for.
    pub acl: Nfs4Acl,
    /// The NFSv4 xattr value in the bridge's encoding.
    pub xattr: Vec<u8>,
    /// The POSIX access ACL (a three-entry ACL is the mode alone; the kernel then stores no
    /// xattr).
    pub access: PosixAcl,
    /// The POSIX default ACL; `None` means "remove it". Always `None` for files.
    pub default: Option<PosixAcl>,
    /// The complete new mode (0o7777): the mirror's permission bits with the file's setuid,
    /// setgid and sticky bits, minus setuid/setgid when a non-directory changes owner or
    /// group (as the kernel's chown does).
    pub mode: u32,
    /// New (uid, gid) when either changes.
    pub chown: Option<(u32, u32)>,
    /// POSIX entries that grant less than the NFSv4 ACL gives someone of their class.
    pub narrowed: Vec<Narrowing>,
    /// Other things POSIX could not carry.
    pub notes: Vec<String>,
}

/// One way in which the POSIX side is not the stored ACL's mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Permission bits (0o777).
    Mode { on_disk: u32, mirror: u32 },
    /// The access ACL (with no xattr, the three entries the mode stands for).
    Access { on_disk: PosixAcl, mirror: PosixAcl },
    Default {
        on_disk: Option<PosixAcl>,
        mirror: Option<PosixAcl>,
    },
}

/// The result of [`Bridge::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckReport {
    /// No stored NFSv4 ACL: the POSIX ACL and mode are the whole truth, nothing to disagree.
    NoStoredAcl,
    /// The POSIX side is the stored ACL's mirror.
    Coherent,
    /// They disagree; `access` says whether a chmod explains the access side.
    Differs {
        access: AccessChange,
        differences: Vec<Difference>,
    },
}

impl CheckReport {
    pub fn is_coherent(&self) -> bool {
        !matches!(self, CheckReport::Differs { .. })
    }
}

/// Why the bridge cannot answer. Messages do not name the file; callers add it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("the stored NFSv4 ACL does not decode as {encoding}: {source}")]
    StoredAclCorrupt {
        encoding: &'static str,
        source: Nfs4CodecError,
    },
    #[error("the NFSv4 ACL cannot be stored as {encoding}: {source}")]
    Unencodable {
        encoding: &'static str,
        source: Nfs4CodecError,
    },
    #[error("the POSIX {which} ACL on disk is invalid: {source}")]
    PosixInvalid { which: &'static str, source: PosixAclError },
}

/// The bridge for one configuration (the xattr encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bridge {
    pub encoding: Nfs4Encoding,
}

/// The POSIX side in normal form: canonical order, the access ACL always present (three
/// entries from the mode when there is no xattr), an empty or file default ACL as none.
struct OnDisk {
    access: PosixAcl,
    default: Option<PosixAcl>,
    mode_bits: u32,
}

struct Comparison {
    access: AccessChange,
    default_changed: bool,
    differences: Vec<Difference>,
}

impl Bridge {
    pub fn new(encoding: Nfs4Encoding) -> Self {
        Bridge { encoding }
    }

    /// A short name of the encoding for messages.
    pub fn encoding_name(&self) -> &'static str {
        encoding_name(self.encoding)
    }

    /// Decodes a stored xattr value.
    pub fn decode_stored(&self, bytes: &[u8]) -> Result<Nfs4Acl, BridgeError> {
        self.encoding
            .decode(bytes)
            .map_err(|source| BridgeError::StoredAclCorrupt {
                encoding: self.encoding_name(),
                source,
            })
    }

    /// The file's NFSv4 ACL now, per the coherence rule in the module docs.
    pub fn effective_nfs4(&self, state: &FileAclState) -> Result<Effective, BridgeError> {
        let on_disk = normalise(state)?;
        let Some(bytes) = &state.stored else {
            let acl =
                posix_to_nfs4(&on_disk.access, on_disk.default.as_ref(), state.meta.is_dir).map_err(|source| {
                    BridgeError::PosixInvalid {
                        which: "access or default",
                        source,
                    }
                })?;
            return Ok(Effective {
                acl,
                origin: Origin::PosixOnly,
                stored: None,
            });
        };
        let stored = self.decode_stored(bytes)?;
        let comparison = compare(&stored, &state.meta, &on_disk);
        let meta = &state.meta;
        let base = match comparison.access {
            AccessChange::Unchanged => Some(stored.clone()),
            AccessChange::ModeOnly => Some(apply_mode(&stored, meta.mode, meta.is_dir)),
            AccessChange::Entries => None,
        };
        let acl = match base {
            Some(base) if comparison.default_changed => {
                replace_inheritance(&base, &on_disk.access, on_disk.default.as_ref())?
            }
            Some(base) => base,
            None => {
                let mut rebuilt =
                    posix_to_nfs4(&on_disk.access, on_disk.default.as_ref(), meta.is_dir).map_err(|source| {
                        BridgeError::PosixInvalid {
                            which: "access or default",
                            source,
                        }
                    })?;
                // Auditing and the ACL flags grant nothing; keep what Windows set.
                rebuilt.flags = stored.flags;
                rebuilt
                    .aces
                    .extend(stored.aces.iter().filter(|a| is_audit(a.ace_type)).cloned());
                rebuilt
            }
        };
        let origin = match (comparison.access, comparison.default_changed) {
            (AccessChange::Unchanged, false) => Origin::Stored,
            (access, default_changed) => Origin::Rebuilt {
                access,
                default_changed,
            },
        };
        Ok(Effective {
            acl,
            origin,
            stored: Some(stored),
        })
    }

    /// What to write so that `acl` is the file's ACL: the xattr value, the POSIX mirror and
    /// the mode, for the owner and group the file has after `ownership` is applied.
    pub fn plan_write(&self, meta: &FileMeta, acl: &Nfs4Acl, ownership: Ownership) -> Result<WritePlan, BridgeError> {
        let xattr = self.encoding.encode(acl).map_err(|source| BridgeError::Unencodable {
            encoding: self.encoding_name(),
            source,
        })?;
        let uid = ownership.uid.unwrap_or(meta.uid);
        let gid = ownership.gid.unwrap_or(meta.gid);
        let chown = (uid != meta.uid || gid != meta.gid).then_some((uid, gid));
        let mirrored = mirror(acl, uid, gid, meta.is_dir);
        let mut special = meta.mode & SPECIAL_BITS;
        if chown.is_some() && !meta.is_dir {
            // chown(2) drops these on files so that a new owner never inherits a set-id
            // program; do the same rather than re-grant them.
            special &= !(S_ISUID | S_ISGID);
        }
        Ok(WritePlan {
            acl: acl.clone(),
            xattr,
            access: mirrored.access,
            default: if meta.is_dir { mirrored.default } else { None },
            mode: with_permission_bits(special, mirrored.mode),
            chown,
            narrowed: mirrored.narrowed,
            notes: mirrored.notes,
        })
    }

    /// Whether the POSIX side is the stored ACL's mirror, and how it differs if not.
    pub fn check(&self, state: &FileAclState) -> Result<CheckReport, BridgeError> {
        let on_disk = normalise(state)?;
        let Some(bytes) = &state.stored else {
            return Ok(CheckReport::NoStoredAcl);
        };
        let stored = self.decode_stored(bytes)?;
        let comparison = compare(&stored, &state.meta, &on_disk);
        if comparison.differences.is_empty() {
            Ok(CheckReport::Coherent)
        } else {
            Ok(CheckReport::Differs {
                access: comparison.access,
                differences: comparison.differences,
            })
        }
    }
}

/// Which parts of a [`WritePlan`] a file already holds, so that writing them again would
/// change nothing the kernel, nfsd or an SMB client can see (only the ctime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyWritten {
    /// The NFSv4 ACL xattr holds exactly the plan's bytes.
    pub xattr: bool,
    /// The POSIX access ACL, the default ACL (directories) and the whole mode, setuid, setgid
    /// and sticky included, are the plan's; there is no owner or group change.
    pub posix: bool,
}

/// Compares `plan` with what `state` read from disk. `state.meta` must be the file the plan
/// was made for; a plan with a chown never counts as written on the POSIX side (its `user::`
/// entry is for another owner). An invalid POSIX ACL on disk does not match anything.
pub fn already_written(plan: &WritePlan, state: &FileAclState) -> AlreadyWritten {
    let xattr = state.stored.as_deref() == Some(plan.xattr.as_slice());
    let posix = plan.chown.is_none()
        && state.meta.mode & 0o7777 == plan.mode & 0o7777
        && normalise(state).is_ok_and(|on_disk| {
            let canonical = |acl: &PosixAcl| {
                let mut acl = acl.clone();
                acl.sort_canonical();
                acl
            };
            let planned_default = plan
                .default
                .as_ref()
                .filter(|acl| state.meta.is_dir && !acl.entries.is_empty())
                .map(canonical);
            on_disk.access == canonical(&plan.access) && on_disk.default == planned_default
        });
    AlreadyWritten { xattr, posix }
}

/// `nfs`, `nfs40`, `xdr`, `ndr`.
pub fn encoding_name(encoding: Nfs4Encoding) -> &'static str {
    match encoding {
        Nfs4Encoding::Nfs40 => "nfs40",
        Nfs4Encoding::Nfs41 => "nfs",
        Nfs4Encoding::Xdr => "xdr",
        Nfs4Encoding::Ndr => "ndr",
    }
}

fn is_audit(ace_type: Nfs4AceType) -> bool {
    matches!(ace_type, Nfs4AceType::Audit | Nfs4AceType::Alarm)
}

fn normalise(state: &FileAclState) -> Result<OnDisk, BridgeError> {
    let mode_bits = state.meta.mode & 0o777;
    let access = match state.access.as_ref().filter(|acl| !acl.entries.is_empty()) {
        Some(acl) => {
            acl.validate().map_err(|source| BridgeError::PosixInvalid {
                which: "access",
                source,
            })?;
            let mut acl = acl.clone();
            acl.sort_canonical();
            acl
        }
        None => PosixAcl::from_mode(mode_bits),
    };
    let default = match state
        .default
        .as_ref()
        .filter(|acl| state.meta.is_dir && !acl.entries.is_empty())
    {
        Some(acl) => {
            acl.validate().map_err(|source| BridgeError::PosixInvalid {
                which: "default",
                source,
            })?;
            let mut acl = acl.clone();
            acl.sort_canonical();
            Some(acl)
        }
        None => None,
    };
    Ok(OnDisk {
        access,
        default,
        mode_bits,
    })
}

fn compare(stored: &Nfs4Acl, meta: &FileMeta, on_disk: &OnDisk) -> Comparison {
    let mirrored = mirror(stored, meta.uid, meta.gid, meta.is_dir);
    let mut differences = Vec::new();
    if on_disk.mode_bits != mirrored.mode {
        differences.push(Difference::Mode {
            on_disk: on_disk.mode_bits,
            mirror: mirrored.mode,
        });
    }
    let access = if on_disk.access == mirrored.access && on_disk.mode_bits == mirrored.mode {
        AccessChange::Unchanged
    } else {
        if on_disk.access != mirrored.access {
            differences.push(Difference::Access {
                on_disk: on_disk.access.clone(),
                mirror: mirrored.access.clone(),
            });
        }
        if chmod_acl(&mirrored.access, on_disk.mode_bits) == on_disk.access {
            AccessChange::ModeOnly
        } else {
            AccessChange::Entries
        }
    };
    let expected_default = if meta.is_dir { mirrored.default } else { None };
    let default_changed = on_disk.default != expected_default;
    if default_changed {
        differences.push(Difference::Default {
            on_disk: on_disk.default.clone(),
            mirror: expected_default,
        });
    }
    Comparison {
        access,
        default_changed,
        differences,
    }
}

/// What the kernel's `posix_acl_chmod` makes of `acl` for `chmod(mode)`.
fn chmod_acl(acl: &PosixAcl, mode: u32) -> PosixAcl {
    let has_mask = acl.mask().is_some();
    let mut result = acl.clone();
    for entry in &mut result.entries {
        match entry.tag {
            Tag::UserObj => entry.perms = Perms::from_bits_truncate(mode >> 6),
            Tag::Mask => entry.perms = Perms::from_bits_truncate(mode >> 3),
            Tag::GroupObj if !has_mask => entry.perms = Perms::from_bits_truncate(mode >> 3),
            Tag::Other => entry.perms = Perms::from_bits_truncate(mode),
            _ => {}
        }
    }
    result
}

/// `base` with its inheritance replaced by the on-disk default ACL (setfacl -d): ALLOW/DENY
/// ACEs stop inheriting (INHERIT_ONLY ones go), and the default ACL's ACEs, laid out as
/// `posix_to_nfs4` lays them out, are appended.
fn replace_inheritance(
    base: &Nfs4Acl,
    on_disk_access: &PosixAcl,
    default: Option<&PosixAcl>,
) -> Result<Nfs4Acl, BridgeError> {
    const INHERITANCE: u32 = ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT | ace_flags::NO_PROPAGATE_INHERIT;
    let mut aces: Vec<_> = base
        .aces
        .iter()
        .filter(|ace| is_audit(ace.ace_type) || ace.flags & ace_flags::INHERIT_ONLY == 0)
        .map(|ace| {
            let mut ace = ace.clone();
            if !is_audit(ace.ace_type) {
                ace.flags &= !INHERITANCE;
            }
            ace
        })
        .collect();
    if let Some(default) = default {
        let from_posix =
            posix_to_nfs4(on_disk_access, Some(default), true).map_err(|source| BridgeError::PosixInvalid {
                which: "default",
                source,
            })?;
        aces.extend(
            from_posix
                .aces
                .into_iter()
                .filter(|ace| ace.flags & ace_flags::INHERIT_ONLY != 0),
        );
    }
    Ok(Nfs4Acl {
        flags: base.flags,
        aces,
    })
}

/// `user::rwx,user:1001:r--,group::r-x,mask::r-x,other::---`
pub fn posix_acl_to_short_text(acl: &PosixAcl) -> String {
    acl.entries
        .iter()
        .map(|e| format!("{}{}", e.tag, e.perms))
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Mode { on_disk, mirror } => {
                write!(f, "mode is {on_disk:04o}, the stored ACL's mirror has {mirror:04o}")
            }
            Difference::Access { on_disk, mirror } => write!(
                f,
                "access ACL is {}, the stored ACL's mirror is {}",
                posix_acl_to_short_text(on_disk),
                posix_acl_to_short_text(mirror)
            ),
            Difference::Default { on_disk, mirror } => {
                let text = |acl: &Option<PosixAcl>| acl.as_ref().map_or("none".to_string(), posix_acl_to_short_text);
                write!(
                    f,
                    "default ACL is {}, the stored ACL's mirror is {}",
                    text(on_disk),
                    text(mirror)
                )
            }
        }
    }
}

impl fmt::Display for AccessChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessChange::Unchanged => "access ACL and mode unchanged",
            AccessChange::ModeOnly => "mode changed outside SMB (chmod)",
            AccessChange::Entries => "POSIX ACL changed outside SMB (setfacl, chown, or an interrupted write)",
        })
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckReport::NoStoredAcl => f.write_str("no stored NFSv4 ACL; the POSIX ACL and mode are the ACL"),
            CheckReport::Coherent => f.write_str("coherent"),
            CheckReport::Differs { access, differences } => {
                let cause = match access {
                    AccessChange::Unchanged => "default ACL changed outside SMB (setfacl -d)".to_string(),
                    other => other.to_string(),
                };
                let details: Vec<String> = differences.iter().map(|d| d.to_string()).collect();
                write!(f, "{cause}: {}", details.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests;
