//! The NFSv4 ACL model (RFC 8881 §6): ACL flags and ACEs with type, flags, mask and who.
//!
//! Plain data, shared by every encoding (`nfs`, `xdr`, `ndr`, nfs4-acl-tools text, JSON).
//! Masks use the NFSv4 bit values, which equal the NT file rights.
//!
//! The encodings live in submodules, each a pair of pure functions over bytes or text:
//!
//! - [`nfs`]: RFC 7530/8881 XDR as the Linux NFS client exposes it (`system.nfs4_acl`,
//!   `system.nfs4_dacl`, `system.nfs4_sacl`); principals are strings.
//! - [`xdr`]: Samba's/TrueNAS's `nfsacl41i` (numeric ids, `ACEI4_SPECIAL_WHO`).
//! - [`ndr`]: Samba's `nfs4acl_xattr` default (`security.nfs4acl_ndr`).
//! - [`text`]: the `nfs4_setfacl`/`nfs4_getfacl` text form.
//! - [`json`]: serde JSON with validation.
//! - [`Nfs4Encoding`]: one dispatch type over the binary encodings and their xattr names.
//!
//! Every decoder is total: any input gives `Ok` or an [`Nfs4CodecError`] that names the byte
//! offset (or line and column) and the offending value, never a panic, and never allocates
//! more than the input length justifies. Every encoder checks [`Nfs4Acl::validate`] first.
use serde::{Deserialize, Serialize};

mod encoding;
mod error;
pub mod json;
pub mod ndr;
pub mod nfs;
pub mod text;
mod wire;
pub mod xdr;

#[cfg(test)]
pub(crate) mod strategies;

pub use encoding::Nfs4Encoding;
pub use error::Nfs4CodecError;

/// ACL flags (`aclflag4`, NFSv4.1 only; an NFSv4.0 ACL has none).
pub mod acl_flags {
    pub const AUTO_INHERIT: u32 = 0x1;
    pub const PROTECTED: u32 = 0x2;
    pub const DEFAULTED: u32 = 0x4;
}

/// ACE flags (`aceflag4`).
pub mod ace_flags {
    pub const FILE_INHERIT: u32 = 0x01;
    pub const DIRECTORY_INHERIT: u32 = 0x02;
    pub const NO_PROPAGATE_INHERIT: u32 = 0x04;
    pub const INHERIT_ONLY: u32 = 0x08;
    pub const SUCCESSFUL_ACCESS: u32 = 0x10;
    pub const FAILED_ACCESS: u32 = 0x20;
    pub const IDENTIFIER_GROUP: u32 = 0x40;
    pub const INHERITED: u32 = 0x80;
}

/// Access mask bits (`acemask4`).
pub mod mask {
    pub const READ_DATA: u32 = 0x0000_0001; // LIST_DIRECTORY
    pub const WRITE_DATA: u32 = 0x0000_0002; // ADD_FILE
    pub const APPEND_DATA: u32 = 0x0000_0004; // ADD_SUBDIRECTORY
    pub const READ_NAMED_ATTRS: u32 = 0x0000_0008;
    pub const WRITE_NAMED_ATTRS: u32 = 0x0000_0010;
    pub const EXECUTE: u32 = 0x0000_0020;
    pub const DELETE_CHILD: u32 = 0x0000_0040;
    pub const READ_ATTRIBUTES: u32 = 0x0000_0080;
    pub const WRITE_ATTRIBUTES: u32 = 0x0000_0100;
    pub const WRITE_RETENTION: u32 = 0x0000_0200;
    pub const WRITE_RETENTION_HOLD: u32 = 0x0000_0400;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_ACL: u32 = 0x0002_0000;
    pub const WRITE_ACL: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const SYNCHRONIZE: u32 = 0x0010_0000;
}

/// An NFSv4 ACL. `flags` is [`acl_flags`] (0 for an NFSv4.0 ACL).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nfs4Acl {
    pub flags: u32,
    pub aces: Vec<Nfs4Ace>,
}

/// One ACE. Invariant: `who` is [`Who::Gid`] exactly when `flags` has IDENTIFIER_GROUP among
/// numeric ids; for [`Who::Name`] the flag says whether the name is a group; GROUP@ may carry
/// the flag or not (the Linux client sets it) and keeps whichever it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nfs4Ace {
    pub ace_type: Nfs4AceType,
    /// See [`ace_flags`].
    pub flags: u32,
    /// See [`mask`].
    pub mask: u32,
    pub who: Who,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nfs4AceType {
    Allow = 0,
    Deny = 1,
    Audit = 2,
    Alarm = 3,
}

/// Whom an ACE applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Who {
    /// OWNER@, GROUP@, EVERYONE@ and the other RFC 8881 §6.2.1.5 special identifiers.
    Special(SpecialWho),
    /// A numeric user id.
    Uid(u32),
    /// A numeric group id (IDENTIFIER_GROUP set).
    Gid(u32),
    /// A principal by name (`user@domain`), as the Linux NFS client's `nfs` encoding may
    /// carry it; resolved to an id by the identity mapping.
    Name(String),
}

/// The special identifiers, with the numeric values of Samba's/TrueNAS's `nfs41acl.x`
/// (`ACE4_SPECIAL_*`, used with `ACEI4_SPECIAL_WHO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SpecialWho {
    Owner = 1,
    Group = 2,
    Everyone = 3,
    Interactive = 4,
    Network = 5,
    Dialup = 6,
    Batch = 7,
    Anonymous = 8,
    Authenticated = 9,
    Service = 10,
}

impl SpecialWho {
    pub const ALL: [SpecialWho; 10] = [
        SpecialWho::Owner,
        SpecialWho::Group,
        SpecialWho::Everyone,
        SpecialWho::Interactive,
        SpecialWho::Network,
        SpecialWho::Dialup,
        SpecialWho::Batch,
        SpecialWho::Anonymous,
        SpecialWho::Authenticated,
        SpecialWho::Service,
    ];

    /// The wire/text form: `OWNER@`, `GROUP@`, `EVERYONE@`, `INTERACTIVE@`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialWho::Owner => "OWNER@",
            SpecialWho::Group => "GROUP@",
            SpecialWho::Everyone => "EVERYONE@",
            SpecialWho::Interactive => "INTERACTIVE@",
            SpecialWho::Network => "NETWORK@",
            SpecialWho::Dialup => "DIALUP@",
            SpecialWho::Batch => "BATCH@",
            SpecialWho::Anonymous => "ANONYMOUS@",
            SpecialWho::Authenticated => "AUTHENTICATED@",
            SpecialWho::Service => "SERVICE@",
        }
    }

    pub fn from_str_exact(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == text)
    }

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|w| *w as u32 == id)
    }
}

impl Nfs4AceType {
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Allow),
            1 => Some(Self::Deny),
            2 => Some(Self::Audit),
            3 => Some(Self::Alarm),
            _ => None,
        }
    }
}

impl Nfs4Acl {
    /// Checks every ACE with [`Nfs4Ace::validate`]; the error names the first bad ACE.
    pub fn validate(&self) -> Result<(), Nfs4CodecError> {
        for (index, ace) in self.aces.iter().enumerate() {
            ace.validate()
                .map_err(|why| Nfs4CodecError::InvalidAce { index, why })?;
        }
        Ok(())
    }
}

impl Nfs4Ace {
    /// An ACE as given; the caller keeps the IDENTIFIER_GROUP invariant (see [`Self::validate`]).
    pub fn new(ace_type: Nfs4AceType, flags: u32, mask: u32, who: Who) -> Self {
        Nfs4Ace { ace_type, flags, mask, who }
    }

    /// The model invariants every encoding relies on:
    /// - `Uid` never carries IDENTIFIER_GROUP and `Gid` always does (numeric principals are
    ///   told apart by that flag alone on the wire);
    /// - a `Name` is non-empty, has no NUL, is not all ASCII digits (it would read back as a
    ///   numeric id) and does not end in `@` (it would read back as a special identifier).
    pub fn validate(&self) -> Result<(), String> {
        let group_flag = self.flags & ace_flags::IDENTIFIER_GROUP != 0;
        match &self.who {
            Who::Uid(id) if group_flag => Err(format!(
                "uid {id} carries IDENTIFIER_GROUP (0x40); a group must be Who::Gid"
            )),
            Who::Gid(id) if !group_flag => Err(format!(
                "gid {id} lacks IDENTIFIER_GROUP (0x40); a user must be Who::Uid"
            )),
            Who::Name(name) => validate_principal_name(name),
            _ => Ok(()),
        }
    }
}

fn validate_principal_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty principal name".to_string());
    }
    if name.contains('\0') {
        return Err(format!("principal name {name:?} contains NUL"));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "principal name {name:?} is all digits; use Who::Uid or Who::Gid"
        ));
    }
    if name.ends_with('@') {
        return Err(format!(
            "principal name {name:?} ends in '@', the form of a special identifier"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ace(flags: u32, who: Who) -> Nfs4Ace {
        Nfs4Ace {
            ace_type: Nfs4AceType::Allow,
            flags,
            mask: mask::READ_DATA,
            who,
        }
    }

    #[test]
    fn validate_ties_numeric_ids_to_the_group_flag() {
        let group = ace_flags::IDENTIFIER_GROUP;
        assert!(ace(0, Who::Uid(1)).validate().is_ok());
        assert!(ace(group, Who::Gid(1)).validate().is_ok());
        assert!(ace(group, Who::Uid(1))
            .validate()
            .unwrap_err()
            .contains("uid 1"));
        assert!(ace(0, Who::Gid(1))
            .validate()
            .unwrap_err()
            .contains("gid 1"));
        // GROUP@ and names may or may not carry the flag.
        for flags in [0, group] {
            assert!(ace(flags, Who::Special(SpecialWho::Group))
                .validate()
                .is_ok());
            assert!(ace(flags, Who::Name("staff@ex".into())).validate().is_ok());
        }
    }

    #[test]
    fn validate_rejects_names_that_would_read_back_as_something_else() {
        for (name, needle) in [
            ("", "empty"),
            ("1000", "all digits"),
            ("OWNER@", "special"),
            ("a\0b", "NUL"),
        ] {
            let err = ace(0, Who::Name(name.into())).validate().unwrap_err();
            assert!(err.contains(needle), "{name:?}: {err}");
        }
        let acl = Nfs4Acl {
            flags: 0,
            aces: vec![ace(0, Who::Uid(1)), ace(0, Who::Gid(2))],
        };
        assert!(matches!(
            acl.validate(),
            Err(Nfs4CodecError::InvalidAce { index: 1, .. })
        ));
    }
}
