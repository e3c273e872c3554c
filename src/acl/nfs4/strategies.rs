//! proptest strategies for valid NFSv4 ACLs, one per encoding's capabilities, built from
//! [`acl`] with a [`Profile`] that says what the encoding can hold. Reusable by other
//! modules' tests (e.g. the NT ↔ NFSv4 mapping).
use proptest::prelude::*;

use super::{ace_flags, acl_flags, mask, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};

/// What an encoding can carry; [`acl`] generates only ACLs inside it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Profile {
    /// Bits allowed in [`Nfs4Acl::flags`].
    pub acl_flags: u32,
    /// Bits allowed in [`Nfs4Ace::flags`] (IDENTIFIER_GROUP is set by the principal).
    pub ace_flags: u32,
    /// Bits allowed in [`Nfs4Ace::mask`].
    pub mask: u32,
    /// The special identifiers the encoding knows.
    pub specials: &'static [SpecialWho],
    /// Whether named principals can be carried.
    pub names: bool,
    /// Whether GROUP@ always carries IDENTIFIER_GROUP (text: `nfs4_setfacl` adds it).
    pub group_at_flagged: bool,
    pub min_aces: usize,
    pub max_aces: usize,
}

const ALL_SPECIALS: &[SpecialWho] = &SpecialWho::ALL;
const SAMBA_SPECIALS: &[SpecialWho] = &[SpecialWho::Owner, SpecialWho::Group, SpecialWho::Everyone];

/// Everything: any flag and mask bits, all specials, names.
pub(crate) const NFS41: Profile = Profile {
    acl_flags: u32::MAX,
    ace_flags: u32::MAX,
    mask: u32::MAX,
    specials: ALL_SPECIALS,
    names: true,
    group_at_flagged: false,
    min_aces: 0,
    max_aces: 8,
};

pub(crate) const NFS40: Profile = Profile {
    acl_flags: 0,
    ..NFS41
};

pub(crate) const XDR: Profile = Profile {
    names: false,
    ..NFS41
};

pub(crate) const NDR: Profile = Profile {
    acl_flags: 0xff,
    ace_flags: 0xffff,
    specials: SAMBA_SPECIALS,
    names: false,
    ..NFS41
};

/// What the nfs4-acl-tools text can say: no ACL flags, lettered flags and mask bits, at
/// least one ACE, names without separators.
pub(crate) const TEXT: Profile = Profile {
    acl_flags: 0,
    ace_flags: 0xff,
    mask: 0x001f_01ff,
    group_at_flagged: true,
    min_aces: 1,
    ..NFS41
};

pub(crate) fn ace_type() -> impl Strategy<Value = Nfs4AceType> {
    prop_oneof![
        Just(Nfs4AceType::Allow),
        Just(Nfs4AceType::Deny),
        Just(Nfs4AceType::Audit),
        Just(Nfs4AceType::Alarm),
    ]
}

/// Principal names that survive every string encoding: no separators, not all digits,
/// not ending in '@'.
pub(crate) fn principal_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9._-]{0,11}(@[a-z0-9.-]{1,12}[a-z0-9])?"
}

/// One valid ACE within `profile`.
pub(crate) fn ace(profile: Profile) -> impl Strategy<Value = Nfs4Ace> {
    let specials = profile.specials;
    let special = prop::sample::select(specials).prop_map(Who::Special);
    let who = if profile.names {
        prop_oneof![
            special,
            any::<u32>().prop_map(Who::Uid),
            any::<u32>().prop_map(Who::Gid),
            principal_name().prop_map(Who::Name),
        ]
        .boxed()
    } else {
        prop_oneof![
            special,
            any::<u32>().prop_map(Who::Uid),
            any::<u32>().prop_map(Who::Gid),
        ]
        .boxed()
    };
    (ace_type(), any::<u32>(), any::<u32>(), who, any::<bool>()).prop_map(
        move |(ace_type, flags, mask, who, group_flag)| {
            let mut flags = flags & profile.ace_flags & !ace_flags::IDENTIFIER_GROUP;
            // The flag follows the principal for ids; names and specials may carry it,
            // except GROUP@ in text, which always gets it back from nfs4_setfacl.
            let wants_group = match &who {
                Who::Gid(_) => true,
                Who::Uid(_) => false,
                Who::Special(SpecialWho::Group) if profile.group_at_flagged => true,
                _ => group_flag,
            };
            if wants_group {
                flags |= ace_flags::IDENTIFIER_GROUP;
            }
            Nfs4Ace {
                ace_type,
                flags,
                mask: mask & profile.mask,
                who,
            }
        },
    )
}

/// A valid ACL within `profile`.
pub(crate) fn acl(profile: Profile) -> impl Strategy<Value = Nfs4Acl> {
    (
        any::<u32>(),
        prop::collection::vec(ace(profile), profile.min_aces..=profile.max_aces),
    )
        .prop_map(move |(flags, aces)| Nfs4Acl {
            flags: flags & profile.acl_flags,
            aces,
        })
}

pub(crate) fn nfs40_acl() -> impl Strategy<Value = Nfs4Acl> {
    acl(NFS40)
}

pub(crate) fn nfs41_acl() -> impl Strategy<Value = Nfs4Acl> {
    acl(NFS41)
}

pub(crate) fn xdr_acl() -> impl Strategy<Value = Nfs4Acl> {
    acl(XDR)
}

pub(crate) fn ndr_acl() -> impl Strategy<Value = Nfs4Acl> {
    acl(NDR)
}

pub(crate) fn text_acl() -> impl Strategy<Value = Nfs4Acl> {
    acl(TEXT)
}

/// The ACL behind the hand-written Samba-style vectors of the xdr and ndr tests: OWNER@ full
/// control inheritable, a DENY of write for gid 100, EVERYONE@ read, PROTECTED.
pub(crate) fn samba_style_acl() -> Nfs4Acl {
    Nfs4Acl {
        flags: acl_flags::PROTECTED,
        aces: vec![
            Nfs4Ace {
                ace_type: Nfs4AceType::Allow,
                flags: ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT,
                mask: 0x001f_01ff,
                who: Who::Special(SpecialWho::Owner),
            },
            Nfs4Ace {
                ace_type: Nfs4AceType::Deny,
                flags: ace_flags::IDENTIFIER_GROUP,
                mask: mask::WRITE_DATA,
                who: Who::Gid(100),
            },
            Nfs4Ace {
                ace_type: Nfs4AceType::Allow,
                flags: 0,
                mask: mask::READ_DATA,
                who: Who::Special(SpecialWho::Everyone),
            },
        ],
    }
}
