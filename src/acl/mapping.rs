//! The NT security descriptor ↔ NFSv4 ACL mapping.
//!
//! [`sd_to_nfs4`] turns a [`SecurityDescriptor`] into an owner uid, a group gid and NFSv4 DACL
//! and SACL ([`Nfs4Acls`]); [`nfs4_to_sd`] goes back. The rules, the options and every place
//! where the result is normalised are in `docs/acl-mapping.md`; in short:
//!
//! - ACE order is kept, one NT ACE gives one NFSv4 ACE (two for an ID_TYPE_BOTH SID, see
//!   [`BothIdAces`]), and no ACE is dropped unless [`UnmappableSid::Skip`] /
//!   [`UnmappableWho::Skip`] says so, and then it is listed in `skipped`.
//! - Masks keep every bit; generic rights are expanded to the file rights first.
//! - DACL and SACL stay separate (NFSv4.1 `dacl` / `sacl`); [`Nfs4Acls::to_combined`] and
//!   [`Nfs4Acls::from_combined`] convert for NFSv4.0's single `acl` attribute.
//! - Where the mapping is total, SD → NFSv4 → SD gives the same SD back (tested with proptest).
use std::fmt;

use super::idmap::{IdMap, IdMapError, UnixId};
use super::nfs4::{self, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};
use super::sd::{access, ace_flags, control, Ace, AceType, Acl, SecurityDescriptor};
use super::sid::Sid;

#[cfg(test)]
mod samba_cases;
#[cfg(test)]
mod tests;

/// How the file owner's and owning group's SIDs are written in NFSv4 ACEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerGroupForm {
    /// A non-inheritable ACE for the owner's SID becomes OWNER@, for the owning group's SID
    /// GROUP@ (Samba's `nfs4:mode = simple`). Inheritable ones stay numeric, because an
    /// inherited OWNER@ means the child's owner, not this user. The default: NFS clients,
    /// `chmod` (RFC 8881 §6.4) and the mode bits work through OWNER@/GROUP@/EVERYONE@.
    #[default]
    Special,
    /// Always the numeric uid/gid; OWNER@/GROUP@ only come from CREATOR OWNER/GROUP.
    Numeric,
}

/// How an ACE for a SID that maps to [`UnixId::Both`] is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BothIdAces {
    /// A group ACE and then a user ACE with the same type, flags and mask: the SID is both,
    /// so both a process with that uid and one in that group are matched, as Windows would.
    #[default]
    UserAndGroup,
    /// Samba's choice: a group ACE, plus a user ACE only when the id is the owner's uid and
    /// the ACE is not inheritable.
    GroupPlusOwner,
}

/// What to do with an NT ACE whose SID the [`IdMap`] does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmappableSid {
    /// Fail, naming the SID (default).
    #[default]
    Error,
    /// Leave the ACE out and list it in [`Nfs4Mapping::skipped`].
    Skip,
    /// Write the ACE for this id instead (a `Both` id follows [`BothIdAces`]).
    MapTo(UnixId),
}

/// What to do with an NFSv4 ACE whose who has no SID (a uid the map does not know, a name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UnmappableWho {
    /// Fail, naming the who (default).
    #[default]
    Error,
    /// Leave the ACE out and list it in [`SdMapping::skipped`].
    Skip,
    /// Write the ACE for this SID instead.
    MapTo(Sid),
}

/// Inheritance flags (OI/CI/NP/IO) on the ACEs of a file (not a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileInheritFlags {
    /// Kept as they are, both ways (default): lossless, and they are inert on a file.
    #[default]
    Keep,
    /// FILE/DIRECTORY_INHERIT and NO_PROPAGATE are removed, both ways (Samba, and Linux nfsd
    /// refuses them on files). An INHERIT_ONLY ACE on a file is an error: removing the flag
    /// would make an ACE that grants nothing grant its mask.
    Strip,
}

/// What a security descriptor without a DACL ([`SecurityDescriptor::dacl`] `None`) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NullDacl {
    /// No NFSv4 DACL (`Nfs4Acls::dacl` is `None`): "this descriptor carries no DACL", the
    /// caller leaves the stored ACL alone (default; what Samba does, and what a SET_INFO
    /// without DACL_SECURITY_INFORMATION needs).
    #[default]
    Absent,
    /// A NULL DACL that the client really set: EVERYONE@ ALLOW FILE_ALL_ACCESS, which grants
    /// what a NULL DACL grants.
    EveryoneFullAccess,
}

/// Options of the mapping. `MappingOptions::default()` is the documented default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappingOptions {
    pub owner_group: OwnerGroupForm,
    pub both_ids: BothIdAces,
    pub unmappable_sid: UnmappableSid,
    pub unmappable_who: UnmappableWho,
    pub file_inherit_flags: FileInheritFlags,
    pub null_dacl: NullDacl,
    /// NFSv4 → NT, files only: add DELETE_CHILD to a mask that has every other file right
    /// (Samba's `acl map full control`, so that Windows shows "Full control"). Default off:
    /// it changes the mask.
    pub map_full_control: bool,
}

/// The file the ACL belongs to: its current owner and group, and whether it is a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileContext {
    pub uid: u32,
    pub gid: u32,
    pub is_directory: bool,
}

/// Which ACL of a descriptor an ACE is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclKind {
    Dacl,
    Sacl,
}

impl fmt::Display for AclKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AclKind::Dacl => "DACL",
            AclKind::Sacl => "SACL",
        })
    }
}

/// An ACE left out because an `Unmappable*::Skip` option said so. `index` is 0-based in the
/// source ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedAce {
    pub acl: AclKind,
    pub index: usize,
    /// The SID or the NFSv4 who, as text.
    pub who: String,
    pub reason: String,
}

/// The NFSv4 side: the DACL (ALLOW/DENY ACEs) and the SACL (AUDIT/ALARM ACEs), each with its
/// own ACL flags, as NFSv4.1's `dacl` and `sacl` attributes. `None` means "not present".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nfs4Acls {
    pub dacl: Option<Nfs4Acl>,
    pub sacl: Option<Nfs4Acl>,
}

/// The result of [`sd_to_nfs4`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nfs4Mapping {
    /// The uid the descriptor's owner SID maps to (`None`: the descriptor has no owner).
    pub owner: Option<u32>,
    /// The gid the descriptor's group SID maps to (`None`: the descriptor has no group).
    pub group: Option<u32>,
    pub acls: Nfs4Acls,
    pub skipped: Vec<SkippedAce>,
}

/// The result of [`nfs4_to_sd`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdMapping {
    pub sd: SecurityDescriptor,
    pub skipped: Vec<SkippedAce>,
}

/// Why a mapping failed. ACE indexes are 0-based positions in the source ACL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{acl} ACE {index}: SID {sid} has no Unix id, and unmappable SIDs are refused: {source}")]
    UnmappableSid { acl: AclKind, index: usize, sid: Sid, source: IdMapError },
    #[error("{acl} ACE {index}: NFSv4 who {who} has no SID, and unmappable whos are refused: {reason}")]
    UnmappableWho { acl: AclKind, index: usize, who: String, reason: String },
    #[error("{acl} ACE {index} ({sid}): ACE type {type_code} (object, callback or other) has no NFSv4 equivalent")]
    UnsupportedAceType { acl: AclKind, index: usize, sid: Sid, type_code: u8 },
    #[error("{acl} ACE {index} ({who}): a {ace_type} ACE does not belong in a {acl}")]
    MisplacedAceType { acl: AclKind, index: usize, who: String, ace_type: &'static str },
    #[error("{acl} ACE {index} ({who}): unknown ACE flag bits {flags:#x}")]
    UnknownAceFlags { acl: AclKind, index: usize, who: String, flags: u32 },
    #[error("{acl} ACE {index} ({who}): INHERIT_ONLY on a file grants nothing; stripping inheritance flags would make it grant its mask")]
    InheritOnlyOnFile { acl: AclKind, index: usize, who: String },
    #[error("NFSv4 {acl} has unknown ACL flag bits {flags:#x}")]
    UnknownAclFlags { acl: AclKind, flags: u32 },
    #[error("owner SID {sid}: {reason}")]
    Owner { sid: Sid, reason: String },
    #[error("group SID {sid}: {reason}")]
    Group { sid: Sid, reason: String },
    #[error("file owner uid {uid} has no SID: {source}")]
    FileOwner { uid: u32, source: IdMapError },
    #[error("owning group gid {gid} has no SID: {source}")]
    FileGroup { gid: u32, source: IdMapError },
    #[error("{context}: identity mapping failed: {source}")]
    IdMapFailed { context: String, source: IdMapError },
    #[error("cannot combine into one NFSv4.0 ACL: {reason}")]
    NotCombinable { reason: String },
}

// NT ACE flags that have an NFSv4 counterpart; the rest (0x20) is unknown.
const NT_KNOWN_FLAGS: u8 = ace_flags::OBJECT_INHERIT
    | ace_flags::CONTAINER_INHERIT
    | ace_flags::NO_PROPAGATE_INHERIT
    | ace_flags::INHERIT_ONLY
    | ace_flags::INHERITED
    | ace_flags::SUCCESSFUL_ACCESS
    | ace_flags::FAILED_ACCESS;
const NFS4_KNOWN_FLAGS: u32 = nfs4::ace_flags::FILE_INHERIT
    | nfs4::ace_flags::DIRECTORY_INHERIT
    | nfs4::ace_flags::NO_PROPAGATE_INHERIT
    | nfs4::ace_flags::INHERIT_ONLY
    | nfs4::ace_flags::SUCCESSFUL_ACCESS
    | nfs4::ace_flags::FAILED_ACCESS
    | nfs4::ace_flags::IDENTIFIER_GROUP
    | nfs4::ace_flags::INHERITED;
const NFS4_KNOWN_ACL_FLAGS: u32 =
    nfs4::acl_flags::AUTO_INHERIT | nfs4::acl_flags::PROTECTED | nfs4::acl_flags::DEFAULTED;
/// The NT flags whose presence makes an ACE inheritable (Samba's `nfs_ace_is_inherit`).
const NT_INHERITING: u8 = ace_flags::OBJECT_INHERIT | ace_flags::CONTAINER_INHERIT | ace_flags::INHERIT_ONLY;

/// (NT flag, NFSv4 flag) pairs; the low four are the same bits, the rest moved.
const FLAG_PAIRS: [(u8, u32); 7] = [
    (ace_flags::OBJECT_INHERIT, nfs4::ace_flags::FILE_INHERIT),
    (ace_flags::CONTAINER_INHERIT, nfs4::ace_flags::DIRECTORY_INHERIT),
    (ace_flags::NO_PROPAGATE_INHERIT, nfs4::ace_flags::NO_PROPAGATE_INHERIT),
    (ace_flags::INHERIT_ONLY, nfs4::ace_flags::INHERIT_ONLY),
    (ace_flags::INHERITED, nfs4::ace_flags::INHERITED),
    (ace_flags::SUCCESSFUL_ACCESS, nfs4::ace_flags::SUCCESSFUL_ACCESS),
    (ace_flags::FAILED_ACCESS, nfs4::ace_flags::FAILED_ACCESS),
];

/// (DACL control bit, SACL control bit, NFSv4 ACL flag).
const CONTROL_PAIRS: [(u16, u16, u32); 3] = [
    (control::DACL_AUTO_INHERITED, control::SACL_AUTO_INHERITED, nfs4::acl_flags::AUTO_INHERIT),
    (control::DACL_PROTECTED, control::SACL_PROTECTED, nfs4::acl_flags::PROTECTED),
    (control::DACL_DEFAULTED, control::SACL_DEFAULTED, nfs4::acl_flags::DEFAULTED),
];

/// The NFSv4 special whos other than OWNER@/GROUP@/EVERYONE@ and the well-known NT SIDs they
/// correspond to (S-1-5-<rid>, MS-DTYP 2.4.2.4).
const SPECIAL_WHO_SIDS: [(SpecialWho, u32); 7] = [
    (SpecialWho::Dialup, 1),
    (SpecialWho::Network, 2),
    (SpecialWho::Batch, 3),
    (SpecialWho::Interactive, 4),
    (SpecialWho::Service, 6),
    (SpecialWho::Anonymous, 7),
    (SpecialWho::Authenticated, 11),
];

/// NT ACE flags → NFSv4 ACE flags (without IDENTIFIER_GROUP, which depends on the who).
/// `None` when an unknown bit is set.
pub fn nt_flags_to_nfs4(flags: u8) -> Option<u32> {
    if flags & !NT_KNOWN_FLAGS != 0 {
        return None;
    }
    Some(FLAG_PAIRS.iter().filter(|(nt, _)| flags & nt != 0).fold(0, |acc, (_, v4)| acc | v4))
}

/// NFSv4 ACE flags → NT ACE flags (IDENTIFIER_GROUP is dropped: the who carries it). `None`
/// when an unknown bit is set.
pub fn nfs4_flags_to_nt(flags: u32) -> Option<u8> {
    if flags & !NFS4_KNOWN_FLAGS != 0 {
        return None;
    }
    Some(FLAG_PAIRS.iter().filter(|(_, v4)| flags & v4 != 0).fold(0, |acc, (nt, _)| acc | nt))
}

/// Replaces GENERIC_READ/WRITE/EXECUTE/ALL by the file rights they stand for
/// (FILE_GENERIC_*, FILE_ALL_ACCESS); every other bit is kept.
pub fn expand_generic_rights(mask: u32) -> u32 {
    const GENERIC: [(u32, u32); 4] = [
        (access::GENERIC_READ, access::FILE_GENERIC_READ),
        (access::GENERIC_WRITE, access::FILE_GENERIC_WRITE),
        (access::GENERIC_EXECUTE, access::FILE_GENERIC_EXECUTE),
        (access::GENERIC_ALL, access::FILE_ALL_ACCESS),
    ];
    GENERIC.iter().filter(|(generic, _)| mask & generic != 0).fold(
        mask & !(access::GENERIC_READ | access::GENERIC_WRITE | access::GENERIC_EXECUTE | access::GENERIC_ALL),
        |acc, (_, specific)| acc | specific,
    )
}

/// The well-known SID of an NFSv4 special who other than OWNER@/GROUP@ (EVERYONE@ is S-1-1-0).
pub fn special_who_sid(who: SpecialWho) -> Option<Sid> {
    if who == SpecialWho::Everyone {
        return Some(Sid::world());
    }
    SPECIAL_WHO_SIDS.iter().find(|(w, _)| *w == who).map(|(_, rid)| nt_authority(*rid))
}

/// The NFSv4 special who of a well-known SID (S-1-1-0 → EVERYONE@, S-1-5-11 → AUTHENTICATED@,
/// ...); CREATOR OWNER/GROUP are not included (they need INHERIT_ONLY, see [`sd_to_nfs4`]).
pub fn sid_special_who(sid: &Sid) -> Option<SpecialWho> {
    if *sid == Sid::world() {
        return Some(SpecialWho::Everyone);
    }
    SPECIAL_WHO_SIDS.iter().find(|(_, rid)| *sid == nt_authority(*rid)).map(|(w, _)| *w)
}

fn nt_authority(rid: u32) -> Sid {
    Sid::new(5, &[rid]).expect("S-1-5-<rid> is a valid SID")
}

fn who_text(who: &Who) -> String {
    match who {
        Who::Special(special) => special.as_str().to_string(),
        Who::Uid(uid) => format!("uid {uid}"),
        Who::Gid(gid) => format!("gid {gid}"),
        Who::Name(name) => format!("name {name:?}"),
    }
}

fn nt_type_name(ace_type: &AceType) -> &'static str {
    match ace_type {
        AceType::AccessAllowed => "ACCESS_ALLOWED",
        AceType::AccessDenied => "ACCESS_DENIED",
        AceType::SystemAudit => "SYSTEM_AUDIT",
        AceType::SystemAlarm => "SYSTEM_ALARM",
        AceType::Other { .. } => "other",
    }
}

fn nfs4_type_name(ace_type: Nfs4AceType) -> &'static str {
    match ace_type {
        Nfs4AceType::Allow => "ALLOW",
        Nfs4AceType::Deny => "DENY",
        Nfs4AceType::Audit => "AUDIT",
        Nfs4AceType::Alarm => "ALARM",
    }
}

const FILE_INHERIT_BITS_NFS4: u32 =
    nfs4::ace_flags::FILE_INHERIT | nfs4::ace_flags::DIRECTORY_INHERIT | nfs4::ace_flags::NO_PROPAGATE_INHERIT;
const FILE_INHERIT_BITS_NT: u8 =
    ace_flags::OBJECT_INHERIT | ace_flags::CONTAINER_INHERIT | ace_flags::NO_PROPAGATE_INHERIT;

/// Maps a security descriptor to NFSv4 ACLs for the file `file`.
///
/// The owner and group SIDs become `owner`/`group` ids (a chown for the caller to do); OWNER@
/// and GROUP@ ACEs refer to the new owner/group when the descriptor has them, else to
/// `file.uid`/`file.gid`.
pub fn sd_to_nfs4(
    sd: &SecurityDescriptor,
    file: &FileContext,
    idmap: &dyn IdMap,
    options: &MappingOptions,
) -> Result<Nfs4Mapping, MappingError> {
    let owner = match &sd.owner {
        None => None,
        Some(sid) => {
            let id =
                idmap.sid_to_unix(sid).map_err(|e| MappingError::Owner { sid: sid.clone(), reason: e.to_string() })?;
            let uid = id.as_uid().ok_or_else(|| MappingError::Owner {
                sid: sid.clone(),
                reason: format!("maps to {id}, and a file owner must be a user"),
            })?;
            Some(uid)
        }
    };
    let group = match &sd.group {
        None => None,
        Some(sid) => {
            let id =
                idmap.sid_to_unix(sid).map_err(|e| MappingError::Group { sid: sid.clone(), reason: e.to_string() })?;
            let gid = id.as_gid().ok_or_else(|| MappingError::Group {
                sid: sid.clone(),
                reason: format!("maps to {id}, and an owning group must be a group"),
            })?;
            Some(gid)
        }
    };
    let mut forward = Forward {
        idmap,
        options,
        owner_uid: owner.unwrap_or(file.uid),
        owner_gid: group.unwrap_or(file.gid),
        is_directory: file.is_directory,
        skipped: Vec::new(),
    };
    let dacl = match (&sd.dacl, options.null_dacl) {
        (Some(acl), _) => Some(forward.map_acl(AclKind::Dacl, acl, sd.control)?),
        (None, NullDacl::Absent) => None,
        (None, NullDacl::EveryoneFullAccess) => Some(Nfs4Acl {
            flags: control_to_acl_flags(AclKind::Dacl, sd.control),
            aces: vec![Nfs4Ace {
                ace_type: Nfs4AceType::Allow,
                flags: 0,
                mask: access::FILE_ALL_ACCESS,
                who: Who::Special(SpecialWho::Everyone),
            }],
        }),
    };
    let sacl = match &sd.sacl {
        Some(acl) => Some(forward.map_acl(AclKind::Sacl, acl, sd.control)?),
        None => None,
    };
    Ok(Nfs4Mapping { owner, group, acls: Nfs4Acls { dacl, sacl }, skipped: forward.skipped })
}

fn control_to_acl_flags(kind: AclKind, sd_control: u16) -> u32 {
    CONTROL_PAIRS
        .iter()
        .filter(|(dacl_bit, sacl_bit, _)| {
            let bit = if kind == AclKind::Dacl { *dacl_bit } else { *sacl_bit };
            sd_control & bit != 0
        })
        .fold(0, |acc, (_, _, v4)| acc | v4)
}

fn acl_flags_to_control(kind: AclKind, flags: u32) -> Result<u16, MappingError> {
    if flags & !NFS4_KNOWN_ACL_FLAGS != 0 {
        return Err(MappingError::UnknownAclFlags { acl: kind, flags: flags & !NFS4_KNOWN_ACL_FLAGS });
    }
    Ok(CONTROL_PAIRS
        .iter()
        .filter(|(_, _, v4)| flags & v4 != 0)
        .fold(0, |acc, (dacl_bit, sacl_bit, _)| acc | if kind == AclKind::Dacl { *dacl_bit } else { *sacl_bit }))
}

/// State of one SD → NFSv4 mapping.
struct Forward<'a> {
    idmap: &'a dyn IdMap,
    options: &'a MappingOptions,
    /// The uid/gid OWNER@ and GROUP@ stand for once the descriptor is applied.
    owner_uid: u32,
    owner_gid: u32,
    is_directory: bool,
    skipped: Vec<SkippedAce>,
}

impl Forward<'_> {
    fn map_acl(&mut self, kind: AclKind, acl: &Acl, sd_control: u16) -> Result<Nfs4Acl, MappingError> {
        let mut aces = Vec::with_capacity(acl.aces.len());
        for (index, ace) in acl.aces.iter().enumerate() {
            self.map_ace(kind, index, ace, &mut aces)?;
        }
        Ok(Nfs4Acl { flags: control_to_acl_flags(kind, sd_control), aces })
    }

    fn map_ace(&mut self, kind: AclKind, index: usize, ace: &Ace, out: &mut Vec<Nfs4Ace>) -> Result<(), MappingError> {
        let ace_type = match (kind, &ace.ace_type) {
            (AclKind::Dacl, AceType::AccessAllowed) => Nfs4AceType::Allow,
            (AclKind::Dacl, AceType::AccessDenied) => Nfs4AceType::Deny,
            (AclKind::Sacl, AceType::SystemAudit) => Nfs4AceType::Audit,
            (AclKind::Sacl, AceType::SystemAlarm) => Nfs4AceType::Alarm,
            (_, AceType::Other { type_code, .. }) => {
                return Err(MappingError::UnsupportedAceType {
                    acl: kind,
                    index,
                    sid: ace.sid.clone(),
                    type_code: *type_code,
                })
            }
            (_, other) => {
                return Err(MappingError::MisplacedAceType {
                    acl: kind,
                    index,
                    who: ace.sid.to_string(),
                    ace_type: nt_type_name(other),
                })
            }
        };
        let flags = nt_flags_to_nfs4(ace.flags).ok_or_else(|| MappingError::UnknownAceFlags {
            acl: kind,
            index,
            who: ace.sid.to_string(),
            flags: u32::from(ace.flags & !NT_KNOWN_FLAGS),
        })?;
        let mask = expand_generic_rights(ace.mask);
        // With `Strip` on a file the ACE written is not inheritable, so it names OWNER@/GROUP@
        // like any other non-inheritable ACE for the owner (Samba strips first, too).
        let strip_file_inheritance =
            !self.is_directory && self.options.file_inherit_flags == FileInheritFlags::Strip;
        let written_nt_flags = if strip_file_inheritance { ace.flags & !FILE_INHERIT_BITS_NT } else { ace.flags };
        let inheriting = written_nt_flags & NT_INHERITING != 0;

        // Who, as (who, extra flags) pairs: one, or two for an ID_TYPE_BOTH SID.
        let mut targets: Vec<(Who, u32)> = Vec::with_capacity(2);
        if let Some(special) = sid_special_who(&ace.sid) {
            targets.push((Who::Special(special), 0));
        } else if ace.sid == Sid::creator_owner() {
            // CREATOR OWNER never matches a token: it only acts when inherited, like an
            // inheritable OWNER@. INHERIT_ONLY says so (and keeps an ACE without OI/CI inert).
            targets.push((Who::Special(SpecialWho::Owner), nfs4::ace_flags::INHERIT_ONLY));
        } else if ace.sid == Sid::creator_group() {
            // No IDENTIFIER_GROUP: RFC 8881 says to ignore it on special whos, and Samba
            // writes this ACE without it (identical xattrs for identical descriptors).
            targets.push((Who::Special(SpecialWho::Group), nfs4::ace_flags::INHERIT_ONLY));
        } else {
            let unix_id = match self.idmap.sid_to_unix(&ace.sid) {
                Ok(id) => id,
                Err(e) if !e.is_not_found() => {
                    return Err(MappingError::IdMapFailed {
                        context: format!("{kind} ACE {index} ({})", ace.sid),
                        source: e,
                    })
                }
                Err(e) => match self.options.unmappable_sid {
                    UnmappableSid::Error => {
                        return Err(MappingError::UnmappableSid { acl: kind, index, sid: ace.sid.clone(), source: e })
                    }
                    UnmappableSid::Skip => {
                        self.skipped.push(SkippedAce {
                            acl: kind,
                            index,
                            who: ace.sid.to_string(),
                            reason: e.to_string(),
                        });
                        return Ok(());
                    }
                    UnmappableSid::MapTo(id) => id,
                },
            };
            self.id_targets(unix_id, inheriting, &mut targets);
        }

        for (who, extra_flags) in targets {
            let mut ace_flags = flags | extra_flags;
            if strip_file_inheritance {
                if ace_flags & nfs4::ace_flags::INHERIT_ONLY != 0 {
                    return Err(MappingError::InheritOnlyOnFile { acl: kind, index, who: ace.sid.to_string() });
                }
                ace_flags &= !FILE_INHERIT_BITS_NFS4;
            }
            out.push(Nfs4Ace { ace_type, flags: ace_flags, mask, who });
        }
        Ok(())
    }

    /// The NFSv4 whos for a mapped SID.
    fn id_targets(&self, unix_id: UnixId, inheriting: bool, targets: &mut Vec<(Who, u32)>) {
        let special = self.options.owner_group == OwnerGroupForm::Special && !inheriting;
        let user = |uid: u32| {
            if special && uid == self.owner_uid {
                (Who::Special(SpecialWho::Owner), 0)
            } else {
                (Who::Uid(uid), 0)
            }
        };
        let group = |gid: u32| {
            let who = if special && gid == self.owner_gid { Who::Special(SpecialWho::Group) } else { Who::Gid(gid) };
            (who, nfs4::ace_flags::IDENTIFIER_GROUP)
        };
        match unix_id {
            UnixId::Uid(uid) => targets.push(user(uid)),
            UnixId::Gid(gid) => targets.push(group(gid)),
            UnixId::Both(id) => {
                targets.push(group(id));
                let with_user = match self.options.both_ids {
                    BothIdAces::UserAndGroup => true,
                    BothIdAces::GroupPlusOwner => !inheriting && id == self.owner_uid,
                };
                if with_user {
                    targets.push(user(id));
                }
            }
        }
    }
}

/// Maps NFSv4 ACLs back to a security descriptor for the file `file`.
///
/// The owner and group SIDs are those of `file.uid` and `file.gid`; OWNER@/GROUP@ stand for
/// them. `acls.dacl == None` gives `sd.dacl == None`: the file has no stored ACL, and the
/// caller must derive a DACL from the mode rather than show a NULL DACL (which would grant
/// everyone everything).
pub fn nfs4_to_sd(
    acls: &Nfs4Acls,
    file: &FileContext,
    idmap: &dyn IdMap,
    options: &MappingOptions,
) -> Result<SdMapping, MappingError> {
    let owner_sid = idmap.uid_to_sid(file.uid).map_err(|source| MappingError::FileOwner { uid: file.uid, source })?;
    let group_sid = idmap.gid_to_sid(file.gid).map_err(|source| MappingError::FileGroup { gid: file.gid, source })?;
    let mut backward =
        Backward { idmap, options, owner_sid, group_sid, is_directory: file.is_directory, skipped: Vec::new() };
    let mut sd = SecurityDescriptor::new();
    sd.owner = Some(backward.owner_sid.clone());
    sd.group = Some(backward.group_sid.clone());
    if let Some(acl) = &acls.dacl {
        sd.control |= control::DACL_PRESENT | acl_flags_to_control(AclKind::Dacl, acl.flags)?;
        sd.dacl = Some(backward.map_acl(AclKind::Dacl, acl)?);
    }
    if let Some(acl) = &acls.sacl {
        sd.control |= control::SACL_PRESENT | acl_flags_to_control(AclKind::Sacl, acl.flags)?;
        sd.sacl = Some(backward.map_acl(AclKind::Sacl, acl)?);
    }
    Ok(SdMapping { sd, skipped: backward.skipped })
}

/// Whether an NT ACE produced from NFSv4 came from a user-side or group-side who; a user
/// ACE and a group ACE next to each other that come back as the same NT ACE are the two
/// halves of an ID_TYPE_BOTH SID and become one ACE again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    User,
    Group,
    Other,
}

struct Backward<'a> {
    idmap: &'a dyn IdMap,
    options: &'a MappingOptions,
    owner_sid: Sid,
    group_sid: Sid,
    is_directory: bool,
    skipped: Vec<SkippedAce>,
}

impl Backward<'_> {
    fn map_acl(&mut self, kind: AclKind, acl: &Nfs4Acl) -> Result<Acl, MappingError> {
        let mut mapped: Vec<(Ace, Side)> = Vec::with_capacity(acl.aces.len());
        for (index, ace) in acl.aces.iter().enumerate() {
            self.map_ace(kind, index, ace, &mut mapped)?;
        }
        let mut aces = Vec::with_capacity(mapped.len());
        let mut pending = mapped.into_iter().peekable();
        while let Some((ace, side)) = pending.next() {
            let halves_of_both = |next: &(Ace, Side)| {
                matches!((side, next.1), (Side::User, Side::Group) | (Side::Group, Side::User)) && next.0 == ace
            };
            if pending.peek().is_some_and(halves_of_both) {
                pending.next();
            }
            aces.push(ace);
        }
        Ok(Acl::new(aces))
    }

    fn map_ace(
        &mut self,
        kind: AclKind,
        index: usize,
        ace: &Nfs4Ace,
        out: &mut Vec<(Ace, Side)>,
    ) -> Result<(), MappingError> {
        let ace_type = match (kind, ace.ace_type) {
            (AclKind::Dacl, Nfs4AceType::Allow) => AceType::AccessAllowed,
            (AclKind::Dacl, Nfs4AceType::Deny) => AceType::AccessDenied,
            (AclKind::Sacl, Nfs4AceType::Audit) => AceType::SystemAudit,
            (AclKind::Sacl, Nfs4AceType::Alarm) => AceType::SystemAlarm,
            (_, other) => {
                return Err(MappingError::MisplacedAceType {
                    acl: kind,
                    index,
                    who: who_text(&ace.who),
                    ace_type: nfs4_type_name(other),
                })
            }
        };
        let mut flags = nfs4_flags_to_nt(ace.flags).ok_or_else(|| MappingError::UnknownAceFlags {
            acl: kind,
            index,
            who: who_text(&ace.who),
            flags: ace.flags & !NFS4_KNOWN_FLAGS,
        })?;
        if !self.is_directory && self.options.file_inherit_flags == FileInheritFlags::Strip {
            if flags & ace_flags::INHERIT_ONLY != 0 {
                return Err(MappingError::InheritOnlyOnFile { acl: kind, index, who: who_text(&ace.who) });
            }
            flags &= !FILE_INHERIT_BITS_NT;
        }
        let mut mask = ace.mask;
        if self.options.map_full_control && !self.is_directory {
            let all_but_deletes = access::FILE_ALL_ACCESS & !(access::DELETE | access::FILE_DELETE_CHILD);
            if mask & all_but_deletes == all_but_deletes {
                mask |= access::FILE_DELETE_CHILD;
            }
        }
        let make = |sid: Sid, flags: u8| Ace { ace_type: ace_type.clone(), flags, mask, sid };

        match &ace.who {
            Who::Special(special @ (SpecialWho::Owner | SpecialWho::Group)) => {
                let (current_sid, creator_sid, side) = if *special == SpecialWho::Owner {
                    (self.owner_sid.clone(), Sid::creator_owner(), Side::User)
                } else {
                    (self.group_sid.clone(), Sid::creator_group(), Side::Group)
                };
                let inherits = flags & (ace_flags::OBJECT_INHERIT | ace_flags::CONTAINER_INHERIT) != 0;
                if flags & ace_flags::INHERIT_ONLY != 0 {
                    out.push((make(creator_sid, flags), Side::Other));
                } else if inherits {
                    // An inheritable OWNER@ that also applies here: the current owner now, and
                    // whoever owns each child later (CREATOR OWNER), as Windows writes it.
                    out.push((make(current_sid, flags & !FILE_INHERIT_BITS_NT), side));
                    out.push((make(creator_sid, flags | ace_flags::INHERIT_ONLY), Side::Other));
                } else {
                    out.push((make(current_sid, flags), side));
                }
            }
            Who::Special(special) => {
                let sid = special_who_sid(*special).expect("every special who other than OWNER@/GROUP@ has a SID");
                out.push((make(sid, flags), Side::Other));
            }
            Who::Uid(uid) => match self.idmap.uid_to_sid(*uid) {
                Ok(sid) => out.push((make(sid, flags), Side::User)),
                Err(e) => self.unmappable(kind, index, &ace.who, e, |sid| out.push((make(sid, flags), Side::Other)))?,
            },
            Who::Gid(gid) => match self.idmap.gid_to_sid(*gid) {
                Ok(sid) => out.push((make(sid, flags), Side::Group)),
                Err(e) => self.unmappable(kind, index, &ace.who, e, |sid| out.push((make(sid, flags), Side::Other)))?,
            },
            Who::Name(name) => {
                // The codec resolves names to ids (it knows the NFSv4 domain); one left here
                // is unknown to us, and the options decide as for an unknown id.
                let reason = format!("principal name {name:?} was not resolved to a uid or gid");
                match &self.options.unmappable_who {
                    UnmappableWho::Error => {
                        return Err(MappingError::UnmappableWho { acl: kind, index, who: who_text(&ace.who), reason })
                    }
                    UnmappableWho::Skip => {
                        self.skipped.push(SkippedAce { acl: kind, index, who: who_text(&ace.who), reason })
                    }
                    UnmappableWho::MapTo(sid) => out.push((make(sid.clone(), flags), Side::Other)),
                }
            }
        }
        Ok(())
    }

    fn unmappable(
        &mut self,
        kind: AclKind,
        index: usize,
        who: &Who,
        error: IdMapError,
        push: impl FnOnce(Sid),
    ) -> Result<(), MappingError> {
        if !error.is_not_found() {
            return Err(MappingError::IdMapFailed {
                context: format!("{kind} ACE {index} ({})", who_text(who)),
                source: error,
            });
        }
        match &self.options.unmappable_who {
            UnmappableWho::Error => {
                Err(MappingError::UnmappableWho { acl: kind, index, who: who_text(who), reason: error.to_string() })
            }
            UnmappableWho::Skip => {
                self.skipped.push(SkippedAce { acl: kind, index, who: who_text(who), reason: error.to_string() });
                Ok(())
            }
            UnmappableWho::MapTo(sid) => {
                push(sid.clone());
                Ok(())
            }
        }
    }
}

impl Nfs4Acls {
    /// Splits NFSv4.0's single `acl` attribute: ALLOW/DENY ACEs form the DACL (with the ACL's
    /// flags), AUDIT/ALARM ACEs the SACL (absent when there are none). Order within each is
    /// kept. An attribute with no ACEs is an empty DACL (no access), never an absent one.
    pub fn from_combined(acl: &Nfs4Acl) -> Nfs4Acls {
        let (audit, access): (Vec<Nfs4Ace>, Vec<Nfs4Ace>) =
            acl.aces.iter().cloned().partition(|ace| matches!(ace.ace_type, Nfs4AceType::Audit | Nfs4AceType::Alarm));
        Nfs4Acls {
            dacl: Some(Nfs4Acl { flags: acl.flags, aces: access }),
            sacl: if audit.is_empty() { None } else { Some(Nfs4Acl { flags: 0, aces: audit }) },
        }
    }

    /// One NFSv4.0 `acl` attribute: DACL ACEs, then SACL ACEs. `None` when neither is present.
    /// Refused when something would be lost or change meaning: SACL flags (4.0 has one set of
    /// flags), or a SACL without a DACL (it would read back as an empty DACL: no access).
    pub fn to_combined(&self) -> Result<Option<Nfs4Acl>, MappingError> {
        match (&self.dacl, &self.sacl) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(MappingError::NotCombinable {
                reason: "a SACL without a DACL would read back as an empty DACL, which denies all access".into(),
            }),
            (Some(dacl), sacl) => {
                let mut combined = dacl.clone();
                if let Some(sacl) = sacl {
                    if sacl.flags != 0 {
                        return Err(MappingError::NotCombinable {
                            reason: format!("SACL flags {:#x} have no place in a combined NFSv4.0 ACL", sacl.flags),
                        });
                    }
                    combined.aces.extend(sacl.aces.iter().cloned());
                }
                Ok(Some(combined))
            }
        }
    }
}
