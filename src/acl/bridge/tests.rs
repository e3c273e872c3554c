use proptest::prelude::*;

use super::*;
use crate::acl::nfs4::{strategies, text, Nfs4Ace, SpecialWho, Who};
use crate::acl::posix::{PosixEntry, Requester};

const BRIDGE: Bridge = Bridge {
    encoding: Nfs4Encoding::Ndr,
};

fn acl(spec: &str) -> Nfs4Acl {
    text::parse(spec).unwrap()
}

fn posix(entries: &[(Tag, u32)]) -> PosixAcl {
    PosixAcl::new(
        entries
            .iter()
            .map(|(tag, bits)| PosixEntry::new(*tag, Perms::from_bits(*bits).unwrap()))
            .collect(),
    )
}

fn file(mode: u32) -> FileMeta {
    FileMeta {
        uid: 1000,
        gid: 100,
        mode,
        is_dir: false,
    }
}

fn dir(mode: u32) -> FileMeta {
    FileMeta {
        uid: 1000,
        gid: 100,
        mode,
        is_dir: true,
    }
}

/// What the disk holds after the store carries out `plan`: the kernel keeps no access
/// xattr for an ACL the mode alone can say.
fn written(meta: &FileMeta, plan: &WritePlan) -> FileAclState {
    let (uid, gid) = plan.chown.unwrap_or((meta.uid, meta.gid));
    FileAclState {
        meta: FileMeta {
            uid,
            gid,
            mode: plan.mode,
            is_dir: meta.is_dir,
        },
        stored: Some(plan.xattr.clone()),
        access: (plan.access.entries.len() > 3).then(|| plan.access.clone()),
        default: plan.default.clone(),
    }
}

/// `chmod(mode)` by the kernel on a written state.
fn chmodded(state: &FileAclState, mode: u32) -> FileAclState {
    let mut state = state.clone();
    state.meta.mode = (state.meta.mode & !0o777) | (mode & 0o777);
    state.access = state.access.as_ref().map(|acl| chmod_acl(acl, mode));
    state
}

const WINDOWS_LIKE: &str = "A::OWNER@:rwaDdxtTnNcCoy,A::1001:rwaxtncy,A:g:200:rxtncy,A:g:GROUP@:rxtncy,\
                            A::EVERYONE@:rtncy,U:S:EVERYONE@:wa";

#[test]
fn without_a_stored_acl_the_posix_side_is_the_acl() {
    let access = posix(&[
        (Tag::UserObj, 7),
        (Tag::User(1001), 6),
        (Tag::GroupObj, 5),
        (Tag::Mask, 7),
        (Tag::Other, 0),
    ]);
    let state = FileAclState {
        meta: file(0o770),
        stored: None,
        access: Some(access.clone()),
        default: None,
    };
    let effective = BRIDGE.effective_nfs4(&state).unwrap();
    assert_eq!(effective.origin, Origin::PosixOnly);
    assert_eq!(effective.acl, posix_to_nfs4(&access, None, false).unwrap());
    assert_eq!(BRIDGE.check(&state).unwrap(), CheckReport::NoStoredAcl);

    // No access xattr: the mode is the ACL.
    let bare = FileAclState {
        meta: file(0o640),
        stored: None,
        access: None,
        default: None,
    };
    let effective = BRIDGE.effective_nfs4(&bare).unwrap();
    assert_eq!(
        effective.acl,
        posix_to_nfs4(&PosixAcl::from_mode(0o640), None, false).unwrap()
    );
}

#[test]
fn a_written_plan_reads_back_as_the_stored_acl() {
    for (meta, spec) in [
        (file(0o644), WINDOWS_LIKE),
        (
            dir(0o2755),
            "A:fd:OWNER@:rwaDdxtTnNcCoy,A:fdg:200:rwaDxtncy,A:fdi:GROUP@:rxtncy,A::EVERYONE@:rxtncy",
        ),
        (file(0o600), "A::OWNER@:rwatTnNcCoy"),
    ] {
        let acl = acl(spec);
        let plan = BRIDGE.plan_write(&meta, &acl, Ownership::default()).unwrap();
        assert_eq!(BRIDGE.decode_stored(&plan.xattr).unwrap(), acl);
        assert_eq!(plan.mode & 0o7000, meta.mode & 0o7000, "{spec}: special bits kept");
        let state = written(&meta, &plan);
        let effective = BRIDGE.effective_nfs4(&state).unwrap();
        assert_eq!(effective.origin, Origin::Stored, "{spec}");
        assert_eq!(effective.acl, acl);
        assert_eq!(BRIDGE.check(&state).unwrap(), CheckReport::Coherent, "{spec}");
    }
}

#[test]
fn chmod_outside_smb_is_honoured_with_apply_mode() {
    let meta = file(0o644);
    let acl = acl(WINDOWS_LIKE);
    let plan = BRIDGE.plan_write(&meta, &acl, Ownership::default()).unwrap();
    let state = chmodded(&written(&meta, &plan), 0o700);

    let effective = BRIDGE.effective_nfs4(&state).unwrap();
    assert_eq!(
        effective.origin,
        Origin::Rebuilt {
            access: AccessChange::ModeOnly,
            default_changed: false
        }
    );
    assert_eq!(effective.acl, apply_mode(&acl, 0o700, false));
    // The named principals are still there (narrowed to the group bits, here none), so a
    // later widening chmod is not the only way back to the Windows ACL.
    assert!(effective.acl.aces.iter().any(|a| a.who == Who::Uid(1001)));
    // Through POSIX the rebuilt ACL grants no more than the kernel enforces after the chmod.
    let mirrored = mirror(&effective.acl, 1000, 100, false);
    for requester in [
        Requester::new(1000, [100]),
        Requester::new(1001, [200]),
        Requester::new(5, [100, 200]),
    ] {
        let on_disk = state.access.clone().unwrap_or_else(|| PosixAcl::from_mode(0o700));
        let kernel_now = on_disk.kernel_granted(1000, 100, &requester);
        let after = mirrored.access.kernel_granted(1000, 100, &requester);
        assert!(kernel_now.contains(after), "{requester:?}: {after} beyond {kernel_now}");
    }

    let report = BRIDGE.check(&state).unwrap();
    let CheckReport::Differs { access, differences } = &report else {
        panic!("{report:?}")
    };
    assert_eq!(*access, AccessChange::ModeOnly);
    assert!(differences.contains(&Difference::Mode {
        on_disk: 0o700,
        mirror: plan.mode & 0o777
    }));
    assert!(report.to_string().contains("chmod"), "{report}");
}

#[test]
fn setfacl_outside_smb_rebuilds_from_posix_keeping_audit_aces() {
    let meta = file(0o644);
    let mut acl = acl(WINDOWS_LIKE);
    acl.flags = crate::acl::nfs4::acl_flags::PROTECTED;
    let plan = BRIDGE.plan_write(&meta, &acl, Ownership::default()).unwrap();
    let mut state = written(&meta, &plan);
    let mut changed = plan.access.clone();
    changed.entries.push(PosixEntry::new(Tag::User(2000), Perms::ALL));
    changed.sort_canonical();
    let mask = changed.entries.iter_mut().find(|e| e.tag == Tag::Mask).unwrap();
    mask.perms = Perms::ALL;
    state.meta.mode = (state.meta.mode & !0o777) | changed.mode_bits();
    state.access = Some(changed.clone());

    let effective = BRIDGE.effective_nfs4(&state).unwrap();
    assert_eq!(
        effective.origin,
        Origin::Rebuilt {
            access: AccessChange::Entries,
            default_changed: false
        }
    );
    let mut expected = posix_to_nfs4(&changed, None, false).unwrap();
    expected.flags = acl.flags;
    expected
        .aces
        .extend(acl.aces.iter().filter(|a| a.ace_type == Nfs4AceType::Audit).cloned());
    assert_eq!(effective.acl, expected);
    assert!(effective.acl.aces.iter().any(|a| a.who == Who::Uid(2000)));

    let report = BRIDGE.check(&state).unwrap();
    assert!(
        matches!(
            report,
            CheckReport::Differs {
                access: AccessChange::Entries,
                ..
            }
        ),
        "{report:?}"
    );
    assert!(report.to_string().contains("user:2000:rwx"), "{report}");
}

#[test]
fn setfacl_default_on_a_directory_replaces_only_the_inheritance() {
    let meta = dir(0o755);
    let acl = acl("A:fd:OWNER@:rwaDdxtTnNcCoy,A:g:200:rwaDxtncy,A:fdi:GROUP@:rxtncy,A::EVERYONE@:rxtncy");
    let plan = BRIDGE.plan_write(&meta, &acl, Ownership::default()).unwrap();
    let mut state = written(&meta, &plan);
    let new_default = posix(&[
        (Tag::UserObj, 7),
        (Tag::GroupObj, 5),
        (Tag::Group(300), 7),
        (Tag::Mask, 7),
        (Tag::Other, 0),
    ]);
    state.default = Some(new_default.clone());

    let effective = BRIDGE.effective_nfs4(&state).unwrap();
    assert_eq!(
        effective.origin,
        Origin::Rebuilt {
            access: AccessChange::Unchanged,
            default_changed: true
        }
    );
    // The directory's own rights are the stored ones, now without inheritance.
    let own: Vec<&Nfs4Ace> = effective
        .acl
        .aces
        .iter()
        .filter(|a| a.flags & ace_flags::INHERIT_ONLY == 0)
        .collect();
    assert_eq!(own.len(), 3);
    assert!(own
        .iter()
        .all(|a| a.flags & (ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT) == 0));
    assert!(own.iter().any(|a| a.who == Who::Gid(200)));
    // What children inherit is what the on-disk default ACL gives them.
    let mirrored = mirror(&effective.acl, 1000, 100, true);
    assert_eq!(mirrored.access, plan.access);
    assert_eq!(mirrored.default, Some(new_default));

    // Removing the default ACL (setfacl -k) stops inheritance altogether.
    state.default = None;
    let effective = BRIDGE.effective_nfs4(&state).unwrap();
    assert!(effective
        .acl
        .aces
        .iter()
        .all(|a| a.flags & (ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT) == 0));
    let report = BRIDGE.check(&state).unwrap();
    assert!(report.to_string().contains("default ACL is none"), "{report}");
}

#[test]
fn a_corrupt_stored_acl_is_an_error_and_never_falls_back_to_posix() {
    let state = FileAclState {
        meta: file(0o777),
        stored: Some(b"not an ndr blob".to_vec()),
        access: None,
        default: None,
    };
    let error = BRIDGE.effective_nfs4(&state).unwrap_err();
    assert!(
        matches!(error, BridgeError::StoredAclCorrupt { encoding: "ndr", .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("does not decode as ndr"), "{error}");
    assert!(BRIDGE.check(&state).is_err());
    // The same bytes in another encoding's name are still refused, not guessed.
    let xdr = Bridge::new(Nfs4Encoding::Xdr);
    assert!(xdr.effective_nfs4(&state).is_err());
}

#[test]
fn an_invalid_posix_acl_on_disk_is_an_error() {
    let out_of_order = posix(&[(Tag::GroupObj, 7), (Tag::UserObj, 7), (Tag::Other, 7)]);
    for stored in [
        None,
        Some(
            BRIDGE
                .plan_write(&file(0o644), &acl("A::OWNER@:rw"), Ownership::default())
                .unwrap()
                .xattr,
        ),
    ] {
        let state = FileAclState {
            meta: file(0o777),
            stored,
            access: Some(out_of_order.clone()),
            default: None,
        };
        let error = BRIDGE.effective_nfs4(&state).unwrap_err();
        assert!(
            matches!(error, BridgeError::PosixInvalid { which: "access", .. }),
            "{error:?}"
        );
        assert!(BRIDGE.check(&state).is_err());
    }
}

#[test]
fn a_default_acl_on_a_file_is_ignored() {
    let meta = file(0o640);
    let plan = BRIDGE
        .plan_write(&meta, &acl("A::OWNER@:rw,A:g:GROUP@:r"), Ownership::default())
        .unwrap();
    let mut state = written(&meta, &plan);
    state.default = Some(PosixAcl::from_mode(0o777));
    assert_eq!(BRIDGE.check(&state).unwrap(), CheckReport::Coherent);
    assert_eq!(plan.default, None);
}

#[test]
fn plan_write_keeps_special_bits_but_not_set_ids_across_a_chown() {
    let acl = acl("A::OWNER@:rwax,A:g:GROUP@:rx,A::EVERYONE@:rx");
    let plan = BRIDGE.plan_write(&file(0o4755), &acl, Ownership::default()).unwrap();
    assert_eq!(plan.mode, 0o4755);
    assert_eq!(plan.chown, None);

    let plan = BRIDGE
        .plan_write(
            &file(0o6755),
            &acl,
            Ownership {
                uid: Some(2000),
                gid: None,
            },
        )
        .unwrap();
    assert_eq!(plan.chown, Some((2000, 100)));
    assert_eq!(plan.mode, 0o755, "setuid/setgid dropped on a file that changes owner");

    let plan = BRIDGE
        .plan_write(
            &dir(0o3775),
            &acl,
            Ownership {
                uid: None,
                gid: Some(300),
            },
        )
        .unwrap();
    assert_eq!(plan.chown, Some((1000, 300)));
    assert_eq!(plan.mode, 0o3755, "setgid and sticky stay on directories");

    // Asking for the owner the file already has is no chown.
    let plan = BRIDGE
        .plan_write(
            &file(0o644),
            &acl,
            Ownership {
                uid: Some(1000),
                gid: Some(100),
            },
        )
        .unwrap();
    assert_eq!(plan.chown, None);
}

#[test]
fn plan_write_mirrors_for_the_new_owner() {
    // uid 2000 has rwx by name; once it owns the file, user:: carries it.
    let acl = acl("A::2000:rwax,A::OWNER@:r,A::EVERYONE@:r");
    let plan = BRIDGE
        .plan_write(
            &file(0o644),
            &acl,
            Ownership {
                uid: Some(2000),
                gid: None,
            },
        )
        .unwrap();
    assert_eq!(plan.access.perms_of(Tag::UserObj), Some(Perms::ALL));
    assert!(!plan.access.has_named_entries());
}

#[test]
fn plan_write_reports_what_posix_narrows() {
    let acl = acl("D:g:20:wa,A::EVERYONE@:rwax");
    let plan = BRIDGE.plan_write(&file(0o644), &acl, Ownership::default()).unwrap();
    assert!(
        plan.narrowed.iter().any(|n| n.tag == Tag::UserObj),
        "{:?}",
        plan.narrowed
    );
    assert!(!plan.access.perms_of(Tag::UserObj).unwrap().contains(Perms::WRITE));
}

#[test]
fn plan_write_refuses_what_the_encoding_cannot_hold() {
    let named = Nfs4Acl {
        flags: 0,
        aces: vec![Nfs4Ace {
            ace_type: Nfs4AceType::Allow,
            flags: 0,
            mask: 1,
            who: Who::Name("alice@example.com".into()),
        }],
    };
    for encoding in [Nfs4Encoding::Xdr, Nfs4Encoding::Ndr] {
        let error = Bridge::new(encoding)
            .plan_write(&file(0o644), &named, Ownership::default())
            .unwrap_err();
        assert!(
            matches!(error, BridgeError::Unencodable { .. }),
            "{encoding:?}: {error:?}"
        );
    }
    // The nfs encoding carries names; the mirror treats the ALLOW as granting nothing.
    let plan = Bridge::new(Nfs4Encoding::Nfs41)
        .plan_write(&file(0o644), &named, Ownership::default())
        .unwrap();
    assert_eq!(plan.mode & 0o777, 0);
    assert!(!plan.notes.is_empty());
}

#[test]
fn a_written_plan_is_already_written_and_any_change_is_not() {
    for (meta, spec) in [
        (file(0o640), WINDOWS_LIKE),
        (dir(0o2750), "A:fd:OWNER@:rwaDdxtTnNcCoy,A:fdi:1001:rxtncy,A::EVERYONE@:rtncy"),
        (file(0o600), "A::OWNER@:rwaxtncy"),
    ] {
        let plan = BRIDGE.plan_write(&meta, &acl(spec), Ownership::default()).unwrap();
        let state = written(&meta, &plan);
        assert_eq!(already_written(&plan, &state), AlreadyWritten { xattr: true, posix: true }, "{spec}");

        // The stored ACL differs (another ACL with the same mirror, or none at all).
        let mut other = state.clone();
        other.stored = Some(BRIDGE.plan_write(&meta, &acl("A::OWNER@:r"), Ownership::default()).unwrap().xattr);
        assert_eq!(already_written(&plan, &other), AlreadyWritten { xattr: false, posix: true }, "{spec}");
        other.stored = None;
        assert!(!already_written(&plan, &other).xattr);

        // A chmod, a setuid bit, a setfacl outside SMB: the POSIX side must be written again.
        let chmod = chmodded(&state, (state.meta.mode & 0o777) ^ 0o004);
        assert_eq!(already_written(&plan, &chmod), AlreadyWritten { xattr: true, posix: false }, "{spec}");
        let mut setuid = state.clone();
        setuid.meta.mode |= 0o4000;
        assert!(!already_written(&plan, &setuid).posix, "{spec}");
        let mut setfacl = state.clone();
        let mut access = plan.access.clone();
        access.entries.push(PosixEntry::new(Tag::User(4242), Perms::from_bits(4).unwrap()));
        if access.mask().is_none() {
            access.entries.push(PosixEntry::new(Tag::Mask, Perms::from_bits(7).unwrap()));
        }
        setfacl.access = Some(access);
        assert!(!already_written(&plan, &setfacl).posix, "{spec}");
        if meta.is_dir {
            let mut no_default = state.clone();
            no_default.default = None;
            assert!(!already_written(&plan, &no_default).posix, "{spec}");
        }
    }
}

#[test]
fn a_plan_with_a_chown_is_never_already_written_on_the_posix_side() {
    let meta = file(0o640);
    let plan = BRIDGE
        .plan_write(&meta, &acl(WINDOWS_LIKE), Ownership { uid: Some(1001), gid: None })
        .unwrap();
    let mut state = written(&meta, &plan);
    state.meta.uid = meta.uid;
    assert_eq!(already_written(&plan, &state), AlreadyWritten { xattr: true, posix: false });
}

#[test]
fn an_invalid_posix_acl_on_disk_is_never_already_written() {
    let meta = file(0o640);
    let plan = BRIDGE.plan_write(&meta, &acl(WINDOWS_LIKE), Ownership::default()).unwrap();
    let mut state = written(&meta, &plan);
    state.access = Some(posix(&[(Tag::UserObj, 7), (Tag::User(1001), 6), (Tag::Other, 0)]));
    assert!(!already_written(&plan, &state).posix);
}

#[test]
fn difference_texts_name_both_sides() {
    let d = Difference::Mode {
        on_disk: 0o700,
        mirror: 0o640,
    };
    assert_eq!(d.to_string(), "mode is 0700, the stored ACL's mirror has 0640");
    let d = Difference::Default {
        on_disk: None,
        mirror: Some(PosixAcl::from_mode(0o750)),
    };
    assert_eq!(
        d.to_string(),
        "default ACL is none, the stored ACL's mirror is user::rwx,group::r-x,other::---"
    );
    let _ = SpecialWho::Owner;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever ACL is written, the written state reads back as that ACL and is coherent;
    /// after any chmod, the effective ACL is apply_mode of it.
    #[test]
    fn write_then_read_is_coherent_and_chmod_gives_apply_mode(
        acl in strategies::ndr_acl(),
        uid in 0u32..4, gid in 0u32..4, is_dir in any::<bool>(),
        special in prop::sample::select(vec![0u32, 0o1000, 0o2000, 0o4000]),
        chmod in 0u32..0o1000,
    ) {
        let meta = FileMeta { uid, gid, mode: special | 0o644, is_dir };
        let plan = BRIDGE.plan_write(&meta, &acl, Ownership::default()).unwrap();
        let state = written(&meta, &plan);
        let effective = BRIDGE.effective_nfs4(&state).unwrap();
        prop_assert_eq!(&effective.acl, &acl);
        prop_assert_eq!(effective.origin, Origin::Stored);
        prop_assert!(BRIDGE.check(&state).unwrap().is_coherent());
        // Writing the same plan again would change nothing: a write may skip it.
        prop_assert_eq!(already_written(&plan, &state), AlreadyWritten { xattr: true, posix: true });

        let after = chmodded(&state, chmod);
        let effective = BRIDGE.effective_nfs4(&after).unwrap();
        // Only a coherent POSIX side counts as written; a chmod outside SMB never does.
        prop_assert_eq!(already_written(&plan, &after).posix, chmod == plan.mode & 0o777);
        if chmod == plan.mode & 0o777 {
            prop_assert_eq!(effective.origin, Origin::Stored);
        } else {
            prop_assert_eq!(effective.origin, Origin::Rebuilt { access: AccessChange::ModeOnly, default_changed: false });
            prop_assert_eq!(effective.acl, apply_mode(&acl, chmod, is_dir));
            prop_assert!(!BRIDGE.check(&after).unwrap().is_coherent());
        }
    }
}
