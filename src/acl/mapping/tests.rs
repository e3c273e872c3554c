//! Unit and property tests of the NT ↔ NFSv4 mapping (Samba's test vectors are in
//! `samba_cases.rs`).
use proptest::prelude::*;

use super::*;
use crate::acl::idmap::{Chain, MappingFile, UnixSids};
use crate::acl::nfs4::ace_flags as f4;
use crate::acl::nfs4::acl_flags;
use crate::acl::nfs4::mask as m4;
use crate::acl::sd::ace_flags as nt;

const ALICE: &str = "S-1-5-21-7-7-7-1001";
const BOB: &str = "S-1-5-21-7-7-7-1002";
const USERS: &str = "S-1-5-21-7-7-7-513";
const STAFF: &str = "S-1-5-21-7-7-7-2000";
const BOTH_A: &str = "S-1-5-21-7-7-7-3000";
const BOTH_B: &str = "S-1-5-21-7-7-7-3001";
const UNKNOWN: &str = "S-1-5-21-9-9-9-4242";

fn idmap() -> MappingFile {
    MappingFile::parse(&format!(
        "{ALICE} uid 1001\n{BOB} uid 1002\n{USERS} gid 100\n{STAFF} gid 2000\n{BOTH_A} both 3000\n{BOTH_B} both 3001\n"
    ))
    .unwrap()
}

fn sid(text: &str) -> Sid {
    text.parse().unwrap()
}

fn ace(ace_type: AceType, flags: u8, mask: u32, who: &str) -> Ace {
    Ace { ace_type, flags, mask, sid: sid(who) }
}

fn allow(flags: u8, mask: u32, who: &str) -> Ace {
    ace(AceType::AccessAllowed, flags, mask, who)
}

fn v4(ace_type: Nfs4AceType, flags: u32, mask: u32, who: Who) -> Nfs4Ace {
    Nfs4Ace { ace_type, flags, mask, who }
}

fn sd_with_dacl(aces: Vec<Ace>) -> SecurityDescriptor {
    let mut sd = SecurityDescriptor::new();
    sd.control |= control::DACL_PRESENT;
    sd.owner = Some(sid(ALICE));
    sd.group = Some(sid(USERS));
    sd.dacl = Some(Acl::new(aces));
    sd
}

const DIR: FileContext = FileContext { uid: 1001, gid: 100, is_directory: true };
const FILE: FileContext = FileContext { uid: 1001, gid: 100, is_directory: false };

fn forward(sd: &SecurityDescriptor, file: &FileContext, options: &MappingOptions) -> Result<Nfs4Mapping, MappingError> {
    sd_to_nfs4(sd, file, &idmap(), options)
}

fn dacl_of(mapping: &Nfs4Mapping) -> &[Nfs4Ace] {
    &mapping.acls.dacl.as_ref().expect("a DACL").aces
}

fn back(dacl: Vec<Nfs4Ace>, file: &FileContext, options: &MappingOptions) -> Result<SdMapping, MappingError> {
    nfs4_to_sd(&Nfs4Acls { dacl: Some(Nfs4Acl { flags: 0, aces: dacl }), sacl: None }, file, &idmap(), options)
}

fn back_dacl(dacl: Vec<Nfs4Ace>, file: &FileContext) -> Vec<Ace> {
    back(dacl, file, &MappingOptions::default()).unwrap().sd.dacl.unwrap().aces
}

#[test]
fn owner_group_and_order_with_default_options() {
    let read = access::FILE_GENERIC_READ;
    let sd = sd_with_dacl(vec![
        allow(0, access::FILE_ALL_ACCESS, ALICE),
        ace(AceType::AccessDenied, 0, access::FILE_WRITE_DATA, BOB),
        allow(0, read, USERS),
        allow(0, read, STAFF),
        allow(0, read, "S-1-1-0"),
        allow(0, read, BOB),
    ]);
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!((mapping.owner, mapping.group), (Some(1001), Some(100)));
    assert_eq!(
        dacl_of(&mapping),
        &[
            v4(Nfs4AceType::Allow, 0, access::FILE_ALL_ACCESS, Who::Special(SpecialWho::Owner)),
            v4(Nfs4AceType::Deny, 0, m4::WRITE_DATA, Who::Uid(1002)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, read, Who::Special(SpecialWho::Group)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, read, Who::Gid(2000)),
            v4(Nfs4AceType::Allow, 0, read, Who::Special(SpecialWho::Everyone)),
            v4(Nfs4AceType::Allow, 0, read, Who::Uid(1002)),
        ]
    );
    let numeric = MappingOptions { owner_group: OwnerGroupForm::Numeric, ..Default::default() };
    let mapping = forward(&sd, &DIR, &numeric).unwrap();
    assert_eq!(dacl_of(&mapping)[0].who, Who::Uid(1001));
    assert_eq!(dacl_of(&mapping)[2].who, Who::Gid(100));
    // Both forms come back as the same descriptor.
    for options in [MappingOptions::default(), numeric] {
        let mapping = forward(&sd, &DIR, &options).unwrap();
        assert_eq!(nfs4_to_sd(&mapping.acls, &DIR, &idmap(), &options).unwrap().sd, sd);
    }
}

#[test]
fn owner_of_the_descriptor_decides_owner_at() {
    // The descriptor changes the owner to Bob: Bob's ACE is OWNER@, Alice's is numeric.
    let mut sd = sd_with_dacl(vec![allow(0, 1, ALICE), allow(0, 2, BOB)]);
    sd.owner = Some(sid(BOB));
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!(mapping.owner, Some(1002));
    assert_eq!(dacl_of(&mapping)[0].who, Who::Uid(1001));
    assert_eq!(dacl_of(&mapping)[1].who, Who::Special(SpecialWho::Owner));
    // Without an owner in the descriptor, the file's current owner (Alice) is OWNER@.
    sd.owner = None;
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!(mapping.owner, None);
    assert_eq!(dacl_of(&mapping)[0].who, Who::Special(SpecialWho::Owner));
    assert_eq!(dacl_of(&mapping)[1].who, Who::Uid(1002));
}

#[test]
fn inheritable_owner_ace_stays_numeric() {
    let sd = sd_with_dacl(vec![
        allow(nt::OBJECT_INHERIT, 1, ALICE),
        allow(nt::INHERIT_ONLY, 1, ALICE),
        allow(nt::CONTAINER_INHERIT, 1, USERS),
        allow(nt::INHERITED | nt::NO_PROPAGATE_INHERIT, 1, ALICE),
    ]);
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    let whos: Vec<&Who> = dacl_of(&mapping).iter().map(|a| &a.who).collect();
    assert_eq!(whos, [&Who::Uid(1001), &Who::Uid(1001), &Who::Gid(100), &Who::Special(SpecialWho::Owner)]);
    assert_eq!(dacl_of(&mapping)[3].flags, f4::INHERITED | f4::NO_PROPAGATE_INHERIT);
    assert_eq!(back_dacl(dacl_of(&mapping).to_vec(), &DIR), sd.dacl.unwrap().aces);
}

#[test]
fn creator_owner_and_group_are_inherit_only_owner_and_group() {
    let sd = sd_with_dacl(vec![
        allow(nt::OBJECT_INHERIT | nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, 1, "S-1-3-0"),
        allow(nt::CONTAINER_INHERIT, 2, "S-1-3-1"),
        // Without OI/CI it has no effect in Windows; kept as an inert ACE, not dropped.
        allow(0, 4, "S-1-3-0"),
    ]);
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!(
        dacl_of(&mapping),
        &[
            v4(
                Nfs4AceType::Allow,
                f4::FILE_INHERIT | f4::DIRECTORY_INHERIT | f4::INHERIT_ONLY,
                1,
                Who::Special(SpecialWho::Owner)
            ),
            v4(Nfs4AceType::Allow, f4::DIRECTORY_INHERIT | f4::INHERIT_ONLY, 2, Who::Special(SpecialWho::Group)),
            v4(Nfs4AceType::Allow, f4::INHERIT_ONLY, 4, Who::Special(SpecialWho::Owner)),
        ]
    );
    // Back: INHERIT_ONLY is now explicit on every CREATOR ACE (documented normalisation).
    assert_eq!(
        back_dacl(dacl_of(&mapping).to_vec(), &DIR),
        [
            allow(nt::OBJECT_INHERIT | nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, 1, "S-1-3-0"),
            allow(nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, 2, "S-1-3-1"),
            allow(nt::INHERIT_ONLY, 4, "S-1-3-0"),
        ]
    );
}

#[test]
fn inheritable_owner_at_from_nfs_splits_like_windows() {
    let aces = back_dacl(
        vec![
            v4(Nfs4AceType::Allow, f4::FILE_INHERIT | f4::NO_PROPAGATE_INHERIT, 1, Who::Special(SpecialWho::Owner)),
            v4(Nfs4AceType::Deny, f4::DIRECTORY_INHERIT | f4::INHERITED, 2, Who::Special(SpecialWho::Group)),
        ],
        &DIR,
    );
    assert_eq!(
        aces,
        [
            allow(0, 1, ALICE),
            allow(nt::OBJECT_INHERIT | nt::NO_PROPAGATE_INHERIT | nt::INHERIT_ONLY, 1, "S-1-3-0"),
            ace(AceType::AccessDenied, nt::INHERITED, 2, USERS),
            ace(AceType::AccessDenied, nt::CONTAINER_INHERIT | nt::INHERITED | nt::INHERIT_ONLY, 2, "S-1-3-1"),
        ]
    );
}

#[test]
fn special_whos_map_to_well_known_sids() {
    for special in SpecialWho::ALL {
        if matches!(special, SpecialWho::Owner | SpecialWho::Group) {
            continue;
        }
        let sid = special_who_sid(special).unwrap();
        assert_eq!(sid_special_who(&sid), Some(special), "{sid}");
        let sd = sd_with_dacl(vec![Ace { ace_type: AceType::AccessAllowed, flags: 0, mask: 1, sid: sid.clone() }]);
        let mapping = forward(&sd, &FILE, &MappingOptions::default()).unwrap();
        assert_eq!(dacl_of(&mapping)[0].who, Who::Special(special));
        assert_eq!(back_dacl(dacl_of(&mapping).to_vec(), &FILE)[0].sid, sid);
    }
    assert_eq!(special_who_sid(SpecialWho::Authenticated), Some(Sid::authenticated_users()));
    assert_eq!(special_who_sid(SpecialWho::Owner), None);
}

#[test]
fn both_ids_user_and_group_and_back_to_one_ace() {
    let sd = sd_with_dacl(vec![allow(nt::OBJECT_INHERIT, 1, BOTH_A), allow(0, 2, BOTH_A)]);
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!(
        dacl_of(&mapping),
        &[
            v4(Nfs4AceType::Allow, f4::FILE_INHERIT | f4::IDENTIFIER_GROUP, 1, Who::Gid(3000)),
            v4(Nfs4AceType::Allow, f4::FILE_INHERIT, 1, Who::Uid(3000)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, 2, Who::Gid(3000)),
            v4(Nfs4AceType::Allow, 0, 2, Who::Uid(3000)),
        ]
    );
    assert_eq!(back_dacl(dacl_of(&mapping).to_vec(), &DIR), sd.dacl.clone().unwrap().aces);

    // Samba's way: the group ACE, and the user ACE only for the (non-inheritable) owner.
    let samba = MappingOptions { both_ids: BothIdAces::GroupPlusOwner, ..Default::default() };
    let owned_by_both = FileContext { uid: 3000, gid: 100, is_directory: true };
    let mut sd_both_owner = sd.clone();
    sd_both_owner.owner = None;
    let mapping = forward(&sd_both_owner, &owned_by_both, &samba).unwrap();
    assert_eq!(
        dacl_of(&mapping),
        &[
            v4(Nfs4AceType::Allow, f4::FILE_INHERIT | f4::IDENTIFIER_GROUP, 1, Who::Gid(3000)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, 2, Who::Gid(3000)),
            v4(Nfs4AceType::Allow, 0, 2, Who::Special(SpecialWho::Owner)),
        ]
    );
    assert_eq!(back_dacl(dacl_of(&mapping).to_vec(), &owned_by_both), sd.dacl.unwrap().aces);
}

#[test]
fn adjacent_user_and_group_halves_merge_only_when_identical() {
    let file = FileContext { uid: 1001, gid: 100, is_directory: true };
    // Either order merges; a different mask, or two user halves, do not.
    let aces = back_dacl(
        vec![
            v4(Nfs4AceType::Allow, 0, 1, Who::Uid(3001)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, 1, Who::Gid(3001)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, 2, Who::Gid(3001)),
            v4(Nfs4AceType::Allow, 0, 4, Who::Uid(3001)),
            v4(Nfs4AceType::Allow, 0, 4, Who::Uid(3001)),
        ],
        &file,
    );
    assert_eq!(aces, [allow(0, 1, BOTH_B), allow(0, 2, BOTH_B), allow(0, 4, BOTH_B), allow(0, 4, BOTH_B)]);
}

#[test]
fn unmappable_sid_is_an_error_unless_told_otherwise() {
    let sd = sd_with_dacl(vec![allow(0, 1, ALICE), allow(nt::OBJECT_INHERIT, 2, UNKNOWN)]);
    let err = forward(&sd, &DIR, &MappingOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MappingError::UnmappableSid { acl: AclKind::Dacl, index: 1, sid, .. } if *sid == self::sid(UNKNOWN))
    );
    assert!(err.to_string().contains(UNKNOWN) && err.to_string().contains("DACL ACE 1"), "{err}");

    let skip = MappingOptions { unmappable_sid: UnmappableSid::Skip, ..Default::default() };
    let mapping = forward(&sd, &DIR, &skip).unwrap();
    assert_eq!(dacl_of(&mapping).len(), 1);
    assert_eq!(mapping.skipped.len(), 1);
    assert_eq!((mapping.skipped[0].acl, mapping.skipped[0].index), (AclKind::Dacl, 1));
    assert_eq!(mapping.skipped[0].who, UNKNOWN);

    let map_to = MappingOptions { unmappable_sid: UnmappableSid::MapTo(UnixId::Gid(65534)), ..Default::default() };
    let mapping = forward(&sd, &DIR, &map_to).unwrap();
    assert_eq!(
        dacl_of(&mapping)[1],
        v4(Nfs4AceType::Allow, f4::FILE_INHERIT | f4::IDENTIFIER_GROUP, 2, Who::Gid(65534))
    );
    assert!(mapping.skipped.is_empty());
}

#[test]
fn unmappable_who_is_an_error_unless_told_otherwise() {
    // A chain that knows only Alice and Users: uid 7 has no SID.
    let strict = Chain::default().then(KnowsOnlyAliceAndUsers);
    let acls = Nfs4Acls {
        dacl: Some(Nfs4Acl {
            flags: 0,
            aces: vec![
                v4(Nfs4AceType::Allow, 0, 1, Who::Uid(7)),
                v4(Nfs4AceType::Allow, 0, 2, Who::Name("carol@example.org".into())),
            ],
        }),
        sacl: None,
    };
    let err = nfs4_to_sd(&acls, &FILE, &strict, &MappingOptions::default()).unwrap_err();
    assert!(err.to_string().contains("DACL ACE 0") && err.to_string().contains("uid 7"), "{err}");

    let skip = MappingOptions { unmappable_who: UnmappableWho::Skip, ..Default::default() };
    let mapped = nfs4_to_sd(&acls, &FILE, &strict, &skip).unwrap();
    assert_eq!(mapped.sd.dacl.unwrap().aces, []);
    assert_eq!(mapped.skipped.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1]);
    assert!(mapped.skipped[1].who.contains("carol@example.org"));

    let nobody = sid("S-1-22-1-65534");
    let map_to = MappingOptions { unmappable_who: UnmappableWho::MapTo(nobody.clone()), ..Default::default() };
    let mapped = nfs4_to_sd(&acls, &FILE, &strict, &map_to).unwrap();
    assert_eq!(mapped.sd.dacl.unwrap().aces, [allow(0, 1, "S-1-22-1-65534"), allow(0, 2, "S-1-22-1-65534")]);

    // The file's own owner without a SID is always an error.
    let owned_by_7 = FileContext { uid: 7, ..FILE };
    let err = nfs4_to_sd(&acls, &owned_by_7, &strict, &skip).unwrap_err();
    assert!(matches!(err, MappingError::FileOwner { uid: 7, .. }), "{err}");
}

/// A map that knows Alice (uid 1001) and Users (gid 100) and nothing else.
struct KnowsOnlyAliceAndUsers;
impl IdMap for KnowsOnlyAliceAndUsers {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        idmap().sid_to_unix(sid).and_then(|id| match id {
            UnixId::Uid(1001) | UnixId::Gid(100) => Ok(id),
            _ => Err(IdMapError::SidNotMapped(sid.clone())),
        })
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        if uid == 1001 {
            Ok(sid(ALICE))
        } else {
            Err(IdMapError::UidNotMapped(uid))
        }
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        if gid == 100 {
            Ok(sid(USERS))
        } else {
            Err(IdMapError::GidNotMapped(gid))
        }
    }
}

/// An idmap that is down: every lookup is a backend failure.
struct Offline;
impl IdMap for Offline {
    fn sid_to_unix(&self, sid: &Sid) -> Result<UnixId, IdMapError> {
        Err(IdMapError::Backend { backend: "winbind".into(), subject: sid.to_string(), reason: "not running".into() })
    }
    fn uid_to_sid(&self, uid: u32) -> Result<Sid, IdMapError> {
        Err(IdMapError::Backend {
            backend: "winbind".into(),
            subject: format!("uid {uid}"),
            reason: "not running".into(),
        })
    }
    fn gid_to_sid(&self, gid: u32) -> Result<Sid, IdMapError> {
        Err(IdMapError::Backend {
            backend: "winbind".into(),
            subject: format!("gid {gid}"),
            reason: "not running".into(),
        })
    }
}

#[test]
fn idmap_failure_is_never_skipped() {
    let mut sd = sd_with_dacl(vec![allow(0, 1, "S-1-1-0"), allow(0, 1, UNKNOWN)]);
    sd.owner = None;
    sd.group = None;
    let skip = MappingOptions { unmappable_sid: UnmappableSid::Skip, ..Default::default() };
    let err = sd_to_nfs4(&sd, &FILE, &Offline, &skip).unwrap_err();
    assert!(matches!(err, MappingError::IdMapFailed { .. }), "{err}");
    assert!(err.to_string().contains(UNKNOWN) && err.to_string().contains("not running"), "{err}");
}

#[test]
fn refused_ace_types_and_flags_name_the_ace() {
    let other =
        Ace { ace_type: AceType::Other { type_code: 5, body: vec![1, 2, 3] }, flags: 0, mask: 1, sid: sid("S-1-0-0") };
    let cases: Vec<(SecurityDescriptor, &str)> = vec![
        (sd_with_dacl(vec![allow(0, 1, ALICE), other]), "DACL ACE 1 (S-1-0-0): ACE type 5"),
        (
            sd_with_dacl(vec![ace(AceType::SystemAudit, nt::SUCCESSFUL_ACCESS, 1, ALICE)]),
            "SYSTEM_AUDIT ACE does not belong in a DACL",
        ),
        (sd_with_dacl(vec![allow(0x20, 1, BOB)]), "DACL ACE 0 (S-1-5-21-7-7-7-1002): unknown ACE flag bits 0x20"),
        (
            {
                let mut sd = sd_with_dacl(vec![]);
                sd.sacl = Some(Acl::new(vec![allow(0, 1, ALICE)]));
                sd
            },
            "ACCESS_ALLOWED ACE does not belong in a SACL",
        ),
    ];
    for (sd, expected) in cases {
        let err = forward(&sd, &DIR, &MappingOptions::default()).unwrap_err();
        assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
    }
    let err = back(vec![v4(Nfs4AceType::Alarm, 0, 1, Who::Uid(5))], &DIR, &MappingOptions::default()).unwrap_err();
    assert!(err.to_string().contains("DACL ACE 0 (uid 5): a ALARM ACE does not belong in a DACL"), "{err}");
    let err = back(vec![v4(Nfs4AceType::Allow, 0x100, 1, Who::Uid(5))], &DIR, &MappingOptions::default()).unwrap_err();
    assert!(err.to_string().contains("unknown ACE flag bits 0x100"), "{err}");
    let bad_flags = Nfs4Acls { dacl: Some(Nfs4Acl { flags: 0x8, aces: vec![] }), sacl: None };
    let err = nfs4_to_sd(&bad_flags, &DIR, &idmap(), &MappingOptions::default()).unwrap_err();
    assert_eq!(err, MappingError::UnknownAclFlags { acl: AclKind::Dacl, flags: 0x8 });
}

#[test]
fn owner_and_group_must_be_a_user_and_a_group() {
    let mut sd = sd_with_dacl(vec![]);
    sd.owner = Some(sid(USERS));
    let err = forward(&sd, &DIR, &MappingOptions::default()).unwrap_err();
    assert!(err.to_string().contains(&format!("owner SID {USERS}: maps to gid 100")), "{err}");
    sd.owner = Some(sid(BOTH_A));
    sd.group = Some(sid(BOB));
    let err = forward(&sd, &DIR, &MappingOptions::default()).unwrap_err();
    assert!(err.to_string().contains(&format!("group SID {BOB}: maps to uid 1002")), "{err}");
    sd.group = Some(sid(UNKNOWN));
    let err = forward(&sd, &DIR, &MappingOptions::default()).unwrap_err();
    assert!(err.to_string().contains(&format!("group SID {UNKNOWN}")), "{err}");
    sd.group = Some(sid(BOTH_A));
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!((mapping.owner, mapping.group), (Some(3000), Some(3000)));
}

#[test]
fn generic_rights_are_expanded_and_other_bits_kept() {
    assert_eq!(expand_generic_rights(access::GENERIC_READ), access::FILE_GENERIC_READ);
    assert_eq!(expand_generic_rights(access::GENERIC_WRITE), access::FILE_GENERIC_WRITE);
    assert_eq!(expand_generic_rights(access::GENERIC_EXECUTE), access::FILE_GENERIC_EXECUTE);
    assert_eq!(expand_generic_rights(access::GENERIC_ALL), access::FILE_ALL_ACCESS);
    let odd_bits = access::ACCESS_SYSTEM_SECURITY | access::MAXIMUM_ALLOWED | m4::WRITE_RETENTION | 0x0c00_0000;
    assert_eq!(expand_generic_rights(odd_bits | access::GENERIC_EXECUTE), odd_bits | access::FILE_GENERIC_EXECUTE);
    let sd = sd_with_dacl(vec![allow(0, access::GENERIC_READ | access::DELETE, BOB)]);
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!(dacl_of(&mapping)[0].mask, access::FILE_GENERIC_READ | access::DELETE);
}

#[test]
fn control_flags_map_to_acl_flags_per_acl() {
    let mut sd = sd_with_dacl(vec![allow(0, 1, BOB)]);
    sd.control |=
        control::DACL_PROTECTED | control::DACL_AUTO_INHERITED | control::SACL_PRESENT | control::SACL_DEFAULTED;
    sd.sacl = Some(Acl::new(vec![
        ace(AceType::SystemAudit, nt::FAILED_ACCESS, access::DELETE, "S-1-1-0"),
        ace(AceType::SystemAlarm, nt::SUCCESSFUL_ACCESS | nt::OBJECT_INHERIT, 1, BOB),
    ]));
    let mapping = forward(&sd, &DIR, &MappingOptions::default()).unwrap();
    assert_eq!(mapping.acls.dacl.as_ref().unwrap().flags, acl_flags::PROTECTED | acl_flags::AUTO_INHERIT);
    let sacl = mapping.acls.sacl.as_ref().unwrap();
    assert_eq!(sacl.flags, acl_flags::DEFAULTED);
    assert_eq!(
        sacl.aces,
        [
            v4(Nfs4AceType::Audit, f4::FAILED_ACCESS, m4::DELETE, Who::Special(SpecialWho::Everyone)),
            v4(Nfs4AceType::Alarm, f4::SUCCESSFUL_ACCESS | f4::FILE_INHERIT, 1, Who::Uid(1002)),
        ]
    );
    assert_eq!(nfs4_to_sd(&mapping.acls, &DIR, &idmap(), &MappingOptions::default()).unwrap().sd, sd);
}

#[test]
fn null_and_empty_dacl_stay_apart() {
    let mut empty = sd_with_dacl(vec![]);
    let mapping = forward(&empty, &FILE, &MappingOptions::default()).unwrap();
    assert_eq!(mapping.acls.dacl, Some(Nfs4Acl { flags: 0, aces: vec![] }));
    assert_eq!(nfs4_to_sd(&mapping.acls, &FILE, &idmap(), &MappingOptions::default()).unwrap().sd, empty);

    empty.dacl = None;
    empty.control &= !control::DACL_PRESENT;
    let null = empty;
    let mapping = forward(&null, &FILE, &MappingOptions::default()).unwrap();
    assert_eq!(mapping.acls.dacl, None);
    assert_eq!(nfs4_to_sd(&mapping.acls, &FILE, &idmap(), &MappingOptions::default()).unwrap().sd, null);

    let explicit = MappingOptions { null_dacl: NullDacl::EveryoneFullAccess, ..Default::default() };
    let mapping = forward(&null, &FILE, &explicit).unwrap();
    assert_eq!(
        dacl_of(&mapping),
        [v4(Nfs4AceType::Allow, 0, access::FILE_ALL_ACCESS, Who::Special(SpecialWho::Everyone))]
    );
}

#[test]
fn inherit_flags_on_files_kept_or_stripped() {
    let sd = sd_with_dacl(vec![allow(
        nt::OBJECT_INHERIT | nt::CONTAINER_INHERIT | nt::NO_PROPAGATE_INHERIT | nt::INHERITED,
        1,
        BOB,
    )]);
    let keep = forward(&sd, &FILE, &MappingOptions::default()).unwrap();
    assert_eq!(
        dacl_of(&keep)[0].flags,
        f4::FILE_INHERIT | f4::DIRECTORY_INHERIT | f4::NO_PROPAGATE_INHERIT | f4::INHERITED
    );
    let strip = MappingOptions { file_inherit_flags: FileInheritFlags::Strip, ..Default::default() };
    let stripped = forward(&sd, &FILE, &strip).unwrap();
    assert_eq!(dacl_of(&stripped)[0].flags, f4::INHERITED);
    // Directories keep them either way.
    assert_eq!(dacl_of(&forward(&sd, &DIR, &strip).unwrap())[0].flags, dacl_of(&keep)[0].flags);

    let inert = sd_with_dacl(vec![allow(nt::INHERIT_ONLY | nt::OBJECT_INHERIT, 1, BOB)]);
    let err = forward(&inert, &FILE, &strip).unwrap_err();
    assert!(matches!(err, MappingError::InheritOnlyOnFile { index: 0, .. }), "{err}");
    let err = back(vec![v4(Nfs4AceType::Allow, f4::INHERIT_ONLY, 1, Who::Uid(5))], &FILE, &strip).unwrap_err();
    assert!(err.to_string().contains("INHERIT_ONLY on a file"), "{err}");
    let from_nfs =
        back(vec![v4(Nfs4AceType::Allow, f4::FILE_INHERIT | f4::DIRECTORY_INHERIT, 1, Who::Uid(1002))], &FILE, &strip)
            .unwrap();
    assert_eq!(from_nfs.sd.dacl.unwrap().aces, [allow(0, 1, BOB)]);
}

/// Found by the Samba interop test: `Strip` decided OWNER@/GROUP@ from the flags before
/// stripping, so an OI|CI ACE for the owner on a file became `Uid(owner)` although the ACE
/// written is not inheritable. Samba strips first and writes OWNER@/GROUP@.
#[test]
fn stripped_owner_and_group_aces_on_files_use_owner_and_group_specials() {
    let sd = sd_with_dacl(vec![
        allow(nt::OBJECT_INHERIT | nt::CONTAINER_INHERIT, access::FILE_ALL_ACCESS, ALICE),
        allow(nt::OBJECT_INHERIT, access::FILE_GENERIC_READ, USERS),
    ]);
    let strip = MappingOptions { file_inherit_flags: FileInheritFlags::Strip, ..Default::default() };
    assert_eq!(
        dacl_of(&forward(&sd, &FILE, &strip).unwrap()),
        [
            v4(Nfs4AceType::Allow, 0, access::FILE_ALL_ACCESS, Who::Special(SpecialWho::Owner)),
            v4(Nfs4AceType::Allow, f4::IDENTIFIER_GROUP, access::FILE_GENERIC_READ, Who::Special(SpecialWho::Group)),
        ]
    );
    // Kept flags keep the ACEs inheritable, and so numeric.
    assert_eq!(
        dacl_of(&forward(&sd, &FILE, &MappingOptions::default()).unwrap())
            .iter()
            .map(|a| a.who.clone())
            .collect::<Vec<_>>(),
        [Who::Uid(1001), Who::Gid(100)]
    );
}

#[test]
fn map_full_control_adds_delete_child_on_files_only() {
    let all_but_deletes = access::FILE_ALL_ACCESS & !(access::DELETE | access::FILE_DELETE_CHILD);
    let options = MappingOptions { map_full_control: true, ..Default::default() };
    let ace = vec![v4(Nfs4AceType::Allow, 0, all_but_deletes, Who::Uid(1002))];
    let on_file = back(ace.clone(), &FILE, &options).unwrap().sd.dacl.unwrap();
    assert_eq!(on_file.aces[0].mask, all_but_deletes | access::FILE_DELETE_CHILD);
    let on_dir = back(ace.clone(), &DIR, &options).unwrap().sd.dacl.unwrap();
    assert_eq!(on_dir.aces[0].mask, all_but_deletes);
    let default = back(ace, &FILE, &MappingOptions::default()).unwrap().sd.dacl.unwrap();
    assert_eq!(default.aces[0].mask, all_but_deletes);
}

#[test]
fn combined_nfs40_acl_splits_and_joins() {
    let allow_bob = v4(Nfs4AceType::Allow, 0, 1, Who::Uid(1002));
    let audit = v4(Nfs4AceType::Audit, f4::SUCCESSFUL_ACCESS, 1, Who::Special(SpecialWho::Everyone));
    let deny = v4(Nfs4AceType::Deny, 0, 2, Who::Gid(100));
    let combined = Nfs4Acl { flags: 0, aces: vec![allow_bob.clone(), audit.clone(), deny.clone()] };
    let split = Nfs4Acls::from_combined(&combined);
    assert_eq!(split.dacl, Some(Nfs4Acl { flags: 0, aces: vec![allow_bob.clone(), deny.clone()] }));
    assert_eq!(split.sacl, Some(Nfs4Acl { flags: 0, aces: vec![audit.clone()] }));
    assert_eq!(split.to_combined().unwrap().unwrap().aces, [allow_bob, deny, audit]);
    // No ACEs at all is an empty DACL (no access), never "no ACL".
    assert_eq!(Nfs4Acls::from_combined(&Nfs4Acl::default()).dacl, Some(Nfs4Acl::default()));
    assert_eq!(Nfs4Acls::default().to_combined().unwrap(), None);
    let sacl_only = Nfs4Acls { dacl: None, sacl: split.sacl.clone() };
    assert!(sacl_only.to_combined().unwrap_err().to_string().contains("empty DACL"));
    let flagged = Nfs4Acls { dacl: split.dacl, sacl: Some(Nfs4Acl { flags: acl_flags::PROTECTED, aces: vec![] }) };
    assert!(flagged.to_combined().unwrap_err().to_string().contains("SACL flags 0x2"));
}

#[test]
fn unix_sids_alone_map_everything_numeric() {
    let mut sd = SecurityDescriptor::new();
    sd.owner = Some(Sid::unix_user(500));
    sd.group = Some(Sid::unix_group(600));
    sd.control |= control::DACL_PRESENT;
    sd.dacl = Some(Acl::new(vec![allow(0, 1, "S-1-22-1-501"), allow(nt::OBJECT_INHERIT, 2, "S-1-22-2-600")]));
    let file = FileContext { uid: 1, gid: 1, is_directory: true };
    let mapping = sd_to_nfs4(&sd, &file, &UnixSids, &MappingOptions::default()).unwrap();
    assert_eq!((mapping.owner, mapping.group), (Some(500), Some(600)));
    assert_eq!(dacl_of(&mapping)[0].who, Who::Uid(501));
    assert_eq!(dacl_of(&mapping)[1].who, Who::Gid(600));
    let applied = FileContext { uid: 500, gid: 600, is_directory: true };
    assert_eq!(nfs4_to_sd(&mapping.acls, &applied, &UnixSids, &MappingOptions::default()).unwrap().sd, sd);
}

// ---- property tests ----

/// SIDs the test map knows, and the well-known ones the mapping handles itself. Unix SIDs
/// use ids outside the mapping file, so that every SID maps back to itself.
fn mappable_sid() -> BoxedStrategy<Sid> {
    prop_oneof![
        prop::sample::select(vec![
            ALICE, BOB, USERS, STAFF, BOTH_A, BOTH_B, "S-1-1-0", "S-1-3-0", "S-1-3-1", "S-1-5-11", "S-1-5-4", "S-1-5-7"
        ])
        .prop_map(sid),
        (500u32..503).prop_map(Sid::unix_user),
        (500u32..503).prop_map(Sid::unix_group),
    ]
    .boxed()
}

fn owner_sid() -> impl Strategy<Value = Sid> {
    prop_oneof![prop::sample::select(vec![ALICE, BOB, BOTH_A]).prop_map(sid), (500u32..503).prop_map(Sid::unix_user)]
}

fn group_sid() -> impl Strategy<Value = Sid> {
    prop_oneof![
        prop::sample::select(vec![USERS, STAFF, BOTH_A, BOTH_B]).prop_map(sid),
        (500u32..503).prop_map(Sid::unix_group)
    ]
}

fn nt_ace(types: [AceType; 2], sid: impl Strategy<Value = Sid>) -> impl Strategy<Value = Ace> {
    (prop::sample::select(types.to_vec()), any::<u8>(), any::<u32>(), sid)
        .prop_map(|(ace_type, flags, mask, sid)| Ace { ace_type, flags: flags & NT_KNOWN_FLAGS, mask, sid })
}

fn descriptor(sid: BoxedStrategy<Sid>) -> impl Strategy<Value = SecurityDescriptor> {
    let dacl = prop::option::of(prop::collection::vec(
        nt_ace([AceType::AccessAllowed, AceType::AccessDenied], sid.clone()),
        0..8,
    ));
    let sacl = prop::option::of(prop::collection::vec(nt_ace([AceType::SystemAudit, AceType::SystemAlarm], sid), 0..4));
    (owner_sid(), group_sid(), any::<u16>(), dacl, sacl).prop_map(|(owner, group, control_bits, dacl, sacl)| {
        let mut sd = SecurityDescriptor::new();
        sd.owner = Some(owner);
        sd.group = Some(group);
        sd.control = control_bits;
        sd.dacl = dacl.map(Acl::new);
        sd.sacl = sacl.map(Acl::new);
        sd
    })
}

fn options() -> impl Strategy<Value = MappingOptions> {
    (any::<bool>(), any::<bool>()).prop_map(|(numeric, samba_both)| MappingOptions {
        owner_group: if numeric { OwnerGroupForm::Numeric } else { OwnerGroupForm::Special },
        both_ids: if samba_both { BothIdAces::GroupPlusOwner } else { BothIdAces::UserAndGroup },
        ..Default::default()
    })
}

/// What a descriptor comes back as, per docs/acl-mapping.md "What is normalised": generic
/// rights expanded, INHERIT_ONLY on CREATOR ACEs, ACL revision 2, and control reduced to
/// SELF_RELATIVE, the PRESENT bits and the bits NFSv4 ACL flags carry.
fn normalised(sd: &SecurityDescriptor) -> SecurityDescriptor {
    let mut expected = sd.clone();
    let mut kept = control::SELF_RELATIVE;
    if sd.dacl.is_some() {
        kept |=
            control::DACL_PRESENT | control::DACL_AUTO_INHERITED | control::DACL_PROTECTED | control::DACL_DEFAULTED;
    }
    if sd.sacl.is_some() {
        kept |=
            control::SACL_PRESENT | control::SACL_AUTO_INHERITED | control::SACL_PROTECTED | control::SACL_DEFAULTED;
    }
    expected.control = (sd.control | control::SELF_RELATIVE | control::DACL_PRESENT | control::SACL_PRESENT) & kept;
    for acl in [&mut expected.dacl, &mut expected.sacl].into_iter().flatten() {
        acl.revision = Acl::REVISION;
        for ace in &mut acl.aces {
            ace.mask = expand_generic_rights(ace.mask);
            if ace.sid == Sid::creator_owner() || ace.sid == Sid::creator_group() {
                ace.flags |= nt::INHERIT_ONLY;
            }
        }
    }
    expected
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// SD → NFSv4 → SD gives the normalised SD back whenever every SID is mappable.
    #[test]
    fn round_trip_is_lossless(sd in descriptor(mappable_sid()), options in options(), is_directory in any::<bool>(),
                              file_uid in prop::sample::select(vec![1001u32, 1002, 3000, 500]),
                              file_gid in prop::sample::select(vec![100u32, 2000, 3001, 500])) {
        let map = idmap();
        let file = FileContext { uid: file_uid, gid: file_gid, is_directory };
        let mapping = sd_to_nfs4(&sd, &file, &map, &options).unwrap();
        prop_assert!(mapping.skipped.is_empty());
        let nt_count = |sd: &SecurityDescriptor| sd.dacl.iter().chain(&sd.sacl).map(|acl| acl.aces.len()).sum::<usize>();
        let nfs_count = mapping.acls.dacl.iter().chain(&mapping.acls.sacl).map(|acl| acl.aces.len()).sum::<usize>();
        prop_assert!(nfs_count >= nt_count(&sd), "an ACE went missing");
        let applied = FileContext { uid: mapping.owner.unwrap(), gid: mapping.group.unwrap(), is_directory };
        let back = nfs4_to_sd(&mapping.acls, &applied, &map, &options).unwrap();
        prop_assert!(back.skipped.is_empty());
        prop_assert_eq!(back.sd, normalised(&sd));
    }

    /// With unmappable SIDs in the mix, the default refuses and names one of them, and Skip
    /// lists exactly the unmappable ACEs.
    #[test]
    fn unmappable_sids_are_never_dropped_silently(
        sd in descriptor(prop_oneof![3 => mappable_sid(), 1 => (1u32..4).prop_map(|rid| Sid::new(5, &[21, 9, 9, 9, rid]).unwrap())].boxed()),
    ) {
        let map = idmap();
        let unknown: Vec<(AclKind, usize, Sid)> = [(AclKind::Dacl, &sd.dacl), (AclKind::Sacl, &sd.sacl)]
            .into_iter()
            .flat_map(|(kind, acl)| acl.iter().flat_map(move |acl| acl.aces.iter().enumerate().map(move |(i, ace)| (kind, i, ace.sid.clone()))))
            .filter(|(_, _, sid)| sid.sub_authorities().starts_with(&[21, 9]))
            .collect();
        match sd_to_nfs4(&sd, &FILE, &map, &MappingOptions::default()) {
            Ok(_) => prop_assert!(unknown.is_empty()),
            Err(MappingError::UnmappableSid { acl, index, sid, .. }) => prop_assert_eq!(&unknown[0], &(acl, index, sid)),
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
        let skip = MappingOptions { unmappable_sid: UnmappableSid::Skip, ..Default::default() };
        let mapping = sd_to_nfs4(&sd, &FILE, &map, &skip).unwrap();
        let skipped: Vec<(AclKind, usize, String)> = mapping.skipped.iter().map(|s| (s.acl, s.index, s.who.clone())).collect();
        let expected: Vec<(AclKind, usize, String)> = unknown.iter().map(|(k, i, s)| (*k, *i, s.to_string())).collect();
        prop_assert_eq!(skipped, expected);
    }
}
