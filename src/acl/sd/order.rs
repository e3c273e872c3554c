//! Windows canonical ACE order and generic-rights expansion for file system ACLs.
use crate::acl::sd::{access, Ace, AceType, Acl};

/// The class of an ACE in the canonical order, in the order the classes must appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OrderClass {
    ExplicitDeny,
    ExplicitOther,
    Inherited,
}

/// ACE type codes that deny access: ACCESS_DENIED (1), ACCESS_DENIED_OBJECT (6),
/// ACCESS_DENIED_CALLBACK (10), ACCESS_DENIED_CALLBACK_OBJECT (12).
fn is_deny(ace: &Ace) -> bool {
    match &ace.ace_type {
        AceType::AccessDenied => true,
        AceType::Other { type_code, .. } => matches!(type_code, 6 | 10 | 12),
        _ => false,
    }
}

fn order_class(ace: &Ace) -> OrderClass {
    if ace.is_inherited() {
        OrderClass::Inherited
    } else if is_deny(ace) {
        OrderClass::ExplicitDeny
    } else {
        OrderClass::ExplicitOther
    }
}

/// Whether a DACL is in Windows canonical order:
///
/// 1. explicit (not INHERITED) deny ACEs,
/// 2. explicit allow ACEs (and any other explicit ACE, e.g. an audit ACE misplaced in a
///    DACL or an ACE of unknown type that does not deny),
/// 3. inherited ACEs, in whatever order they have (their order comes from the parent and
///    is not re-sorted; Windows does not either).
///
/// "Deny" covers ACCESS_DENIED and the denied object/callback types (6, 10, 12).
pub fn is_canonical(dacl: &Acl) -> bool {
    dacl.aces.windows(2).all(|pair| order_class(&pair[0]) <= order_class(&pair[1]))
}

/// The DACL in canonical order (see [`is_canonical`]): a stable sort by class, so ACEs of
/// the same class keep their relative order and a canonical DACL comes back unchanged.
pub fn canonicalize(dacl: &Acl) -> Acl {
    let mut aces = dacl.aces.clone();
    aces.sort_by_key(order_class);
    Acl { revision: dacl.revision, aces }
}

/// Replaces the GENERIC_* bits of a file or directory access mask by the specific rights
/// they stand for (GENERIC_READ → FILE_GENERIC_READ, GENERIC_WRITE → FILE_GENERIC_WRITE,
/// GENERIC_EXECUTE → FILE_GENERIC_EXECUTE, GENERIC_ALL → FILE_ALL_ACCESS); all other bits,
/// MAXIMUM_ALLOWED and ACCESS_SYSTEM_SECURITY included, are kept.
pub fn map_generic_file_rights(mask: u32) -> u32 {
    const MAPPING: [(u32, u32); 4] = [
        (access::GENERIC_READ, access::FILE_GENERIC_READ),
        (access::GENERIC_WRITE, access::FILE_GENERIC_WRITE),
        (access::GENERIC_EXECUTE, access::FILE_GENERIC_EXECUTE),
        (access::GENERIC_ALL, access::FILE_ALL_ACCESS),
    ];
    MAPPING.iter().fold(mask, |result, &(generic, specific)| {
        if mask & generic != 0 {
            (result & !generic) | specific
        } else {
            result
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::sd::ace_flags::{CONTAINER_INHERIT, INHERITED, OBJECT_INHERIT};
    use crate::acl::sd::strategies::arb_acl;
    use crate::acl::sid::Sid;
    use proptest::prelude::*;

    fn user(n: u32) -> Sid {
        Sid::unix_user(n)
    }

    #[test]
    fn detects_and_fixes_non_canonical() {
        let inherited_deny = Ace::denied(user(9), 0x1, INHERITED);
        let inherited_allow = Ace::allowed(user(8), 0x1, INHERITED | OBJECT_INHERIT);
        let dacl = Acl::new(vec![
            Ace::allowed(user(1), access::FILE_ALL_ACCESS, CONTAINER_INHERIT),
            inherited_allow.clone(),
            Ace::denied(user(2), access::WRITE_DAC, 0),
            inherited_deny.clone(),
            Ace::allowed(user(3), access::FILE_GENERIC_READ, 0),
        ]);
        assert!(!is_canonical(&dacl));
        let fixed = canonicalize(&dacl);
        assert!(is_canonical(&fixed));
        let sids: Vec<_> = fixed.aces.iter().map(|a| a.sid.clone()).collect();
        // Explicit deny, explicit allows in their order, inherited ACEs in their order.
        assert_eq!(sids, vec![user(2), user(1), user(3), user(8), user(9)]);
        assert_eq!(fixed.aces[3], inherited_allow);
        assert_eq!(fixed.aces[4], inherited_deny);
    }

    #[test]
    fn denied_object_ace_counts_as_deny() {
        let object_deny = Ace::other(6, 0, vec![1, 0, 0, 0, 0, 0, 0, 0]);
        let dacl = Acl::new(vec![Ace::allowed(user(1), 1, 0), object_deny.clone()]);
        assert!(!is_canonical(&dacl));
        assert_eq!(canonicalize(&dacl).aces[0], object_deny);
    }

    #[test]
    fn generic_rights_expand() {
        use access::*;
        assert_eq!(map_generic_file_rights(GENERIC_ALL), FILE_ALL_ACCESS);
        assert_eq!(map_generic_file_rights(GENERIC_READ | GENERIC_EXECUTE), 0x0012_00a9);
        assert_eq!(map_generic_file_rights(GENERIC_WRITE | DELETE), 0x0013_0116);
        assert_eq!(map_generic_file_rights(FILE_READ_DATA | MAXIMUM_ALLOWED), FILE_READ_DATA | MAXIMUM_ALLOWED);
        assert_eq!(map_generic_file_rights(GENERIC_READ | ACCESS_SYSTEM_SECURITY), FILE_GENERIC_READ | ACCESS_SYSTEM_SECURITY);
    }

    proptest! {
        #[test]
        fn canonicalize_is_a_stable_idempotent_permutation(acl in arb_acl()) {
            let fixed = canonicalize(&acl);
            prop_assert!(is_canonical(&fixed));
            prop_assert_eq!(canonicalize(&fixed).clone(), fixed.clone());
            prop_assert_eq!(fixed.aces.len(), acl.aces.len());
            for ace in &acl.aces {
                prop_assert_eq!(
                    fixed.aces.iter().filter(|a| *a == ace).count(),
                    acl.aces.iter().filter(|a| *a == ace).count()
                );
            }
            if is_canonical(&acl) {
                prop_assert_eq!(fixed, acl);
            }
        }

        #[test]
        fn generic_expansion_leaves_no_generic_bits(mask in any::<u32>()) {
            let mapped = map_generic_file_rights(mask);
            prop_assert_eq!(mapped & 0xf000_0000, 0);
            prop_assert_eq!(mapped & 0x0fff_ffff & mask, mask & 0x0fff_ffff);
        }
    }
}
