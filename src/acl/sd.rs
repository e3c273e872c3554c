//! The NT security descriptor model (MS-DTYP 2.4.6): owner, group, DACL, SACL, control.
//!
//! Plain data. Encodings live in submodules: [`binary`] (self-relative, as smbd hands it to
//! a VFS module), [`sddl`], [`smbcacls`] text, [`json`]; [`order`] has the Windows canonical
//! ACE order and generic-rights expansion. The NT ↔ NFSv4 mapping lives elsewhere. Nothing
//! here drops or reorders ACEs unless asked to: the order of `aces` is the order on the wire.
use serde::{Deserialize, Serialize};

use super::sid::Sid;

pub mod binary;
pub mod json;
pub mod order;
pub mod sddl;
pub mod smbcacls;
#[cfg(test)]
pub(crate) mod strategies;

/// SECURITY_DESCRIPTOR_CONTROL bits (MS-DTYP 2.4.6).
pub mod control {
    pub const OWNER_DEFAULTED: u16 = 0x0001;
    pub const GROUP_DEFAULTED: u16 = 0x0002;
    pub const DACL_PRESENT: u16 = 0x0004;
    pub const DACL_DEFAULTED: u16 = 0x0008;
    pub const SACL_PRESENT: u16 = 0x0010;
    pub const SACL_DEFAULTED: u16 = 0x0020;
    pub const DACL_TRUSTED: u16 = 0x0040;
    pub const SERVER_SECURITY: u16 = 0x0080;
    pub const DACL_AUTO_INHERIT_REQ: u16 = 0x0100;
    pub const SACL_AUTO_INHERIT_REQ: u16 = 0x0200;
    pub const DACL_AUTO_INHERITED: u16 = 0x0400;
    pub const SACL_AUTO_INHERITED: u16 = 0x0800;
    pub const DACL_PROTECTED: u16 = 0x1000;
    pub const SACL_PROTECTED: u16 = 0x2000;
    pub const RM_CONTROL_VALID: u16 = 0x4000;
    pub const SELF_RELATIVE: u16 = 0x8000;
}

/// ACE flags (MS-DTYP 2.4.4.1).
pub mod ace_flags {
    pub const OBJECT_INHERIT: u8 = 0x01;
    pub const CONTAINER_INHERIT: u8 = 0x02;
    pub const NO_PROPAGATE_INHERIT: u8 = 0x04;
    pub const INHERIT_ONLY: u8 = 0x08;
    pub const INHERITED: u8 = 0x10;
    pub const SUCCESSFUL_ACCESS: u8 = 0x40;
    pub const FAILED_ACCESS: u8 = 0x80;
}

/// Access mask bits for files and directories (MS-DTYP 2.4.3, MS-SMB2 2.2.13.1).
pub mod access {
    pub const FILE_READ_DATA: u32 = 0x0000_0001; // LIST_DIRECTORY
    pub const FILE_WRITE_DATA: u32 = 0x0000_0002; // ADD_FILE
    pub const FILE_APPEND_DATA: u32 = 0x0000_0004; // ADD_SUBDIRECTORY
    pub const FILE_READ_EA: u32 = 0x0000_0008;
    pub const FILE_WRITE_EA: u32 = 0x0000_0010;
    pub const FILE_EXECUTE: u32 = 0x0000_0020; // TRAVERSE
    pub const FILE_DELETE_CHILD: u32 = 0x0000_0040;
    pub const FILE_READ_ATTRIBUTES: u32 = 0x0000_0080;
    pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0000_0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const SYNCHRONIZE: u32 = 0x0010_0000;
    pub const ACCESS_SYSTEM_SECURITY: u32 = 0x0100_0000;
    pub const MAXIMUM_ALLOWED: u32 = 0x0200_0000;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_EXECUTE: u32 = 0x2000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const GENERIC_READ: u32 = 0x8000_0000;

    /// The specific rights a file's generic rights stand for (MS-SMB2 2.2.13.1.1 / Windows'
    /// FILE_GENERIC_* definitions).
    pub const FILE_GENERIC_READ: u32 = READ_CONTROL | FILE_READ_DATA | FILE_READ_ATTRIBUTES | FILE_READ_EA | SYNCHRONIZE;
    pub const FILE_GENERIC_WRITE: u32 =
        READ_CONTROL | FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES | FILE_WRITE_EA | FILE_APPEND_DATA | SYNCHRONIZE;
    pub const FILE_GENERIC_EXECUTE: u32 = READ_CONTROL | FILE_READ_ATTRIBUTES | FILE_EXECUTE | SYNCHRONIZE;
    pub const FILE_ALL_ACCESS: u32 = 0x001F_01FF;
}

/// A security descriptor. `owner`, `group`, `dacl` and `sacl` are `None` when absent (not
/// the same as present-and-empty for the ACLs: a NULL DACL grants everything, an empty DACL
/// grants nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityDescriptor {
    /// Always 1 in practice.
    pub revision: u8,
    /// SECURITY_DESCRIPTOR_CONTROL bits, see [`control`]. `dacl` / `sacl` being `Some`
    /// requires DACL_PRESENT / SACL_PRESENT (encoders set the bit from the field). The bit
    /// with `None` is a NULL ACL as MS-DTYP 2.4.6 defines it (present, no ACL: a NULL DACL
    /// grants everything, like an absent one); it is kept so binary round trips are exact.
    pub control: u16,
    pub owner: Option<Sid>,
    pub group: Option<Sid>,
    pub dacl: Option<Acl>,
    pub sacl: Option<Acl>,
}

/// An ACL: revision (2, or 4 when object ACEs are present) and its ACEs in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub revision: u8,
    pub aces: Vec<Ace>,
}

/// One ACE of the kinds a file system ACL holds, or an unknown kind kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ace {
    pub ace_type: AceType,
    /// See [`ace_flags`].
    pub flags: u8,
    /// See [`access`].
    pub mask: u32,
    pub sid: Sid,
}

/// ACE types. Object and callback ACEs (Active Directory) have no file system meaning; a
/// decoder that meets one keeps it as `Other` with its raw body so that it is never lost,
/// and the NFSv4 mapping refuses it with an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AceType {
    AccessAllowed,
    AccessDenied,
    SystemAudit,
    SystemAlarm,
    /// Any other ACE type: the type byte and the ACE body after the header (the `sid` field
    /// of such an [`Ace`] is then meaningless and set to S-1-0-0).
    Other { type_code: u8, body: Vec<u8> },
}

impl AceType {
    pub const ACCESS_ALLOWED: u8 = 0;
    pub const ACCESS_DENIED: u8 = 1;
    pub const SYSTEM_AUDIT: u8 = 2;
    pub const SYSTEM_ALARM: u8 = 3;

    pub fn code(&self) -> u8 {
        match self {
            AceType::AccessAllowed => Self::ACCESS_ALLOWED,
            AceType::AccessDenied => Self::ACCESS_DENIED,
            AceType::SystemAudit => Self::SYSTEM_AUDIT,
            AceType::SystemAlarm => Self::SYSTEM_ALARM,
            AceType::Other { type_code, .. } => *type_code,
        }
    }
}

impl Ace {
    pub fn new(ace_type: AceType, flags: u8, mask: u32, sid: Sid) -> Self {
        Ace { ace_type, flags, mask, sid }
    }

    pub fn allowed(sid: Sid, mask: u32, flags: u8) -> Self {
        Ace::new(AceType::AccessAllowed, flags, mask, sid)
    }

    pub fn denied(sid: Sid, mask: u32, flags: u8) -> Self {
        Ace::new(AceType::AccessDenied, flags, mask, sid)
    }

    /// An ACE of a type this model does not interpret. `body` is everything after the 4-byte
    /// ACE header. `mask` is derived from the body's first four bytes (little-endian; 0 when
    /// shorter), because every ACE type MS-DTYP defines starts its body with the access mask;
    /// `sid` is S-1-0-0. Encoders write the body and ignore `mask` and `sid`.
    pub fn other(type_code: u8, flags: u8, body: Vec<u8>) -> Self {
        let mask = Self::mask_of_other_body(&body);
        Ace { ace_type: AceType::Other { type_code, body }, flags, mask, sid: Sid::null() }
    }

    pub(crate) fn mask_of_other_body(body: &[u8]) -> u32 {
        match body {
            [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
            _ => 0,
        }
    }

    /// Whether the INHERITED flag is set.
    pub fn is_inherited(&self) -> bool {
        self.flags & ace_flags::INHERITED != 0
    }

    /// Size of the ACE on the wire (MS-DTYP 2.4.4.1).
    pub fn wire_len(&self) -> usize {
        match &self.ace_type {
            AceType::Other { body, .. } => 4 + body.len(),
            _ => 8 + self.sid.byte_len(),
        }
    }
}

/// Why a [`SecurityDescriptor`] is not a valid value of the model: what was wrong and where
/// (`dacl.aces[3]`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid security descriptor at {location}: {problem}")]
pub struct SdInvalid {
    pub location: String,
    pub problem: String,
}

impl SdInvalid {
    fn new(location: impl Into<String>, problem: impl Into<String>) -> Self {
        SdInvalid { location: location.into(), problem: problem.into() }
    }
}

impl Acl {
    /// ACL_REVISION (2), the revision of an ACL with no object ACEs.
    pub const REVISION: u8 = 2;
    /// ACL_REVISION3 (3): Windows and Samba's smbcacls write it for plain ACLs too.
    pub const REVISION_3: u8 = 3;
    /// ACL_REVISION_DS (4), the revision of an ACL that may hold object ACEs.
    pub const REVISION_DS: u8 = 4;

    /// Whether `revision` is one Windows accepts (2, 3 or 4).
    pub fn is_valid_revision(revision: u8) -> bool {
        matches!(revision, Self::REVISION | Self::REVISION_3 | Self::REVISION_DS)
    }
    /// The largest ACL the 16-bit AclSize field can describe.
    pub const MAX_WIRE_LEN: usize = u16::MAX as usize;

    /// Size of the ACL on the wire: 8-byte header plus the ACEs.
    pub fn wire_len(&self) -> usize {
        8 + self.aces.iter().map(Ace::wire_len).sum::<usize>()
    }

    /// Checks that the ACL can be written in binary form: revision 2, 3 or 4, every ACE
    /// consistent (see [`Ace::other`]), sizes within the 16-bit fields, ACE sizes a multiple
    /// of 4 as MS-DTYP 2.4.4.1 requires.
    pub fn validate(&self, location: &str) -> Result<(), SdInvalid> {
        if !Self::is_valid_revision(self.revision) {
            return Err(SdInvalid::new(location, format!("ACL revision {} (expected 2, 3 or 4)", self.revision)));
        }
        for (index, ace) in self.aces.iter().enumerate() {
            // Formatted only for an error: validate runs on every encode.
            let here = || format!("{location}.aces[{index}]");
            if let AceType::Other { type_code, body } = &ace.ace_type {
                if *type_code <= AceType::SYSTEM_ALARM {
                    return Err(SdInvalid::new(here(), format!("type {type_code} is a known type but is stored as `other`")));
                }
                if (4 + body.len()) % 4 != 0 {
                    return Err(SdInvalid::new(here(), format!("ACE size {} is not a multiple of 4", 4 + body.len())));
                }
                if ace.mask != Ace::mask_of_other_body(body) {
                    return Err(SdInvalid::new(here(), format!("mask {:#x} disagrees with the body's first 4 bytes", ace.mask)));
                }
                if ace.sid != Sid::null() {
                    return Err(SdInvalid::new(here(), format!("sid {} must be S-1-0-0 for an ACE of unknown type", ace.sid)));
                }
            }
            if ace.wire_len() > usize::from(u16::MAX) {
                return Err(SdInvalid::new(here(), format!("ACE is {} bytes, more than 65535", ace.wire_len())));
            }
        }
        if self.wire_len() > Self::MAX_WIRE_LEN {
            return Err(SdInvalid::new(location, format!("ACL is {} bytes, more than 65535", self.wire_len())));
        }
        Ok(())
    }

    pub fn new(aces: Vec<Ace>) -> Self {
        Acl { revision: Self::REVISION, aces }
    }
}

impl SecurityDescriptor {
    /// An empty descriptor: revision 1, self-relative, nothing present.
    pub fn new() -> Self {
        SecurityDescriptor { revision: 1, control: control::SELF_RELATIVE, owner: None, group: None, dacl: None, sacl: None }
    }
}

impl SecurityDescriptor {
    /// The SECURITY_DESCRIPTOR revision, the only one that exists.
    pub const REVISION: u8 = 1;

    /// Checks the invariants of the model: revision 1; `dacl`/`sacl` present only with
    /// DACL_PRESENT/SACL_PRESENT set (the reverse, the bit without an ACL, is a NULL ACL and
    /// allowed); every ACL valid (see [`Acl::validate`]).
    pub fn validate(&self) -> Result<(), SdInvalid> {
        if self.revision != Self::REVISION {
            return Err(SdInvalid::new("revision", format!("{} (expected 1)", self.revision)));
        }
        if self.dacl.is_some() && self.control & control::DACL_PRESENT == 0 {
            return Err(SdInvalid::new("control", format!("{:#06x}: a DACL is present but DACL_PRESENT is clear", self.control)));
        }
        if self.sacl.is_some() && self.control & control::SACL_PRESENT == 0 {
            return Err(SdInvalid::new("control", format!("{:#06x}: a SACL is present but SACL_PRESENT is clear", self.control)));
        }
        if let Some(dacl) = &self.dacl {
            dacl.validate("dacl")?;
        }
        if let Some(sacl) = &self.sacl {
            sacl.validate("sacl")?;
        }
        Ok(())
    }
}

impl Default for SecurityDescriptor {
    fn default() -> Self {
        Self::new()
    }
}
