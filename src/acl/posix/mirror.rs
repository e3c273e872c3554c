//! NFSv4 ACL → POSIX access/default ACL and mode, never granting more than the NFSv4 ACL.
//!
//! Every POSIX entry stands for a class of requesters whose group memberships we do not
//! know, so each entry gets the rights the NFSv4 ACL grants that class *whatever* groups the
//! requester is in (the `guaranteed` bound of [`bounds`]). See docs/posix-mirror.md.
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::eval::{bounds, is_resolvable, perms_from_mask, Bounds, Key, Match, RWX_MASK};
use super::model::{AclKind, Perms, PosixAcl, PosixEntry, Tag};
use crate::acl::nfs4::{ace_flags, mask, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};

/// The POSIX side of one NFSv4 ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// For `system.posix_acl_access`; valid and in canonical order.
    pub access: PosixAcl,
    /// For `system.posix_acl_default`: directories with inheritable ACEs only.
    pub default: Option<PosixAcl>,
    /// Permission bits only (0o777), consistent with `access`; combine with the file's
    /// setuid/setgid/sticky bits via [`super::model::with_permission_bits`].
    pub mode: u32,
    /// Entries that grant less than some member of their class gets over SMB.
    pub narrowed: Vec<Narrowing>,
    /// Other things POSIX could not carry, in words.
    pub notes: Vec<String>,
}

/// A POSIX entry that grants less than the NFSv4 ACL gives some requesters of its class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrowing {
    pub kind: AclKind,
    pub tag: Tag,
    /// What the entry grants.
    pub posix: Perms,
    /// The most the NFSv4 ACL grants some requester of the class.
    pub nfs4_best: Perms,
    pub reason: String,
}

/// Mirrors `acl` of a file owned by `owner`:`group`.
///
/// Guarantee: for every uid and set of gids, each rwx bit the kernel grants with `access`
/// and `mode` is granted by `acl`; and every child created in a directory starts, from
/// `default`, with no more than it inherits from `acl`.
pub fn mirror(acl: &Nfs4Acl, owner: u32, group: u32, is_dir: bool) -> Mirror {
    let mut notes = Vec::new();
    let mut narrowed = Vec::new();
    note_lossy_aces(acl, is_dir, &mut notes);

    let effective: Vec<Nfs4Ace> = acl
        .aces
        .iter()
        .filter(|ace| ace.flags & ace_flags::INHERIT_ONLY == 0)
        .cloned()
        .collect();
    let scope = Scope {
        owner: Some(owner),
        group: Some(group),
    };
    let roles = roles_for(&effective, scope);
    let drafts = draft_entries(&effective, scope, &roles);
    for draft in &drafts {
        if let Some(n) = narrowing(AclKind::Access, draft, None) {
            narrowed.push(n);
        }
    }
    let access = assemble(
        drafts.iter().map(|d| (d.tag, d.posix)).collect(),
        AclKind::Access,
        &mut notes,
    );
    let default = if is_dir {
        mirror_default(acl, &mut narrowed, &mut notes)
    } else {
        None
    };
    let mode = access.mode_bits();
    Mirror {
        access,
        default,
        mode,
        narrowed,
        notes,
    }
}

/// Owner and owning group; `None` when not known yet (a child that inherits).
#[derive(Debug, Clone, Copy)]
struct Scope {
    owner: Option<u32>,
    group: Option<u32>,
}

/// The requester class a POSIX entry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Owner,
    NamedUser(u32),
    OwningGroup,
    NamedGroup(u32),
    /// Not the owner, no named user entry, in no group that has an entry.
    Other,
}

impl Role {
    fn tag(self) -> Tag {
        match self {
            Role::Owner => Tag::UserObj,
            Role::NamedUser(uid) => Tag::User(uid),
            Role::OwningGroup => Tag::GroupObj,
            Role::NamedGroup(gid) => Tag::Group(gid),
            Role::Other => Tag::Other,
        }
    }
}

/// One entry before the mask is settled.
struct Draft {
    tag: Tag,
    posix: Perms,
    best: Perms,
    bounds: Bounds,
}

/// One role per POSIX entry: every uid and gid an ACE names gets its own entry (except the
/// known owner and owning group, which `user::`/`group::` serve), so that no one named in
/// the NFSv4 ACL falls into a broader class.
fn roles_for(aces: &[Nfs4Ace], scope: Scope) -> Vec<Role> {
    let mut uids = BTreeSet::new();
    let mut gids = BTreeSet::new();
    for ace in aces
        .iter()
        .filter(|a| matches!(a.ace_type, Nfs4AceType::Allow | Nfs4AceType::Deny))
    {
        match ace.who {
            Who::Uid(uid) if Some(uid) != scope.owner => {
                uids.insert(uid);
            }
            Who::Gid(gid) if Some(gid) != scope.group => {
                gids.insert(gid);
            }
            _ => {}
        }
    }
    let mut roles = vec![Role::Owner];
    roles.extend(uids.into_iter().map(Role::NamedUser));
    roles.push(Role::OwningGroup);
    roles.extend(gids.into_iter().map(Role::NamedGroup));
    roles.push(Role::Other);
    roles
}

/// How an ACE applies to a requester of `role`.
fn classify(ace: &Nfs4Ace, scope: Scope, role: Role) -> Match {
    let owning_group_key = scope.group.map_or(Key::OwningGroup, Key::Gid);
    let group_match = |key: Key| match role {
        // The requester's own group is certain; any other group is a maybe.
        Role::OwningGroup if key == owning_group_key => Match::Always,
        Role::NamedGroup(gid) if key == Key::Gid(gid) => Match::Always,
        // Reaching `other::` means being in no group that has an entry.
        Role::Other => Match::Never,
        _ => Match::IfMember(key),
    };
    match &ace.who {
        Who::Special(SpecialWho::Everyone) => Match::Always,
        Who::Special(SpecialWho::Owner) => match role {
            Role::Owner => Match::Always,
            _ => Match::Never,
        },
        Who::Uid(uid) => match role {
            Role::Owner => match scope.owner {
                Some(owner) if owner == *uid => Match::Always,
                Some(_) => Match::Never,
                // A child's owner could be anyone, this uid included.
                None => Match::IfMember(Key::Uid(*uid)),
            },
            Role::NamedUser(named) if named == *uid => Match::Always,
            _ => Match::Never,
        },
        Who::Special(SpecialWho::Group) => group_match(owning_group_key),
        Who::Gid(gid) => group_match(if Some(*gid) == scope.group {
            owning_group_key
        } else {
            Key::Gid(*gid)
        }),
        who => {
            debug_assert!(!is_resolvable(who));
            if ace.ace_type == Nfs4AceType::Deny {
                Match::Always
            } else {
                Match::Never
            }
        }
    }
}

fn draft_entries(aces: &[Nfs4Ace], scope: Scope, roles: &[Role]) -> Vec<Draft> {
    roles
        .iter()
        .map(|role| {
            let bounds = bounds(
                aces.iter()
                    .filter(|a| a.flags & ace_flags::INHERIT_ONLY == 0),
                |ace| classify(ace, scope, *role),
            );
            // POSIX already gives a member of several groups the union of their entries, so
            // for a group entry a right that only another group's ACE grants is not lost.
            let best = match role {
                Role::OwningGroup | Role::NamedGroup(_) => bounds.decided_allow,
                _ => bounds.possible,
            };
            Draft {
                tag: role.tag(),
                posix: perms_from_mask(bounds.guaranteed),
                best: perms_from_mask(best),
                bounds,
            }
        })
        .collect()
}

/// A valid, canonical ACL from entries in role order, adding `mask::` when there are named
/// entries. The mask is the union of the group-class entries, so it takes nothing away.
fn assemble(entries: Vec<(Tag, Perms)>, kind: AclKind, notes: &mut Vec<String>) -> PosixAcl {
    let has_named = entries
        .iter()
        .any(|(tag, _)| matches!(tag, Tag::User(_) | Tag::Group(_)));
    let union = entries
        .iter()
        .filter(|(tag, _)| tag.is_group_class())
        .fold(Perms::NONE, |acc, (_, perms)| acc | *perms);
    let other = entries
        .iter()
        .find(|(tag, _)| *tag == Tag::Other)
        .map_or(Perms::NONE, |(_, p)| *p);
    let mut acl = PosixAcl::new(
        entries
            .into_iter()
            .map(|(tag, perms)| PosixEntry::new(tag, perms))
            .collect(),
    );
    if has_named {
        // With mode group bits 000 the kernel skips the ACL and sends named users and groups
        // to the other bits (acl_permission_check). A mask that no entry can use keeps the
        // ACL consulted without granting anything.
        let mask = if union.is_empty() && !other.is_empty() {
            notes.push(format!(
                "{}: every group-class entry is ---, so mask:: is set to {other} (grants nothing) to stop the kernel from giving named entries the other:: bits",
                kind.xattr_name()
            ));
            other
        } else {
            union
        };
        acl.entries.push(PosixEntry::new(Tag::Mask, mask));
    }
    acl.sort_canonical();
    acl
}

fn narrowing(kind: AclKind, draft: &Draft, extra_reason: Option<&str>) -> Option<Narrowing> {
    if draft.posix.contains(draft.best) {
        return None;
    }
    let mut reasons = Vec::new();
    if !draft.bounds.narrowed_by.is_empty() {
        let names: Vec<String> = draft.bounds.narrowed_by.iter().map(describe_key).collect();
        reasons.push(format!(
            "a DENY for {} comes before the ALLOW; POSIX cannot tell that group's members apart, so the right is withheld from the whole entry",
            names.join(", ")
        ));
    }
    if draft.bounds.possible & !draft.bounds.decided_allow & RWX_MASK != 0
        && matches!(draft.tag, Tag::UserObj | Tag::User(_))
    {
        reasons.push("the right comes from a group ACE; a user who is in that group gets it over SMB, but user entries in POSIX do not look at groups".to_string());
    }
    if let Some(extra) = extra_reason {
        reasons.push(extra.to_string());
    }
    if reasons.is_empty() {
        reasons.push("the right depends on who owns the new file or on group memberships, which POSIX cannot see".to_string());
    }
    Some(Narrowing {
        kind,
        tag: draft.tag,
        posix: draft.posix,
        nfs4_best: draft.best,
        reason: reasons.join("; "),
    })
}

fn describe_key(key: &Key) -> String {
    match key {
        Key::Gid(gid) => format!("group {gid}"),
        Key::Uid(uid) => format!("user {uid} (should that user own the new file)"),
        Key::OwningGroup => "GROUP@ (should the requester be in the new file's group)".to_string(),
    }
}

/// Which ACEs a child inherits from a directory (RFC 8881 §6.4.3), per kind of child.
#[derive(Debug, Clone, Copy)]
enum Heir {
    File,
    Directory,
    /// A file further down (inside a subdirectory): NO_PROPAGATE ACEs never reach it.
    DeepFile,
    DeepDirectory,
}

impl Heir {
    const ALL: [Heir; 4] = [
        Heir::File,
        Heir::Directory,
        Heir::DeepFile,
        Heir::DeepDirectory,
    ];

    /// The ACEs effective on such a child, with inheritance flags cleared.
    fn inherited(self, acl: &Nfs4Acl) -> Vec<Nfs4Ace> {
        let (flag, deep) = match self {
            Heir::File => (ace_flags::FILE_INHERIT, false),
            Heir::Directory => (ace_flags::DIRECTORY_INHERIT, false),
            Heir::DeepFile => (ace_flags::FILE_INHERIT, true),
            Heir::DeepDirectory => (ace_flags::DIRECTORY_INHERIT, true),
        };
        acl.aces
            .iter()
            .filter(|ace| {
                ace.flags & flag != 0 && !(deep && ace.flags & ace_flags::NO_PROPAGATE_INHERIT != 0)
            })
            .map(|ace| Nfs4Ace {
                flags: ace.flags & !INHERITANCE_FLAGS,
                ..ace.clone()
            })
            .collect()
    }
}

const INHERITANCE_FLAGS: u32 = ace_flags::FILE_INHERIT
    | ace_flags::DIRECTORY_INHERIT
    | ace_flags::NO_PROPAGATE_INHERIT
    | ace_flags::INHERIT_ONLY;

/// A POSIX default ACL becomes the access ACL of new files *and* subdirectories, and the
/// default ACL of subdirectories at every depth. So each entry gets what all four kinds of
/// heir would get, for an owner and group not known yet.
fn mirror_default(
    acl: &Nfs4Acl,
    narrowed: &mut Vec<Narrowing>,
    notes: &mut Vec<String>,
) -> Option<PosixAcl> {
    let inheritable: Vec<Nfs4Ace> = acl
        .aces
        .iter()
        .filter(|ace| ace.flags & (ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT) != 0)
        .filter(|ace| matches!(ace.ace_type, Nfs4AceType::Allow | Nfs4AceType::Deny))
        .cloned()
        .collect();
    if inheritable.is_empty() {
        return None;
    }
    let scope = Scope {
        owner: None,
        group: None,
    };
    let roles = roles_for(&inheritable, scope);
    let per_heir: Vec<Vec<Draft>> = Heir::ALL
        .iter()
        .map(|heir| draft_entries(&heir.inherited(acl), scope, &roles))
        .collect();
    let mut entries = Vec::with_capacity(roles.len());
    for (index, role) in roles.iter().enumerate() {
        let drafts: Vec<&Draft> = per_heir.iter().map(|d| &d[index]).collect();
        let posix = drafts.iter().fold(Perms::ALL, |acc, d| acc & d.posix);
        let heirs_differ = drafts.iter().any(|d| d.posix != drafts[0].posix);
        // Report against the heir that loses the most, with its own reasons.
        let widest = drafts
            .iter()
            .max_by_key(|d| d.best.bits().count_ones())
            .expect("four heirs");
        let combined = Draft {
            tag: role.tag(),
            posix,
            best: widest.best,
            bounds: widest.bounds.clone(),
        };
        let extra = heirs_differ.then_some(
            "files, subdirectories and deeper descendants inherit different rights (FILE_INHERIT vs DIRECTORY_INHERIT, NO_PROPAGATE); one POSIX default ACL serves them all, so it gets what all of them get",
        );
        if let Some(n) = narrowing(AclKind::Default, &combined, extra) {
            narrowed.push(n);
        }
        entries.push((role.tag(), posix));
    }
    Some(assemble(entries, AclKind::Default, notes))
}

/// Notes for ACEs that POSIX has no room for at all.
fn note_lossy_aces(acl: &Nfs4Acl, is_dir: bool, notes: &mut Vec<String>) {
    let audit = acl
        .aces
        .iter()
        .filter(|a| matches!(a.ace_type, Nfs4AceType::Audit | Nfs4AceType::Alarm))
        .count();
    if audit > 0 {
        notes.push(format!(
            "{audit} AUDIT/ALARM ACE(s) ignored: POSIX ACLs have no auditing"
        ));
    }
    for ace in acl.aces.iter().filter(|a| !is_resolvable(&a.who)) {
        let who = match &ace.who {
            Who::Name(name) => name.clone(),
            Who::Special(special) => special.as_str().to_string(),
            _ => unreachable!("filtered to unresolvable principals"),
        };
        let effect = if ace.ace_type == Nfs4AceType::Deny {
            "applied to everyone"
        } else {
            "ignored"
        };
        notes.push(format!(
            "{who} is not a uid, gid, OWNER@, GROUP@ or EVERYONE@; its {:?} ACE is {effect}",
            ace.ace_type
        ));
    }
    for ace in acl.aces.iter().filter(|a| a.ace_type == Nfs4AceType::Allow) {
        let write = ace.mask & (mask::WRITE_DATA | mask::APPEND_DATA);
        if write != 0 && write != (mask::WRITE_DATA | mask::APPEND_DATA) {
            notes.push(format!(
                "an ALLOW for {:?} grants only one of WRITE_DATA/APPEND_DATA; POSIX w needs both, so it is not granted",
                ace.who
            ));
        }
    }
    if is_dir {
        let useless = acl.aces.iter().any(|a| {
            a.flags & ace_flags::INHERIT_ONLY != 0
                && a.flags & (ace_flags::FILE_INHERIT | ace_flags::DIRECTORY_INHERIT) == 0
        });
        if useless {
            notes.push("INHERIT_ONLY ACE(s) without FILE_INHERIT or DIRECTORY_INHERIT have no effect and were ignored".to_string());
        }
    } else if acl.aces.iter().any(|a| a.flags & INHERITANCE_FLAGS != 0) {
        notes.push(
            "inheritance flags on a file: INHERIT_ONLY ACEs ignored, FILE/DIRECTORY_INHERIT and NO_PROPAGATE have no meaning".to_string(),
        );
    }
}
