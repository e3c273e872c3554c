//! chmod on an NFSv4 ACL (RFC 8881 §6.4.1.1, "setting mode and not ACL"): make the ACL say
//! what the new mode says without throwing away the named entries and inheritable ACEs that
//! came from Windows.
use super::eval::{is_effective, mask_from_perms};
use super::model::Perms;
use crate::acl::nfs4::{ace_flags, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};

/// The ACL after `chmod(mode)` (only the 0o777 bits of `mode` are used).
///
/// - OWNER@ gets exactly the owner bits: a DENY and an ALLOW go first.
/// - Existing OWNER@/GROUP@/EVERYONE@ ACEs lose their rwx rights (READ_DATA, WRITE_DATA,
///   APPEND_DATA, EXECUTE, and DELETE_CHILD on directories) but keep the others (WRITE_ACL,
///   DELETE, ...).
/// - ALLOWs for named users and groups keep only the group bits (the group bits act as the
///   POSIX mask); their DENYs stay.
/// - At the end: GROUP@ ALLOW group bits, then DENYs of (other & !group) for GROUP@ and every
///   named principal so that EVERYONE@ cannot give them more than the group bits, then
///   EVERYONE@ ALLOW other bits.
/// - On a directory, inheritable ACEs are kept unchanged as INHERIT_ONLY copies: chmod
///   changes the directory, not what its children inherit. AUDIT/ALARM ACEs stay.
pub fn apply_mode(acl: &Nfs4Acl, mode: u32, is_dir: bool) -> Nfs4Acl {
    let owner_bits = mask_from_perms(Perms::from_bits_truncate(mode >> 6), is_dir);
    let group_bits = mask_from_perms(Perms::from_bits_truncate(mode >> 3), is_dir);
    let other_bits = mask_from_perms(Perms::from_bits_truncate(mode), is_dir);
    let mode_rights = mask_from_perms(Perms::ALL, is_dir);
    let inheritance =
        ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT | ace_flags::NO_PROPAGATE_INHERIT;

    let special = |ace_type, who: SpecialWho, mask| Nfs4Ace {
        ace_type,
        flags: 0,
        mask,
        who: Who::Special(who),
    };
    let mut aces = Vec::with_capacity(acl.aces.len() + 6);
    if mode_rights & !owner_bits != 0 {
        aces.push(special(
            Nfs4AceType::Deny,
            SpecialWho::Owner,
            mode_rights & !owner_bits,
        ));
    }
    if owner_bits != 0 {
        aces.push(special(Nfs4AceType::Allow, SpecialWho::Owner, owner_bits));
    }

    let mut inherit_only = Vec::new();
    let mut named: Vec<(Who, u32)> = Vec::new();
    for ace in &acl.aces {
        if !matches!(ace.ace_type, Nfs4AceType::Allow | Nfs4AceType::Deny) {
            aces.push(ace.clone());
            continue;
        }
        if !is_effective(ace) {
            inherit_only.push(ace.clone());
            continue;
        }
        if is_dir && ace.flags & (ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT) != 0 {
            inherit_only.push(Nfs4Ace {
                flags: ace.flags | ace_flags::INHERIT_ONLY,
                ..ace.clone()
            });
        }
        let mut effective = Nfs4Ace {
            flags: ace.flags & !inheritance,
            ..ace.clone()
        };
        match &ace.who {
            Who::Special(SpecialWho::Owner | SpecialWho::Group | SpecialWho::Everyone) => {
                effective.mask &= !mode_rights;
            }
            who => {
                if ace.ace_type == Nfs4AceType::Allow {
                    effective.mask &= !(mode_rights & !group_bits);
                }
                if !named.iter().any(|(w, _)| w == who) {
                    named.push((who.clone(), ace.flags & ace_flags::IDENTIFIER_GROUP));
                }
            }
        }
        if effective.mask != 0 {
            aces.push(effective);
        }
    }

    if group_bits != 0 {
        aces.push(special(Nfs4AceType::Allow, SpecialWho::Group, group_bits));
    }
    let group_class_deny = other_bits & !group_bits;
    if group_class_deny != 0 {
        aces.push(special(
            Nfs4AceType::Deny,
            SpecialWho::Group,
            group_class_deny,
        ));
        for (who, group_flag) in named {
            aces.push(Nfs4Ace {
                ace_type: Nfs4AceType::Deny,
                flags: group_flag,
                mask: group_class_deny,
                who,
            });
        }
    }
    if other_bits != 0 {
        aces.push(special(
            Nfs4AceType::Allow,
            SpecialWho::Everyone,
            other_bits,
        ));
    }
    aces.extend(inherit_only);
    Nfs4Acl {
        flags: acl.flags,
        aces,
    }
}
