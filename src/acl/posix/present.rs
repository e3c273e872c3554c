//! POSIX ACL → NFSv4 ACL, laid out the way nfsd presents a POSIX ACL on GETATTR
//! (fs/nfsd/nfs4acl.c): DENY/ALLOW pairs so that ordered NFSv4 evaluation gives each
//! requester exactly what the POSIX check gives. Used when permissions were changed outside
//! SMB (chmod, setfacl, NFS) and the NFSv4 ACL has to be rebuilt from them.
use super::eval::mask_from_perms;
use super::model::{Perms, PosixAcl, PosixAclError, Tag};
use crate::acl::nfs4::{ace_flags, mask, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};

/// Rights nfsd grants every entry (attributes and ACL are always readable).
const ANYONE_RIGHTS: u32 = mask::READ_ATTRIBUTES | mask::READ_ACL | mask::SYNCHRONIZE;
/// Rights nfsd adds for the owner, who may always chmod and setfacl.
const OWNER_RIGHTS: u32 = mask::WRITE_ATTRIBUTES | mask::WRITE_ACL;

/// The NFSv4 ACL equivalent to `access` (and, for a directory, `default` as inheritable
/// ACEs after the effective ones).
///
/// When `access` has named entries but its mask is `---`, the kernel never consults it
/// (the mode's group bits are 000) and checks the mode instead; the result then describes the
/// mode, which is what is enforced. Both ACLs must pass [`PosixAcl::validate`]; a default
/// ACL on a non-directory is ignored, as the kernel refuses to store one.
pub fn posix_to_nfs4(
    access: &PosixAcl,
    default: Option<&PosixAcl>,
    is_dir: bool,
) -> Result<Nfs4Acl, PosixAclError> {
    access.validate()?;
    let mut aces = Vec::new();
    if access.has_named_entries() && access.mode_bits() & 0o070 == 0 {
        push_pairs(
            &PosixAcl::from_mode(access.mode_bits()),
            0,
            is_dir,
            &mut aces,
        );
    } else {
        push_pairs(access, 0, is_dir, &mut aces);
    }
    if let Some(default) = default.filter(|_| is_dir) {
        default.validate()?;
        let inherit =
            ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT | ace_flags::INHERIT_ONLY;
        push_pairs(default, inherit, is_dir, &mut aces);
    }
    Ok(Nfs4Acl { flags: 0, aces })
}

/// The effective (masked) perms of each class, as nfsd's `summarize_posix_acl`.
struct Summary {
    owner: Perms,
    /// Union of named users.
    users: Perms,
    group: Perms,
    /// Union of named groups.
    groups: Perms,
    other: Perms,
    mask: Perms,
}

fn summarize(acl: &PosixAcl) -> Summary {
    let mask = acl.mask().unwrap_or(Perms::ALL);
    let mut summary = Summary {
        owner: Perms::NONE,
        users: Perms::NONE,
        group: Perms::NONE,
        groups: Perms::NONE,
        other: Perms::NONE,
        mask,
    };
    for entry in &acl.entries {
        match entry.tag {
            Tag::UserObj => summary.owner = entry.perms,
            Tag::User(_) => summary.users |= entry.perms & mask,
            Tag::GroupObj => summary.group = entry.perms & mask,
            Tag::Group(_) => summary.groups |= entry.perms & mask,
            Tag::Other => summary.other = entry.perms,
            Tag::Mask => {}
        }
    }
    summary
}

/// Appends the ACEs for one valid ACL. Owner first (deny what later ACEs would give), then
/// each named user (same), then all group ALLOWs before all group DENYs (a user in several
/// groups gets the union, as in POSIX), then EVERYONE@ for other.
fn push_pairs(acl: &PosixAcl, flags: u32, is_dir: bool, aces: &mut Vec<Nfs4Ace>) {
    let summary = summarize(acl);
    let allow_mask = |perms: Perms, is_owner: bool| {
        ANYONE_RIGHTS | if is_owner { OWNER_RIGHTS } else { 0 } | mask_from_perms(perms, is_dir)
    };
    let mut push = |ace_type: Nfs4AceType, who: Who, ace_mask: u32| {
        let group_flag = if matches!(who, Who::Gid(_)) {
            ace_flags::IDENTIFIER_GROUP
        } else {
            0
        };
        aces.push(Nfs4Ace {
            ace_type,
            flags: flags | group_flag,
            mask: ace_mask,
            who,
        });
    };
    let owner_who = Who::Special(SpecialWho::Owner);
    let group_who = Who::Special(SpecialWho::Group);

    let later = summary.users | summary.group | summary.groups | summary.other;
    let deny = later.without(summary.owner);
    if !deny.is_empty() {
        push(
            Nfs4AceType::Deny,
            owner_who.clone(),
            mask_from_perms(deny, is_dir),
        );
    }
    push(
        Nfs4AceType::Allow,
        owner_who,
        allow_mask(summary.owner, true),
    );

    let group_class_and_other = summary.group | summary.groups | summary.other;
    for entry in &acl.entries {
        if let Tag::User(uid) = entry.tag {
            let effective = entry.perms & summary.mask;
            let deny = group_class_and_other.without(effective);
            if !deny.is_empty() {
                push(
                    Nfs4AceType::Deny,
                    Who::Uid(uid),
                    mask_from_perms(deny, is_dir),
                );
            }
            push(
                Nfs4AceType::Allow,
                Who::Uid(uid),
                allow_mask(effective, false),
            );
        }
    }

    push(
        Nfs4AceType::Allow,
        group_who.clone(),
        allow_mask(summary.group, false),
    );
    let named_groups: Vec<(u32, Perms)> = acl
        .entries
        .iter()
        .filter_map(|e| match e.tag {
            Tag::Group(gid) => Some((gid, e.perms & summary.mask)),
            _ => None,
        })
        .collect();
    for (gid, perms) in &named_groups {
        push(
            Nfs4AceType::Allow,
            Who::Gid(*gid),
            allow_mask(*perms, false),
        );
    }
    let deny = summary.other.without(summary.group);
    if !deny.is_empty() {
        push(Nfs4AceType::Deny, group_who, mask_from_perms(deny, is_dir));
    }
    for (gid, perms) in &named_groups {
        let deny = summary.other.without(*perms);
        if !deny.is_empty() {
            push(
                Nfs4AceType::Deny,
                Who::Gid(*gid),
                mask_from_perms(deny, is_dir),
            );
        }
    }
    push(
        Nfs4AceType::Allow,
        Who::Special(SpecialWho::Everyone),
        allow_mask(summary.other, false),
    );
}

/// The rights a POSIX permission bit carries for an SMB client. POSIX `r` also lets the
/// holder read the file's extended attributes and `w` write them, so an SMB client is shown
/// Samba's generic file rights (`FILE_GENERIC_READ` / `FILE_GENERIC_WRITE`) where nfsd shows
/// only the data bits. Nothing here grants what the kernel would refuse.
const SMB_READ_EXTRA: u32 = mask::READ_NAMED_ATTRS | mask::READ_ATTRIBUTES | mask::READ_ACL | mask::SYNCHRONIZE;
const SMB_WRITE_EXTRA: u32 = mask::WRITE_NAMED_ATTRS | mask::WRITE_ATTRIBUTES | mask::APPEND_DATA;

/// [`posix_to_nfs4`] as an SMB client should see it: [`widen_for_smb`] applied.
pub fn posix_to_nfs4_for_smb(
    access: &PosixAcl,
    default: Option<&PosixAcl>,
    is_dir: bool,
) -> Result<Nfs4Acl, PosixAclError> {
    let mut acl = posix_to_nfs4(access, default, is_dir)?;
    widen_for_smb(&mut acl, is_dir);
    Ok(acl)
}

/// Rewrites an ACL laid out by [`posix_to_nfs4`] the way plain Samba presents a POSIX ACL to
/// SMB clients, granting nothing the kernel would refuse:
/// - an ALLOW of READ_DATA / WRITE_DATA carries the named-attribute, attribute and (for
///   write) append rights that POSIX `r` / `w` imply (`FILE_GENERIC_READ` / `_WRITE`); a
///   DENY of them denies the named-attribute right too;
/// - on a directory, `w` lets the holder remove entries: ALLOW of WRITE_DATA carries
///   DELETE_CHILD;
/// - an ALLOW of `rwx` is full control (Samba's `GENERIC_ALL` for `rwx`);
/// - the owner's ALLOW carries WRITE_OWNER (tools such as `smbcacls -a` re-send the owner
///   and open with WRITE_OWNER; the kernel still decides whether a chown succeeds).
pub fn widen_for_smb(acl: &mut Nfs4Acl, is_dir: bool) {
    const RWX: u32 = mask::READ_DATA | mask::WRITE_DATA | mask::EXECUTE;
    const FULL_CONTROL: u32 = 0x001F_01FF;
    for ace in &mut acl.aces {
        let (read_extra, write_extra) = match ace.ace_type {
            Nfs4AceType::Allow => (SMB_READ_EXTRA, SMB_WRITE_EXTRA),
            Nfs4AceType::Deny => (mask::READ_NAMED_ATTRS, mask::WRITE_NAMED_ATTRS),
            Nfs4AceType::Audit | Nfs4AceType::Alarm => continue,
        };
        if ace.mask & mask::READ_DATA != 0 {
            ace.mask |= read_extra;
        }
        if ace.mask & mask::WRITE_DATA != 0 {
            ace.mask |= write_extra;
        }
        if ace.ace_type != Nfs4AceType::Allow {
            continue;
        }
        if is_dir && ace.mask & mask::WRITE_DATA != 0 {
            ace.mask |= mask::DELETE_CHILD;
        }
        if ace.mask & RWX == RWX {
            ace.mask |= FULL_CONTROL;
        }
        let effective = ace.flags & ace_flags::INHERIT_ONLY == 0;
        if effective && ace.who == Who::Special(SpecialWho::Owner) {
            ace.mask |= mask::WRITE_OWNER;
        }
    }
}

#[cfg(test)]
mod smb_presentation_tests {
    use super::*;
    use crate::acl::posix::eval::{access_perms, Requester};

    #[test]
    fn smb_presentation_adds_named_attribute_rights_and_keeps_rwx() {
        let access = PosixAcl::from_mode(0o640);
        let smb = posix_to_nfs4_for_smb(&access, None, false).unwrap();
        let owner_allow = smb
            .aces
            .iter()
            .find(|a| a.ace_type == Nfs4AceType::Allow && a.who == Who::Special(SpecialWho::Owner))
            .unwrap();
        for bit in [mask::READ_DATA, mask::READ_NAMED_ATTRS, mask::WRITE_DATA, mask::WRITE_NAMED_ATTRS, mask::APPEND_DATA, mask::WRITE_OWNER] {
            assert_ne!(owner_allow.mask & bit, 0, "owner lacks {bit:#x}");
        }
        // The rwx every requester gets is exactly what nfsd's layout gives.
        let plain = posix_to_nfs4(&access, None, false).unwrap();
        for uid in [1, 2] {
            for gids in [vec![], vec![10], vec![20]] {
                let who = Requester { uid, gids: gids.iter().copied().collect() };
                assert_eq!(access_perms(&smb, 1, 10, &who), access_perms(&plain, 1, 10, &who), "uid {uid} gids {gids:?}");
            }
        }
    }

    #[test]
    fn smb_presentation_of_directories_and_rwx() {
        let smb = posix_to_nfs4_for_smb(&PosixAcl::from_mode(0o750), None, true).unwrap();
        let allow = |who: SpecialWho| {
            smb.aces
                .iter()
                .find(|a| a.ace_type == Nfs4AceType::Allow && a.who == Who::Special(who))
                .map(|a| a.mask)
                .unwrap()
        };
        // Owner rwx: full control, including removing entries.
        assert_eq!(allow(SpecialWho::Owner) & 0x001F_01FF, 0x001F_01FF);
        // Group r-x on a directory: no write, so no DELETE_CHILD.
        assert_eq!(allow(SpecialWho::Group) & (mask::WRITE_DATA | mask::DELETE_CHILD), 0);
    }
}
