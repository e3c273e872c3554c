//! The POSIX.1e ACL model as Linux stores it: entries, validity, canonical order, the mode it
//! implies, getfacl-style text and the kernel's access check.
use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign};

use serde::{Deserialize, Serialize};

use super::eval::Requester;

/// Read/write/execute bits of one entry, with the kernel's values (`ACL_READ` 4, `ACL_WRITE`
/// 2, `ACL_EXECUTE` 1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub struct Perms(u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const READ: Perms = Perms(4);
    pub const WRITE: Perms = Perms(2);
    pub const EXECUTE: Perms = Perms(1);
    pub const ALL: Perms = Perms(7);

    /// `None` when `bits` has anything beyond rwx.
    pub fn from_bits(bits: u32) -> Option<Perms> {
        (bits <= 7).then_some(Perms(bits as u8))
    }

    /// Keeps only the rwx bits of `bits`.
    pub fn from_bits_truncate(bits: u32) -> Perms {
        Perms((bits & 7) as u8)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits of `self` that are not in `other`.
    pub fn without(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }

    /// The single-bit permissions r, w, x.
    pub fn singles() -> [Perms; 3] {
        [Perms::READ, Perms::WRITE, Perms::EXECUTE]
    }
}

impl BitAnd for Perms {
    type Output = Perms;
    fn bitand(self, rhs: Perms) -> Perms {
        Perms(self.0 & rhs.0)
    }
}

impl BitOr for Perms {
    type Output = Perms;
    fn bitor(self, rhs: Perms) -> Perms {
        Perms(self.0 | rhs.0)
    }
}

impl BitAndAssign for Perms {
    fn bitand_assign(&mut self, rhs: Perms) {
        self.0 &= rhs.0;
    }
}

impl BitOrAssign for Perms {
    fn bitor_assign(&mut self, rhs: Perms) {
        self.0 |= rhs.0;
    }
}

/// `rwx`, `r-x`, `---` as getfacl and ls print them.
impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |bit: Perms, c: char| if self.contains(bit) { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(Perms::READ, 'r'),
            flag(Perms::WRITE, 'w'),
            flag(Perms::EXECUTE, 'x')
        )
    }
}

/// The on-disk tag values (`include/uapi/linux/posix_acl.h`).
pub mod tag_code {
    pub const USER_OBJ: u16 = 0x01;
    pub const USER: u16 = 0x02;
    pub const GROUP_OBJ: u16 = 0x04;
    pub const GROUP: u16 = 0x08;
    pub const MASK: u16 = 0x10;
    pub const OTHER: u16 = 0x20;
}

/// The id the xattr carries for entries without a qualifier (`ACL_UNDEFINED_ID`).
pub const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// What an entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    /// The file owner (`user::`).
    UserObj,
    /// A named user (`user:<uid>:`).
    User(u32),
    /// The owning group (`group::`).
    GroupObj,
    /// A named group (`group:<gid>:`).
    Group(u32),
    /// The upper bound for named entries and the owning group (`mask::`).
    Mask,
    /// Everyone else (`other::`).
    Other,
}

impl Tag {
    pub fn code(self) -> u16 {
        match self {
            Tag::UserObj => tag_code::USER_OBJ,
            Tag::User(_) => tag_code::USER,
            Tag::GroupObj => tag_code::GROUP_OBJ,
            Tag::Group(_) => tag_code::GROUP,
            Tag::Mask => tag_code::MASK,
            Tag::Other => tag_code::OTHER,
        }
    }

    /// The id stored in the xattr: the uid/gid, or [`ACL_UNDEFINED_ID`].
    pub fn id(self) -> u32 {
        match self {
            Tag::User(id) | Tag::Group(id) => id,
            _ => ACL_UNDEFINED_ID,
        }
    }

    /// The canonical order: by tag value, then by id (what setfacl writes and nfsd sorts to).
    fn sort_key(self) -> (u16, u32) {
        (self.code(), self.id())
    }

    /// Whether the mask limits this entry (named entries and the owning group).
    pub fn is_group_class(self) -> bool {
        matches!(self, Tag::User(_) | Tag::GroupObj | Tag::Group(_))
    }
}

/// getfacl's spelling with numeric ids: `user::`, `user:1000:`, `mask::`.
impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::UserObj => write!(f, "user::"),
            Tag::User(uid) => write!(f, "user:{uid}:"),
            Tag::GroupObj => write!(f, "group::"),
            Tag::Group(gid) => write!(f, "group:{gid}:"),
            Tag::Mask => write!(f, "mask::"),
            Tag::Other => write!(f, "other::"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PosixEntry {
    pub tag: Tag,
    pub perms: Perms,
}

impl PosixEntry {
    pub fn new(tag: Tag, perms: Perms) -> Self {
        PosixEntry { tag, perms }
    }
}

/// Which of a file's two POSIX ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclKind {
    /// `system.posix_acl_access`: what the kernel enforces on the file.
    Access,
    /// `system.posix_acl_default` (directories only): what new children start from.
    Default,
}

impl AclKind {
    pub fn xattr_name(self) -> &'static str {
        match self {
            AclKind::Access => super::xattr::XATTR_NAME_ACCESS,
            AclKind::Default => super::xattr::XATTR_NAME_DEFAULT,
        }
    }
}

/// Why an ACL is not one the kernel accepts (`posix_acl_valid`) or not canonical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PosixAclError {
    #[error("entry {index} ({tag}) is out of place: entries must run user::, user:*, group::, group:*, mask::, other::, each base entry exactly once")]
    OutOfOrder { index: usize, tag: Tag },
    #[error("the ACL ends before its {missing} entry")]
    Incomplete { missing: &'static str },
    #[error("the ACL has named user or group entries but no mask:: entry")]
    MissingMask,
    #[error("entry {index} ({tag}) uses id {id:#x}, which is not a valid id")]
    InvalidId { index: usize, tag: Tag, id: u32 },
    #[error("entry {index} ({tag}) repeats an earlier entry for the same id")]
    Duplicate { index: usize, tag: Tag },
}

/// A POSIX ACL: the entries in stored order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PosixAcl {
    pub entries: Vec<PosixEntry>,
}

impl PosixAcl {
    pub fn new(entries: Vec<PosixEntry>) -> Self {
        PosixAcl { entries }
    }

    /// The three-entry ACL equivalent to the permission bits of `mode` (`posix_acl_from_mode`).
    pub fn from_mode(mode: u32) -> Self {
        PosixAcl::new(vec![
            PosixEntry::new(Tag::UserObj, Perms::from_bits_truncate(mode >> 6)),
            PosixEntry::new(Tag::GroupObj, Perms::from_bits_truncate(mode >> 3)),
            PosixEntry::new(Tag::Other, Perms::from_bits_truncate(mode)),
        ])
    }

    /// The perms of the first entry with `tag`.
    pub fn perms_of(&self, tag: Tag) -> Option<Perms> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perms)
    }

    pub fn mask(&self) -> Option<Perms> {
        self.perms_of(Tag::Mask)
    }

    /// Whether there are entries beyond the three the mode can carry.
    pub fn has_named_entries(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.tag, Tag::User(_) | Tag::Group(_)))
    }

    /// The kernel's rules (`posix_acl_valid`): base entries once each, in tag order, named
    /// entries in their slots, a mask exactly when there are named entries (it may also be
    /// present without them), and real ids. Like the kernel, it does not require sorted or
    /// unique ids; [`PosixAcl::validate_strict`] does.
    pub fn validate(&self) -> Result<(), PosixAclError> {
        #[derive(PartialEq)]
        enum Expect {
            UserObj,
            Users,
            Groups,
            AfterMask,
            Done,
        }
        let mut state = Expect::UserObj;
        let mut needs_mask = false;
        for (index, entry) in self.entries.iter().enumerate() {
            let out_of_order = PosixAclError::OutOfOrder {
                index,
                tag: entry.tag,
            };
            match entry.tag {
                Tag::UserObj if state == Expect::UserObj => state = Expect::Users,
                Tag::User(id) | Tag::Group(id)
                    if (state == Expect::Users && matches!(entry.tag, Tag::User(_)))
                        || (state == Expect::Groups && matches!(entry.tag, Tag::Group(_))) =>
                {
                    if id == ACL_UNDEFINED_ID {
                        return Err(PosixAclError::InvalidId {
                            index,
                            tag: entry.tag,
                            id,
                        });
                    }
                    needs_mask = true;
                }
                Tag::GroupObj if state == Expect::Users => state = Expect::Groups,
                Tag::Mask if state == Expect::Groups => state = Expect::AfterMask,
                Tag::Other if state == Expect::AfterMask => state = Expect::Done,
                Tag::Other if state == Expect::Groups => {
                    if needs_mask {
                        return Err(PosixAclError::MissingMask);
                    }
                    state = Expect::Done;
                }
                _ => return Err(out_of_order),
            }
        }
        let missing = match state {
            Expect::Done => return Ok(()),
            Expect::UserObj => "user::",
            Expect::Users => "group::",
            Expect::Groups | Expect::AfterMask => "other::",
        };
        Err(PosixAclError::Incomplete { missing })
    }

    /// [`PosixAcl::validate`] plus what libacl's `acl_valid` (and so setfacl) also demands:
    /// no two entries for the same uid or gid.
    pub fn validate_strict(&self) -> Result<(), PosixAclError> {
        self.validate()?;
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.tag.is_group_class()
                && entry.tag != Tag::GroupObj
                && self.entries[..index]
                    .iter()
                    .any(|earlier| earlier.tag == entry.tag)
            {
                return Err(PosixAclError::Duplicate {
                    index,
                    tag: entry.tag,
                });
            }
        }
        Ok(())
    }

    /// Sorts into canonical order (tag value, then id). Stable, so duplicates keep their
    /// relative order; it does not add or remove entries.
    pub fn sort_canonical(&mut self) {
        self.entries.sort_by_key(|e| e.tag.sort_key());
    }

    /// The permission bits (0o777) this ACL implies: owner = `user::`, group = `mask::` when
    /// present else `group::`, other = `other::` (`posix_acl_equiv_mode`). Missing entries
    /// count as no permissions.
    pub fn mode_bits(&self) -> u32 {
        let bits = |tag: Tag| self.perms_of(tag).map_or(0, |p| u32::from(p.bits()));
        let group = self
            .mask()
            .map_or_else(|| bits(Tag::GroupObj), |m| u32::from(m.bits()));
        (bits(Tag::UserObj) << 6) | (group << 3) | bits(Tag::Other)
    }

    /// getfacl-style text with numeric ids, one entry a line; `default:` before every line of
    /// a default ACL, and getfacl's `#effective:` note where the mask takes bits away.
    pub fn to_text(&self, kind: AclKind) -> String {
        let prefix = match kind {
            AclKind::Access => "",
            AclKind::Default => "default:",
        };
        let mask = self.mask();
        let mut text = String::new();
        for entry in &self.entries {
            text.push_str(&format!("{prefix}{}{}", entry.tag, entry.perms));
            if let Some(mask) = mask.filter(|_| entry.tag.is_group_class()) {
                let effective = entry.perms & mask;
                if effective != entry.perms {
                    text.push_str(&format!("\t#effective:{effective}"));
                }
            }
            text.push('\n');
        }
        text
    }

    /// `posix_acl_permission`: whether the ACL alone grants all of `want` to `requester` on a
    /// file owned by `owner` (the ACL's `group::` is the file's group `group`). The first
    /// class that matches decides: owner, then named user (masked), then the group entries
    /// (granted if any one matching entry holds all of `want`, then masked), else other.
    pub fn acl_permits(&self, owner: u32, group: u32, requester: &Requester, want: Perms) -> bool {
        let mask = self.mask().unwrap_or(Perms::ALL);
        let mut in_a_group_entry = false;
        for entry in &self.entries {
            match entry.tag {
                Tag::UserObj if requester.uid == owner => return entry.perms.contains(want),
                Tag::User(uid) if uid == requester.uid => {
                    return (entry.perms & mask).contains(want)
                }
                Tag::GroupObj | Tag::Group(_) => {
                    let gid = if let Tag::Group(gid) = entry.tag {
                        gid
                    } else {
                        group
                    };
                    if requester.gids.contains(&gid) {
                        in_a_group_entry = true;
                        if entry.perms.contains(want) {
                            return (entry.perms & mask).contains(want);
                        }
                    }
                }
                Tag::Other => return !in_a_group_entry && entry.perms.contains(want),
                _ => {}
            }
        }
        false
    }

    /// The kernel's whole check for a file whose mode was set from this ACL
    /// (`acl_permission_check` in fs/namei.c, without capabilities): the owner gets the
    /// owner bits; the ACL is consulted only when the mode's group bits are not all zero;
    /// otherwise members of the owning group get the group bits and everyone else the other
    /// bits. That last case means a `mask::---` lets named entries fall through to `other::`.
    pub fn kernel_permits(
        &self,
        owner: u32,
        group: u32,
        requester: &Requester,
        want: Perms,
    ) -> bool {
        let mode = self.mode_bits();
        if requester.uid == owner {
            return Perms::from_bits_truncate(mode >> 6).contains(want);
        }
        if mode & 0o070 != 0 {
            return self.acl_permits(owner, group, requester, want);
        }
        let class_bits = if requester.gids.contains(&group) {
            mode >> 3
        } else {
            mode
        };
        Perms::from_bits_truncate(class_bits).contains(want)
    }

    /// Each of r, w, x that [`PosixAcl::kernel_permits`] grants on its own. Asking for
    /// several bits at once can be refused even when each alone is granted (no single group
    /// entry holds them all), so this is an upper bound for multi-bit requests.
    pub fn kernel_granted(&self, owner: u32, group: u32, requester: &Requester) -> Perms {
        Perms::singles()
            .into_iter()
            .filter(|bit| self.kernel_permits(owner, group, requester, *bit))
            .fold(Perms::NONE, |acc, bit| acc | bit)
    }
}

/// The file mode with its permission bits replaced by `permission_bits` (0o777 part only);
/// file type, setuid, setgid and sticky bits of `existing_mode` are kept.
pub fn with_permission_bits(existing_mode: u32, permission_bits: u32) -> u32 {
    (existing_mode & !0o777) | (permission_bits & 0o777)
}
