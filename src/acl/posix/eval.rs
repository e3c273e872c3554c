//! NFSv4 ACL access evaluation (RFC 8881 §6.2.1) for one requester, and the bounds over
//! unknown group memberships that the POSIX mirror is built from.
//!
//! Each mask bit is decided by the first ALLOW or DENY ACE that matches the requester and
//! names the bit; a bit no ACE decides is not granted. INHERIT_ONLY ACEs and AUDIT/ALARM ACEs
//! take no part. Principals we cannot resolve to a uid or gid (`Who::Name`, and the specials
//! other than OWNER@/GROUP@/EVERYONE@) are treated conservatively: their ALLOW ACEs never
//! match and their DENY ACEs match everyone, so they can only take rights away.
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::model::Perms;
use crate::acl::nfs4::{ace_flags, mask, Nfs4Ace, Nfs4AceType, Nfs4Acl, SpecialWho, Who};

/// Who asks: the fsuid and every group the process is in (primary gid included).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Requester {
    pub uid: u32,
    pub gids: BTreeSet<u32>,
}

impl Requester {
    pub fn new(uid: u32, gids: impl IntoIterator<Item = u32>) -> Self {
        Requester {
            uid,
            gids: gids.into_iter().collect(),
        }
    }
}

/// The NFSv4 bits that read, write and execute are made of.
pub const RWX_MASK: u32 = mask::READ_DATA | mask::WRITE_DATA | mask::APPEND_DATA | mask::EXECUTE;
const WRITE_BOTH: u32 = mask::WRITE_DATA | mask::APPEND_DATA;

/// The POSIX rwx an NFSv4 grant amounts to: r = READ_DATA, w = WRITE_DATA *and* APPEND_DATA
/// (POSIX w allows both overwriting and appending, so it needs both), x = EXECUTE.
pub fn perms_from_mask(granted: u32) -> Perms {
    let mut perms = Perms::NONE;
    if granted & mask::READ_DATA != 0 {
        perms |= Perms::READ;
    }
    if granted & WRITE_BOTH == WRITE_BOTH {
        perms |= Perms::WRITE;
    }
    if granted & mask::EXECUTE != 0 {
        perms |= Perms::EXECUTE;
    }
    perms
}

/// The NFSv4 bits for POSIX rwx, as nfsd maps them: on a directory w also carries
/// DELETE_CHILD.
pub fn mask_from_perms(perms: Perms, is_dir: bool) -> u32 {
    let mut bits = 0;
    if perms.contains(Perms::READ) {
        bits |= mask::READ_DATA;
    }
    if perms.contains(Perms::WRITE) {
        bits |= WRITE_BOTH;
        if is_dir {
            bits |= mask::DELETE_CHILD;
        }
    }
    if perms.contains(Perms::EXECUTE) {
        bits |= mask::EXECUTE;
    }
    bits
}

/// Whether the ACE takes part in access checks on the object it is on.
pub fn is_effective(ace: &Nfs4Ace) -> bool {
    matches!(ace.ace_type, Nfs4AceType::Allow | Nfs4AceType::Deny)
        && ace.flags & ace_flags::INHERIT_ONLY == 0
}

/// Whether `who` is OWNER@/GROUP@/EVERYONE@ or a numeric id, i.e. something we can match.
pub fn is_resolvable(who: &Who) -> bool {
    matches!(
        who,
        Who::Uid(_)
            | Who::Gid(_)
            | Who::Special(SpecialWho::Owner | SpecialWho::Group | SpecialWho::Everyone)
    )
}

/// The NFSv4 mask bits `acl` grants `requester` on a file owned by `owner`:`group`.
pub fn access_mask(acl: &Nfs4Acl, owner: u32, group: u32, requester: &Requester) -> u32 {
    let matches = |ace: &Nfs4Ace| match &ace.who {
        Who::Special(SpecialWho::Owner) => requester.uid == owner,
        Who::Special(SpecialWho::Group) => requester.gids.contains(&group),
        Who::Special(SpecialWho::Everyone) => true,
        Who::Uid(uid) => requester.uid == *uid,
        Who::Gid(gid) => requester.gids.contains(gid),
        Who::Special(_) | Who::Name(_) => ace.ace_type == Nfs4AceType::Deny,
    };
    bounds(acl.aces.iter().filter(|a| is_effective(a)), |ace| {
        if matches(ace) {
            Match::Always
        } else {
            Match::Never
        }
    })
    .guaranteed
}

/// The POSIX rwx `acl` grants `requester` (see [`perms_from_mask`]).
pub fn access_perms(acl: &Nfs4Acl, owner: u32, group: u32, requester: &Requester) -> Perms {
    perms_from_mask(access_mask(acl, owner, group, requester))
}

/// A group (or user) whose membership is not known when the bounds are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    Uid(u32),
    Gid(u32),
    /// The owning group of a file not yet created (default ACLs).
    OwningGroup,
}

/// How an ACE relates to the requester a bound is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Always,
    /// Matches exactly when the requester belongs to `Key` (is that user, is in that group).
    IfMember(Key),
    Never,
}

/// Per mask bit, over every choice of memberships for the `IfMember` keys:
/// `guaranteed` = granted whatever the memberships, `possible` = granted for some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub guaranteed: u32,
    pub possible: u32,
    /// Granted by the first `Always` ACE that decides it, ignoring every `IfMember` ACE.
    pub decided_allow: u32,
    /// Keys whose DENY, coming before the deciding ALLOW, keeps an rwx bit out of
    /// `guaranteed`.
    pub narrowed_by: Vec<Key>,
}

/// Evaluates the ACEs in order (only ALLOW/DENY count; callers filter INHERIT_ONLY).
///
/// A bit is granted for every membership exactly when the first `Always` ACE naming it is
/// an ALLOW and, for every key, the first of that key's ACEs naming it before that point is
/// an ALLOW too: otherwise a requester in just that one group is denied. It is granted for
/// some membership when an `Always` ALLOW decides it or some key's first ACE for it is an
/// ALLOW before any `Always` ACE decides it.
pub(crate) fn bounds<'a>(
    aces: impl IntoIterator<Item = &'a Nfs4Ace>,
    classify: impl Fn(&Nfs4Ace) -> Match,
) -> Bounds {
    struct KeyState {
        key: Key,
        decided: u32,
        denied: u32,
    }
    let mut undecided = u32::MAX;
    let mut allowed = 0;
    let mut allowed_if_member = 0;
    let mut keys: Vec<KeyState> = Vec::new();
    for ace in aces {
        let is_allow = match ace.ace_type {
            Nfs4AceType::Allow => true,
            Nfs4AceType::Deny => false,
            Nfs4AceType::Audit | Nfs4AceType::Alarm => continue,
        };
        match classify(ace) {
            Match::Never => {}
            Match::Always => {
                let fresh = ace.mask & undecided;
                if is_allow {
                    allowed |= fresh;
                }
                undecided &= !fresh;
            }
            Match::IfMember(key) => {
                let index = match keys.iter().position(|k| k.key == key) {
                    Some(index) => index,
                    None => {
                        keys.push(KeyState {
                            key,
                            decided: 0,
                            denied: 0,
                        });
                        keys.len() - 1
                    }
                };
                let state = &mut keys[index];
                let fresh = ace.mask & undecided & !state.decided;
                state.decided |= fresh;
                if is_allow {
                    allowed_if_member |= fresh;
                } else {
                    state.denied |= fresh;
                }
            }
        }
    }
    let blocked = keys.iter().fold(0, |acc, k| acc | k.denied);
    Bounds {
        guaranteed: allowed & !blocked,
        possible: allowed | allowed_if_member,
        decided_allow: allowed,
        narrowed_by: keys
            .iter()
            .filter(|k| k.denied & allowed & RWX_MASK != 0)
            .map(|k| k.key)
            .collect(),
    }
}
