//! Unit tests and property tests for the POSIX model, the mirror and the ways back.
use std::collections::BTreeSet;

use proptest::prelude::*;

use super::eval::{access_perms, mask_from_perms, Requester};
use super::model::{AclKind, Perms, PosixAcl, PosixAclError, PosixEntry, Tag};
use super::xattr::XattrDecodeError;
use super::{apply_mode, mirror, posix_to_nfs4};
use crate::acl::nfs4::{
    ace_flags as af, mask as m, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who,
};

const R: u32 = m::READ_DATA;
const W: u32 = m::WRITE_DATA | m::APPEND_DATA;
const X: u32 = m::EXECUTE;

fn ace(ace_type: Nfs4AceType, flags: u32, mask: u32, who: Who) -> Nfs4Ace {
    let flags = if matches!(who, Who::Gid(_)) {
        flags | af::IDENTIFIER_GROUP
    } else {
        flags
    };
    Nfs4Ace {
        ace_type,
        flags,
        mask,
        who,
    }
}
fn allow(mask: u32, who: Who) -> Nfs4Ace {
    ace(Nfs4AceType::Allow, 0, mask, who)
}
fn deny(mask: u32, who: Who) -> Nfs4Ace {
    ace(Nfs4AceType::Deny, 0, mask, who)
}
fn owner_at() -> Who {
    Who::Special(SpecialWho::Owner)
}
fn group_at() -> Who {
    Who::Special(SpecialWho::Group)
}
fn everyone() -> Who {
    Who::Special(SpecialWho::Everyone)
}
fn nfs4(aces: Vec<Nfs4Ace>) -> Nfs4Acl {
    Nfs4Acl { flags: 0, aces }
}
fn perms(text: &str) -> Perms {
    text.chars().fold(Perms::NONE, |acc, c| match c {
        'r' => acc | Perms::READ,
        'w' => acc | Perms::WRITE,
        'x' => acc | Perms::EXECUTE,
        _ => acc,
    })
}
fn entry(tag: Tag, text: &str) -> PosixEntry {
    PosixEntry::new(tag, perms(text))
}
fn all_wants() -> impl Iterator<Item = Perms> {
    (1..=7).map(Perms::from_bits_truncate)
}

fn sample_acl() -> PosixAcl {
    PosixAcl::new(vec![
        entry(Tag::UserObj, "rw"),
        entry(Tag::User(1000), "r"),
        entry(Tag::GroupObj, "rwx"),
        entry(Tag::Mask, "r"),
        entry(Tag::Other, ""),
    ])
}

// ---------------------------------------------------------------- model and xattr

#[test]
fn xattr_encodes_version_2_little_endian_entries() {
    let expected: Vec<u8> = vec![
        0x02, 0x00, 0x00, 0x00, // version 2
        0x01, 0x00, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff, // user::rw-
        0x02, 0x00, 0x04, 0x00, 0xe8, 0x03, 0x00, 0x00, // user:1000:r--
        0x04, 0x00, 0x07, 0x00, 0xff, 0xff, 0xff, 0xff, // group::rwx
        0x10, 0x00, 0x04, 0x00, 0xff, 0xff, 0xff, 0xff, // mask::r--
        0x20, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, // other::---
    ];
    assert_eq!(sample_acl().to_xattr(), expected);
    assert_eq!(PosixAcl::from_xattr(&expected), Ok(sample_acl()));
}

#[test]
fn xattr_decode_errors_name_the_offset() {
    let good = sample_acl().to_xattr();
    assert_eq!(
        PosixAcl::from_xattr(&good[..3]),
        Err(XattrDecodeError::TooShort { len: 3 })
    );
    let mut version_1 = good.clone();
    version_1[0] = 1;
    assert_eq!(
        PosixAcl::from_xattr(&version_1),
        Err(XattrDecodeError::UnsupportedVersion { version: 1 })
    );
    assert_eq!(
        PosixAcl::from_xattr(&good[..good.len() - 5]),
        Err(XattrDecodeError::TrailingBytes {
            offset: good.len() - 8,
            extra: 3
        })
    );
    let mut bad_tag = good.clone();
    bad_tag[12] = 0x03;
    assert_eq!(
        PosixAcl::from_xattr(&bad_tag),
        Err(XattrDecodeError::UnknownTag { offset: 12, tag: 3 })
    );
    let mut bad_perm = good.clone();
    bad_perm[22] = 0x08;
    assert_eq!(
        PosixAcl::from_xattr(&bad_perm),
        Err(XattrDecodeError::BadPerm {
            offset: 20,
            perm: 8
        })
    );
    let mut no_id = good.clone();
    no_id[16..20].copy_from_slice(&[0xff; 4]);
    assert_eq!(
        PosixAcl::from_xattr(&no_id),
        Err(XattrDecodeError::UndefinedId { offset: 12 })
    );
    assert_eq!(PosixAcl::from_xattr(&good[..4]), Ok(PosixAcl::default()));
    let message = PosixAcl::from_xattr(&bad_tag).unwrap_err().to_string();
    assert!(message.contains("offset 12"), "{message}");
}

#[test]
fn validate_follows_the_kernel_rules() {
    assert_eq!(sample_acl().validate(), Ok(()));
    assert_eq!(PosixAcl::from_mode(0o640).validate(), Ok(()));
    let without_mask = PosixAcl::new(vec![
        entry(Tag::UserObj, "rw"),
        entry(Tag::User(5), "r"),
        entry(Tag::GroupObj, "r"),
        entry(Tag::Other, ""),
    ]);
    assert_eq!(without_mask.validate(), Err(PosixAclError::MissingMask));
    let swapped = PosixAcl::new(vec![
        entry(Tag::GroupObj, "r"),
        entry(Tag::UserObj, "rw"),
        entry(Tag::Other, ""),
    ]);
    assert_eq!(
        swapped.validate(),
        Err(PosixAclError::OutOfOrder {
            index: 0,
            tag: Tag::GroupObj
        })
    );
    let short = PosixAcl::new(vec![entry(Tag::UserObj, "rw"), entry(Tag::GroupObj, "r")]);
    assert_eq!(
        short.validate(),
        Err(PosixAclError::Incomplete { missing: "other::" })
    );
    let twice_other = PosixAcl::new(vec![
        entry(Tag::UserObj, ""),
        entry(Tag::GroupObj, ""),
        entry(Tag::Other, ""),
        entry(Tag::Other, ""),
    ]);
    assert_eq!(
        twice_other.validate(),
        Err(PosixAclError::OutOfOrder {
            index: 3,
            tag: Tag::Other
        })
    );

    let mut duplicate = sample_acl();
    duplicate.entries.insert(2, entry(Tag::User(1000), "rw"));
    assert_eq!(
        duplicate.validate(),
        Ok(()),
        "the kernel does not look for duplicates"
    );
    assert_eq!(
        duplicate.validate_strict(),
        Err(PosixAclError::Duplicate {
            index: 2,
            tag: Tag::User(1000)
        })
    );
}

#[test]
fn sort_canonical_orders_by_tag_then_id() {
    let mut acl = PosixAcl::new(vec![
        entry(Tag::Other, "r"),
        entry(Tag::Group(7), "r"),
        entry(Tag::User(9), "r"),
        entry(Tag::Mask, "r"),
        entry(Tag::Group(3), "r"),
        entry(Tag::GroupObj, "r"),
        entry(Tag::User(2), "r"),
        entry(Tag::UserObj, "r"),
    ]);
    acl.sort_canonical();
    let tags: Vec<Tag> = acl.entries.iter().map(|e| e.tag).collect();
    assert_eq!(
        tags,
        vec![
            Tag::UserObj,
            Tag::User(2),
            Tag::User(9),
            Tag::GroupObj,
            Tag::Group(3),
            Tag::Group(7),
            Tag::Mask,
            Tag::Other
        ]
    );
    assert_eq!(acl.validate_strict(), Ok(()));
}

#[test]
fn text_is_getfacl_style() {
    assert_eq!(
        sample_acl().to_text(AclKind::Access),
        "user::rw-\nuser:1000:r--\ngroup::rwx\t#effective:r--\nmask::r--\nother::---\n"
    );
    assert_eq!(
        PosixAcl::from_mode(0o750).to_text(AclKind::Default),
        "default:user::rwx\ndefault:group::r-x\ndefault:other::---\n"
    );
}

#[test]
fn mode_bits_take_the_group_bits_from_the_mask() {
    assert_eq!(sample_acl().mode_bits(), 0o640);
    assert_eq!(PosixAcl::from_mode(0o751).mode_bits(), 0o751);
    assert_eq!(super::with_permission_bits(0o104755, 0o640), 0o104640);
}

#[test]
fn kernel_check_needs_one_group_entry_with_all_wanted_bits() {
    let acl = PosixAcl::new(vec![
        entry(Tag::UserObj, "rwx"),
        entry(Tag::GroupObj, "r"),
        entry(Tag::Group(20), "w"),
        entry(Tag::Mask, "rw"),
        entry(Tag::Other, "x"),
    ]);
    let in_both = Requester::new(7, [10, 20]);
    assert!(acl.kernel_permits(1, 10, &in_both, perms("r")));
    assert!(acl.kernel_permits(1, 10, &in_both, perms("w")));
    assert!(!acl.kernel_permits(1, 10, &in_both, perms("rw")));
    // In a group entry, so never falls through to other::.
    assert!(!acl.kernel_permits(1, 10, &in_both, perms("x")));
    assert_eq!(
        acl.kernel_granted(1, 10, &Requester::new(7, [99])),
        perms("x")
    );
}

#[test]
fn kernel_skips_the_acl_when_the_mask_is_empty() {
    let acl = PosixAcl::new(vec![
        entry(Tag::UserObj, "rwx"),
        entry(Tag::User(5), "rwx"),
        entry(Tag::GroupObj, ""),
        entry(Tag::Mask, ""),
        entry(Tag::Other, "r"),
    ]);
    let named = Requester::new(5, [99]);
    assert!(
        !acl.acl_permits(1, 10, &named, perms("r")),
        "the ACL alone gives user 5 nothing"
    );
    assert!(
        acl.kernel_permits(1, 10, &named, perms("r")),
        "but mode g=0 sends user 5 to other::"
    );
}

// ---------------------------------------------------------------- NFSv4 evaluation

#[test]
fn evaluation_takes_the_first_ace_that_decides_each_bit() {
    let acl = nfs4(vec![
        deny(W, Who::Gid(20)),
        allow(R | W, Who::Uid(7)),
        ace(
            Nfs4AceType::Allow,
            af::INHERIT_ONLY | af::FILE_INHERIT,
            X,
            everyone(),
        ),
        allow(X, everyone()),
        deny(R, everyone()),
    ]);
    assert_eq!(
        access_perms(&acl, 1, 10, &Requester::new(7, [20])),
        perms("rx")
    );
    assert_eq!(
        access_perms(&acl, 1, 10, &Requester::new(7, [30])),
        perms("rwx")
    );
    assert_eq!(
        access_perms(&acl, 1, 10, &Requester::new(8, [])),
        perms("x")
    );
}

#[test]
fn unresolvable_principals_only_take_rights_away() {
    let acl = nfs4(vec![
        allow(W, Who::Name("alice@example.com".into())),
        deny(R, Who::Special(SpecialWho::Authenticated)),
        allow(R | W, everyone()),
    ]);
    assert_eq!(
        access_perms(&acl, 1, 10, &Requester::new(8, [])),
        perms("w")
    );
}

#[test]
fn write_needs_write_data_and_append_data() {
    let acl = nfs4(vec![allow(m::WRITE_DATA | R, everyone())]);
    assert_eq!(
        access_perms(&acl, 1, 10, &Requester::new(8, [])),
        perms("r")
    );
    assert!(mirror(&acl, 1, 10, false)
        .notes
        .iter()
        .any(|n| n.contains("WRITE_DATA/APPEND_DATA")));
}

// ---------------------------------------------------------------- mirror examples (docs/posix-mirror.md)

#[test]
fn example_group_deny_before_everyone_allow() {
    let acl = nfs4(vec![deny(W, Who::Gid(20)), allow(R | W | X, everyone())]);
    let mirrored = mirror(&acl, 1000, 10, false);
    assert_eq!(
        mirrored.access.to_text(AclKind::Access),
        "user::r-x\ngroup::r-x\ngroup:20:r-x\nmask::r-x\nother::rwx\n"
    );
    assert_eq!(mirrored.mode, 0o557);
    let narrowed: Vec<Tag> = mirrored.narrowed.iter().map(|n| n.tag).collect();
    assert_eq!(narrowed, vec![Tag::UserObj, Tag::GroupObj]);
    assert!(mirrored.narrowed[0].reason.contains("group 20"));
}

#[test]
fn example_named_user_and_everyone_deny_in_the_middle() {
    let acl = nfs4(vec![
        allow(R | W, Who::Uid(1001)),
        deny(W, everyone()),
        allow(R | W | X, group_at()),
        allow(R | W | X, owner_at()),
    ]);
    let mirrored = mirror(&acl, 1000, 10, false);
    assert_eq!(
        mirrored.access.to_text(AclKind::Access),
        "user::r-x\nuser:1001:rw-\ngroup::r-x\nmask::rwx\nother::---\n"
    );
    // User 1001 in group 10 gets x over SMB from GROUP@; a named POSIX entry ignores groups.
    let narrowed: Vec<(Tag, Perms)> = mirrored
        .narrowed
        .iter()
        .map(|n| (n.tag, n.nfs4_best))
        .collect();
    assert_eq!(narrowed, vec![(Tag::User(1001), perms("rwx"))]);
}

#[test]
fn example_default_acl_serves_files_and_directories() {
    let inherit = af::FILE_INHERIT | af::DIRECTORY_INHERIT;
    let acl = nfs4(vec![
        ace(
            Nfs4AceType::Allow,
            inherit,
            R | W | X | m::DELETE_CHILD,
            owner_at(),
        ),
        ace(Nfs4AceType::Allow, inherit, R | X, group_at()),
        ace(
            Nfs4AceType::Allow,
            af::FILE_INHERIT | af::INHERIT_ONLY,
            R | W,
            Who::Gid(20),
        ),
    ]);
    let mirrored = mirror(&acl, 1000, 10, true);
    assert_eq!(
        mirrored.access.to_text(AclKind::Access),
        "user::rwx\ngroup::r-x\nother::---\n"
    );
    let default = mirrored
        .default
        .expect("inheritable ACEs give a default ACL");
    assert_eq!(
        default.to_text(AclKind::Default),
        "default:user::rwx\ndefault:group::r-x\ndefault:group:20:---\ndefault:mask::r-x\ndefault:other::---\n"
    );
    let group_20 = mirrored
        .narrowed
        .iter()
        .find(|n| n.tag == Tag::Group(20))
        .expect("group 20 narrowed");
    assert_eq!(group_20.kind, AclKind::Default);
    assert!(group_20
        .reason
        .contains("FILE_INHERIT vs DIRECTORY_INHERIT"));
}

#[test]
fn mask_stays_nonzero_when_named_entries_are_denied_and_other_is_not() {
    let acl = nfs4(vec![
        deny(R, Who::Uid(5)),
        deny(R, group_at()),
        allow(R, everyone()),
    ]);
    let mirrored = mirror(&acl, 1, 10, false);
    assert_eq!(mirrored.access.perms_of(Tag::User(5)), Some(Perms::NONE));
    assert_eq!(mirrored.access.mask(), Some(Perms::READ));
    assert!(!mirrored
        .access
        .kernel_permits(1, 10, &Requester::new(5, []), Perms::READ));
    assert!(mirrored.notes.iter().any(|n| n.contains("mask::")));
}

#[test]
fn files_get_no_default_acl() {
    let acl = nfs4(vec![ace(
        Nfs4AceType::Allow,
        af::FILE_INHERIT,
        R,
        everyone(),
    )]);
    assert_eq!(mirror(&acl, 1, 10, false).default, None);
    assert!(mirror(&acl, 1, 10, true).default.is_some());
    assert_eq!(
        mirror(&nfs4(vec![allow(R, everyone())]), 1, 10, true).default,
        None
    );
}

#[test]
fn chmod_keeps_named_entries_within_the_group_bits() {
    let acl = nfs4(vec![
        allow(R | W | X | m::WRITE_ACL, owner_at()),
        allow(R | W, Who::Uid(1001)),
        allow(R | W | X, everyone()),
        ace(
            Nfs4AceType::Allow,
            af::FILE_INHERIT | af::DIRECTORY_INHERIT,
            R | W,
            Who::Gid(20),
        ),
    ]);
    let changed = apply_mode(&acl, 0o740, true);
    assert_eq!(
        access_perms(&changed, 1000, 10, &Requester::new(1000, [])),
        perms("rwx")
    );
    assert_eq!(
        access_perms(&changed, 1000, 10, &Requester::new(1001, [])),
        perms("r")
    );
    assert_eq!(
        access_perms(&changed, 1000, 10, &Requester::new(1002, [10])),
        perms("r")
    );
    assert_eq!(
        access_perms(&changed, 1000, 10, &Requester::new(1002, [])),
        Perms::NONE
    );
    assert!(
        changed
            .aces
            .iter()
            .any(|a| a.who == owner_at() && a.mask == m::WRITE_ACL),
        "non-rwx rights kept"
    );
    assert_eq!(
        mirror(&changed, 1000, 10, true).default,
        mirror(&acl, 1000, 10, true).default
    );
    assert_eq!(mirror(&changed, 1000, 10, true).mode, 0o740);
}

// ---------------------------------------------------------------- property tests

const UIDS: [u32; 4] = [1000, 1001, 1002, 1003];
const GIDS: [u32; 4] = [100, 101, 102, 103];
/// Ids no ACE names, for requesters outside every entry.
const STRANGER_UID: u32 = 1999;
const STRANGER_GID: u32 = 199;

fn every_requester() -> Vec<Requester> {
    let uids = UIDS.iter().copied().chain([STRANGER_UID]);
    let gids: Vec<u32> = GIDS.iter().copied().chain([STRANGER_GID]).collect();
    let mut requesters = Vec::new();
    for uid in uids {
        for subset in 0u32..(1 << gids.len()) {
            let chosen = gids
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .map(|(_, g)| *g);
            requesters.push(Requester::new(uid, chosen));
        }
    }
    requesters
}

fn who_strategy() -> impl Strategy<Value = Who> {
    prop_oneof![
        3 => Just(owner_at()),
        3 => Just(group_at()),
        3 => Just(everyone()),
        4 => prop::sample::select(UIDS.to_vec()).prop_map(Who::Uid),
        4 => prop::sample::select(GIDS.to_vec()).prop_map(Who::Gid),
        1 => Just(Who::Name("someone@example.com".to_string())),
        1 => Just(Who::Special(SpecialWho::Authenticated)),
    ]
}

fn mask_strategy() -> impl Strategy<Value = u32> {
    let write = prop_oneof![4 => Just(0), 5 => Just(W), 1 => Just(m::WRITE_DATA), 1 => Just(m::APPEND_DATA)];
    (
        any::<bool>(),
        write,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(r, w, x, dc, acl)| {
            (if r { R } else { 0 })
                | w
                | (if x { X } else { 0 })
                | (if dc { m::DELETE_CHILD } else { 0 })
                | (if acl { m::WRITE_ACL } else { 0 })
        })
}

fn flags_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => Just(0),
        3 => (0u32..16).prop_map(|bits| bits & (af::FILE_INHERIT | af::DIRECTORY_INHERIT | af::NO_PROPAGATE_INHERIT | af::INHERIT_ONLY)),
    ]
}

fn ace_strategy(with_unresolvable: bool) -> impl Strategy<Value = Nfs4Ace> {
    let ace_type = prop_oneof![12 => Just(Nfs4AceType::Allow), 7 => Just(Nfs4AceType::Deny), 1 => Just(Nfs4AceType::Audit)];
    (ace_type, flags_strategy(), mask_strategy(), who_strategy())
        .prop_filter("resolvable principals only", move |(_, _, _, who)| {
            with_unresolvable || super::eval::is_resolvable(who)
        })
        .prop_map(|(ace_type, flags, mask, who)| ace(ace_type, flags, mask, who))
}

fn nfs4_strategy(with_unresolvable: bool) -> impl Strategy<Value = Nfs4Acl> {
    prop::collection::vec(ace_strategy(with_unresolvable), 0..9).prop_map(nfs4)
}

fn perms_strategy() -> impl Strategy<Value = Perms> {
    (0u32..8).prop_map(Perms::from_bits_truncate)
}

/// Valid, strictly unique POSIX ACLs; named ids may equal the owner or owning group.
fn posix_strategy() -> impl Strategy<Value = PosixAcl> {
    (
        perms_strategy(),
        prop::collection::btree_map(prop::sample::select(UIDS.to_vec()), perms_strategy(), 0..3),
        perms_strategy(),
        prop::collection::btree_map(prop::sample::select(GIDS.to_vec()), perms_strategy(), 0..3),
        prop::option::of(perms_strategy()),
        perms_strategy(),
    )
        .prop_map(|(owner, users, group, groups, mask, other)| {
            let mut entries = vec![PosixEntry::new(Tag::UserObj, owner)];
            entries.extend(
                users
                    .iter()
                    .map(|(uid, p)| PosixEntry::new(Tag::User(*uid), *p)),
            );
            entries.push(PosixEntry::new(Tag::GroupObj, group));
            entries.extend(
                groups
                    .iter()
                    .map(|(gid, p)| PosixEntry::new(Tag::Group(*gid), *p)),
            );
            let needs_mask = !users.is_empty() || !groups.is_empty();
            if let Some(mask) = mask.or(needs_mask.then_some(Perms::ALL)) {
                entries.push(PosixEntry::new(Tag::Mask, mask));
            }
            entries.push(PosixEntry::new(Tag::Other, other));
            PosixAcl::new(entries)
        })
}

/// What a new child of a directory with `parent` gets (RFC 8881 §6.4.3), written out
/// independently of the mirror: the child's effective ACEs plus, for a directory, the
/// inheritable ACEs it passes on.
fn inherit(parent: &Nfs4Acl, child_is_dir: bool) -> Nfs4Acl {
    let mut aces = Vec::new();
    for ace in &parent.aces {
        let file_inherit = ace.flags & af::FILE_INHERIT != 0;
        let dir_inherit = ace.flags & af::DIRECTORY_INHERIT != 0;
        let no_propagate = ace.flags & af::NO_PROPAGATE_INHERIT != 0;
        let plain = ace.flags
            & !(af::FILE_INHERIT
                | af::DIRECTORY_INHERIT
                | af::NO_PROPAGATE_INHERIT
                | af::INHERIT_ONLY);
        if !child_is_dir {
            if file_inherit {
                aces.push(Nfs4Ace {
                    flags: plain,
                    ..ace.clone()
                });
            }
        } else if dir_inherit {
            let flags = if no_propagate {
                plain
            } else {
                ace.flags & !af::INHERIT_ONLY
            };
            aces.push(Nfs4Ace {
                flags,
                ..ace.clone()
            });
        } else if file_inherit && !no_propagate {
            aces.push(Nfs4Ace {
                flags: ace.flags | af::INHERIT_ONLY,
                ..ace.clone()
            });
        }
    }
    Nfs4Acl { flags: 0, aces }
}

fn group_class(acl: &Nfs4Acl, group: u32, requester: &Requester) -> bool {
    requester.gids.contains(&group)
        || acl
            .aces
            .iter()
            .filter(|a| super::eval::is_effective(a))
            .any(|a| match a.who {
                Who::Uid(uid) => uid == requester.uid,
                Who::Gid(gid) => requester.gids.contains(&gid),
                _ => false,
            })
}

proptest! {
    // No regression files: they would land in the shared worktree.
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The security promise: with the mirrored access ACL and mode, the kernel grants no
    /// requester any rwx combination the NFSv4 ACL does not grant.
    #[test]
    fn mirror_never_grants_more_than_nfs4(
        acl in nfs4_strategy(true),
        owner in prop::sample::select(UIDS.to_vec()),
        group in prop::sample::select(GIDS.to_vec()),
        is_dir in any::<bool>(),
    ) {
        let mirrored = mirror(&acl, owner, group, is_dir);
        prop_assert_eq!(mirrored.access.validate_strict(), Ok(()));
        prop_assert_eq!(mirrored.mode, mirrored.access.mode_bits());
        if let Some(default) = &mirrored.default {
            prop_assert_eq!(default.validate_strict(), Ok(()));
        }
        for requester in every_requester() {
            let granted = access_perms(&acl, owner, group, &requester);
            for want in all_wants() {
                if mirrored.access.kernel_permits(owner, group, &requester, want) {
                    prop_assert!(granted.contains(want),
                        "{:?} gets {} from POSIX but NFSv4 grants {}\n{}", requester, want, granted,
                        mirrored.access.to_text(AclKind::Access));
                }
            }
        }
    }

    /// Every child, at any depth, starts from the default ACL with no more than it inherits.
    #[test]
    fn default_acl_never_grants_more_than_inheritance(
        acl in nfs4_strategy(true),
        child_owner in prop::sample::select(UIDS.to_vec()),
        child_group in prop::sample::select(GIDS.to_vec()),
    ) {
        let mirrored = mirror(&acl, UIDS[0], GIDS[0], true);
        let Some(default) = mirrored.default else {
            prop_assert!(acl.aces.iter().all(|a| a.flags & (af::FILE_INHERIT | af::DIRECTORY_INHERIT) == 0
                || !matches!(a.ace_type, Nfs4AceType::Allow | Nfs4AceType::Deny)));
            return Ok(());
        };
        let subdir = inherit(&acl, true);
        let subsubdir = inherit(&subdir, true);
        let heirs = [inherit(&acl, false), subdir.clone(), inherit(&subdir, false), subsubdir.clone(), inherit(&subsubdir, false)];
        for heir in &heirs {
            for requester in every_requester() {
                let granted = access_perms(heir, child_owner, child_group, &requester);
                for want in all_wants() {
                    if default.kernel_permits(child_owner, child_group, &requester, want) {
                        prop_assert!(granted.contains(want),
                            "{:?} gets {} from the default ACL but inherits {}", requester, want, granted);
                    }
                }
            }
        }
    }

    /// nfsd-style presentation is exact: each of r, w, x is granted by the NFSv4 ACL iff the
    /// kernel grants it; and for default ACLs, a new file's inherited ACL matches the ACL check.
    #[test]
    fn presented_nfs4_acl_matches_the_posix_check(
        access in posix_strategy(),
        default in prop::option::of(posix_strategy()),
        owner in prop::sample::select(UIDS.to_vec()),
        group in prop::sample::select(GIDS.to_vec()),
        is_dir in any::<bool>(),
    ) {
        let presented = posix_to_nfs4(&access, default.as_ref(), is_dir).expect("valid input");
        let inherited_by_file = inherit(&presented, false);
        for requester in every_requester() {
            let nfs4_perms = access_perms(&presented, owner, group, &requester);
            prop_assert_eq!(nfs4_perms, access.kernel_granted(owner, group, &requester), "{:?}", requester);
            for want in all_wants() {
                if access.kernel_permits(owner, group, &requester, want) {
                    prop_assert!(nfs4_perms.contains(want));
                }
            }
            if let (Some(default), true) = (&default, is_dir) {
                let expected = Perms::singles().into_iter()
                    .filter(|bit| default.acl_permits(owner, group, &requester, *bit))
                    .fold(Perms::NONE, |acc, bit| acc | bit);
                prop_assert_eq!(access_perms(&inherited_by_file, owner, group, &requester), expected);
            }
        }
        if !is_dir || default.is_none() {
            prop_assert!(presented.aces.iter().all(|a| a.flags & af::INHERIT_ONLY == 0));
        }
    }

    /// Mirroring what nfsd would present loses nothing: POSIX → NFSv4 → POSIX is exact.
    #[test]
    fn mirror_of_presented_acl_is_exact(
        access in posix_strategy(),
        owner in prop::sample::select(UIDS.to_vec()),
        group in prop::sample::select(GIDS.to_vec()),
    ) {
        let mirrored = mirror(&posix_to_nfs4(&access, None, false).expect("valid input"), owner, group, false);
        prop_assert!(mirrored.narrowed.is_empty(), "{:?}", mirrored.narrowed);
        for requester in every_requester() {
            prop_assert_eq!(
                mirrored.access.kernel_granted(owner, group, &requester),
                access.kernel_granted(owner, group, &requester),
                "{:?}\n{}\n{}", requester, access.to_text(AclKind::Access), mirrored.access.to_text(AclKind::Access)
            );
        }
    }

    /// After chmod: the owner gets exactly the owner bits, the group class (owning group and
    /// every named principal) at most the group bits, everyone else the other bits (at most,
    /// when a DENY names a principal we cannot resolve); inheritance is untouched.
    #[test]
    fn apply_mode_reflects_the_mode(
        acl in nfs4_strategy(true),
        mode in 0u32..0o1000,
        owner in prop::sample::select(UIDS.to_vec()),
        group in prop::sample::select(GIDS.to_vec()),
        is_dir in any::<bool>(),
    ) {
        let changed = apply_mode(&acl, mode, is_dir);
        let class_bits = |shift: u32| Perms::from_bits_truncate(mode >> shift);
        let all_resolvable = acl.aces.iter().all(|a| super::eval::is_resolvable(&a.who));
        for requester in every_requester() {
            let granted = access_perms(&changed, owner, group, &requester);
            if requester.uid == owner {
                prop_assert_eq!(granted, class_bits(6));
            } else if group_class(&changed, group, &requester) {
                prop_assert!(class_bits(3).contains(granted), "{:?}: {} beyond group bits", requester, granted);
            } else if all_resolvable {
                prop_assert_eq!(granted, class_bits(0));
            } else {
                prop_assert!(class_bits(0).contains(granted));
            }
        }
        let mirrored = mirror(&changed, owner, group, is_dir);
        prop_assert_eq!(mirrored.mode & 0o700, mode & 0o700);
        if all_resolvable {
            prop_assert_eq!(mirrored.mode & 0o007, mode & 0o007);
        }
        if is_dir {
            prop_assert_eq!(mirrored.default, mirror(&acl, owner, group, is_dir).default);
        }
        let rights = mask_from_perms(Perms::ALL, is_dir);
        let rest = |a: &Nfs4Acl| a.aces.iter().filter(|x| super::eval::is_effective(x)).fold(0, |acc, x| acc | (x.mask & !rights));
        prop_assert_eq!(rest(&changed) & !rest(&acl), 0, "chmod must not add rights beyond rwx");
    }

    /// Any bytes: the decoder returns, and what it accepts encodes back to the same bytes
    /// (up to the ignored id of unnamed entries).
    #[test]
    fn xattr_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(acl) = PosixAcl::from_xattr(&bytes) {
            prop_assert_eq!(acl.to_xattr().len(), bytes.len());
            prop_assert_eq!(PosixAcl::from_xattr(&acl.to_xattr()), Ok(acl));
        }
    }

    #[test]
    fn xattr_round_trips(acl in posix_strategy()) {
        prop_assert_eq!(PosixAcl::from_xattr(&acl.to_xattr()), Ok(acl));
    }
}

#[test]
fn every_requester_covers_all_memberships() {
    let requesters = every_requester();
    assert_eq!(requesters.len(), 5 * 32);
    let distinct: BTreeSet<(u32, Vec<u32>)> = requesters
        .iter()
        .map(|r| (r.uid, r.gids.iter().copied().collect()))
        .collect();
    assert_eq!(distinct.len(), requesters.len());
}
