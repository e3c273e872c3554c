//! The 21 cases of Samba's `source3/modules/test_nfs4_acls.c` (4.22.6), as test vectors for
//! our mapping. Each test states our expected output; where a table row differs from
//! Samba's, the row carries Samba's result and the reason, and the test checks that every
//! difference has a reason and every reason a difference. `docs/acl-mapping.md` lists them.
//!
//! Samba passes owner/group SIDs to `smbacl4_nfs42win`; we pass the file's uid/gid and map
//! them through the same id table, so "owner sids[0], group sids[1]" is uid 1000, gid 1001.
use super::*;
use crate::acl::idmap::MappingFile;
use crate::acl::nfs4::ace_flags as f4;
use crate::acl::nfs4::mask as m4;
use crate::acl::sd::ace_flags as nt;

/// Samba's `test_sids` table: index → (SID, mapping).
const TEST_SIDS: [(&str, UnixId); 9] = [
    ("S-1-5-2-123-456-789-100", UnixId::Uid(1000)),
    ("S-1-5-2-123-456-789-101", UnixId::Gid(1001)),
    ("S-1-5-2-123-456-789-102", UnixId::Both(1002)),
    ("S-1-3-0", UnixId::Uid(1003)),
    ("S-1-3-1", UnixId::Gid(1004)),
    ("S-1-5-2-123-456-789-103", UnixId::Gid(1000)),
    ("S-1-5-2-123-456-789-104", UnixId::Both(1005)),
    ("S-1-5-2-123-456-789-105", UnixId::Both(1006)),
    ("S-1-5-2-123-456-789-106", UnixId::Both(1007)),
];

fn samba_idmap() -> MappingFile {
    let text: String = TEST_SIDS.iter().map(|(sid, id)| format!("{sid} {id}\n")).collect();
    MappingFile::parse(&text).unwrap()
}

fn sids(index: usize) -> Sid {
    TEST_SIDS[index].0.parse().unwrap()
}

fn dacl_sd(aces: Vec<Ace>) -> SecurityDescriptor {
    let mut sd = SecurityDescriptor::new();
    sd.control |= control::DACL_PRESENT;
    sd.dacl = Some(Acl::new(aces));
    sd
}

fn nt_ace(ace_type: AceType, flags: u8, mask: u32, sid: Sid) -> Ace {
    Ace { ace_type, flags, mask, sid }
}

fn v4(ace_type: Nfs4AceType, flags: u32, mask: u32, who: Who) -> Nfs4Ace {
    Nfs4Ace { ace_type, flags, mask, who }
}

fn allow4(flags: u32, mask: u32, who: Who) -> Nfs4Ace {
    v4(Nfs4AceType::Allow, flags, mask, who)
}

fn allow(flags: u8, mask: u32, sid: Sid) -> Ace {
    nt_ace(AceType::AccessAllowed, flags, mask, sid)
}

const OWNER: Who = Who::Special(SpecialWho::Owner);
const GROUP: Who = Who::Special(SpecialWho::Group);

/// `smbacl4_win2nfs4(is_directory, dacl, params, uid, gid)` for us: the NFSv4 DACL.
fn win2nfs4(
    aces: Vec<Ace>,
    is_directory: bool,
    uid: u32,
    gid: u32,
    options: &MappingOptions,
) -> Result<Nfs4Acl, MappingError> {
    let file = FileContext { uid, gid, is_directory };
    let mapping = sd_to_nfs4(&dacl_sd(aces), &file, &samba_idmap(), options)?;
    Ok(mapping.acls.dacl.expect("a DACL was given"))
}

/// `smbacl4_nfs42win(params, acl, owner, group, is_directory)` for us: the DACL's ACEs.
fn nfs42win(aces: Vec<Nfs4Ace>, is_directory: bool, uid: u32, gid: u32, options: &MappingOptions) -> Vec<Ace> {
    let file = FileContext { uid, gid, is_directory };
    let acls = Nfs4Acls { dacl: Some(Nfs4Acl { flags: 0, aces }), sacl: None };
    nfs4_to_sd(&acls, &file, &samba_idmap(), options).unwrap().sd.dacl.unwrap().aces
}

fn defaults() -> MappingOptions {
    MappingOptions::default()
}

/// A difference from Samba must be explained, and an explanation must be about a difference.
fn check_reason<T: PartialEq + std::fmt::Debug>(case: &str, ours: &T, samba: &T, why: &str) {
    assert_eq!(ours != samba, !why.is_empty(), "{case}: ours {ours:?}, Samba {samba:?}, reason {why:?}");
}

// 1. test_cached_id_mappings
#[test]
fn case_01_cached_id_mappings() {
    let map = samba_idmap();
    for (sid, id) in TEST_SIDS {
        assert_eq!(map.sid_to_unix(&sid.parse().unwrap()), Ok(id), "{sid}");
    }
    assert_eq!(map.uid_to_sid(1002), Ok(sids(2)));
    assert_eq!(map.gid_to_sid(1002), Ok(sids(2)));
    assert_eq!(map.gid_to_sid(1000), Ok(sids(5)));
}

// 2. test_empty_nfs4_to_dacl
#[test]
fn case_02_empty_nfs4_to_dacl() {
    assert_eq!(nfs42win(vec![], false, 1000, 1001, &defaults()), []);
}

// 3. test_empty_dacl_to_nfs4
#[test]
fn case_03_empty_dacl_to_nfs4() {
    assert_eq!(win2nfs4(vec![], false, 1001, 1002, &defaults()).unwrap(), Nfs4Acl { flags: 0, aces: vec![] });
}

// 4. test_acl_type_nfs4_to_dacl
#[test]
fn case_04_acl_type_nfs4_to_dacl() {
    for (v4_type, nt_type) in [(Nfs4AceType::Allow, AceType::AccessAllowed), (Nfs4AceType::Deny, AceType::AccessDenied)]
    {
        let aces = nfs42win(vec![v4(v4_type, 0, m4::READ_DATA, Who::Uid(1000))], false, 1002, 1001, &defaults());
        assert_eq!(aces, [nt_ace(nt_type, 0, access::FILE_READ_DATA, sids(0))]);
    }
}

// 5. test_acl_type_dacl_to_nfs4
#[test]
fn case_05_acl_type_dacl_to_nfs4() {
    for (v4_type, nt_type) in [(Nfs4AceType::Allow, AceType::AccessAllowed), (Nfs4AceType::Deny, AceType::AccessDenied)]
    {
        let acl =
            win2nfs4(vec![nt_ace(nt_type, 0, access::FILE_READ_DATA, sids(0))], false, 101, 102, &defaults()).unwrap();
        assert_eq!(acl.aces, [v4(v4_type, 0, m4::READ_DATA, Who::Uid(1000))]);
    }
}

const KEEP_ON_FILES: &str =
    "we keep inheritance flags on files by default (lossless; FileInheritFlags::Strip drops them)";
const AUDIT_FLAGS: &str = "we keep SUCCESSFUL/FAILED_ACCESS on every ACE type instead of dropping them";

// 6. test_ace_flags_nfs4_to_dacl: (is_directory, NFSv4 flag, Samba's NT flag, ours, why)
#[test]
fn case_06_ace_flags_nfs4_to_dacl() {
    let rows: [(bool, u32, u8, u8, &str); 14] = [
        (true, f4::FILE_INHERIT, nt::OBJECT_INHERIT, nt::OBJECT_INHERIT, ""),
        (false, f4::FILE_INHERIT, 0, nt::OBJECT_INHERIT, KEEP_ON_FILES),
        (true, f4::DIRECTORY_INHERIT, nt::CONTAINER_INHERIT, nt::CONTAINER_INHERIT, ""),
        (false, f4::DIRECTORY_INHERIT, 0, nt::CONTAINER_INHERIT, KEEP_ON_FILES),
        (true, f4::NO_PROPAGATE_INHERIT, nt::NO_PROPAGATE_INHERIT, nt::NO_PROPAGATE_INHERIT, ""),
        (false, f4::NO_PROPAGATE_INHERIT, nt::NO_PROPAGATE_INHERIT, nt::NO_PROPAGATE_INHERIT, ""),
        (true, f4::INHERIT_ONLY, nt::INHERIT_ONLY, nt::INHERIT_ONLY, ""),
        (false, f4::INHERIT_ONLY, nt::INHERIT_ONLY, nt::INHERIT_ONLY, ""),
        (true, f4::SUCCESSFUL_ACCESS, 0, nt::SUCCESSFUL_ACCESS, AUDIT_FLAGS),
        (false, f4::SUCCESSFUL_ACCESS, 0, nt::SUCCESSFUL_ACCESS, AUDIT_FLAGS),
        (true, f4::FAILED_ACCESS, 0, nt::FAILED_ACCESS, AUDIT_FLAGS),
        (false, f4::FAILED_ACCESS, 0, nt::FAILED_ACCESS, AUDIT_FLAGS),
        (true, f4::INHERITED, nt::INHERITED, nt::INHERITED, ""),
        (false, f4::INHERITED, nt::INHERITED, nt::INHERITED, ""),
    ];
    for (is_directory, flag, samba, ours, why) in rows {
        let aces = nfs42win(vec![allow4(flag, m4::READ_DATA, Who::Uid(1000))], is_directory, 1002, 1001, &defaults());
        assert_eq!(aces, [allow(ours, access::FILE_READ_DATA, sids(0))], "dir {is_directory} flag {flag:#x}");
        check_reason(&format!("dir {is_directory} flag {flag:#x}"), &ours, &samba, why);
    }
}

// 7. test_ace_flags_dacl_to_nfs4: (is_directory, NT flag, Samba's NFSv4 flag, ours, why)
#[test]
fn case_07_ace_flags_dacl_to_nfs4() {
    const IO_ON_FILE: &str =
        "Samba strips INHERIT_ONLY on files, which makes an ACE that granted nothing grant its mask; we keep it";
    let rows: [(bool, u8, u32, u32, &str); 14] = [
        (true, nt::OBJECT_INHERIT, f4::FILE_INHERIT, f4::FILE_INHERIT, ""),
        (false, nt::OBJECT_INHERIT, 0, f4::FILE_INHERIT, KEEP_ON_FILES),
        (true, nt::CONTAINER_INHERIT, f4::DIRECTORY_INHERIT, f4::DIRECTORY_INHERIT, ""),
        (false, nt::CONTAINER_INHERIT, 0, f4::DIRECTORY_INHERIT, KEEP_ON_FILES),
        (true, nt::NO_PROPAGATE_INHERIT, f4::NO_PROPAGATE_INHERIT, f4::NO_PROPAGATE_INHERIT, ""),
        (false, nt::NO_PROPAGATE_INHERIT, 0, f4::NO_PROPAGATE_INHERIT, KEEP_ON_FILES),
        (true, nt::INHERIT_ONLY, f4::INHERIT_ONLY, f4::INHERIT_ONLY, ""),
        (false, nt::INHERIT_ONLY, 0, f4::INHERIT_ONLY, IO_ON_FILE),
        (true, nt::INHERITED, f4::INHERITED, f4::INHERITED, ""),
        (false, nt::INHERITED, f4::INHERITED, f4::INHERITED, ""),
        (true, nt::SUCCESSFUL_ACCESS, 0, f4::SUCCESSFUL_ACCESS, AUDIT_FLAGS),
        (false, nt::SUCCESSFUL_ACCESS, 0, f4::SUCCESSFUL_ACCESS, AUDIT_FLAGS),
        (true, nt::FAILED_ACCESS, 0, f4::FAILED_ACCESS, AUDIT_FLAGS),
        (false, nt::FAILED_ACCESS, 0, f4::FAILED_ACCESS, AUDIT_FLAGS),
    ];
    for (is_directory, flag, samba, ours, why) in rows {
        let acl =
            win2nfs4(vec![allow(flag, access::FILE_READ_DATA, sids(0))], is_directory, 101, 102, &defaults()).unwrap();
        assert_eq!(acl.aces, [allow4(ours, m4::READ_DATA, Who::Uid(1000))], "dir {is_directory} flag {flag:#x}");
        check_reason(&format!("dir {is_directory} flag {flag:#x}"), &ours, &samba, why);
    }
    // With Strip, the file rows agree with Samba except INHERIT_ONLY, which is refused.
    let strip = MappingOptions { file_inherit_flags: FileInheritFlags::Strip, ..defaults() };
    for flag in [nt::OBJECT_INHERIT, nt::CONTAINER_INHERIT, nt::NO_PROPAGATE_INHERIT] {
        let acl = win2nfs4(vec![allow(flag, access::FILE_READ_DATA, sids(0))], false, 101, 102, &strip).unwrap();
        assert_eq!(acl.aces[0].flags, 0);
    }
    let err =
        win2nfs4(vec![allow(nt::INHERIT_ONLY, access::FILE_READ_DATA, sids(0))], false, 101, 102, &strip).unwrap_err();
    assert!(matches!(err, MappingError::InheritOnlyOnFile { .. }), "{err}");
}

/// Samba's `perm_table_nfs4_to_dacl` (the same bits both ways: NFSv4 masks are NT rights).
const PERMISSIONS: [(u32, u32); 22] = [
    (m4::READ_DATA, access::FILE_READ_DATA),
    (m4::READ_DATA, access::FILE_READ_DATA), // LIST_DIRECTORY
    (m4::WRITE_DATA, access::FILE_WRITE_DATA),
    (m4::WRITE_DATA, access::FILE_WRITE_DATA), // ADD_FILE
    (m4::APPEND_DATA, access::FILE_APPEND_DATA),
    (m4::APPEND_DATA, access::FILE_APPEND_DATA), // ADD_SUBDIRECTORY
    (m4::READ_NAMED_ATTRS, access::FILE_READ_EA),
    (m4::READ_NAMED_ATTRS, access::FILE_READ_EA),
    (m4::WRITE_NAMED_ATTRS, access::FILE_WRITE_EA),
    (m4::WRITE_NAMED_ATTRS, access::FILE_WRITE_EA),
    (m4::EXECUTE, access::FILE_EXECUTE),
    (m4::EXECUTE, access::FILE_EXECUTE), // TRAVERSE
    (m4::DELETE_CHILD, access::FILE_DELETE_CHILD),
    (m4::READ_ATTRIBUTES, access::FILE_READ_ATTRIBUTES),
    (m4::READ_ATTRIBUTES, access::FILE_READ_ATTRIBUTES),
    (m4::WRITE_ATTRIBUTES, access::FILE_WRITE_ATTRIBUTES),
    (m4::WRITE_ATTRIBUTES, access::FILE_WRITE_ATTRIBUTES),
    (m4::DELETE, access::DELETE),
    (m4::READ_ACL, access::READ_CONTROL),
    (m4::WRITE_ACL, access::WRITE_DAC),
    (m4::WRITE_OWNER, access::WRITE_OWNER),
    (m4::SYNCHRONIZE, access::SYNCHRONIZE),
];

// 8. test_nfs4_permissions_to_dacl
#[test]
fn case_08_nfs4_permissions_to_dacl() {
    for (v4_mask, nt_mask) in PERMISSIONS {
        let aces = nfs42win(vec![allow4(0, v4_mask, Who::Uid(1000))], false, 1000, 1001, &defaults());
        assert_eq!(aces, [allow(0, nt_mask, sids(0))]);
    }
}

// 9. test_dacl_permissions_to_nfs4, including the four generic rows Samba's loop never runs.
#[test]
fn case_09_dacl_permissions_to_nfs4() {
    for (v4_mask, nt_mask) in PERMISSIONS {
        let acl = win2nfs4(vec![allow(0, nt_mask, sids(0))], false, 101, 102, &defaults()).unwrap();
        assert_eq!(acl.aces, [allow4(0, v4_mask, Who::Uid(1000))]);
    }
    const WRONG_TABLE: &str =
        "Samba's row has WRITE_ACL and lacks APPEND_DATA, unlike its own file_generic_mapping (the row is never run)";
    let samba_generic_write =
        m4::WRITE_ACL | m4::WRITE_DATA | m4::WRITE_ATTRIBUTES | m4::WRITE_NAMED_ATTRS | m4::SYNCHRONIZE;
    let rows: [(u32, u32, u32, &str); 4] = [
        (
            access::GENERIC_READ,
            m4::READ_ACL | m4::READ_DATA | m4::READ_ATTRIBUTES | m4::READ_NAMED_ATTRS | m4::SYNCHRONIZE,
            access::FILE_GENERIC_READ,
            "",
        ),
        (access::GENERIC_WRITE, samba_generic_write, access::FILE_GENERIC_WRITE, WRONG_TABLE),
        (
            access::GENERIC_EXECUTE,
            m4::READ_ACL | m4::READ_ATTRIBUTES | m4::EXECUTE | m4::SYNCHRONIZE,
            access::FILE_GENERIC_EXECUTE,
            "",
        ),
        (access::GENERIC_ALL, access::FILE_ALL_ACCESS, access::FILE_ALL_ACCESS, ""),
    ];
    for (generic, samba, ours, why) in rows {
        let acl = win2nfs4(vec![allow(0, generic, sids(0))], false, 101, 102, &defaults()).unwrap();
        assert_eq!(acl.aces, [allow4(0, ours, Who::Uid(1000))], "{generic:#x}");
        check_reason(&format!("{generic:#x}"), &ours, &samba, why);
    }
}

// 10. test_special_nfs4_to_dacl: Samba keeps OWNER@, GROUP@, EVERYONE@ and ignores the other
// seven; we map them to their well-known SIDs.
#[test]
fn case_10_special_nfs4_to_dacl() {
    let specials = [
        (SpecialWho::Owner, m4::READ_DATA),
        (SpecialWho::Group, m4::WRITE_DATA),
        (SpecialWho::Everyone, m4::APPEND_DATA),
        (SpecialWho::Interactive, m4::READ_NAMED_ATTRS),
        (SpecialWho::Network, m4::WRITE_NAMED_ATTRS),
        (SpecialWho::Dialup, m4::EXECUTE),
        (SpecialWho::Batch, m4::READ_ATTRIBUTES),
        (SpecialWho::Anonymous, m4::WRITE_ATTRIBUTES),
        (SpecialWho::Authenticated, m4::READ_ACL),
        (SpecialWho::Service, m4::WRITE_ACL),
    ];
    let aces = nfs42win(
        specials.iter().map(|(who, mask)| allow4(0, *mask, Who::Special(*who))).collect(),
        false,
        1000,
        1001,
        &defaults(),
    );
    let expected_sids = [
        "S-1-5-2-123-456-789-100",
        "S-1-5-2-123-456-789-101",
        "S-1-1-0",
        "S-1-5-4",
        "S-1-5-2",
        "S-1-5-1",
        "S-1-5-3",
        "S-1-5-7",
        "S-1-5-11",
        "S-1-5-6",
    ];
    let expected: Vec<Ace> =
        specials.iter().zip(expected_sids).map(|((_, mask), sid)| allow(0, *mask, sid.parse().unwrap())).collect();
    assert_eq!(aces, expected);
}

// 11. test_dacl_to_special_nfs4 (Samba: acedup dontcare; it drops S-1-5-88 silently)
#[test]
fn case_11_dacl_to_special_nfs4() {
    let unix_nfs: Sid = "S-1-5-88".parse().unwrap();
    let dacl = vec![
        allow(0, access::FILE_WRITE_DATA, Sid::world()),
        allow(0, access::FILE_READ_DATA, unix_nfs.clone()),
        allow(nt::OBJECT_INHERIT, access::FILE_READ_DATA, sids(0)),
        allow(nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, access::FILE_READ_DATA, sids(0)),
        allow(nt::OBJECT_INHERIT, access::FILE_READ_DATA, sids(1)),
        allow(nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, access::FILE_READ_DATA, sids(1)),
    ];
    let err = win2nfs4(dacl.clone(), true, 1000, 1001, &defaults()).unwrap_err();
    assert!(matches!(&err, MappingError::UnmappableSid { index: 1, sid, .. } if *sid == unix_nfs), "{err}");
    // Asked to skip, we give Samba's five ACEs and say which one was left out.
    let skip = MappingOptions { unmappable_sid: UnmappableSid::Skip, ..defaults() };
    let mapping =
        sd_to_nfs4(&dacl_sd(dacl), &FileContext { uid: 1000, gid: 1001, is_directory: true }, &samba_idmap(), &skip)
            .unwrap();
    assert_eq!(
        mapping.acls.dacl.unwrap().aces,
        [
            allow4(0, m4::WRITE_DATA, Who::Special(SpecialWho::Everyone)),
            allow4(f4::FILE_INHERIT, m4::READ_DATA, Who::Uid(1000)),
            allow4(f4::DIRECTORY_INHERIT | f4::INHERIT_ONLY, m4::READ_DATA, Who::Uid(1000)),
            allow4(f4::IDENTIFIER_GROUP | f4::FILE_INHERIT, m4::READ_DATA, Who::Gid(1001)),
            allow4(f4::IDENTIFIER_GROUP | f4::DIRECTORY_INHERIT | f4::INHERIT_ONLY, m4::READ_DATA, Who::Gid(1001)),
        ]
    );
    assert_eq!(mapping.skipped.iter().map(|s| (s.index, s.who.as_str())).collect::<Vec<_>>(), [(1, "S-1-5-88")]);
}

// 12. test_dacl_creator_to_nfs4: (NT flags, Samba's NFSv4 flags or None when it drops both ACEs,
// ours, why)
#[test]
fn case_12_dacl_creator_to_nfs4() {
    const INERT: &str =
        "a CREATOR ACE without OI/CI is inert; Samba drops it, we keep it as an INHERIT_ONLY OWNER@/GROUP@";
    let (oi, ci, io) = (nt::OBJECT_INHERIT, nt::CONTAINER_INHERIT, nt::INHERIT_ONLY);
    let (fi, di, io4) = (f4::FILE_INHERIT, f4::DIRECTORY_INHERIT, f4::INHERIT_ONLY);
    let rows: [(u8, Option<u32>, u32, &str); 8] = [
        (0, None, io4, INERT),
        (io, None, io4, INERT),
        (ci, Some(di | io4), di | io4, ""),
        (ci | io, Some(di | io4), di | io4, ""),
        (oi, Some(fi | io4), fi | io4, ""),
        (oi | io, Some(fi | io4), fi | io4, ""),
        (ci | oi, Some(di | fi | io4), di | fi | io4, ""),
        (ci | oi | io, Some(di | fi | io4), di | fi | io4, ""),
    ];
    for (flags, samba, ours, why) in rows {
        let dacl = vec![
            allow(flags, access::FILE_READ_DATA, Sid::creator_owner()),
            allow(flags, access::FILE_READ_DATA, Sid::creator_group()),
        ];
        let acl = win2nfs4(dacl, true, 101, 102, &defaults()).unwrap();
        assert_eq!(
            acl.aces,
            [allow4(ours, m4::READ_DATA, OWNER), allow4(ours, m4::READ_DATA, GROUP)],
            "flags {flags:#x}"
        );
        check_reason(&format!("flags {flags:#x}"), &Some(ours), &samba, why);
    }
}

// 13. test_nfs4_to_dacl_creator: an inheritable OWNER@/GROUP@ without INHERIT_ONLY becomes the
// owner/group SID for this object plus an inherit-only CREATOR OWNER/GROUP ACE.
#[test]
fn case_13_nfs4_to_dacl_creator() {
    let (fi, di) = (f4::FILE_INHERIT, f4::DIRECTORY_INHERIT);
    let (oi, ci, io) = (nt::OBJECT_INHERIT, nt::CONTAINER_INHERIT, nt::INHERIT_ONLY);
    let rows = [
        (SpecialWho::Owner, fi, oi | io),
        (SpecialWho::Owner, di, ci | io),
        (SpecialWho::Owner, fi | di, oi | ci | io),
        (SpecialWho::Group, fi, oi | io),
        (SpecialWho::Group, di, ci | io),
        (SpecialWho::Group, fi | di, oi | ci | io),
    ];
    for (who, v4_flags, creator_flags) in rows {
        let (current, creator) =
            if who == SpecialWho::Owner { (sids(0), Sid::creator_owner()) } else { (sids(1), Sid::creator_group()) };
        let aces = nfs42win(vec![allow4(v4_flags, m4::READ_DATA, Who::Special(who))], true, 1000, 1001, &defaults());
        assert_eq!(
            aces,
            [allow(0, access::FILE_READ_DATA, current), allow(creator_flags, access::FILE_READ_DATA, creator)]
        );
        // Already inherit-only: only the CREATOR ACE.
        let aces = nfs42win(
            vec![allow4(v4_flags | f4::INHERIT_ONLY, m4::READ_DATA, Who::Special(who))],
            true,
            1000,
            1001,
            &defaults(),
        );
        let creator_sid = if who == SpecialWho::Owner { Sid::creator_owner() } else { Sid::creator_group() };
        assert_eq!(aces, [allow(creator_flags, access::FILE_READ_DATA, creator_sid)]);
    }
}

// 14. test_full_control_nfs4_to_dacl: (is_directory, map_full_control, DELETE_CHILD added)
#[test]
fn case_14_full_control_nfs4_to_dacl() {
    let all_but_deletes = access::FILE_ALL_ACCESS & !(access::DELETE | access::FILE_DELETE_CHILD);
    for (is_directory, config, added) in
        [(true, true, false), (true, false, false), (false, true, true), (false, false, false)]
    {
        let options = MappingOptions { map_full_control: config, ..defaults() };
        let aces = nfs42win(vec![allow4(0, all_but_deletes, Who::Uid(1000))], is_directory, 1000, 1001, &options);
        let expected = if added { all_but_deletes | access::FILE_DELETE_CHILD } else { all_but_deletes };
        assert_eq!(aces, [allow(0, expected, sids(0))]);
    }
}

// 15. test_dacl_to_nfs4_acedup_settings: we have no acedup setting; ours is always Samba's
// "dontcare" (both ACEs, in order).
#[test]
fn case_15_dacl_to_nfs4_acedup_settings() {
    const NO_MERGE: &str = "we never merge, ignore or reject duplicate ACEs: order and every ACE are kept";
    let ours = vec![
        allow4(f4::FILE_INHERIT, m4::READ_DATA, Who::Uid(1000)),
        allow4(f4::FILE_INHERIT, m4::WRITE_DATA, Who::Uid(1000)),
    ];
    let rows: [(&str, Option<Vec<Nfs4Ace>>, &str); 4] = [
        ("dontcare", Some(ours.clone()), ""),
        ("reject", None, NO_MERGE),
        ("ignore", Some(vec![ours[0].clone()]), NO_MERGE),
        ("merge", Some(vec![allow4(f4::FILE_INHERIT, m4::READ_DATA | m4::WRITE_DATA, Who::Uid(1000))]), NO_MERGE),
    ];
    let dacl = vec![
        allow(nt::OBJECT_INHERIT, access::FILE_READ_DATA, sids(0)),
        allow(nt::OBJECT_INHERIT, access::FILE_WRITE_DATA, sids(0)),
    ];
    let acl = win2nfs4(dacl, true, 101, 102, &defaults()).unwrap();
    assert_eq!(acl.aces, ours);
    for (setting, samba, why) in rows {
        check_reason(setting, &Some(acl.aces.clone()), &samba, why);
    }
}

// 16. test_dacl_to_nfs4_acedup_match (Samba: acedup ignore, which keeps one ACE on a match)
#[test]
fn case_16_dacl_to_nfs4_acedup_match() {
    const NO_MERGE: &str =
        "with acedup=ignore Samba drops the second ACE (in row 3 that loses WRITE_DATA); we keep both";
    let (allowed, denied) = (AceType::AccessAllowed, AceType::AccessDenied);
    let (read, write) = (access::FILE_READ_DATA, access::FILE_WRITE_DATA);
    let (oi, ci) = (nt::OBJECT_INHERIT, nt::CONTAINER_INHERIT);
    let rows = [
        ((0, allowed.clone(), read, oi), (0, allowed.clone(), read, oi), 1, NO_MERGE),
        ((0, allowed.clone(), read, oi), (1, allowed.clone(), read, oi), 2, ""),
        ((0, allowed.clone(), read, oi), (0, denied, read, oi), 2, ""),
        ((0, allowed.clone(), read, oi), (0, allowed.clone(), write, oi), 1, NO_MERGE),
        ((0, allowed.clone(), read, oi), (0, allowed.clone(), read, ci), 2, ""),
        ((0, allowed.clone(), read, oi), (5, allowed, read, oi), 2, ""),
    ];
    for (first, second, samba_count, why) in rows {
        let dacl = vec![
            nt_ace(first.1.clone(), first.3, first.2, sids(first.0)),
            nt_ace(second.1.clone(), second.3, second.2, sids(second.0)),
        ];
        let acl = win2nfs4(dacl, true, 101, 102, &defaults()).unwrap();
        assert_eq!(acl.aces.len(), 2);
        assert_eq!(acl.aces[0], allow4(f4::FILE_INHERIT, m4::READ_DATA, Who::Uid(1000)));
        let second_who = match TEST_SIDS[second.0].1 {
            UnixId::Uid(uid) => Who::Uid(uid),
            UnixId::Gid(gid) | UnixId::Both(gid) => Who::Gid(gid),
        };
        assert_eq!(acl.aces[1].who, second_who);
        check_reason(&format!("{first:?} {second:?}"), &acl.aces.len(), &samba_count, why);
    }
}

const NO_SPECIAL_MODE: &str =
    "we have no nfs4:mode=special: CREATOR OWNER/GROUP are always OWNER@/GROUP@ inherit-only, and an inheritable ACE for the owner's SID stays numeric (an inherited OWNER@ would mean each child's owner)";

// 17. test_dacl_to_nfs4_config_special (Samba: nfs4:mode = special)
#[test]
fn case_17_dacl_to_nfs4_config_special() {
    let dacl = vec![
        allow(nt::OBJECT_INHERIT, access::FILE_READ_DATA, Sid::creator_owner()),
        allow(nt::CONTAINER_INHERIT, access::FILE_WRITE_DATA, Sid::creator_group()),
        allow(nt::OBJECT_INHERIT, access::FILE_READ_DATA, sids(0)),
        allow(nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, access::FILE_READ_DATA, sids(0)),
        allow(nt::OBJECT_INHERIT, access::FILE_READ_DATA, sids(1)),
        allow(nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, access::FILE_READ_DATA, sids(1)),
    ];
    let (fi, di, io, g) = (f4::FILE_INHERIT, f4::DIRECTORY_INHERIT, f4::INHERIT_ONLY, f4::IDENTIFIER_GROUP);
    let (r, w) = (m4::READ_DATA, m4::WRITE_DATA);
    let samba = vec![
        allow4(fi, r, Who::Uid(1003)),
        allow4(g | di, w, Who::Gid(1004)),
        allow4(fi, r, OWNER),
        allow4(di | io, r, OWNER),
        allow4(g | fi, r, GROUP),
        allow4(g | di | io, r, GROUP),
    ];
    let ours = vec![
        allow4(fi | io, r, OWNER),
        allow4(di | io, w, GROUP),
        allow4(fi, r, Who::Uid(1000)),
        allow4(di | io, r, Who::Uid(1000)),
        allow4(g | fi, r, Who::Gid(1001)),
        allow4(g | di | io, r, Who::Gid(1001)),
    ];
    let acl = win2nfs4(dacl, true, 1000, 1001, &defaults()).unwrap();
    assert_eq!(acl.aces, ours);
    check_reason("config special", &ours, &samba, NO_SPECIAL_MODE);
}

// 18. test_nfs4_to_dacl_config_special (Samba: nfs4:mode = special)
#[test]
fn case_18_nfs4_to_dacl_config_special() {
    let nfs =
        vec![allow4(f4::FILE_INHERIT, m4::READ_DATA, OWNER), allow4(f4::DIRECTORY_INHERIT, m4::WRITE_DATA, GROUP)];
    let (r, w) = (access::FILE_READ_DATA, access::FILE_WRITE_DATA);
    let samba = vec![allow(nt::OBJECT_INHERIT, r, sids(0)), allow(nt::CONTAINER_INHERIT, w, sids(1))];
    let ours = vec![
        allow(0, r, sids(0)),
        allow(nt::OBJECT_INHERIT | nt::INHERIT_ONLY, r, Sid::creator_owner()),
        allow(0, w, sids(1)),
        allow(nt::CONTAINER_INHERIT | nt::INHERIT_ONLY, w, Sid::creator_group()),
    ];
    assert_eq!(nfs42win(nfs, true, 1000, 1001, &defaults()), ours);
    check_reason("config special", &ours, &samba, NO_SPECIAL_MODE);
}

// 19. test_nfs4_to_dacl_idmap_type_both
#[test]
fn case_19_nfs4_to_dacl_idmap_type_both() {
    let rows = [(Who::Uid(1002), 2), (Who::Gid(1002), 2), (Who::Uid(1005), 6), (Who::Gid(1005), 6)];
    for (who, sid_index) in rows {
        let flags = if matches!(who, Who::Gid(_)) { f4::IDENTIFIER_GROUP } else { 0 };
        let aces = nfs42win(vec![allow4(flags, m4::READ_DATA, who)], false, 1002, 1002, &defaults());
        assert_eq!(aces, [allow(0, access::FILE_READ_DATA, sids(sid_index))]);
    }
}

// 20. test_dacl_to_nfs4_idmap_type_both: (SID index, NT flags, Samba's ACEs, ours by default,
// why). BothIdAces::GroupPlusOwner reproduces Samba in every row.
#[test]
fn case_20_dacl_to_nfs4_idmap_type_both() {
    const USER_TOO: &str = "by default an ID_TYPE_BOTH SID gives a group and a user ACE, so a process with that uid matches as Windows' token would (BothIdAces::GroupPlusOwner is Samba's)";
    let (fi, g) = (f4::FILE_INHERIT, f4::IDENTIFIER_GROUP);
    let r = m4::READ_DATA;
    let rows = [
        (2, 0, vec![allow4(g, r, GROUP), allow4(0, r, OWNER)], vec![allow4(g, r, GROUP), allow4(0, r, OWNER)], ""),
        (
            2,
            nt::OBJECT_INHERIT,
            vec![allow4(g | fi, r, Who::Gid(1002))],
            vec![allow4(g | fi, r, Who::Gid(1002)), allow4(fi, r, Who::Uid(1002))],
            USER_TOO,
        ),
        (
            6,
            0,
            vec![allow4(g, r, Who::Gid(1005))],
            vec![allow4(g, r, Who::Gid(1005)), allow4(0, r, Who::Uid(1005))],
            USER_TOO,
        ),
        (
            6,
            nt::OBJECT_INHERIT,
            vec![allow4(g | fi, r, Who::Gid(1005))],
            vec![allow4(g | fi, r, Who::Gid(1005)), allow4(fi, r, Who::Uid(1005))],
            USER_TOO,
        ),
    ];
    let samba_like = MappingOptions { both_ids: BothIdAces::GroupPlusOwner, ..defaults() };
    for (index, flags, samba, ours, why) in rows {
        let dacl = vec![allow(flags, access::FILE_READ_DATA, sids(index))];
        let acl = win2nfs4(dacl.clone(), true, 1002, 1002, &defaults()).unwrap();
        assert_eq!(acl.aces, ours, "sids[{index}] flags {flags:#x}");
        check_reason(&format!("sids[{index}] flags {flags:#x}"), &ours, &samba, why);
        assert_eq!(win2nfs4(dacl, true, 1002, 1002, &samba_like).unwrap().aces, samba);
    }
}

// 21. test_nfs4_to_dacl_remove_duplicate
#[test]
fn case_21_nfs4_to_dacl_remove_duplicate() {
    let (i, g, w) = (f4::INHERITED, f4::IDENTIFIER_GROUP, m4::WRITE_DATA);
    let nfs = vec![
        allow4(i, w, Who::Uid(1002)),
        allow4(g | i, w, Who::Gid(1002)),
        v4(Nfs4AceType::Deny, g | i, w, Who::Gid(1002)),
        allow4(g | i, w, Who::Gid(1002)),
    ];
    let inherited_write = |ace_type| nt_ace(ace_type, nt::INHERITED, access::FILE_WRITE_DATA, sids(2));
    let samba = vec![inherited_write(AceType::AccessAllowed), inherited_write(AceType::AccessDenied)];
    let ours = vec![
        inherited_write(AceType::AccessAllowed),
        inherited_write(AceType::AccessDenied),
        inherited_write(AceType::AccessAllowed),
    ];
    assert_eq!(nfs42win(nfs, true, 1000, 1001, &defaults()), ours);
    check_reason(
        "remove duplicate",
        &ours,
        &samba,
        "we only merge the adjacent user and group halves of an ID_TYPE_BOTH SID; Samba also removes a non-adjacent duplicate, which would not survive a round trip",
    );
}
